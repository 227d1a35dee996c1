"""``stagedretry estimate``: the expected bill and time of a job, with no request to the service.

Every item's prompt is counted locally (the tokenizer the emulator bills with,
``strategies._tokens.count_tokens``).  The plan's retry mix (requests per item,
the input re-asks add, the output per item) comes from a small sample of the
items run on the in-process emulator; a pipeline whose backend talks to a
service (``gemini``) is switched to the emulator for it, so nothing leaves the
machine.  With ``--sample 0``, documented defaults stand in for the sample
(:data:`DEFAULT_REQUESTS_PER_ITEM`, :data:`DEFAULT_OUTPUT_TOKENS`).

The bill is priced as the end-of-run summary prices a run (``_summary.price_job``):
fresh input, cached reads, output and thinking, the cache's creation once and its
storage for the expected duration (plus one TTL when the cache is kept).  The
duration is the time the requests take under the quota, when one is known
(``[backend.quota]`` ``rpm``/``tpm``/``rpd`` or ``--rpm``/``--tpm``/``--rpd``); else
the sample's pace, extrapolated.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from strategies._tokens import count_tokens
from strategies.backend import CacheClose, close_all
from strategies.gemini.emulator import EmulatorQuota, EmulatorSection
from strategies.quota import ModelQuota, Quota, time_under

from .._batching import BatchMode
from .._plan import Backoff
from .._results import BatchResult, ItemStatus, Usage, WorkItem
from .._runner import Runner
from .._stop import RunStopped
from ._backends import job_inputs
from ._batch_mode import in_batch_mode
from ._input import InputRecord
from ._registry import backend_spec
from ._summary import Cost, RunStats, price_job, unpriced_sentence
from ._tiers import STANDARD, usage_by_model_tier
from .pipeline import BackendConfig, Pipeline, Price

DEFAULT_SAMPLE: Final = 20
"""Items the sample runs on the emulator by default."""
DEFAULT_REQUESTS_PER_ITEM: Final = 1.25
"""Requests per item without a sample: one, and a re-ask for one item in four."""
DEFAULT_OUTPUT_TOKENS: Final = 150
"""Output tokens per request without a sample."""
OFFLINE_BACKENDS: Final = frozenset({"emulator", "sim"})
"""Backends that answer in this process: the sample runs on them as configured."""
QUOTA_KEYS: Final = ("rpm", "tpm", "rpd")


@attrs.frozen
class Mix:
    """What one item costs on average, by the sample or the defaults (tokens are per item)."""

    source: str
    requests: float
    """Requests billed per item (refused ones, a 429 or a 503, are not billed)."""
    input_factor: float
    """Fresh input tokens billed per token of the item's own prompt (re-asks add to it)."""
    cached: float
    """Input tokens read from the cache per item."""
    inline: float
    """Fresh input tokens per item beyond its prompt: the instruction sent inline when no cache
    holds it (the sample's are in *input_factor* already)."""
    output: float
    """Output and thinking tokens per item."""
    cache_tokens: int
    """The cache's size in tokens (0: no cache was used)."""
    seconds_per_item: float | None
    """The sample's wall time per item at the pipeline's concurrency; ``None``: unknown."""
    by_model_tier: Mapping[tuple[str, str], Usage] = attrs.field(factory=dict)
    """The sample's tokens by (model, billed tier): how the bill splits between the stages'
    models and tiers (empty: all on the backend's model at standard)."""
    cache_tokens_by_model: Mapping[str, int] = attrs.field(factory=dict)
    """Each model's cache size in tokens, as the sample saw it."""


