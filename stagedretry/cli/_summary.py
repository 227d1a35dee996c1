"""The end-of-run summary: statuses, stages, tokens of every kind, the cache and the cost.

The summary covers the whole job, not only this run: after a resume it counts
the items the journal already held, so the totals and the cost are those of
the job.  :meth:`Summary.to_json` is what ``--json`` prints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from strategies.backend import CacheChoice, CacheClose

from .._journal import Journal, JournalError
from .._outcomes import OutcomeKind
from .._results import ItemResult, ItemStatus, Usage
from ._exit import ExitCode
from ._reasons import JSON_TOP, Reason, group_reasons, reason_lines
from ._tiers import STANDARD, TierCost, token_cost, usage_by_model_tier
from ._uncached import UncachedStage, uncached_lines, uncached_stages
from .pipeline import Pipeline, Price, PriceChoice

PENDING: Final = "pending"
STATUS_ORDER: Final = (*(s.value for s in ItemStatus), PENDING)
_STATUS_STYLE: Final = {
    "succeeded": "green",
    "failed": "red",
    "exhausted": "yellow",
    "cancelled": "magenta",
    PENDING: "dim",
}
_MILLION: Final = 1_000_000
_HOUR: Final = 3600.0


@attrs.frozen
class StageRow:
    """What happened at one stage, over every attempt of every item."""

    name: str
    kind: str
    attempts: int
    outcomes: Mapping[str, int]
    finished: int
    usage: Usage


@attrs.frozen
class RunStats:
    """One run's own figures, kept in the journal so a later summary can add them up."""

    wall_time: float = 0.0
    items: int = 0
    cache: Mapping[str, int] | None = None
    cache_tokens: int = 0
    cache_tokens_by_model: Mapping[str, int] = attrs.field(factory=dict)
    """The largest cached-token count an attempt saw, per model (one cache per model);
    empty in journals written before there was one cache per model."""

    def to_json(self) -> dict[str, Any]:
        return {
            "wall_time": self.wall_time,
            "items": self.items,
            "cache": dict(self.cache) if self.cache is not None else None,
            "cache_tokens": self.cache_tokens,
            "cache_tokens_by_model": dict(self.cache_tokens_by_model),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunStats:
        """Read :meth:`to_json`'s data back; ``ValueError`` or ``TypeError`` for anything else."""
        cache = data.get("cache")
        if cache is not None and not (
            isinstance(cache, Mapping)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in cache.values())
        ):
            raise ValueError("cache: expected a table of counts")
        return cls(
            wall_time=float(data.get("wall_time", 0.0)),
            items=int(data.get("items", 0)),
            cache=cache,
            cache_tokens=int(data.get("cache_tokens", 0)),
            cache_tokens_by_model=_token_counts(data.get("cache_tokens_by_model") or {}),
        )


def _token_counts(value: object) -> dict[str, int]:
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in value.items()
    ):
        raise ValueError("cache_tokens_by_model: expected a table of token counts")
    return dict(value)


def run_stats(journal: Journal) -> list[RunStats]:
    """The statistics of every run *journal* records; :class:`JournalError` naming it for a row
    that holds none."""
    found = []
    for record in journal.runs():
        try:
            found.append(RunStats.from_json(record.stats))
        except (TypeError, ValueError) as exc:
            raise JournalError(
                f"the journal {str(journal.path)!r} holds a run's statistics that cannot be read "
                f"({exc}); the file was damaged or changed outside stagedretry: move it away "
                "to start afresh"
            ) from None
    return found


