"""``kill -9`` during a batch round, then resume: each job is created once, the output is the same.

A real ``stagedretry run`` process in batch mode talks to an emulator in this test
process over loopback HTTP.  The emulator's clock is the test's: frozen while the
first process runs, so its first job stays pending; the test kills the process
(SIGKILL) as soon as the journal holds that job, then lets the clock run (each
look moves it on by more than a job takes) and runs the same command again.  The
second process must re-attach to the journaled job (the emulator's ledger shows
every job created exactly once) and write, item for item, what an uninterrupted
run against a fresh emulator with the same seed writes.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from strategies.gemini.emulator import GeminiEmulator

from .conftest import Job, command, on_gemini, sim_pipeline

KEY = "AIzaSyTest-batch-kill-0123456789abcdef"
SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "author": {"type": "string"},
        "year": {"type": "integer", "minimum": 1800, "maximum": 2025},
    },
    "required": ["title", "author", "year"],
}
COMPLETION = 100.0
"""Seconds on the emulator's clock a job takes."""


class StepClock:
    """The emulator's clock: frozen until :meth:`run`, then each read is ``COMPLETION``
    seconds on, so a job created at one read is done at the next look."""

    def __init__(self) -> None:
        self._now = 1_000_000.0
        self._running = False
        self._lock = threading.Lock()

    def run(self) -> None:
        self._running = True

    def time(self) -> float:
        with self._lock:
            if self._running:
                self._now += COMPLETION + 1
            return self._now


def _emulator(clock: StepClock) -> GeminiEmulator:
    # invalid answers make a second round (the partial repairs) after the first job
    return GeminiEmulator(
        seed=12, invalid_rate=0.3, api_key=KEY, clock=clock.time, batch_completion=COMPLETION
    )


def _job(folder: Path, emulator: GeminiEmulator) -> Job:
    job = sim_pipeline(folder, items=8, sim="", run='concurrency = 8\nmode = "batch"')
    return on_gemini(job, emulator.base_url, schema=SCHEMA)


def _run(job: Job, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command("run", str(job.pipeline), "--json", "--no-progress"),
        capture_output=True,
        env=env,
        text=True,
        timeout=60,
        check=False,
    )


def _journaled_jobs(journal: Path) -> list[tuple[str, int]]:
    """The batch jobs in *journal* (name, consumed); none while the tables are not there."""
    if not journal.exists():
        return []
    db = sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=1)
    try:
        rows = db.execute("SELECT name, consumed FROM batch_jobs").fetchall()
    except sqlite3.OperationalError:  # not made yet, or locked for a moment
        return []
    finally:
        db.close()
    return [(str(name), int(consumed)) for name, consumed in rows]


def _by_id(job: Job) -> dict[str, dict[str, Any]]:
    return {line["id"]: line for line in job.lines()}


@pytest.fixture
def env(subprocess_env: dict[str, str]) -> dict[str, str]:
    return {**subprocess_env, "GEMINI_API_KEY": KEY}


def test_kill_nine_during_a_batch_round_then_resume(tmp_path: Path, env: dict[str, str]) -> None:
    reference_clock = StepClock()
    reference_clock.run()
    with _emulator(reference_clock) as emulator:
        reference = _job(tmp_path / "reference", emulator)
        done = _run(reference, env)
        reference_jobs = emulator.ledger.batch_jobs
    assert done.returncode in (0, 1), done.stderr
    expected = _by_id(reference)
    assert len(expected) == 8
    assert len(reference_jobs) >= 2  # the kill below lands in the first of several rounds

    clock = StepClock()
    with _emulator(clock) as emulator:
        job = _job(tmp_path / "killed", emulator)
        child = subprocess.Popen(
            command("run", str(job.pipeline), "--json", "--no-progress"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        try:
            deadline = time.monotonic() + 30
            while not _journaled_jobs(job.journal):
                assert child.poll() is None, "the run ended before its first job was journaled"
                assert time.monotonic() < deadline, "no batch job journaled within 30 s"
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
        [(first, consumed)] = _journaled_jobs(job.journal)
        assert consumed == 0  # killed while its job was in flight
        assert [record.name for record in emulator.ledger.batch_jobs] == [first]
        assert not job.output.exists() or job.lines() == []

        clock.run()
        again = _run(job, env)
        assert again.returncode == done.returncode, again.stderr
        created = [record.name for record in emulator.ledger.batch_jobs]

    assert created[0] == first
    assert len(created) == len(set(created)) == len(reference_jobs)  # each job created once
    assert len(_journaled_jobs(job.journal)) == len(created)
    assert "batch job(s) submitted, 1 of an earlier run re-attached to" in again.stdout
    assert _by_id(job) == expected
