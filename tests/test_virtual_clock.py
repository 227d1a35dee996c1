"""VirtualClock: virtual sleeps, deadline ordering, asyncio-compatible timeouts, autojump."""

from __future__ import annotations

import asyncio
import time

import pytest

import stagedretry as sr
from stagedretry.testing import VirtualClock


def _others() -> list[asyncio.Task[object]]:
    current = asyncio.current_task()
    return [t for t in asyncio.all_tasks() if t is not current and not t.done()]


def test_is_a_clock() -> None:
    assert isinstance(VirtualClock(), sr.Clock)


def test_time_follows_the_virtual_now() -> None:
    clock = VirtualClock(start=100.0, epoch=1_900_000_000.0, autojump=False)
    assert clock.monotonic() == 100.0
    assert clock.time() == 1_900_000_000.0
    clock.advance(2.5)
    assert clock.monotonic() == 102.5
    assert clock.time() == 1_900_000_002.5


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="settle_rounds"):
        VirtualClock(settle_rounds=0)
    with pytest.raises(ValueError, match="real_idle"):
        VirtualClock(real_idle=-1)
    with pytest.raises(ValueError, match="backwards"):
        VirtualClock().advance(-1)


async def test_hours_of_sleep_take_milliseconds() -> None:
    clock = VirtualClock()
    started = time.perf_counter()
    for _ in range(100):
        await clock.sleep(3600)
    assert clock.monotonic() == 360_000.0
    assert time.perf_counter() - started < 1.0


async def test_concurrent_sleepers_wake_in_deadline_order() -> None:
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    await asyncio.gather(
        sleeper("late", 30), sleeper("tie-1", 10), sleeper("early", 1), sleeper("tie-2", 10)
    )
    # Equal deadlines wake in the order they were registered.
    assert woke == [("early", 1.0), ("tie-1", 10.0), ("tie-2", 10.0), ("late", 30.0)]
    assert clock.pending() == 0


async def test_non_positive_sleep_only_yields() -> None:
    clock = VirtualClock()
    await clock.sleep(0)
    await clock.sleep(-5)
    assert clock.monotonic() == 0.0
    assert clock.pending() == 0


async def test_time_does_not_jump_under_a_chain_of_wakeups() -> None:
    # B reacts to A through several task hops before it sleeps: autojump must let
    # that chain finish, or B's sleep would start from a later, jumped-to time.
    clock = VirtualClock()
    hops: list[asyncio.Queue[int]] = [asyncio.Queue() for _ in range(12)]
    woke: dict[str, float] = {}

    async def relay(inbox: asyncio.Queue[int], outbox: asyncio.Queue[int]) -> None:
        await outbox.put(await inbox.get())

    async def a() -> None:
        await clock.sleep(1)
        await hops[0].put(1)

    async def b() -> None:
        await hops[-1].get()
        await clock.sleep(1)
        woke["b"] = clock.monotonic()

    async def c() -> None:
        await clock.sleep(1.5)
        woke["c"] = clock.monotonic()

    relays = [relay(hops[i], hops[i + 1]) for i in range(len(hops) - 1)]
    await asyncio.gather(a(), b(), c(), *relays)
    assert woke == {"c": 1.5, "b": 2.0}


async def test_cancelled_sleeper_is_forgotten() -> None:
    clock = VirtualClock()
    doomed = asyncio.create_task(clock.sleep(100))
    await asyncio.sleep(0)
    assert clock.pending() == 1
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    assert clock.pending() == 0
    await clock.sleep(200)
    # The jump went straight to 200: the cancelled deadline was not visited.
    assert clock.monotonic() == 200.0


async def test_autojump_ends_when_nothing_waits() -> None:
    clock = VirtualClock()
    await clock.sleep(5)
    assert _others() == []
    doomed = asyncio.create_task(clock.sleep(100))
    await asyncio.sleep(0)
    doomed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await doomed
    for _ in range(10):
        await asyncio.sleep(0)
    assert _others() == []
    assert clock.monotonic() == 5.0


async def test_manual_advance_wakes_due_waiters_in_order() -> None:
    clock = VirtualClock(autojump=False)
    woke: list[str] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append(name)

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("c", 3), ("a", 1), ("b", 2)]]
    await asyncio.sleep(0)
    assert clock.pending() == 3
    assert clock.next_deadline() == 1.0
    clock.advance(2)
    await asyncio.sleep(0)
    assert woke == ["a", "b"]
    assert clock.pending() == 1
    assert clock.monotonic() == 2.0
    clock.advance(10)
    await asyncio.gather(*tasks)
    assert woke == ["a", "b", "c"]
    assert clock.monotonic() == 12.0
    assert clock.next_deadline() is None


