"""``[run] mode = "batch"``: the same job through batch jobs, the same results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import stagedretry as sr
from stagedretry.cli._batch_mode import check_batch_backend
from stagedretry.cli._exit import ExitCode
from stagedretry.cli.pipeline import RunMode, load_pipeline
from strategies.backend import BackendError

from .conftest import Invocation, Job


def _by_id(job: Job) -> dict[str, tuple[Any, ...]]:
    return {
        line["id"]: (line["status"], line.get("prompts"), line.get("output"))
        for line in job.lines()
    }


def _notes(done: Invocation) -> list[str]:
    notes: list[str] = done.json()["notes"]
    return notes


@pytest.mark.parametrize("how", ["file", "--set"])
def test_batch_mode_gives_each_item_the_result_of_the_synchronous_mode(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], how: str
) -> None:
    sync = make_job(items=12)
    batch = make_job(items=12, run='concurrency = 4\nmode = "batch"' if how == "file" else "")
    first = cli("run", str(sync.pipeline), "--json", "--no-progress")
    args = ("--set", "run.mode=batch") if how == "--set" else ()
    second = cli("run", str(batch.pipeline), "--json", "--no-progress", *args)
    assert first.code == second.code
    assert _by_id(batch) == _by_id(sync)
    assert first.json()["prompts"] == second.json()["prompts"]
    [note] = _notes(second)
    assert note.startswith("batch mode: ")
    assert " batch job(s) submitted, 0 of an earlier run re-attached to, 0 request(s) " in note
    assert not any("batch" in n for n in _notes(first))


def test_the_summary_says_why_a_configured_cache_is_not_used(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=3, run='mode = "batch"')
    (job.folder / "rules.md").write_text("Be precise. " * 50, "utf-8")
    job.pipeline.write_text(
        job.pipeline.read_text("utf-8") + '\n[cache]\nsystem_instruction = "rules.md"\n', "utf-8"
    )
    done = cli("run", str(job.pipeline), "--json", "--no-progress")
    assert done.code in (ExitCode.OK, ExitCode.SOME_FAILED)
    assert any(
        note.startswith("the [cache] context cache was not used: explicit caches inside batch ")
        for note in _notes(done)
    )
    assert done.json()["tokens"]["cached"] == 0


def test_a_resumed_batch_job_runs_nothing_twice(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=5, run='mode = "batch"')
    cli("run", str(job.pipeline), "--json", "--no-progress")
    again = cli("run", str(job.pipeline), "--json", "--no-progress")
    assert "nothing to do: all 5 items are in the journal (--fresh to redo)" in _notes(again)


def test_a_mode_that_is_not_sync_or_batch_is_one_sentence(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2, run='mode = "Batch"')
    done = cli("run", str(job.pipeline), "--no-progress")
    assert done.code == ExitCode.USAGE
    assert "pipeline.toml: run.mode: expected one of sync, batch, got the string 'Batch'" in (
        done.err
    )
    assert "Traceback" not in done.err


def test_a_backend_that_cannot_run_batch_jobs_is_refused_naming_run_mode(
    make_job: Callable[..., Job],
) -> None:
    pipeline = load_pipeline(make_job(items=1, run='mode = "batch"').pipeline)
    assert pipeline.run.mode is RunMode.BATCH

    class Plain:
        async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
            raise AssertionError("never sent")

        def classify(self, exc: BaseException) -> sr.Outcome | None:
            return None

    with pytest.raises(BackendError) as caught:
        check_batch_backend(pipeline, Plain())
    assert str(caught.value) == (
        'pipeline.toml: run.mode: the sim backend cannot run batch jobs; use mode = "sync" '
        "(the default), or a backend that can"
    )


def test_the_request_log_has_a_line_per_request_sent_in_a_batch_job(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=6, run='mode = "batch"\nrequest_log = "out/requests.jsonl"')
    done = cli("run", str(job.pipeline), "--json", "--no-progress")
    lines = (job.folder / "out" / "requests.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == done.json()["attempts"] > 6
