"""The live progress bar: items done of total, outcomes, prompts, cached share, rate and ETA."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from rich.console import Console, RenderableType
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .._results import ItemResult, ItemStatus


class _RateColumn(ProgressColumn):
    """Items per second finished by this run (not counting those taken from the journal)."""

    def render(self, task: Task) -> Text:
        started = task.fields.get("started")
        done = task.fields.get("this_run", 0)
        if not started or not done:
            return Text("-- items/s", style="progress.data.speed")
        elapsed = max(time.monotonic() - started, 1e-9)
        return Text(f"{done / elapsed:,.1f} items/s", style="progress.data.speed")


class _Eta(TimeRemainingColumn):
    def render(self, task: Task) -> Text:
        return Text.assemble("ETA ", super().render(task))


class _TwoLines(Progress):
    """The bar on one line, the outcome counters under it (fits an 80-column terminal)."""

    def __init__(
        self, *columns: ProgressColumn | str, stats: Callable[[], Text], **options: Any
    ) -> None:
        self._stats = stats  # before super(): rich renders once while constructing
        super().__init__(*columns, **options)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.make_tasks_table(self.tasks)
        yield self._stats()


class LiveProgress:
    """A rich progress bar fed one :class:`ItemResult` at a time.

    *done* items (from the journal) count as finished from the start; the rate
    and the ETA only use what this run finishes.
    """

    def __init__(self, console: Console, *, total: int, done: int, enabled: bool = True) -> None:
        self._counts = dict.fromkeys(ItemStatus, 0)
        self._prompts = 0
        self._input = 0
        self._cached = 0
        self._this_run = 0
        self._progress = _TwoLines(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=30),
            MofNCompleteColumn(),
            _RateColumn(),
            _Eta(compact=True),
            stats=self.stats_line,
            console=console,
            # A bar is for a person at a terminal; piped output gets the summary only.
            disable=not enabled or not console.is_terminal,
            transient=False,
            refresh_per_second=8,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._task: TaskID = self._progress.add_task(
            "running",
            total=total,
            completed=done,
            this_run=0,
            started=None,
        )

    def __enter__(self) -> LiveProgress:
        self._progress.start()
        self._progress.update(self._task, started=time.monotonic())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.refresh()
        self._progress.stop()

    def seed(self, results: list[ItemResult]) -> None:
        """Count results already in the journal in the outcome columns (not in the rate)."""
        for result in results:
            self._count(result)
        self._refresh(advance=0)

    def advance(self, result: ItemResult) -> None:
        """One more item finished by this run."""
        self._this_run += 1
        self._count(result)
        self._refresh(advance=1)

    def describe(self, text: str) -> None:
        """Change the label (``running``, ``draining``, ``cancelling``)."""
        self._progress.update(self._task, description=text)

    def _count(self, result: ItemResult) -> None:
        self._counts[result.status] += 1
        self._prompts += result.prompts
        usage = result.usage
        self._input += usage.input_tokens
        self._cached += usage.cached_tokens

    def stats_line(self) -> Text:
        """``ok N  failed N  exhausted N  ·  prompts N  ·  cached P%`` (and cancelled, if any)."""
        c = self._counts
        parts: list[str | tuple[str, str]] = [
            ("  ok ", "green"),
            str(c[ItemStatus.SUCCEEDED]),
            ("  failed ", "red"),
            str(c[ItemStatus.FAILED]),
            ("  exhausted ", "yellow"),
            str(c[ItemStatus.EXHAUSTED]),
        ]
        if c[ItemStatus.CANCELLED]:
            parts += [("  cancelled ", "magenta"), str(c[ItemStatus.CANCELLED])]
        cached = f"{self._cached / self._input:.0%}" if self._input else "--"
        parts += [f"  ·  prompts {self._prompts}  ·  cached {cached}"]
        return Text.assemble(*parts)

    def _refresh(self, *, advance: int) -> None:
        self._progress.update(self._task, advance=advance, this_run=self._this_run)
