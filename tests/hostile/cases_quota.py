"""Quotas misused and spent: ``[backend.quota]`` and ``[backend.emulator.quota]``.

A limit of 0, a number too large, a table where a number belongs, a request larger than
the whole per-minute token quota (no wait could admit it: its items fail at once, nothing
hangs), a day quota spent by the admission or by the server, a spending cap: each ends
with its documented code and one sentence naming the key or the quota.
"""

from __future__ import annotations

from stagedretry.cli._exit import ExitCode

from ._corpus import Case, run_args
from .cases_stops import emulator, files, nothing_final

PACE = 'kind = "emulator"\nmodel = "gemini-2.5-flash"\n\n[backend.emulator]\ninvalid_rate = 0.0\n'


def paced(table: str) -> dict[str, str | bytes]:
    """The stops corpus's pipeline on the in-process emulator, with *table* appended."""
    return files(PACE + "\n" + table)


CASES = [
    Case(
        "quota-rpm-zero",
        run_args(),
        ExitCode.USAGE,
        files=paced("[backend.quota]\nrpm = 0\n"),
        stderr=r"backend\.quota\.rpm: expected a whole number",
        timeout=30,
    ),
    Case(
        "quota-tpm-too-large",
        run_args(),
        ExitCode.USAGE,
        files=paced("[backend.quota]\ntpm = 9223372036854775807\nrpd = 1e30\n"),
        stderr=r"backend\.quota\.(tpm|rpd)",
        timeout=30,
    ),
    Case(
        "quota-models-not-a-table",
        run_args(),
        ExitCode.USAGE,
        files=paced('[backend.quota]\nmodels = "gemini-2.5-pro"\n'),
        stderr=r"backend\.quota\.models: expected a table of model names",
        timeout=30,
    ),
    Case(
        "quota-model-override-typo",
        run_args(),
        ExitCode.USAGE,
        files=paced('[backend.quota.models."gemini-2.5-pro"]\nrmp = 5\n'),
        stderr=r'backend\.quota\.models\."gemini-2\.5-pro"\.rmp: unknown key',
        timeout=30,
    ),
    Case(
        "quota-emulator-minute-zero",
        run_args(),
        ExitCode.USAGE,
        files=paced("[backend.emulator.quota]\nminute = 0\n"),
        stderr=r"backend\.emulator\.quota\.minute",
        timeout=30,
    ),
    Case(
        "quota-request-larger-than-the-tpm",
        run_args(),
        ExitCode.SOME_FAILED,
        files=paced("[backend.quota]\ntpm = 2\n"),
        timeout=30,
        check=lambda ran: _every_item_refused(ran.folder),
    ),
    Case(
        "quota-day-spent-by-the-admission",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=paced("[backend.quota]\nrpd = 3\n"),
        stderr=(
            r"the run stopped: the requests-per-day quota of gemini-2\.5-flash \(3 requests, "
            r"quota rpd\) is spent; it resets at midnight Pacific time \(\d\d:\d\d UTC\)"
        ),
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "quota-day-spent-on-the-server",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=paced("[backend.emulator.quota]\nrpd = 3\n"),
        stderr=(
            r"the requests per day quota of gemini-2\.5-flash "
            r"\(GenerateRequestsPerDayPerProjectPerModel, 3\) is spent; it resets at midnight "
            r"Pacific time"
        ),
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "quota-spending-cap",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(emulator('kind = "spend_cap"\nat = [3, 4, 5, 6, 7, 8]')),
        stderr=r"the billing account's monthly spending cap is reached",
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "quota-prepaid-credits-spent",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(emulator('kind = "prepay_depleted"')),
        stderr=r"the project's prepaid credits are spent: add funds in AI Studio",
        check=nothing_final,
        timeout=30,
    ),
]


def _every_item_refused(folder: object) -> None:
    import json
    from pathlib import Path

    assert isinstance(folder, Path)
    rows = [json.loads(line) for line in (folder / "out/results.jsonl").read_text().splitlines()]
    assert rows
    for row in rows:
        assert row["status"] == "failed", row
        assert "no wait can admit it" in str(row), row
