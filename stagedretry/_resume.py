"""Resuming a library run from a :class:`Journal`: the fingerprint, the filter and the commit.

The runner only calls in here: a :class:`JournalRun` filters the items that the
journal already holds, commits each result as its item ends (in the worker,
before the result is handed on) and records the run's start and end.  What the
journal is keyed by, :func:`fingerprint`, is a hash of what decides results:
the plan, the stage kinds, the strategy and the validator, each described by
its ``fingerprint_data()`` when it has one (:class:`Fingerprinted`).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

from ._journal import Journal, usage_json
from ._redact import Secrets
from ._results import BatchResult, ItemResult, ItemStatus, WorkItem

if TYPE_CHECKING:
    from ._plan import Plan

FINGERPRINT_LENGTH = 16
"""Hex digits in a fingerprint (64 bits)."""


@runtime_checkable
class Fingerprinted(Protocol):
    """A strategy or validator that says what in it decides results.

    ``fingerprint_data()`` returns plain JSON data (strings, numbers, lists and
    mappings): a model name, a schema, a hash of an instruction.  Leave out what
    only changes timing (latency, timeouts, concurrency) so that a run resumed
    with other timing reuses the journal.  Without the method, a strategy or
    validator is known by its class's (or function's) qualified name only.
    """

    def fingerprint_data(self) -> Mapping[str, object]:
        """Plain JSON data standing for everything in this object that decides a result."""


def qualified_name(value: object) -> str:
    """``module.QualName`` of a function, or of *value*'s class for any other object."""
    target = value if callable(value) and hasattr(value, "__qualname__") else type(value)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"


def fingerprint_part(value: object) -> object:
    """What the fingerprint holds for a strategy or a validator."""
    if isinstance(value, Fingerprinted):
        return {"type": qualified_name(value), "data": plain(value.fingerprint_data())}
    return {"type": qualified_name(value)}


def plain(value: object) -> object:
    """*value* as JSON data that is the same from one process to the next.

    Types and functions become their qualified names; an object of any other
    kind becomes its class's name, never its ``repr`` (which may hold an address).
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, type) or callable(value):
        return qualified_name(value)
    if attrs.has(type(value)):
        return plain(attrs.asdict(value, recurse=False))  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((plain(v) for v in value), key=repr)
    return {"type": qualified_name(value)}


def digest_of(data: object) -> str:
    """A short hex SHA-256 of *data*'s canonical JSON."""
    text = json.dumps(plain(data), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:FINGERPRINT_LENGTH]


def fingerprint(plan: Plan, kinds: Iterable[object], strategy: object, validator: object) -> str:
    """The hash a journal's rows are keyed by: everything that decides an item's result.

    Concurrency, the clock, the seed of the backoff jitter, the logger and the
    hooks only change timing or reporting, so they are left out.
    """
    return digest_of(
        {
            "plan": plan.to_dict(),
            "kinds": [qualified_name(k) for k in kinds],
            "strategy": fingerprint_part(strategy),
            "validator": fingerprint_part(validator),
        }
    )


def prompt_digest(prompt: str) -> str:
    """The input digest of a library item: a changed prompt makes the item run again."""
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:FINGERPRINT_LENGTH]


class JournalRun:
    """One run's use of a journal: open and key it, skip what is done, commit what ends.

    Built by the runner as a run starts, with the run's *secrets* for the journal
    to mask; :meth:`end` records the run's statistics and closes the journal if
    this run opened it.
    """

    __slots__ = ("_done", "_journal", "_opened", "_pending", "_retry", "resumed", "run")

    def __init__(
        self,
        journal: Journal,
        fingerprint: str,
        secrets: Secrets | None = None,
        *,
        retry: frozenset[ItemStatus] | None = None,
    ) -> None:
        self._journal = journal
        journal.claim(secrets)
        self._opened = not journal.is_open
        try:
            if self._opened:
                journal.open()
        except BaseException:
            journal.release()
            raise
        try:
            journal.bind(fingerprint)
            # The items of a retry round to run again, whatever the journal holds for them.
            self._retry = journal.begin_retry(retry) if retry is not None else None
            self._done = journal.done()
            self.run = journal.begin_run()
        except BaseException:
            self._close()
            raise
        # Line and digest of each item taken and not yet ended: bounded by the items in flight.
        self._pending: dict[str, tuple[int, str]] = {}
        self.resumed = 0
        """Items skipped because the journal holds their result."""

    def admit(self, item: WorkItem, position: int) -> bool:
        """Whether *item* (the *position*-th of the run's items) is to run, not resumed."""
        digest = prompt_digest(item.prompt)
        retry = self._retry
        if retry is not None and item.id in retry:
            pass  # chosen by the retry round: runs again
        elif self._done.get(item.id) == digest or (
            retry is not None and self._journal.adopt(item.id, digest, line=position)
        ):
            self.resumed += 1
            return False
        self._pending[item.id] = (position, digest)
        return True

    def commit(self, result: ItemResult) -> None:
        """Commit *result* (cancelled ones too: they are not done, and run again next time)."""
        line, digest = self._pending.pop(result.id, (None, ""))
        self._journal.record(result, line=line, digest=digest, run=self.run)

    def end(
        self, batch: BatchResult, *, stopped: str | None = None, took_all: bool = False
    ) -> None:
        """Record the end of the run with *batch*'s totals; close the journal if opened here.

        *stopped* is the failure of the run that stopped it, if one did; *took_all*
        says the run took every item (not drained, cancelled or stopped), which
        ends a retry round.
        """
        try:
            stats = run_stats(batch)
            if stopped is not None:
                stats["stopped"] = stopped
            self._journal.end_run(self.run, stats)
            if self._retry is not None and took_all and stopped is None:
                self._journal.finish_retry()
        finally:
            self._close()

    def _close(self) -> None:
        try:
            if self._opened:
                self._journal.close()
        finally:
            self._journal.release()


def run_stats(batch: BatchResult) -> dict[str, Any]:
    """A run's totals as plain JSON data, for :meth:`Journal.end_run`."""
    return {
        "items": batch.items,
        "resumed": batch.resumed,
        "counts": {status.value: n for status, n in batch.counts.items()},
        "prompts": batch.prompts,
        "attempts": batch.attempts,
        "usage": usage_json(batch.usage),
        "wall_time": batch.wall_time,
    }
