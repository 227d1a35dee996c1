"""One run of a pipeline: input, journal, backend, runner, progress and output, in that order.

The order of writes is what makes a run crash-safe: a result is committed to
the journal the moment its item ends, in the worker (the runner's
``on_result``), before the runner hands it on; only then is it appended to the
output file and shown.  A new run skips every item the journal holds (unless
its input line changed or it ended ``cancelled``), so nothing is sent twice,
and rebuilds the output file from the journal at its start and at its end.

Ctrl-C (or SIGTERM) once: no new items are taken, those in flight finish and
the summary is printed.  Twice: the items in flight are cancelled, recorded as
``cancelled`` and run again by the next run.  A third time: the default
handlers are back and ``KeyboardInterrupt`` is raised at once, for a strategy
that will not stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.text import Text

from strategies.backend import Built, close_all

from .._journal import Journal
from .._redact import Secrets
from .._results import ItemResult, ItemStatus, WorkItem
from .._runner import Runner
from .._stop import RunStopped
from ._backends import build_backend
from ._input import InputRecord, read_input
from ._output import OutputError, OutputWriter
from ._progress import LiveProgress
from ._summary import RunStats, Summary, build_summary
from .pipeline import Pipeline


class _Interrupts:
    """Ctrl-C once: drain; twice: cancel; three times: give the signals back and stop now."""

    def __init__(self, console: Console, log: Any) -> None:
        self.count = 0
        self.deadline_passed = False
        self._console = console
        self._log = log
        self.runner: Runner | None = None
        self.progress: LiveProgress | None = None
        self.restore: Callable[[], None] = _nothing
        """Puts the default signal handlers back (set while :func:`_signals` is active)."""

    def interrupt(self) -> None:
        self.count += 1
        runner, progress = self.runner, self.progress
        if self.count >= 3:
            # Cancelling did not end the run (a strategy that ignores cancellation, with
            # no timeout): stop waiting.  From now on Ctrl-C is Python's own again.
            self._log.warning("run_abandoned", reason="interrupt")
            self._console.print(
                Text("interrupted a third time: stopping without waiting", style="yellow"),
                soft_wrap=True,
            )
            self.restore()
            raise KeyboardInterrupt
        if runner is None:
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
            self._log.warning("run_draining", reason="interrupt")
        elif self.count == 2:
            runner.cancel()
            if progress is not None:
                progress.describe("cancelling")
            self._console.print(
                Text("cancelling the items in flight; the next run retries them", style="yellow"),
                soft_wrap=True,
            )
            self._log.warning("run_cancelling", reason="interrupt")

    def deadline(self) -> None:
        self.deadline_passed = True
        if self.runner is not None:
            self.runner.drain()
        if self.progress is not None:
            self.progress.describe("deadline")
        self._log.warning("run_draining", reason="run deadline passed")


def _nothing() -> None:
    pass


@contextlib.contextmanager
def _signals(interrupts: _Interrupts) -> Iterator[None]:
    """Route SIGINT and SIGTERM to *interrupts* while the block runs."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, interrupts.interrupt)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
            continue
        installed.append(sig)

    def restore() -> None:
        # asyncio puts back Python's defaults: KeyboardInterrupt for SIGINT, exit for SIGTERM.
        while installed:
            loop.remove_signal_handler(installed.pop())

    interrupts.restore = restore
    try:
        yield
    finally:
        interrupts.restore = _nothing
        restore()


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
) -> Summary:
    """Run *pipeline* to the end (or to an interrupt) and return the job's summary.

    Raises ``InputError``, ``OutputError``, ``JournalError`` or ``BackendError``
    before any request is sent when the job cannot start.
    """
    records = read_input(pipeline.input)
    by_id = {r.id: r for r in records}
    secrets = Secrets([api_key])
    with Journal(pipeline.journal.path, pipeline.fingerprint, secrets=secrets) as journal:
        notes = []
        if fresh:
            dropped = journal.discard()
            if dropped:
                notes.append(f"--fresh: forgot {dropped} earlier results")
        foreign = journal.foreign()
        if foreign:
            notes.append(
                f"the journal also holds {foreign} results of other pipelines or of earlier "
                "versions of this one (a changed plan, model, instruction, template or output "
                "model); they are not reused"
            )
        done = journal.done()
        todo = [r for r in records if done.get(r.id) != r.digest]
        todo_ids = {r.id for r in todo}
        kept = [
            e.result
            for e in journal.entries()
            if e.result.id in by_id and e.result.id not in todo_ids
        ]
        writer = OutputWriter(pipeline.output.path, secrets=secrets)
        try:
            writer.rebuild(_ordered(kept, by_id))
        except OSError as exc:
            raise OutputError(
                f"cannot write the output file {str(pipeline.output.path)!r}: {exc.strerror or exc}"
            ) from None
        log.info(
            "run_start",
            pipeline=pipeline.name,
            fingerprint=pipeline.fingerprint,
            items=len(records),
            to_run=len(todo),
            from_journal=len(kept),
        )
        runnable = [r for r in todo if r.error is None]
        started = time.monotonic()
        this_run: Counter[str] = Counter()
        cache_tokens = 0
        interrupts = _Interrupts(console, log)
        # A failure of the run (the key, billing, the model, a quota): the summary says it.
        stopped: RunStopped | None = None
        backend: Built | None = None
        run_id: int | None = None
        try:
            # Inside the try: whatever the backend starts is closed, however the run ends.
            backend = await build_backend(pipeline, api_key=api_key) if runnable else None
            run_id = journal.begin_run()
            run = run_id

            def record_of(result: ItemResult) -> InputRecord:
                context = result.context
                return context if isinstance(context, InputRecord) else by_id[result.id]

            def commit(result: ItemResult) -> None:
                # Called in the worker as the item ends (cancelled ones too), before the result
                # is queued: a crash can then lose no finished result, which would be paid twice.
                record = record_of(result)
                journal.record(result, line=record.line, digest=record.digest, run=run)

            with LiveProgress(console, total=len(records), done=len(kept), enabled=progress) as bar:
                bar.seed(kept)

                def show(result: ItemResult) -> None:
                    # Only for a result already in the journal.
                    record = record_of(result)
                    writer.append(result, record.line)
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
                if backend is not None:
                    # Not runner.stream(items, journal=...): the CLI's rows carry the input line
                    # and that line's digest (a changed record field reruns its item, not only a
                    # changed prompt), input errors are committed before any runner exists, and
                    # the run's record holds cache stats known only once the backend is closed.
                    # So it keeps its own filter and run record, and commits the library's way:
                    # in the worker, before the result is handed on (on_result).
                    runner = Runner(
                        pipeline.plan,
                        backend.strategy,
                        validator=backend.validator,
                        concurrency=pipeline.run.concurrency,
                        resources=backend.resources,
                        seed=pipeline.run.seed,
                        logger=log,
                        on_result=commit,
                    )
                    interrupts.runner, interrupts.progress = runner, bar
                    loop = asyncio.get_running_loop()
                    timer = (
                        loop.call_later(pipeline.run.deadline, interrupts.deadline)
                        if pipeline.run.deadline is not None
                        else None
                    )
                    items = (WorkItem(r.id, r.prompt or "", r) for r in runnable)
                    try:
                        with _signals(interrupts):
                            async with runner.stream(items) as stream:
                                async for result in stream:
                                    show(result)
                                    for attempt in result.attempts:
                                        cache_tokens = max(
                                            cache_tokens, attempt.usage.cached_tokens
                                        )
                    except RunStopped as exc:
                        # Every result that ended is committed and shown; those it caught
                        # are `cancelled`, so the same command runs them again.
                        stopped = exc
                        log.info("run_stopped", reason=str(exc))
                    finally:
                        if timer is not None:
                            timer.cancel()
        finally:
            if backend is not None:
                await close_all(backend.closers)
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
            )
            if run_id is not None:
                journal.end_run(run_id, stats.to_json())
            writer.close()
            # A row for a line that changed since is stale until the item runs again.
            final = [
                e.result
                for e in journal.entries()
                if e.result.id in by_id and e.digest == by_id[e.result.id].digest
            ]
            writer.rebuild(_ordered(final, by_id))
        interrupted = interrupts.count > 0 or interrupts.deadline_passed
        pending = len(records) - len(final)
        if interrupted and (pending or this_run.get(ItemStatus.CANCELLED.value)):
            notes.append("the run was stopped early: run the same command again to finish the job")
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
            runs=[RunStats.from_json(r.stats) for r in journal.runs()],
            cache=stats.cache,
            wall_time=wall,
            interrupted=interrupted,
            notes=notes,
            stopped=None if stopped is None else str(stopped),
        )
        log.info(
            "run_end",
            items=len(records),
            succeeded=summary.succeeded,
            this_run=sum(this_run.values()),
            interrupted=interrupted,
            cached_share=round(summary.cached_share, 4),
        )
        return summary
