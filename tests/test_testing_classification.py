"""The user's own error classification in the harness (issue 14 §3), with their own exceptions."""

from __future__ import annotations

import pytest

import stagedretry as sr
from stagedretry import OutcomeKind as K
from stagedretry.testing import PlanCheckFailed, ScriptStep, check_classification, check_plan


class Throttled(Exception):
    """The user's client: HTTP 429."""


class Flaky(Exception):
    """The user's client: a dropped connection."""


class CacheGone(Exception):
    """The user's client: the server forgot the shared context."""


class Rejected(Exception):
    """The user's client: a 400."""


class ClientStrategy:
    """The classification part of a user's strategy for that client."""

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        if isinstance(exc, Throttled):
            return sr.Outcome(K.RATE_LIMITED, str(exc), retry_after=3.0)
        if isinstance(exc, Flaky):
            return sr.Outcome(K.TRANSIENT, str(exc))
        if isinstance(exc, CacheGone):
            return sr.Outcome(K.RESOURCE_LOST, str(exc))
        return None  # a Rejected falls to the engine's default: FATAL


class RateLimitsAreTransient(ClientStrategy):
    """Seeded bug: a 429 is taken for a passing fault, so the budget is spent on rate limits."""

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        if isinstance(exc, Throttled):
            return sr.Outcome(K.TRANSIENT, str(exc))
        return super().classify(exc)


EXAMPLES: dict[sr.OutcomeKind, BaseException | list[BaseException]] = {
    K.RATE_LIMITED: [Throttled("429 slow down"), Throttled("429 quota")],
    K.TRANSIENT: Flaky("connection reset by peer"),
    K.RESOURCE_LOST: CacheGone("context 7 expired"),
    K.FATAL: Rejected("400 bad request"),
}
PLAN = sr.Plan.ladder(max_prompts=4)


def test_a_right_classification_passes_both_checks() -> None:
    check_classification(ClientStrategy(), EXAMPLES)
    check_plan(PLAN, errors=EXAMPLES, classifier=ClientStrategy(), max_examples=30)


def test_a_429_taken_for_transient_is_listed_by_check_classification() -> None:
    with pytest.raises(AssertionError) as caught:
        check_classification(RateLimitsAreTransient(), EXAMPLES)
    assert str(caught.value) == (
        "RateLimitsAreTransient.classify() gets 2 of 5 example(s) wrong:\n"
        "  examples[RATE_LIMITED][0] Throttled('429 slow down'): classified TRANSIENT\n"
        "  examples[RATE_LIMITED][1] Throttled('429 quota'): classified TRANSIENT"
    )


def test_a_429_taken_for_transient_is_caught_by_check_plan_with_a_shrunk_script() -> None:
    with pytest.raises(PlanCheckFailed) as caught:
        check_plan(PLAN, errors=EXAMPLES, classifier=RateLimitsAreTransient(), max_examples=30)
    failure = caught.value
    (step,) = failure.script
    assert step.kind is K.RATE_LIMITED
    assert isinstance(step.error, Throttled)
    assert str(failure).startswith("the engine leaves the reference path: Throttled('429 "), str(
        failure
    )
    assert "was classified TRANSIENT, the script says RATE_LIMITED" in str(failure)
    assert "shrunk script (1 step(s)): [RATE_LIMITED(error=Throttled('429 " in str(failure)


def test_the_users_rules_come_before_the_strategys_classify() -> None:
    def throttled(exc: BaseException) -> sr.Outcome | None:
        return sr.Outcome(K.RATE_LIMITED, "429") if isinstance(exc, Throttled) else None

    check_classification(RateLimitsAreTransient(), EXAMPLES, rules=[throttled])
    check_plan(
        PLAN,
        errors=EXAMPLES,
        classifier=RateLimitsAreTransient(),
        rules=[throttled],
        max_examples=20,
    )


def test_without_a_classifier_the_engines_defaults_decide() -> None:
    # No rule knows Throttled: the engine's default calls it FATAL.
    with pytest.raises(
        AssertionError, match=r"examples\[RATE_LIMITED\]\[0\] Throttled\('429'\): classified FATAL"
    ):
        check_classification(sr.testing.ScriptedStrategy(), {K.RATE_LIMITED: Throttled("429")})
    with pytest.raises(PlanCheckFailed, match="was classified FATAL, the script says TRANSIENT"):
        check_plan(PLAN, errors={"transient": Flaky("reset")}, max_examples=20)


def test_a_rule_that_raises_is_reported_with_the_others() -> None:
    def broken(exc: BaseException) -> sr.Outcome | None:
        raise KeyError("oops")

    with pytest.raises(
        AssertionError,
        match=r"examples\[FATAL\]\[0\] Rejected\('400'\): classify\(\) raised KeyError: 'oops'",
    ):
        check_classification(ClientStrategy(), {"fatal": Rejected("400")}, rules=[broken])


def test_names_and_single_exceptions_are_accepted() -> None:
    # An INVALID example is the engine's own ValidationFailed: a client's ValueError is a bug.
    invalid = sr.ValidationFailed([sr.FieldError("year", "not a year")])
    examples = {"rate_limited": Throttled("429"), "INVALID": invalid}
    check_classification(ClientStrategy(), examples)


