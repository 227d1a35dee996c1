"""The runner: N workers take items from a stream and walk each through the plan.

Per attempt the engine builds the request (stage kind), calls the strategy,
validates, classifies the outcome and fires exactly one trigger on the plan's
machine.  Sleeps, timeouts and timestamps all go through the injected clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
import warnings
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from types import CoroutineType, MappingProxyType
from typing import Any, Generic, Protocol, overload

import attrs

from . import _plan
from ._batch_jobs import SubmitsBatchJobs
from ._batching import BatchHalted, BatchMode, BatchStats, Rounds
from ._clock import Clock, SystemClock
from ._describe import without_reprs
from ._guard import RequestGuard
from ._journal import Journal
from ._logs import default_logger, event_logger
from ._machine import compile_plan
from ._outcomes import (
    FieldError,
    Outcome,
    OutcomeKind,
    PlanError,
    Rule,
    ValidationFailed,
    classify,
    describe,
)
from ._plan import Plan, Trigger
from ._policy import (
    DEADLINE_PASSED,
    STOPPED,
    Decision,
    before_request,
    build_failed,
    count,
    decide,
    skipped,
)
from ._redact import HoldsSecrets, Secrets, mask_errors
from ._resources import ResourcePool, SharedResource
from ._results import (
    NO_USAGE,
    Attempt,
    BatchResult,
    ItemResult,
    Items,
    ItemStatus,
    T,
    Usage,
    WorkItem,
)
from ._resume import JournalRun, fingerprint
from ._settings import stage_params
from ._source import Source, check_container, check_items, is_collection
from ._stages import AsyncValidator, PartialStage, StageKind, Validator, builtin_kinds
from ._state import ItemState
from ._stop import ItemError, ResourceError, RunStopped
from ._strategy import (
    Admits,
    DeclaresParams,
    PlansResources,
    Request,
    Response,
    Settle,
    StageContext,
    Strategy,
    UsesResources,
)
from ._tally import Tally
from ._validating import CheckedValidator

_STATUS = {
    "succeeded": ItemStatus.SUCCEEDED,
    "failed": ItemStatus.FAILED,
    "exhausted": ItemStatus.EXHAUSTED,
}
_SUCCESS = Outcome(OutcomeKind.SUCCEEDED)


def _identity(text: str) -> str:
    return text


class RunnerState(enum.Enum):
    """Where a runner is in its life (read it as :attr:`Runner.state`).

    ``IDLE`` (created, or between runs) -> ``RUNNING`` (:meth:`Runner.run`, or
    :meth:`Runner.stream` until its stream ends, is closed or is dropped) ->
    ``DRAINING`` (:meth:`Runner.drain`, or a failure of the run: see
    :class:`RunStopped`) or ``CANCELLING`` (:meth:`Runner.cancel`,
    or a stream abandoned mid-run) -> ``IDLE`` once the run has ended.
    :meth:`Runner.aclose`, or leaving ``async with runner``, makes it ``CLOSED``
    for good: a closed runner refuses to run.
    """

    IDLE = "idle"
    RUNNING = "running"
    DRAINING = "draining"
    CANCELLING = "cancelling"
    CLOSED = "closed"


class _Scope(enum.Enum):
    """Who closes the shared resources: each run as it ends, or the ``async with`` block."""

    RUN = "run"
    BLOCK = "block"


class _Run:
    """One run's own bookkeeping, so that an abandoned run ending late never touches the next."""

    __slots__ = (
        "busy",
        "cancelled",
        "draining",
        "ended",
        "guard",
        "idle",
        "journal",
        "journal_run",
        "previous",
        "producer",
        "retry",
        "rounds",
        "source",
        "started",
        "stop",
        "stopping",
        "stream",
        "tally",
        "took_all",
    )

    def __init__(
        self,
        previous: _Run | None,
        journal: Journal | None = None,
        retry: frozenset[ItemStatus] | None = None,
    ) -> None:
        # An abandoned run still ending: this one waits for it before it starts.
        self.previous = previous
        self.tally = Tally(0.0)
        # Workers running an item, and workers waiting for the source to give one: the
        # only ones cancel() and drain() interrupt (a worker handing over a result is not).
        self.busy: set[asyncio.Task[Any]] = set()
        self.idle: set[asyncio.Task[Any]] = set()
        self.cancelled: list[ItemResult] = []
        self.started = False
        self.ended = asyncio.Event()
        # The task of a streamed run, which aclose() may cancel (a run() belongs to its caller).
        self.producer: asyncio.Task[None] | None = None
        # The journal this run resumes from and commits to, once the run has opened it.
        self.journal = journal
        self.journal_run: JournalRun | None = None
        # The statuses whose items a retry run runs again (see Journal.begin_retry).
        self.retry = retry
        # Whether the run took every item (not drained, cancelled or stopped): ends a retry round.
        self.took_all = False
        # The stream reading this run, held weakly: a dropped stream must still be collected.
        self.stream: weakref.ref[ResultStream[Any]] | None = None
        # The failure of the run itself that stopped it, raised once the run has ended.
        self.stop: RunStopped | None = None
        # Set with *stop*: items asleep in a backoff or a cooldown wake, as nothing more is sent.
        self.stopping = asyncio.Event()
        # Set by a drain: a request still waiting for quota admission is not in flight, so
        # its wait is given up and the item ends cancelled (see Runner._admission).
        self.draining = asyncio.Event()
        # Bounds the requests no timeout is declared for; made in the loop the run runs in.
        self.guard: RequestGuard | None = None
        # Where the items come from, and the position of each id taken (for the input order).
        self.source: Source | None = None
        # The batch rounds of a run in batch mode (see stagedretry._batching).
        self.rounds: Rounds | None = None


# How long (on the runner's clock, in seconds) a run, or aclose(), waits for an abandoned or
# cancelled run to end: its items were cancelled, so only a strategy that ignores
# cancellation can make it longer, and that is reported rather than waited for without end.
_END_GRACE = 30.0


