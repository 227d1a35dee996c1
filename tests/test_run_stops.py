"""A failure of the run, not of an item (``StopRun``): the library side.

The run takes no new item and sends no new request; requests already out finish;
every item the stop caught ends ``cancelled`` (not final); ``run()`` and a stream
raise :class:`RunStopped` once the run has ended, with every finished result kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry.testing import ScriptedStrategy, ScriptStep, VirtualClock

K = sr.OutcomeKind


class Slow(ScriptedStrategy):
    """Each answer takes a second on the runner's clock, so the workers' requests overlap."""

    async def next_step(self, request: sr.Request, ctx: sr.StageContext) -> ScriptStep:
        await ctx.clock.sleep(1.0)
        return await super().next_step(request, ctx)


def items(n: int) -> list[tuple[str, str]]:
    return [(f"i{k:03d}", f"prompt {k}") for k in range(n)]


def runner(
    strategy: ScriptedStrategy,
    clock: VirtualClock,
    *,
    concurrency: int = 4,
    plan: sr.Plan | None = None,
    **options: Any,
) -> sr.Runner[Any]:
    return sr.Runner(
        plan or sr.Plan.ladder(),
        strategy,
        validator=strategy.validator(),
        concurrency=concurrency,
        clock=clock,
        **options,
    )


async def test_the_first_stop_takes_no_new_item_and_keeps_what_ended(
    virtual_clock: VirtualClock,
) -> None:
    strategy = ScriptedStrategy({"i010": [K.STOP_RUN]})
    seen: list[sr.ItemResult] = []
    run = runner(strategy, virtual_clock, concurrency=1, on_result=seen.append)

    with pytest.raises(sr.RunStopped, match="scripted run stop") as stopped:
        await run.run(items(200))

    batch = stopped.value.batch
    assert batch is not None
    # One worker: items 0-9 succeeded, item 10 met the stop, nothing after it was taken.
    assert [r.id for r in batch.results] == [f"i{k:03d}" for k in range(11)]
    assert batch.succeeded == 10
    (caught,) = [r for r in batch.results if not r.ok]
    assert caught.status is sr.ItemStatus.CANCELLED
    assert caught.reason == "run stopped: scripted run stop"
    assert caught.prompts == 0  # a refusal of the run is not the item's budget
    assert [a.outcome for a in caught.attempts] == [K.STOP_RUN]
    assert not caught.attempts[0].counted
    assert len(strategy.requests) == 11
    assert seen == list(batch.results)  # on_result saw each result as it ended
    assert run.state is sr.RunnerState.IDLE


async def test_requests_in_flight_finish_and_no_new_request_is_sent(
    virtual_clock: VirtualClock,
) -> None:
    # i000 stops the run at its first request; i001..i003 are in flight with it: their
    # first answer (invalid) would send a second request, which the stop withholds.
    scripts: dict[str, list[sr.OutcomeKind]] = {"i000": [K.STOP_RUN]}
    scripts |= {f"i{k:03d}": [K.INVALID] for k in range(1, 4)}
    strategy = Slow(scripts)

    with pytest.raises(sr.RunStopped) as stopped:
        await runner(strategy, virtual_clock, concurrency=4).run(items(50))

    batch = stopped.value.batch
    assert batch is not None
    assert len(strategy.requests) == 4
    assert batch.counts[sr.ItemStatus.CANCELLED] == 4
    for result in batch.results:
        assert (result.reason or "").startswith("run stopped: ")
    # The invalid answers already paid for are kept in the items' attempts.
    assert sum(r.prompts for r in batch.results) == 3


async def test_a_stream_yields_every_result_then_raises(virtual_clock: VirtualClock) -> None:
    strategy = ScriptedStrategy({"i005": [K.STOP_RUN]})
    got: list[sr.ItemResult] = []
    stream = runner(strategy, virtual_clock, concurrency=1).stream(items(20))

    async def read() -> None:
        async for result in stream:
            got.append(result)

    with pytest.raises(sr.RunStopped) as stopped:
        await read()

    assert [r.ok for r in got] == [True] * 5 + [False]
    assert stream.batch is stopped.value.batch
    assert stream.batch is not None
    assert stream.batch.items == 6
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_a_journal_holds_nothing_final_for_the_stop_and_the_same_run_finishes(
    virtual_clock: VirtualClock, tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite"
    stopping = ScriptedStrategy({"i007": [K.STOP_RUN]})
    run = runner(stopping, virtual_clock, concurrency=2)

    with pytest.raises(sr.RunStopped):
        await run.run(items(30), journal=sr.Journal(path))

    with sr.Journal(path, run.fingerprint) as journal:
        done = set(journal.done())
        held = list(journal.results())
        (last,) = journal.runs()[-1:]
    assert "i007" not in done
    assert all(r.status in (sr.ItemStatus.SUCCEEDED, sr.ItemStatus.CANCELLED) for r in held)
    assert last.stats["stopped"] == "scripted run stop"

    # The cause fixed: the same runner, the same journal, the same items.
    fixed = ScriptedStrategy()
    again = runner(fixed, virtual_clock, concurrency=2)
    assert again.fingerprint == run.fingerprint
    batch = await again.run(items(30), journal=sr.Journal(path))
    assert batch.resumed == len(done)
    assert batch.succeeded == 30 - len(done)
    assert {r.item_id for r in fixed.requests}.isdisjoint(done)  # nothing paid twice


async def test_a_resource_that_cannot_be_prepared_stops_the_run_gracefully(
    virtual_clock: VirtualClock,
) -> None:
    class Broken:
        name = "cache"

        async def prepare(self, clock: sr.Clock) -> Any:
            raise sr.StopRun("the API key was rejected")

        def needs_renewal(self, handle: Any, clock: sr.Clock) -> bool:
            return False

        async def renew(self, handle: Any, reason: sr.RenewReason, clock: sr.Clock) -> Any:
            return handle

        async def close(self, handle: Any) -> None:
            return None

    strategy = ScriptedStrategy()
    with pytest.raises(sr.ResourceError) as stopped:
        await runner(strategy, virtual_clock, resources=[Broken()]).run(items(100))

    assert isinstance(stopped.value, sr.RunStopped)
    assert str(stopped.value) == "could not prepare resource 'cache': the API key was rejected"
    batch = stopped.value.batch
    assert batch is not None
    assert batch.items <= 4  # the workers that were waiting for it, no more
    assert batch.counts[sr.ItemStatus.CANCELLED] == batch.items
    assert strategy.requests == []


async def test_a_401_of_any_http_stack_stops_the_run(virtual_clock: VirtualClock) -> None:
    class Unauthorized(Exception):
        status_code = 401

    class Rejecting:
        async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
            raise Unauthorized("401 Unauthorized")

        def classify(self, exc: BaseException) -> sr.Outcome | None:
            return None

    plan = sr.Plan.ladder()
    run = sr.Runner(plan, Rejecting(), clock=virtual_clock, concurrency=3)
    with pytest.raises(sr.RunStopped, match="401"):
        await run.run(items(30))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 25),
    concurrency=st.integers(1, 6),
    scripts=st.dictionaries(
        st.integers(0, 24).map(lambda k: f"i{k:03d}"),
        st.lists(st.sampled_from([K.SUCCEEDED, K.INVALID, K.TRANSIENT, K.STOP_RUN]), max_size=4),
        max_size=6,
    ),
)
def test_nothing_is_final_for_a_stop_and_nothing_is_lost(
    n: int, concurrency: int, scripts: dict[str, list[sr.OutcomeKind]]
) -> None:
    import asyncio

    clock = VirtualClock()
    strategy = Slow(scripts)
    plan = sr.Plan.ladder()

    async def go() -> tuple[sr.BatchResult[Any] | None, sr.RunStopped | None]:
        run = runner(strategy, clock, concurrency=concurrency, plan=plan)
        try:
            return await run.run(items(n)), None
        except sr.RunStopped as error:
            return error.batch, error

    batch, error = asyncio.run(go())
    assert batch is not None
    stopped = error is not None
    assert error is None or str(error) == "scripted run stop"
    met_stop = any(r.step.kind is K.STOP_RUN for r in strategy.requests)
    assert stopped is met_stop
    ids = [r.id for r in batch.results]
    assert len(ids) == len(set(ids)) == batch.items
    if not stopped:
        assert batch.items == n
    for result in batch.results:
        stops = [a for a in result.attempts if a.outcome is K.STOP_RUN]
        assert all(not a.counted for a in stops)
        if stops or (result.reason or "").startswith("run stopped"):
            # Never final: a later run takes it again.
            assert result.status is sr.ItemStatus.CANCELLED
    # After the first stop answer, only requests already out may still be answered.
    kinds = [r.step.kind for r in strategy.requests]
    if met_stop:
        assert len(kinds) - kinds.index(K.STOP_RUN) <= concurrency


def test_the_plan_checker_follows_one_item_so_refuses_a_stop() -> None:
    from stagedretry.testing import plan_state_machine

    with pytest.raises(ValueError, match="STOP_RUN"):
        plan_state_machine(sr.Plan.ladder(), outcomes=[K.SUCCEEDED, K.STOP_RUN])


def test_the_policy_stops_the_run_without_firing_a_trigger() -> None:
    from stagedretry._plan import Plan
    from stagedretry._policy import count, decide
    from stagedretry._state import ItemState

    plan = Plan.ladder()
    state = ItemState(sr.WorkItem("a", "p"), "full_t0", len(plan.stages), 0.0)
    stop = sr.Outcome(K.STOP_RUN, "")
    assert count(state, 0, stop) is False
    assert state.prompts == 0
    decision = decide(state, 0, plan, stop)
    assert decision.trigger is None
    assert decision.reason == "a failure of the run, not of the item"
    assert decide(state, 0, plan, sr.Outcome(K.STOP_RUN, "billing")).reason == "billing"


async def test_the_caller_stops_the_run_for_a_cost_ceiling(virtual_clock: VirtualClock) -> None:
    strategy = Slow()
    ended: list[sr.ItemResult] = []

    def ceiling(result: sr.ItemResult) -> None:
        ended.append(result)
        if sum(r.usage.input_tokens for r in ended) >= 50:  # five answers of 10 tokens
            run.stop("the job's token ceiling of 50 is reached")

    run = runner(strategy, virtual_clock, concurrency=2, on_result=ceiling)
    with pytest.raises(sr.RunStopped, match="token ceiling") as stopped:
        await run.run(items(40))

    batch = stopped.value.batch
    assert batch is not None
    assert batch.succeeded >= 5
    assert len(strategy.requests) <= 6  # the five, and what was in flight with the fifth
    assert batch.items == len(strategy.requests)
    run.stop("ignored: no run")  # between runs it does nothing
    assert run.state is sr.RunnerState.IDLE
