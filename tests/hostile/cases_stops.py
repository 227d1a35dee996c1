"""Failures of the run, not of an item: each stops the run with exit 3 and journals nothing final.

A wrong key (the corpus's emulator wants ``KEY``), an unknown model, billing, a blocked
key, a per-day quota: the first refusal stops the run, the sentence says what to fix,
and no journal row is final for it.  A per-minute 429 is not one of them.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from stagedretry.cli._exit import ExitCode

from ._corpus import KEY, Case, Ran, base_env, run_args

WRONG = "AIzaSyWrong-0123456789-abcdefghijklmnop"
ITEMS = 60
INPUT = "".join(f'{{"id": "item-{n}", "title": "Title {n}"}}\n' for n in range(1, ITEMS + 1))
SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"title": {"type": "string"}, "summary": {"type": "string"}},
        "required": ["title", "summary"],
    }
)
STOPPED = r"error: the run stopped: .*Fix it and run the same command again"


def pipeline(backend: str, *, cache: bool = False) -> str:
    """A two-stage pipeline on *backend* (a ``[backend]`` table's text), 60 items, 2 workers."""
    text = (
        'name = "hostile-stops"\n'
        "[plan]\nmax_prompts = 4\nbackoff = { initial = 0.001, max = 0.01 }\n"
        '[[plan.stages]]\nname = "full_t0"\nparams = { temperature = 0.0 }\n'
        '[[plan.stages]]\nname = "partial_t0"\nkind = "partial"\nparams = { temperature = 0.0 }\n\n'
        f"[backend]\n{backend}\n\n"
        '[input]\npath = "input.jsonl"\ntemplate = "Describe {title}."\n\n'
        '[output]\npath = "out/results.jsonl"\nschema = "book.schema.json"\n\n'
        '[journal]\npath = "out/journal.sqlite"\n\n'
        "[run]\nconcurrency = 2\n"
    )
    if cache:
        text += '\n[cache]\nsystem_instruction = "rules.md"\n'
    return text


GEMINI = 'kind = "gemini"\nmodel = "gemini-2.5-flash"\nbase_url = "{emulator}"'


def emulator(fault: str = "", *, model: str = "gemini-2.5-flash", models: str = "") -> str:
    """The in-process emulator backend, with one ``[[backend.emulator.faults]]`` table's body."""
    text = (
        f'kind = "emulator"\nmodel = "{model}"\n\n'
        "[backend.emulator]\ninvalid_rate = 0.0\ninvalid_rate_slope = 0.0\n"
    )
    if models:
        text += f"models = {models}\n"
    if fault:
        text += f"\n[[backend.emulator.faults]]\n{fault}\n"
    return text


def files(backend: str, *, cache: bool = False) -> dict[str, str | bytes]:
    return {
        "pipeline.toml": pipeline(backend, cache=cache),
        "input.jsonl": INPUT,
        "book.schema.json": SCHEMA,
        "rules.md": "Answer as a careful librarian would. " * 200,
    }


def statuses(ran: Ran) -> dict[str, int]:
    """Journal rows by status."""
    path = ran.folder / "out/journal.sqlite"
    with sqlite3.connect(path) as db:
        rows = db.execute("select status, count(*) from results group by status").fetchall()
    return dict(rows)


def nothing_final(ran: Ran) -> None:
    """No row is ``failed`` or ``exhausted``: the stop left every item it caught unfinished."""
    found = statuses(ran)
    assert "failed" not in found, found
    assert "exhausted" not in found, found
    assert sum(found.values()) <= ITEMS


def summary_json(ran: Ran) -> dict[str, object]:
    summary = json.loads(ran.out)
    assert isinstance(summary, dict)
    return summary


def _json_check(ran: Ran) -> None:
    summary = summary_json(ran)
    assert summary["exit_code"] == ExitCode.RUN_STOPPED
    assert "billing is not enabled" in str(summary["run_failure"])
    items = summary["items"]
    assert isinstance(items, dict)
    assert items["failed"] == 0
    assert items["succeeded"] == 4  # the four answered before the fault are kept


def _stop_first(folder: Path) -> None:
    """The run before the case's own: it stops on the sim backend's provoked failure."""
    done = subprocess.run(
        [sys.executable, "-m", "stagedretry.cli", *run_args()],
        cwd=folder,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == ExitCode.RUN_STOPPED, done.stderr


def _resumed(ran: Ran) -> None:
    summary = summary_json(ran)
    items = summary["items"]
    assert isinstance(items, dict)
    assert items["succeeded"] == ITEMS
    assert isinstance(items["from_journal"], int)
    assert items["from_journal"] > 0  # what finished before the stop is not paid twice


SIM_STOPPING = 'kind = "sim"\n\n[backend.sim]\nseed = 3\ninvalid_rate = 0.0\nstop_rate = 0.05'

CASES = [
    Case(
        "stops-wrong-key",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(GEMINI),
        env={"GEMINI_API_KEY": WRONG},
        stderr=STOPPED.replace(".*", r"the API key was rejected \(API_KEY_INVALID\).*"),
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "stops-wrong-key-cache-cannot-be-made",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(GEMINI, cache=True),
        env={"GEMINI_API_KEY": WRONG},
        stderr=r"could not prepare resource 'gemini_cache': the API key was rejected",
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "stops-right-key-runs",
        run_args(),
        ExitCode.OK,
        files=files(GEMINI),
        env={"GEMINI_API_KEY": KEY},
        timeout=60,
    ),
    Case(
        "stops-unknown-model",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(emulator(model="gemini-pro", models='["gemini-2.5-flash"]')),
        stderr=r"the model was not found: 404 NOT_FOUND: models/gemini-pro is not found",
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "stops-billing-disabled",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(emulator('kind = "billing_disabled"')),
        stderr=r"billing is not enabled for the key's project \(BILLING_DISABLED\)",
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "stops-no-billing-account-location",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(emulator('kind = "no_billing_account"')),
        stderr=r"400 FAILED_PRECONDITION: User location is not supported",
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "stops-key-blocked",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(emulator('kind = "key_blocked"')),
        stderr=r"no permission \(API_KEY_SERVICE_BLOCKED\)",
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "stops-unauthenticated",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(emulator('kind = "unauthenticated"')),
        stderr=r"the credentials were not accepted .*401 UNAUTHENTICATED",
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "stops-billing-midway-keeps-what-finished",
        run_args("--json"),
        ExitCode.RUN_STOPPED,
        files=files(emulator('kind = "billing_disabled"\nat = [5, 6, 7, 8, 9, 10, 11, 12]')),
        check=_json_check,
        timeout=30,
    ),
    Case(
        "stops-daily-quota",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(emulator('kind = "daily_quota"\nretry_delay = 0.01')),
        stderr=r"GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "stops-per-minute-quota-is-waited-out",
        run_args(),
        ExitCode.OK,
        files=files(emulator('kind = "rate_limit"\ntimes = 3\nretry_delay = 0.01')),
        timeout=60,
    ),
    Case(
        "stops-sim-stop-rate",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(SIM_STOPPING),
        stderr=r"the simulated key was rejected .*items finished, \d+ left",
        check=nothing_final,
        timeout=30,
    ),
    Case(
        "stops-resume-after-the-cause-is-fixed",
        run_args("--json", "--set", "backend.sim.stop_rate=0"),
        ExitCode.OK,
        files=files(SIM_STOPPING),
        before=_stop_first,
        check=_resumed,
        timeout=60,
    ),
]