class ResultStream(AsyncIterator[ItemResult[T]], Generic[T]):
    """Item results in completion order; :attr:`batch` holds the totals once it ends.

    The run starts at the first read.  Leaving ``async with runner.stream(items)
    as results`` early, :meth:`aclose`, or dropping the stream stop the run: the
    items in flight are cancelled and, outside ``async with runner``, the shared
    resources are closed.  ``break`` or an exception out of ``async for r in
    runner.stream(items)`` drops the stream at once.  A stream kept in a variable
    and left unfinished holds the runner (at most *concurrency* more results are
    made while nobody reads) until it is closed or dropped, or until the runner
    is asked for another run, which stops it with a ``RuntimeWarning``; reading it
    after that raises ``RuntimeError``.  ``async with`` makes the end explicit.
    """

    def __init__(self, runner: Runner[T], run: _Run, items: Items) -> None:
        self.batch: BatchResult[T] | None = None
        self._runner = runner
        self._run = run
        self._items: Items | None = items
        # Bounded: a slow consumer holds the workers back instead of piling up results.
        self._queue: asyncio.Queue[ItemResult | _End] = asyncio.Queue(maxsize=runner.concurrency)
        self._producer: asyncio.Task[None] | None = None
        self._done = False
        self._reading = False
        self._superseded = False
        run.stream = weakref.ref(self)

    def __aiter__(self) -> ResultStream[T]:
        return self

    async def __aenter__(self) -> ResultStream[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def __anext__(self) -> ItemResult[T]:
        if self._superseded:
            raise RuntimeError(
                "this stream was stopped when its runner started another run; its items in "
                "flight ended cancelled"
            )
        if self._done:
            raise StopAsyncIteration
        self._reading = True
        try:
            return await self._next()
        finally:
            self._reading = False

    async def _next(self) -> ItemResult[T]:
        if self._producer is None:
            if self._runner._run is not self._run:
                self._done = True
                raise RuntimeError("the runner was closed before this stream was read")
            items, self._items = self._items, None
            assert items is not None
            # The producer holds no reference to this stream, so a stream its reader dropped
            # is collected, and __del__ stops the run.
            self._producer = asyncio.create_task(
                _produce(self._runner, self._run, items, self._queue)
            )
            self._run.producer = self._producer
        elif self._producer.done() and self._queue.empty():
            # The run was stopped from outside (Runner.aclose()): nothing more will come.
            self._done = True
            raise StopAsyncIteration
        try:
            got = await self._queue.get()
        except asyncio.CancelledError:
            # The consumer was cancelled: the run it was reading goes with it.
            await self.aclose()
            raise
        if isinstance(got, _End):
            self._done = True
            # Gathered, not awaited: a producer stopped from outside must not cancel its reader.
            await asyncio.gather(self._producer, return_exceptions=True)
            self.batch = got.batch
            if got.error is not None:
                raise got.error
            raise StopAsyncIteration
        return got

    async def aclose(self) -> None:
        """Stop the run: items in flight are cancelled, no new ones are taken."""
        self._done = True
        producer = self._producer
        if producer is None:
            self._runner._release(self._run)
        elif not producer.done():
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    def supersede(self) -> bool:
        """Stop this stream's run for a new one, if nobody is reading it; say whether it was."""
        if self._reading or self._done:
            return False
        self._superseded = True
        warnings.warn(
            "a stream of this runner was left unfinished: its run is stopped so that the new one "
            "can start (end a stream with `async with runner.stream(...)` or `aclose()`)",
            RuntimeWarning,
            stacklevel=4,
        )
        self._stop_unread()
        return True

    def __del__(self) -> None:
        self._stop_unread()

    def _stop_unread(self) -> None:
        if self._done:
            return
        self._done = True
        producer = self._producer
        if producer is None:
            self._runner._release(self._run)
        elif not producer.done():
            # Nobody reads this run any more and nobody can await it: it is cancelled in the
            # background, and the runner's next run waits for it to end.
            self._runner._abandon(self._run)
            with contextlib.suppress(RuntimeError):  # its event loop is already closed
                producer.cancel()


async def _produce(
    runner: Runner[Any], run: _Run, items: Items, queue: asyncio.Queue[ItemResult | _End]
) -> None:
    try:
        tally = await runner._drive(run, items, queue.put)
    except asyncio.CancelledError:
        # A reader waiting for the next result must learn that none will come.
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait(_End(None))
        raise
    except Exception as exc:
        await queue.put(_End(exc))
    else:
        batch = tally.batch((), runner._clock.monotonic())
        stop = run.stop
        if stop is not None:
            stop.batch = batch
        await queue.put(_End(stop, batch))


class EventLogger(Protocol):
    """What the runner needs of a logger: a structlog ``BoundLogger`` fits."""

    def bind(self, **values: Any) -> EventLogger:
        """A logger that adds *values* to every event."""

    def debug(self, event: str, **values: Any) -> Any:
        """Log a detailed event."""

    def info(self, event: str, **values: Any) -> Any:
        """Log an event."""


OnResult = Callable[[ItemResult], None]
"""Called with each result as its item ends, before the result is handed on."""


class Runner(Generic[T]):
    """Runs items through a plan with a strategy, a validator and shared resources.

    Use :meth:`run` to collect a :class:`BatchResult`, or :meth:`stream` to get
    results as they complete with memory bounded by *concurrency*.  As an async
    context manager the runner keeps its shared resources across runs and
    closes them on exit; otherwise each run prepares them and closes them when
    it ends.  :attr:`state` tells where it is (:class:`RunnerState`).

    * *plan* -- the :class:`Plan` every item follows.
    * *strategy* -- the provider adapter (:class:`Strategy`); its own shared
      resources (:class:`UsesResources`) are added to *resources*.
    * *validator* -- turns an answer's text into the output ``T`` or raises
      :class:`ValidationFailed` (or pydantic's or jsonschema's ``ValidationError``,
      or ``ValueError``: see :mod:`stagedretry.validators`); it may be ``async``
      (:data:`AsyncValidator`), and is then awaited.  Default none: the output is
      the text (``Runner[str]``).  ``sr.validators.pydantic(Book)`` makes a
      ``Runner[Book]``.
    * *concurrency* -- workers, hence items in flight and results buffered by a
      stream (default 16, at least 1).
    * *resources* -- :class:`SharedResource` objects, unique by name.
    * *clock* -- every sleep, timeout and timestamp (default :class:`SystemClock`).
    * *rules* -- classifier rules tried before the strategy's and the engine's own.
    * *kinds* -- stage kinds by name (default :func:`builtin_kinds`).
    * *seed* -- seeds the backoff jitter, for reproducible runs (default: random).
    * *logger* -- where attempt, transition and item events go (default none): a
      structlog logger (anything with ``bind``, ``debug`` and ``info``), or a
      standard-library :class:`logging.Logger`, whose records then read
      ``attempt item='b-1' stage='full_t0' ...`` with the values also in the
      record's ``stagedretry`` attribute.  Anything else raises ``TypeError``.
    * *on_result* -- called synchronously in the worker the moment an item ends,
      before the result is queued for the caller: the place to commit it to a
      journal, so that a crash never loses a finished, paid-for result.
    * *secrets* -- strings (API keys) masked, in any letter case and any piece of
      at least 8 characters, in every attempt error, reason, error message, last
      invalid answer, log event and :class:`ResourceError` of the run, and in
      what a journal of the run writes (:class:`Secrets`).  Default ``None``: the
      values of ``GEMINI_API_KEY`` and ``GOOGLE_API_KEY``; ``()`` for none.  A
      strategy or shared resource that :class:`HoldsSecrets` adds its own.  A
      secret under 8 characters is not searched for, with one ``secret_too_short``
      warning.  An item's ``output`` is the caller's data and is left as it is.

    * *batch* -- a :class:`BatchMode` runs every request through the strategy's batch
      jobs (:class:`SubmitsBatchJobs`) in rounds, with the same per-item semantics,
      budget and accounting: see ``docs/how-to/run-in-batch-mode.md``.  Default
      ``None``: each request is sent on its own (``strategy.generate``).  In batch
      mode a stage's ``timeout``, the backoff and cooldown waits between attempts
      and quota admission (:class:`Admits`) do not apply (the next round is the
      wait; a job has :attr:`BatchMode.max_wait`), and the strategy's own shared
      resources are not prepared (a context cache inside batch jobs is not
      reliably supported); *resources* given here still are.

    Raises ``ValueError`` for a *concurrency* below 1 or two resources of one
    name, :class:`PlanError` for a stage whose kind is not in *kinds*, and
    ``TypeError`` for a *logger* of neither kind, a *batch* that is no
    :class:`BatchMode`, or a *batch* with a strategy that cannot submit batch jobs.
    """

    @overload
    def __init__(
        self: Runner[str],
        plan: Plan,
        strategy: Strategy,
        *,
        validator: None = None,
        concurrency: int = 16,
        resources: Iterable[SharedResource] = (),
        clock: Clock | None = None,
        rules: Iterable[Rule] = (),
        kinds: Mapping[str, StageKind] | None = None,
        seed: int | None = None,
        logger: EventLogger | logging.Logger | logging.LoggerAdapter[Any] | None = None,
        on_result: OnResult | None = None,
        secrets: Secrets | Iterable[str | None] | None = None,
        batch: BatchMode | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        plan: Plan,
        strategy: Strategy,
        *,
        validator: AsyncValidator[T],
        concurrency: int = 16,
        resources: Iterable[SharedResource] = (),
        clock: Clock | None = None,
        rules: Iterable[Rule] = (),
        kinds: Mapping[str, StageKind] | None = None,
        seed: int | None = None,
        logger: EventLogger | logging.Logger | logging.LoggerAdapter[Any] | None = None,
        on_result: OnResult | None = None,
        secrets: Secrets | Iterable[str | None] | None = None,
        batch: BatchMode | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        plan: Plan,
        strategy: Strategy,
        *,
        validator: Validator[T],
        concurrency: int = 16,
        resources: Iterable[SharedResource] = (),
        clock: Clock | None = None,
        rules: Iterable[Rule] = (),
        kinds: Mapping[str, StageKind] | None = None,
        seed: int | None = None,
        logger: EventLogger | logging.Logger | logging.LoggerAdapter[Any] | None = None,
        on_result: OnResult | None = None,
        secrets: Secrets | Iterable[str | None] | None = None,
        batch: BatchMode | None = None,
    ) -> None: ...

    def __init__(
        self,
        plan: Plan,
        strategy: Strategy,
        *,
        validator: Validator[T] | AsyncValidator[T] | None = None,
        concurrency: int = 16,
        resources: Iterable[SharedResource] = (),
        clock: Clock | None = None,
        rules: Iterable[Rule] = (),
        kinds: Mapping[str, StageKind] | None = None,
        seed: int | None = None,
        logger: EventLogger | logging.Logger | logging.LoggerAdapter[Any] | None = None,
        on_result: OnResult | None = None,
        secrets: Secrets | Iterable[str | None] | None = None,
        batch: BatchMode | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if batch is not None:
            if not isinstance(batch, BatchMode):
                raise TypeError(f"batch= takes a BatchMode, not {type(batch).__name__}")
            if not isinstance(strategy, SubmitsBatchJobs):
                raise TypeError(
                    f"{type(strategy).__name__} cannot run in batch mode: it has no "
                    "submit_batch() and poll_batch() (see stagedretry.SubmitsBatchJobs)"
                )
        self._batch = batch
        self._batch_stats = BatchStats()
        log: EventLogger | None = event_logger(logger)
        kinds = builtin_kinds() if kinds is None else dict(kinds)
        for i, stage in enumerate(plan.stages):
            if stage.kind not in kinds:
                raise PlanError(
                    f"plan.stages[{i}].kind",
                    f"unknown stage kind {stage.kind!r} (known: {', '.join(kinds)})",
                )
        # Every stage's params are checked against the strategy's declared type now, before
        # any request: a typo or an out-of-range value fails here, not as a 400 per item.
        declared = strategy.params_type if isinstance(strategy, DeclaresParams) else None
        self._params: tuple[Any, ...] = (
            stage_params(plan, declared)
            if declared is not None
            else tuple(s.params for s in plan.stages)
        )
        self.plan = plan
        self.strategy = strategy
        self.concurrency = concurrency
        self._compiled = compile_plan(plan)
        self._kinds = tuple(kinds[s.kind] for s in plan.stages)
        self._skips = tuple(
            skipped(s.kind, s.name, isinstance(kind, PartialStage))
            for s, kind in zip(plan.stages, self._kinds, strict=True)
        )
        # The validator as given (the fingerprint describes it) and as the stages call it.
        self._validator: Validator[Any] | AsyncValidator[Any] = validator or _identity
        self._check: Validator[Any] = (
            _identity if validator is None else CheckedValidator(validator)
        )
        self._clock = clock or SystemClock()
        self._rules = (*rules, strategy.classify)
        # A strategy that paces itself to a quota is asked before each request is sent
        # (a batch job has quotas of its own, which its submission meets).
        self._admit = strategy.admit if isinstance(strategy, Admits) and batch is None else None
        self._random = random.Random(seed)
        self._log = log
        self._on_result = on_result
        shared = list(resources)
        if isinstance(strategy, UsesResources) and batch is None:
            # A strategy's own resources are shared by construction, not by remembering to.
            # Not in batch mode: a context cache inside batch jobs is not reliably supported.
            shared += [r for r in strategy.shared_resources() if all(r is not s for s in shared)]
        if isinstance(strategy, PlansResources):
            planned = strategy.plan_resources(plan, self._params)
            shared += [r for r in planned if all(r is not s for s in shared)]
        self._secrets = _run_secrets(secrets, strategy, shared, log)
        self._pool = ResourcePool(shared, self._secrets)
        self._cooldown_until = 0.0
        self._state = RunnerState.IDLE
        self._scope = _Scope.RUN
        # The run that owns the runner now, and an abandoned one that may still be ending.
        self._run: _Run | None = None
        self._ending: _Run | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def state(self) -> RunnerState:
        """Where the runner is in its life: see :class:`RunnerState`."""
        return self._state

    async def __aenter__(self) -> Runner[T]:
        if self._state is RunnerState.CLOSED:
            raise RuntimeError("this runner is closed; make a new Runner")
        self._scope = _Scope.BLOCK
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop any run, close the shared resources (each by its own policy) and refuse new runs.

        A run in progress is cancelled (its items end ``cancelled``) and waited
        for, up to 30 seconds on the runner's clock (``RuntimeError`` after
        that).  Every resource is closed even if one fails; the failures are
        raised together as an ``ExceptionGroup``.  Closing twice does nothing.
        """
        if self._state is RunnerState.CLOSED:
            return
        run = self._run
        if run is not None:
            if not run.started:
                self._release(run)  # a stream nobody has read yet
            else:
                self.cancel()
                if run.producer is not None:
                    run.producer.cancel()  # its reader may be gone: the queue would block
                await self._wait_for(run)
        if self._ending is not None:
            await self._wait_for(self._ending)
        self._state = RunnerState.CLOSED
        errors = await self._pool.close()
        if errors:
            raise ExceptionGroup("could not close every shared resource", errors)

    def drain(self) -> None:
        """Take no new items; the ones in flight finish (``RUNNING`` -> ``DRAINING``).

        Does nothing unless the runner is ``RUNNING``.
        """
        run = self._run
        if run is None or self._state is not RunnerState.RUNNING:
            return
        self._state = RunnerState.DRAINING
        run.draining.set()
        for task in tuple(run.idle):
            task.cancel()

    def cancel(self) -> None:
        """Take no new items and cancel those in flight; they end ``cancelled``.

        ``RUNNING`` or ``DRAINING`` -> ``CANCELLING``; otherwise does nothing.
        """
        run = self._run
        if run is None or self._state not in (RunnerState.RUNNING, RunnerState.DRAINING):
            return
        self._state = RunnerState.CANCELLING
        for task in (*run.busy, *run.idle):
            task.cancel()

    def stop(self, reason: str) -> None:
        """Stop the run for a failure of its own, as a :class:`StopRun` verdict does.

        For a cause the caller sees and no item can mend: a spend cap or a job
        cost ceiling reached (check it in ``on_result``).  No new item is taken
        and no new request is sent; requests in flight finish; an item that
        would send another ends ``cancelled`` (reason ``"run stopped: <reason>"``),
        and :meth:`run` or the stream raises :class:`RunStopped` with *reason*
        (masked, see *secrets*) once the run has ended.  The first stop's reason wins.  Does nothing
        unless the runner is ``RUNNING`` or ``DRAINING``.
        """
        run = self._run
        if run is None or self._state not in (RunnerState.RUNNING, RunnerState.DRAINING):
            return
        # The caller's words may quote a provider's error: masked like every other reason.
        self._stop(run, RunStopped(self._secrets.text(reason)))

    @property
    def fingerprint(self) -> str:
        """A short hex hash of what decides results: the plan, the stage kinds, strategy, validator.

        A journal passed to :meth:`run` or :meth:`stream` without a fingerprint
        of its own is keyed by it.  The strategy and the validator are described
        by their ``fingerprint_data()`` if they have one, else by their qualified
        names; concurrency, the clock, the seed, the rules and the hooks are not in it.
        """
        return fingerprint(self.plan, self._kinds, self.strategy, self._validator)

    @property
    def secrets(self) -> Secrets:
        """What this runner masks: the *secrets* given and those its strategy and resources hold."""
        return self._secrets

    @property
    def resource_renewals(self) -> Mapping[str, int]:
        """How many times each shared resource was renewed by this runner."""
        return self._pool.renewals()

    @property
    def batch(self) -> BatchMode | None:
        """The batch mode this runner runs in, or ``None``: each request is sent on its own."""
        return self._batch

    @property
    def batch_stats(self) -> BatchStats:
        """The batch jobs this runner submitted, re-attached to and resent requests in, over
        all its runs (zeros in the synchronous mode); up to date when a run has ended."""
        return self._batch_stats

    def _claim(
        self, journal: Journal | None, retry: Iterable[ItemStatus] | ItemStatus | None = None
    ) -> _Run:
        if self._state is RunnerState.CLOSED:
            raise RuntimeError("this runner is closed; make a new Runner")
        statuses = _retry_statuses(journal, retry)
        current = self._run
        stream = current.stream() if current is not None and current.stream is not None else None
        if stream is not None:
            # A stream left unfinished in a variable (a `break` out of `async for`) and read
            # by nobody now: stopped, as dropping it would, so that this run can start.
            stream.supersede()
        if self._run is not None:
            # Two runs at once would share one set of workers and one drain/cancel state.
            raise RuntimeError(
                "this runner is already running; wait for the run to end or use another runner"
            )
        run = _Run(self._ending, journal, statuses)
        self._run = run
        self._state = RunnerState.RUNNING
        return run

    def _release(self, run: _Run) -> None:
        """*run* has ended (or never started): the runner is free again."""
        run.ended.set()
        if self._ending is run:
            self._ending = None
            if self._run is None and self._state is RunnerState.CANCELLING:
                self._state = RunnerState.IDLE
        elif self._run is run:
            self._run = None
            self._state = RunnerState.IDLE

    def _abandon(self, run: _Run) -> None:
        """*run*'s stream was dropped mid-run: it is being cancelled, and nobody awaits it."""
        if self._run is run:
            self._run = None
            self._ending = run
            self._state = RunnerState.CANCELLING

    async def _wait_for(self, run: _Run) -> None:
        if run.ended.is_set():
            return
        try:
            async with self._clock.timeout(_END_GRACE):
                await run.ended.wait()
        except TimeoutError:
            raise RuntimeError(
                f"an earlier run of this runner has not ended {_END_GRACE:g} s after it was "
                "cancelled (does the strategy ignore cancellation?)"
            ) from None

    # -- running --------------------------------------------------------------------------------

    async def run(
        self,
        items: Items,
        *,
        journal: Journal | None = None,
        retry: Iterable[ItemStatus] | ItemStatus | None = None,
    ) -> BatchResult[T]:
        """Run every item and collect the results, in the order the items were given.

        *items* (sync or async) are :class:`WorkItem` objects, ``(id, prompt[,
        context])`` tuples, or mappings with ``id`` and ``prompt`` keys (a dict, a
        ``csv.DictReader`` row: the mapping is the item's context); ids are unique.
        *items* that are one item or text (a mapping, a ``str``) raise ``TypeError``.
        Anything else, or a repeated id, raises :class:`ItemError`: a collection (a
        list, a tuple) is checked whole before anything is sent; a stream (a
        generator, an async iterable) item by item as it comes, the bad item
        stopping the run there (see :class:`ItemError`).

        With *journal*, items whose result it holds (any status but ``cancelled``,
        for an unchanged prompt) are skipped, not returned: ``BatchResult.resumed``
        counts them and ``journal.results()`` gives every result.  Each result is
        committed to the journal as its item ends, before ``on_result`` sees it.

        *retry* (statuses, e.g. ``{ItemStatus.FAILED, ItemStatus.EXHAUSTED}``;
        needs *journal*) also runs again the items whose latest result in the
        journal, under any fingerprint, has one of them; the items it does not run
        keep their latest result, which the journal then holds under this runner's
        fingerprint too, so ``journal.results()`` gives the whole job.  A retry
        run stopped and started again goes on with the items it has not retried
        yet (see :meth:`Journal.begin_retry`).  Raises ``ValueError`` for *retry*
        without a journal or with no status, ``TypeError`` for a status that is
        not an :class:`ItemStatus`.

        Raises :class:`RunStopped` once the run has ended if a failure of the run
        itself (a :class:`StopRun` verdict, a resource that cannot be prepared)
        stopped it; its ``batch`` holds every result that ended, those the stop
        caught as ``cancelled``.  Raises ``RuntimeError`` if the runner is
        already running or is closed; an abandoned stream's run still ending is
        waited for first.  Raises :class:`JournalError` if the journal cannot be
        opened (another run holds it).
        """
        self._check_items(items)
        results: list[ItemResult] = []

        async def emit(result: ItemResult) -> None:
            results.append(result)

        run = self._claim(journal, retry)
        tally = await self._drive(run, items, emit)
        if run.source is not None:
            # Collected in completion order, returned in the order the items were given.
            position = run.source.ids.position
            results.sort(key=lambda result: position(result.id))
        batch = tally.batch(tuple(results), self._clock.monotonic())
        if run.stop is not None:
            run.stop.batch = batch
            raise run.stop
        return batch

    def stream(
        self,
        items: Items,
        *,
        journal: Journal | None = None,
        retry: Iterable[ItemStatus] | ItemStatus | None = None,
    ) -> ResultStream[T]:
        """Yield results as items end, in completion order, with bounded memory.

        *items* are as for :meth:`run`, and a collection is checked here, before the
        stream is returned (:class:`ItemError`).  Memory holds the items in flight and
        the results not yet read (both bounded by *concurrency*), and the ids seen, to
        refuse a repeated one.  *journal* and *retry* work as in :meth:`run`: items it
        holds are skipped, not yielded, and each result is committed before it is
        yielded.  The runner is ``RUNNING`` from this call until the stream ends, is
        closed or is
        dropped; raises ``RuntimeError`` if it is already running or is closed.
        A run stopped by a failure of its own yields every result that ended,
        then raises :class:`RunStopped` instead of ending (``stream.batch`` and
        the error's ``batch`` hold the totals).
        """
        self._check_items(items)
        # Claimed now, not at the first read: a drain() in between must hold.
        return ResultStream(self, self._claim(journal, retry), items)

    def _check_items(self, items: Items) -> None:
        """Reject a collection with a bad item before the run starts (a stream: as each comes)."""
        try:
            check_container(items)
        except TypeError as exc:
            raise TypeError(self._secrets.text(str(exc))) from None
        if is_collection(items):
            try:
                check_items(items)
            except ItemError as exc:
                raise ItemError(
                    self._secrets.text(str(exc)),
                    position=exc.position,
                    batch=Tally(0.0).batch((), 0.0),
                ) from None

    async def _drive(
        self, run: _Run, items: Items, emit: Callable[[ItemResult], Awaitable[None]]
    ) -> Tally:
        run.started = True
        take: Source | None = None
        watcher: asyncio.Task[None] | None = None
        run.guard = RequestGuard(_plan.DEFAULT_TIMEOUT)
        try:
            if run.previous is not None:
                await self._wait_for(run.previous)
            run.tally = Tally(self._clock.monotonic(), [s.name for s in self.plan.stages])
            if run.journal is not None:
                # Opened, keyed and read before any item is taken: a locked journal sends nothing.
                run.journal_run = JournalRun(
                    run.journal, self.fingerprint, self._secrets, retry=run.retry
                )
            take = run.source = Source(items)
            if self._batch is not None:
                run.rounds = self._rounds(run)
            tasks = [
                asyncio.create_task(self._worker(run, take, emit)) for _ in range(self.concurrency)
            ]
            if run.rounds is not None:
                for _ in tasks:
                    run.rounds.join()
                # A stop or a drain ends the rounds: nothing more is submitted or polled.
                watcher = asyncio.create_task(self._halt_rounds(run, run.rounds))
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            except asyncio.CancelledError:
                await _cancel_all(tasks)
                raise
            failure = next(
                (t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()),
                None,
            )
            if failure is not None:
                await _cancel_all(tasks)
                raise failure
            await asyncio.gather(*tasks, return_exceptions=True)
            # Items cancelled on purpose (runner.cancel()) still get their result.
            for result in run.cancelled:
                await emit(result)
            run.cancelled = []
            run.took_all = self._state is RunnerState.RUNNING and run.stop is None
            return run.tally
        finally:
            run.guard.close()
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            if run.rounds is not None:
                await self._end_rounds(run.rounds)
            try:
                self._end_journal(run)
                if take is not None:
                    await take.aclose()
            finally:
                try:
                    if self._scope is _Scope.RUN:
                        await self._close_quietly()
                finally:
                    self._release(run)

    def _rounds(self, run: _Run) -> Rounds:
        batch = self._batch
        assert batch is not None
        journal = run.journal if run.journal is not None else batch.journal
        return Rounds(
            batch,
            self.strategy,  # type: ignore[arg-type]  # checked in __init__
            self.plan,
            self._rules,
            self._clock,
            journal,
            lambda reason: self._stop(run, RunStopped(self._secrets.text(reason))),
        )

    async def _halt_rounds(self, run: _Run, rounds: Rounds) -> None:
        stopping = asyncio.ensure_future(run.stopping.wait())
        draining = asyncio.ensure_future(run.draining.wait())
        try:
            await asyncio.wait((stopping, draining), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            draining.cancel()
        rounds.halt()

    async def _end_rounds(self, rounds: Rounds) -> None:
        await rounds.aclose()
        total = self._batch_stats
        self._batch_stats = BatchStats(
            total.submitted + rounds.submitted,
            total.reattached + rounds.reattached,
            total.resent + rounds.resent,
        )

    async def _close_quietly(self) -> None:
        # The run's results are already paid for: a failing close must not replace them.
        for error in await self._pool.close():
            if self._log is not None:
                self._log.info("resource_close_failed", error=self._secrets.text(describe(error)))
            warnings.warn(
                f"could not close a shared resource: {self._secrets.text(describe(error))}",
                RuntimeWarning,
                stacklevel=2,
            )

    def _end_journal(self, run: _Run) -> None:
        journal_run, run.journal_run = run.journal_run, None
        if journal_run is not None:
            run.tally.resumed = journal_run.resumed
            journal_run.end(
                run.tally.batch((), self._clock.monotonic()),
                stopped=None if run.stop is None else str(run.stop),
                took_all=run.took_all,
            )

    def _ended(self, run: _Run, result: ItemResult) -> None:
        run.tally.add(result)
        if run.journal_run is not None:
            # Committed in the worker before the result is handed on: a crash loses no paid result.
            run.journal_run.commit(result)
        if self._on_result is not None:
            self._on_result(result)

    def _stop(self, run: _Run, error: RunStopped) -> None:
        """A failure of the run itself: take no new items, send no new request (first one wins)."""
        if run.stop is None:
            run.stop = error
            run.stopping.set()
            if self._log is not None:
                self._log.info("run_stopping", reason=str(error))
        if self._run is run and self._state is RunnerState.RUNNING:
            self.drain()

    def _stopping(self) -> bool:
        # A method, not the attribute: the state changes while a worker awaits.
        return self._state is not RunnerState.RUNNING

    async def _worker(
        self, run: _Run, take: Source, emit: Callable[[ItemResult], Awaitable[None]]
    ) -> None:
        try:
            await self._take_items(run, take, emit)
        finally:
            if run.rounds is not None:
                run.rounds.leave()  # the open batch round no longer waits for this worker

    async def _take_items(
        self, run: _Run, take: Source, emit: Callable[[ItemResult], Awaitable[None]]
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        while self._state is RunnerState.RUNNING:
            try:
                if take.is_sync:
                    got = take.next_sync()
                else:
                    run.idle.add(task)
                    try:
                        got = await take.next()
                    except asyncio.CancelledError:
                        if self._stopping():
                            return  # drain() or cancel(): stop waiting for the source
                        raise
                    finally:
                        run.idle.discard(task)
            except ItemError as exc:
                # A stream's bad item, found as it came: it is not run, and the run stops
                # as for a failure of its own (requests out finish, nothing new is sent).
                self._stop(run, ItemError(self._secrets.text(str(exc)), position=exc.position))
                return
            if got is None:
                return
            position, item = got
            journal_run = run.journal_run
            if journal_run is not None and not journal_run.admit(item, position):
                continue  # its result is in the journal: resumed, not run again
            run.busy.add(task)
            try:
                result = await self._run_item(run, item)
            finally:
                run.busy.discard(task)
            self._ended(run, result)
            await emit(result)

    async def _run_item(self, run: _Run, item: WorkItem) -> ItemResult:
        plan = self.plan
        clock = self._clock
        compiled = self._compiled
        state = ItemState(item, compiled.initial, len(plan.stages), clock.monotonic())
        deadline = state.started + plan.deadline if plan.deadline is not None else None
        log = None
        if self._log is not None:
            log = self._log.bind(item=item.id)
            log.debug("item_start", stage=compiled.initial)
        try:
            while True:
                index = compiled.stage_index[state.state]
                tried: _Tried | None = None
                if run.stop is not None:
                    decision: Decision | None = STOPPED
                else:
                    # The clock is read only for a plan with a deadline: this runs before
                    # every request.
                    now = clock.monotonic() if deadline is not None else 0.0
                    decision = before_request(state, plan, now, index)
                if decision is None:
                    step = await self._attempt(run, state, index, deadline, log)
                    if isinstance(step, Decision):
                        decision = step
                    else:
                        tried = step
                        decision = decide(state, index, plan, step.outcome)
                if decision.trigger is None:
                    # A failure of the run, not of this item: it is not final, and a later
                    # run takes it again.
                    if decision.reason is not None:
                        self._stop(run, RunStopped(decision.reason))
                    if run.stop is not None:
                        why = f"run stopped: {run.stop}"
                    elif run.rounds is not None:
                        why = (
                            "drained while waiting for a batch job: the next run takes the item "
                            "again, re-attaching to a job already sent"
                        )
                    else:
                        why = "drained while waiting for quota admission: nothing was sent"
                    return self._result(state, why, status=ItemStatus.CANCELLED)
                after = self._fire(run.tally, state, decision.trigger, log)
                if after not in compiled.stage_index:
                    reason = decision.reason
                    if reason is None:
                        reason = _TERMINAL_REASONS.get(after)
                    return self._result(state, reason, None if tried is None else tried.output)
                if run.rounds is not None:
                    pass  # batch mode: the next round is the wait
                elif decision.pause_all:
                    delay = self._draw(decision)
                    # One refusal pauses every worker: the API is not hammered meanwhile.
                    self._cooldown_until = max(self._cooldown_until, clock.monotonic() + delay)
                elif decision.jitter or decision.wait:
                    await self._sleep(run, self._draw(decision), deadline)
                if decision.renew and tried is not None:
                    try:
                        await self._pool.lost(tried.outcome.resource, tried.generations, clock)
                    except ResourceError as exc:
                        self._stop(run, exc)
        except asyncio.CancelledError:
            cancelled = self._result(state, "cancelled", status=ItemStatus.CANCELLED)
            run.cancelled.append(cancelled)
            self._ended(run, cancelled)
            raise

    def _draw(self, decision: Decision) -> float:
        return self._random.uniform(0, decision.wait) if decision.jitter else decision.wait

    async def _attempt(
        self,
        run: _Run,
        state: ItemState,
        index: int,
        deadline: float | None,
        log: EventLogger | None,
    ) -> _Tried | Decision:
        """One attempt: build, call, read and classify; a Decision when nothing was sent."""
        plan = self.plan
        clock = self._clock
        item = state.item
        stage = plan.stages[index]
        kind = self._kinds[index]
        try:
            request = kind.build(item, state, stage)
        except Exception as exc:
            return build_failed(stage.kind, exc)
        if request is None:
            return self._skips[index]
        if self._cooldown_until > clock.monotonic():
            await self._cool_down(run, deadline)
            if run.stop is not None:
                return STOPPED  # woken by the stop: no resource is prepared for it either
            if deadline is not None:
                # The wait may have brought the deadline, or an expedite's window, closer.
                late = before_request(state, plan, clock.monotonic(), index)
                if late is not None:
                    return late
        if self._pool:
            try:
                handles, generations = await self._pool.current(clock, stage)
            except ResourceError as exc:
                self._stop(run, exc)
                return STOPPED
        else:
            handles, generations = _NO_HANDLES, ()
        if run.stop is not None:
            return STOPPED  # it stopped while this item waited: nothing more is sent
        number = len(state.attempts) + 1
        ctx = StageContext(item, state, stage, plan, handles, clock, number, self._params[index])
        settle: Settle | None = None
        refused: BaseException | None = None
        if self._admit is not None:
            admitted = await self._admission(run, request, ctx, deadline)
            if isinstance(admitted, Decision):
                return admitted
            if isinstance(admitted, BaseException):
                refused = admitted
            else:
                settle = admitted
        timeout = stage.timeout or plan.timeout
        started = clock.monotonic()
        if deadline is not None:
            timeout = min(timeout or deadline - started, deadline - started)
        rounds = run.rounds
        response = None
        meta = None
        output = None
        error: str | None = None
        failure: BaseException | None = None
        try:
            if refused is not None:
                raise refused  # the admission's own verdict, classified as any attempt's
            if rounds is not None:
                # Batch mode: parked until a job answers (bounded by the job's own limit and
                # the item's deadline, not by the request timeout).
                response = await rounds.deliver(request, ctx, deadline)
            elif timeout is None:
                # None declared: a guard in real seconds, so that no request waits without
                # end, and a test moving virtual time over a live request does not fire it.
                guard = run.guard
                assert guard is not None
                task = guard.enter()
                try:
                    response = await self.strategy.generate(request, ctx)
                except BaseException as exc:
                    if guard.leave(task, isinstance(exc, asyncio.CancelledError)):
                        raise TimeoutError from exc
                    raise
                guard.leave(task, False)
            else:
                async with clock.timeout(timeout):
                    response = await self.strategy.generate(request, ctx)
            meta = response.meta
            output = kind.parse(response, state, self._check)
            if type(output) is CoroutineType:
                # The checked validator hands an async validator's awaitable over as its
                # own coroutine, so this cheap test is the whole test: it is awaited, and a
                # coroutine never becomes an output.
                output = await output
            outcome = _SUCCESS
        except BatchHalted:
            return STOPPED  # drained or stopped while parked: nothing recorded, not final
        except ValidationFailed as exc:
            # Server text (an answer quoted by a validator) is masked before anything keeps it.
            error = self._secrets.text(str(exc))
            outcome = Outcome(OutcomeKind.INVALID, error)
            state.errors = exc.errors
            state.partial = exc.partial
            state.last_invalid = (
                exc.text
                if exc.text is not None
                else (response.text if response is not None else None)
            )
        except Exception as exc:
            failure = exc
            if _not_a_response(response):
                # A strategy bug fails its item, not the whole run.
                failure = TypeError(
                    f"{type(self.strategy).__name__}.generate returned "
                    f"{type(response).__name__}, not a Response"
                )
                response = None
            outcome = classify(failure, self._rules)
            # Masked, and without object reprs (an address per run) whoever classified it.
            shown = without_reprs(
                self._secrets.text(outcome.message) if self._secrets else outcome.message
            )
            if shown != outcome.message:
                outcome = attrs.evolve(outcome, message=shown)
            error = outcome.message
            # A billed response keeps its metadata even when reading it failed.
            meta = getattr(failure, "meta", None) or meta
            if outcome.kind is OutcomeKind.INVALID:
                state.errors = (FieldError("", outcome.message),)
                state.partial = None
        except BaseException:
            if settle is not None:
                settle(None)  # cancelled on the wire: what the admission holds is let go
            raise
        if settle is not None:
            settle(response.usage if response is not None else None)
        counted = count(state, index, outcome)
        state.attempts.append(
            Attempt(
                stage.name,
                outcome.kind,
                number,
                counted,
                _usage_of(response, failure),
                meta,
                error,
                request.fields,
                started,
                clock.monotonic() - started,
                # Read only when something was mended: this runs for every attempt.
                state.take_mended() if state.mended else (),
            )
        )
        if log is not None:
            log.info(
                "attempt",
                stage=stage.name,
                attempt=number,
                outcome=outcome.kind.value,
                error=error,
            )
        return _Tried(outcome, output, generations)

    def _fire(
        self, tally: Tally, state: ItemState, trigger: Trigger, log: EventLogger | None
    ) -> str:
        before = state.state
        after = self._compiled.fire(state, trigger)
        tally.transitions[trigger] += 1
        if log is not None and after != before:
            log.debug(
                "transition",
                trigger=trigger.value,
                source=before,
                dest=after,
                attempt=len(state.attempts),
            )
        return after

    def _result(
        self,
        state: ItemState,
        reason: str | None,
        output: Any = None,
        *,
        status: ItemStatus | None = None,
    ) -> ItemResult:
        final = state.attempts[-1].stage if state.attempts else None
        status = status or _STATUS[state.state]
        # A success has no errors left, whatever earlier attempts reported.
        errors = state.errors if status is not ItemStatus.SUCCEEDED else ()
        last_invalid = state.last_invalid
        secrets = self._secrets
        if secrets:
            # Masked here, not in the item's state: a repair prompt still quotes the errors.
            reason = secrets.text(reason) if reason is not None else None
            errors = mask_errors(errors, secrets)
            last_invalid = secrets.leaves(last_invalid)
        result = ItemResult(
            state.item.id,
            status,
            output,
            final,
            state.prompts,
            tuple(state.attempts),
            reason,
            errors,
            last_invalid,
            state.item.context,
        )
        if self._log is not None:
            self._log.info(
                "item_end",
                item=state.item.id,
                status=result.status.value,
                stage=final,
                attempt=len(state.attempts),
                prompts=state.prompts,
                reason=reason,
            )
        return result

    async def _admission(
        self, run: _Run, request: Request, ctx: StageContext, deadline: float | None
    ) -> Settle | Decision | BaseException:
        """Wait for the strategy's quota admission, given up when the run stops or the deadline
        passes; its exception, if it refused, to be recorded as the attempt's outcome."""
        assert self._admit is not None
        clock = self._clock
        admit = asyncio.ensure_future(self._admit(request, ctx))
        waits = [
            admit,
            asyncio.ensure_future(run.stopping.wait()),
            asyncio.ensure_future(run.draining.wait()),
        ]
        if deadline is not None:
            waits.append(asyncio.ensure_future(clock.sleep(deadline - clock.monotonic())))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits[1:]:
                task.cancel()
            if not admit.done():
                admit.cancel()
                # Cancelled here, so what it holds is let go before the item moves on.
                with contextlib.suppress(asyncio.CancelledError):
                    await admit
        if admit.cancelled():
            # A drain or a stop: the item ends cancelled, not final; else its deadline passed.
            return STOPPED if run.stop is not None or run.draining.is_set() else DEADLINE_PASSED
        error = admit.exception()
        if error is not None:
            if not isinstance(error, Exception):
                raise error
            return error
        settle = admit.result()
        if run.stop is not None:
            settle(None)  # admitted as the run stopped: nothing is sent
            return STOPPED
        return settle

    async def _cool_down(self, run: _Run, deadline: float | None) -> None:
        # The cooldown may be extended by other workers' 429s while this one waits.
        while (wait := self._cooldown_until - self._clock.monotonic()) > 0:
            if deadline is not None:
                wait = min(wait, deadline - self._clock.monotonic())
                if wait <= 0:
                    return
            if not await self._pause(run, wait):
                return

    async def _sleep(self, run: _Run, seconds: float, deadline: float | None) -> None:
        if deadline is not None:
            seconds = min(seconds, deadline - self._clock.monotonic())
        if seconds > 0:
            await self._pause(run, seconds)

    async def _pause(self, run: _Run, seconds: float) -> bool:
        """Sleep *seconds* on the runner's clock, or less if the run stops; ``False`` if it did."""
        if run.stop is not None:
            return False
        # A stop must not wait out a backoff of up to an hour: the sleeper sends nothing more.
        sleep = asyncio.ensure_future(self._clock.sleep(seconds))
        stopping = asyncio.ensure_future(run.stopping.wait())
        try:
            await asyncio.wait((sleep, stopping), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleep.cancel()
            stopping.cancel()
        if sleep.done() and not sleep.cancelled():
            sleep.result()  # a clock's own failure is not swallowed
        return run.stop is None


def _run_secrets(
    given: Secrets | Iterable[str | None] | None,
    strategy: Strategy,
    resources: Iterable[SharedResource],
    logger: EventLogger | None,
) -> Secrets:
    """The runner's secrets: *given* (default: the environment's keys) and those held by the
    strategy and the resources; one warning for each too short to search for."""
    if isinstance(given, Secrets):
        base, known = given, given.skipped
    else:
        base = Secrets.from_environment() if given is None else Secrets(given)
        known = ()
    held = [
        value
        for holder in (strategy, *resources)
        if isinstance(holder, HoldsSecrets)
        for value in holder.secrets()
    ]
    secrets = base.union(held) if held else base
    new = len(secrets.skipped) - len(known)
    if new > 0:
        log: Any = logger if logger is not None else default_logger("stagedretry")
        warn = getattr(log, "warning", None) or log.info
        warn(
            "secret_too_short",
            secrets=new,
            min_length=secrets.min_length,
            detail=(
                f"{new} secret(s) shorter than {secrets.min_length} characters cannot be a real "
                "API key and are not masked"
            ),
        )
    return secrets


def _usage_of(response: Response | None, failure: BaseException | None) -> Usage:
    if response is not None:
        return response.usage
    # An error raised after a billed response may carry what that response cost.
    usage = getattr(failure, "usage", None)
    return usage if isinstance(usage, Usage) else NO_USAGE


def _not_a_response(value: object) -> bool:
    return value is not None and not isinstance(value, Response)


_TERMINAL_REASONS = {"exhausted": "no stage left", "failed": "failed"}


class _Tried:
    """What one sent request came to: its outcome, the output if it succeeded, and the
    generation of each shared resource it used (to renew the right one if it was lost)."""

    __slots__ = ("generations", "outcome", "output")

    def __init__(self, outcome: Outcome, output: Any, generations: tuple[int, ...]) -> None:
        self.outcome = outcome
        self.output = output
        self.generations = generations


class _End:
    __slots__ = ("batch", "error")

    def __init__(self, error: BaseException | None, batch: BatchResult | None = None) -> None:
        self.error = error
        self.batch = batch


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


_NO_HANDLES: Mapping[str, Any] = MappingProxyType({})


def _retry_statuses(
    journal: Journal | None, retry: Iterable[ItemStatus] | ItemStatus | None
) -> frozenset[ItemStatus] | None:
    """*retry* checked: a non-empty set of statuses, given with a journal."""
    if retry is None:
        return None
    if isinstance(retry, str):
        raise TypeError(
            f"retry= takes ItemStatus values (e.g. {{ItemStatus.FAILED}}), not {retry!r}"
        )
    statuses = (retry,) if isinstance(retry, ItemStatus) else tuple(retry)
    for status in statuses:
        if not isinstance(status, ItemStatus):
            raise TypeError(
                f"retry= takes ItemStatus values (e.g. ItemStatus.FAILED), got {status!r}"
            )
    if not statuses:
        raise ValueError("retry= needs at least one status, e.g. {ItemStatus.FAILED}")
    if journal is None:
        raise ValueError("retry= needs a journal=: the results to retry are in the journal")
    return frozenset(statuses)
