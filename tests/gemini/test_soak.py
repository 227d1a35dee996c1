"""The soak: thousands of items through the ladder and one shared cache, 30% of requests faulted.

Three simulated hours on a one-hour cache, with every injected fault kind mixed in
(and the first stage on the Flex tier, which sheds 5% of its requests):
429s with RetryInfo, 500/502/503, slow answers and hangs, truncated and non-JSON bodies,
blocked prompts, SAFETY and MAX_TOKENS stops, missing candidates, unknown enum values,
the cache dropped server-side, and 503s on the cache API itself.  Every item must end
exactly once, within its budget, never because of the cache, and the library's token
totals must equal the emulator's ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import attrs
import pydantic
import pytest
from google import genai

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache, GeminiStrategy
from strategies.gemini.emulator import Fault, FaultKind, FlexSettings, GeminiEmulator

from .conftest import MODEL, doc

SYSTEM = "You catalogue books for a library; answer with the record. " + doc(2000, "shelf")
HOURS = 3
TTL = 3600.0
CONCURRENCY = 64
FLEX = FlexSettings(shed_rate=0.05)

# Rules are consulted in this order; the first that fires wins.  About 30% in all.
FAULT_MIX = [
    (FaultKind.RATE_LIMIT, 0.05),
    (FaultKind.INTERNAL, 0.04),
    (FaultKind.UNAVAILABLE, 0.04),
    (FaultKind.BAD_GATEWAY, 0.015),
    (FaultKind.SLOW, 0.03),
    (FaultKind.HANG, 0.004),
    (FaultKind.TRUNCATED_JSON, 0.03),
    (FaultKind.NOT_JSON, 0.02),
    (FaultKind.MAX_TOKENS, 0.02),
    (FaultKind.BLOCKED_PROMPT, 0.01),
    (FaultKind.SAFETY_STOP, 0.01),
    (FaultKind.NO_CANDIDATES, 0.01),
    (FaultKind.UNKNOWN_ENUM, 0.01),
]


class Record(pydantic.BaseModel):
    title: str
    author: str
    year: int
    pages: int
    publisher: str
    language: str


async def soak(
    emulator: GeminiEmulator,
    client: genai.Client,
    clock: VirtualClock,
    count: int,
    *,
    drop_every: int,
) -> None:
    # The cache is dropped server-side every so many generate requests, whatever else fires;
    # rarely enough (more than an hour apart) that renewals by update happen in between.
    drops = frozenset(range(drop_every, 4 * count, drop_every))
    emulator.inject(Fault(kind=FaultKind.CACHE_DROPPED, at=drops))
    for kind, rate in FAULT_MIX:
        emulator.inject(Fault(kind=kind, rate=rate, retry_delay=2.0, delay=0.02))
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, rate=0.25, route="cachedContents"))

    pace = HOURS * 3600 / count
    # Each item taken moves the clock on by `pace`: while one request is in flight, the
    # other 63 workers can move it ~64 paces, so the renewal margin must cover that.
    margin = max(300.0, 1.5 * CONCURRENCY * pace)
    cache = GeminiContextCache(
        client, MODEL, system_instruction=SYSTEM, ttl=TTL, renew_margin=margin
    )
    # The SDK's own timeout ends hangs; no virtual timeout, which autojump could fire
    # while a billed answer is still on its way back.
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Record, http_timeout=5.0)
    ladder = sr.Plan.ladder(max_prompts=8)
    first = ladder.stages[0]
    flex = attrs.evolve(first, params={**first.params, "service_tier": "flex"})
    plan = attrs.evolve(ladder, stages=(flex, *ladder.stages[1:]))
    runner = sr.Runner(
        plan,
        strategy,
        validator=sr.validators.pydantic(Record),
        resources=[cache],
        clock=clock,
        concurrency=CONCURRENCY,
        seed=5,
    )
    started = clock.time()

    def paced() -> Iterator[tuple[str, str]]:
        for number in range(count):
            clock.advance(pace)
            yield (f"rec-{number}", f"Catalogue record {number}.")

    batch = await runner.run(paced())

    # Exactly one terminal result per item.
    assert batch.items == count
    assert sorted(r.id for r in batch.results) == sorted(f"rec-{n}" for n in range(count))
    assert clock.time() - started >= HOURS * 3600
    # Within budget, and never failed: not by the cache, not by any fault.
    assert batch.counts[sr.ItemStatus.FAILED] == 0
    assert batch.counts[sr.ItemStatus.CANCELLED] == 0
    for result in batch.results:
        assert result.prompts <= plan.max_prompts
        assert sum(a.counted for a in result.attempts) == result.prompts
        assert "resource lost" not in (result.reason or "")
        assert "rate limited" not in (result.reason or "")
    assert batch.succeeded >= 0.95 * count

    outcomes = {a.outcome for r in batch.results for a in r.attempts}
    assert outcomes == set(sr.OutcomeKind) - {sr.OutcomeKind.FATAL, sr.OutcomeKind.STOP_RUN}
    ledger = emulator.ledger
    assert ledger.faults_fired > 0.25 * ledger.generate_calls
    assert ledger.flex_shed > 0
    assert ledger.tier("flex").generate_calls > 0
    # One cache, renewed by update, re-created once per server-side drop.
    assert cache.stats.updated >= 2
    assert ledger.caches_created == cache.stats.created == 1 + cache.stats.lost
    dropped = sum(r.fault is FaultKind.CACHE_DROPPED for r in ledger.requests)
    assert dropped >= 1
    assert cache.stats.lost == dropped
    # The library's books balance with the server's.
    u = batch.usage
    assert (u.input_tokens, u.cached_tokens, u.output_tokens, u.thinking_tokens) == (
        ledger.prompt_tokens,
        ledger.cached_tokens,
        ledger.candidates_tokens,
        ledger.thoughts_tokens,
    )
    assert u.cached_tokens > 0.9 * u.input_tokens


@pytest.mark.filterwarnings("ignore:BRAND_NEW_REASON is not a valid FinishReason:UserWarning")
@pytest.mark.parametrize("transport", ["aiohttp"])
async def test_a_short_soak(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=31, invalid_rate=0.05, invalid_rate_slope=0.2, flex=FLEX)
    await soak(emulator, connect(emulator), virtual_clock, 1000, drop_every=1000)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:BRAND_NEW_REASON is not a valid FinishReason:UserWarning")
async def test_the_soak(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=32, invalid_rate=0.05, invalid_rate_slope=0.2, flex=FLEX)
    await soak(emulator, connect(emulator), virtual_clock, 10_000, drop_every=6000)
