"""cachedContents through the real SDK, over real HTTP, on both async transports."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import httpx2
import pytest
from google import genai
from google.genai import errors, types

from strategies.gemini.emulator import ExpiryStyle, GeminiEmulator

from .conftest import MODEL, START, FakeWallClock, doc

NOT_FOUND = "CachedContent not found (or permission denied)"


def cache_config(tokens: int = 1100, **extra: object) -> types.CreateCachedContentConfig:
    return types.CreateCachedContentConfig(contents=doc(tokens), **extra)  # type: ignore[arg-type]


async def test_create_returns_the_seven_fields(
    http: httpx2.Client, aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    cache = await aio.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            contents=doc(1000),
            system_instruction=doc(50, "be"),
            tools=[
                types.Tool(
                    function_declarations=[types.FunctionDeclaration(name="f", description="d")]
                )
            ],
            ttl="3.5s",
            display_name="tag:run=42",
        ),
    )
    assert cache.name is not None
    assert re.fullmatch(r"cachedContents/[a-z0-9]{40}", cache.name)
    assert cache.model == f"models/{MODEL}"
    assert cache.display_name == "tag:run=42"
    assert cache.create_time == dt.datetime.fromtimestamp(START, dt.UTC)
    assert cache.update_time == cache.create_time
    assert cache.expire_time == dt.datetime.fromtimestamp(START + 3.5, dt.UTC)
    assert cache.usage_metadata is not None
    total = cache.usage_metadata.total_token_count
    assert total is not None
    assert total > 1050
    raw = http.get(f"{emulator.base_url}/v1beta/{cache.name}")
    assert raw.headers["content-type"] == "application/json; charset=UTF-8"
    assert list(raw.json()) == [
        "name", "model", "displayName", "createTime", "updateTime", "expireTime", "usageMetadata",
    ]  # fmt: skip
    assert raw.json()["expireTime"] == "2026-09-21T14:13:23.500000Z"
    assert emulator.ledger.caches_created == 1
    assert emulator.ledger.cache_tokens_created == total


async def test_default_ttl_is_one_hour(aio: genai.client.AsyncClient) -> None:
    cache = await aio.caches.create(model=MODEL, config=cache_config())
    assert cache.expire_time == dt.datetime.fromtimestamp(START + 3600, dt.UTC)


async def test_get_update_delete(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator, clock: FakeWallClock
) -> None:
    cache = await aio.caches.create(model=MODEL, config=cache_config(ttl="60s"))
    assert cache.name is not None
    fetched = await aio.caches.get(name=cache.name.removeprefix("cachedContents/"))
    assert fetched == cache

    clock.advance(10)
    updated = await aio.caches.update(
        name=cache.name, config=types.UpdateCachedContentConfig(ttl="600s")
    )
    assert updated.update_time == dt.datetime.fromtimestamp(START + 10, dt.UTC)
    assert updated.expire_time == dt.datetime.fromtimestamp(START + 610, dt.UTC)
    assert updated.create_time == cache.create_time

    target = dt.datetime(2030, 1, 1, 12, 0, 0, 250000, tzinfo=dt.UTC)
    updated = await aio.caches.update(
        name=cache.name, config=types.UpdateCachedContentConfig(expire_time=target)
    )
    assert updated.expire_time == target

    await aio.caches.delete(name=cache.name)
    with pytest.raises(errors.ClientError) as caught:
        await aio.caches.get(name=cache.name)
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")
    assert caught.value.message == NOT_FOUND
    with pytest.raises(errors.ClientError, match="PERMISSION_DENIED"):
        await aio.caches.delete(name=cache.name)
    ledger = emulator.ledger
    assert (ledger.caches_created, ledger.caches_updated, ledger.caches_deleted) == (1, 2, 1)


async def test_list_pages_one_by_one(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    names = []
    for tag in ("a", "b", "c"):
        cache = await aio.caches.create(model=MODEL, config=cache_config(display_name=tag))
        names.append(cache.name)
    pager = await aio.caches.list(config=types.ListCachedContentsConfig(page_size=1))
    assert pager.page_size == 1
    seen = [cache.display_name async for cache in pager]
    assert seen == ["a", "b", "c"]
    assert emulator.ledger.caches_listed == 3
    queries = [r.query for r in emulator.ledger.requests if r.method == "GET"]
    assert queries[0] == (("pageSize", "1"),)
    assert queries[1][0] == ("pageSize", "1")
    assert queries[1][1][0] == "pageToken"

    whole = await aio.caches.list(config=types.ListCachedContentsConfig(page_size=5000))
    assert [c.name async for c in whole] == names


def test_list_wire_format(
    http: httpx2.Client, emulator: GeminiEmulator, sync_client: genai.Client
) -> None:
    base = f"{emulator.base_url}/v1/cachedContents"
    assert http.get(base).json() == {}
    sync_client.caches.create(model=MODEL, config=cache_config())
    sync_client.caches.create(model=MODEL, config=cache_config())
    first = http.get(base, params={"pageSize": "1"}).json()
    assert len(first["cachedContents"]) == 1
    assert first["nextPageToken"]
    last = http.get(base, params={"pageSize": "1", "pageToken": first["nextPageToken"]}).json()
    assert len(last["cachedContents"]) == 1
    assert "nextPageToken" not in last
    bad = http.get(base, params={"pageToken": "garbage!"})
    assert bad.status_code == 400
    assert bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert [c.display_name for c in sync_client.caches.list()] == [None, None]


async def test_too_small(aio: genai.client.AsyncClient, emulator: GeminiEmulator) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await aio.caches.create(model=MODEL, config=cache_config(tokens=896))
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert caught.value.message == (
        "Cached content is too small. total_token_count=896, min_total_token_count=1024"
    )
    assert emulator.ledger.caches_created == 0


async def test_min_tokens_per_model(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    emulator = start_emulator(min_cache_tokens={"gemini-2.5-pro": 4096, MODEL: 10})
    aio = connect(emulator).aio
    await aio.caches.create(model=MODEL, config=cache_config(tokens=10))
    with pytest.raises(errors.ClientError, match="min_total_token_count=4096"):
        await aio.caches.create(model="gemini-2.5-pro", config=cache_config(tokens=2000))


@pytest.mark.parametrize("style", list(ExpiryStyle))
async def test_expiry_on_the_fake_clock(
    style: ExpiryStyle,
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    clock: FakeWallClock,
) -> None:
    emulator = start_emulator(clock=clock.time, expiry_style=style)
    aio = connect(emulator).aio
    cache = await aio.caches.create(model=MODEL, config=cache_config(ttl="60s"))
    assert cache.name is not None
    clock.advance(59.9)
    await aio.caches.get(name=cache.name)
    clock.advance(0.1)
    with pytest.raises(errors.ClientError) as caught:
        await aio.models.generate_content(
            model=MODEL, contents="q", config=types.GenerateContentConfig(cached_content=cache.name)
        )
    cache_id = cache.name.removeprefix("cachedContents/")
    if style is ExpiryStyle.GEMINI:
        expected = (403, "PERMISSION_DENIED", NOT_FOUND)
    else:
        expected = (400, "INVALID_ARGUMENT", f"Cache content {cache_id} is expired.")
    assert (caught.value.code, caught.value.status, caught.value.message) == expected
    assert [c async for c in await aio.caches.list()] == []


async def test_expire_all_and_server_side_delete(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    one = await aio.caches.create(model=MODEL, config=cache_config())
    two = await aio.caches.create(model=MODEL, config=cache_config())
    assert one.name is not None
    assert two.name is not None
    assert emulator.delete_cache(one.name) is True
    assert emulator.delete_cache(one.name) is False
    with pytest.raises(errors.ClientError, match="PERMISSION_DENIED"):
        await aio.caches.get(name=one.name)
    emulator.expire_all_caches()
    with pytest.raises(errors.ClientError, match="PERMISSION_DENIED"):
        await aio.caches.get(name=two.name)


async def test_bad_expiration_arguments(aio: genai.client.AsyncClient) -> None:
    with pytest.raises(errors.ClientError, match="Only one of ttl or expire_time"):
        await aio.caches.create(
            model=MODEL,
            config=cache_config(ttl="60s", expire_time=dt.datetime(2030, 1, 1, tzinfo=dt.UTC)),
        )
    with pytest.raises(errors.ClientError, match="Illegal timestamp format"):
        await aio.caches.create(
            model=MODEL,
            config=cache_config(expire_time=dt.datetime(2030, 1, 1)),  # naive
        )
    with pytest.raises(errors.ClientError, match="Duration"):
        await aio.caches.create(model=MODEL, config=cache_config(ttl="ten minutes"))
    with pytest.raises(errors.ClientError, match="in the future"):
        await aio.caches.create(
            model=MODEL, config=cache_config(expire_time=dt.datetime(2001, 1, 1, tzinfo=dt.UTC))
        )


def test_patch_with_update_mask_and_timestamp_spellings(
    http: httpx2.Client, emulator: GeminiEmulator, sync_client: genai.Client
) -> None:
    cache = sync_client.caches.create(model=MODEL, config=cache_config())
    url = f"{emulator.base_url}/v1beta/{cache.name}"
    for stamp, expected in [
        ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00.000000Z"),
        ("2030-01-01T00:00:00.123456789Z", "2030-01-01T00:00:00.123457Z"),
        ("2030-01-01T02:00:00.5+02:00", "2030-01-01T00:00:00.500000Z"),
    ]:
        answer = http.patch(url, params={"updateMask": "expireTime"}, json={"expireTime": stamp})
        assert answer.status_code == 200, answer.text
        assert answer.json()["expireTime"] == expected
    refused = http.patch(url, params={"updateMask": "displayName"}, json={"displayName": "x"})
    assert refused.status_code == 400
    assert http.delete(url).json() == {}


def test_sync_client_and_v1_default_path(emulator: GeminiEmulator) -> None:
    client = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(base_url=emulator.base_url + "/prefix"),
    )
    try:
        assert list(client.caches.list()) == []
    finally:
        client.close()
    assert emulator.ledger.requests[-1].path == "/prefix/v1/cachedContents"