@attrs.frozen
class Cost:
    """The job's cost with the cache, and what the same tokens would cost without it."""

    model: str
    fresh_input: float
    cached_input: float
    output: float
    cache_creation: float
    cache_storage: float
    storage_hours: float
    without_cache: float
    sources: Mapping[str, str] = attrs.field(factory=dict)
    """Where each part of the price came from (see ``pipeline.PriceChoice``)."""
    tiers: tuple[TierCost, ...] = ()
    """The token parts of the bill split by service tier (empty: all priced at standard)."""
    tier_sources: Mapping[str, str] = attrs.field(factory=dict)
    """Where each non-standard tier's price came from."""
    models: tuple[str, ...] = ()
    """Every model whose tokens are in the bill (empty: only *model*)."""
    unpriced: Mapping[str, int] = attrs.field(factory=dict)
    """Models with no known price -> their tokens, which are left out of the bill."""
    model_sources: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)
    """Where each part of another model's price came from, by model."""

    @property
    def with_cache(self) -> float:
        return (
            self.fresh_input
            + self.cached_input
            + self.output
            + self.cache_creation
            + self.cache_storage
        )

    @property
    def saving(self) -> float:
        return self.without_cache - self.with_cache

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "models": list(self.models or (self.model,)),
            "unpriced": dict(self.unpriced),
            "with_cache": round(self.with_cache, 6),
            "without_cache": round(self.without_cache, 6),
            "saving": round(self.saving, 6),
            "parts": {
                "fresh_input": round(self.fresh_input, 6),
                "cached_input": round(self.cached_input, 6),
                "output": round(self.output, 6),
                "cache_creation": round(self.cache_creation, 6),
                "cache_storage": round(self.cache_storage, 6),
            },
            "storage_hours": round(self.storage_hours, 4),
            "price_sources": dict(self.sources),
            "tiers": [t.to_json() for t in self.tiers],
            "tier_price_sources": {
                t.tier: self.tier_sources[t.tier] for t in self.tiers if t.tier in self.tier_sources
            },
            "model_price_sources": {m: dict(v) for m, v in self.model_sources.items()},
        }


def price_job(
    price: Price,
    model: str,
    usage: Usage,
    runs: Sequence[RunStats],
    *,
    ttl: float,
    keep: bool,
    by_model_tier: Mapping[tuple[str, str], Usage] | None = None,
    price_for: Callable[[str], PriceChoice | None] | None = None,
) -> Cost:
    """Price *usage* (every attempt of every item) plus the cache's creation and storage.

    Output and thinking tokens are billed at the output price.  Storage is an
    estimate: a run that created or extended the cache paid for its wall time,
    and, when the cache is kept, for one more TTL after the run.  Without the two
    arguments below, every token is priced at *price* (the standard tier).

    With *by_model_tier* (the tokens by (model, tier)) and *price_for* (a model's price,
    ``None`` when unknown), each part is priced at its own model's price on its tier, and
    each model's cache at its model's price (a run's creations shared out evenly among the
    models it cached for); a model with no price is left out of the bill and named in
    ``Cost.unpriced``, never priced as another.
    """
    if by_model_tier is not None and price_for is not None:
        return _price_models(model, runs, by_model_tier, price_for, ttl=ttl, keep=keep)
    creation_tokens = 0
    storage_token_hours = 0.0
    storage_hours = 0.0
    for run in runs:
        stats = run.cache or {}
        made = int(stats.get("created", 0))
        extended = int(stats.get("updated", 0))
        creation_tokens += made * run.cache_tokens
        if made or extended:
            hours = (run.wall_time + (ttl if keep else 0.0)) / _HOUR
            storage_hours += hours
            storage_token_hours += run.cache_tokens * hours
    parts = _TokenParts()
    parts.add(usage, price)
    return Cost(
        model=model,
        fresh_input=parts.fresh / _MILLION,
        cached_input=parts.cached / _MILLION,
        output=parts.output / _MILLION,
        cache_creation=creation_tokens * price.input / _MILLION,
        cache_storage=storage_token_hours * (price.cache_storage or 0.0) / _MILLION,
        storage_hours=storage_hours,
        without_cache=parts.without / _MILLION,
    )


