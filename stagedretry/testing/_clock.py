"""A virtual clock for tests: hours of backoff and cooldown in milliseconds.

``VirtualClock`` implements ``stagedretry.Clock``.  Time only moves when the
test calls ``advance()`` or, with *autojump* (the default), when every task is
blocked on the clock: a helper task then lets the loop settle and jumps
straight to the earliest deadline, the way trio's ``MockClock(autojump_threshold=0)``
does.  Sleeps and timeouts that share a deadline fire in the order they were
registered, so runs are reproducible.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType

__all__ = ["VirtualClock"]

# An upper bound on settling while the loop keeps reporting ready callbacks, so
# a task that spins on ``asyncio.sleep(0)`` cannot stop virtual time for ever.
_MAX_SETTLE_ROUNDS = 1_000


class _Entry:
    """One scheduled wake-up: a sleeper's future or a timeout's expiry."""

    __slots__ = ("alive", "callback", "deadline")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline = deadline
        self.callback = callback
        self.alive = True


class VirtualClock:
    """A ``stagedretry.Clock`` whose time moves only when the test (or autojump) moves it.

    *start* is the initial ``monotonic()`` reading and *epoch* the Unix time it
    corresponds to.  With *autojump*, once all tasks wait on the clock the
    earliest deadline is reached at once; *settle_rounds* is the least number of
    loop iterations to let other tasks run first, and *real_idle* a number of
    real seconds of quiet to wait on top (for tests with real I/O in flight, such
    as an HTTP emulator on loopback).  One clock serves one event loop at a time.
    """

    __slots__ = (
        "_activity",
        "_autojump",
        "_epoch",
        "_heap",
        "_holds",
        "_jumper",
        "_live",
        "_loop",
        "_now",
        "_real_idle",
        "_released",
        "_seq",
        "_settle_rounds",
    )

    def __init__(
        self,
        *,
        start: float = 0.0,
        epoch: float = 1_800_000_000.0,
        autojump: bool = True,
        settle_rounds: int = 3,
        real_idle: float = 0.0,
    ) -> None:
        if settle_rounds < 1:
            raise ValueError(f"settle_rounds must be at least 1, got {settle_rounds}")
        if real_idle < 0:
            raise ValueError(f"real_idle must not be negative, got {real_idle}")
        self._now = float(start)
        self._epoch = float(epoch) - float(start)
        self._autojump = autojump
        self._settle_rounds = settle_rounds
        self._real_idle = float(real_idle)
        self._heap: list[tuple[float, int, _Entry]] = []
        self._seq = itertools.count()
        self._live = 0
        self._activity = 0
        self._jumper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._holds = 0
        self._released = asyncio.Event()
        self._released.set()

    # -- the Clock protocol ---------------------------------------------------

    def monotonic(self) -> float:
        """The virtual now."""
        return self._now

    def time(self) -> float:
        """Unix time matching the virtual now (a plain read: safe from any thread)."""
        return self._epoch + self._now

    async def sleep(self, seconds: float) -> None:
        """Wait until the virtual clock has moved *seconds* on; ``<= 0`` just yields once."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = self._bind()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = self._schedule(self._now + seconds, lambda: _wake(waiter))
        try:
            await waiter
        finally:
            self._discard(entry)

    def timeout(self, seconds: float | None) -> _VirtualTimeout:
        """``asyncio.timeout`` on virtual time: cancel the block, then raise ``TimeoutError``."""
        return _VirtualTimeout(self, seconds)

    # -- test controls --------------------------------------------------------

    def advance(self, seconds: float) -> None:
        """Move time *seconds* on, waking due sleepers and timeouts in deadline order.

        Woken tasks run at the next loop iteration and see the final time.
        """
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards ({seconds})")
        self._run_until(self._now + seconds)

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep autojump from moving time while the block runs.

        For code that waits on something outside the clock which the test will
        provide (the next scripted answer, say) inside a virtual timeout: time
        must not jump to that timeout meanwhile.  ``advance()`` still works.
        """
        self._holds += 1
        self._released.clear()
        try:
            yield
        finally:
            self._holds -= 1
            if not self._holds:
                self._released.set()

    def pending(self) -> int:
        """How many sleeps and timeouts are waiting on this clock."""
        return self._live

    def next_deadline(self) -> float | None:
        """The earliest virtual time something waits for, or ``None``."""
        self._prune()
        return self._heap[0][0] if self._heap else None

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now!r}, pending={self._live}, autojump={self._autojump!r})"

    # -- machinery ------------------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._live:
                raise RuntimeError("this VirtualClock has waiters on another event loop")
            self._loop = loop
            self._heap.clear()
            self._jumper = None
            self._released = asyncio.Event()
            if not self._holds:
                self._released.set()
        return loop

    def _schedule(self, deadline: float, callback: Callable[[], None]) -> _Entry:
        entry = _Entry(deadline, callback)
        heapq.heappush(self._heap, (deadline, next(self._seq), entry))
        self._live += 1
        self._activity += 1
        if self._autojump and (self._jumper is None or self._jumper.done()):
            loop = self._bind()
            self._jumper = loop.create_task(self._autojump_loop(), name="VirtualClock.autojump")
        return entry

    def _discard(self, entry: _Entry) -> None:
        if entry.alive:
            entry.alive = False
            self._live -= 1
            self._activity += 1

    def _prune(self) -> None:
        while self._heap and not self._heap[0][2].alive:
            heapq.heappop(self._heap)

    def _run_until(self, target: float) -> None:
        """Fire everything due by *target* in deadline order, then stand at *target*."""
        while True:
            self._prune()
            if not self._heap or self._heap[0][0] > target:
                break
            deadline, _, entry = heapq.heappop(self._heap)
            self._now = max(self._now, deadline)
            self._discard(entry)
            entry.callback()
        self._now = max(self._now, target)

    async def _settle(self) -> None:
        """Let every runnable task run until it blocks.

        ``settle_rounds`` iterations at least; more while the loop still has
        ready callbacks queued (asyncio's own loops expose them), so a chain of
        wake-ups finishes before time jumps under it.
        """
        loop = asyncio.get_running_loop()
        ready = getattr(loop, "_ready", None)
        rounds = 0
        while self._live and (
            rounds < self._settle_rounds or (ready and rounds < _MAX_SETTLE_ROUNDS)
        ):
            await asyncio.sleep(0)
            rounds += 1

    async def _autojump_loop(self) -> None:
        """Jump to the earliest deadline whenever the loop has gone quiet; end when none waits."""
        while self._live:
            await self._settle()
            if self._holds:
                await self._released.wait()
                continue
            if self._real_idle:
                seen = self._activity
                await asyncio.sleep(self._real_idle)
                await self._settle()
                if self._activity != seen:
                    continue  # something happened meanwhile: not quiet yet
            deadline = self.next_deadline()
            if deadline is None:
                break
            self._run_until(deadline)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _VirtualTimeout:
    """The async context manager behind ``VirtualClock.timeout`` (mirrors ``asyncio.Timeout``)."""

    __slots__ = (
        "_cancelling",
        "_clock",
        "_entry",
        "_expired",
        "_handle",
        "_seconds",
        "_task",
    )

    def __init__(self, clock: VirtualClock, seconds: float | None) -> None:
        self._clock = clock
        self._seconds = seconds
        self._task: asyncio.Task[object] | None = None
        self._cancelling = 0
        self._entry: _Entry | None = None
        self._handle: asyncio.Handle | None = None
        self._expired = False

    def expired(self) -> bool:
        """Whether the deadline passed and the block was cancelled for it."""
        return self._expired

    async def __aenter__(self) -> None:
        if self._task is not None:
            raise RuntimeError("a timeout context can be entered only once")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("VirtualClock.timeout() must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        if self._seconds is None:
            return
        clock = self._clock
        loop = clock._bind()
        if self._seconds <= 0:
            # Like asyncio: an already-passed deadline cancels at the first suspension.
            self._handle = loop.call_soon(self._expire)
        else:
            self._entry = clock._schedule(clock.monotonic() + self._seconds, self._expire)

    def _expire(self) -> None:
        task = self._task
        if task is None or task.done():
            return
        self._expired = True
        task.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._entry is not None:
            self._clock._discard(self._entry)
            self._entry = None
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        # Only a cancellation this timeout asked for becomes TimeoutError; one
        # requested from elsewhere as well keeps propagating.
        if (
            self._expired
            and self._task is not None
            and self._task.uncancel() <= self._cancelling
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc

    def __repr__(self) -> str:
        return f"<VirtualTimeout seconds={self._seconds!r} expired={self._expired!r}>"
