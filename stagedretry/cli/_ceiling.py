"""The job's spend ceilings, ``[run] max_cost_usd`` and ``[run] max_tokens``.

Both count the whole job, as the end-of-run summary does: the results the
journal holds from earlier runs, every result of this run as it ends, and
(for the cost) the cache's creation and storage.  So a resumed job goes on
from what it already spent: the same command stops again at once once the
ceiling is reached, and ``--set run.max_cost_usd=...`` with a higher value lets
it go on.

The check runs as each item ends (in the runner's ``on_result``); reached, the
run stops as for any failure of the run (``Runner.stop``): no new item and no new
request, the requests in flight finish.  What they spend can take the job past
the ceiling by at most the cost of the items in flight when it was reached:
``run.concurrency`` items, each at most ``plan.max_prompts`` requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import attrs

from strategies.backend import CacheClose

from .._results import ItemResult, Usage
from ._summary import RunStats, price_job
from ._tiers import usage_by_model_tier
from .pipeline import Pipeline, Price


def _dollars(value: float) -> str:
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


@attrs.define
class Ceiling:
    """The job's spend so far against its ceilings; :meth:`add` says when one is reached.

    *usage* holds the tokens of every result counted so far; *earlier* the
    statistics of the job's earlier runs (their cache creation and storage).
    *cache_stats* reads this run's cache counters, *started* is this run's
    start on :func:`time.monotonic`.
    """

    pipeline: Pipeline
    price: Price | None
    earlier: Sequence[RunStats]
    usage: Usage = attrs.field(factory=Usage)
    by_tier: dict[tuple[str, str], Usage] = attrs.field(factory=dict)
    """:attr:`usage` by (model, service tier) of each attempt, priced at that model's price
    on that tier."""
    cache_tokens: int = 0
    cache_tokens_by_model: dict[str, int] = attrs.field(factory=dict)
    cache_stats: Callable[[], Mapping[str, int]] | None = None
    started: float = attrs.field(factory=time.monotonic)
    stop: Callable[[str], None] | None = None
    """Stops the run (``Runner.stop``), once a runner exists."""
    reached: str | None = None
    """The first ceiling's sentence, once one was reached."""

    @classmethod
    def start(
        cls, pipeline: Pipeline, kept: Iterable[ItemResult], earlier: Sequence[RunStats]
    ) -> Ceiling | None:
        """A ceiling for *pipeline*, counting the results *kept* from earlier runs (every one the
        job paid for, see ``Journal.paid``); ``None``
        when ``[run]`` sets neither ceiling."""
        run = pipeline.run
        if run.max_cost_usd is None and run.max_tokens is None:
            return None
        ceiling = cls(pipeline, pipeline.price, earlier)
        for result in kept:
            ceiling.count(result)
        ceiling.check()
        return ceiling

    @property
    def cost(self) -> float | None:
        """The job's cost so far in USD (``None``: no price known), as the summary prices it."""
        if self.price is None and not any(
            self.pipeline.price_for(model) is not None for model, _ in self.by_tier
        ):
            return None
        cache = self.pipeline.cache
        stats = self.cache_stats() if self.cache_stats is not None else None
        now = RunStats(
            wall_time=time.monotonic() - self.started,
            cache=stats,
            cache_tokens=self.cache_tokens,
            cache_tokens_by_model=dict(self.cache_tokens_by_model),
        )
        return price_job(
            Price(input=0.0, cached_input=0.0, output=0.0),  # unused: each model's own price
            self.pipeline.backend.model,
            self.usage,
            [*self.earlier, now],
            ttl=cache.options.ttl if cache is not None else 0.0,
            keep=cache is not None and cache.options.on_close is CacheClose.KEEP,
            by_model_tier=self.by_tier,
            price_for=self.pipeline.price_for,
        ).with_cache

    def count(self, result: ItemResult) -> None:
        """Add *result*'s attempts to the spend."""
        for key, usage in usage_by_model_tier([result], self.pipeline.stage_model).items():
            self.by_tier[key] = self.by_tier.get(key, Usage()) + usage
        for attempt in result.attempts:
            self.usage = self.usage + attempt.usage
            cached = attempt.usage.cached_tokens
            self.cache_tokens = max(self.cache_tokens, cached)
            if cached:
                model = self.pipeline.stage_model(attempt.stage)
                self.cache_tokens_by_model[model] = max(
                    self.cache_tokens_by_model.get(model, 0), cached
                )

    def add(self, result: ItemResult) -> None:
        """Count *result*, and stop the run the first time a ceiling is reached."""
        self.count(result)
        if self.reached is None and self.check() is not None and self.stop is not None:
            self.stop(self.reached or "")

    def check(self) -> str | None:
        """The sentence of the first ceiling reached (kept in :attr:`reached`), or ``None``."""
        if self.reached is not None:
            return self.reached
        run = self.pipeline.run
        tokens = self.usage.total_tokens
        if run.max_tokens is not None and tokens >= run.max_tokens:
            self.reached = (
                f"the job's token ceiling run.max_tokens={run.max_tokens:,} is reached "
                f"({tokens:,} tokens spent); raise it with --set run.max_tokens=... to go on"
            )
            return self.reached
        cost = self.cost if run.max_cost_usd is not None else None
        if run.max_cost_usd is not None and cost is not None and cost >= run.max_cost_usd:
            self.reached = (
                f"the job's cost ceiling run.max_cost_usd={run.max_cost_usd:g} is reached "
                f"({_dollars(cost)} spent); raise it with --set run.max_cost_usd=... to go on"
            )
        return self.reached