class _TokenParts:
    """The token parts of a bill, added up per priced share (per million tokens)."""

    def __init__(self) -> None:
        self.fresh = self.cached = self.output = self.without = 0.0

    def add(self, used: Usage, paid: Price) -> None:
        out_tokens = used.output_tokens + used.thinking_tokens
        self.fresh += used.fresh_input_tokens * paid.input
        self.cached += used.cached_tokens * paid.cached_input
        self.output += out_tokens * paid.output
        self.without += used.input_tokens * paid.input + out_tokens * paid.output


def _price_models(
    model: str,
    runs: Sequence[RunStats],
    by_model_tier: Mapping[tuple[str, str], Usage],
    price_for: Callable[[str], PriceChoice | None],
    *,
    ttl: float,
    keep: bool,
) -> Cost:
    """:func:`price_job` for tokens by (model, tier): see there."""
    choices: dict[str, PriceChoice | None] = {}

    def choice(name: str) -> PriceChoice | None:
        if name not in choices:
            choices[name] = price_for(name)
        return choices[name]

    unpriced: dict[str, int] = {}
    order = sorted(by_model_tier, key=lambda k: (k[0] != model, k[0], k[1] != STANDARD, k[1]))
    models = tuple(dict.fromkeys(m for m, _ in order))
    named = len(models) > 1 or (bool(models) and models[0] != model)
    tiers: list[TierCost] = []
    parts = _TokenParts()
    for name, tier in order:
        used = by_model_tier[(name, tier)]
        found = choice(name)
        if found is None:
            unpriced[name] = unpriced.get(name, 0) + used.total_tokens
            continue
        paid = found.tier(tier)
        parts.add(used, paid)
        tiers.append(
            TierCost(
                tier=tier,
                usage=used,
                usd=token_cost(paid, used),
                at_standard=token_cost(found.price, used),
                model=name if named else "",
            )
        )
    creation = storage = storage_hours = 0.0
    for run in runs:
        stats = run.cache or {}
        made = int(stats.get("created", 0))
        extended = int(stats.get("updated", 0))
        if not (made or extended):
            continue
        per_model = dict(run.cache_tokens_by_model) or {model: run.cache_tokens}
        hours = (run.wall_time + (ttl if keep else 0.0)) / _HOUR
        storage_hours += hours
        for name, tokens in per_model.items():
            found = choice(name)
            if found is None:
                unpriced.setdefault(name, 0)
                continue
            creation += made / len(per_model) * tokens * found.price.input
            storage += tokens * hours * (found.price.cache_storage or 0.0)
    own = choice(model)
    return Cost(
        model=model,
        fresh_input=parts.fresh / _MILLION,
        cached_input=parts.cached / _MILLION,
        output=parts.output / _MILLION,
        cache_creation=creation / _MILLION,
        cache_storage=storage / _MILLION,
        storage_hours=storage_hours,
        without_cache=parts.without / _MILLION,
        tiers=tuple(tiers),
        tier_sources=own.tier_sources if own is not None else {},
        models=models,
        unpriced=unpriced,
        sources=own.sources if own is not None else {},
        model_sources={m: c.sources for m, c in choices.items() if c is not None and m != model},
    )