@pytest.mark.parametrize(
    ("examples", "error", "message"),
    [
        ({K.SUCCEEDED: ValueError()}, ValueError, "errors[SUCCEEDED]: SUCCEEDED is not raised"),
        ({K.INVALID: ValueError()}, ValueError, "errors[INVALID]: INVALID is not raised"),
        ({K.FATAL: []}, ValueError, "errors[FATAL]: no exception given"),
        ({K.FATAL: ["400"]}, TypeError, "errors[FATAL]: '400' is not an exception"),
        ({"fatl": Rejected()}, ValueError, "errors: unknown outcome kind 'fatl'"),
        # The class where the client raises an instance, alone or in a list; a value
        # that is no sequence at all: each named by its place, never a bare TypeError.
        ({K.FATAL: Rejected}, TypeError, "errors[FATAL]: Rejected is an exception class; give"),
        ({K.FATAL: [Rejected]}, TypeError, "errors[FATAL]: Rejected is an exception class"),
        ({K.FATAL: 400}, TypeError, "errors[FATAL]: 400 is not an exception"),
        ({K.FATAL: "400"}, TypeError, "errors[FATAL]: '400' is not an exception"),
    ],
)
def test_malformed_errors_are_refused_before_anything_runs(
    examples: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        check_plan(PLAN, errors=examples)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_a_step_with_an_error_raises_it_for_the_rules() -> None:
    assert str(ScriptStep("fatal", error=Rejected("400 no"))) == "FATAL(error=Rejected('400 no'))"
    with pytest.raises(ValueError, match="a SUCCEEDED step answers"):
        ScriptStep("succeeded", error=Rejected())


class DailyQuota(Exception):
    """The user's client: the day's quota is spent, so the whole run must stop."""


class QuotaIsTransient(ClientStrategy):
    """Seeded bug: the day's quota taken for a passing fault, so the run retries all day."""

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        if isinstance(exc, DailyQuota):
            return sr.Outcome(K.TRANSIENT, str(exc))
        return super().classify(exc)


def test_examples_no_script_draws_are_still_checked_by_check_plan() -> None:
    # STOP_RUN ends the run, not the one item the scripts follow, and outcomes= may leave a
    # kind out: such examples are classified once, after the run, never passed over.
    with pytest.raises(PlanCheckFailed) as caught:
        check_plan(
            PLAN,
            errors={**EXAMPLES, K.STOP_RUN: DailyQuota("quota for today")},
            classifier=QuotaIsTransient(),
            max_examples=20,
        )
    assert str(caught.value) == (
        "errors= examples of kinds no script draws (STOP_RUN), classified as the runner would, "
        "1 wrong:\n  errors[STOP_RUN][0] DailyQuota('quota for today'): classified TRANSIENT"
    )
    assert caught.value.script == ()
    with pytest.raises(PlanCheckFailed, match=r"errors\[RATE_LIMITED\]\[1\] Throttled"):
        check_plan(
            PLAN,
            errors=EXAMPLES,
            classifier=RateLimitsAreTransient(),
            outcomes=["succeeded", "invalid"],
            max_examples=10,
        )


class QuotaStops(ClientStrategy):
    def classify(self, exc: BaseException) -> sr.Outcome | None:
        if isinstance(exc, DailyQuota):
            return sr.Outcome(K.STOP_RUN, str(exc))
        return super().classify(exc)


def test_right_examples_no_script_draws_pass() -> None:
    errors = {**EXAMPLES, K.STOP_RUN: DailyQuota("quota for today")}
    check_plan(PLAN, errors=errors, classifier=QuotaStops(), max_examples=10)


def rejected_is_fatal(exc: BaseException) -> sr.Outcome | None:
    return sr.Outcome(K.FATAL, "400") if isinstance(exc, Rejected) else None


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # A rule given where the strategy goes: the message says where it belongs.
        (
            lambda: check_classification(rejected_is_fatal, EXAMPLES),  # type: ignore[arg-type]
            "check_classification(strategy=...) takes an object with a classify() method: "
            "a function is a rule, pass it in rules=[...]; got function",
        ),
        (
            lambda: check_plan(PLAN, errors=EXAMPLES, classifier=rejected_is_fatal),  # type: ignore[arg-type]
            "check_plan(classifier=...) takes an object with a classify() method: a function",
        ),
        (
            lambda: check_plan(PLAN, errors=EXAMPLES, classifier=object()),  # type: ignore[arg-type]
            "check_plan(classifier=...) takes an object with a classify() method, such as your "
            "Strategy; got object",
        ),
        (
            lambda: check_classification(None, EXAMPLES),  # type: ignore[arg-type]
            "check_classification() needs the strategy whose classify() it checks",
        ),
        (
            lambda: check_plan(PLAN, rules=rejected_is_fatal),  # type: ignore[arg-type]
            "check_plan(rules=...) is a sequence of rules, not function: use [rule]",
        ),
        (
            lambda: check_classification(ClientStrategy(), EXAMPLES, rules=[rejected_is_fatal, 3]),  # type: ignore[list-item]
            "check_classification(rules=...)[1]: 3 is not callable",
        ),
    ],
)
def test_a_classifier_or_rule_of_the_wrong_shape_is_refused_by_name(
    call: object, message: str
) -> None:
    with pytest.raises(TypeError) as caught:
        call()  # type: ignore[operator]
    assert message in str(caught.value)
