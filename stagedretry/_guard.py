"""The default bound on a request, in real seconds, with one timer per run.

A request whose plan and stage declare no ``timeout`` still ends after
:data:`~stagedretry._plan.DEFAULT_TIMEOUT` real seconds.  ``asyncio.timeout``
per request would schedule and cancel a timer each time, a third of the engine's
cost per item for a quick strategy.  Since every guarded request gets the same
bound, the requests' deadlines come in the order the requests start: a
dict (insertion-ordered) of the open ones is also ordered by deadline, and one
timer, armed for the oldest, serves them all.

Expiry follows ``asyncio.timeout``: the request's task is cancelled, and the
``CancelledError`` becomes a ``TimeoutError`` unless another cancellation of
the task came meanwhile (that one goes on).
"""

from __future__ import annotations

import asyncio
from typing import Any


class RequestGuard:
    """Bounds each request entered by *seconds* real seconds (the event loop's clock).

    Create it in the running loop; :meth:`close` cancels its timer.
    """

    __slots__ = ("_expired", "_loop", "_open", "_seconds", "_timer")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._loop = asyncio.get_running_loop()
        # Task -> (deadline, its cancel requests at entry), oldest first = earliest deadline first.
        self._open: dict[asyncio.Task[Any], tuple[float, int]] = {}
        # Tasks cancelled by the guard, until they leave it -> their cancel requests at entry.
        self._expired: dict[asyncio.Task[Any], int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def enter(self) -> asyncio.Task[Any]:
        """Start guarding the current task's request; pass the task to :meth:`leave`."""
        task = asyncio.current_task()
        assert task is not None
        when = self._loop.time() + self._seconds
        self._open[task] = (when, task.cancelling())
        if self._timer is None:
            self._timer = self._loop.call_at(when, self._fire)
        return task

    def leave(self, task: asyncio.Task[Any], cancelled: bool) -> bool:
        """Stop guarding *task*; ``True`` when the guard expired it and *cancelled* (the
        request ended in ``CancelledError``) is its own doing: raise ``TimeoutError`` then."""
        if self._open.pop(task, None) is not None:
            return False
        # Expired: the guard's cancel request is withdrawn, as asyncio.timeout does.
        return task.uncancel() <= self._expired.pop(task) and cancelled

    def close(self) -> None:
        """Cancel the timer (the run has ended: no request is open)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._open:
            task = next(iter(self._open))
            when, cancelling = self._open[task]
            if when > now:
                self._timer = self._loop.call_at(when, self._fire)
                return
            del self._open[task]
            self._expired[task] = cancelling
            task.cancel()
