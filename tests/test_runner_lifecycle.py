"""The runner's lifecycle: one state at a time, and every way out of a stream ends its run."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import stagedretry as sr
from stagedretry import RunnerState
from stagedretry.testing import VirtualClock

GOOD = '{"title": "Dune"}'


class Counted:
    """A shared resource that counts how often it is prepared and closed."""

    name = "cache"

    def __init__(self) -> None:
        self.prepared = self.closed = 0

    async def prepare(self, clock: sr.Clock) -> str:
        self.prepared += 1
        return f"cache-{self.prepared}"

    def needs_renewal(self, handle: Any, clock: sr.Clock) -> bool:
        return False

    async def renew(self, handle: Any, reason: sr.RenewReason, clock: sr.Clock) -> str:
        return handle  # type: ignore[no-any-return]

    async def close(self, handle: Any) -> None:
        self.closed += 1


class Held:
    """Answers item "0" at once; the others wait for the gate, and count their cancellations."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.in_flight = 0
        self.cancelled: list[str] = []

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        if request.item_id != "0":
            self.in_flight += 1
            try:
                await self.open.wait()
            except asyncio.CancelledError:
                self.cancelled.append(request.item_id)
                raise
            finally:
                self.in_flight -= 1
        return sr.Response(GOOD)

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None


