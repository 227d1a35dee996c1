"""A 503 that says when to come back is honoured as a 429's advice is (issue 9).

Still TRANSIENT: the stage is retried and the attempt counts (a 5xx may have been
billed), but the wait is the server's ``RetryInfo.retryDelay`` or ``Retry-After``
rather than a jittered backoff.  Runs the real SDK against the emulator.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import httpx2
import pytest
from google import genai
from google.genai import errors, types

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiStrategy, classify
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import MODEL, Book, billed, ladder_runner, usage_of


def details(error: errors.APIError) -> list[dict[str, object]]:
    return list(error.details["error"].get("details", []))


async def overloaded(aio: genai.client.AsyncClient) -> errors.APIError:
    with pytest.raises(errors.ServerError) as caught:
        await aio.models.generate_content(
            model=MODEL, contents="q", config=types.GenerateContentConfig()
        )
    return caught.value


async def test_the_emulator_sends_retry_info_on_a_503_when_asked(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    emulator.inject(
        Fault(kind=FaultKind.UNAVAILABLE, times=1, retry_delay=4, retry_after_header=True)
    )
    error = await overloaded(aio)
    assert (error.code, error.status) == (503, "UNAVAILABLE")
    assert details(error) == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "4s"}
    ]
    assert error.response.headers["Retry-After"] == "4"


async def test_a_503_carries_no_retry_info_by_default(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, times=1))
    error = await overloaded(aio)
    assert details(error) == []
    assert "Retry-After" not in error.response.headers
    # A rate limit keeps its default of 2 s.
    assert Fault(kind=FaultKind.RATE_LIMIT).retry_delay == 2.0


async def test_the_sdks_503_is_transient_with_the_servers_delay(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, times=1, retry_delay=6.5))
    found = classify(await overloaded(aio))
    assert found is not None
    assert (found.kind, found.retry_after) == (sr.OutcomeKind.TRANSIENT, 6.5)


def test_a_503_with_only_a_retry_after_header() -> None:
    response = httpx2.Response(503, headers={"Retry-After": "9"})
    body = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    found = classify(errors.ServerError(503, body, response))
    assert found is not None
    assert (found.kind, found.retry_after) == (sr.OutcomeKind.TRANSIENT, 9.0)


def test_a_503_without_advice_leaves_the_wait_to_the_backoff() -> None:
    body = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    found = classify(errors.ServerError(503, body, None))
    assert found is not None
    assert (found.kind, found.retry_after) == (sr.OutcomeKind.TRANSIENT, None)


async def test_an_item_waits_the_503s_delay_then_succeeds_on_the_same_stage(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=3)
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, at=1, retry_delay=7))
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book)

    batch = await ladder_runner(strategy, virtual_clock, concurrency=1).run([("b", "A book.")])

    (result,) = batch.results
    assert result.ok
    first, second = result.attempts
    assert (first.outcome, second.outcome) == (sr.OutcomeKind.TRANSIENT, sr.OutcomeKind.SUCCEEDED)
    assert first.stage == second.stage == "full_t0"
    assert first.counted  # a 5xx may have been billed: it counts, per the outcome table
    assert result.prompts == 2
    # Exactly the server's delay, not a jittered backoff (the ladder's would be at most 1 s).
    assert second.started - (first.started + first.duration) == pytest.approx(7.0)
    assert usage_of(batch) == billed(emulator)


async def test_a_503s_delay_is_capped_by_the_plans_cap_on_server_delays(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=3)
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, at=1, retry_delay=3600))
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book)
    plan = attrs.evolve(sr.Plan.ladder(), rate_limit_backoff=sr.Backoff(initial=1.0, maximum=30.0))

    batch = await ladder_runner(strategy, virtual_clock, plan=plan, concurrency=1).run(
        [("b", "A book.")]
    )

    first, second = batch.results[0].attempts
    assert second.started - (first.started + first.duration) == pytest.approx(30.0)
