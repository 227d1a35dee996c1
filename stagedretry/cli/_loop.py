"""``asyncio.run`` with an end that cannot hang.

``asyncio.run`` cancels the tasks left when its coroutine returns and waits for
them without limit; a strategy that ignores cancellation would then hold the
process for ever after its summary.  :func:`run_bounded` waits
:data:`END_GRACE` seconds for them instead and reports those still running, so
that the command can exit without them (:func:`exit_now`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Coroutine, Iterator
from typing import Any, Final, TypeVar

T = TypeVar("T")

END_GRACE: Final = 5.0
"""Seconds the tasks left at the end get to finish once cancelled."""


class Ended:
    """How the loop of :func:`run_bounded` ended: how many tasks it had to leave running."""

    __slots__ = ("_open", "left_running")

    def __init__(self) -> None:
        self.left_running = 0
        # The runner left open with its stuck tasks (the process is about to end anyway).
        self._open: asyncio.Runner | None = None

    def close(self, grace: float = END_GRACE) -> None:
        """Give the tasks left running *grace* more seconds, then close their loop (for tests)."""
        runner, self._open = self._open, None
        if runner is None:
            return
        loop = runner.get_loop()
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=grace))
        runner.close()


def run_bounded(main: Coroutine[Any, Any, T], ended: Ended, *, grace: float = END_GRACE) -> T:
    """Run *main* on a new event loop and close the loop within about *grace* seconds.

    Returns what *main* returns, or raises what it raises (``KeyboardInterrupt``
    included).  Tasks still running afterwards are cancelled and given *grace*
    seconds; the number of those that ignored it is put in *ended*.
    """
    runner = asyncio.Runner()
    try:
        with _python_interrupts():
            return runner.run(main)
    finally:
        loop = runner.get_loop()
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in left:
            task.cancel()
        if left:
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.wait(left, timeout=grace))
        ended.left_running = sum(not t.done() for t in left)
        if ended.left_running:
            ended._open = runner
        else:
            # Nothing is stuck: the ordinary end (async generators, the default executor).
            runner.close()


@contextlib.contextmanager
def _python_interrupts() -> Iterator[None]:
    """Python's own SIGINT handling while the loop runs, whatever the entry installed.

    ``asyncio.Runner`` turns Ctrl-C into a cancellation of the main task only over
    Python's default handler; the run then routes the signals itself (``_job``).
    """
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: nothing to put back
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def exit_now(code: int) -> None:
    """End the process with *code* at once, without waiting for tasks or threads left running.

    For a run that had to leave work running: its results are already in the
    journal (committed row by row), and Python's own exit would wait for them.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


@contextlib.contextmanager
def exits_on_signals(code: int, signals: tuple[signal.Signals, ...]) -> Iterator[None]:
    """While the block runs, *signals* end the process with *code* at once.

    For the moment between a run's end and the process's (the summary being
    printed): the run's outcome is decided and journaled, so a late Ctrl-C or
    SIGTERM only cuts the printing short, never with a traceback or a code
    that says something else.  The previous handlers are back afterwards.
    """
    previous = {}
    for sig in signals:
        with contextlib.suppress(ValueError):  # not the main thread: leave them be
            previous[sig] = signal.signal(sig, lambda signum, frame: exit_now(code))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
