"""``run --retry STATUSES``: only the items whose latest result has one of them run again.

The issue's use: a job ends with failures; ``--retry failed,exhausted --set ...``
(another model, here a sim that answers well) runs only those, the output keeps
one line per item (the latest result, earlier successes untouched, in input
order), and the journal keeps both runs and every earlier result.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stagedretry import ItemStatus, Journal

from .conftest import Invocation, Job, command, records

FIRST = ("--set", "plan.max_prompts=1", "--json", "--no-progress")
"""One prompt per item: with the sim's invalid answers, some items end exhausted."""
STRONGER = ("--set", "backend.sim.invalid_rate=0.0", "--set", "input.template=Describe {title}.")
"""A "stronger model" that never answers wrong, and a template every record can fill."""
RETRY = ("--retry", "failed,exhausted", *FIRST, *STRONGER)


def _job(make_job: Callable[..., Job], n: int = 24) -> Job:
    rows: list[dict[str, Any] | str] = [*records(n)]
    rows.insert(3, {"id": "no-author", "title": "Orphan"})  # fails: the template reads {author}
    return make_job(
        rows=rows,
        sim="seed = 3\ninvalid_rate = 0.5",
        run='concurrency = 4\nrequest_log = "out/requests.jsonl"',
    )


def _sent(job: Job) -> list[str]:
    path = job.folder / "out/requests.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["item"] for line in path.read_text("utf-8").splitlines()]


def _ids(job: Job) -> list[str]:
    return [json.loads(line)["id"] for line in job.input.read_text("utf-8").splitlines()]


