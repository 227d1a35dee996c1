"""GeminiContextCache: one cache per run, found before created, renewed on the server's clock.

Every test runs the real SDK over real HTTP against the emulator, whose clock is the
test's ``VirtualClock``, so hours of cache life pass in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import structlog
from google import genai
from google.genai import types

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import (
    CacheHandle,
    CacheStats,
    ClosePolicy,
    GeminiContextCache,
    GeminiStrategy,
)
from strategies.gemini.emulator import ExpiryStyle, Fault, FaultKind, GeminiEmulator

from .conftest import MODEL, Book, billed, cached_runner, doc, items, usage_of

SYSTEM = "You are a meticulous librarian; answer with the book's record. " + doc(1500, "shelf")
HOUR = 3600.0


def lost_attempts(batch: sr.BatchResult) -> int:
    return sum(a.outcome is sr.OutcomeKind.RESOURCE_LOST for r in batch.results for a in r.attempts)


def creates(emulator: GeminiEmulator) -> int:
    """POST cachedContents requests, answered or not (a refused create counts too)."""
    return sum(
        r.method == "POST" and r.path.endswith("/cachedContents") for r in emulator.ledger.requests
    )


async def made_elsewhere(
    client: genai.Client, cache: GeminiContextCache, *, ttl: str
) -> types.CachedContent:
    """The cache *cache* would make, created first by "another process" with this *ttl*."""
    return await client.aio.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            display_name=cache.display_name, system_instruction=SYSTEM, ttl=ttl
        ),
    )


@pytest.fixture
def emulator(
    start_emulator: Callable[..., GeminiEmulator], virtual_clock: VirtualClock
) -> GeminiEmulator:
    return start_emulator(seed=11, clock=virtual_clock.time, invalid_rate=0.1)


# -- one cache, shared ---------------------------------------------------------------------------


async def test_one_cache_serves_1000_items_at_concurrency_64(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    batch = await cached_runner(client, cache, virtual_clock, concurrency=64).run(items(1000))
    assert batch.items == 1000
    assert batch.succeeded > 950  # the ladder repairs what the simulated model gets wrong
    ledger = emulator.ledger
    assert ledger.caches_created == 1
    assert creates(emulator) == 1
    assert cache.stats.created == 1
    for result in batch.results:
        assert result.usage.cached_tokens > 0
        assert all(a.usage.cached_tokens > 0 for a in result.attempts)
    assert usage_of(batch) == billed(emulator)
    assert ledger.generate_calls == batch.attempts > 1000  # partial stages were used


async def test_a_second_run_within_the_ttl_reuses_the_cache(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    client = connect(emulator)
    first = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    await cached_runner(client, first, virtual_clock).run(items(20))
    assert emulator.ledger.caches_created == 1

    virtual_clock.advance(HOUR / 2)
    # A fresh object, as a second process would build: it finds the first run's cache.
    second = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    batch = await cached_runner(client, second, virtual_clock).run(items(20, "again"))
    assert emulator.ledger.caches_created == 1
    assert second.stats.created == 0
    assert second.stats.reused == 1
    assert all(r.usage.cached_tokens > 0 for r in batch.results)

    changed = GeminiContextCache(client, MODEL, system_instruction=SYSTEM + " Be terse.")
    assert changed.display_name != second.display_name
    await cached_runner(client, changed, virtual_clock).run(items(5, "changed"))
    assert emulator.ledger.caches_created == 2
    assert changed.stats.created == 1
    assert changed.stats.reused == 0


async def test_a_cache_past_its_life_is_not_reused(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    await cached_runner(client, cache, virtual_clock).run(items(3))
    virtual_clock.advance(HOUR + 1)
    await cached_runner(client, cache, virtual_clock).run(items(3, "later"))
    assert emulator.ledger.caches_created == 2
    assert cache.stats.reused == 0


@pytest.mark.parametrize("transport", ["aiohttp"])  # renewal does not depend on the transport
async def test_three_simulated_hours_on_a_one_hour_cache_renew_by_update(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=12)
    client = connect(emulator)
    # Items are paced 5.4 s apart: 64 in flight span ~350 s of virtual time, so the
    # renewal margin must exceed that for a request never to outlive its handle's check.
    cache = GeminiContextCache(
        client, MODEL, system_instruction=SYSTEM, ttl=HOUR, renew_margin=600.0
    )
    count, span = 2000, 3 * HOUR
    started = virtual_clock.time()

    def paced() -> Iterator[tuple[str, str]]:
        for item in items(count):
            virtual_clock.advance(span / count)
            yield item

    run = cached_runner(client, cache, virtual_clock, concurrency=64)
    batch = await run.run(paced())
    assert virtual_clock.time() - started >= span
    assert batch.succeeded == count
    assert lost_attempts(batch) == 0
    ledger = emulator.ledger
    assert ledger.caches_created == 1
    assert ledger.caches_updated >= 2
    assert cache.stats.updated == ledger.caches_updated
    assert run.resource_renewals[cache.name] == ledger.caches_updated
    assert usage_of(batch) == billed(emulator)


@pytest.mark.parametrize("style", [ExpiryStyle.GEMINI, ExpiryStyle.VERTEX])
async def test_a_cache_dropped_mid_run_is_recreated_once(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
    style: ExpiryStyle,
) -> None:
    emulator = start_on_clock(seed=13, expiry_style=style)
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)

    def dropping() -> Iterator[tuple[str, str]]:
        for number, item in enumerate(items(400)):
            if number == 200:
                # 64 workers are mid-item: every one of them is about to find the cache gone.
                if style is ExpiryStyle.GEMINI:
                    (name,) = emulator.cache_names()
                    assert emulator.delete_cache(name)
                else:
                    emulator.expire_all_caches()  # Vertex answers 400 "... is expired."
            yield item

    run = cached_runner(client, cache, virtual_clock, concurrency=64)
    batch = await run.run(dropping())
    assert batch.succeeded == 400
    assert lost_attempts(batch) >= 1
    assert emulator.ledger.caches_created == 2
    assert cache.stats.created == 2
    assert cache.stats.lost == 1
    assert run.resource_renewals[cache.name] == 1
    lost = [
        a for r in batch.results for a in r.attempts if a.outcome is sr.OutcomeKind.RESOURCE_LOST
    ]
    expected = "CachedContent not found" if style is ExpiryStyle.GEMINI else "is expired"
    assert all(expected in (a.error or "") for a in lost)
    assert all(not a.counted for a in lost)
    assert usage_of(batch) == billed(emulator)


# -- found, extended, recovered -------------------------------------------------------------------


async def test_a_reused_cache_with_two_minutes_left_is_renewed_before_use(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, renew_margin=300.0)
    # Another process made the same cache earlier; it has two minutes to live.
    other = await made_elsewhere(client, cache, ttl="120s")
    assert other.name is not None
    emulator.reset_ledger()
    batch = await cached_runner(client, cache, virtual_clock, concurrency=1).run(items(3))
    assert batch.succeeded == 3
    assert cache.stats == CacheStats(reused=1, updated=1)
    requests = [(r.method, r.cached_content) for r in emulator.ledger.requests]
    patch = requests.index(("PATCH", other.name))
    first_use = requests.index(("POST", other.name))
    assert patch < first_use  # extended before the first request named it
    assert emulator.ledger.caches_created == 0
    refreshed = await client.aio.caches.get(name=other.name)
    assert refreshed.expire_time is not None
    assert refreshed.expire_time.timestamp() == pytest.approx(virtual_clock.time() + HOUR)


async def test_a_reused_cache_lives_as_long_as_the_server_says_not_a_full_ttl(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, renew_margin=300.0)
    other = await made_elsewhere(client, cache, ttl="3600s")
    assert other.expire_time is not None
    assert other.create_time is not None
    virtual_clock.advance(20 * 60)  # made 20 minutes ago by another process: 40 left
    handle = await cache.prepare(virtual_clock)
    assert (cache.stats.reused, cache.stats.updated) == (1, 0)
    assert handle.expire_time == other.expire_time.timestamp()
    assert handle.create_time == other.create_time.timestamp()
    # Found by a list whose Date names a whole second: the server's now is taken as the
    # latest it can be, so the renewal may come up to a second early, never late.
    assert handle.server_ahead == pytest.approx(1.0)
    virtual_clock.advance(40 * 60 - 300 - 2)
    assert not cache.needs_renewal(handle, virtual_clock)
    virtual_clock.advance(2)
    # Now + ttl at reuse would still promise 20 minutes; the server says five are left.
    assert cache.needs_renewal(handle, virtual_clock)
    renewed = await cache.renew(handle, sr.RenewReason.EXPIRING, virtual_clock)
    assert renewed.name == handle.name
    assert renewed.expire_time == pytest.approx(virtual_clock.time() + HOUR)


async def test_a_server_clock_behind_ours_renews_on_the_servers_time(
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    # The server's clock runs 30 minutes behind ours: its expiry is read against its own
    # clock, so the cache is not renewed 30 minutes early (nor every use, were the server
    # behind by more than ttl - renew_margin).
    emulator = start_emulator(seed=14, clock=lambda: virtual_clock.time() - HOUR / 2)
    cache = GeminiContextCache(
        connect(emulator), MODEL, system_instruction=SYSTEM, renew_margin=300.0
    )
    handle = await cache.prepare(virtual_clock)
    assert handle.server_ahead == pytest.approx(-HOUR / 2)
    assert handle.expire_time == pytest.approx(virtual_clock.time() + HOUR / 2)
    virtual_clock.advance(HOUR - 300 - 1)
    assert not cache.needs_renewal(handle, virtual_clock)
    virtual_clock.advance(2)
    assert cache.needs_renewal(handle, virtual_clock)


async def test_a_server_clock_ahead_of_ours_brings_the_renewal_forward(
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    # The server's clock runs 20 minutes ahead: its expire_time, read against our clock,
    # would promise 20 minutes the cache does not have.
    emulator = start_emulator(seed=15, clock=lambda: virtual_clock.time() + 1200.0)
    cache = GeminiContextCache(
        connect(emulator), MODEL, system_instruction=SYSTEM, renew_margin=300.0
    )
    handle = await cache.prepare(virtual_clock)
    assert handle.server_ahead == pytest.approx(1200.0)
    virtual_clock.advance(HOUR - 300 - 1)
    assert not cache.needs_renewal(handle, virtual_clock)
    virtual_clock.advance(2)
    assert cache.needs_renewal(handle, virtual_clock)
    assert handle.expire_time is not None
    assert handle.expire_time > virtual_clock.time() + 1000  # what our clock alone would say
    renewed = await cache.renew(handle, sr.RenewReason.EXPIRING, virtual_clock)
    assert renewed.server_ahead == pytest.approx(1200.0)
    assert not cache.needs_renewal(renewed, virtual_clock)


async def test_an_update_that_finds_the_cache_gone_recreates_it(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    cache = GeminiContextCache(connect(emulator), MODEL, system_instruction=SYSTEM)
    handle = await cache.prepare(virtual_clock)
    assert handle.name is not None
    emulator.delete_cache(handle.name)
    renewed = await cache.renew(handle, sr.RenewReason.EXPIRING, virtual_clock)
    assert renewed.name != handle.name
    assert emulator.cache_names() == (renewed.name,)
    assert (cache.stats.created, cache.stats.lost, cache.stats.updated) == (2, 1, 0)


async def test_a_lost_cache_is_rediscovered_when_another_process_remade_it(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    handle = await cache.prepare(virtual_clock)
    assert handle.name is not None
    emulator.delete_cache(handle.name)
    remade = await client.aio.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            display_name=cache.display_name, system_instruction=SYSTEM, ttl="3600s"
        ),
    )
    renewed = await cache.renew(handle, sr.RenewReason.LOST, virtual_clock)
    assert renewed.name == remade.name
    assert (cache.stats.created, cache.stats.reused, cache.stats.lost) == (1, 1, 1)


async def test_listing_pages_through_every_cache(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    client = connect(emulator)
    for number in range(230):
        await client.aio.caches.create(
            model=MODEL,
            config=types.CreateCachedContentConfig(
                display_name=f"someone-else:{number}", system_instruction=SYSTEM, ttl="3600s"
            ),
        )
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, tag="nightly")
    ours = await client.aio.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            display_name=cache.display_name, system_instruction=SYSTEM, ttl="3600s"
        ),
    )
    emulator.reset_ledger()
    handle = await cache.prepare(virtual_clock)
    assert handle.name == ours.name
    assert cache.stats.reused == 1
    pages = [r for r in emulator.ledger.requests if r.method == "GET"]
    assert len(pages) == 3
    assert [dict(r.query).get("pageToken") is not None for r in pages] == [False, True, True]


async def test_a_matching_name_on_another_model_is_not_reused(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    await client.aio.caches.create(
        model="gemini-2.5-pro",
        config=types.CreateCachedContentConfig(
            display_name=cache.display_name, system_instruction=SYSTEM, ttl="3600s"
        ),
    )
    handle = await cache.prepare(virtual_clock)
    assert handle.model == f"models/{MODEL}"
    assert cache.stats.created == 1


async def test_transient_failures_of_the_cache_api_are_retried(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, route="cachedContents", times=2))
    emulator.inject(
        Fault(kind=FaultKind.RATE_LIMIT, route="cachedContents", times=1, retry_delay=3.0)
    )
    cache = GeminiContextCache(connect(emulator), MODEL, system_instruction=SYSTEM)
    before = virtual_clock.monotonic()
    handle = await cache.prepare(virtual_clock)
    assert handle.name is not None
    assert virtual_clock.monotonic() - before >= 3.0  # the 429's RetryInfo was honoured
    assert emulator.ledger.faults_fired == 3


async def test_a_cache_that_cannot_be_made_stops_the_run(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    client = connect(emulator)
    cache = GeminiContextCache(client, "tunedModels/x/y", system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    run = sr.Runner(sr.Plan.ladder(), strategy, resources=[cache], clock=virtual_clock)
    with pytest.raises(sr.ResourceError, match="gemini_cache"):
        await run.run(items(3))
    assert emulator.ledger.generate_calls == 0


# -- too small, kept or deleted -----------------------------------------------------------------


async def test_content_too_small_to_cache_goes_inline_once_with_a_warning(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    client = connect(emulator)
    small = "You are a terse librarian. Answer with the record."
    cache = GeminiContextCache(client, MODEL, system_instruction=small)
    with structlog.testing.capture_logs() as logs:
        first = await cached_runner(client, cache, virtual_clock).run(items(10))
        second = await cached_runner(client, cache, virtual_clock).run(items(10, "again"))
    warnings = [e for e in logs if e["event"] == "gemini_cache_too_small"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert "too small" in warnings[0]["detail"]
    assert first.succeeded + second.succeeded >= 19
    assert creates(emulator) == 1  # tried once, never again
    assert cache.stats.inline_fallbacks == 1
    assert cache.stats.created == 0
    generate = [r for r in emulator.ledger.requests if r.path.endswith(":generateContent")]
    assert generate
    assert all(r.cached_content is None for r in generate)
    # The instruction travelled with every request: its tokens are in every prompt.
    assert all(
        a.usage.input_tokens > 10 and a.usage.cached_tokens == 0
        for r in (*first.results, *second.results)
        for a in r.attempts
    )
    assert first.usage.input_tokens + second.usage.input_tokens == emulator.ledger.prompt_tokens


@pytest.mark.parametrize("policy", [ClosePolicy.KEEP, ClosePolicy.DELETE, "delete"])
async def test_close_keeps_or_deletes_by_policy(
    emulator: GeminiEmulator,
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
    policy: ClosePolicy | str,
) -> None:
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, on_close=policy)
    await cached_runner(client, cache, virtual_clock).run(items(4))
    if ClosePolicy(policy) is ClosePolicy.KEEP:
        assert len(emulator.cache_names()) == 1
        assert cache.stats.deleted == 0
    else:
        assert emulator.cache_names() == ()
        assert cache.stats.deleted == 1
        assert emulator.ledger.caches_deleted == 1


async def test_a_failed_delete_on_close_is_logged_not_raised(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client], virtual_clock: VirtualClock
) -> None:
    cache = GeminiContextCache(
        connect(emulator), MODEL, system_instruction=SYSTEM, on_close=ClosePolicy.DELETE
    )
    handle = await cache.prepare(virtual_clock)
    emulator.inject(Fault(kind=FaultKind.INTERNAL, route="cachedContents"))
    with structlog.testing.capture_logs() as logs:
        await cache.close(handle)
    assert [e["event"] for e in logs] == ["gemini_cache_delete_failed"]
    assert cache.stats.deleted == 0
    await cache.close(CacheHandle(name=None, model="models/m", display_name="d"))  # inline: no-op


# -- the fingerprint ----------------------------------------------------------------------------


def test_the_display_name_carries_a_fingerprint_of_everything_cached(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    client = connect(start_emulator(seed=1))

    def name(**overrides: object) -> str:
        options: dict[str, object] = {
            "system_instruction": SYSTEM,
            "contents": ["doc"],
            "tools": (),
        }
        options.update(overrides)
        model = str(options.pop("model", MODEL))
        return GeminiContextCache(client, model, **options).display_name  # type: ignore[arg-type]

    base = name()
    assert base == name()  # stable: another process computes the same name
    assert base == name(model=f"models/{MODEL}")
    assert base.startswith("stagedretry:")
    assert len(base.split(":")[1]) == 32
    tool = types.Tool(function_declarations=[types.FunctionDeclaration(name="lookup")])
    others = {
        name(model="gemini-2.5-pro"),
        name(system_instruction=SYSTEM + "!"),
        name(contents=["doc", "more"]),
        name(tools=[tool]),
        name(tag="nightly"),
    }
    assert base not in others
    assert len(others) == 5
    tagged = name(tag="x" * 64)
    assert tagged.startswith("stagedretry:" + "x" * 64 + ":")
    assert len(tagged) <= 128


def test_bad_settings_are_refused(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    client = connect(start_emulator(seed=1))
    with pytest.raises(ValueError, match="tag"):
        GeminiContextCache(client, MODEL, system_instruction=SYSTEM, tag="a:b")
    with pytest.raises(ValueError, match="tag"):
        GeminiContextCache(client, MODEL, system_instruction=SYSTEM, tag="x" * 65)
    with pytest.raises(ValueError, match="renew_margin"):
        GeminiContextCache(client, MODEL, system_instruction=SYSTEM, ttl=60, renew_margin=60)
    with pytest.raises(ValueError, match="ttl"):
        GeminiContextCache(client, MODEL, system_instruction=SYSTEM, ttl=0)
    with pytest.raises(ValueError, match="keep"):
        GeminiContextCache(client, MODEL, system_instruction=SYSTEM, on_close="forget")
