"""Quotas from the command line: a day quota stops the run (exit 3) and the same command
resumes after the reset; ``[backend.quota]`` paces a run before the server refuses.

The emulator enforces its ``[backend.emulator.quota]`` (or, started by the test on a
clock the test moves, its ``quota=``) with the service's 429 bodies.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from stagedretry.cli._exit import ExitCode
from strategies.gemini.emulator import EmulatorQuota, Fault, FaultKind, GeminiEmulator

from .conftest import Invocation, Job, on_gemini

KEY = "AIzaSyQuota-0123456789-abcdefghijklmnopq"
MODEL = "gemini-2.5-flash"
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "author": {"type": "string"}},
    "required": ["title", "author"],
}
DAY = 86_400.0


class Wall:
    """The emulator's wall clock, moved by the test: a day passes in no time."""

    def __init__(self) -> None:
        self.now = 1_790_000_000.0

    def __call__(self) -> float:
        return self.now


def _emulator_job(make_job: Callable[..., Job], items: int, backend: str) -> Job:
    job = make_job(items=items, sim="", run="concurrency = 1")
    (job.folder / "output.schema.json").write_text(json.dumps(SCHEMA), "utf-8")
    text = (
        job.pipeline.read_text("utf-8")
        .replace('kind = "sim"\n\n[backend.sim]\n', f'kind = "emulator"\n{backend}\n')
        .replace(
            '[output]\npath = "out/results.jsonl"',
            '[output]\npath = "out/results.jsonl"\nschema = "output.schema.json"',
        )
    )
    job.pipeline.write_text(text, "utf-8")
    return job


def test_a_day_quota_stops_the_run_and_the_same_command_resumes_after_the_reset(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    wall = Wall()
    with GeminiEmulator(
        seed=4, invalid_rate=0.0, clock=wall, quota=EmulatorQuota(rpd=5)
    ) as emulator:
        job = on_gemini(
            make_job(items=8, sim="", run="concurrency = 1"), emulator.base_url, schema=SCHEMA
        )

        stopped = cli("run", str(job.pipeline), "--no-progress", "--json")

        assert stopped.code == ExitCode.RUN_STOPPED, stopped.err
        first = stopped.json()
        assert first["items"]["succeeded"] == 5
        assert first["items"]["failed"] == 0
        assert first["run_failure"].startswith(
            "a quota that waiting cannot refill is spent: the requests per day quota of "
            "gemini-2.5-flash (GenerateRequestsPerDayPerProjectPerModel, 5) is spent; it "
            "resets at midnight Pacific time ("
        )
        assert "error: the run stopped: a quota that waiting cannot refill" in stopped.err
        assert "5 items finished, 3 left" in stopped.err
        assert emulator.quota_stats.refusals == 1  # the sixth request; none after it

        wall.now += DAY  # the quota resets at midnight Pacific time
        again = cli("run", str(job.pipeline), "--no-progress", "--json")

        assert again.code == ExitCode.OK, again.err
        summary = again.json()
        assert summary["items"]["from_journal"] == 5
        assert summary["items"]["succeeded"] == 8
        assert len(emulator.quota_stats.served) == 8


def test_the_pipelines_day_quota_stops_before_the_server_refuses(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _emulator_job(
        make_job,
        6,
        "\n[backend.emulator]\nseed = 3\ninvalid_rate = 0.0\n\n"
        "[backend.emulator.quota]\nrpd = 100\n\n"
        '[backend.quota]\nrpm = 1000\n\n[backend.quota.models."gemini-2.5-flash"]\nrpd = 4\n',
    )

    done = cli("run", str(job.pipeline), "--no-progress", "--json")

    assert done.code == ExitCode.RUN_STOPPED, done.err
    summary = done.json()
    assert summary["items"]["succeeded"] == 4
    assert summary["run_failure"].startswith(
        "the requests-per-day quota of gemini-2.5-flash (4 requests, quota rpd) is spent; "
        "it resets at midnight Pacific time ("
    )
    # Stopped by the admission: the fifth request was never sent, so never refused.
    assert summary["stages"][0]["outcomes"].get("rate_limited", 0) == 0


def test_a_spending_cap_stops_the_run_from_the_command_line(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with GeminiEmulator(seed=4, invalid_rate=0.0) as emulator:
        emulator.inject(Fault(kind=FaultKind.SPEND_CAP, at=range(3, 1000)))
        job = on_gemini(
            make_job(items=6, sim="", run="concurrency = 1"), emulator.base_url, schema=SCHEMA
        )
        done = cli("run", str(job.pipeline), "--no-progress", "--json")
    assert done.code == ExitCode.RUN_STOPPED, done.err
    summary = done.json()
    assert summary["items"]["succeeded"] == 2
    assert summary["run_failure"].startswith(
        "the billing account's monthly spending cap is reached: raise it in AI Studio, or "
        "wait for the next billing month (429 RESOURCE_EXHAUSTED)"
    )


@pytest.mark.parametrize(
    ("table", "path", "problem"),
    [
        ("[backend.quota]\nrpm = 0\n", "backend.quota.rpm", "expected a whole number"),
        (
            '[backend.quota.models."gemini-2.5-pro"]\ntpm = "lots"\n',
            'backend.quota.models."gemini-2.5-pro".tpm',
            "expected a whole number",
        ),
        ("[backend.quota]\nrmp = 10\n", "backend.quota.rmp", "unknown key"),
        ("[backend.emulator.quota]\nminute = 0\n", "backend.emulator.quota.minute", "expected"),
    ],
)
def test_a_wrong_quota_table_is_one_sentence_naming_its_key(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    table: str,
    path: str,
    problem: str,
) -> None:
    job = _emulator_job(make_job, 2, "\n" + table)
    done = cli("plan", "check", str(job.pipeline))
    assert done.code == ExitCode.USAGE
    assert path in done.err
    assert problem in done.err
    assert "Traceback" not in done.err