@attrs.frozen
class Estimate:
    """The expected bill of a job; tokens and requests are expected values, rounded."""

    pipeline: str
    model: str
    items: int
    input_errors: int
    prompt_tokens: int
    mix: Mix
    requests: int
    usage: Usage
    seconds: float | None
    time_basis: str
    quota: Mapping[str, int]
    cost: Cost | None
    ceilings: tuple[str, ...] = ()
    """A sentence for each ``[run]`` ceiling the expected spend reaches."""

    def to_json(self) -> dict[str, Any]:
        u = self.usage
        return {
            "pipeline": self.pipeline,
            "model": self.model,
            "items": self.items,
            "input_errors": self.input_errors,
            "prompt_tokens": self.prompt_tokens,
            "mix": {
                "source": self.mix.source,
                "requests_per_item": round(self.mix.requests, 4),
                "input_factor": round(self.mix.input_factor, 4),
                "cached_tokens_per_item": round(self.mix.cached, 2),
                "output_tokens_per_item": round(self.mix.output, 2),
                "cache_tokens": self.mix.cache_tokens,
            },
            "requests": self.requests,
            "tokens": {
                "input": u.input_tokens,
                "cached": u.cached_tokens,
                "fresh_input": u.fresh_input_tokens,
                "output": u.output_tokens,
            },
            "seconds": round(self.seconds, 1) if self.seconds is not None else None,
            "time_basis": self.time_basis,
            "quota": dict(self.quota),
            "cost": self.cost.to_json() if self.cost is not None else None,
            "ceilings": list(self.ceilings),
        }


