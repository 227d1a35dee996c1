"""One run of a pipeline: input, journal, backend, runner, progress and output, in that order.

The order of writes is what makes a run crash-safe: a result is committed to
the journal the moment its item ends, in the worker (the runner's
``on_result``), before the runner hands it on; only then is it appended to the
output file and shown.  A new run skips every item the journal holds (unless
its input line changed or it ended ``cancelled``), so nothing is sent twice,
and rebuilds the output file from the journal at its start and at its end.

Ctrl-C (or SIGTERM, or SIGHUP) once: no new items are taken, those in flight
finish (each within its request timeout) and the summary is printed.  Twice:
the items in flight are cancelled, recorded as ``cancelled`` and run again by
the next run; a strategy that ignores the cancellation is given up after
:data:`CANCEL_GRACE` seconds.  A third time: the default handlers are back and
``KeyboardInterrupt`` is raised at once.  A signal that comes before the first
item starts no item.  The first signal (or ``run.deadline``) decides the exit
code when items are left: see ``stagedretry.cli._exit``.

A file that cannot be written during the run (the journal, the output, a log;
see :mod:`._files`) stops it like a first Ctrl-C, and is reported in the
:class:`~._files.IOFailures` given; an item whose commit failed is not shown
nor written, so the next run does it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Final

from rich.console import Console
from rich.text import Text

from strategies.backend import Built, close_all

from .._journal import Journal, JournalError
from .._redact import Secrets
from .._results import ItemResult, ItemStatus, WorkItem
from .._runner import Runner
from .._stop import RunStopped
from ._backends import build_backend, command_secrets
from ._batch_mode import batch_mode, batch_notes, check_unread_jobs
from ._ceiling import Ceiling
from ._exit import ExitCode, for_signal
from ._files import IOFailures, with_journal_hint
from ._input import InputRecord, read_input
from ._output import OutputError, OutputWriter
from ._progress import LiveProgress
from ._retry import check_journal, start_retry
from ._summary import RunStats, Summary, build_summary, run_stats
from .pipeline import Pipeline
from .report import run_record

CANCEL_GRACE: Final = 5.0
"""Seconds the items in flight get to end once cancelled; then the run stops waiting for them."""
CLOSE_GRACE: Final = 30.0
"""Seconds the backend gets to close everything it started (a server, a client)."""

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop a run gracefully: once drains, twice cancels."""


class StopNow(KeyboardInterrupt):
    """The third interrupt: stop without waiting; *code* is the first signal's exit code."""

    def __init__(self, code: ExitCode) -> None:
        super().__init__()
        self.code = code


