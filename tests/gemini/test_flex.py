"""Service tiers on the Gemini side (issue 12): the ``service_tier`` param, Flex shedding and
latency in the emulator, and the tier every answer was billed at.

Everything runs the real SDK over HTTP against the emulator; the wire facts emulated
are in ``docs/reference/gemini.md`` ("Service tiers").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import errors, types
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiStrategy, classify
from strategies.gemini._errors import flex_shed
from strategies.gemini.emulator import (
    Fault,
    FaultKind,
    FlexSettings,
    GeminiEmulator,
    TierTotals,
)
from strategies.gemini.emulator._flex import MSG_SHED

from .conftest import MODEL, Book, Recorder, items, ladder_runner

ALL_SHED = FlexSettings(shed_rate=1.0)


def _config(tier: str | None) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(service_tier=tier)  # type: ignore[arg-type]


async def test_the_sdk_puts_the_tier_at_the_top_of_the_body_and_the_answer_names_it(
    start_emulator: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
) -> None:
    emulator = start_emulator(seed=1, invalid_rate=0.0)
    client, recorder = recording_client(emulator)
    for tier in ("flex", "priority", "standard", None):
        answer = await client.aio.models.generate_content(
            model=MODEL, contents="q", config=_config(tier)
        )
        assert answer.sdk_http_response is not None
        assert answer.sdk_http_response.headers is not None
        assert answer.sdk_http_response.headers["x-gemini-service-tier"] == (tier or "standard")
    # Top level, lower case, and absent when no tier is set (not inside generationConfig).
    assert [b.get("serviceTier") for b in recorder.bodies] == ["flex", "priority", "standard", None]
    assert all("serviceTier" not in b.get("generationConfig", {}) for b in recorder.bodies)
    records = [r for r in emulator.ledger.requests if r.path.endswith(":generateContent")]
    assert [r.service_tier for r in records] == ["flex", "priority", "standard", None]
    ledger = emulator.ledger
    assert ledger.tier("flex").generate_calls == 1
    assert ledger.tier("standard").generate_calls == 2
    assert ledger.tier("batch") == TierTotals(service_tier="batch")
    assert sum(t.prompt_tokens for t in ledger.tiers) == ledger.prompt_tokens


def test_the_body_names_the_tier_too_and_a_bad_spelling_is_refused(
    start_emulator: Callable[..., GeminiEmulator], http: httpx2.Client
) -> None:
    emulator = start_emulator(seed=1, invalid_rate=0.0)
    url = f"{emulator.base_url}/v1beta/models/{MODEL}:generateContent"
    question = {"contents": [{"role": "user", "parts": [{"text": "q"}]}]}
    # The REST examples spell the field service_tier: both spellings are read.
    answer = http.post(url, json={**question, "service_tier": "flex"})
    assert answer.status_code == 200
    assert answer.json()["usageMetadata"]["serviceTier"] == "flex"
    refused = http.post(url, json={**question, "serviceTier": "FLEX"})
    assert refused.status_code == 400
    assert refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "'service_tier'" in refused.json()["error"]["message"]
    assert emulator.ledger.generate_calls == 1


async def test_a_shed_flex_request_is_a_503_unavailable_and_is_not_billed(
    start_emulator: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
) -> None:
    emulator = start_emulator(seed=1, invalid_rate=0.0, flex=ALL_SHED)
    client, _ = recording_client(emulator)
    with pytest.raises(errors.ServerError) as caught:
        await client.aio.models.generate_content(model=MODEL, contents="q", config=_config("flex"))
    error = caught.value
    assert (error.code, error.status, error.message) == (503, "UNAVAILABLE", MSG_SHED)
    assert "details" not in error.details["error"]
    assert "Retry-After" not in error.response.headers
    # Standard and Priority are never shed, whatever the Flex rate.
    for tier in ("standard", "priority", None):
        await client.aio.models.generate_content(model=MODEL, contents="q", config=_config(tier))
    ledger = emulator.ledger
    assert ledger.flex_shed == 1
    assert [r.shed for r in ledger.requests] == [True, False, False, False]
    assert ledger.generate_calls == 3
    assert ledger.tier("flex").generate_calls == 0


def test_shedding_is_drawn_from_the_seed_and_a_retry_draws_anew(
    start_emulator: Callable[..., GeminiEmulator], http: httpx2.Client
) -> None:
    def pattern(seed: int) -> list[int]:
        emulator = start_emulator(seed=seed, invalid_rate=0.0, flex=FlexSettings(shed_rate=0.5))
        url = f"{emulator.base_url}/v1beta/models/{MODEL}:generateContent"
        body = {"contents": [{"parts": [{"text": "the same question"}]}], "serviceTier": "flex"}
        return [http.post(url, json=body).status_code for _ in range(40)]

    first = pattern(3)
    assert first == pattern(3)
    assert first != pattern(4)
    # The same request, sent again, is not condemned to the same answer.
    assert {200, 503} == set(first)
    assert 8 <= first.count(503) <= 32


async def test_flex_latency_is_added_to_flex_requests_only(
    start_emulator: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
) -> None:
    emulator = start_emulator(seed=1, invalid_rate=0.0, flex=FlexSettings(latency=0.3))
    client, _ = recording_client(emulator)

    async def took(tier: str | None) -> float:
        started = time.monotonic()
        await client.aio.models.generate_content(model=MODEL, contents="q", config=_config(tier))
        return time.monotonic() - started

    assert await took("flex") >= 0.3
    assert await took("standard") < 0.3


def _plan(tier: str | None, **stage: Any) -> sr.Plan:
    params: dict[str, Any] = {"temperature": 0.0}
    if tier is not None:
        params["service_tier"] = tier
    return sr.Plan(stages=[sr.Stage("only", "full", params, **stage)], max_prompts=3)


async def test_a_shed_is_shed_only_for_a_flex_request(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    """The same 503 is SHED on flex and TRANSIENT (retried, counted) on standard."""
    emulator = start_on_clock(seed=2)
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, at=frozenset({1, 3})))
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book)
    results = {}
    for tier in ("flex", "standard"):
        runner = ladder_runner(strategy, virtual_clock, plan=_plan(tier))
        batch = await runner.run(items(1, prefix=tier))
        results[tier] = batch.results[0]
    flex, standard = results["flex"], results["standard"]
    assert [a.outcome for a in flex.attempts] == [sr.OutcomeKind.SHED, sr.OutcomeKind.SUCCEEDED]
    assert [a.outcome for a in standard.attempts] == [
        sr.OutcomeKind.TRANSIENT,
        sr.OutcomeKind.SUCCEEDED,
    ]
    # A shed is not billed: it spends no prompt; the TRANSIENT 503 does.
    assert flex.prompts == 1
    assert standard.prompts == 2
    # Each served answer says the tier it was billed at.
    assert flex.attempts[-1].meta.service_tier == "flex"
    assert standard.attempts[-1].meta.service_tier == "standard"


async def test_every_answer_says_the_tier_it_was_billed_at(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=5)
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book)
    for tier, billed in (("flex", "flex"), ("priority", "priority"), (None, "standard")):
        runner = ladder_runner(strategy, virtual_clock, plan=_plan(tier))
        batch = await runner.run(items(2, prefix=str(tier)))
        assert {a.meta.service_tier for r in batch.results for a in r.attempts} == {billed}
    assert emulator.ledger.tier("priority").generate_calls == 2


async def test_a_rate_limit_on_flex_stays_a_rate_limit(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    """A 429 naming the project's quota is not load shed: Flex shares the same limits."""
    emulator = start_on_clock(seed=2)
    emulator.inject(Fault(kind=FaultKind.RATE_LIMIT, times=1))
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book)
    runner = ladder_runner(strategy, virtual_clock, plan=_plan("flex"))
    result = (await runner.run(items(1))).results[0]
    assert [a.outcome for a in result.attempts] == [
        sr.OutcomeKind.RATE_LIMITED,
        sr.OutcomeKind.SUCCEEDED,
    ]


