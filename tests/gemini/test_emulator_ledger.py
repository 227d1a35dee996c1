"""The ledger agrees with what the SDK saw, and never holds a secret."""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs
import httpx2
import pytest
from google import genai
from google.genai import errors, types

from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator, Ledger, make_client

from .conftest import MODEL, doc

SECRET = "sk-very-secret-key-123"


async def test_totals_equal_the_usage_the_sdk_returned(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    emulator = start_emulator(seed=5, api_key=SECRET)
    aio = connect(emulator, api_key=SECRET).aio
    cache = await aio.caches.create(
        model=MODEL, config=types.CreateCachedContentConfig(contents=doc(1300))
    )
    emulator.inject(Fault(kind=FaultKind.TRUNCATED_JSON, at={3}))
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, at={5}))
    emulator.inject(Fault(kind=FaultKind.BLOCKED_PROMPT, at={6}))
    usages: list[types.GenerateContentResponseUsageMetadata] = []
    for number in range(8):
        config = types.GenerateContentConfig(
            cached_content=cache.name if number % 2 else None,
            thinking_config=types.ThinkingConfig(thinking_budget=100) if number == 7 else None,
        )
        try:
            answer = await aio.models.generate_content(
                model=MODEL, contents=f"question {number}", config=config
            )
        except (errors.APIError, json.JSONDecodeError):
            continue
        assert answer.usage_metadata is not None
        usages.append(answer.usage_metadata)

    def total(field: str) -> int:
        return sum(getattr(usage, field) or 0 for usage in usages)

    ledger = emulator.ledger
    assert ledger.generate_calls == len(usages) == 6
    assert ledger.prompt_tokens == total("prompt_token_count")
    assert ledger.cached_tokens == total("cached_content_token_count") == 4 * 1300
    assert ledger.candidates_tokens == total("candidates_token_count")
    assert ledger.thoughts_tokens == total("thoughts_token_count") > 0
    assert ledger.fresh_prompt_tokens == ledger.prompt_tokens - ledger.cached_tokens
    assert ledger.cache_tokens_created == 1300
    assert ledger.faults_fired == 3
    assert [r.status for r in ledger.requests] == [200, 200, 200, 200, 200, 503, 200, 200, 200]
    assert SECRET not in repr(ledger)
    assert all("x-goog-api-key" in r.headers for r in ledger.requests)


def test_ledger_is_a_frozen_snapshot(emulator: GeminiEmulator, http: httpx2.Client) -> None:
    before = emulator.ledger
    http.get(f"{emulator.base_url}/v1beta/cachedContents", params={"key": SECRET})
    after = emulator.ledger
    assert before.requests == ()
    assert after.caches_listed == 1
    assert after.requests[0].query == (("key", "<redacted>"),)
    assert SECRET not in repr(after)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        after.caches_listed = 3  # type: ignore[misc]
    assert not hasattr(after, "__dict__")  # slotted
    emulator.reset_ledger()
    assert emulator.ledger == Ledger()


def test_api_key_checks(start_emulator: Callable[..., GeminiEmulator], http: httpx2.Client) -> None:
    emulator = start_emulator(api_key=SECRET)
    url = f"{emulator.base_url}/v1beta/cachedContents"
    missing = httpx2.get(url)
    assert missing.status_code == 403
    assert missing.json()["error"]["status"] == "PERMISSION_DENIED"
    assert missing.json()["error"]["message"].startswith("Method doesn't allow unregistered")
    client = make_client(emulator.base_url, api_key="wrong")
    try:
        with pytest.raises(errors.ClientError) as caught:
            client.caches.list()
    finally:
        client.close()
    assert (caught.value.code, caught.value.status) == (400, "INVALID_ARGUMENT")
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    assert caught.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert http.get(url, headers={"x-goog-api-key": SECRET}).status_code == 200