async def test_timeout_fires_at_the_virtual_deadline() -> None:
    clock = VirtualClock()
    task = asyncio.current_task()
    assert task is not None
    reached: list[float] = []

    async def guarded() -> None:
        async with clock.timeout(5):
            await clock.sleep(60)
            reached.append(clock.monotonic())

    with pytest.raises(TimeoutError):
        await guarded()
    assert reached == []
    assert clock.monotonic() == 5.0
    assert task.cancelling() == 0
    assert clock.pending() == 0


async def test_timeout_fires_on_a_wait_outside_the_clock() -> None:
    clock = VirtualClock()
    with pytest.raises(TimeoutError):
        async with clock.timeout(30):
            await asyncio.Event().wait()
    assert clock.monotonic() == 30.0


async def test_timeout_that_does_not_fire_leaves_no_trace() -> None:
    clock = VirtualClock()
    timeout = clock.timeout(5)
    async with timeout:
        await clock.sleep(4)
    assert not timeout.expired()
    assert clock.pending() == 0
    await clock.sleep(10)
    assert clock.monotonic() == 14.0


async def test_no_timeout_and_past_deadlines() -> None:
    clock = VirtualClock()
    async with clock.timeout(None):
        await clock.sleep(1_000)
    with pytest.raises(TimeoutError):
        async with clock.timeout(0):
            await asyncio.sleep(0)
    assert clock.monotonic() == 1_000.0


async def test_outside_cancellation_propagates_through_a_timeout() -> None:
    clock = VirtualClock()

    async def guarded() -> None:
        async with clock.timeout(100):
            await clock.sleep(1_000)

    task = asyncio.create_task(guarded())
    await clock.sleep(10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert clock.monotonic() == 10.0
    assert clock.pending() == 0


async def test_outside_cancellation_wins_when_it_meets_an_expiry() -> None:
    clock = VirtualClock(autojump=False)
    timeout = clock.timeout(5)

    async def guarded() -> None:
        async with timeout:
            await clock.sleep(1_000)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(0)
    clock.advance(5)  # the timeout cancels the task...
    task.cancel()  # ...and so does someone else, before it runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timeout.expired()


async def test_nested_timeouts_raise_at_the_level_that_expired() -> None:
    clock = VirtualClock()
    inner_fired: list[float] = []

    async def nested() -> None:
        async with clock.timeout(50):
            try:
                async with clock.timeout(10):
                    await clock.sleep(20)
            except TimeoutError:
                inner_fired.append(clock.monotonic())
            await clock.sleep(100)

    with pytest.raises(TimeoutError):
        await nested()
    assert inner_fired == [10.0]
    assert clock.monotonic() == 50.0


async def test_timeout_is_single_use() -> None:
    clock = VirtualClock()
    timeout = clock.timeout(1)
    async with timeout:
        pass
    with pytest.raises(RuntimeError, match="once"):
        async with timeout:
            pass


async def test_real_idle_still_jumps() -> None:
    clock = VirtualClock(real_idle=0.001)
    await clock.sleep(3600)
    assert clock.monotonic() == 3600.0


async def test_real_io_finishes_before_a_virtual_timeout() -> None:
    # A reply that is on its way over loopback arrives before autojump moves
    # time to the timeout's deadline.
    clock = VirtualClock()

    async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(await r.readline())
        await w.drain()
        w.close()
        await w.wait_closed()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    async with server:
        host, port = server.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"ping\n")
        async with clock.timeout(10):
            line = await reader.readline()
        writer.close()
        await writer.wait_closed()
    assert line == b"ping\n"
    assert clock.monotonic() == 0.0


def test_clock_is_bound_to_one_loop_at_a_time() -> None:
    clock = VirtualClock(autojump=False)

    async def park() -> asyncio.Task[None]:
        task = asyncio.create_task(clock.sleep(10))
        await asyncio.sleep(0)
        return task

    loop = asyncio.new_event_loop()
    try:
        parked = loop.run_until_complete(park())

        async def elsewhere() -> None:
            with pytest.raises(RuntimeError, match="another event loop"):
                await clock.sleep(1)

        asyncio.run(elsewhere())
        parked.cancel()
        loop.run_until_complete(asyncio.gather(parked, return_exceptions=True))
    finally:
        loop.close()
    assert clock.pending() == 0


async def test_hold_keeps_autojump_from_firing_a_timeout() -> None:
    # A waiter on something the test provides later, inside a virtual timeout:
    # without the hold, autojump would move time to the deadline at once.
    clock = VirtualClock()
    answer: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def ask() -> str:
        async with clock.timeout(30):
            with clock.hold():
                return await answer

    task = asyncio.create_task(ask())
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done()
    assert clock.monotonic() == 0.0
    answer.set_result("late but in time")
    assert await task == "late but in time"

    unheld = asyncio.get_running_loop().create_future()

    async def ask_unheld() -> None:
        async with clock.timeout(30):
            await unheld

    with pytest.raises(TimeoutError):
        await ask_unheld()
    assert clock.monotonic() == 30.0
