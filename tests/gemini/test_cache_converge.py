"""Several processes, one cache: creation converges on the oldest cache with the fingerprint.

Each "process" here is a ``GeminiContextCache`` with its own SDK client.  Where the
interleaving matters, a real httpx2 transport holds or precedes a request at the HTTP
level (the SDK itself is untouched), so the race is the same every run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx2
import pytest
from google import genai
from google.genai import types

from stagedretry.testing import VirtualClock
from strategies.gemini import CacheStats, GeminiContextCache
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import MODEL, doc

SYSTEM = "You answer with the record of the book you are asked about. " + doc(1500, "stack")
Hook = Callable[[httpx2.Request], Awaitable[None]]


def _creates(request: httpx2.Request) -> bool:
    return request.method == "POST" and request.url.path.endswith("/cachedContents")


class Hooked(httpx2.AsyncHTTPTransport):
    """A real transport that runs *before* / *after* around each cache creation it sends."""

    def __init__(self, before: Hook | None = None, after: Hook | None = None) -> None:
        super().__init__()
        self.before, self.after = before, after

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if _creates(request) and self.before is not None:
            await self.before(request)
        response = await super().handle_async_request(request)
        if _creates(request) and self.after is not None:
            await response.aread()
            await self.after(request)
        return response


@pytest.fixture
async def clients(
    emulator: GeminiEmulator,
) -> AsyncIterator[Callable[[httpx2.AsyncHTTPTransport], genai.Client]]:
    made: list[genai.Client] = []

    def build(transport: httpx2.AsyncHTTPTransport) -> genai.Client:
        options = types.HttpOptions(
            base_url=emulator.base_url,
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=1),
            async_client_args={"transport": transport},
        )
        client = genai.Client(api_key="emulator-key", http_options=options)
        made.append(client)
        return client

    yield build
    for client in made:
        await client.aio.aclose()
        client.close()


@pytest.fixture
def emulator(
    start_emulator: Callable[..., GeminiEmulator], virtual_clock: VirtualClock
) -> GeminiEmulator:
    return start_emulator(seed=31, clock=virtual_clock.time)


def job_cache(client: genai.Client, **options: object) -> GeminiContextCache:
    return GeminiContextCache(client, MODEL, system_instruction=SYSTEM, tag="shards", **options)  # type: ignore[arg-type]


def cache_calls(emulator: GeminiEmulator, method: str) -> list[str | None]:
    return [r.cached_content for r in emulator.ledger.requests if r.method == method]


async def test_four_processes_that_all_created_settle_on_one_cache(
    emulator: GeminiEmulator,
    clients: Callable[[httpx2.AsyncHTTPTransport], genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    # Every creation waits at the transport until all four are on their way: each has
    # listed and found nothing, the race of four processes started together.
    barrier = asyncio.Barrier(4)

    async def together(request: httpx2.Request) -> None:
        await barrier.wait()

    caches = [job_cache(clients(Hooked(before=together))) for _ in range(4)]
    handles = await asyncio.gather(*(c.prepare(virtual_clock) for c in caches))

    names = {h.name for h in handles}
    assert len(names) == 1
    (kept,) = names
    assert emulator.cache_names() == (kept,)
    ledger = emulator.ledger
    assert (ledger.caches_created, ledger.caches_deleted) == (4, 3)
    created = [r for r in ledger.requests if r.method == "POST"]
    assert len(created) == 4
    deleted = cache_calls(emulator, "DELETE")
    assert kept not in deleted
    # Each deleted only the one it had made: three losers, one delete each.
    assert sorted(c.stats.duplicates_deleted for c in caches) == [0, 1, 1, 1]
    assert sum(c.stats.created for c in caches) == 4
    assert all(c.stats.reused == (c.stats.duplicates_deleted == 1) for c in caches)


async def test_a_process_that_created_second_uses_the_first_and_deletes_only_its_own(
    emulator: GeminiEmulator,
    clients: Callable[[httpx2.AsyncHTTPTransport], genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    other = job_cache(clients(httpx2.AsyncHTTPTransport()))
    theirs: list[str] = []

    async def another_process_first(request: httpx2.Request) -> None:
        # Between our list (nothing found) and our create, another process creates it.
        if not theirs:
            handle = await other.prepare(virtual_clock)
            assert handle.name is not None
            theirs.append(handle.name)
            virtual_clock.advance(1.0)

    cache = job_cache(clients(Hooked(before=another_process_first)))
    handle = await cache.prepare(virtual_clock)

    assert handle.name == theirs[0]
    assert emulator.cache_names() == (theirs[0],)
    deleted = cache_calls(emulator, "DELETE")
    assert len(deleted) == 1
    assert deleted[0] != theirs[0]
    assert cache.stats == CacheStats(created=1, reused=1, duplicates_deleted=1)


async def test_a_younger_duplicate_is_left_to_the_process_that_made_it(
    emulator: GeminiEmulator,
    clients: Callable[[httpx2.AsyncHTTPTransport], genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    raw = clients(httpx2.AsyncHTTPTransport())
    display_name = job_cache(raw).display_name

    async def another_process_later(request: httpx2.Request) -> None:
        virtual_clock.advance(1.0)
        await raw.aio.caches.create(
            model=MODEL,
            config=types.CreateCachedContentConfig(
                display_name=display_name, system_instruction=SYSTEM
            ),
        )

    cache = job_cache(clients(Hooked(after=another_process_later)))
    handle = await cache.prepare(virtual_clock)

    assert handle.name in emulator.cache_names()
    assert len(emulator.cache_names()) == 2  # ours wins; theirs is theirs to delete
    assert cache_calls(emulator, "DELETE") == []
    assert cache.stats == CacheStats(created=1)


async def test_a_winner_close_to_its_end_is_extended_not_replaced(
    emulator: GeminiEmulator,
    clients: Callable[[httpx2.AsyncHTTPTransport], genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    raw = clients(httpx2.AsyncHTTPTransport())
    theirs: list[str] = []
    display_name = job_cache(raw).display_name

    async def another_process_first(request: httpx2.Request) -> None:
        if not theirs:
            made = await raw.aio.caches.create(
                model=MODEL,
                config=types.CreateCachedContentConfig(
                    display_name=display_name, system_instruction=SYSTEM, ttl="100s"
                ),
            )
            assert made.name is not None
            theirs.append(made.name)
            virtual_clock.advance(1.0)

    cache = job_cache(clients(Hooked(before=another_process_first)), renew_margin=300.0)
    handle = await cache.prepare(virtual_clock)

    assert handle.name == theirs[0]
    assert not cache.needs_renewal(handle, virtual_clock)
    assert emulator.cache_names() == (theirs[0],)
    assert emulator.ledger.caches_updated == 1
    assert cache.stats == CacheStats(created=1, reused=1, updated=1, duplicates_deleted=1)


async def test_a_failed_second_look_keeps_the_cache_it_made(
    emulator: GeminiEmulator,
    clients: Callable[[httpx2.AsyncHTTPTransport], genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    # Request 1 lists, 2 creates, 3 to 6 are the second look and its retries: all 500.
    emulator.inject(Fault(kind=FaultKind.INTERNAL, route="cachedContents", at={3, 4, 5, 6}))
    cache = job_cache(clients(httpx2.AsyncHTTPTransport()))
    handle = await cache.prepare(virtual_clock)
    assert handle.name is not None
    assert emulator.cache_names() == (handle.name,)
    assert cache.stats == CacheStats(created=1)
    assert [r.status for r in emulator.ledger.requests] == [200, 200, 500, 500, 500, 500]


@pytest.mark.parametrize("seed", [31, 32, 33, 34, 35, 36])
async def test_a_creation_after_anothers_settling_adopts_it_in_the_same_instant(
    start_emulator: Callable[..., GeminiEmulator],
    virtual_clock: VirtualClock,
    seed: int,
) -> None:
    # Both list and find nothing; one creates and settles on its own cache before the other
    # creates, all in one frozen (virtual) instant.  The server's create_time still orders
    # the two, so the later creator adopts the earlier one whatever their names: a tie
    # broken by name alone would keep both whenever the later name sorts first.
    emulator = start_emulator(seed=seed, clock=virtual_clock.time)
    settled = asyncio.Event()

    async def after_the_first_settled(request: httpx2.Request) -> None:
        await asyncio.wait_for(settled.wait(), timeout=10)

    made: list[genai.Client] = []

    def client(transport: httpx2.AsyncHTTPTransport) -> genai.Client:
        options = types.HttpOptions(
            base_url=emulator.base_url,
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=1),
            async_client_args={"transport": transport},
        )
        made.append(genai.Client(api_key="emulator-key", http_options=options))
        return made[-1]

    later = job_cache(client(Hooked(before=after_the_first_settled)))
    first = job_cache(client(httpx2.AsyncHTTPTransport()))

    async def first_then_signal() -> str | None:
        handle = await first.prepare(virtual_clock)
        settled.set()
        return handle.name

    try:
        later_handle, first_name = await asyncio.gather(
            later.prepare(virtual_clock), first_then_signal()
        )
    finally:
        for each in made:
            await each.aio.aclose()
            each.close()
    assert later_handle.name == first_name
    assert emulator.cache_names() == (first_name,)
    assert later.stats == CacheStats(created=1, reused=1, duplicates_deleted=1)