def items(n: int, prefix: str = "") -> list[tuple[str, str]]:
    return [(f"{prefix}{i}", "p") for i in range(n)]


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until *condition* holds (a bounded number of turns, no real time)."""
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def started(run: Awaitable[sr.BatchResult]) -> asyncio.Future[sr.BatchResult]:
    """*run* as a task that has taken its first step (and so claimed the runner)."""
    task = asyncio.ensure_future(run)
    await asyncio.sleep(0)
    return task


def make(clock: VirtualClock) -> tuple[sr.Runner, Held, Counted]:
    strategy, cache = Held(), Counted()
    runner = sr.Runner(sr.Plan.ladder(), strategy, resources=[cache], concurrency=3, clock=clock)
    return runner, strategy, cache


async def second_run_works(runner: sr.Runner, strategy: Held, cache: Counted) -> None:
    strategy.open.set()
    batch = await runner.run(items(5, "b"))
    assert batch.succeeded == 5
    assert sorted(r.id for r in batch.results) == [f"b{i}" for i in range(5)]
    assert runner.state is RunnerState.IDLE
    assert (cache.prepared, cache.closed) == (2, 2)


class TestAbandonedStreams:
    """However the reader leaves a stream, its run ends and the runner can run again."""

    async def test_break(self, virtual_clock: VirtualClock) -> None:
        runner, strategy, cache = make(virtual_clock)

        async for result in runner.stream(items(20)):
            assert result.id == "0"
            break

        await until(lambda: runner.state is RunnerState.IDLE)
        assert cache.closed == 1
        assert len(strategy.cancelled) == 3  # every worker had an item in flight
        await second_run_works(runner, strategy, cache)

    async def test_exception_in_the_loop_body(self, virtual_clock: VirtualClock) -> None:
        runner, strategy, cache = make(virtual_clock)

        async def read() -> None:
            async for _ in runner.stream(items(20)):
                raise ValueError("reader failed")

        with pytest.raises(ValueError, match="reader failed"):
            await read()

        await until(lambda: runner.state is RunnerState.IDLE)
        assert cache.closed == 1
        assert strategy.cancelled
        await second_run_works(runner, strategy, cache)

    async def test_garbage_collected(self, virtual_clock: VirtualClock) -> None:
        runner, strategy, cache = make(virtual_clock)
        stream = runner.stream(items(20))
        first = await anext(stream)
        await until(lambda: strategy.in_flight == 3)

        del stream
        gc.collect()

        assert first.id == "0"
        await until(lambda: runner.state is RunnerState.IDLE)
        assert cache.closed == 1
        assert len(strategy.cancelled) == 3
        await second_run_works(runner, strategy, cache)

    async def test_async_with(self, virtual_clock: VirtualClock) -> None:
        runner, strategy, cache = make(virtual_clock)

        async with runner.stream(items(20)) as results:
            async for _ in results:
                break

        # Closed on the way out of the block, before the next line runs.
        assert runner.state is RunnerState.IDLE
        assert cache.closed == 1
        await second_run_works(runner, strategy, cache)

    async def test_the_next_run_waits_for_the_abandoned_one(
        self, virtual_clock: VirtualClock
    ) -> None:
        runner, strategy, cache = make(virtual_clock)
        async for _ in runner.stream(items(20)):
            break

        # No settling: the run below starts only once the abandoned one has ended.
        await second_run_works(runner, strategy, cache)
        assert len(strategy.cancelled) == 3

    async def test_so_does_the_next_stream(self, virtual_clock: VirtualClock) -> None:
        runner, strategy, cache = make(virtual_clock)
        async for _ in runner.stream(items(20)):
            break
        strategy.open.set()

        got = [r.id async for r in runner.stream(items(4, "b"))]

        assert sorted(got) == ["b0", "b1", "b2", "b3"]
        assert runner.state is RunnerState.IDLE
        assert (cache.prepared, cache.closed) == (2, 2)

    async def test_inside_async_with_runner_the_resources_stay_open(
        self, virtual_clock: VirtualClock
    ) -> None:
        runner, strategy, cache = make(virtual_clock)
        async with runner:
            async for _ in runner.stream(items(20)):
                break
            strategy.open.set()
            batch = await runner.run(items(3, "b"))
            assert batch.succeeded == 3
            assert cache.closed == 0
        assert (cache.prepared, cache.closed) == (1, 1)
        assert runner.state is RunnerState.CLOSED

    async def test_a_stream_never_read_gives_the_runner_back(
        self, virtual_clock: VirtualClock
    ) -> None:
        runner, strategy, cache = make(virtual_clock)
        stream = runner.stream(items(3))
        assert runner.state is RunnerState.RUNNING

        del stream
        gc.collect()

        assert runner.state is RunnerState.IDLE
        assert cache.prepared == 0
        strategy.open.set()
        assert (await runner.run(items(2))).succeeded == 2

    async def test_break_out_of_a_stream_kept_in_a_variable(
        self, virtual_clock: VirtualClock
    ) -> None:
        """The tutorial's form: the stream lives on, so the next run stops it, with a warning."""
        runner, strategy, cache = make(virtual_clock)
        stream = runner.stream(items(20))
        async for result in stream:
            assert result.id == "0"
            break

        with pytest.warns(RuntimeWarning, match="left unfinished"):
            second = await started(runner.run(items(5, "b")))
        await until(lambda: len(strategy.cancelled) == 3)
        strategy.open.set()
        batch = await second
        assert batch.succeeded == 5
        assert runner.state is RunnerState.IDLE
        assert (cache.prepared, cache.closed) == (2, 2)
        with pytest.raises(RuntimeError, match="stopped when its runner started another run"):
            await anext(stream)

    async def test_a_stream_kept_and_never_read_is_stopped_by_the_next_run(
        self, virtual_clock: VirtualClock
    ) -> None:
        runner, strategy, cache = make(virtual_clock)
        stream = runner.stream(items(3))
        strategy.open.set()
        with pytest.warns(RuntimeWarning, match="left unfinished"):
            batch = await runner.run(items(2))
        assert batch.succeeded == 2
        assert (cache.prepared, cache.closed) == (1, 1)
        with pytest.raises(RuntimeError, match="stopped"):
            await anext(stream)

    async def test_a_stream_kept_with_a_journal_frees_the_journal_for_the_next_run(
        self, virtual_clock: VirtualClock, tmp_path: Path
    ) -> None:
        runner, strategy, _ = make(virtual_clock)
        journal = sr.Journal(tmp_path / "j.sqlite")
        stream = runner.stream(items(20), journal=journal)
        async for _ in stream:
            break
        with pytest.warns(RuntimeWarning, match="left unfinished"):
            second = await started(runner.run(items(20), journal=journal))
        await until(lambda: len(strategy.cancelled) == 3)
        strategy.open.set()
        batch = await second
        # Item 0 was committed by the first run; the three cancelled ones run again.
        assert batch.resumed == 1
        assert batch.succeeded == 19
        assert not journal.is_open

    async def test_a_stream_being_read_is_not_stopped_by_another_run(
        self, virtual_clock: VirtualClock
    ) -> None:
        runner, strategy, _ = make(virtual_clock)
        stream = runner.stream(items(20))
        assert (await anext(stream)).id == "0"
        reader = asyncio.ensure_future(anext(stream))  # waiting for the next result
        for _ in range(3):
            await asyncio.sleep(0)
        await until(lambda: strategy.in_flight == 3)
        with pytest.raises(RuntimeError, match="already running"):
            await runner.run(items(2, "b"))
        strategy.open.set()
        assert (await reader).id.isdigit()
        await stream.aclose()


