"""Cancellation, drain and timeouts: nothing swallowed, nothing left running, all accounted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable


class Gate:
    """A strategy whose requests wait until the test opens the gate (or for ever).

    It counts requests started and requests cancelled, and lets the test wait
    until *n* requests are in flight without any real sleep.
    """

    def __init__(self, *, answer: str = "ok", hang_for: float | None = None) -> None:
        self.answer = answer
        self.hang_for = hang_for  # on the engine's clock; None: wait for the gate
        self.open = asyncio.Event()
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self._in_flight = 0
        self._changed = asyncio.Event()

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        self.started.append(request.item_id)
        self._in_flight += 1
        self._changed.set()
        try:
            if self.hang_for is not None:
                await ctx.clock.sleep(self.hang_for)
            else:
                await self.open.wait()
        except asyncio.CancelledError:
            self.cancelled.append(request.item_id)
            raise
        finally:
            self._in_flight -= 1
        self.finished.append(request.item_id)
        return sr.Response(self.answer, sr.Usage(1, 1))

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None

    async def in_flight(self, n: int) -> None:
        """Return once *n* requests are waiting at the gate."""
        while self._in_flight < n:
            self._changed.clear()
            await self._changed.wait()


def items(n: int) -> list[tuple[str, str]]:
    return [(str(i), "p") for i in range(n)]


def others() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class TestCancelTheCaller:
    async def test_cancelling_run_cancels_in_flight_work(self, virtual_clock: VirtualClock) -> None:
        gate = Gate()
        runner = sr.Runner(sr.Plan.ladder(), gate, concurrency=4, clock=virtual_clock)
        before = others()
        task = asyncio.ensure_future(runner.run(items(10)))
        await gate.in_flight(4)

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert task.cancelled()
        assert sorted(gate.cancelled) == sorted(gate.started) == ["0", "1", "2", "3"]
        assert gate.finished == []
        await settle()
        assert others() == before

    async def test_cancelling_during_backoff(self) -> None:
        clock = VirtualClock(autojump=False)  # time stands still: the backoffs never end
        failed = asyncio.Event()
        calls = 0

        async def flaky(request: sr.Request, ctx: sr.StageContext) -> str:
            nonlocal calls
            calls += 1
            if calls == 2:
                failed.set()
            raise sr.TransientError("503")

        plan = sr.Plan([sr.Stage("ask")], backoff=sr.Backoff(100.0, 100.0, 1.0))
        runner = sr.Runner(plan, from_callable(flaky), concurrency=2, clock=clock, seed=5)
        task = asyncio.ensure_future(runner.run(items(2)))
        await failed.wait()
        await settle()
        assert clock.pending() == 2  # both workers asleep in their backoff

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert clock.pending() == 0
        assert calls == 2

    async def test_an_outer_timeout_is_not_swallowed(self, virtual_clock: VirtualClock) -> None:
        gate = Gate()
        runner = sr.Runner(sr.Plan.ladder(), gate, concurrency=3, clock=virtual_clock)
        before = others()

        with pytest.raises(TimeoutError):
            async with virtual_clock.timeout(60.0):
                await runner.run(items(5))

        assert virtual_clock.monotonic() == pytest.approx(60.0)
        assert sorted(gate.cancelled) == ["0", "1", "2"]
        await settle()
        assert others() == before

    async def test_cancelling_a_stream_consumer(self, virtual_clock: VirtualClock) -> None:
        gate = Gate()
        runner = sr.Runner(sr.Plan.ladder(), gate, concurrency=4, clock=virtual_clock)
        before = others()
        got: list[sr.ItemResult] = []

        async def consume() -> None:
            async for result in runner.stream(items(10)):
                got.append(result)

        task = asyncio.ensure_future(consume())
        await gate.in_flight(4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert got == []
        assert sorted(gate.cancelled) == ["0", "1", "2", "3"]
        await settle()
        assert others() == before

    async def test_closing_a_stream_early_stops_the_work(self, virtual_clock: VirtualClock) -> None:
        gate = Gate(hang_for=5.0)
        runner = sr.Runner(sr.Plan.ladder(), gate, concurrency=4, clock=virtual_clock)
        before = others()
        stream = runner.stream(items(100))

        first = await anext(stream)
        await stream.aclose()

        assert first.ok
        assert len(gate.started) < 100
        assert gate.cancelled  # the work in flight was stopped, not finished
        await settle()
        assert others() == before


class TestRunnerCancel:
    async def test_in_flight_items_end_cancelled(self, virtual_clock: VirtualClock) -> None:
        gate = Gate()
        runner = sr.Runner(sr.Plan.ladder(), gate, concurrency=4, clock=virtual_clock)
        task = asyncio.ensure_future(runner.run(items(10)))
        await gate.in_flight(4)

        runner.cancel()
        batch = await task

        assert sorted(r.id for r in batch.results) == ["0", "1", "2", "3"]
        for result in batch.results:
            assert result.status is sr.ItemStatus.CANCELLED
            assert result.reason == "cancelled"
            assert result.attempts == ()
            assert result.prompts == 0
        assert batch.counts[sr.ItemStatus.CANCELLED] == 4
        assert batch.items == 4
        assert sorted(gate.cancelled) == ["0", "1", "2", "3"]
        assert len(gate.started) == 4  # nothing new was taken

    async def test_cancelled_result_keeps_the_attempts_so_far(
        self, virtual_clock: VirtualClock
    ) -> None:
        calls = 0
        hanging = asyncio.Event()

        async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
            nonlocal calls
            calls += 1
            if calls == 1:
                return "{not json"
            hanging.set()
            await asyncio.Event().wait()
            return "unreachable"

        runner = sr.Runner(
            sr.Plan.ladder(),
            from_callable(answer),
            validator=sr.validators.json_object(),
            clock=virtual_clock,
        )
        task = asyncio.ensure_future(runner.run(items(1)))
        await hanging.wait()

        runner.cancel()
        (result,) = (await task).results

        assert result.status is sr.ItemStatus.CANCELLED
        assert result.prompts == 1
        assert [(a.stage, a.outcome) for a in result.attempts] == [
            ("full_t0", sr.OutcomeKind.INVALID)
        ]
        assert result.last_invalid == "{not json"

    async def test_stream_yields_cancelled_results_and_ends(
        self, virtual_clock: VirtualClock
    ) -> None:
        gate = Gate()
        runner = sr.Runner(sr.Plan.ladder(), gate, concurrency=3, clock=virtual_clock)
        before = others()
        stream = runner.stream(items(10))
        seen: list[tuple[str, sr.ItemStatus]] = []

        async def consume() -> None:
            async for result in stream:
                seen.append((result.id, result.status))

        task = asyncio.ensure_future(consume())
        await gate.in_flight(3)
        runner.cancel()
        await task

        assert sorted(seen) == [(str(i), sr.ItemStatus.CANCELLED) for i in range(3)]
        assert stream.batch is not None
        assert stream.batch.counts[sr.ItemStatus.CANCELLED] == 3
        await settle()
        assert others() == before

    async def test_results_waiting_to_be_streamed_are_not_lost(
        self, virtual_clock: VirtualClock
    ) -> None:
        # One worker, a queue of one: results pile up while the consumer is slow.
        async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
            return "ok"

        runner = sr.Runner(
            sr.Plan.ladder(), from_callable(answer), concurrency=1, clock=virtual_clock
        )
        stream = runner.stream(items(10))
        first = await anext(stream)
        await settle()  # the worker finishes two more items and waits to hand one over

        runner.cancel()
        rest = [r async for r in stream]

        ids = [first.id] + [r.id for r in rest]
        assert ids == ["0", "1", "2"]
        assert all(r.ok for r in rest)
        assert stream.batch is not None
        assert stream.batch.items == 3  # the totals match what was handed out

    async def test_cancel_when_idle_is_harmless(self, virtual_clock: VirtualClock) -> None:
        runner = sr.Runner(sr.Plan.ladder(), Gate(hang_for=1.0), clock=virtual_clock)

        runner.cancel()
        batch = await runner.run(items(2))

        assert batch.succeeded == 2


class TestDrain:
    async def test_in_flight_items_finish_and_no_new_ones_start(
        self, virtual_clock: VirtualClock
    ) -> None:
        gate = Gate()
        runner = sr.Runner(sr.Plan.ladder(), gate, concurrency=3, clock=virtual_clock)
        task = asyncio.ensure_future(runner.run(items(10)))
        await gate.in_flight(3)

        runner.drain()
        gate.open.set()
        batch = await task

        assert sorted(r.id for r in batch.results) == ["0", "1", "2"]
        assert all(r.ok for r in batch.results)
        assert gate.cancelled == []
        assert len(gate.started) == 3

    async def test_workers_waiting_for_an_async_source_stop(
        self, virtual_clock: VirtualClock
    ) -> None:
        more = asyncio.Event()

        async def source() -> AsyncIterator[tuple[str, str]]:
            yield "a", "p"
            await more.wait()  # the producer has nothing yet
            yield "b", "p"

        gate = Gate()
        runner = sr.Runner(sr.Plan.ladder(), gate, concurrency=3, clock=virtual_clock)
        task = asyncio.ensure_future(runner.run(source()))
        await gate.in_flight(1)

        runner.drain()
        more.set()
        gate.open.set()
        batch = await task

        assert [r.id for r in batch.results] == ["a"]
        assert gate.started == ["a"]

    async def test_drained_items_use_their_whole_plan(self, virtual_clock: VirtualClock) -> None:
        script = ["{bad", "ok"]
        hanging = asyncio.Event()
        release = asyncio.Event()

        async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
            hanging.set()
            await release.wait()
            return script.pop(0)

        runner = sr.Runner(
            sr.Plan.ladder(),
            from_callable(answer),
            concurrency=1,
            clock=virtual_clock,
            validator=lambda text: text if text == "ok" else _bad(text),
        )
        task = asyncio.ensure_future(runner.run(items(5)))
        await hanging.wait()

        runner.drain()
        release.set()
        batch = await task

        (result,) = batch.results
        assert result.ok
        assert [a.stage for a in result.attempts] == ["full_t0", "full_t25"]


def _bad(text: str) -> str:
    raise sr.ValidationFailed([sr.FieldError("", f"unreadable: {text}")])


class TestTimeouts:
    async def test_attempt_timeout_is_transient_and_counted(
        self, virtual_clock: VirtualClock
    ) -> None:
        waits = [10.0, 0.0]
        cancelled = 0

        async def slow_then_fast(request: sr.Request, ctx: sr.StageContext) -> str:
            nonlocal cancelled
            try:
                await ctx.clock.sleep(waits.pop(0))
            except asyncio.CancelledError:
                cancelled += 1
                raise
            return "ok"

        plan = sr.Plan([sr.Stage("ask", timeout=4.0)], backoff=sr.Backoff(1.0, 1.0, 1.0))
        runner = sr.Runner(plan, from_callable(slow_then_fast), clock=virtual_clock, seed=1)

        (result,) = (await runner.run(items(1))).results

        assert result.ok
        assert result.prompts == 2
        first, second = result.attempts
        assert first.outcome is sr.OutcomeKind.TRANSIENT
        assert first.counted
        assert first.duration == pytest.approx(4.0)
        assert first.error == "TimeoutError"
        assert cancelled == 1  # the request itself was cancelled, not left running
        assert second.outcome is sr.OutcomeKind.SUCCEEDED

    async def test_stage_timeout_overrides_the_plan_timeout(
        self, virtual_clock: VirtualClock
    ) -> None:
        plan = sr.Plan(
            [sr.Stage("quick", timeout=2.0, on_transient="next"), sr.Stage("patient")],
            timeout=50.0,
        )
        gate = Gate(hang_for=30.0)
        runner = sr.Runner(plan, gate, clock=virtual_clock)

        (result,) = (await runner.run(items(1))).results

        assert result.ok
        assert [a.stage for a in result.attempts] == ["quick", "patient"]
        assert [a.duration for a in result.attempts] == pytest.approx([2.0, 30.0])

    async def test_every_attempt_timing_out_spends_the_budget(
        self, virtual_clock: VirtualClock
    ) -> None:
        plan = sr.Plan([sr.Stage("ask")], max_prompts=3, timeout=5.0)
        gate = Gate()  # never answers

        (result,) = (await sr.Runner(plan, gate, clock=virtual_clock).run(items(1))).results

        assert result.status is sr.ItemStatus.EXHAUSTED
        assert result.reason == "budget spent"
        assert result.prompts == 3
        assert len(gate.cancelled) == 3

    async def test_item_deadline_exhausts_with_the_reason(
        self, virtual_clock: VirtualClock
    ) -> None:
        plan = sr.Plan([sr.Stage("ask")], max_prompts=10, deadline=30.0)
        gate = Gate()  # never answers: the deadline cuts the attempt short

        (result,) = (await sr.Runner(plan, gate, clock=virtual_clock).run(items(1))).results

        assert result.status is sr.ItemStatus.EXHAUSTED
        assert result.reason == "deadline passed"
        assert result.prompts == 1
        assert result.attempts[0].duration == pytest.approx(30.0)
        assert virtual_clock.monotonic() == pytest.approx(30.0)

    async def test_deadline_bounds_the_backoff(self, virtual_clock: VirtualClock) -> None:
        async def flaky(request: sr.Request, ctx: sr.StageContext) -> str:
            await ctx.clock.sleep(1.0)
            raise sr.TransientError("503")

        plan = sr.Plan(
            [sr.Stage("ask")], max_prompts=100, deadline=20.0, backoff=sr.Backoff(8.0, 8.0, 1.0)
        )
        runner = sr.Runner(plan, from_callable(flaky), clock=virtual_clock, seed=3)

        (result,) = (await runner.run(items(1))).results

        assert result.status is sr.ItemStatus.EXHAUSTED
        assert result.reason == "deadline passed"
        assert virtual_clock.monotonic() <= 20.0
        assert all(a.started + a.duration <= 20.0 for a in result.attempts)

    async def test_deadline_during_a_cooldown_spends_no_prompt(
        self, virtual_clock: VirtualClock
    ) -> None:
        async def refuse(request: sr.Request, ctx: sr.StageContext) -> str:
            raise sr.RateLimited("429", retry_after=600.0)

        plan = sr.Plan([sr.Stage("ask")], deadline=60.0)
        runner = sr.Runner(plan, from_callable(refuse), clock=virtual_clock)

        (result,) = (await runner.run(items(1))).results

        assert result.status is sr.ItemStatus.EXHAUSTED
        assert result.reason == "deadline passed"
        assert result.prompts == 0
        assert len(result.attempts) == 1
        assert virtual_clock.monotonic() == pytest.approx(60.0)
