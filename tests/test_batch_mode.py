"""The batch execution mode: a batch is only another way to deliver responses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry import OutcomeKind
from stagedretry._batch_journal import BatchLedger
from stagedretry.testing import (
    JobEnd,
    JobStep,
    ScriptedStrategy,
    ScriptStep,
    VirtualClock,
    outcome_scripts,
    plans,
)

LADDER = sr.Plan.ladder()
IDS = ("a", "b", "c", "d", "e")


def items(ids: tuple[str, ...] | list[str] = IDS) -> list[sr.WorkItem]:
    return [sr.WorkItem(i, f"prompt {i}") for i in ids]


def per_item(batch: sr.BatchResult[Any]) -> dict[str, tuple[Any, ...]]:
    """What must not depend on how responses were delivered."""
    return {
        r.id: (
            r.status,
            tuple((a.stage, a.outcome) for a in r.attempts),
            r.prompts,
            r.usage,
            r.reason,
        )
        for r in batch.results
    }


async def run_mode(
    plan: sr.Plan,
    scripts: dict[str, Any],
    *,
    batch: sr.BatchMode | None,
    concurrency: int = 3,
    ids: tuple[str, ...] = IDS,
    jobs: tuple[JobStep, ...] = (),
) -> tuple[sr.BatchResult[Any], ScriptedStrategy, sr.Runner[Any]]:
    strategy = ScriptedStrategy(scripts, jobs=jobs)
    runner = sr.Runner(
        plan,
        strategy,
        validator=strategy.validator(),
        clock=VirtualClock(),
        concurrency=concurrency,
        seed=1,
        batch=batch,
    )
    return await runner.run(items(ids)), strategy, runner


item_scripts = st.fixed_dictionaries({i: outcome_scripts(max_len=8) for i in IDS[:4]})


@settings(max_examples=80)
@given(plan=plans(deadlines=False), scripts=item_scripts, concurrency=st.integers(1, 4))
async def test_batch_and_sync_give_each_item_the_same_result(
    plan: sr.Plan, scripts: dict[str, Any], concurrency: int
) -> None:
    ids = IDS[:4]
    sync, _, _ = await run_mode(plan, scripts, batch=None, concurrency=concurrency, ids=ids)
    batch, strategy, runner = await run_mode(
        plan, scripts, batch=sr.BatchMode(), concurrency=concurrency, ids=ids
    )
    assert per_item(batch) == per_item(sync)
    # Every request went out in exactly one job, each job one stage.
    keys = [key for job in strategy.jobs.values() for key in job.keys]
    assert len(keys) == len(set(keys)) == len(strategy.requests)
    assert runner.batch_stats.submitted == len(strategy.jobs)


job_steps = st.builds(
    JobStep,
    st.sampled_from(list(JobEnd)),
    st.integers(0, 4),
    delay=st.none() | st.floats(1.0, 5000.0),
)


@settings(max_examples=60)
@given(
    plan=plans(deadlines=False),
    scripts=item_scripts,
    jobs=st.lists(job_steps, max_size=6).map(tuple),
    concurrency=st.integers(1, 4),
)
async def test_jobs_that_do_not_answer_resend_only_their_unanswered_requests(
    plan: sr.Plan, scripts: dict[str, Any], jobs: tuple[JobStep, ...], concurrency: int
) -> None:
    ids = IDS[:4]
    sync, _, _ = await run_mode(plan, scripts, batch=None, concurrency=concurrency, ids=ids)
    # Enough jobs per request that the cap never bites: the results must then be the same.
    mode = sr.BatchMode(max_submits=len(jobs) + 1)
    batch, strategy, runner = await run_mode(
        plan, scripts, batch=mode, concurrency=concurrency, ids=ids, jobs=jobs
    )
    assert per_item(batch) == per_item(sync)
    answered: set[str] = set()
    unanswered: set[str] = set()
    seen: set[str] = set()
    for job in strategy.jobs.values():  # in the order submitted
        keys = set(job.keys)
        assert not answered & keys, "an answered request was sent again"
        # A request sent before is sent again only after a job left it unanswered.
        assert keys & seen <= unanswered
        seen |= keys
        unanswered -= keys
        answered |= set(job.answered)
        unanswered |= set(job.keys) - set(job.answered)
    assert not unanswered  # every request was answered in the end
    resent = sum(len(j.keys) - len(j.answered) for j in strategy.jobs.values())
    assert runner.batch_stats.resent == resent


@settings(max_examples=40)
@given(
    plan=plans(deadlines=False, max_stages=4),
    scripts=item_scripts,
    kill_at=st.floats(1.0, 600.0),
    concurrency=st.integers(1, 4),
)
async def test_a_killed_run_resumes_by_reattaching_and_pays_nothing_twice(
    plan: sr.Plan,
    scripts: dict[str, Any],
    kill_at: float,
    concurrency: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ids = IDS[:4]
    whole, paid_once, _ = await run_mode(plan, scripts, batch=sr.BatchMode(), ids=ids)
    path = tmp_path_factory.mktemp("j") / "journal.sqlite"
    strategy = ScriptedStrategy(scripts)  # the service: it keeps its jobs across runs

    def runner() -> sr.Runner[Any]:
        return sr.Runner(
            plan,
            strategy,
            validator=strategy.validator(),
            clock=clock,
            concurrency=concurrency,
            batch=sr.BatchMode(),
        )

    clock = VirtualClock()
    first = asyncio.ensure_future(runner().run(items(ids), journal=sr.Journal(path)))
    await clock.sleep(kill_at)
    first.cancel()  # as abrupt as the process allows: the items in flight end cancelled
    await asyncio.gather(first, return_exceptions=True)
    submitted = strategy.submissions
    second = runner()
    await second.run(items(ids), journal=sr.Journal(path))
    with sr.Journal(path) as journal:
        journal.bind(second.fingerprint)
        resumed = {r.id: r for r in journal.results()}
    expected = per_item(whole)
    assert {i: per_item_of(r) for i, r in resumed.items()} == expected
    keys = [key for job in strategy.jobs.values() for key in job.keys]
    assert len(keys) == len(set(keys)), "a request was sent in two jobs"
    # The service answered as many requests as for the run that was never killed.
    assert len(strategy.requests) == len(paid_once.requests)
    assert strategy.submissions >= submitted


def per_item_of(r: sr.ItemResult[Any]) -> tuple[Any, ...]:
    return (
        r.status,
        tuple((a.stage, a.outcome) for a in r.attempts),
        r.prompts,
        r.usage,
        r.reason,
    )


# -- examples ------------------------------------------------------------------------------------


async def test_a_round_groups_its_requests_by_stage_into_one_job_each() -> None:
    scripts = {"a": [ScriptStep("invalid", fields=["year"])], "b": ["invalid"]}
    batch, strategy, runner = await run_mode(LADDER, scripts, batch=sr.BatchMode(), concurrency=5)
    jobs = list(strategy.jobs.values())
    # Round 1: the five items in one job of the first stage; round 2: a's repair and b's
    # full retry at two stages, so two jobs.
    assert [(j.stage, len(j.keys)) for j in jobs] == [
        ("full_t0", 5),
        ("full_t25", 1),
        ("partial_t0", 1),
    ]
    assert runner.batch_stats == sr.BatchStats(submitted=3)
    assert batch.counts[sr.ItemStatus.SUCCEEDED] == 5


async def test_a_strategy_without_batch_jobs_is_refused_at_construction() -> None:
    class Plain:
        async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
            return sr.Response("{}")

        def classify(self, exc: BaseException) -> sr.Outcome | None:
            return None

    with pytest.raises(TypeError, match=r"^Plain cannot run in batch mode: it has no "):
        sr.Runner(LADDER, Plain(), batch=sr.BatchMode())
    with pytest.raises(TypeError, match="batch= takes a BatchMode"):
        sr.Runner(LADDER, ScriptedStrategy(), batch="batch")  # type: ignore[call-overload]


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_wait", 0), ("max_wait", float("inf")), ("max_submits", 0), ("max_submits", True)],
)
def test_batch_mode_refuses_values_out_of_range(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"BatchMode.{field} must be"):
        sr.BatchMode(**{field: value})  # type: ignore[arg-type]


async def test_a_request_no_job_answers_ends_transient_after_max_submits() -> None:
    lost = JobStep(JobEnd.EXPIRED)
    plan = sr.Plan(stages=(sr.Stage("only", max_attempts=1),), max_prompts=3)
    batch, strategy, _ = await run_mode(
        plan, {}, batch=sr.BatchMode(max_submits=2), ids=("a",), jobs=(lost, lost)
    )
    [result] = batch.results
    assert result.status is sr.ItemStatus.EXHAUSTED
    assert [a.outcome for a in result.attempts] == [OutcomeKind.TRANSIENT]
    assert result.attempts[0].error == (
        "2 batch jobs ended without answering this request (the last, 'batches/scripted-2', "
        "ended JOB_STATE_EXPIRED)"
    )
    assert strategy.submissions == 2
    assert strategy.requests == []  # nothing was ever answered: no script step was played


async def test_a_lost_job_sends_its_requests_again() -> None:
    batch, _, runner = await run_mode(
        LADDER, {}, batch=sr.BatchMode(), ids=("a", "b"), jobs=(JobStep(JobEnd.LOST),)
    )
    assert batch.counts[sr.ItemStatus.SUCCEEDED] == 2
    assert batch.prompts == 2  # the lost job cost no prompt
    assert runner.batch_stats == sr.BatchStats(submitted=2, resent=2)


async def test_a_refused_submission_waits_and_is_sent_again() -> None:
    refused = JobStep(error=sr.RateLimited("429 too many jobs", retry_after=30.0))
    clock = VirtualClock()
    strategy = ScriptedStrategy(jobs=(refused, refused))
    runner = sr.Runner(
        LADDER, strategy, validator=strategy.validator(), clock=clock, batch=sr.BatchMode()
    )
    batch = await runner.run(items(("a",)))
    assert batch.results[0].status is sr.ItemStatus.SUCCEEDED
    assert batch.results[0].attempts[0].outcome is OutcomeKind.SUCCEEDED
    assert strategy.submissions == 3
    assert clock.monotonic() >= 60.0  # two server delays waited
    assert runner.batch_stats.submitted == 1


async def test_a_submission_refused_for_good_gives_each_request_that_outcome() -> None:
    bad = JobStep(error=sr.FatalError("400 the request is invalid"))
    batch, _, _ = await run_mode(LADDER, {}, batch=sr.BatchMode(), ids=("a", "b"), jobs=(bad,))
    assert [r.status for r in batch.results] == [sr.ItemStatus.FAILED] * 2
    assert all(r.reason == "400 the request is invalid" for r in batch.results)


async def test_a_submission_that_stops_the_run_cancels_its_items() -> None:
    stop = JobStep(error=sr.StopRun("403 the key was rejected"))
    with pytest.raises(sr.RunStopped, match="403 the key was rejected") as caught:
        await run_mode(LADDER, {}, batch=sr.BatchMode(), ids=("a", "b"), jobs=(stop,))
    batch = caught.value.batch
    assert batch is not None
    assert [r.status for r in batch.results] == [sr.ItemStatus.CANCELLED] * 2
    assert all(r.attempts == () for r in batch.results)


async def test_per_request_errors_in_a_job_are_classified_item_by_item() -> None:
    scripts = {"a": ["fatal"], "b": ["rate_limited"], "c": ["transient"]}
    sync, _, _ = await run_mode(LADDER, scripts, batch=None, ids=("a", "b", "c"))
    batch, _, _ = await run_mode(LADDER, scripts, batch=sr.BatchMode(), ids=("a", "b", "c"))
    assert per_item(batch) == per_item(sync)
    assert [a.outcome for a in batch.results[1].attempts] == [
        OutcomeKind.RATE_LIMITED,
        OutcomeKind.SUCCEEDED,
    ]


async def test_the_items_deadline_bounds_a_parked_request() -> None:
    plan = sr.Plan(stages=(sr.Stage("only"),), deadline=100.0)
    strategy = ScriptedStrategy(batch_delay=10_000.0)
    runner = sr.Runner(
        plan, strategy, validator=strategy.validator(), clock=VirtualClock(), batch=sr.BatchMode()
    )
    batch = await runner.run(items(("a",)))
    [result] = batch.results
    assert result.status is sr.ItemStatus.EXHAUSTED
    assert result.reason == "deadline passed"
    assert [a.outcome for a in result.attempts] == [OutcomeKind.TRANSIENT]


async def test_a_job_past_max_wait_ends_its_requests_transient() -> None:
    plan = sr.Plan(stages=(sr.Stage("only", max_attempts=1),))
    strategy = ScriptedStrategy(batch_delay=10_000.0)
    runner = sr.Runner(
        plan,
        strategy,
        validator=strategy.validator(),
        clock=VirtualClock(),
        batch=sr.BatchMode(max_wait=600.0),
    )
    [result] = (await runner.run(items(("a",)))).results
    assert result.attempts[0].outcome is OutcomeKind.TRANSIENT
    assert result.attempts[0].error == (
        "the batch job 'batches/scripted-1' was not done 600 s after it was submitted or "
        "re-attached"
    )


@pytest.mark.parametrize("how", ["drain", "stop", "cancel"])
async def test_stopping_while_jobs_run_cancels_the_items_and_the_next_run_reattaches(
    how: str, tmp_path: Path
) -> None:
    clock = VirtualClock()
    strategy = ScriptedStrategy(batch_delay=3600.0)
    path = tmp_path / "journal.sqlite"

    def runner() -> sr.Runner[Any]:
        return sr.Runner(
            LADDER, strategy, validator=strategy.validator(), clock=clock, batch=sr.BatchMode()
        )

    first = runner()
    task = asyncio.ensure_future(first.run(items(("a", "b")), journal=sr.Journal(path)))
    await clock.sleep(100.0)
    assert strategy.submissions == 1
    if how == "drain":
        first.drain()
    elif how == "stop":
        first.stop("spend cap reached")
    else:
        first.cancel()
    done = await asyncio.gather(task, return_exceptions=True)
    if how == "stop":
        assert isinstance(done[0], sr.RunStopped)
        batch = done[0].batch
    else:
        batch = done[0]
    assert isinstance(batch, sr.BatchResult)
    assert [r.status for r in batch.results] == [sr.ItemStatus.CANCELLED] * 2
    if how == "drain":
        assert batch.results[0].reason == (
            "drained while waiting for a batch job: the next run takes the item again, "
            "re-attaching to a job already sent"
        )
    assert clock.monotonic() < 3600.0  # nobody waited for the job
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    with sr.Journal(path, first.fingerprint) as journal:
        [job] = BatchLedger(journal).jobs()
    assert (job.name, job.entries, job.consumed) == ("batches/scripted-1", 2, False)

    second = runner()
    batch = await second.run(items(("a", "b")), journal=sr.Journal(path))
    assert batch.counts[sr.ItemStatus.SUCCEEDED] == 2
    assert strategy.submissions == 1  # re-attached, not sent again
    assert second.batch_stats == sr.BatchStats(reattached=1)
    with sr.Journal(path, first.fingerprint) as journal:
        [job] = BatchLedger(journal).jobs()
    assert job.consumed


async def test_the_strategys_own_resources_are_not_prepared_in_batch_mode() -> None:
    prepared: list[str] = []

    class Cache:
        name = "cache"

        async def prepare(self, clock: sr.Clock) -> object:
            prepared.append("prepare")
            return object()

        def needs_renewal(self, handle: object, clock: sr.Clock) -> bool:
            return False

        async def renew(self, handle: object, reason: sr.RenewReason, clock: sr.Clock) -> object:
            return handle

        async def close(self, handle: object) -> None:
            return None

    class WithCache(ScriptedStrategy):
        def shared_resources(self) -> tuple[sr.SharedResource, ...]:
            return (Cache(),)

    strategy = WithCache()
    batch_runner = sr.Runner(LADDER, strategy, clock=VirtualClock(), batch=sr.BatchMode())
    await batch_runner.run(items(("a",)))
    assert prepared == []
    await sr.Runner(LADDER, strategy, clock=VirtualClock()).run(items(("a",)))
    assert prepared == ["prepare"]


async def test_forgetting_a_jobs_results_forgets_its_batch_jobs(tmp_path: Path) -> None:
    strategy = ScriptedStrategy()
    runner = sr.Runner(LADDER, strategy, clock=VirtualClock(), batch=sr.BatchMode())
    path = tmp_path / "journal.sqlite"
    await runner.run(items(("a", "b")), journal=sr.Journal(path))
    with sr.Journal(path, runner.fingerprint) as journal:
        ledger = BatchLedger(journal)
        assert [(j.entries, j.consumed) for j in ledger.jobs()] == [(2, True)]
        journal.discard()
        assert ledger.jobs() == []
        assert ledger.known() == {}