def test_retry_runs_only_the_failures_and_keeps_one_latest_line_per_item(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _job(make_job)
    first = cli("run", str(job.pipeline), *FIRST)
    assert first.code == 1
    before = {line["id"]: line for line in job.lines()}
    lines_before = job.output.read_text("utf-8").splitlines()
    bad = {i for i, line in before.items() if line["status"] != "succeeded"}
    statuses = {before[i]["status"] for i in bad}
    assert statuses == {"failed", "exhausted"}  # both kinds, so both are retried
    assert before["no-author"]["status"] == "failed"
    sent_first = len(_sent(job))

    retried = cli("run", str(job.pipeline), *RETRY)
    assert retried.code == 0, retried.err
    summary = retried.json()
    assert summary["items"]["succeeded"] == summary["items"]["total"] == len(before)
    assert summary["this_run"]["succeeded"] == len(bad)
    counts = {s: sum(before[i]["status"] == s for i in bad) for s in ("exhausted", "failed")}
    assert (
        f"--retry failed,exhausted: running {len(bad)} items again "
        f"({counts['exhausted']} exhausted, {counts['failed']} failed); "
        f"{len(before) - len(bad)} keep their latest result"
    ) in retried.err
    # Only the failures were sent again, each once.
    again = _sent(job)[sent_first:]
    assert sorted(again) == sorted(bad)
    # One line per item, in input order; the earlier successes are the same lines.
    after = job.lines()
    assert [line["id"] for line in after] == _ids(job)
    assert all(line["status"] == "succeeded" for line in after)
    lines_after = job.output.read_text("utf-8").splitlines()
    kept = [line for line in lines_before if json.loads(line)["id"] not in bad]
    assert kept == [line for line in lines_after if json.loads(line)["id"] not in bad]

    # The journal keeps both runs, and each retried item's earlier result.
    with Journal(job.journal, summary["fingerprint"]) as journal:
        runs = journal.runs()
        assert len(runs) == 2
        assert all(run.finished_at is not None for run in runs)
        entries = {e.result.id: e for e in journal.entries()}
        assert {entries[i].run for i in bad} == {runs[1].id}
        assert {entries[i].run for i in entries if i not in bad} == {runs[0].id}
        for item in bad:
            history = journal.history(item)
            assert [h.result.status.value for h in history] == [before[item]["status"], "succeeded"]
            assert history[0].fingerprint != history[1].fingerprint == summary["fingerprint"]
            # The attempts paid for before are kept (an input error had none).
            assert bool(history[0].result.attempts) == (item != "no-author")
        assert journal.history("item-0001")[-1].result.status is ItemStatus.SUCCEEDED

    # The same command again: nothing left to retry, nothing sent.
    third = cli("run", str(job.pipeline), *RETRY)
    assert third.code == 0
    assert "--retry failed,exhausted: no item's latest result is failed or exhausted" in third.err
    assert len(_sent(job)) == sent_first + len(bad)
    assert [line["id"] for line in job.lines()] == _ids(job)


def test_retry_with_the_same_pipeline_keeps_the_earlier_result_in_the_history(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _job(make_job, n=12)
    first = cli("run", str(job.pipeline), *FIRST)
    failed = {line["id"] for line in job.lines() if line["status"] != "succeeded"}
    # Same fingerprint: the sim answers the same (seeded), so the same items fail again.
    again = cli("run", str(job.pipeline), "--retry", "exhausted,FAILED", *FIRST)
    assert again.code == 1
    fingerprint = first.json()["fingerprint"]
    assert again.json()["fingerprint"] == fingerprint
    assert sorted(_sent(job)[-len(failed) + 1 :]) == sorted(failed - {"no-author"})
    with Journal(job.journal, fingerprint) as journal:
        assert len(journal.runs()) == 2
        for item in failed:
            assert len(journal.history(item)) == 2
        assert journal.count() == len(_ids(job))  # one current row per item


def test_a_killed_retry_run_goes_on_without_paying_twice(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], subprocess_env: dict[str, str]
) -> None:
    job = _job(make_job, n=40)
    cli("run", str(job.pipeline), *FIRST)
    bad = {line["id"] for line in job.lines() if line["status"] != "succeeded"}
    assert len(bad) > 8
    sent_first = len(_sent(job))
    # The retry model still gets some wrong (they end exhausted again); slow enough to kill.
    retry = ("--retry", "failed,exhausted", "--set", "plan.max_prompts=1", "--no-progress")
    weaker = ("--set", "backend.sim.invalid_rate=0.3", "--set", "input.template=Describe {title}.")
    slow = ("--set", "backend.sim.latency=0.2", "--concurrency", "2")
    child = subprocess.Popen(
        command("run", str(job.pipeline), *retry, *weaker, *slow),
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while len(_sent(job)) < sent_first + 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    sent_at_kill = len(_sent(job))
    go_on = (*retry, "--json", *weaker, "--set", "backend.sim.latency=0", "--concurrency", "8")
    summary = cli("run", str(job.pipeline), *go_on).json()
    fingerprint = summary["fingerprint"]
    with Journal(job.journal, fingerprint) as journal:
        runs = journal.runs()
        killed = runs[1]
        assert killed.finished_at is None
        in_killed = {e.result.id: e.result.status for e in journal.entries() if e.run == killed.id}
    # Some items ended in the killed run, some of them wrong again: retried, not to be paid twice.
    assert ItemStatus.EXHAUSTED in in_killed.values()
    assert ItemStatus.SUCCEEDED in in_killed.values()
    after_kill = _sent(job)[sent_at_kill:]
    assert not set(after_kill) & set(in_killed)
    # Every item retried was sent again (those in flight at the kill twice), and no other.
    assert set(_sent(job)[sent_first:]) == bad
    ran_now = sum(summary["this_run"].values())
    assert ran_now == len(bad - set(in_killed))
    assert [line["id"] for line in job.lines()] == _ids(job)

    # The round is over: the same command chooses afresh (those still exhausted).
    still = {line["id"] for line in job.lines() if line["status"] != "succeeded"}
    assert still
    sent_before_third = len(_sent(job))
    third = cli("run", str(job.pipeline), *retry, "--json", *weaker)
    assert third.json()["fingerprint"] == fingerprint
    assert sorted(_sent(job)[sent_before_third:]) == sorted(still)


def test_fresh_says_what_it_forgot_before_anything_runs(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], subprocess_env: dict[str, str]
) -> None:
    job = make_job(items=6, sim="seed = 1\ninvalid_rate = 0.0")
    assert cli("run", str(job.pipeline), "--no-progress").code == 0
    done = subprocess.run(
        command("run", str(job.pipeline), "--fresh", "--no-progress"),
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0] == "--fresh: forgot 6 earlier results", done.stdout
    assert lines.count("--fresh: forgot 6 earlier results") == 1
    assert "Items" in done.stdout  # the summary comes after


def test_run_help_documents_retry(cli: Callable[..., Invocation]) -> None:
    helped = cli("run", "--help", width=200)
    assert "--retry STATUSES" in helped.out
    assert "--retry failed,exhausted" in helped.out


def test_retry_reads_a_journal_path_given_on_the_command_line(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], tmp_path: Path
) -> None:
    job = _job(make_job, n=6)
    elsewhere = tmp_path / "elsewhere.sqlite"
    cli("run", str(job.pipeline), *FIRST, "--journal", str(elsewhere))
    assert not job.journal.exists()
    missing = cli("run", str(job.pipeline), *RETRY)
    assert missing.code == 2
    assert "there is no journal at" in missing.err
    found = cli("run", str(job.pipeline), *RETRY, "--journal", str(elsewhere))
    assert found.code == 0, found.err


def test_lines_with_no_result_yet_run_too_and_are_counted(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _job(make_job, n=8)
    cli("run", str(job.pipeline), *FIRST)
    bad = {line["id"] for line in job.lines() if line["status"] != "succeeded"}
    with job.input.open("a", encoding="utf-8") as more:
        more.write(json.dumps({"id": "new-one", "title": "New", "author": "A"}) + "\n")
    sent_first = len(_sent(job))
    retried = cli("run", str(job.pipeline), *RETRY)
    assert retried.code == 0, retried.err
    assert f"running {len(bad)} items again" in retried.err
    assert "; 1 with no result yet run too" in retried.err
    assert sorted(_sent(job)[sent_first:]) == sorted(bad | {"new-one"})
    assert [line["id"] for line in job.lines()] == _ids(job)


def test_the_journal_keeps_both_runs_when_every_item_is_retried(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=6, sim="seed = 3\ninvalid_rate = 1.0")
    first = cli("run", str(job.pipeline), *FIRST)
    assert first.json()["items"]["exhausted"] == 6
    retried = cli("run", str(job.pipeline), *RETRY)
    assert retried.code == 0, retried.err
    with Journal(job.journal, retried.json()["fingerprint"]) as journal:
        runs = journal.runs()
        assert len(runs) == 2
        assert [run.stats["items"] for run in runs] == [6, 6]
