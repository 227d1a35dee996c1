"""Vertex AI: the real SDK in Vertex mode against the emulator's Vertex mode.

The client is ``genai.Client(vertexai=True, ...)`` with service-account credentials
whose ``token_uri`` is the emulator's own ``/token``: the SDK signs a JWT, trades it
for a bearer token there, and no request leaves loopback.  The runs use the same
strategy and shared cache as the Developer API's, and must survive what Vertex does
to a cache: a deletion on the server (404 ``Not found: cached content metadata for
N.``), an expiry (400 ``Cache content N is expired.``) and content too small to
cache (400 ``The cached content is of N tokens. ...``).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import errors, types
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache, classify
from strategies.gemini._errors import cache_gone, cache_too_small, redact
from strategies.gemini.emulator import (
    Api,
    EmulatorQuota,
    Fault,
    FaultKind,
    GeminiEmulator,
    credentials_info,
    make_vertex_client,
)
from strategies.gemini.vertex import VertexSection, connect_vertex

from .conftest import MODEL, Book, cached_runner, doc, items

SYSTEM = "You are a meticulous librarian; answer with the book's record. " + doc(1500, "shelf")
PROJECT = "books-project"
LOCATION = "europe-west4"


def api_error(code: int, message: str, status: str | None = None) -> errors.APIError:
    """The SDK's own exception for an error body, as it raises it for a response."""
    body = {"error": {"code": code, "message": message, "status": status}}
    return errors.ClientError(code, body)


# -- classification: status first, then which request named the cache, wording last -------

VERTEX_CACHE_GONE = [
    # Deleted (or collected after expiry): googleapis/python-genai#509, Recidiviz, go-steer.
    (404, "Not found: cached content metadata for 7352260532100923392.", "NOT_FOUND"),
    (404, "Not found: cached content metadata for 123.", "NOT_FOUND"),
    # The get / update shape (go-steer/core-models).
    (404, "Cached content 123 is not found.", "NOT_FOUND"),
    # Expired but not yet deleted: clawvisor/clawvisor#360, go-steer/core-models.
    (400, "Cache content 7016131366404227072 is expired.", "INVALID_ARGUMENT"),
    # Between expiry and deletion (Recidiviz/recidiviz-data).
    (400, "Invalid resource state for cache content 123.", "INVALID_ARGUMENT"),
]


@pytest.mark.parametrize(("code", "message", "status"), VERTEX_CACHE_GONE)
def test_vertex_dead_cache_wordings_are_resource_lost(code: int, message: str, status: str) -> None:
    exc = api_error(code, message, status)
    assert cache_gone(exc)
    outcome = classify(exc, resource="gemini_cache")
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.RESOURCE_LOST
    assert outcome.resource == "gemini_cache"


CACHE_IDS = st.integers(1, 10**19 - 1).map(str)


@given(CACHE_IDS, st.booleans())
def test_every_dead_cache_of_vertex_is_lost_whatever_its_id(cache_id: str, named: bool) -> None:
    for code, message, status in (
        (404, f"Not found: cached content metadata for {cache_id}.", "NOT_FOUND"),
        (404, f"Cached content {cache_id} is not found.", "NOT_FOUND"),
        (400, f"Cache content {cache_id} is expired.", "INVALID_ARGUMENT"),
    ):
        assert cache_gone(api_error(code, message, status), named_cache=named)


@given(st.text(min_size=1, max_size=40).filter(lambda t: "\n" not in t), st.booleans())
def test_a_404_naming_a_missing_model_is_never_the_cache(name: str, named: bool) -> None:
    for message in (
        f"Publisher Model `{name}` was not found or your project does not have access to it.",
        f"Publisher Model `{name}` not found.",
        f"models/{name} is not found for API version v1beta1",
    ):
        assert not cache_gone(api_error(404, message, "NOT_FOUND"), named_cache=named)


def test_a_404_is_the_cache_only_when_the_request_named_one() -> None:
    # A wording nobody has catalogued: the status and the request decide.
    exc = api_error(404, "Requested entity was not found.", "NOT_FOUND")
    assert not cache_gone(exc)
    assert cache_gone(exc, named_cache=True)


@pytest.mark.parametrize(
    "message",
    [
        "Publisher Model `projects/p/locations/us-central1/publishers/google/models/gemini-9` "
        "was not found or your project does not have access to it.",
        "models/gemini-pro is not found for API version v1beta, or is not supported for "
        "generateContent.",
        # The older wording (google/adk-python#833, google-gemini/gemini-cli#1053).
        "Publisher Model `projects/ID/locations/asia-south1/publishers/google/models/"
        "gemini-2.0-flash` not found.",
    ],
)
def test_a_missing_model_is_never_the_cache(message: str) -> None:
    exc = api_error(404, message, "NOT_FOUND")
    assert not cache_gone(exc, named_cache=True)
    outcome = classify(exc)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.STOP_RUN


