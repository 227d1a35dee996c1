"""A run's running totals, kept in constant memory as items end, and turned into a BatchResult."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ._plan import Trigger
from ._results import NO_USAGE, BatchResult, ItemResult, ItemStatus, Usage


class Tally:
    """Running totals, updated as each item ends (constant memory)."""

    __slots__ = (
        "attempts",
        "cached",
        "counts",
        "input",
        "output",
        "prompts",
        "resumed",
        "started",
        "successes",
        "thinking",
        "transitions",
    )

    def __init__(self, started: float, stages: Iterable[str] = ()) -> None:
        self.counts: Counter[ItemStatus] = Counter()
        self.input = self.output = self.cached = self.thinking = 0
        self.prompts = 0
        self.attempts = 0
        # Seeded in plan order, so reports list stages in that order, not in completion order.
        self.successes: Counter[str] = Counter(dict.fromkeys(stages, 0))
        self.transitions: Counter[Trigger] = Counter()
        self.started = started
        self.resumed = 0

    def add(self, result: ItemResult) -> None:
        self.counts[result.status] += 1
        self.prompts += result.prompts
        self.attempts += len(result.attempts)
        for attempt in result.attempts:
            usage = attempt.usage
            if usage is not NO_USAGE:
                self.input += usage.input_tokens
                self.output += usage.output_tokens
                self.cached += usage.cached_tokens
                self.thinking += usage.thinking_tokens
        if result.status is ItemStatus.SUCCEEDED and result.final_stage is not None:
            self.successes[result.final_stage] += 1

    @property
    def usage(self) -> Usage:
        return Usage(self.input, self.output, self.cached, self.thinking)

    def batch(self, results: tuple[ItemResult, ...], now: float) -> BatchResult:
        return BatchResult(
            results=results,
            counts={s: self.counts.get(s, 0) for s in ItemStatus},
            usage=self.usage,
            prompts=self.prompts,
            attempts=self.attempts,
            successes_per_stage={k: v for k, v in self.successes.items() if v},
            transitions={t.value: n for t, n in self.transitions.items()},
            wall_time=now - self.started,
            resumed=self.resumed,
        )
