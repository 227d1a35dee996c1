"""The run's own failure: what :meth:`Runner.run` and a stream raise when the run stopped.

Beside the results it holds (its ``batch``), not among the per-attempt outcomes, which
the results are built from; the hierarchy is drawn in ``_outcomes``.
"""

from __future__ import annotations

from typing import Any

from ._outcomes import StagedRetryError
from ._results import BatchResult

__all__ = ["ItemError", "ResourceError", "RunStopped"]


class RunStopped(StagedRetryError):
    """The run stopped on a failure of its own, not of an item; raised when the run has ended.

    A :class:`StopRun` verdict on any attempt (the key rejected, billing
    disabled, the model not found, a quota waiting cannot fix), or a shared
    resource that cannot be prepared (:class:`ResourceError`), stops the run:
    no new item is taken and no new request is sent; requests already out
    finish.  Each item the stop caught ends ``cancelled`` with a reason that
    starts ``"run stopped: "``, so a journal does not hold it as done and the
    same run, started again once the cause is fixed, runs it.

    ``str(error)`` is the cause in one sentence.  *batch* holds the run's
    totals and, from :meth:`Runner.run`, every result that ended before the
    stop (a stream has yielded them already); ``None`` until the run has ended.
    """

    def __init__(self, message: str, *, batch: BatchResult[Any] | None = None) -> None:
        super().__init__(message)
        #: The run's :class:`BatchResult`, set by the runner as the run ends.
        self.batch: BatchResult[Any] | None = batch


class ResourceError(RunStopped):
    """A shared resource could not be prepared or renewed: the run stops (a :class:`RunStopped`)."""


class ItemError(RunStopped):
    """An item of the run cannot be run: not an item at all, or its id repeats an earlier one.

    ``str(error)`` names the item's 1-based *position* in the run's items (and, for a
    repeated id, the id and the earlier position).  Items given as a collection (a list,
    a tuple) are all checked before the run starts: the error is raised before anything
    is sent, with an empty *batch*.  Items given as a stream (a generator, an iterator,
    an async iterable) are checked as each arrives: the bad one is not run, and the run
    stops there as for any :class:`RunStopped` (no new item, requests out finish), so
    *batch* holds what ended before.
    """

    def __init__(
        self, message: str, *, position: int, batch: BatchResult[Any] | None = None
    ) -> None:
        super().__init__(message, batch=batch)
        #: Where the bad item is in the run's items, counting from 1.
        self.position = position