def test_other_400s_and_403s_are_not_the_cache() -> None:
    assert not cache_gone(api_error(400, "Request contains an invalid argument."), named_cache=True)
    assert not cache_gone(api_error(403, "Permission denied."), named_cache=True)
    too_small = api_error(
        400,
        "The cached content is of 94 tokens. The minimum token count to start caching is 1024.",
        "INVALID_ARGUMENT",
    )
    assert not cache_gone(too_small, named_cache=True)


@given(st.integers(0, 10**7), st.integers(1, 10**7))
def test_too_small_is_read_in_both_apis_words(tokens: int, minimum: int) -> None:
    vertex = (
        f"The cached content is of {tokens} tokens. "
        f"The minimum token count to start caching is {minimum}."
    )
    developer = (
        f"Cached content is too small. total_token_count={tokens}, min_total_token_count={minimum}"
    )
    for message in (vertex, developer):
        assert cache_too_small(api_error(400, message, "INVALID_ARGUMENT")) == (tokens, minimum)
        # The same words on another status are something else.
        assert cache_too_small(api_error(403, message, "PERMISSION_DENIED")) is None


def test_too_small_is_not_any_400() -> None:
    assert cache_too_small(api_error(400, "Request contains an invalid argument.")) is None
    assert cache_too_small(api_error(400, "Cached content is too small.")) == (None, None)


@given(
    st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=12
    )
)
def test_bearer_tokens_are_masked(token: str) -> None:
    for text in (
        f"Authorization: Bearer {token}",
        f"{{'authorization': 'Bearer {token}'}}",
        f"token ya29.{token} refused",
    ):
        assert token not in redact(text)


# -- the emulator's Vertex mode, through the real SDK ------------------------------------