@attrs.frozen
class Summary:
    """Everything the end of a run reports."""

    pipeline: str
    fingerprint: str
    backend: str
    model: str
    total: int
    counts: Mapping[str, int]
    this_run: Mapping[str, int]
    from_journal: int
    input_errors: int
    interrupted: bool
    prompts: int
    attempts: int
    usage: Usage
    stages: tuple[StageRow, ...]
    cache: Mapping[str, int] | None
    cost: Cost | None
    wall_time: float
    output_path: Path
    journal_path: Path
    notes: tuple[str, ...] = ()
    stopped: ExitCode | None = None
    """What stopped the run early, as its exit code (a signal's, or 124 for ``run.deadline``)."""
    given_up: bool = False
    """Items in flight were left running: they ignored their cancellation."""
    run_failure: str | None = None
    """The failure of the run that stopped it (the key, billing, the model, a quota), if any."""
    file_errors: tuple[str, ...] = ()
    """The files that could not be written (or read), one sentence each, in order."""
    reasons: tuple[Reason, ...] = ()
    """Why the items that did not succeed ended, equal reasons grouped, most frequent first."""
    report_path: Path | None = None
    """The report the run wrote (``stagedretry report``), if any."""
    uncached: tuple[UncachedStage, ...] = ()
    """The stages that sent their requests without a cache this run, and why."""

    @property
    def succeeded(self) -> int:
        return self.counts.get(ItemStatus.SUCCEEDED.value, 0)

    @property
    def cached_share(self) -> float:
        """Share of prompt tokens served from the cache."""
        return self.usage.cached_share

    @property
    def rate(self) -> float:
        """Items finished per second by this run."""
        done = sum(self.this_run.values())
        return done / self.wall_time if self.wall_time > 0 else 0.0

    @property
    def left(self) -> int:
        """Items the next run will take: never run (pending) or cancelled."""
        return self.counts.get(PENDING, 0) + self.counts.get(ItemStatus.CANCELLED.value, 0)

    @property
    def exit_code(self) -> int:
        """0 when every item of the input succeeded (an empty input too), else 1.

        A file that could not be written (:attr:`file_errors`) returns 4
        (``IO_ERROR``) before anything else.  A failure of the run that stopped
        it returns 3 (``RUN_STOPPED``): fix the cause and run the same command
        again.  A run stopped early (by a signal
        or ``run.deadline``) with items left returns the stop's code instead
        (130, 143, 129 or 124): run the same command again to finish.  See
        :class:`ExitCode`.
        """
        if self.file_errors:
            return int(ExitCode.IO_ERROR)
        if self.run_failure is not None:
            return int(ExitCode.RUN_STOPPED)
        if self.stopped is not None and self.left:
            return int(self.stopped)
        return int(ExitCode.OK if self.succeeded == self.total else ExitCode.SOME_FAILED)

    def to_json(self) -> dict[str, Any]:
        u = self.usage
        return {
            "pipeline": self.pipeline,
            "fingerprint": self.fingerprint,
            "backend": self.backend,
            "model": self.model,
            "items": {
                "total": self.total,
                **{s: self.counts.get(s, 0) for s in STATUS_ORDER},
                "from_journal": self.from_journal,
                "input_errors": self.input_errors,
            },
            "this_run": {s: self.this_run.get(s, 0) for s in STATUS_ORDER if s != PENDING},
            "interrupted": self.interrupted,
            "stopped_by": self.stopped.name.lower() if self.stopped is not None else None,
            "run_failure": self.run_failure,
            "file_errors": list(self.file_errors),
            "prompts": self.prompts,
            "attempts": self.attempts,
            "tokens": {
                "input": u.input_tokens,
                "cached": u.cached_tokens,
                "fresh_input": u.fresh_input_tokens,
                "output": u.output_tokens,
                "thinking": u.thinking_tokens,
            },
            "cached_share": round(self.cached_share, 6),
            "stages": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "attempts": s.attempts,
                    "outcomes": dict(s.outcomes),
                    "finished": s.finished,
                    "tokens": {
                        "input": s.usage.input_tokens,
                        "cached": s.usage.cached_tokens,
                        "output": s.usage.output_tokens,
                    },
                }
                for s in self.stages
            ],
            "cache": dict(self.cache) if self.cache is not None else None,
            "uncached_stages": [row.to_json() for row in self.uncached],
            "cost": self.cost.to_json() if self.cost is not None else None,
            "wall_time": round(self.wall_time, 3),
            "items_per_second": round(self.rate, 3),
            "output": str(self.output_path),
            "journal": str(self.journal_path),
            "report": str(self.report_path) if self.report_path is not None else None,
            "exit_code": self.exit_code,
            "notes": list(self.notes),
            "failure_reasons": [r.to_json() for r in self.reasons[:JSON_TOP]],
        }