class _Interrupts:
    """Ctrl-C once: drain; twice: cancel; three times: give the signals back and stop now."""

    def __init__(self, console: Console, log: Any) -> None:
        self.count = 0
        self.deadline_passed = False
        self.stopped: ExitCode | None = None
        """The code of what stopped the run first: a signal's (128 + its number) or 124."""
        self.given_up = asyncio.Event()
        """Set when cancelled items have not ended within :data:`CANCEL_GRACE`."""
        self._console = console
        self._log = log
        self.runner: Runner | None = None
        self.progress: LiveProgress | None = None
        self.restore: Callable[[], None] = _nothing
        """Puts the default signal handlers back (set while :func:`_signals` is active)."""

    def interrupt(self, signum: int = signal.SIGINT) -> None:
        self.count += 1
        if self.stopped is None:
            self.stopped = for_signal(signum)
        if self.count >= 3:
            # Cancelling did not end the run (a strategy that ignores cancellation, with
            # no timeout): stop waiting.  From now on Ctrl-C is Python's own again.
            self._log.warning("run_abandoned", reason="interrupt", quiet=True)
            self._console.print(
                Text("interrupted a third time: stopping without waiting", style="yellow"),
                soft_wrap=True,
            )
            self.restore()
            raise StopNow(self.stopped)
        self.apply()

    def apply(self) -> None:
        """Bring the runner to what the interrupts so far ask: draining, or cancelling."""
        runner, progress = self.runner, self.progress
        if runner is None:
            return  # no item started yet: none will (see run_job)
        if self.count == 0:
            if self.deadline_passed:  # the deadline came before the runner
                runner.drain()
            return
        if self.count == 1:
            runner.drain()
            if progress is not None:
                progress.describe("draining")
            self._console.print(
                Text(
                    "interrupted: taking no new items, letting those in flight finish "
                    "(interrupt again to cancel them)",
                    style="yellow",
                ),
                soft_wrap=True,
            )
            self._log.warning("run_draining", reason="interrupt", quiet=True)
        elif self.count == 2:
            runner.cancel()
            # A strategy that ignores the cancellation must not hold the process.
            asyncio.get_running_loop().call_later(CANCEL_GRACE, self.given_up.set)
            if progress is not None:
                progress.describe("cancelling")
            self._console.print(
                Text("cancelling the items in flight; the next run retries them", style="yellow"),
                soft_wrap=True,
            )
            self._log.warning("run_cancelling", reason="interrupt", quiet=True)

    def io_failed(self) -> None:
        """A file could not be written: take no new items (the error is reported at the end)."""
        if self.runner is not None:
            self.runner.drain()
        if self.progress is not None:
            self.progress.describe("stopping")
        self._log.warning("run_draining", reason="a file could not be written", quiet=True)

    def console_note(self, message: str) -> None:
        self._console.print(Text(message, style="yellow"), soft_wrap=True)

    def deadline(self) -> None:
        self.deadline_passed = True
        if self.stopped is None:
            self.stopped = ExitCode.DEADLINE
        if self.runner is not None:
            self.runner.drain()
        if self.progress is not None:
            self.progress.describe("deadline")
        self._log.warning("run_draining", reason="run deadline passed", quiet=True)


def _nothing() -> None:
    pass


