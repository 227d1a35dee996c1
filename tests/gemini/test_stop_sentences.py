"""A 429 that waiting cannot fix stops the run with one sentence: which quota (or which
money limit), and when it resets if known.

The server's own quota message is not repeated after the cause: it ends with ``Please
retry in Ns.``, which a per-day or money stop contradicts, and its length cut the sentence
short (``..., .``) on the command line.  The structured ``QuotaFailure`` decides, whether a
violation carries a ``quotaId`` or only a ``quotaMetric`` (``..._per_day``).
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from google.genai import errors
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from strategies.gemini import GeminiStrategy, classify, disconnect, run_failure
from strategies.gemini.emulator import (
    EmulatorQuota,
    Fault,
    FaultKind,
    GeminiEmulator,
    make_client,
)

from .conftest import MODEL, Book, items

NOW = datetime.datetime(2026, 11, 30, 22, 0, tzinfo=datetime.UTC).timestamp()
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
    "* Quota exceeded for metric: {metric}, limit: 250, model: gemini-2.5-flash\n"
    "Please retry in 2.5s."
)


def quota_429(violation: dict[str, Any]) -> errors.APIError:
    """The SDK's own exception for a quota 429 body with one violation."""
    metric = str(violation.get("quotaMetric", "m"))
    body = {
        "error": {
            "code": 429,
            "message": QUOTA_MESSAGE.format(metric=metric),
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2.5s"},
            ],
        }
    }
    return errors.ClientError(429, body)


def one_sentence(text: str) -> None:
    assert "\n" not in text
    assert "Please retry" not in text  # the server's advice, which a stop contradicts
    assert "..." not in text  # never cut short
    assert text.count(". ") == 0, text


@pytest.mark.parametrize(
    "metric",
    [
        "generativelanguage.googleapis.com/generate_requests_per_model_per_day",
        "generativelanguage.googleapis.com/generate_content_free_tier_requests_per_day",
    ],
)
def test_a_per_day_metric_without_a_quota_id_stops_the_run(metric: str) -> None:
    exc = quota_429({"quotaMetric": metric, "quotaDimensions": {"model": MODEL}})
    cause = run_failure(exc, now=lambda: NOW)
    assert cause is not None
    assert metric in cause
    assert "resets at midnight Pacific time (08:00 UTC), in 10 h 00 min" in cause
    outcome = classify(exc)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.STOP_RUN


def test_a_per_minute_metric_without_a_quota_id_is_waited_out() -> None:
    exc = quota_429(
        {"quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model"}
    )
    assert run_failure(exc) is None
    outcome = classify(exc)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.RATE_LIMITED


QUOTA_IDS = st.sampled_from(
    [
        "GenerateRequestsPerDayPerProjectPerModel",
        "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
        "GenerateContentInputTokensPerModelPerDay-FreeTier",
        "GenerateContentPaidTierInputTokensPerModelPerDay",
    ]
)


@given(QUOTA_IDS, st.integers(1, 10**9))
def test_every_day_quota_stop_is_one_sentence(quota_id: str, value: int) -> None:
    exc = quota_429(
        {
            "quotaMetric": "generativelanguage.googleapis.com/x",
            "quotaId": quota_id,
            "quotaDimensions": {"model": MODEL},
            "quotaValue": str(value),
        }
    )
    outcome = classify(exc)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.STOP_RUN
    one_sentence(outcome.message)
    assert quota_id in outcome.message
    assert f"{value:,}" in outcome.message
    assert "it resets at midnight Pacific time" in outcome.message
    assert outcome.message.endswith("(429 RESOURCE_EXHAUSTED)")


@pytest.mark.parametrize(
    ("fault", "quota"),
    [
        (Fault(kind=FaultKind.DAILY_QUOTA, at=range(2, 99)), None),
        (Fault(kind=FaultKind.SPEND_CAP, at=range(2, 99)), None),
        (Fault(kind=FaultKind.PREPAY_DEPLETED, at=range(2, 99)), None),
        (None, EmulatorQuota(rpd=1)),
    ],
)
async def test_the_run_stops_with_one_sentence_through_the_sdk(
    fault: Fault | None, quota: EmulatorQuota | None
) -> None:
    with GeminiEmulator(seed=5, invalid_rate=0.0, quota=quota) as emulator:
        if fault is not None:
            emulator.inject(fault)
        client = make_client(emulator.base_url)
        strategy = GeminiStrategy(client, MODEL, response_schema=Book)
        runner = sr.Runner(
            sr.Plan.ladder(), strategy, validator=sr.validators.pydantic(Book), concurrency=1
        )
        try:
            with pytest.raises(sr.RunStopped) as caught:
                await runner.run(items(4))
        finally:
            await disconnect(client)
    message = str(caught.value)
    one_sentence(message)
    assert message.endswith("(429 RESOURCE_EXHAUSTED)")


# -- a dead cache in other words: never a stop, never a failure for good ------------------


def api_error(code: int, message: str, status: str) -> errors.APIError:
    return errors.ClientError(code, {"error": {"code": code, "message": message, "status": status}})


CASE = st.sampled_from([str.lower, str.upper, str.title, lambda s: s])
CACHE_NAME = st.one_of(
    st.integers(1, 10**19 - 1).map(str),
    st.integers(1, 10**19 - 1).map(
        lambda n: f"projects/1/locations/us-central1/cachedContents/{n}"
    ),
    st.from_regex(r"cachedContents/[a-z0-9]{1,16}", fullmatch=True),
)


@given(CASE, CACHE_NAME, st.sampled_from(["Cache content", "Cached content", "cachedContent"]))
def test_an_expired_cache_is_lost_in_any_case_and_name(case: Any, name: str, words: str) -> None:
    exc = api_error(400, case(f"{words} {name} is expired."), "INVALID_ARGUMENT")
    outcome = classify(exc)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.RESOURCE_LOST


@given(CASE, st.sampled_from(["", " (or permission denied)"]))
def test_a_developer_api_403_for_a_missing_cache_is_lost_in_any_case(case: Any, tail: str) -> None:
    exc = api_error(403, case(f"CachedContent not found{tail}"), "PERMISSION_DENIED")
    outcome = classify(exc)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.RESOURCE_LOST  # before: a stop of the whole run
