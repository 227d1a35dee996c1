"""A cache found by its fingerprint is judged by the server's clock, ahead or behind ours.

The emulator's ``clock_offset`` sets its clock apart from the test's virtual clock: every
time it reports (``createTime``, ``expireTime``, the ``Date`` header) and every expiry it
decides is on the shifted clock.  The real SDK finds the cache by listing; the list's
``Date`` is the only reading of the server's clock a process that did not create the
cache has.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Callable

import httpx2
import pytest
from google import genai
from google.genai import types
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stagedretry.testing import VirtualClock
from strategies.gemini import CacheStats, GeminiContextCache
from strategies.gemini.emulator import GeminiEmulator, make_client

from .conftest import MODEL, cached_runner, doc, items

SYSTEM = "You are a meticulous librarian; answer with the book's record. " + doc(1500, "shelf")
MARGIN = 300.0
SKEWS = [pytest.param(2400.0, id="server-40min-ahead"), pytest.param(-2400.0, id="behind-40min")]


async def made_elsewhere(client: genai.Client, cache: GeminiContextCache, ttl: float) -> str:
    """The cache *cache* would make, created by "another process" with *ttl* seconds left."""
    made = await client.aio.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            display_name=cache.display_name, system_instruction=SYSTEM, ttl=f"{ttl:.3f}s"
        ),
    )
    assert made.name is not None
    return made.name


def calls(emulator: GeminiEmulator, name: str) -> list[str]:
    """The methods of the requests that named cache *name*, in order (POST: a generate)."""
    return [r.method for r in emulator.ledger.requests if r.cached_content == name]


@pytest.mark.parametrize("skew", SKEWS)
async def test_a_found_cache_with_200_s_left_is_renewed_by_update(
    skew: float,
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_emulator(seed=21, clock=virtual_clock.time, clock_offset=skew)
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, renew_margin=MARGIN)
    name = await made_elsewhere(client, cache, ttl=200.0)
    emulator.reset_ledger()

    batch = await cached_runner(client, cache, virtual_clock, concurrency=2).run(items(4))

    assert batch.succeeded == 4
    assert cache.stats == CacheStats(reused=1, updated=1)
    ledger = emulator.ledger
    assert (ledger.caches_created, ledger.caches_updated) == (0, 1)  # updated, not re-created
    used = calls(emulator, name)
    assert used[0] == "PATCH"  # extended before any request named it
    assert used.count("POST") == ledger.generate_calls
    info = await client.aio.caches.get(name=name)
    assert info.expire_time is not None
    server_now = virtual_clock.time() + skew
    assert info.expire_time.timestamp() == pytest.approx(server_now + cache.ttl)


@pytest.mark.parametrize("skew", SKEWS)
async def test_a_found_cache_with_plenty_of_life_is_used_as_is(
    skew: float,
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_emulator(seed=22, clock=virtual_clock.time, clock_offset=skew)
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, renew_margin=MARGIN)
    # 30 minutes left: judged on our clock, a server 40 minutes behind would make it look
    # expired 10 minutes ago.
    name = await made_elsewhere(client, cache, ttl=1800.0)
    emulator.reset_ledger()

    handle = await cache.prepare(virtual_clock)

    assert handle.name == name
    assert cache.stats == CacheStats(reused=1)
    assert emulator.ledger.caches_updated == 0
    assert skew < handle.server_ahead <= skew + 1.0  # the Date's whole second, rounded up
    virtual_clock.advance(1800.0 - MARGIN - 2.0)
    assert not cache.needs_renewal(handle, virtual_clock)
    virtual_clock.advance(2.0)
    assert cache.needs_renewal(handle, virtual_clock)


async def test_a_server_far_behind_is_not_renewed_on_every_use(
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    # Two hours behind: on our clock a fresh cache would look expired at once.
    emulator = start_emulator(seed=23, clock=virtual_clock.time, clock_offset=-7200.0)
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, renew_margin=MARGIN)
    batch = await cached_runner(client, cache, virtual_clock, concurrency=4).run(items(12))
    assert batch.succeeded == 12
    assert cache.stats == CacheStats(created=1)
    assert emulator.ledger.caches_updated == 0


async def test_the_emulator_reports_every_time_on_its_shifted_clock(
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_emulator(seed=24, clock=virtual_clock.time, clock_offset=2400.0)
    assert emulator.clock_offset == 2400.0
    client = connect(emulator)
    made = await client.aio.caches.create(
        model=MODEL, config=types.CreateCachedContentConfig(system_instruction=SYSTEM, ttl="100s")
    )
    server_now = virtual_clock.time() + 2400.0
    assert made.create_time is not None
    assert made.expire_time is not None
    assert made.create_time.timestamp() == pytest.approx(server_now)
    assert made.expire_time.timestamp() == pytest.approx(server_now + 100.0)
    async with httpx2.AsyncClient() as http:
        answer = await http.get(
            f"{emulator.base_url}/v1beta/cachedContents", headers={"x-goog-api-key": "k"}
        )
    dated = email.utils.parsedate_to_datetime(answer.headers["date"]).timestamp()
    assert int(server_now) == dated
    virtual_clock.advance(99.0)
    assert made.name in emulator.cache_names()
    assert len((await client.aio.caches.list()).page) == 1
    virtual_clock.advance(2.0)  # expiry is the shifted clock's decision too
    assert (await client.aio.caches.list()).page == []
    with pytest.raises(ValueError, match="clock_offset"):
        emulator.clock_offset = float("nan")


def test_any_skew_decides_as_no_skew_does(virtual_clock: VirtualClock) -> None:
    """For any server clock within a day of ours, a found cache with *left* seconds of life
    is renewed (by update) exactly when it would be with both clocks agreeing.

    The one band left out is by design: a ``Date`` names a whole second, so a cache with
    between ``renew_margin`` and ``renew_margin + 1`` seconds left may be renewed early
    (and one with less than a second left counts as gone).
    """
    emulator = GeminiEmulator(seed=25, clock=virtual_clock.time)
    emulator.start()
    loop = asyncio.new_event_loop()  # one loop and one client for every example: 0.2 s each
    client = make_client(emulator.base_url)

    async def renewed(skew: float, left: float) -> bool:
        emulator.clock_offset = skew
        for name in emulator.cache_names():
            emulator.delete_cache(name)
        cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, renew_margin=MARGIN)
        name = await made_elsewhere(client, cache, ttl=left)
        before = emulator.ledger.caches_updated
        handle = await cache.prepare(virtual_clock)
        assert handle.name == name
        assert cache.stats.created == 0  # found, never re-created
        updated = emulator.ledger.caches_updated - before
        assert updated == cache.stats.updated
        return updated == 1

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        skew=st.floats(min_value=-86_400.0, max_value=86_400.0),
        left=st.one_of(
            st.floats(min_value=1.001, max_value=MARGIN),
            st.floats(min_value=MARGIN + 1.001, max_value=7200.0),
        ),
    )
    def decides_alike(skew: float, left: float) -> None:
        with_skew = loop.run_until_complete(renewed(skew, left))
        without = loop.run_until_complete(renewed(0.0, left))
        assert with_skew == without == (left <= MARGIN)

    try:
        decides_alike()
    finally:
        loop.run_until_complete(client.aio.aclose())
        loop.close()
        client.close()
        emulator.stop()