def build_summary(
    pipeline: Pipeline,
    *,
    backend: str,
    total: int,
    results: Iterable[ItemResult],
    this_run: Mapping[str, int],
    from_journal: int,
    runs: Sequence[RunStats],
    cache: Mapping[str, int] | None,
    wall_time: float,
    interrupted: bool,
    notes: Iterable[str] = (),
    stopped: ExitCode | None = None,
    given_up: bool = False,
    run_failure: str | None = None,
    cache_choices: Sequence[CacheChoice] = (),
) -> Summary:
    """Add up *results* (one per item of the input that has one) into a :class:`Summary`.

    *cache_choices* are the backend's word on which models' stages ran with a cache.
    """
    results = list(results)
    counts: Counter[str] = Counter()
    prompts = attempts = input_errors = 0
    usage = Usage()
    per_stage: dict[str, Counter[str]] = {s.name: Counter() for s in pipeline.plan.stages}
    stage_usage: dict[str, Usage] = {s.name: Usage() for s in pipeline.plan.stages}
    finished: Counter[str] = Counter()
    for result in results:
        counts[result.status.value] += 1
        prompts += result.prompts
        attempts += len(result.attempts)
        if result.reason is not None and result.reason.startswith("input_error"):
            input_errors += 1
        if result.status is ItemStatus.SUCCEEDED and result.final_stage is not None:
            finished[result.final_stage] += 1
        for attempt in result.attempts:
            usage = usage + attempt.usage
            per_stage.setdefault(attempt.stage, Counter())[attempt.outcome.value] += 1
            stage_usage[attempt.stage] = stage_usage.get(attempt.stage, Usage()) + attempt.usage
    counts[PENDING] = max(0, total - sum(counts.values()))
    kinds = {s.name: s.kind for s in pipeline.plan.stages}
    stages = tuple(
        StageRow(
            name=name,
            kind=kinds.get(name, "?"),
            attempts=sum(outcomes.values()),
            outcomes=dict(outcomes),
            finished=finished.get(name, 0),
            usage=stage_usage[name],
        )
        for name, outcomes in per_stage.items()
    )
    cost = None
    by_model_tier = usage_by_model_tier(results, pipeline.stage_model)
    if any(
        pipeline.price_for(m) is not None
        for m in {pipeline.backend.model, *(m for m, _ in by_model_tier)}
    ):
        cache_config = pipeline.cache
        cost = price_job(
            Price(input=0.0, cached_input=0.0, output=0.0),  # unused: each model's own price
            pipeline.backend.model,
            usage,
            runs,
            ttl=cache_config.options.ttl if cache_config is not None else 0.0,
            keep=cache_config is not None and cache_config.options.on_close is CacheClose.KEEP,
            by_model_tier=by_model_tier,
            price_for=pipeline.price_for,
        )
    return Summary(
        pipeline=pipeline.name,
        fingerprint=pipeline.fingerprint,
        backend=backend,
        model=pipeline.backend.model,
        total=total,
        counts=dict(counts),
        this_run=dict(this_run),
        from_journal=from_journal,
        input_errors=input_errors,
        interrupted=interrupted,
        prompts=prompts,
        attempts=attempts,
        usage=usage,
        stages=stages,
        cache=cache,
        cost=cost,
        wall_time=wall_time,
        output_path=pipeline.output.path,
        journal_path=pipeline.journal.path,
        notes=tuple(notes),
        stopped=stopped,
        run_failure=run_failure,
        given_up=given_up,
        reasons=group_reasons(results),
        uncached=uncached_stages(cache_choices, [row.name for row in stages if row.attempts]),
    )


# -- rendering ---------------------------------------------------------------------------------


