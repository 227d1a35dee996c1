"""One cache per (model, instructions): a stage on another model gets that model's own cache.

Over the real SDK and real HTTP against the emulator.  A ladder escalating from flash to
gemini-2.5-pro used to send the pro stage's instructions inline on every request, because
the one cache was made for flash; now the pro stage names a pro cache when the expected
requests pay for it, and says why not when they do not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from google import genai
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.backend import CachePrice
from strategies.gemini import GeminiContextCache, GeminiStrategy
from strategies.gemini._model_caches import expected_requests, weigh
from strategies.gemini.emulator import GeminiEmulator

from .conftest import MODEL, Book, Recorder, billed, doc, items, ladder_runner, usage_of

PRO = "gemini-2.5-pro"
SYSTEM = "You catalogue books for a library; answer with the record. " + doc(2000, "shelf")
# Gemini 2.5 Pro per million tokens: input, cached input, storage per hour.
PRO_PRICE = CachePrice(1.25, 0.125, 4.50)
PRICES = {PRO: PRO_PRICE, MODEL: CachePrice(0.30, 0.03, 1.00)}


def escalating_plan() -> sr.Plan:
    """Flash first, then the same full request on gemini-2.5-pro."""
    return sr.Plan(
        stages=[
            sr.Stage("full_flash", "full", {"temperature": 0.0}),
            sr.Stage("full_pro", "full", {"temperature": 0.0, "model": PRO}),
        ],
        max_prompts=2,
    )


def build(
    client: genai.Client,
    clock: VirtualClock,
    *,
    expected_items: int | None,
    on_close: str = "keep",
    concurrency: int = 4,
) -> tuple[sr.Runner, GeminiContextCache, GeminiStrategy]:
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, on_close=on_close)
    strategy = GeminiStrategy(
        client,
        MODEL,
        cache=cache,
        response_schema=Book,
        cache_prices=PRICES,
        expected_items=expected_items,
    )
    runner = ladder_runner(
        strategy, clock, cache=cache, plan=escalating_plan(), concurrency=concurrency
    )
    return runner, cache, strategy


def pro_attempts(batch: sr.BatchResult) -> list[sr.Attempt]:
    return [a for r in batch.results for a in r.attempts if a.stage == "full_pro"]


async def models_on_server(client: genai.Client) -> list[str]:
    return sorted([str(c.model) async for c in await client.aio.caches.list()])


# -- the example ---------------------------------------------------------------------------


async def test_the_pro_stage_reads_a_pro_cache_when_it_pays(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    # About one answer in five is invalid at flash: those items escalate to pro.
    emulator = start_on_clock(seed=5, invalid_rate=0.05)
    client, recorder = recording_client(emulator)
    runner, cache, strategy = build(client, virtual_clock, expected_items=60, on_close="delete")
    async with runner:
        batch = await runner.run(items(60))
        on_server = {str(c.model): str(c.name) async for c in await client.aio.caches.list()}
    pro = pro_attempts(batch)
    assert len(pro) >= 5
    assert all(a.usage.cached_tokens > 0 for a in pro)
    assert sorted(on_server) == [f"models/{MODEL}", f"models/{PRO}"]
    pro_bodies = [b for p, b in zip(recorder.paths, recorder.bodies, strict=True) if PRO in p]
    assert {b.get("cachedContent") for b in pro_bodies} == {on_server[f"models/{PRO}"]}
    assert all("systemInstruction" not in b for b in pro_bodies)
    (pro_cache,) = strategy.model_caches
    assert pro_cache.stats.created == 1
    assert cache.stats.created == 1
    assert [(c.model, c.stages, c.cached) for c in strategy.cache_choices()] == [
        (MODEL, ("full_flash",), True),
        (PRO, ("full_pro",), True),
    ]
    assert usage_of(batch) == billed(emulator)
    assert emulator.cache_names() == ()  # on_close="delete" deleted both


async def test_before_the_pro_stage_sent_its_instructions_inline_at_full_price(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    """The same run where the pro cache does not pay (few items, kept an hour): every pro
    request carries the instructions, and the choice says why."""
    emulator = start_on_clock(seed=5, invalid_rate=1.0)
    client, _recorder = recording_client(emulator)
    runner, _, strategy = build(client, virtual_clock, expected_items=2)
    batch = await runner.run(items(2))
    pro = pro_attempts(batch)
    assert len(pro) == 2
    assert all(a.usage.cached_tokens == 0 for a in pro)
    assert all(a.usage.input_tokens > 2000 for a in pro)
    (flash, choice) = strategy.cache_choices()
    assert flash.cached
    assert choice.model == PRO
    assert not choice.cached
    # Weighed when each item reached pro: the one request about to go, and none to come.
    assert choice.reason == "1 request expected to cost $0.003 inline vs $0.012 cached"
    assert await models_on_server(client) == [f"models/{MODEL}"]


async def test_too_small_for_the_model_stays_inline_and_says_so(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=5, invalid_rate=1.0, min_cache_tokens={PRO: 4096, MODEL: 1024})
    client, _ = recording_client(emulator)
    runner, _, strategy = build(client, virtual_clock, expected_items=200)
    batch = await runner.run(items(4))
    assert all(a.usage.cached_tokens == 0 for a in pro_attempts(batch))
    choice = strategy.cache_choices()[1]
    assert (choice.model, choice.reason) == (PRO, "below the model's minimum of 4096 tokens")


async def test_a_cache_that_did_not_pay_is_weighed_again_as_items_arrive(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    """Told to expect 3 items, the first to reach pro does not pay for a cache; as more and
    more items keep coming (the count was wrong), the choice is weighed again each time the
    items that reached pro have doubled, and the cache is made."""
    emulator = start_on_clock(seed=5, invalid_rate=1.0)
    client, _ = recording_client(emulator)
    runner, _, strategy = build(client, virtual_clock, expected_items=3, concurrency=1)
    batch = await runner.run(items(40))
    pro = pro_attempts(batch)
    assert pro[0].usage.cached_tokens == 0
    assert pro[-1].usage.cached_tokens > 0
    (pro_cache,) = strategy.model_caches
    assert pro_cache.stats.created == 1
    assert strategy.cache_choices()[1].cached


# -- the lifecycle, per model ----------------------------------------------------------------------


async def test_one_create_per_model_however_many_workers_reach_it_at_once(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=9, invalid_rate=1.0)
    client, _ = recording_client(emulator)
    runner, cache, strategy = build(client, virtual_clock, expected_items=32, concurrency=16)
    batch = await runner.run(items(32))
    assert len(pro_attempts(batch)) == 32
    assert emulator.ledger.caches_created == 2
    (pro_cache,) = strategy.model_caches
    assert (cache.stats.created, pro_cache.stats.created) == (1, 1)
    assert await models_on_server(client) == [f"models/{MODEL}", f"models/{PRO}"]


async def test_a_resumed_run_finds_both_caches(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=9, invalid_rate=1.0)
    client, _ = recording_client(emulator)
    first, _, _ = build(client, virtual_clock, expected_items=20)
    await first.run(items(10))
    assert emulator.ledger.caches_created == 2
    # A second process: new objects, the same instructions. Even told to expect one item,
    # a live pro cache is found, not weighed.
    second, cache, strategy = build(client, virtual_clock, expected_items=1)
    batch = await second.run(items(3, prefix="again"))
    assert emulator.ledger.caches_created == 2
    (pro_cache,) = strategy.model_caches
    assert (cache.stats.reused, pro_cache.stats.reused) == (1, 1)
    assert all(a.usage.cached_tokens > 0 for a in pro_attempts(batch))


async def test_a_lost_pro_cache_is_recovered_without_touching_the_flash_one(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=9, invalid_rate=1.0)
    client, _ = recording_client(emulator)
    runner, cache, strategy = build(client, virtual_clock, expected_items=20, concurrency=4)
    async with runner:
        await runner.run(items(2, prefix="warm"))
        caches = {str(c.model): str(c.name) async for c in await client.aio.caches.list()}
        emulator.delete_cache(caches[f"models/{PRO}"])  # gone, server-side
        batch = await runner.run(items(8))
        renewals = dict(runner.resource_renewals)
        after = {str(c.model): str(c.name) async for c in await client.aio.caches.list()}
    (pro_cache,) = strategy.model_caches
    assert renewals == {cache.name: 0, pro_cache.name: 1}
    assert (cache.stats.lost, pro_cache.stats.lost) == (0, 1)
    assert after[f"models/{MODEL}"] == caches[f"models/{MODEL}"]
    assert after[f"models/{PRO}"] != caches[f"models/{PRO}"]
    assert batch.items == 8
    assert batch.transitions["resource_lost"] >= 1
    assert all(r.prompts == 2 for r in batch.results)  # a loss spends no prompt


async def test_on_close_delete_deletes_every_model_cache(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=9, invalid_rate=1.0)
    client, _ = recording_client(emulator)
    runner, cache, strategy = build(client, virtual_clock, expected_items=8, on_close="delete")
    await runner.run(items(8))
    (pro_cache,) = strategy.model_caches
    assert (cache.stats.deleted, pro_cache.stats.deleted) == (1, 1)
    assert emulator.cache_names() == ()


async def test_a_plan_without_a_stage_on_the_job_model_still_prepares_the_cache_given(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    """The cache given is prepared at the first attempt, as it always was (a cache that
    cannot be made stops the run before any request); the pro stage reads its own."""
    emulator = start_on_clock(seed=9)
    client, _ = recording_client(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    plan = sr.Plan(stages=[sr.Stage("pro", "full", {"model": PRO})], max_prompts=1)
    batch = await ladder_runner(strategy, virtual_clock, cache=cache, plan=plan).run(items(3))
    assert batch.succeeded == 3
    assert all(a.usage.cached_tokens > 0 for r in batch.results for a in r.attempts)
    assert await models_on_server(client) == [f"models/{MODEL}", f"models/{PRO}"]


# -- the break-even --------------------------------------------------------------------------------

prices = st.builds(
    CachePrice,
    input=st.floats(0.01, 20),
    cached_input=st.floats(0, 20),
    storage=st.floats(0, 20),
)


@given(
    tokens=st.integers(1, 2_000_000),
    price=prices,
    requests=st.floats(0, 1e6),
    more=st.floats(0, 1e6),
    hours=st.floats(0, 200),
)
def test_the_break_even_is_the_formula_and_more_requests_never_undo_it(
    tokens: int, price: CachePrice, requests: float, more: float, hours: float
) -> None:
    weighing = weigh(tokens=tokens, price=price, expected_requests=requests, storage_hours=hours)
    creation = tokens * price.input / 1e6
    storage = tokens * price.storage * hours / 1e6
    saved = requests * tokens * (price.input - price.cached_input) / 1e6
    if abs((creation + storage) - saved) > 1e-9 * max(1.0, saved):
        assert weighing.pays == (creation + storage < saved)
    if price.cached_input >= price.input:
        assert not weighing.pays  # a read that costs as much as a send never pays
    if weighing.pays:
        assert weigh(
            tokens=tokens, price=price, expected_requests=requests + more, storage_hours=hours
        ).pays
    assert weighing.inline >= 0
    assert weighing.cached >= 0


@given(
    total=st.none() | st.integers(0, 100_000),
    started=st.integers(0, 10_000),
    reached=st.integers(0, 10_000),
    extra=st.integers(0, 10_000),
    more=st.integers(0, 100_000),
)
def test_expected_requests_count_the_one_about_to_go_and_grow_with_the_items_to_come(
    total: int | None, started: int, reached: int, extra: int, more: int
) -> None:
    requests = reached + extra
    expected = expected_requests(total=total, started=started, reached=reached, requests=requests)
    assert expected >= 1.0
    seen = max(started, reached, 1)
    if total is not None and total >= seen:
        bigger = expected_requests(
            total=total + more, started=started, reached=reached, requests=requests
        )
        assert bigger >= expected
        if total == seen:
            # Nothing left to come: only the request about to go (at the mean per item).
            assert expected == pytest.approx(max(requests, reached, 1) / max(reached, 1))
    else:
        # No count, or one already passed: as many items again as have started.
        assert expected == expected_requests(
            total=2 * seen, started=started, reached=reached, requests=requests
        )


def test_the_pipeline_example_pays_for_a_pro_cache_at_its_first_escalation() -> None:
    """The demo's numbers: 2,111 instruction tokens, 300 items, the first of 16 started
    items reaching pro, the cache deleted at the end."""
    expected = expected_requests(total=300, started=16, reached=1, requests=1)
    assert expected == pytest.approx(1 + 284 / 16)
    weighing = weigh(tokens=2111, price=PRO_PRICE, expected_requests=expected, storage_hours=0.01)
    assert weighing.pays
    # Kept an hour, two requests do not pay; six do.
    assert not weigh(tokens=2111, price=PRO_PRICE, expected_requests=2, storage_hours=1).pays
    assert weigh(tokens=2111, price=PRO_PRICE, expected_requests=6, storage_hours=1).pays


async def test_concurrent_prepares_of_one_model_cache_make_one(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
) -> None:
    """The runner's pool is what makes a prepare single-flight: many workers asking the
    pool for the pro stage's handles at once create one pro cache."""
    emulator = start_on_clock(seed=9)
    client, _ = recording_client(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    plan = escalating_plan()
    (pro_cache,) = strategy.plan_resources(plan, [s.params for s in plan.stages])
    from stagedretry._resources import ResourcePool

    pool = ResourcePool([cache, pro_cache])
    stage = plan.stages[1]
    handles = await asyncio.gather(*(pool.current(virtual_clock, stage) for _ in range(12)))
    assert {h[0][pro_cache.name].name for h in handles} != {None}
    assert all(cache.name not in h[0] for h in handles)  # the flash cache: not for this stage
    assert emulator.ledger.caches_created == 1
    await pool.close()
