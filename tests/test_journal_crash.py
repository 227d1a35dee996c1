"""``kill -9`` a library run mid-way, run it again: the journal makes it one uninterrupted run.

The child is a plain library script (no command line): ``Runner.stream(items,
journal=...)`` over 300 items with the simulated model behind a callable strategy
that logs each request (one flushed line, before the request is answered).  The
test kills it once the journal holds 50 results, runs it again to the end, and
compares with an uninterrupted run of the same script into a fresh journal.
Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ITEMS = 300
KILL_AFTER = 50
WAIT = 15.0
"""Seconds any one step may take before the test gives up."""

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys

    import attrs

    import stagedretry as sr
    from strategies.callable import from_callable
    from strategies.sim import SimStrategy

    journal_path, log_path = sys.argv[1], sys.argv[2]
    sim = SimStrategy(seed=11, invalid_rate=0.3, transient_rate=0.1, latency=0.02)
    plan = attrs.evolve(sr.Plan.ladder(), backoff=sr.Backoff(initial=0.01, maximum=0.02))


    async def main() -> None:
        with open(log_path, "a", encoding="utf-8") as log:

            async def logged(request, ctx):
                log.write(request.item_id + "\\n")
                log.flush()
                return await sim.generate(request, ctx)

            runner = sr.Runner(
                plan, from_callable(logged), validator=sim.validator(), concurrency=8, seed=1
            )
            items = [sr.WorkItem(f"item-{i:03d}", f"Catalogue book #{i}.") for i in range(ITEMS)]
            with sr.Journal(journal_path) as journal:
                async with runner.stream(items, journal=journal) as results:
                    async for _ in results:
                        pass


    asyncio.run(main())
    """
).replace("ITEMS", str(ITEMS))


def _rows(journal: Path) -> dict[str, dict[str, Any]]:
    """Item id -> the committed result's JSON, read straight from SQLite (none before it exists)."""
    if not journal.exists():
        return {}
    db = sqlite3.connect(journal)
    try:
        rows = db.execute("SELECT item_id, result FROM results").fetchall()
    except sqlite3.OperationalError:  # the child has not created the tables yet
        return {}
    finally:
        db.close()
    return {item: json.loads(text) for item, text in rows}


def _done(journal: Path) -> set[str]:
    return {item for item, r in _rows(journal).items() if r["status"] != "cancelled"}


def _sent(log: Path) -> list[str]:
    return log.read_text("utf-8").splitlines() if log.exists() else []


def _essence(rows: dict[str, dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {item: (r["status"], r["output"], r["prompts"]) for item, r in rows.items()}


def test_a_killed_library_run_resumes_without_resending_done_items(tmp_path: Path) -> None:
    script = tmp_path / "batch.py"
    script.write_text(SCRIPT, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    journal, killed_log, resumed_log = (
        tmp_path / "j.sqlite",
        tmp_path / "killed.log",
        tmp_path / "resumed.log",
    )
    errors = tmp_path / "stderr.txt"

    with errors.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, str(script), str(journal), str(killed_log)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + WAIT
            while len(_done(journal)) < KILL_AFTER:
                assert child.poll() is None, f"the run ended before the kill: {errors.read_text()}"
                assert time.monotonic() < deadline, "the journal never held 50 results"
                time.sleep(0.01)
            child.send_signal(signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=WAIT)
    assert child.returncode == -signal.SIGKILL
    before = _done(journal)
    assert KILL_AFTER <= len(before) < ITEMS

    def run_to_the_end(journal: Path, log: Path) -> None:
        subprocess.run(
            [sys.executable, str(script), str(journal), str(log)],
            cwd=tmp_path,
            env=env,
            check=True,
            timeout=WAIT,
            capture_output=True,
        )

    run_to_the_end(journal, resumed_log)
    run_to_the_end(tmp_path / "fresh.sqlite", tmp_path / "fresh.log")

    resumed = _rows(journal)
    fresh = _rows(tmp_path / "fresh.sqlite")
    ids = {f"item-{i:03d}" for i in range(ITEMS)}
    # One row per item (the key is the item id), none cancelled, the same as an uninterrupted run.
    assert set(resumed) == ids
    assert _essence(resumed) == _essence(fresh)
    assert {r["status"] for r in fresh.values()} >= {"succeeded", "exhausted"}
    # Nothing committed before the kill was asked again.
    assert not set(_sent(resumed_log)) & before
    # Only items in flight at the kill were asked twice: at most one per worker.
    asked_twice = set(_sent(killed_log)) & set(_sent(resumed_log))
    assert len(asked_twice) <= 8
    saved = len(_sent(tmp_path / "fresh.log")) - len(_sent(resumed_log))
    assert saved >= KILL_AFTER


@pytest.fixture(autouse=True)
def _posix_only() -> None:
    if sys.platform == "win32":  # pragma: no cover - SIGKILL and flock are POSIX
        pytest.skip("SIGKILL is POSIX")
