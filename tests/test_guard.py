"""The default request bound: one timer per run, with asyncio.timeout's semantics."""

from __future__ import annotations

import asyncio
import time

import pytest

from stagedretry._guard import RequestGuard


async def _guarded(guard: RequestGuard, seconds: float) -> str:
    """Sleep *seconds* of real time under *guard*, as the runner guards a request."""
    task = guard.enter()
    try:
        await asyncio.sleep(seconds)
    except BaseException as exc:
        if guard.leave(task, isinstance(exc, asyncio.CancelledError)):
            raise TimeoutError from exc
        raise
    guard.leave(task, False)
    return "answered"


async def test_a_request_past_the_bound_times_out_and_a_later_one_gets_its_whole_bound() -> None:
    guard = RequestGuard(0.2)
    began = time.monotonic()
    first = asyncio.ensure_future(_guarded(guard, 10))
    await asyncio.sleep(0.1)
    second = asyncio.ensure_future(_guarded(guard, 10))
    with pytest.raises(TimeoutError):
        await first
    assert 0.2 <= time.monotonic() - began < 0.3
    # Started 0.1 s later, the second one is not cut short by the first one's timer.
    assert not second.done()
    with pytest.raises(TimeoutError):
        await second
    assert 0.3 <= time.monotonic() - began < 1.0
    guard.close()


async def test_quick_requests_answer_and_leave_nothing_behind() -> None:
    guard = RequestGuard(0.05)
    assert await asyncio.gather(*(_guarded(guard, 0) for _ in range(50))) == ["answered"] * 50
    await asyncio.sleep(0.1)  # the timer fires over no open request: nothing is cancelled
    assert await _guarded(guard, 0.01) == "answered"
    guard.close()


async def test_a_cancel_from_outside_is_not_turned_into_a_timeout() -> None:
    guard = RequestGuard(60)
    task = asyncio.ensure_future(_guarded(guard, 10))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    guard.close()


async def test_a_cancel_from_outside_after_the_expiry_still_cancels() -> None:
    guard = RequestGuard(0.05)

    async def stubborn() -> None:
        # A request that swallows the guard's cancellation once, then is cancelled from outside.
        task = guard.enter()
        try:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                await asyncio.sleep(10)
        except BaseException as exc:
            if guard.leave(task, isinstance(exc, asyncio.CancelledError)):
                raise TimeoutError from exc
            raise

    with pytest.raises(asyncio.CancelledError):
        await asyncio.ensure_future(stubborn())
    guard.close()
