"""``stagedretry run`` on the sim backend: exit codes, resume, --fresh, logs and the summary."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Invocation, Job, records, write_jsonl

ALL_VALID = "seed = 1\ninvalid_rate = 0.0\ntemperature_slope = 0.0"
NEVER_VALID = "seed = 1\ninvalid_rate = 1.0"
REQUEST_LOG = 'concurrency = 4\nrequest_log = "out/requests.jsonl"'


def _requests(job: Job) -> list[dict[str, object]]:
    path = job.folder / "out/requests.jsonl"
    return (
        [json.loads(line) for line in path.read_text("utf-8").splitlines()] if path.exists() else []
    )


# -- exit codes --------------------------------------------------------------------------------


def test_exit_0_when_every_item_succeeded(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=12, sim=ALL_VALID)
    done = cli("run", str(job.pipeline), "--json")
    assert done.code == 0
    assert done.json()["items"]["succeeded"] == 12
    assert [row["id"] for row in job.lines()] == [f"item-{n:04d}" for n in range(1, 13)]


def test_exit_1_when_some_item_did_not_succeed(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=5, sim=NEVER_VALID)
    done = cli("run", str(job.pipeline), "--json")
    assert done.code == 1
    summary = done.json()
    assert summary["items"]["exhausted"] == 5
    assert summary["exit_code"] == 1
    assert {row["status"] for row in job.lines()} == {"exhausted"}


@pytest.mark.parametrize(
    "args",
    [
        ["run"],
        ["run", "a.toml", "--concurrency", "0"],
        ["run", "a.toml", "--no-such-option"],
        ["plan", "show", "a.toml", "--format", "svg"],
        ["caches", "delete"],
        ["nonsense"],
    ],
)
def test_exit_2_on_a_usage_error(cli: Callable[..., Invocation], args: list[str]) -> None:
    assert cli(*args).code == 2


def test_exit_2_when_the_gemini_backend_has_no_key(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2, sim="", run=REQUEST_LOG)
    text = job.pipeline.read_text("utf-8").replace(
        'kind = "sim"\n\n[backend.sim]\n', 'kind = "gemini"\n'
    )
    job.pipeline.write_text(text, "utf-8")
    done = cli("run", str(job.pipeline))
    assert done.code == 2
    assert (
        "error: the gemini backend needs an API key in the GEMINI_API_KEY environment variable"
        in done.err
    )
    assert not (job.folder / "out/requests.jsonl").exists()


def test_exit_2_when_another_run_holds_the_journal(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    from stagedretry._journal import Journal

    job = make_job(items=2)
    with Journal(job.journal, "someone-else"):
        done = cli("run", str(job.pipeline))
    assert done.code == 2
    assert "another stagedretry run is using the journal" in done.err


def test_exit_2_when_the_journal_is_not_a_journal(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2)
    job.journal.parent.mkdir(parents=True)
    job.journal.write_text("not a database, just text " * 100, "utf-8")
    done = cli("run", str(job.pipeline))
    assert done.code == 2
    assert "is not a stagedretry journal" in done.err


# -- the journal across runs -------------------------------------------------------------------


def test_a_second_run_sends_nothing_and_keeps_the_output(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=15, run=REQUEST_LOG)
    first = cli("run", str(job.pipeline), "--json")
    sent = len(_requests(job))
    before = job.output.read_text("utf-8")
    second = cli("run", str(job.pipeline), "--json")
    assert second.code == first.code
    assert len(_requests(job)) == sent
    assert job.output.read_text("utf-8") == before
    summary = second.json()
    assert summary["items"]["from_journal"] == 15
    assert summary["this_run"] == {"succeeded": 0, "failed": 0, "exhausted": 0, "cancelled": 0}
    # The job's totals (tokens, prompts) still cover every item.
    assert summary["prompts"] == first.json()["prompts"]
    assert summary["tokens"] == first.json()["tokens"]


def test_fresh_ignores_the_journal(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=6, run=REQUEST_LOG, sim=ALL_VALID)
    cli("run", str(job.pipeline))
    again = cli("run", str(job.pipeline), "--fresh", "--json")
    assert again.code == 0
    assert again.json()["this_run"]["succeeded"] == 6
    assert len(_requests(job)) == 12
    assert len(job.lines()) == 6


def test_new_and_changed_lines_are_run_the_rest_is_not(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=5, run=REQUEST_LOG, sim=ALL_VALID)
    cli("run", str(job.pipeline))
    rows = records(7)
    rows[2]["title"] = "A changed title"
    write_jsonl(job.input, rows)
    start = len(_requests(job))
    done = cli("run", str(job.pipeline), "--json")
    assert done.code == 0
    assert {r["item"] for r in _requests(job)[start:]} == {"item-0003", "item-0006", "item-0007"}
    assert [row["id"] for row in job.lines()] == [r["id"] for r in rows]


def test_a_changed_plan_does_not_reuse_old_results(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=4, run=REQUEST_LOG, sim=ALL_VALID)
    cli("run", str(job.pipeline))
    done = cli("run", str(job.pipeline), "--set", "plan.max_prompts=3", "--json")
    assert done.json()["this_run"]["succeeded"] == 4
    assert "results of other pipelines or of earlier versions of this one" in done.out + done.err
    assert len(_requests(job)) == 8
    db = sqlite3.connect(job.journal)
    try:
        fingerprints = db.execute(
            "SELECT COUNT(DISTINCT fingerprint), COUNT(*) FROM results"
        ).fetchone()
    finally:
        db.close()
    assert fingerprints == (2, 8)  # one row per item per pipeline fingerprint


def test_the_journal_is_sqlite_in_wal_mode_with_json_rows(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=3)
    cli("run", str(job.pipeline))
    db = sqlite3.connect(job.journal)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        rows = db.execute("SELECT item_id, status, result FROM results ORDER BY line").fetchall()
    finally:
        db.close()
    assert [r[0] for r in rows] == ["item-0001", "item-0002", "item-0003"]
    for item_id, status, text in rows:
        data = json.loads(text)  # plain JSON, no pickle
        assert data["id"] == item_id
        assert data["status"] == status
        assert data["attempts"]


# -- overrides -----------------------------------------------------------------------------------


def test_dedicated_flags_and_set_override_the_file(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = make_job(items=3, sim=ALL_VALID)
    monkeypatch.chdir(tmp_path)
    done = cli(
        "run",
        str(job.pipeline),
        "--output",
        "elsewhere/out.jsonl",
        "--journal",
        "elsewhere/j.sqlite",
        "--concurrency",
        "2",
        "--set",
        "name=renamed",
        "--set",
        'input.template="Title: {title}"',
        "--json",
    )
    assert done.code == 0
    summary = done.json()
    assert summary["pipeline"] == "renamed"
    # Paths given on the command line are relative to the current directory.
    assert summary["output"] == str(tmp_path / "elsewhere/out.jsonl")
    assert (tmp_path / "elsewhere/out.jsonl").exists()
    assert not job.output.exists()


# -- logs ----------------------------------------------------------------------------------------


def test_the_log_file_has_json_lines_with_item_stage_attempt_and_outcome(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], tmp_path: Path
) -> None:
    job = make_job(items=8, sim="seed = 2\ninvalid_rate = 0.3\ntransient_rate = 0.2")
    log = tmp_path / "logs/run.jsonl"
    done = cli("run", str(job.pipeline), "--log-file", str(log), "--no-progress")
    assert done.code in (0, 1)
    debug_log = tmp_path / "logs/debug.jsonl"
    cli("run", str(job.pipeline), "--fresh", "--log-level", "debug", "--log-file", str(debug_log))
    debug_events = [json.loads(line) for line in debug_log.read_text("utf-8").splitlines()]
    transitions = [e for e in debug_events if e["event"] == "transition"]
    assert transitions
    assert all(e["stage"] == e["source"] and e["attempt"] >= 1 for e in transitions)
    events = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    assert events
    for event in events:
        for key in ("item", "stage", "attempt", "outcome", "event", "level", "timestamp"):
            assert key in event, (key, event)
    attempts = [e for e in events if e["event"] == "attempt"]
    assert attempts
    assert all(e["item"] and e["stage"] and e["attempt"] >= 1 and e["outcome"] for e in attempts)
    assert {e["outcome"] for e in attempts} >= {"succeeded", "invalid", "transient"}
    for event in events:
        if event["item"] is not None and event["event"] != "item_start":
            assert event["stage"], event
            assert event["attempt"] is not None, event
            assert event["outcome"], event
    recorded = [e for e in events if e["event"] == "item_recorded"]
    assert len(recorded) == 8
    # The default file level is info: no debug events; the console stays quiet (warnings only).
    assert not [e for e in events if e["level"] == "debug"]
    assert "attempt" not in done.err


def test_log_level_debug_shows_transitions_on_the_console(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2, sim=NEVER_VALID)
    done = cli("run", str(job.pipeline), "--log-level", "debug", "--no-progress")
    assert "transition" in done.err
    assert "item=item-0001" in done.err


def test_the_run_deadline_stops_taking_items_and_the_next_run_finishes(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(
        items=40,
        sim="seed = 1\ninvalid_rate = 0.0\nlatency = 0.05",
        run="concurrency = 2\ndeadline = 0.2",
    )
    stopped = cli("run", str(job.pipeline), "--json")
    assert stopped.code == 124  # ExitCode.DEADLINE: items are left, rerun to finish
    summary = stopped.json()
    assert summary["interrupted"] is True
    assert summary["stopped_by"] == "deadline"
    assert summary["exit_code"] == 124
    assert 0 < summary["items"]["succeeded"] < 40
    assert summary["items"]["pending"] == 40 - summary["items"]["succeeded"]
    assert summary["items"]["cancelled"] == 0
    assert "run the same command again to finish the job" in " ".join(summary["notes"])
    assert len(job.lines()) == summary["items"]["succeeded"]
    finished = cli("run", str(job.pipeline), "--set", "run.deadline=60", "--json")
    assert finished.code == 0
    assert len(job.lines()) == 40


def test_an_empty_input_is_a_successful_run_with_nothing_to_do(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(rows=[])
    done = cli("run", str(job.pipeline), "--json")
    assert done.code == 0
    assert done.json()["items"]["total"] == 0
    assert job.output.read_text("utf-8") == ""


def test_a_gemini_backend_needs_an_output_model(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2, sim="", run=REQUEST_LOG)
    text = job.pipeline.read_text("utf-8").replace(
        'kind = "sim"\n\n[backend.sim]\n', 'kind = "emulator"\n'
    )
    job.pipeline.write_text(text, "utf-8")
    for args in (["plan", "check"], ["run"]):
        done = cli(*args, str(job.pipeline))
        assert done.code == 2
        assert (
            "pipeline.toml: output: the emulator backend needs output.model or output.schema"
            in done.err
        )
    assert not (job.folder / "out/requests.jsonl").exists()


def test_a_changed_line_shows_no_stale_result_while_it_waits_to_run(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(
        items=5, sim="seed = 1\ninvalid_rate = 0.0\nlatency = 0.1", run="concurrency = 1"
    )
    assert cli("run", str(job.pipeline)).code == 0
    rows = records(5)
    changed = dict(rows[4], title="Changed")
    write_jsonl(job.input, [*rows[:4], *records(1, start=9), changed])
    # Stopped after the first item it takes (the new one): the changed one never ran.
    stopped = cli("run", str(job.pipeline), "--set", "run.deadline=0.01", "--json")
    assert stopped.json()["items"]["pending"] == 1
    assert [row["id"] for row in job.lines()] == [
        "item-0001", "item-0002", "item-0003", "item-0004", "item-0009",
    ]  # fmt: skip


def test_exit_4_when_the_output_cannot_be_written(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2, run=REQUEST_LOG)
    job.output.parent.mkdir(parents=True)
    (job.output.parent / "results.jsonl.tmp").mkdir()  # where the rebuild writes first
    done = cli("run", str(job.pipeline))
    assert done.code == 4
    assert f"cannot write the output file {str(job.output)!r}: Is a directory" in done.err
    assert not (job.folder / "out/requests.jsonl").exists()