class TestStates:
    async def test_a_run_from_idle_to_idle(self, virtual_clock: VirtualClock) -> None:
        runner, strategy, _ = make(virtual_clock)
        assert runner.state is RunnerState.IDLE

        task = asyncio.ensure_future(runner.run(items(6)))
        await until(lambda: strategy.in_flight == 3)
        assert runner.state is RunnerState.RUNNING
        runner.drain()
        assert runner.state is RunnerState.DRAINING
        runner.drain()  # draining again changes nothing
        assert runner.state is RunnerState.DRAINING
        runner.cancel()
        assert runner.state is RunnerState.CANCELLING

        batch = await task
        assert runner.state is RunnerState.IDLE
        assert batch.counts[sr.ItemStatus.CANCELLED] == 3

    @pytest.mark.parametrize("stop", [sr.Runner.drain, sr.Runner.cancel], ids=["drain", "cancel"])
    async def test_stopping_an_idle_runner_does_nothing(
        self, virtual_clock: VirtualClock, stop: Callable[[sr.Runner], None]
    ) -> None:
        runner, _, _ = make(virtual_clock)
        stop(runner)
        assert runner.state is RunnerState.IDLE

    async def test_leaving_async_with_closes_it_for_good(self, virtual_clock: VirtualClock) -> None:
        runner, strategy, cache = make(virtual_clock)
        strategy.open.set()
        async with runner:
            await runner.run(items(2))
        assert runner.state is RunnerState.CLOSED
        assert cache.closed == 1

        refusals: list[Callable[[], Awaitable[object]]] = [
            lambda: runner.run(items(1)),
            lambda: anext(runner.stream(items(1))),
            runner.__aenter__,
        ]
        for refused in refusals:
            with pytest.raises(RuntimeError, match="this runner is closed"):
                await refused()
        await runner.aclose()  # closing again does nothing
        assert cache.closed == 1

    async def test_aclose_stops_a_run_in_progress(self, virtual_clock: VirtualClock) -> None:
        runner, strategy, cache = make(virtual_clock)
        task = asyncio.ensure_future(runner.run(items(6)))
        await until(lambda: strategy.in_flight == 3)

        await runner.aclose()

        assert runner.state is RunnerState.CLOSED
        batch = await task
        assert batch.counts[sr.ItemStatus.CANCELLED] == 3
        assert cache.closed == 1

    async def test_a_stream_left_open_inside_async_with_runner(
        self, virtual_clock: VirtualClock
    ) -> None:
        runner, strategy, cache = make(virtual_clock)
        stream = runner.stream(items(20))

        async def read_then_fail() -> None:
            async with runner:
                await anext(stream)
                raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            await read_then_fail()
        # The stream is still referenced here, yet closing the runner ended its run.
        assert runner.state is RunnerState.CLOSED
        assert len(strategy.cancelled) == 3
        assert cache.closed == 1
        with pytest.raises(StopAsyncIteration):
            await anext(stream)

    async def test_a_stream_not_yet_read_when_the_runner_closes(
        self, virtual_clock: VirtualClock
    ) -> None:
        runner, _, cache = make(virtual_clock)
        stream = runner.stream(items(2))

        await runner.aclose()

        assert runner.state is RunnerState.CLOSED
        with pytest.raises(RuntimeError, match="closed before this stream was read"):
            await anext(stream)
        assert cache.prepared == 0
