"""Quotas through the real SDK over HTTP: the emulator's 429s, and admission pacing to them.

The emulator enforces RPM, TPM and RPD per model and answers as the service does
(``QuotaFailure`` with ``quotaMetric``, ``quotaId``, ``quotaDimensions``, ``quotaValue``;
``Help``; ``RetryInfo``).  With ``GeminiStrategy(quota=...)`` every request waits for
room before it is sent; the same run without admission meets 429s.  The quota minute is
shortened to two seconds on both sides (a time scale; ``benchmarks/quota.py`` measures
the real 60-second figure, >= 0.95): at most 1 % refused, and >= 0.85 of the binding
quota, as a two-second minute loses the admission's margin (0.1 s) at every turn.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from google.genai import errors

import stagedretry as sr
from strategies.gemini import GeminiStrategy, classify, disconnect, run_failure
from strategies.gemini.emulator import (
    EmulatorQuota,
    Fault,
    FaultKind,
    GeminiEmulator,
    make_client,
)
from strategies.quota import Quota, QuotaAdmission

from .conftest import MODEL, Book, doc, items

PRO = "gemini-2.5-pro"


async def refusal(
    emulator: GeminiEmulator, *, prompt: str = "hello", times: int = 1
) -> errors.APIError:
    """Send *times* requests; return the exception of the last (a 429 expected)."""
    client = make_client(emulator.base_url)
    caught: errors.APIError | None = None
    try:
        for _ in range(times):
            try:
                await client.aio.models.generate_content(model=MODEL, contents=prompt)
            except errors.APIError as exc:
                caught = exc
    finally:
        await disconnect(client)
    assert caught is not None
    return caught


def details(exc: errors.APIError) -> dict[str, Any]:
    body = exc.details
    assert isinstance(body, dict)
    return {d["@type"].rsplit(".", 1)[1]: d for d in body["error"]["details"]}


@pytest.mark.parametrize(
    ("quota", "requests", "prompt", "metric", "quota_id", "value"),
    [
        (
            EmulatorQuota(rpm=2),
            3,
            "hello",
            "generativelanguage.googleapis.com/generate_requests_per_model",
            "GenerateRequestsPerMinutePerProjectPerModel",
            "2",
        ),
        (
            EmulatorQuota(tpm=25),
            3,
            doc(10),
            "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",
            "GenerateContentPaidTierInputTokensPerModelPerMinute",
            "25",
        ),
    ],
)
async def test_a_per_minute_quota_answers_the_services_429_and_is_waited_out(
    quota: EmulatorQuota,
    requests: int,
    prompt: str,
    metric: str,
    quota_id: str,
    value: str,
) -> None:
    with GeminiEmulator(seed=2, invalid_rate=0.0, quota=quota) as emulator:
        exc = await refusal(emulator, prompt=prompt, times=requests)
        stats = emulator.quota_stats
    assert isinstance(exc, errors.ClientError)
    assert (exc.code, exc.status) == (429, "RESOURCE_EXHAUSTED")
    assert exc.message is not None
    assert exc.message.startswith("You exceeded your current quota")
    found = details(exc)
    assert list(found) == ["QuotaFailure", "Help", "RetryInfo"]
    (violation,) = found["QuotaFailure"]["violations"]
    assert violation == {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": MODEL},
        "quotaValue": value,
    }
    outcome = classify(exc)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.RATE_LIMITED
    # The window frees up within the minute, and the RetryInfo says when.
    assert outcome.retry_after is not None
    assert 0 < outcome.retry_after <= 60
    assert stats.refused == {quota_id: 1}
    assert len(stats.served) == requests - 1


async def test_a_day_quota_answers_429_and_stops_the_run_saying_which_and_when() -> None:
    with GeminiEmulator(seed=2, invalid_rate=0.0, quota=EmulatorQuota(rpd=2)) as emulator:
        exc = await refusal(emulator, times=3)
    (violation,) = details(exc)["QuotaFailure"]["violations"]
    assert violation["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel"
    now = datetime.datetime(2026, 11, 30, 22, 0, tzinfo=datetime.UTC).timestamp()
    assert run_failure(exc, now=lambda: now) == (
        "a quota that waiting cannot refill is spent: the requests per day quota of "
        "gemini-2.5-flash (GenerateRequestsPerDayPerProjectPerModel, 2) is spent; it resets "
        "at midnight Pacific time (08:00 UTC), in 10 h 00 min"
    )
    outcome = classify(exc)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.STOP_RUN
    assert "it resets at midnight Pacific time" in outcome.message


@pytest.mark.parametrize(
    ("kind", "cause"),
    [
        (
            FaultKind.SPEND_CAP,
            "the billing account's monthly spending cap is reached: raise it in AI Studio, "
            "or wait for the next billing month",
        ),
        (
            FaultKind.PREPAY_DEPLETED,
            "the project's prepaid credits are spent: add funds in AI Studio",
        ),
    ],
)
async def test_a_spend_cap_429_stops_the_run(kind: FaultKind, cause: str) -> None:
    with GeminiEmulator(seed=2, invalid_rate=0.0) as emulator:
        emulator.inject(Fault(kind=kind, at=range(4, 1000)))
        client = make_client(emulator.base_url)
        strategy = GeminiStrategy(client, MODEL, response_schema=Book)
        runner = sr.Runner(
            sr.Plan.ladder(), strategy, validator=sr.validators.pydantic(Book), concurrency=1
        )
        try:
            with pytest.raises(sr.RunStopped) as caught:
                await runner.run(items(10))
        finally:
            await disconnect(client)
    assert str(caught.value) == f"{cause} (429 RESOURCE_EXHAUSTED)"
    batch = caught.value.batch
    assert batch is not None
    assert batch.succeeded == 3
    assert batch.counts[sr.ItemStatus.CANCELLED] == 1  # the fourth; the rest never started
    assert batch.counts[sr.ItemStatus.FAILED] == 0


async def paced_run(
    *, admission: bool, rpm: int, tpm: int, n: int, tokens: int, minute: int = 2
) -> tuple[float, float, int]:
    """One run of *n* items of ~*tokens* tokens against the emulator's quota; the binding
    fraction achieved, the share of requests refused, and the items that succeeded."""
    quota = EmulatorQuota(rpm=rpm, tpm=tpm, minute=minute)
    with GeminiEmulator(
        seed=2, invalid_rate=0.0, invalid_rate_slope=0.0, latency=0.02, quota=quota
    ) as emulator:
        client = make_client(emulator.base_url)
        paced = (
            QuotaAdmission(Quota(rpm=rpm, tpm=tpm), minute=minute, margin=0.1)
            if admission
            else None
        )
        strategy = GeminiStrategy(client, MODEL, response_schema=Book, quota=paced)
        runner = sr.Runner(
            sr.Plan.ladder(), strategy, validator=sr.validators.pydantic(Book), concurrency=8
        )
        try:
            # A first request opens the connection: a cold start is not what is measured.
            await client.aio.caches.list()
            batch = await runner.run(
                (f"i{i}", f"Catalogue {doc(tokens - 2 + i % 5, 'shelf')}.") for i in range(n)
            )
        finally:
            await disconnect(client)
        stats = emulator.quota_stats
    requests, input_tokens = stats.achieved(minute)
    answered = len(stats.served) + stats.refusals
    return max(requests / rpm, input_tokens / tpm), stats.refusals / answered, batch.succeeded


async def test_admission_paces_to_the_binding_quota_with_no_429s() -> None:
    # TPM binds: 12 requests of ~50 tokens fill 600 tokens, under the RPM of 20.
    utilization, refused, succeeded = await paced_run(
        admission=True, rpm=20, tpm=600, n=30, tokens=50
    )
    assert succeeded == 30
    assert refused <= 0.01
    # A two-second minute gives up margin / minute (5 %) by construction, and a loaded
    # machine a little more: the 60-second figure (>= 0.95) is the benchmark's.
    assert utilization >= 0.85


async def test_without_admission_the_same_run_meets_429s() -> None:
    # The control: only reacting to 429s, the run is refused again and again.
    _, refused, succeeded = await paced_run(admission=False, rpm=20, tpm=600, n=30, tokens=50)
    assert succeeded == 30
    assert refused > 0.05


async def test_a_stage_on_another_model_is_admitted_under_that_models_quota() -> None:
    # Every answer to the first stage is invalid, so each item escalates to gemini-2.5-pro,
    # whose day quota (2) is spent long before gemini-2.5-flash's.
    plan = sr.Plan(
        stages=(
            sr.Stage("flash", "full", {"temperature": 0.0}),
            sr.Stage("pro", "full", {"temperature": 0.0, "model": PRO}),
        ),
        max_prompts=2,
    )
    quota = Quota(rpd=100, models={PRO: {"rpd": 2}})
    with GeminiEmulator(seed=2, invalid_rate=1.0) as emulator:
        client = make_client(emulator.base_url)
        strategy = GeminiStrategy(client, MODEL, response_schema=Book, quota=quota)
        runner = sr.Runner(plan, strategy, validator=sr.validators.pydantic(Book), concurrency=1)
        try:
            with pytest.raises(sr.RunStopped) as caught:
                await runner.run(items(5))
        finally:
            await disconnect(client)
        models = [r.model for r in emulator.ledger.requests if r.model]
    assert str(caught.value).startswith(
        "the requests-per-day quota of gemini-2.5-pro (2 requests, quota rpd) is spent; "
        "it resets at midnight Pacific time"
    )
    # Three flash requests went out, and only two pro ones: the third was never sent.
    assert models.count(f"models/{PRO}") == 2
    assert models.count(f"models/{MODEL}") == 3