def quota_of(pipeline: Pipeline, given: Mapping[str, int | None]) -> dict[str, int]:
    """The limits to time the job under: *given* (``--rpm`` ...) first, then the backend
    section's ``quota`` table (``rpm``, ``tpm``, ``rpd``) when the backend has one, with its
    override for the pipeline's model (``[backend.quota.models."<model>"]``) applied."""
    table = getattr(pipeline.backend.section, "quota", None)
    if isinstance(table, Quota):
        table = table.for_model(pipeline.backend.model)
    found: dict[str, int] = {}
    for key in QUOTA_KEYS:
        value = given.get(key)
        if value is None and table is not None:
            value = getattr(table, key, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            found[key] = value
    return found


def under_quota(requests: float, input_tokens: float, quota: Mapping[str, int]) -> float:
    """Seconds *requests* carrying *input_tokens* take at the pace *quota* allows.

    The per-minute limits give the pace of :func:`strategies.quota.time_under`; a
    per-day limit adds the whole days waited before the last day's share.
    """
    minute = ModelQuota(rpm=quota.get("rpm"), tpm=quota.get("tpm"))
    times = [time_under(minute, math.ceil(requests), math.ceil(input_tokens))]
    if "rpd" in quota and requests > quota["rpd"]:
        times.append((math.ceil(requests / quota["rpd"]) - 1) * 86400.0)
    return max(times)


def daily_runs(requests: float, quota: Mapping[str, int]) -> int:
    """The runs a job of *requests* takes, one a day, when ``rpd`` in *quota* is below it."""
    if "rpd" in quota and requests > quota["rpd"]:
        return math.ceil(requests / quota["rpd"])
    return 1


def working_time(
    requests: float,
    input_tokens: float,
    quota: Mapping[str, int],
    mix: Mix,
    items: int,
    seconds: float | None,
) -> float:
    """Seconds the job's runs work in all (the days waited for ``rpd`` left out): the pace of
    the per-minute limits, else the sample's, else *seconds* (0 when unknown)."""
    minute = ModelQuota(rpm=quota.get("rpm"), tpm=quota.get("tpm"))
    paced = time_under(minute, math.ceil(requests), math.ceil(input_tokens))
    if paced > 0:
        return paced
    if "rpd" in quota and mix.seconds_per_item is not None:
        return mix.seconds_per_item * items
    return 0.0 if "rpd" in quota else (seconds or 0.0)


def sample_of(records: Sequence[InputRecord], size: int) -> list[InputRecord]:
    """*size* records spread evenly over *records* (every one when there are fewer)."""
    if size >= len(records):
        return list(records)
    step = len(records) / size
    return [records[int(i * step)] for i in range(size)]


def _offline(pipeline: Pipeline) -> Pipeline:
    """*pipeline* on a backend that answers in this process: its own, or the emulator.

    The quotas are left out, the client's (``[backend.quota]``) and the emulator's
    (``[backend.emulator.quota]``): the sample measures the mix, not the pace (the quota
    times the job), and a quota would only slow it down (``rpm = 6``: a minute for a
    sample of 6) or stop it (a spent ``rpd``).
    """
    if pipeline.backend.kind in OFFLINE_BACKENDS:
        section = pipeline.backend.section
        if isinstance(section, EmulatorSection):
            server = attrs.evolve(section.emulator, quota=EmulatorQuota())
            if in_batch_mode(pipeline):
                # The sample measures the mix, not the service's hours: its jobs end at once.
                server = attrs.evolve(server, batch_completion=0.0)
            section = attrs.evolve(section, quota=Quota(), emulator=server)
        return attrs.evolve(pipeline, backend=attrs.evolve(pipeline.backend, section=section))
    spec = backend_spec("emulator")
    section = spec.section_type()
    backend = BackendConfig(spec=spec, model=pipeline.backend.model, section=section)
    return attrs.evolve(pipeline, backend=backend)


_SAMPLE_BATCH: Final = BatchMode(poll=Backoff(initial=0.02, maximum=0.5, multiplier=1.5))
"""The sample's batch mode: its emulator ends each job as it is made."""


async def run_sample(pipeline: Pipeline, records: Sequence[InputRecord]) -> Mix | None:
    """Run *records* through *pipeline*'s plan on an offline backend and average what one
    item cost; ``None`` when no item ended.  Nothing is journaled, written or logged."""
    offline = _offline(pipeline)
    built = await offline.backend.spec.build(
        offline.backend.section, job_inputs(offline, api_key=None)
    )
    # In batch mode the sample runs in batch jobs too, as the job would: no context cache,
    # the instructions inline (see _batch_mode); polled often, since its jobs end at once.
    batch_mode = _SAMPLE_BATCH if in_batch_mode(pipeline) else None
    runner = Runner(
        offline.plan,
        built.strategy,
        validator=built.validator,
        concurrency=max(1, min(offline.run.concurrency, len(records))),
        resources=built.resources if batch_mode is None else (),
        seed=offline.run.seed,
        secrets=(),
        batch=batch_mode,
    )
    started = time.monotonic()
    stopped = False
    try:
        try:
            batch: BatchResult[Any] = await runner.run(
                WorkItem(r.id, r.prompt or "", r) for r in records
            )
        except RunStopped as exc:  # a stop the emulator answers (a model it does not serve)
            if exc.batch is None:
                return None
            batch, stopped = exc.batch, True
    finally:
        await close_all(built.closers)
    wall = time.monotonic() - started
    # An item the stop cut short (cancelled) did not show what an item costs: its refused
    # requests are no measure of the mix.
    ended = [r for r in batch.results if r.attempts and r.status is not ItemStatus.CANCELLED]
    if not ended:
        return None
    by_id = {r.id: r for r in records}
    own = sum(count_tokens(by_id[r.id].prompt or "") for r in ended)
    usage = Usage()
    billed = 0
    cache_tokens = 0
    by_model: dict[str, int] = {}
    for result in ended:
        for attempt in result.attempts:
            usage = usage + attempt.usage
            billed += attempt.usage.input_tokens > 0
            cached = attempt.usage.cached_tokens
            cache_tokens = max(cache_tokens, cached)
            if cached:
                model = pipeline.stage_model(attempt.stage)
                by_model[model] = max(by_model.get(model, 0), cached)
    n = len(ended)
    kind = "its own backend" if offline.backend.spec is pipeline.backend.spec else "the emulator"
    source = f"a sample of {n} items run on {kind}"
    if stopped:
        source += (
            f" (the sample stopped early on a failure of the run; its other {len(records) - n} "
            "items are not counted)"
        )
    return Mix(
        source=source,
        requests=billed / n,
        input_factor=usage.fresh_input_tokens / own if own else 1.0,
        cached=usage.cached_tokens / n,
        inline=0.0,
        output=(usage.output_tokens + usage.thinking_tokens) / n,
        cache_tokens=cache_tokens,
        seconds_per_item=wall / n,
        by_model_tier=usage_by_model_tier(ended, pipeline.stage_model),
        cache_tokens_by_model=by_model,
    )


def default_mix(pipeline: Pipeline) -> Mix:
    """The mix without a sample: :data:`DEFAULT_REQUESTS_PER_ITEM` requests of the item's
    prompt each, the whole instruction read from the cache by each (when there is one),
    :data:`DEFAULT_OUTPUT_TOKENS` output tokens each."""
    cache = pipeline.cache
    instruction = count_tokens(cache.system_instruction) if cache is not None else 0
    # Batch mode uses no context cache: the instructions go inline with each request.
    cached = cache is not None and cache.options.enabled and not in_batch_mode(pipeline)
    requests = DEFAULT_REQUESTS_PER_ITEM
    return Mix(
        source="the documented defaults (--sample 0)",
        requests=requests,
        input_factor=requests,
        cached=requests * instruction if cached else 0.0,
        inline=0.0 if cached else requests * instruction,
        output=requests * DEFAULT_OUTPUT_TOKENS,
        cache_tokens=instruction if cached else 0,
        seconds_per_item=None,
    )


def estimate(
    pipeline: Pipeline,
    records: Sequence[InputRecord],
    mix: Mix,
    quota: Mapping[str, int],
) -> Estimate:
    """Apply *mix* to every runnable record of the job and price it."""
    runnable = [r for r in records if r.error is None]
    n = len(runnable)
    prompts = sum(count_tokens(r.prompt or "") for r in runnable)
    requests = mix.requests * n
    fresh = mix.input_factor * prompts + mix.inline * n
    cached = mix.cached * n
    usage = Usage(
        input_tokens=round(fresh + cached),
        cached_tokens=round(cached),
        output_tokens=round(mix.output * n),
    )
    if quota:
        seconds: float | None = under_quota(requests, usage.input_tokens, quota)
        basis = "the quota " + ", ".join(f"{k}={v:,}" for k, v in quota.items())
    elif mix.seconds_per_item is not None:
        seconds = mix.seconds_per_item * n
        basis = "the sample's pace (no quota known: give --rpm/--tpm)"
    else:
        seconds, basis = None, "unknown: no quota known (give --rpm/--tpm) and no sample"
    if in_batch_mode(pipeline):
        # A round's jobs take the service minutes to 24 hours: no pace of ours foretells it.
        seconds, basis = None, "batch mode: the service answers each round's jobs within 24 h"
    cost = None
    # Without a sample's split, every request is at the tier the mode bills: batch or standard.
    tier = "batch" if in_batch_mode(pipeline) else STANDARD
    split = split_usage(usage, mix.by_model_tier or {(pipeline.backend.model, tier): usage})
    if any(pipeline.price_for(model) is not None for model, _ in split):
        cache = pipeline.cache
        batch = in_batch_mode(pipeline)
        # No context cache is made in batch mode: its requests carry the instructions inline.
        made = (
            {"created": len(mix.cache_tokens_by_model) or 1}
            if mix.cache_tokens and not batch
            else {}
        )
        # A spent day quota stops the run; the same command goes on the next day, a run
        # that makes the cache again.  The cache is stored while a run works, not overnight.
        days = daily_runs(requests, quota)
        active = working_time(requests, usage.input_tokens, quota, mix, n, seconds)
        run = RunStats(
            wall_time=active / days,
            items=n,
            cache=made,
            cache_tokens=mix.cache_tokens,
            cache_tokens_by_model=mix.cache_tokens_by_model,
        )
        cost = price_job(
            Price(input=0.0, cached_input=0.0, output=0.0),  # unused: each model's own price
            pipeline.backend.model,
            usage,
            [run] * days,
            ttl=cache.options.ttl if cache is not None else 0.0,
            keep=cache is not None and cache.options.on_close is CacheClose.KEEP,
            by_model_tier=split,
            price_for=pipeline.price_for,
        )
    return Estimate(
        pipeline=pipeline.name,
        model=pipeline.backend.model,
        items=n,
        input_errors=len(records) - n,
        prompt_tokens=prompts,
        mix=mix,
        requests=round(requests),
        usage=usage,
        seconds=seconds,
        time_basis=basis,
        quota=quota,
        cost=cost,
        ceilings=reached(pipeline, usage.total_tokens, cost),
    )


def _kinds(usage: Usage) -> tuple[int, int, int]:
    return (
        usage.fresh_input_tokens,
        usage.cached_tokens,
        usage.output_tokens + usage.thinking_tokens,
    )


def split_usage(
    usage: Usage, shares: Mapping[tuple[str, str], Usage]
) -> dict[tuple[str, str], Usage]:
    """*usage* (output holding thinking) shared out among the keys of *shares* in the
    proportions of their fresh input, cached input and output tokens; the parts add up to
    *usage* exactly (the last key takes the rounding, and a kind the shares lack)."""
    keys = list(shares)
    parts: dict[tuple[str, str], list[int]] = {k: [0, 0, 0] for k in keys}
    for kind, total in enumerate(_kinds(usage)):
        weights = [_kinds(shares[k])[kind] for k in keys]
        whole = sum(weights)
        left = total
        for key, weight in zip(keys[:-1], weights[:-1], strict=True):
            share = min(left, round(total * weight / whole)) if whole else 0
            parts[key][kind] = share
            left -= share
        if keys:
            parts[keys[-1]][kind] = left
    return {
        k: Usage(input_tokens=fresh + cached, cached_tokens=cached, output_tokens=out)
        for k, (fresh, cached, out) in parts.items()
    }


def reached(pipeline: Pipeline, tokens: int, cost: Cost | None) -> tuple[str, ...]:
    """A sentence for each ``[run]`` ceiling the expected *tokens* or *cost* reach: the run
    would stop there (see ``_ceiling``), at about the share of the items it gives."""
    run = pipeline.run
    found = []
    if run.max_tokens is not None and tokens >= run.max_tokens:
        share = run.max_tokens / tokens
        found.append(
            f"the expected {tokens:,} tokens reach run.max_tokens={run.max_tokens:,}: the run "
            f"would stop after about {share:.0%} of the items"
        )
    if run.max_cost_usd is not None and cost is not None and cost.with_cache >= run.max_cost_usd:
        share = run.max_cost_usd / cost.with_cache
        found.append(
            f"the expected bill {_money(cost.with_cache)} reaches run.max_cost_usd="
            f"{run.max_cost_usd:g}: the run would stop after about {share:.0%} of the items"
        )
    return tuple(found)


def _money(value: float) -> str:
    return f"${value:,.4f}" if abs(value) < 100 else f"${value:,.2f}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:,.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:,.1f} h"
    return f"{seconds / 86400:,.1f} days"


def render_estimate(found: Estimate, console: Console) -> None:
    """Print *found* as one table and a few lines."""
    u = found.usage
    models = ", ".join(found.cost.models if found.cost and found.cost.models else (found.model,))
    table = Table(
        title=f"Estimate: {found.pipeline} ({models}), no request sent",
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    table.add_column("")
    table.add_column("expected", justify="right")
    table.add_row("items", f"{found.items:,}")
    if found.input_errors:
        table.add_row("records with an input error (not sent)", f"{found.input_errors:,}")
    table.add_row("prompt tokens (counted locally)", f"{found.prompt_tokens:,}")
    table.add_row("requests", f"{found.requests:,}")
    table.add_row("input tokens at full price", f"{u.fresh_input_tokens:,}")
    table.add_row("input tokens from the cache", f"{u.cached_tokens:,}")
    table.add_row("output + thinking tokens", f"{u.output_tokens:,}")
    if found.cost is not None:
        k = found.cost
        table.add_row("input at full price", _money(k.fresh_input))
        table.add_row("input from the cache", _money(k.cached_input))
        table.add_row("output + thinking", _money(k.output))
        table.add_row("cache creation", _money(k.cache_creation))
        table.add_row(f"cache storage ({k.storage_hours:.2f} h)", _money(k.cache_storage))
        table.add_row("expected bill (USD)", _money(k.with_cache), style="bold")
    when = _duration(found.seconds) if found.seconds is not None else "unknown"
    table.add_row("time", when, style="bold")
    console.print(table)
    console.print(Text(f"retry mix: {found.mix.source}"), soft_wrap=True)
    console.print(Text(f"time: from {found.time_basis}"), soft_wrap=True)
    for sentence in found.ceilings:
        console.print(Text(f"ceiling: {sentence}", style="yellow"), soft_wrap=True)
    if found.cost is None:
        console.print(
            Text(f"no price known for {found.model!r}: add a [prices] table", style="yellow")
        )
    else:
        grouped: dict[str, list[str]] = {}
        for part, source in found.cost.sources.items():
            grouped.setdefault(source, []).append(part)
        for source, parts in grouped.items():
            console.print(Text(f"prices: {', '.join(parts)} from {source}"), soft_wrap=True)
        for model, sources in found.cost.model_sources.items():
            for source in dict.fromkeys(sources.values()):
                names = ", ".join(p for p, s in sources.items() if s == source)
                console.print(Text(f"{model} prices: {names} from {source}"), soft_wrap=True)
        for model, tokens in found.cost.unpriced.items():
            console.print(Text(unpriced_sentence(model, tokens), style="yellow"), soft_wrap=True)