async def test_a_bad_tier_is_refused_with_its_path_before_any_request(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=1)
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book)
    for bad in ("FLEX", "batch", "cheap"):
        with pytest.raises(sr.PlanError) as caught:
            ladder_runner(strategy, virtual_clock, plan=_plan(bad))
        assert str(caught.value) == (
            "plan.stages[0].params.service_tier: expected one of flex, standard, priority, "
            f"got {bad!r}"
        )
    assert emulator.ledger.requests == ()


async def test_a_shed_carries_the_servers_advised_wait(
    start_emulator: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
) -> None:
    emulator = start_emulator(seed=1, invalid_rate=0.0)
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, times=1, retry_delay=4))
    client, _ = recording_client(emulator)
    with pytest.raises(errors.ServerError) as caught:
        await client.aio.models.generate_content(model=MODEL, contents="q", config=_config("flex"))
    shed = flex_shed(caught.value)
    assert isinstance(shed, sr.Shed)
    assert shed.retry_after == 4.0
    assert str(shed) == "503 UNAVAILABLE: The model is overloaded. Please try again later."


def _error(code: int, details: list[dict[str, Any]] | None = None) -> errors.APIError:
    error: dict[str, Any] = {"code": code, "message": "m", "status": "S"}
    if details is not None:
        error["details"] = details
    cls = errors.ClientError if code < 500 else errors.ServerError
    return cls(code, {"error": error})


_QUOTA = {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []}
_RETRY = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}


def test_a_bare_429_on_flex_is_a_shed_and_keeps_the_servers_delay() -> None:
    shed = flex_shed(_error(429, [_RETRY]))
    assert isinstance(shed, sr.Shed)
    assert shed.retry_after == 7.0
    assert flex_shed(_error(429, [_QUOTA, _RETRY])) is None
    assert flex_shed(_error(500)) is None
    assert flex_shed(TimeoutError()) is None


@given(
    code=st.integers(min_value=300, max_value=599),
    details=st.lists(st.sampled_from([_QUOTA, _RETRY]), max_size=2),
)
def test_a_shed_never_hides_a_failure_of_the_run_or_of_the_request(
    code: int, details: list[dict[str, Any]]
) -> None:
    """Whatever the answer, a shed is only ever what would otherwise be waited out."""
    error = _error(code, details)
    shed = flex_shed(error)
    plain = classify(error)
    assert plain is not None
    if shed is not None:
        assert code in (429, 503)
        assert plain.kind in (sr.OutcomeKind.TRANSIENT, sr.OutcomeKind.RATE_LIMITED)
        assert shed.outcome().kind is sr.OutcomeKind.SHED
        assert shed.retry_after == plain.retry_after
    # Without the strategy's knowledge of the tier, nothing is ever a shed.
    assert plain.kind is not sr.OutcomeKind.SHED
