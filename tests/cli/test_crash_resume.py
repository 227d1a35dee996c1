"""``kill -9`` at random moments, then resume: the same output as an uninterrupted run.

The child process logs one console line per attempt; the test reads them from
the child's stderr and kills it after a random number of attempts (zero: while
it starts up).  The request log (written before each request) and the journal
(read straight from SQLite after each kill) show that no item whose result was
committed is ever sent again, and that an item is committed the moment it ends:
any line the child logged after an item's ``item_end`` was logged after its
commit, so every such item must be in the journal after the kill.
"""

from __future__ import annotations

import json
import random
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

from .conftest import Job, command, invoke, sim_pipeline

ITEMS = 300
KILLS = 10
SIM = """seed = 11
invalid_rate = 0.25
transient_rate = 0.1
rate_limit_rate = 0.03
retry_after = 0.01
latency = 0.01"""
RUN = 'concurrency = 8\nrequest_log = "out/requests.jsonl"'
_ATTEMPT = re.compile(r"\] attempt\s")
_STARTED = re.compile(r"\] run_start\s")
_ENDED = re.compile(r"\] item_end\s.*\bitem=(\S+)")


def _job(folder: Path) -> Job:
    return sim_pipeline(folder, items=ITEMS, sim=SIM, run=RUN)


def _committed(journal: Path) -> set[str]:
    db = sqlite3.connect(journal)
    try:
        rows = db.execute("SELECT item_id FROM results WHERE status != 'cancelled'").fetchall()
    finally:
        db.close()
    return {row[0] for row in rows}


def _requests(log: Path) -> list[dict[str, str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text("utf-8").splitlines()]


def _run_and_kill(job: Job, attempts: int, env: dict[str, str]) -> tuple[bool, set[str]]:
    """Start a run, kill it after *attempts* attempts.

    Whether it was killed (False: it finished first), and the items whose
    ``item_end`` line was followed by another line before the kill.
    """
    child = subprocess.Popen(
        command("run", str(job.pipeline), "--no-progress", "--log-level", "info"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stderr is not None
    seen = 0
    killed = False
    ended: list[str] = []
    for line in child.stderr:
        if (attempts == 0 and _STARTED.search(line)) or (
            _ATTEMPT.search(line) and (seen := seen + 1) >= attempts
        ):
            child.send_signal(signal.SIGKILL)
            killed = True
            break
        if match := _ENDED.search(line):
            ended.append(match[1])
    child.stderr.close()
    code = child.wait(timeout=30)
    if killed:
        assert code == -signal.SIGKILL
    # The line that triggered the kill followed every item_end read before it.
    return killed, set(ended)


def test_kill_nine_ten_times_then_resume(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    reference = _job(tmp_path / "reference")
    done = invoke(["run", str(reference.pipeline), "--no-progress"])
    assert done.code in (0, 1)
    expected = reference.lines()
    assert len(expected) == ITEMS

    job = _job(tmp_path / "killed")
    log = job.folder / "out/requests.jsonl"
    rng = random.Random(20240611)
    checkpoints: list[tuple[int, set[str]]] = []
    kills = 0
    ended_then_killed = 0
    for _ in range(KILLS):
        killed, ended = _run_and_kill(job, rng.choice([0, *range(1, 41)]), subprocess_env)
        kills += killed
        committed = _committed(job.journal) if job.journal.exists() else set()
        assert ended <= committed, f"ended but not committed: {sorted(ended - committed)[:5]}"
        ended_then_killed += len(ended)
        checkpoints.append((len(_requests(log)), committed))
        if job.output.exists():
            # Mid-run the file may end in a torn line; every whole line is a committed result.
            whole = job.output.read_text("utf-8").split("\n")[:-1]
            ids = [json.loads(line)["id"] for line in whole]
            assert len(ids) == len(set(ids))
            assert set(ids) <= committed
    assert kills == KILLS
    assert ended_then_killed > 0

    final = subprocess.run(
        command("run", str(job.pipeline), "--no-progress", "--json"),
        capture_output=True,
        env=subprocess_env,
        text=True,
        timeout=60,
        check=False,
    )
    assert final.returncode == done.code, final.stderr
    summary = json.loads(final.stdout)
    assert summary["items"]["total"] == ITEMS
    assert summary["items"]["pending"] == 0

    text = job.output.read_text("utf-8")
    assert text.endswith("\n")
    got = job.lines()
    assert got == expected  # item for item, in input order
    assert len({line["id"] for line in got}) == ITEMS

    sent = _requests(log)
    for position, committed in checkpoints:
        again = sorted({r["item"] for r in sent[position:]} & committed)
        assert not again, f"items sent again after their result was committed: {again[:5]}"
    # The killed runs did part of the work: the final run did not redo everything.
    assert checkpoints[-1][1]
