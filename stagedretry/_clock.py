"""The clock every sleep, timeout and timestamp of the engine goes through.

Injecting it is what lets a test run hours of simulated time in milliseconds
(see ``stagedretry.testing.VirtualClock``).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Time as the engine sees it."""

    def monotonic(self) -> float:
        """Seconds on a monotonic scale: for durations, deadlines and cooldowns."""

    def time(self) -> float:
        """Seconds since the Unix epoch: for comparing with a server's timestamps."""

    async def sleep(self, seconds: float) -> None:
        """Wait *seconds* on this clock."""

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        """Raise ``TimeoutError`` out of the block if it runs longer than *seconds*."""


class SystemClock:
    """The real clock: asyncio's loop time, the wall clock and ``asyncio.timeout``."""

    __slots__ = ()

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[object]:
        if seconds is None:
            return nullcontext()
        return asyncio.timeout(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"