@pytest.fixture
async def vertex_client() -> AsyncIterator[Callable[..., genai.Client]]:
    clients: list[genai.Client] = []

    def build(emulator: GeminiEmulator, **options: Any) -> genai.Client:
        client = make_vertex_client(
            emulator.base_url, project=PROJECT, location=LOCATION, **options
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aio.aclose()
        client.close()


@pytest.fixture
def vertex_emulator(
    start_emulator: Callable[..., GeminiEmulator], virtual_clock: VirtualClock
) -> GeminiEmulator:
    return start_emulator(
        seed=5, clock=virtual_clock.time, invalid_rate=0.0, invalid_rate_slope=0.0, api=Api.VERTEX
    )


async def test_vertex_paths_names_and_tokens(
    vertex_emulator: GeminiEmulator,
    vertex_client: Callable[..., genai.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An API key in the environment is never sent: the explicit credentials win.
    monkeypatch.setenv("GOOGLE_API_KEY", "AIzaSyD-not-a-real-key-0000000000000")
    client = vertex_client(vertex_emulator)
    created = await client.aio.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            display_name="shelf", system_instruction=SYSTEM, ttl="600s"
        ),
    )
    assert created.name is not None
    assert created.name.startswith(f"projects/123456789012/locations/{LOCATION}/cachedContents/")
    assert created.name.rpartition("/")[2].isdigit()
    assert created.model == (
        f"projects/123456789012/locations/{LOCATION}/publishers/google/models/{MODEL}"
    )
    answer = await client.aio.models.generate_content(
        model=MODEL,
        contents="Catalogue book number 1.",
        config=types.GenerateContentConfig(cached_content=created.name),
    )
    assert answer.usage_metadata is not None
    assert created.usage_metadata is not None
    cached = answer.usage_metadata.cached_content_token_count
    assert cached == created.usage_metadata.total_token_count
    assert answer.usage_metadata.traffic_type is types.TrafficType.ON_DEMAND
    assert answer.create_time is not None
    listed = [c.name async for c in await client.aio.caches.list()]
    assert listed == [created.name]
    requests = vertex_emulator.ledger.requests
    assert [(r.method, r.path) for r in requests][:2] == [
        ("POST", "/token"),
        ("POST", f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/cachedContents"),
    ]
    assert requests[2].path == (
        f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/"
        f"{MODEL}:generateContent"
    )
    assert vertex_emulator.tokens_issued == 1
    assert all("authorization" in r.headers for r in requests[1:])
    assert not any("x-goog-api-key" in r.headers for r in requests)


async def test_vertex_wordings_of_a_dead_and_a_small_cache(
    vertex_emulator: GeminiEmulator, vertex_client: Callable[..., genai.Client]
) -> None:
    client = vertex_client(vertex_emulator)
    created = await client.aio.caches.create(
        model=MODEL, config=types.CreateCachedContentConfig(system_instruction=SYSTEM)
    )
    assert created.name is not None
    cache_id = created.name.rpartition("/")[2]
    assert vertex_emulator.delete_cache(created.name)
    with pytest.raises(errors.ClientError) as generating:
        await client.aio.models.generate_content(
            model=MODEL,
            contents="q",
            config=types.GenerateContentConfig(cached_content=created.name),
        )
    assert (generating.value.code, generating.value.status, generating.value.message) == (
        404,
        "NOT_FOUND",
        f"Not found: cached content metadata for {cache_id}.",
    )
    with pytest.raises(errors.ClientError) as updating:
        await client.aio.caches.update(
            name=created.name, config=types.UpdateCachedContentConfig(ttl="60s")
        )
    assert (updating.value.code, updating.value.message) == (
        404,
        f"Cached content {cache_id} is not found.",
    )
    with pytest.raises(errors.ClientError) as small:
        await client.aio.caches.create(
            model=MODEL, config=types.CreateCachedContentConfig(system_instruction=doc(94))
        )
    assert (small.value.code, small.value.status, small.value.message) == (
        400,
        "INVALID_ARGUMENT",
        "The cached content is of 94 tokens. The minimum token count to start caching is 1024.",
    )


def test_vertex_refuses_a_request_without_a_bearer_token(
    vertex_emulator: GeminiEmulator,
) -> None:
    url = (
        f"{vertex_emulator.base_url}/v1beta1/projects/{PROJECT}/locations/{LOCATION}/cachedContents"
    )
    with httpx2.Client(timeout=5) as raw:
        keyed = raw.get(url, headers={"x-goog-api-key": "AIzaSyD-some-key"})
        bare = raw.get(url)
    assert keyed.status_code == bare.status_code == 401
    assert keyed.json()["error"]["message"].startswith("API keys are not supported by this API.")
    assert bare.json()["error"]["status"] == "UNAUTHENTICATED"


# -- runs: the same strategy and cache, on Vertex ----------------------------------------


def lost_attempts(batch: sr.BatchResult) -> list[tuple[str, sr.Attempt, sr.Attempt]]:
    """``(item, the lost attempt, the attempt after it)`` of every RESOURCE_LOST."""
    found = []
    for result in batch.results:
        attempts = list(result.attempts)
        for lost, after in itertools.pairwise(attempts):
            if lost.outcome is sr.OutcomeKind.RESOURCE_LOST:
                found.append((result.id, lost, after))
    return found


def generate_bodies_named_cache(emulator: GeminiEmulator) -> list[str | None]:
    return [
        r.cached_content for r in emulator.ledger.requests if r.path.endswith(":generateContent")
    ]


async def test_a_vertex_run_succeeds_on_one_cache(
    vertex_emulator: GeminiEmulator,
    vertex_client: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    client = vertex_client(vertex_emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, on_close="delete")
    batch = await cached_runner(client, cache, virtual_clock, model=Book).run(items(12))
    assert batch.counts[sr.ItemStatus.SUCCEEDED] == 12
    assert cache.stats.created == 1
    assert cache.stats.deleted == 1
    named = generate_bodies_named_cache(vertex_emulator)
    assert len(named) >= 12
    assert len(set(named)) == 1
    assert named[0] is not None
    assert vertex_emulator.cache_names() == ()


async def test_a_vertex_run_survives_a_server_side_deletion(
    vertex_emulator: GeminiEmulator,
    vertex_client: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    # The 5th generateContent finds its cache deleted: 404 "Not found: cached content
    # metadata for N."  Today's rules called that FATAL and the item failed for good.
    vertex_emulator.inject(Fault(kind=FaultKind.CACHE_DROPPED, at=frozenset({5})))
    client = vertex_client(vertex_emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    batch = await cached_runner(client, cache, virtual_clock, model=Book).run(items(12))
    assert batch.counts[sr.ItemStatus.SUCCEEDED] == 12
    lost = lost_attempts(batch)
    assert len(lost) >= 1
    for _item, before, after in lost:
        assert "Not found: cached content metadata for" in (before.error or "")
        assert after.stage == before.stage  # renewed, then the same stage again
    assert cache.stats.lost == 1
    assert cache.stats.created == 2
    assert len(vertex_emulator.cache_names()) == 1


async def test_a_vertex_run_survives_an_expired_cache(
    vertex_emulator: GeminiEmulator,
    vertex_client: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    client = vertex_client(vertex_emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    runner = cached_runner(client, cache, virtual_clock, model=Book, concurrency=2)
    first = await runner.run(items(3, "early"))
    assert first.counts[sr.ItemStatus.SUCCEEDED] == 3
    # Vertex keeps an expired cache a while and answers 400 "Cache content N is expired.".
    vertex_emulator.expire_all_caches()
    second = await cached_runner(client, cache, virtual_clock, model=Book).run(items(6, "late"))
    assert second.counts[sr.ItemStatus.SUCCEEDED] == 6
    assert cache.stats.created == 2


async def test_a_vertex_run_sends_too_small_content_inline(
    vertex_emulator: GeminiEmulator,
    vertex_client: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    client = vertex_client(vertex_emulator)
    small = "Answer with the book's record."
    cache = GeminiContextCache(client, MODEL, system_instruction=small)
    batch = await cached_runner(client, cache, virtual_clock, model=Book).run(items(6))
    assert batch.counts[sr.ItemStatus.SUCCEEDED] == 6
    assert cache.stats.inline_fallbacks == 1
    assert cache.stats.created == 0
    assert set(generate_bodies_named_cache(vertex_emulator)) == {None}
    assert vertex_emulator.cache_names() == ()


# -- the section, and credentials found as the SDK finds them ------------------------------


@pytest.mark.parametrize(
    ("values", "path"),
    [
        ({"project": "p", "location": "us-central1"}, "project"),
        ({"project": "my-project", "location": "us central1"}, "location"),
        ({"project": "my-project", "location": "us-central1", "base_url": "ftp://x"}, "base_url"),
    ],
)
def test_the_section_refuses_what_vertex_cannot_take(values: dict[str, str], path: str) -> None:
    with pytest.raises(sr.PlanError) as refused:
        sr.parse_settings(VertexSection, values, "backend")
    assert refused.value.path == f"backend.{path}"


def test_a_key_in_the_section_never_shows_and_is_refused() -> None:
    from strategies.backend import JobInputs
    from strategies.gemini.vertex import BACKEND

    section = sr.parse_settings(VertexSection, {"api_key": "AIzaSyD-secret-key"}, "backend")
    assert "AIzaSyD-secret-key" not in repr(section)
    with pytest.raises(sr.PlanError) as refused:
        BACKEND.check(section, JobInputs(model=MODEL, output_schema={"type": "object"}))
    assert refused.value.path == "backend.api_key"
    assert "AIzaSyD-secret-key" not in str(refused.value)


async def test_credentials_from_the_environment_reach_only_loopback(
    vertex_emulator: GeminiEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from strategies.gemini.vertex import find_credentials

    adc = tmp_path / "adc.json"
    adc.write_text(json.dumps(credentials_info(vertex_emulator.base_url)), encoding="utf-8")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    client = connect_vertex(
        PROJECT, LOCATION, credentials=find_credentials()[0], base_url=vertex_emulator.base_url
    )
    try:
        pager = await client.aio.caches.list()
        assert [c async for c in pager] == []
    finally:
        await client.aio.aclose()
        client.close()
    assert [(r.method, r.path, r.status) for r in vertex_emulator.ledger.requests] == [
        ("POST", "/token", 200),
        ("GET", f"/v1beta1/projects/{PROJECT}/locations/{LOCATION}/cachedContents", 200),
    ]


async def test_vertex_answers_an_outrun_minute_quota_in_its_own_bare_words(
    start_emulator: Callable[..., GeminiEmulator],
    vertex_client: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    # Vertex's 429 for shared capacity has no QuotaFailure and no RetryInfo: it is waited
    # out (RATE_LIMITED), never a stop of the run.
    emulator = start_emulator(
        seed=5,
        clock=virtual_clock.time,
        invalid_rate=0.0,
        api=Api.VERTEX,
        quota=EmulatorQuota(rpm=1),
    )
    client = vertex_client(emulator)
    await client.aio.models.generate_content(model=MODEL, contents="Catalogue book number 1.")
    with pytest.raises(errors.ClientError) as refused:
        await client.aio.models.generate_content(model=MODEL, contents="Catalogue book number 2.")
    assert refused.value.code == 429
    assert refused.value.status == "RESOURCE_EXHAUSTED"
    assert refused.value.message == (
        "Resource exhausted. Please try again later. Please refer to "
        "https://cloud.google.com/vertex-ai/generative-ai/docs/error-code-429 for more details."
    )
    assert not refused.value.details.get("error", {}).get("details")
    outcome = classify(refused.value)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.RATE_LIMITED


async def test_vertex_keeps_the_day_quota_a_stop(
    start_emulator: Callable[..., GeminiEmulator],
    vertex_client: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_emulator(
        seed=5,
        clock=virtual_clock.time,
        invalid_rate=0.0,
        api=Api.VERTEX,
        quota=EmulatorQuota(rpd=1),
    )
    client = vertex_client(emulator)
    await client.aio.models.generate_content(model=MODEL, contents="Catalogue book number 1.")
    with pytest.raises(errors.ClientError) as refused:
        await client.aio.models.generate_content(model=MODEL, contents="Catalogue book number 2.")
    outcome = classify(refused.value)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.STOP_RUN
