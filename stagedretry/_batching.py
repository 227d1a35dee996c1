"""The batch execution mode: each request waits in a round and a batch job answers it.

A batch is only another way to deliver responses.  Each item runs the same
per-item code as in the synchronous mode (build, validate, classify, fire one
trigger); where that code would call ``strategy.generate``, it *parks* its
request in the open round and awaits the answer.  The round closes when every
worker that still has an item is parked (the source gave all it had, or every
slot is busy): its requests are grouped by (stage, model), each group becomes
one job (:meth:`SubmitsBatchJobs.submit_batch`), the job is written to the
journal, then polled with backoff on the runner's clock until it is done, and
each answer is raised or returned in its parked attempt.  Workers whose job
finished move on and park again for the next round while other jobs still run.

Never paying twice: a parked request whose (item, input, stage, attempt) the
journal already holds in a job polls that job again (re-attaches) instead of
being sent.  A job that ends without answering an entry (failed, cancelled,
expired or lost) sends that entry again in the next round, at no prompt, up to
:attr:`BatchMode.max_submits` jobs; after that the attempt is ``TRANSIENT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from ._batch_jobs import BatchEntry, BatchJobLost, BatchJobState, SubmitsBatchJobs
from ._batch_journal import BatchLedger, EntryIdent
from ._clock import Clock
from ._journal import Journal, JournalError
from ._outcomes import OutcomeKind, Rule, TransientError, classify
from ._plan import Backoff, Plan
from ._resume import prompt_digest
from ._strategy import Request, Response, StageContext

__all__ = ["BatchHalted", "BatchMode", "BatchStats", "Rounds"]

DEFAULT_MAX_WAIT = 48 * 3600.0
"""Seconds a job may run after it was submitted (or re-attached) before its entries time out:
the service promises results within 24 hours, and this leaves as much again."""


def _positive_finite(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"BatchMode.{attribute.name} must be a positive number of seconds")


def _at_least_one(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"BatchMode.{attribute.name} must be a whole number of at least 1")


def _backoff(instance: object, attribute: attrs.Attribute[Backoff], value: Backoff) -> None:
    if not isinstance(value, Backoff):
        raise TypeError(f"BatchMode.{attribute.name} is a Backoff, not {type(value).__name__}")
    if not (0 < value.initial <= value.maximum <= 3600 and 1 <= value.multiplier <= 100):
        raise ValueError(
            f"BatchMode.{attribute.name} needs 0 < initial <= maximum <= 3600 and "
            "1 <= multiplier <= 100"
        )


@attrs.frozen
class BatchMode:
    """Run a :class:`~stagedretry.Runner` in batch mode (``Runner(..., batch=BatchMode())``).

    * *poll* -- the wait between two looks at a job: ``poll.ceiling(n)`` seconds
      after look *n*, without jitter (default 10 s growing by 1.5 to 5 min); the first
      look is at once.
    * *max_wait* -- seconds a job may take after it was submitted, or re-attached by
      a resumed run, before its requests end ``TRANSIENT`` (default 48 hours).
    * *max_submits* -- jobs one request may be sent in when jobs end without
      answering it (failed, cancelled, expired or lost); then its attempt ends
      ``TRANSIENT`` (default 3).
    * *journal* -- where jobs are recorded when the run is given no journal of its
      own (the command line keeps its own); default none.  Without any journal a
      killed run cannot re-attach to its jobs.

    Raises ``ValueError`` (``TypeError`` for a *poll* that is no :class:`Backoff`)
    naming the field when a value is out of range.
    """

    poll: Backoff = attrs.field(
        default=Backoff(initial=10.0, maximum=300.0, multiplier=1.5), validator=_backoff
    )
    max_wait: float = attrs.field(default=DEFAULT_MAX_WAIT, validator=_positive_finite)
    max_submits: int = attrs.field(default=3, validator=_at_least_one)
    journal: Journal | None = attrs.field(default=None, eq=False, repr=False, kw_only=True)


@attrs.frozen
class BatchStats:
    """What a batch-mode runner did with batch jobs (all its runs so far).

    * *submitted* -- jobs created.
    * *reattached* -- jobs of an earlier run polled again instead of sending their requests.
    * *resent* -- requests sent again because a job ended without answering them.
    """

    submitted: int = 0
    reattached: int = 0
    resent: int = 0


class BatchHalted(Exception):
    """The run stopped or drained while a request waited for its batch job: nothing more is
    sent, and its job stays in the journal for the next run."""


def entry_key(ident: EntryIdent) -> str:
    """A job entry's key: the stage, the attempt and a hash of the item id and input digest.

    The same (item, input, stage, attempt) always gets the same key, in any run.
    """
    item, digest, stage, attempt = ident
    tail = hashlib.sha256(f"{item}\0{digest}".encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{stage}-{attempt}-{tail}"


class _Parked:
    """One attempt waiting for its answer."""

    __slots__ = ("entry", "future", "ident", "jobs", "previous")

    def __init__(self, entry: BatchEntry, future: asyncio.Future[Any], ident: EntryIdent) -> None:
        self.entry = entry
        self.future = future
        self.ident = ident
        # Jobs this request was sent in (those of earlier runs included); the last one, if it
        # was an earlier run's, is re-attached to.
        self.jobs = 0
        self.previous: str | None = None


StopRunFn = Callable[[str], None]


class Rounds:
    """One run's batch rounds: parks attempts, submits and polls jobs, hands answers back."""

    def __init__(
        self,
        mode: BatchMode,
        strategy: SubmitsBatchJobs,
        plan: Plan,
        rules: Sequence[Rule],
        clock: Clock,
        journal: Journal | None,
        stop_run: StopRunFn,
    ) -> None:
        self._mode = mode
        self._strategy = strategy
        self._plan = plan
        self._rules = rules
        self._clock = clock
        self._ledger = BatchLedger(journal) if journal is not None else None
        self._known = self._ledger.known() if self._ledger is not None else {}
        self._stop_run = stop_run
        self.submitted = 0
        """Jobs this run created."""
        self.reattached = 0
        """Jobs of earlier runs this run polled again instead of sending their requests."""
        self.resent = 0
        """Requests sent again because a job ended without answering them."""
        self._reattached: set[str] = set()
        self._live = 0
        self._open: list[_Parked] = []
        self._flying: set[_Parked] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.halted = False

    # -- workers ------------------------------------------------------------------------------

    def join(self) -> None:
        """A worker starts."""
        self._live += 1

    def leave(self) -> None:
        """A worker has no more items: the round no longer waits for it."""
        self._live -= 1
        self._maybe_close()

    async def deliver(
        self, request: Request, ctx: StageContext, deadline: float | None
    ) -> Response:
        """Park *request* until a job answers it: its Response, or raise its exception.

        Raises :class:`BatchHalted` when the run stops or drains first, and
        ``TimeoutError`` when the item's *deadline* (the runner's clock) passes first.
        """
        if self.halted:
            raise BatchHalted
        ident: EntryIdent = (
            request.item_id,
            prompt_digest(ctx.item.prompt),
            request.stage.name,
            ctx.attempt,
        )
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        parked = _Parked(BatchEntry(entry_key(ident), request, ctx), future, ident)
        earlier = self._known.get(ident)
        if earlier:
            parked.jobs = len(earlier)
            parked.previous = earlier[-1]
        self._open.append(parked)
        self._maybe_close()
        try:
            if deadline is None:
                answer = await future
            else:
                async with self._clock.timeout(deadline - self._clock.monotonic()):
                    answer = await future
        finally:
            if not future.done():
                future.cancel()
            self._forget(parked)
        if isinstance(answer, BaseException):
            raise answer  # the job's per-request error, classified by the attempt's rules
        return answer  # type: ignore[no-any-return]

    def _forget(self, parked: _Parked) -> None:
        self._flying.discard(parked)
        if parked in self._open:
            self._open.remove(parked)

    # -- rounds -------------------------------------------------------------------------------

    def _maybe_close(self) -> None:
        """Close the open round once every worker with an item is parked."""
        if self.halted or not self._open:
            return
        if len(self._open) + len(self._flying) < self._live:
            return
        parked, self._open = self._open, []
        self._flying.update(parked)
        fresh: dict[tuple[str, str | None], list[_Parked]] = {}
        again: dict[str, list[_Parked]] = {}
        # In key order, so that a job's entries do not depend on which worker parked first.
        for p in sorted(parked, key=lambda p: p.entry.key):
            if p.previous is not None:
                again.setdefault(p.previous, []).append(p)
            else:
                stage = p.entry.request.stage
                model = stage.params.get("model")
                fresh.setdefault(
                    (stage.name, model if isinstance(model, str) else None), []
                ).append(p)
        for name, known in again.items():
            if name not in self._reattached:
                self._reattached.add(name)
                self.reattached += 1
            self._spawn(self._follow(name, known))
        for (stage_name, model_name), group in fresh.items():
            self._spawn(self._submit(stage_name, model_name, group))

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _submit(self, stage: str, model: str | None, group: list[_Parked]) -> None:
        entries = [p.entry for p in group]
        plan = self._plan
        refusals = 0
        while True:
            try:
                name = await self._strategy.submit_batch(entries)
                break
            except Exception as exc:
                outcome = classify(exc, self._rules)
                kind = outcome.kind
                if kind is OutcomeKind.STOP_RUN:
                    self._stop_run(outcome.message or "a failure of the run, not of the item")
                    return
                waits = kind in (OutcomeKind.RATE_LIMITED, OutcomeKind.SHED, OutcomeKind.TRANSIENT)
                if not waits or refusals >= plan.max_rate_limit_waits:
                    # Classified again in each attempt, by the same rules.
                    self._answer_all(group, exc)
                    return
                refusals += 1
                backoff = plan.rate_limit_backoff
                wait = (
                    min(outcome.retry_after, backoff.maximum)
                    if outcome.retry_after is not None
                    else backoff.ceiling(refusals)
                )
                await self._clock.sleep(wait)
        self.submitted += 1
        for p in group:
            p.jobs += 1
            p.previous = name
        if self._ledger is not None:
            try:
                self._ledger.record(name, stage, model, [(p.entry.key, p.ident) for p in group])
            except Exception as exc:
                # Polled without a record, a kill would pay for it again: stop rather.
                self._stop_run(f"the batch job {name!r} could not be journaled: {exc}")
                return
        for p in group:
            self._known.setdefault(p.ident, []).append(name)
        await self._follow(name, group)

    async def _follow(self, name: str, group: list[_Parked]) -> None:
        """Poll job *name* until it is done, then hand each entry its answer.

        The first look is at once: a job re-attached to may be done already, and a small
        one may be done as soon as it is accepted.
        """
        clock = self._clock
        mode = self._mode
        until = clock.monotonic() + mode.max_wait
        looks = 0
        while True:
            try:
                state = await self._strategy.poll_batch(name)
            except BatchJobLost:
                state = BatchJobState(name, "LOST", True)
            except Exception as exc:
                outcome = classify(exc, self._rules)
                kind = outcome.kind
                if kind is OutcomeKind.STOP_RUN:
                    self._stop_run(outcome.message or "a failure of the run, not of the item")
                    return
                if kind not in (OutcomeKind.RATE_LIMITED, OutcomeKind.SHED, OutcomeKind.TRANSIENT):
                    self._answer_all(group, exc)
                    return
                state = None
            if state is not None and state.done:
                self._feed(name, group, state)
                return
            left = until - clock.monotonic()
            if left <= 0:
                self._answer_all(
                    group,
                    TransientError(
                        f"the batch job {name!r} was not done {mode.max_wait:g} s after it was "
                        "submitted or re-attached"
                    ),
                )
                return
            looks += 1
            await clock.sleep(min(mode.poll.ceiling(looks), left))

    def _feed(self, name: str, group: list[_Parked], state: BatchJobState) -> None:
        answers = state.answers
        unanswered = False
        for p in group:
            if p.future.done():
                continue  # its item gave up waiting (deadline, cancel)
            answer = answers.get(p.entry.key)
            if answer is not None:
                self._flying.discard(p)
                p.future.set_result(answer)
            elif p.jobs >= self._mode.max_submits:
                self._flying.discard(p)
                p.future.set_result(
                    TransientError(
                        f"{p.jobs} batch jobs ended without answering this request (the last, "
                        f"{name!r}, ended {state.state})"
                    )
                )
            else:
                # Sent again in the next round, at no prompt: the attempt is still the same.
                self._flying.discard(p)
                p.previous = None
                self.resent += 1
                self._open.append(p)
                unanswered = True
        if self._ledger is not None:
            # Only the mark would be lost: a resumed run polls the job again, at no cost.
            with contextlib.suppress(JournalError):
                self._ledger.consume(name)
        if unanswered:
            self._maybe_close()

    def _answer_all(self, group: list[_Parked], error: BaseException) -> None:
        for p in group:
            self._flying.discard(p)
            if not p.future.done():
                p.future.set_result(error)

    # -- the end ------------------------------------------------------------------------------

    def halt(self) -> None:
        """The run stops or drains: submit nothing more, stop polling, wake every parked attempt."""
        if self.halted:
            return
        self.halted = True
        for task in tuple(self._tasks):
            task.cancel()
        for p in (*self._open, *self._flying):
            if not p.future.done():
                p.future.set_exception(BatchHalted())
        self._open.clear()
        self._flying.clear()

    async def aclose(self) -> None:
        """Cancel every task of the rounds and wait for them."""
        self.halted = True
        tasks = tuple(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
