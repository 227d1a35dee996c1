"""Ctrl-C: once drains (in-flight items finish), twice cancels them; both print the summary.

The first press is sent when the child logs its first ``item_start`` (its
handlers are installed by then).  Requests take long enough that the press
always lands while the first items are in flight, however busy the machine:
half a second when the drain must wait for them, an hour when only a cancel
can end them.  The resumed runs set the latency to 0, which keeps the
pipeline's fingerprint (latency only delays an answer), so they reuse the
journal and finish at once.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

from .conftest import ENDLESS_SIM, SLOW_SIM, Job, command, resume, sim_pipeline

_STARTED = re.compile(r"\] item_start\s")
RUN = 'concurrency = 6\nrequest_log = "out/requests.jsonl"'


def _interrupt(job: Job, env: dict[str, str], *, times: int) -> tuple[int, dict[str, object], str]:
    """Start a run, press Ctrl-C *times* once items are in flight; its code, summary and stderr."""
    child = subprocess.Popen(
        command("run", str(job.pipeline), "--json", "--no-progress", "--log-level", "debug"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    err = []
    pressed = 0
    for line in child.stderr:
        err.append(line)
        # One press at a time: signals sent together may be delivered as one.
        if (pressed == 0 and _STARTED.search(line)) or (
            0 < pressed < times and "interrupted:" in line
        ):
            child.send_signal(signal.SIGINT)
            pressed += 1
            if pressed == times:
                break
    rest_out, rest_err = child.communicate(timeout=30)
    return child.returncode, json.loads(rest_out), "".join(err) + rest_err


def _statuses(journal: Path) -> dict[str, str]:
    db = sqlite3.connect(journal)
    try:
        return dict(db.execute("SELECT item_id, status FROM results").fetchall())
    finally:
        db.close()


def test_one_interrupt_lets_in_flight_items_finish_and_prints_the_summary(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    job = sim_pipeline(tmp_path / "job", items=300, sim=SLOW_SIM, run=RUN)
    code, summary, err = _interrupt(job, subprocess_env, times=1)
    assert code == 130  # ExitCode.INTERRUPTED: items are left
    assert "interrupted: taking no new items" in err
    assert summary["interrupted"] is True
    items = summary["items"]
    assert isinstance(items, dict)
    assert items["pending"] > 0
    assert items["cancelled"] == 0
    assert "cancelled" not in _statuses(job.journal).values()
    # Every item that was sent has its result: in flight ones were finished, not dropped.
    sent = {
        json.loads(line)["item"]
        for line in (job.folder / "out/requests.jsonl").read_text().splitlines()
    }
    assert sent == set(_statuses(job.journal))
    assert len(job.lines()) == len(sent)

    final = resume(job, subprocess_env)
    assert final["fingerprint"] == summary["fingerprint"]
    assert final["items"]["pending"] == 0
    assert final["items"]["from_journal"] == len(sent)
    assert len(job.lines()) == 300


def test_a_second_interrupt_cancels_in_flight_items_which_the_next_run_retries(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    job = sim_pipeline(tmp_path / "job", items=30, sim=ENDLESS_SIM, run=RUN)
    code, summary, err = _interrupt(job, subprocess_env, times=2)
    assert code == 130  # ExitCode.INTERRUPTED: cancelled items are left
    assert "cancelling the items in flight" in err
    this_run = summary["this_run"]
    assert isinstance(this_run, dict)
    # Nothing could end on its own: every item taken was in flight, and was cancelled.
    assert this_run["cancelled"] > 0
    assert sum(this_run.values()) == this_run["cancelled"]
    cancelled = {k for k, v in _statuses(job.journal).items() if v == "cancelled"}
    assert len(cancelled) == this_run["cancelled"]
    assert {row["id"] for row in job.lines() if row["status"] == "cancelled"} == cancelled

    final = resume(job, subprocess_env)
    assert final["fingerprint"] == summary["fingerprint"]
    assert final["this_run"]["succeeded"] == 30  # the cancelled items were run again
    assert final["items"]["cancelled"] == 0
    assert final["items"]["pending"] == 0
    statuses = _statuses(job.journal)
    assert len(statuses) == 30
    assert "cancelled" not in statuses.values()
    lines = job.lines()
    assert len(lines) == 30
    assert len({row["id"] for row in lines}) == 30