def _tier_parts(cost: Cost) -> list[Any]:
    """The bill by service tier, when any token was billed at another tier than standard."""
    named = any(t.model for t in cost.tiers)
    if all(t.tier == STANDARD for t in cost.tiers) and not named:
        return []
    title = "By model and service tier" if named else "By service tier"
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    if named:
        table.add_column("model")
    table.add_column("tier")
    for header in ("input", "from cache", "output + thinking", "cost", "on standard"):
        table.add_column(header, justify="right")
    for t in cost.tiers:
        u = t.usage
        table.add_row(
            *((t.model,) if named else ()),
            t.tier,
            _n(u.input_tokens),
            _n(u.cached_tokens),
            _n(u.output_tokens + u.thinking_tokens),
            _money(t.usd),
            _money(t.at_standard),
        )
    saving = sum(t.saving for t in cost.tiers)
    table.caption = (
        f"the tiers saved {_money(saving)} against standard"
        if saving >= 0
        else f"the tiers cost {_money(-saving)} more than standard"
    )
    table.caption_justify = "left"
    lines: list[Any] = [table]
    lines.extend(
        Text(f"{t.tier} prices from {cost.tier_sources[t.tier]}", style="dim")
        for t in cost.tiers
        if t.tier in cost.tier_sources
    )
    return lines


def unpriced_sentence(model: str, tokens: int) -> str:
    """One sentence for a model the cost report has no price for."""
    return (
        f"no price for {model!r} in [prices] nor in genai-prices' data: its {tokens:,} tokens "
        f'(and its cache) are not in the cost; add [prices."{model}"] to count them'
    )


def _money(value: float) -> str:
    return f"${value:,.4f}" if abs(value) < 100 else f"${value:,.2f}"


def _n(value: int) -> str:
    return f"{value:,}"