@contextlib.contextmanager
def _signals(interrupts: _Interrupts) -> Iterator[None]:
    """Route SIGINT, SIGTERM and SIGHUP to *interrupts* while the block runs."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in STOP_SIGNALS:
        try:
            loop.add_signal_handler(sig, interrupts.interrupt, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            continue
        installed.append(sig)

    def restore() -> None:
        # asyncio puts back Python's defaults: KeyboardInterrupt for SIGINT, exit for the others.
        while installed:
            loop.remove_signal_handler(installed.pop())

    interrupts.restore = restore
    try:
        yield
    finally:
        interrupts.restore = _nothing
        restore()


async def _until_given_up(
    run: Coroutine[Any, Any, None], interrupts: _Interrupts, log: Any
) -> None:
    """Await *run*, unless its cancelled items have not ended :data:`CANCEL_GRACE` s after."""
    running = asyncio.ensure_future(run)
    giving_up = asyncio.ensure_future(interrupts.given_up.wait())
    try:
        await asyncio.wait({running, giving_up}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        giving_up.cancel()
    if running.done():
        running.result()  # its error, if any, is the run's
        return
    # Left running: the process ends soon without waiting for it (see _loop.run_bounded).
    log.warning(
        "run_abandoned",
        reason=f"items in flight did not end {CANCEL_GRACE:g} s after cancel",
        quiet=True,
    )
    interrupts.console_note(
        f"the items in flight did not end {CANCEL_GRACE:g} s after they were cancelled: "
        "stopping without them"
    )


async def _bounded_close(backend: Built, log: Any) -> None:
    """Close what the backend started, giving up after :data:`CLOSE_GRACE` seconds."""
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await close_all(backend.closers)
    except TimeoutError:
        log.warning("backend_close_abandoned", seconds=CLOSE_GRACE)


def _took_every_item(interrupts: _Interrupts, run_failure: RunStopped | None) -> bool:
    """Whether the run took every item it was to run: no signal, deadline or stop came."""
    return not interrupts.count and not interrupts.deadline_passed and run_failure is None


def _ordered(
    results: list[ItemResult], records: dict[str, InputRecord]
) -> list[tuple[ItemResult, int | None]]:
    rows: list[tuple[ItemResult, int | None]] = [(r, records[r.id].line) for r in results]
    rows.sort(key=lambda row: row[1] or 0)
    return rows


async def run_job(
    pipeline: Pipeline,
    *,
    console: Console,
    log: Any,
    fresh: bool = False,
    progress: bool = True,
    api_key: str | None = None,
    secrets: Secrets | None = None,
    failures: IOFailures | None = None,
    retry: frozenset[ItemStatus] | None = None,
) -> Summary:
    """Run *pipeline* to the end (or to an interrupt) and return the job's summary.

    *secrets* are masked in everything the run writes (default: *api_key* and
    the keys in the environment).  *retry* (``--retry``) also runs again the
    items whose latest result has one of these statuses (see :mod:`._retry`);
    a ``PlanError`` if there is no journal to retry from.

    Raises ``InputError``, ``OutputBusy``, ``OutputError``, ``FileIOError``,
    ``JournalError`` or ``BackendError`` before any request is sent when the job
    cannot start.  A file that fails later is added to *failures* (the run
    stops taking items) and the summary is still returned.
    """
    records = read_input(pipeline.input)
    failures = failures if failures is not None else IOFailures()
    if secrets is None:
        secrets = command_secrets(api_key)
    writer = OutputWriter(pipeline.output.path, secrets=secrets)
    # Before the journal is touched: a run refused here has done nothing at all.
    writer.lock()
    try:
        return await _run_locked(
            pipeline,
            records,
            writer,
            console=console,
            log=log,
            fresh=fresh,
            progress=progress,
            api_key=api_key,
            secrets=secrets,
            failures=failures,
            retry=retry,
        )
    finally:
        writer.unlock()


async def _run_locked(
    pipeline: Pipeline,
    records: list[InputRecord],
    writer: OutputWriter,
    *,
    console: Console,
    log: Any,
    fresh: bool,
    progress: bool,
    api_key: str | None,
    secrets: Secrets,
    failures: IOFailures,
    retry: frozenset[ItemStatus] | None,
) -> Summary:
    by_id = {r.id: r for r in records}
    journal_path = pipeline.journal.path

    def report(error: OutputError | JournalError) -> None:
        message = with_journal_hint(error, journal_path)
        if failures.add(message):
            log.error("io_failed", error=message, quiet=True)

    if retry is not None:
        check_journal(journal_path, retry)
    with Journal(journal_path, pipeline.fingerprint, secrets=secrets) as journal:
        notes = []
        if fresh:
            dropped = journal.discard()
            if dropped:
                # Said now, before anything runs: the forgetting happens here.
                console.print(Text(f"--fresh: forgot {dropped} earlier results"), soft_wrap=True)
        retried: frozenset[str] = frozenset()
        if retry is not None:
            start = start_retry(journal, records, retry)
            retried = start.targets
            console.print(Text(start.notice(retry)), soft_wrap=True)
        foreign = journal.foreign()
        if foreign and retry is None:  # a retry run reads them: it says what it does above
            notes.append(
                f"the journal also holds {foreign} results of other pipelines or of earlier "
                "versions of this one (a changed plan, model, instruction, template or output "
                "model); they are not reused"
            )
        done = journal.done()
        todo = [r for r in records if done.get(r.id) != r.digest or r.id in retried]
        todo_ids = {r.id for r in todo}
        kept = [
            e.result
            for e in journal.entries()
            if e.result.id in by_id and e.result.id not in todo_ids
        ]
        try:
            writer.rebuild(_ordered(kept, by_id))
        except OutputError as exc:
            raise OutputError(with_journal_hint(exc, journal_path), errno=exc.errno) from None
        log.info(
            "run_start",
            pipeline=pipeline.name,
            fingerprint=pipeline.fingerprint,
            items=len(records),
            to_run=len(todo),
            from_journal=len(kept),
        )
        runnable = [r for r in todo if r.error is None]
        check_unread_jobs(pipeline, journal, (r.id for r in runnable))
        # The job's ceilings count what the journal's earlier runs spent (see _ceiling),
        # the results a retried or cancelled item replaces included.
        ceiling = Ceiling.start(
            pipeline,
            (e.result for e in journal.paid() if e.result.id in by_id)
            if pipeline.run.max_cost_usd is not None or pipeline.run.max_tokens is not None
            else (),
            run_stats(journal),
        )
        started = time.monotonic()
        this_run: Counter[str] = Counter()
        cache_tokens = 0
        cache_tokens_by_model: dict[str, int] = {}
        interrupts = _Interrupts(console, log)
        # A failure of the run (the key, billing, the model, a quota): the summary says it.
        run_failure: RunStopped | None = None
        if ceiling is not None and ceiling.reached is not None and runnable:
            run_failure = RunStopped(ceiling.reached)  # reached already: nothing is sent
            runnable = []
        backend: Built | None = None
        run_id: int | None = None
        # Items whose commit failed: not done, so neither shown nor written.
        uncommitted: set[str] = set()
        appending = True
        took_all = False
        final: list[ItemResult] = []
        # The signals are ours from here to the summary: one that comes while the backend
        # starts, or while it closes, stops the run the same way as one during the items.  (On
        # an error the loop's end removes them; the command then puts its own in place.)
        handlers = _signals(interrupts)
        handlers.__enter__()
        try:
            # Inside the try: whatever the backend starts is closed, however the run ends.
            backend = (
                await build_backend(
                    pipeline,
                    api_key=api_key,
                    secrets=secrets,
                    failures=failures,
                    expected_items=len(runnable),
                )
                if runnable
                else None
            )
            if interrupts.count and backend is not None:
                console.print(
                    Text("interrupted before the first item: no item was started", style="yellow"),
                    soft_wrap=True,
                )
            run_id = journal.begin_run()
            run = run_id

            def record_of(result: ItemResult) -> InputRecord:
                context = result.context
                return context if isinstance(context, InputRecord) else by_id[result.id]

            def commit(result: ItemResult) -> None:
                # Called in the worker as the item ends (cancelled ones too), before the result
                # is queued: a crash can then lose no finished result, which would be paid twice.
                record = record_of(result)
                try:
                    journal.record(result, line=record.line, digest=record.digest, run=run)
                except JournalError as exc:
                    uncommitted.add(result.id)
                    report(exc)
                if ceiling is not None:
                    ceiling.add(result)

            with LiveProgress(console, total=len(records), done=len(kept), enabled=progress) as bar:
                bar.seed(kept)

                def show(result: ItemResult) -> None:
                    # Only for a result already in the journal.
                    nonlocal appending
                    if result.id in uncommitted:
                        return
                    record = record_of(result)
                    if appending:
                        try:
                            writer.append(result, record.line)
                        except OutputError as exc:
                            appending = False  # the final rebuild tries once more
                            report(exc)
                    this_run[result.status.value] += 1
                    bar.advance(result)
                    log.info(
                        "item_recorded",
                        item=result.id,
                        stage=result.final_stage,
                        attempt=len(result.attempts),
                        outcome=result.status.value,
                        line=record.line,
                        prompts=result.prompts,
                        reason=result.reason,
                    )

                for record in todo:
                    if record.error is not None:
                        failed = ItemResult(
                            record.id, ItemStatus.FAILED, reason=record.reason, context=record
                        )
                        commit(failed)
                        show(failed)
                if backend is not None and not failures and not interrupts.count:
                    # Not runner.stream(items, journal=...): the CLI's rows carry the input line
                    # and that line's digest (a changed record field reruns its item, not only a
                    # changed prompt), input errors are committed before any runner exists, and
                    # the run's record holds cache stats known only once the backend is closed.
                    # So it keeps its own filter and run record, and commits the library's way:
                    # in the worker, before the result is handed on (on_result).
                    batch = batch_mode(pipeline, journal)
                    runner = Runner(
                        pipeline.plan,
                        backend.strategy,
                        validator=backend.validator,
                        concurrency=pipeline.run.concurrency,
                        # No context cache inside batch jobs (see _batch_mode).
                        resources=backend.resources if batch is None else (),
                        seed=pipeline.run.seed,
                        logger=log,
                        on_result=commit,
                        secrets=secrets,
                        batch=batch,
                    )
                    failures.stop = interrupts.io_failed
                    if ceiling is not None:
                        ceiling.stop, ceiling.cache_stats = runner.stop, backend.cache_stats
                    loop = asyncio.get_running_loop()
                    timer = (
                        loop.call_later(pipeline.run.deadline, interrupts.deadline)
                        if pipeline.run.deadline is not None
                        else None
                    )
                    items = (WorkItem(r.id, r.prompt or "", r) for r in runnable)

                    async def consume() -> None:
                        nonlocal cache_tokens
                        async with runner.stream(items) as stream:
                            interrupts.runner, interrupts.progress = runner, bar
                            interrupts.apply()  # a signal since the check above
                            async for result in stream:
                                show(result)
                                for attempt in result.attempts:
                                    cached = attempt.usage.cached_tokens
                                    cache_tokens = max(cache_tokens, cached)
                                    if cached:
                                        model = pipeline.stage_model(attempt.stage)
                                        cache_tokens_by_model[model] = max(
                                            cache_tokens_by_model.get(model, 0), cached
                                        )

                    try:
                        await _until_given_up(consume(), interrupts, log)
                        notes.extend(batch_notes(pipeline, runner.batch_stats))
                    except RunStopped as exc:
                        notes.extend(batch_notes(pipeline, runner.batch_stats))
                        # Every result that ended is committed and shown; those it caught
                        # are `cancelled`, so the same command runs them again.
                        run_failure = exc
                        log.info("run_stopped", reason=str(exc))
                    finally:
                        if timer is not None:
                            timer.cancel()
            took_all = True
        finally:
            if backend is not None:
                await _bounded_close(backend, log)
            wall = time.monotonic() - started
            stats = RunStats(
                wall_time=wall,
                items=sum(this_run.values()),
                cache=(
                    backend.cache_stats()
                    if backend is not None and backend.cache_stats is not None
                    else None
                ),
                cache_tokens=cache_tokens,
                cache_tokens_by_model=cache_tokens_by_model,
            )
            failures.stop = None
            if run_id is not None:
                try:
                    journal.end_run(run_id, {**stats.to_json(), **run_record(pipeline)})
                except JournalError as exc:
                    report(exc)  # only the run's statistics are lost
            if (
                retry is not None
                and took_all
                and not failures
                and _took_every_item(interrupts, run_failure)
            ):
                try:
                    journal.finish_retry()  # the next --retry chooses afresh
                except JournalError as exc:
                    report(exc)
            writer.close()
            # A row for a line that changed since is stale until the item runs again.
            final = [
                e.result
                for e in journal.entries()
                if e.result.id in by_id and e.digest == by_id[e.result.id].digest
            ]
            try:
                writer.rebuild(_ordered(final, by_id))
            except OutputError as exc:
                report(exc)
        interrupted = interrupts.count > 0 or interrupts.deadline_passed
        pending = len(records) - len(final)
        if interrupted and (pending or this_run.get(ItemStatus.CANCELLED.value)):
            notes.append("the run was stopped early: run the same command again to finish the job")
        elif failures and pending:
            notes.append("a file could not be written, so the run stopped early (see below)")
        if not records:
            notes.append(f"the input {pipeline.input.path.name} holds no items")
        elif not todo:
            notes.append(
                f"nothing to do: all {len(records)} items are in the journal (--fresh to redo)"
            )
        summary = build_summary(
            pipeline,
            backend=backend.label if backend is not None else pipeline.backend.kind,
            total=len(records),
            results=final,
            this_run=dict(this_run),
            from_journal=len(kept),
            runs=run_stats(journal),
            cache=stats.cache,
            wall_time=wall,
            interrupted=interrupted,
            stopped=interrupts.stopped,
            given_up=interrupts.given_up.is_set(),
            notes=notes,
            run_failure=None if run_failure is None else str(run_failure),
            cache_choices=(
                backend.cache_choices()
                if backend is not None and backend.cache_choices is not None
                else ()
            ),
        )
        log.info(
            "run_end",
            items=len(records),
            succeeded=summary.succeeded,
            this_run=sum(this_run.values()),
            interrupted=interrupted,
            cached_share=round(summary.cached_share, 4),
        )
        handlers.__exit__(None, None, None)
        return summary
