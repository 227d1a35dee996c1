"""Every fault kind as the real SDK sees it, on both async transports."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import aiohttp
import httpx2
import pytest
from google import genai
from google.genai import errors, types

from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator, count_tokens
from strategies.gemini.emulator._tokens import MEDIA_PART_TOKENS

from .conftest import MODEL, doc


async def generate(
    aio: genai.client.AsyncClient, **config: object
) -> types.GenerateContentResponse:
    return await aio.models.generate_content(
        model=MODEL,
        contents="q",
        config=types.GenerateContentConfig(**config),  # type: ignore[arg-type]
    )


def retry_delay(error: errors.APIError) -> str:
    details = error.details["error"]["details"]
    return str(next(d["retryDelay"] for d in details if d["@type"].endswith("RetryInfo")))


async def test_rate_limit(aio: genai.client.AsyncClient, emulator: GeminiEmulator) -> None:
    emulator.inject(Fault(kind=FaultKind.RATE_LIMIT, times=1, retry_delay=1.5))
    with pytest.raises(errors.ClientError) as caught:
        await generate(aio)
    error = caught.value
    assert (error.code, error.status) == (429, "RESOURCE_EXHAUSTED")
    assert retry_delay(error) == "1.5s"
    types_in_order = [d["@type"].rsplit(".", 1)[-1] for d in error.details["error"]["details"]]
    assert types_in_order == ["QuotaFailure", "Help", "RetryInfo"]
    assert (await generate(aio)).text  # times=1: the next call goes through
    ledger = emulator.ledger
    assert ledger.faults_fired == 1
    assert ledger.generate_calls == 1
    assert ledger.requests[0].status == 429
    assert ledger.requests[0].fault is FaultKind.RATE_LIMIT


async def test_rate_limit_retry_after_header(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    emulator.inject(Fault(kind=FaultKind.RATE_LIMIT, retry_delay=17, retry_after_header=True))
    with pytest.raises(errors.ClientError) as caught:
        await generate(aio)
    assert retry_delay(caught.value) == "17s"
    assert caught.value.response.headers["Retry-After"] == "17"


@pytest.mark.parametrize(
    ("kind", "code", "status"),
    [
        (FaultKind.INTERNAL, 500, "INTERNAL"),
        (FaultKind.UNAVAILABLE, 503, "UNAVAILABLE"),
        (FaultKind.BAD_GATEWAY, 502, "Bad Gateway"),
    ],
)
async def test_server_errors(
    kind: FaultKind,
    code: int,
    status: str,
    transport: str,
    aio: genai.client.AsyncClient,
    emulator: GeminiEmulator,
) -> None:
    emulator.inject(Fault(kind=kind))
    with pytest.raises(errors.ServerError) as caught:
        await generate(aio)
    assert caught.value.code == code
    if kind is FaultKind.BAD_GATEWAY:
        assert caught.value.message is not None
        assert "<html" in caught.value.message
    # For the non-JSON 502 both transports fall back to the HTTP reason phrase.
    assert caught.value.status == status
    assert emulator.ledger.generate_calls == 0


@pytest.mark.parametrize("kind", [FaultKind.TRUNCATED_JSON, FaultKind.NOT_JSON])
async def test_corrupt_200_bodies_raise_json_errors(
    kind: FaultKind, aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    emulator.inject(Fault(kind=kind, at={1}))
    # On a 200 the SDK parses the body as JSON whatever the content type says, on every
    # transport; the failure is a bare JSONDecodeError, not an APIError.
    with pytest.raises(json.JSONDecodeError):
        await generate(aio)
    assert (await generate(aio)).text
    ledger = emulator.ledger
    assert ledger.generate_calls == 1  # the corrupt answer billed nothing
    assert ledger.requests[0].status == 200


async def test_slow_and_client_timeout(
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
) -> None:
    emulator = start_emulator()
    emulator.inject(Fault(kind=FaultKind.SLOW, delay=0.2, times=1))
    aio = connect(emulator).aio
    began = time.monotonic()
    assert (await generate(aio)).text
    assert time.monotonic() - began >= 0.2
    emulator.inject(Fault(kind=FaultKind.SLOW, delay=5, times=1))
    impatient = connect(emulator, timeout_ms=200).aio
    with pytest.raises((httpx2.TimeoutException, asyncio.TimeoutError)):
        await generate(impatient)


async def test_hang_until_client_gives_up(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    emulator.inject(Fault(kind=FaultKind.HANG, times=1))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await generate(aio)
    assert (await generate(aio)).text
    for _ in range(50):
        if len(emulator.ledger.requests) == 2:
            break
        await asyncio.sleep(0.02)
    hung = emulator.ledger.requests[0]
    assert hung.fault is FaultKind.HANG
    assert hung.status is None


async def test_hang_does_not_block_shutdown(
    http: httpx2.Client,
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
) -> None:
    emulator = start_emulator()
    emulator.inject(Fault(kind=FaultKind.HANG))
    pending = asyncio.ensure_future(generate(connect(emulator).aio))
    await asyncio.sleep(0.1)
    began = time.monotonic()
    await asyncio.to_thread(emulator.stop)
    assert time.monotonic() - began < 1.0
    with pytest.raises((httpx2.RemoteProtocolError, aiohttp.ServerDisconnectedError)):
        await pending
    emulator.stop()  # idempotent


async def test_cache_dropped(aio: genai.client.AsyncClient, emulator: GeminiEmulator) -> None:
    cache = await aio.caches.create(
        model=MODEL, config=types.CreateCachedContentConfig(contents=doc(1100))
    )
    emulator.inject(Fault(kind=FaultKind.CACHE_DROPPED, times=1))
    with pytest.raises(errors.ClientError) as caught:
        await generate(aio, cached_content=cache.name)
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")
    assert emulator.cache_names() == ()


async def test_blocked_prompt(aio: genai.client.AsyncClient, emulator: GeminiEmulator) -> None:
    emulator.inject(Fault(kind=FaultKind.BLOCKED_PROMPT))
    answer = await generate(aio)
    assert answer.text is None
    assert answer.candidates is None
    assert answer.prompt_feedback is not None
    assert answer.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert answer.prompt_feedback.safety_ratings
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.prompt_token_count == 1
    assert emulator.ledger.prompt_tokens == 1


async def test_safety_stop(aio: genai.client.AsyncClient, emulator: GeminiEmulator) -> None:
    emulator.inject(Fault(kind=FaultKind.SAFETY_STOP))
    answer = await generate(aio)
    assert answer.text is None
    assert answer.candidates is not None
    candidate = answer.candidates[0]
    assert candidate.finish_reason == types.FinishReason.SAFETY
    assert candidate.content is None
    assert candidate.safety_ratings is not None
    assert types.HarmProbability.HIGH in {r.probability for r in candidate.safety_ratings}


async def test_safety_stop_by_severity(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    emulator.inject(Fault(kind=FaultKind.SAFETY_STOP_BY_SEVERITY))
    answer = await generate(aio)
    assert answer.text is None
    assert answer.candidates is not None
    candidate = answer.candidates[0]
    assert candidate.finish_reason == types.FinishReason.SAFETY
    assert candidate.safety_ratings is not None
    (flagged,) = [r for r in candidate.safety_ratings if r.blocked]
    assert flagged.category == types.HarmCategory.HARM_CATEGORY_DANGEROUS_CONTENT
    assert flagged.severity == types.HarmSeverity.HARM_SEVERITY_HIGH
    assert flagged.probability is None


async def test_usage_details_only(aio: genai.client.AsyncClient, emulator: GeminiEmulator) -> None:
    image = types.Part.from_bytes(data=b"\x89PNG\r\n\x1a\n", mime_type="image/png")
    cache = await aio.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(
            contents=[types.UserContent(parts=[types.Part(text=doc(1240)), image, image])]
        ),
    )
    emulator.inject(Fault(kind=FaultKind.USAGE_DETAILS_ONLY))
    answer = await generate(aio, cached_content=cache.name, temperature=0.0)
    usage = answer.usage_metadata
    assert usage is not None
    # The counts are absent: only their breakdowns by modality tell them.
    assert usage.prompt_token_count is None
    assert usage.candidates_token_count is None
    assert usage.cached_content_token_count is None
    assert answer.text is not None
    by_modality = {
        name: {d.modality: d.token_count for d in details or ()}
        for name, details in (
            ("prompt", usage.prompt_tokens_details),
            ("cache", usage.cache_tokens_details),
            ("candidates", usage.candidates_tokens_details),
        )
    }
    image_tokens = 2 * MEDIA_PART_TOKENS
    assert by_modality == {
        "prompt": {types.MediaModality.TEXT: 1241, types.MediaModality.IMAGE: image_tokens},
        "cache": {types.MediaModality.TEXT: 1240, types.MediaModality.IMAGE: image_tokens},
        "candidates": {types.MediaModality.TEXT: count_tokens(answer.text)},
    }
    assert usage.total_token_count == 1241 + image_tokens + count_tokens(answer.text)
    led = emulator.ledger
    assert (led.prompt_tokens, led.cached_tokens) == (1241 + image_tokens, 1240 + image_tokens)


async def test_max_tokens_fault(aio: genai.client.AsyncClient, emulator: GeminiEmulator) -> None:
    full = await generate(aio)
    emulator.inject(Fault(kind=FaultKind.MAX_TOKENS))
    cut = await generate(aio)
    assert cut.candidates is not None
    assert cut.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert full.text is not None
    assert cut.text is not None
    assert full.text.startswith(cut.text)
    assert len(cut.text) < len(full.text)


async def test_unknown_enum(aio: genai.client.AsyncClient, emulator: GeminiEmulator) -> None:
    emulator.inject(Fault(kind=FaultKind.UNKNOWN_ENUM))
    with pytest.warns(UserWarning, match="BRAND_NEW_REASON is not a valid FinishReason"):
        answer = await generate(aio)
    assert answer.candidates is not None
    assert answer.candidates[0].finish_reason == "BRAND_NEW_REASON"
    assert answer.text


async def test_no_candidates(aio: genai.client.AsyncClient, emulator: GeminiEmulator) -> None:
    emulator.inject(Fault(kind=FaultKind.NO_CANDIDATES))
    answer = await generate(aio)
    assert answer.candidates is None
    assert answer.text is None
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.prompt_token_count == 1


async def test_schedule_rate_times_and_routes(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, at={2, 4}))
    emulator.inject(Fault(kind=FaultKind.INTERNAL, route="cachedContents", times=1))
    outcomes = []
    for _ in range(5):
        try:
            await generate(aio)
            outcomes.append(200)
        except errors.APIError as error:
            outcomes.append(error.code)
    assert outcomes == [200, 503, 200, 503, 200]
    with pytest.raises(errors.ServerError):
        await aio.caches.list()
    assert [c async for c in await aio.caches.list()] == []
    emulator.clear_faults()
    assert (await generate(aio)).text


def fire_pattern(http: httpx2.Client, seed: int) -> list[int]:
    with GeminiEmulator(seed=seed) as emulator:
        emulator.inject(Fault(kind=FaultKind.INTERNAL, rate=0.5, route="*"))
        url = f"{emulator.base_url}/v1beta/cachedContents"
        return [http.get(url).status_code for _ in range(30)]


def test_rate_is_deterministic_per_seed(http: httpx2.Client) -> None:
    first = fire_pattern(http, 11)
    assert first == fire_pattern(http, 11)
    assert 5 < first.count(500) < 25
    assert first != fire_pattern(http, 12)


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="rate"):
        Fault(kind=FaultKind.INTERNAL, rate=1.5)
    with pytest.raises(ValueError, match="route"):
        Fault(kind=FaultKind.INTERNAL, route="models")
    assert Fault(kind=FaultKind.INTERNAL, at=[1, 3]).at == frozenset({1, 3})