def _by_source(sources: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    grouped: dict[str, list[str]] = {}
    for part, source in sources.items():
        grouped.setdefault(source, []).append(part)
    return list(grouped.items())


def render_summary(summary: Summary, console: Console) -> None:
    """Print the summary as tables."""
    title = Text.assemble(
        ("stagedretry ", "bold"), (summary.pipeline, "bold cyan"), f" · {summary.backend}"
    )
    console.print(title)

    items = Table(title="Items", box=box.SIMPLE_HEAD, title_justify="left")
    items.add_column("status")
    items.add_column("this run", justify="right")
    items.add_column("job", justify="right")
    for status in STATUS_ORDER:
        job = summary.counts.get(status, 0)
        run = summary.this_run.get(status, 0) if status != PENDING else None
        if status in ("cancelled", PENDING) and not job and not run:
            continue
        items.add_row(
            Text(status, style=_STATUS_STYLE[status]),
            "" if run is None else _n(run),
            _n(job),
        )
    items.add_row("total", _n(sum(summary.this_run.values())), _n(summary.total), style="bold")

    stages = Table(
        title="Stages (attempts by outcome; ended: items that succeeded there)",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    stages.add_column("stage", no_wrap=True)
    for header in ("tries", "ok", "invalid", "transient", "429", "lost", "fatal", "ended"):
        stages.add_column(header, justify="right", no_wrap=True)
    for row in summary.stages:
        o = row.outcomes
        stages.add_row(
            row.name,
            _n(row.attempts),
            _n(o.get(OutcomeKind.SUCCEEDED.value, 0)),
            _n(o.get(OutcomeKind.INVALID.value, 0)),
            _n(o.get(OutcomeKind.TRANSIENT.value, 0)),
            _n(o.get(OutcomeKind.RATE_LIMITED.value, 0)),
            _n(o.get(OutcomeKind.RESOURCE_LOST.value, 0)),
            _n(o.get(OutcomeKind.FATAL.value, 0)),
            _n(row.finished),
        )

    u = summary.usage
    tokens = Table(title="Tokens", box=box.SIMPLE_HEAD, title_justify="left")
    tokens.add_column("kind")
    tokens.add_column("tokens", justify="right")
    tokens.add_row("input (all)", _n(u.input_tokens))
    tokens.add_row(
        "  served from cache", f"{_n(u.cached_tokens)}  ({summary.cached_share:.1%} cached share)"
    )
    tokens.add_row("  fresh", _n(u.fresh_input_tokens))
    tokens.add_row("output", _n(u.output_tokens))
    tokens.add_row("thinking", _n(u.thinking_tokens))
    tokens.add_row("prompts sent", f"{_n(summary.prompts)}  ({_n(summary.attempts)} attempts)")

    parts: list[Any] = [items, stages, *reason_lines(summary.reasons), tokens]
    if summary.cache is not None:
        c = summary.cache
        cache = Table(title="Cache (this run)", box=box.SIMPLE_HEAD, title_justify="left")
        for header in ("created", "reused", "renewed", "recovered", "deleted", "inline fallbacks"):
            cache.add_column(header, justify="right")
        cache.add_row(
            *(
                _n(c.get(k, 0))
                for k in ("created", "reused", "updated", "lost", "deleted", "inline_fallbacks")
            )
        )
        parts.append(cache)
    parts.extend(uncached_lines(summary.uncached))
    if summary.cost is not None:
        k = summary.cost
        cost = Table(
            title=f"Cost ({', '.join(k.models or (k.model,))})",
            box=box.SIMPLE_HEAD,
            title_justify="left",
        )
        cost.add_column("")
        cost.add_column("with the cache", justify="right")
        cost.add_column("without", justify="right")
        cost.add_row(
            "input at full price", _money(k.fresh_input), _money(k.without_cache - k.output)
        )
        cost.add_row("input from the cache", _money(k.cached_input), "")
        cost.add_row("output + thinking", _money(k.output), _money(k.output))
        cost.add_row("cache creation", _money(k.cache_creation), "")
        cost.add_row(f"cache storage (est. {k.storage_hours:.2f} h)", _money(k.cache_storage), "")
        cost.add_row("total", _money(k.with_cache), _money(k.without_cache), style="bold")
        share = k.saving / k.without_cache if k.without_cache else 0.0
        cost.caption = f"the cache saved {_money(k.saving)} ({share:.0%})"
        cost.caption_justify = "left"
        parts.append(cost)
        parts.extend(_tier_parts(k))
        # Lines of their own, not the caption: a caption wraps to the table's width, and a
        # source's URL must stay whole.
        parts.extend(
            Text(f"prices: {', '.join(names)} from {source}", style="dim")
            for source, names in _by_source(k.sources)
        )
        parts.extend(
            Text(f"{model} prices: {', '.join(names)} from {source}", style="dim")
            for model, sources in k.model_sources.items()
            for source, names in _by_source(sources)
        )
        parts.extend(
            Text(unpriced_sentence(model, tokens), style="yellow")
            for model, tokens in k.unpriced.items()
        )
    else:
        parts.append(
            Text(
                f"no price for {summary.model!r} in [prices] nor in genai-prices' data: "
                "cost not shown",
                style="dim",
            )
        )
    console.print(Group(*parts))
    footer = Text.assemble(
        f"{_n(sum(summary.this_run.values()))} items in {summary.wall_time:.1f} s "
        f"({summary.rate:,.1f} items/s)",
        (f"; {_n(summary.from_journal)} already in the journal" if summary.from_journal else ""),
    )
    console.print(footer)
    console.print(Text(f"output:  {summary.output_path}"))
    console.print(Text(f"journal: {summary.journal_path} (pipeline {summary.fingerprint})"))
    if summary.report_path is not None:
        console.print(Text(f"report:  {summary.report_path}"), soft_wrap=True)
    for note in summary.notes:
        console.print(Text(note, style="yellow"), soft_wrap=True)
