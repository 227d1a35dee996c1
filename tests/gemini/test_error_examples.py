"""strategies.gemini.error_examples(): the SDK's own errors, to test a classification (issue 14)."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import errors, types

import stagedretry as sr
from stagedretry import OutcomeKind as K
from stagedretry.testing import PlanCheckFailed, check_classification, check_plan
from strategies.gemini import GeminiStrategy, error_examples
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import MODEL


@pytest.fixture
def client() -> genai.Client:
    # Never used to send anything: the strategies below only classify.
    return genai.Client(
        api_key="test-key",
        http_options=types.HttpOptions(
            base_url="http://127.0.0.1:9",
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


class RateLimitsAreTransient(GeminiStrategy):
    """Seeded bug: a 429 is taken for a passing fault, so the budget is spent on rate limits."""

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        if isinstance(exc, errors.APIError) and exc.code == 429:
            return sr.Outcome(K.TRANSIENT, "busy")
        return super().classify(exc)


def test_the_gemini_strategy_classifies_every_example_right(client: genai.Client) -> None:
    examples = error_examples()
    assert set(examples) == {K.RATE_LIMITED, K.TRANSIENT, K.RESOURCE_LOST, K.FATAL, K.STOP_RUN}
    check_classification(GeminiStrategy(client, MODEL), examples)


def test_the_api_errors_are_the_sdks_own_classes() -> None:
    api = [
        e for group in error_examples().values() for e in group if isinstance(e, errors.APIError)
    ]
    assert len(api) == 13
    for error in api:
        expected = errors.ClientError if error.code < 500 else errors.ServerError
        assert type(error) is expected
        assert error.details["error"]["code"] == error.code
    # Fresh objects each call: a test may raise them (and so change their traceback).
    assert error_examples()[K.FATAL][0] is not error_examples()[K.FATAL][0]


async def test_the_rate_limit_example_is_what_the_sdk_raises_from_the_emulator(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    emulator.inject(Fault(kind=FaultKind.RATE_LIMIT, times=1))
    with pytest.raises(errors.ClientError) as caught:
        await aio.models.generate_content(model=MODEL, contents="q")
    real = caught.value
    example = error_examples()[K.RATE_LIMITED][0]
    assert isinstance(example, errors.ClientError)
    assert (example.code, example.status, example.message) == (real.code, real.status, real.message)
    assert [d["@type"] for d in example.details["error"]["details"]] == [
        d["@type"] for d in real.details["error"]["details"]
    ]


def test_a_429_taken_for_transient_is_caught_by_check_classification(
    client: genai.Client,
) -> None:
    with pytest.raises(AssertionError) as caught:
        check_classification(RateLimitsAreTransient(client, MODEL), error_examples())
    lines = str(caught.value).splitlines()
    assert lines[0] == "RateLimitsAreTransient.classify() gets 3 of 15 example(s) wrong:"
    quota = (
        "ClientError('429 RESOURCE_EXHAUSTED: "
        "You exceeded your current quota, please check your pl...')"
    )
    assert lines[1:] == [
        f"  examples[RATE_LIMITED][0] {quota}: classified TRANSIENT",
        "  examples[RATE_LIMITED][1] ClientError('429 RESOURCE_EXHAUSTED: "
        "Resource has been exhausted (e.g. check quota).'): classified TRANSIENT",
        # The per-day quota: a run stop, which the seeded rule turns into a retry.
        f"  examples[STOP_RUN][3] {quota}: classified TRANSIENT",
    ]


def test_a_429_taken_for_transient_is_caught_by_check_plan(client: genai.Client) -> None:
    with pytest.raises(PlanCheckFailed) as caught:
        check_plan(
            sr.Plan.ladder(),
            errors=error_examples(),
            classifier=RateLimitsAreTransient(client, MODEL),
            max_examples=50,
        )
    # The failing step ends the script (hypothesis may keep a harmless step before it).
    step = caught.value.script[-1]
    assert step.kind is K.RATE_LIMITED
    assert isinstance(step.error, errors.ClientError)
    assert "was classified TRANSIENT, the script says RATE_LIMITED" in str(caught.value)


def test_check_plan_passes_the_gemini_classification(client: genai.Client) -> None:
    check_plan(
        sr.Plan.ladder(max_prompts=4),
        errors=error_examples(),
        classifier=GeminiStrategy(client, MODEL),
        max_examples=40,
    )
