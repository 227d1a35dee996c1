"""A failure of the run (the key, billing, the model, a quota) stops it: exit 3, nothing final.

The issue's example: 200 items with a wrong key were all sent and journaled ``failed``,
and a rerun with the right key said "nothing to do".  Now the first refusal stops the
run, the items it caught stay unfinished, and the same command with the right key
finishes the job.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator

import pytest

from stagedretry.cli._exit import ExitCode
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import Invocation, Job, on_gemini

KEY = "AIzaSyStops-0123456789-abcdefghijklmnop"
WRONG = "AIzaSyWrong-0123456789-abcdefghijklmnop"
MODEL = "gemini-2.5-flash"
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "author": {"type": "string"}},
    "required": ["title", "author"],
}


@pytest.fixture
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(seed=4, invalid_rate=0.0, api_key=KEY, models=[MODEL]) as emu:
        yield emu


def _gemini_job(
    make_job: Callable[..., Job], emulator: GeminiEmulator, *, items: int, model: str = MODEL
) -> Job:
    job = make_job(items=items, sim="", run="concurrency = 4")
    return on_gemini(job, emulator.base_url, schema=SCHEMA, model=model)


def _statuses(job: Job) -> dict[str, int]:
    """How many journal rows have each status."""
    with sqlite3.connect(job.journal) as db:
        return dict(db.execute("select status, count(*) from results group by status").fetchall())


def _generate_calls(emulator: GeminiEmulator) -> int:
    return sum(1 for r in emulator.ledger.requests if r.path.endswith(":generateContent"))


def test_a_wrong_key_stops_at_once_and_the_right_key_finishes_the_job(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = _gemini_job(make_job, emulator, items=200)
    monkeypatch.setenv("GEMINI_API_KEY", WRONG)

    stopped = cli("run", str(job.pipeline), "--no-progress")

    assert stopped.code == ExitCode.RUN_STOPPED, stopped.err
    # At most the concurrency's worth was sent, not 200.
    assert 1 <= _generate_calls(emulator) <= 4
    assert "error: the run stopped: the API key was rejected (API_KEY_INVALID)" in stopped.err
    assert "Fix it and run the same command again to finish the job" in stopped.err
    assert "0 items finished, 200 left" in stopped.err
    assert WRONG not in stopped.out + stopped.err
    statuses = _statuses(job)
    assert "failed" not in statuses  # nothing final for a cause that is not the items'
    assert set(statuses) <= {"cancelled"}
    assert "Items" in stopped.out  # the summary is printed too

    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    done = cli("run", str(job.pipeline), "--no-progress", "--json")

    assert done.code == ExitCode.OK, done.err
    summary = done.json()
    assert summary["items"]["succeeded"] == 200
    assert summary["run_failure"] is None
    assert "nothing to do" not in done.out + done.err


def test_an_unknown_model_stops_the_run_with_the_apis_words(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    job = _gemini_job(make_job, emulator, items=30, model="gemini-pro")

    done = cli("run", str(job.pipeline), "--no-progress", "--json")

    assert done.code == ExitCode.RUN_STOPPED
    summary = done.json()
    assert summary["exit_code"] == ExitCode.RUN_STOPPED
    assert summary["run_failure"].startswith(
        "the model was not found: 404 NOT_FOUND: models/gemini-pro"
    )
    assert summary["items"]["failed"] == 0
    assert _generate_calls(emulator) <= 4
    assert "the run stopped: the model was not found" in done.err


def test_a_daily_quota_met_midway_keeps_what_finished(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    emulator.inject(Fault(kind=FaultKind.DAILY_QUOTA, at=range(31, 10_000)))
    job = _gemini_job(make_job, emulator, items=100)

    done = cli("run", str(job.pipeline), "--no-progress", "--json")

    assert done.code == ExitCode.RUN_STOPPED
    summary = done.json()
    assert summary["items"]["succeeded"] == 30
    assert summary["items"]["failed"] == 0
    assert "GenerateRequestsPerDayPerProjectPerModel-FreeTier" in summary["run_failure"]
    assert _generate_calls(emulator) <= 30 + 4
    assert "30 items finished, 70 left" in done.err
    assert len(job.lines()) == 30 + sum(1 for r in job.lines() if r["status"] == "cancelled")

    emulator.clear_faults()
    again = cli("run", str(job.pipeline), "--no-progress", "--json")
    assert again.code == ExitCode.OK
    assert again.json()["items"]["from_journal"] == 30


def test_the_sim_backend_provokes_a_stop_and_a_resume_reuses_the_journal(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=40, sim="seed = 3\ninvalid_rate = 0.0\nstop_rate = 0.05")

    stopped = cli("run", str(job.pipeline), "--no-progress", "--json")

    assert stopped.code == ExitCode.RUN_STOPPED
    first = stopped.json()
    assert "backend.sim.stop_rate" in first["run_failure"]
    assert first["items"]["failed"] == 0
    finished = first["items"]["succeeded"]
    assert finished < 40

    done = cli(
        "run", str(job.pipeline), "--no-progress", "--json", "--set", "backend.sim.stop_rate=0"
    )
    assert done.code == ExitCode.OK
    assert done.json()["items"]["from_journal"] == finished
    assert done.json()["items"]["succeeded"] == 40
