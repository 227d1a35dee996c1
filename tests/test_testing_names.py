"""Outcome kinds by name, and outcomes= replacing the harness's kinds= (issue 14 §5)."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry import OutcomeKind as K
from stagedretry.testing import (
    ScriptedStrategy,
    ScriptStep,
    check_plan,
    expected_path,
    outcome_scripts,
    outcomes,
    plan_state_machine,
)

LADDER = sr.Plan.ladder(max_prompts=3)
INTENDED = sr.Plan(
    stages=[
        sr.Stage("draft"),
        sr.Stage("repair", "partial"),
        sr.Stage("final", on_invalid="repair"),
    ],
    max_prompts=6,
)
# The draft's invalid transition skips the repair stage.
SEEDED_BUG = sr.Plan(
    stages=[
        sr.Stage("draft", on_invalid="final"),
        sr.Stage("repair", "partial"),
        sr.Stage("final", on_invalid="repair"),
    ],
    max_prompts=6,
)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("invalid", K.INVALID),
        ("INVALID", K.INVALID),
        ("Rate_Limited", K.RATE_LIMITED),
        (" resource_lost ", K.RESOURCE_LOST),
        ("stop_run", K.STOP_RUN),
        # The ways a user spells a two-word kind.
        ("rate-limited", K.RATE_LIMITED),
        ("Rate Limited", K.RATE_LIMITED),
        ("RESOURCE-LOST", K.RESOURCE_LOST),
    ],
)
def test_a_step_takes_an_outcome_kind_by_name(name: str, kind: sr.OutcomeKind) -> None:
    assert ScriptStep(name).kind is kind
    assert ScriptStep.of(name) == ScriptStep(kind)


def test_the_issues_examples_are_accepted() -> None:
    step = ScriptStep("invalid", fields=["year"])
    assert step == ScriptStep(K.INVALID, fields=("year",))
    assert repr(step) == "ScriptStep(OutcomeKind.INVALID, fields=('year',))"
    check_plan(LADDER, outcomes=["succeeded", "invalid"], max_examples=10, max_steps=8)


def test_names_work_wherever_a_step_does() -> None:
    path = expected_path(LADDER, ["invalid", "transient", "succeeded"])
    assert path.outcomes == (K.INVALID, K.TRANSIENT, K.SUCCEEDED)
    strategy = ScriptedStrategy({"a": ["rate_limited"]}, default="invalid")
    assert strategy.script("a") == (ScriptStep(K.RATE_LIMITED),)
    assert strategy.default == ScriptStep(K.INVALID)


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ("invalidd", ValueError, "unknown outcome kind 'invalidd' (known: succeeded, invalid,"),
        ("", ValueError, "unknown outcome kind ''"),
        ("ratelimited", ValueError, "unknown outcome kind 'ratelimited'"),
        (3, TypeError, "an outcome kind is an OutcomeKind or its name, not int"),
        (None, TypeError, "not NoneType"),
    ],
)
def test_a_wrong_kind_is_refused_at_once(bad: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        ScriptStep(bad)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_wrong_outcomes_are_refused_before_anything_runs() -> None:
    unknown = r"check_plan\(outcomes=...\): unknown outcome kind 'sucess'"
    with pytest.raises(ValueError, match=unknown):
        check_plan(LADDER, outcomes=["sucess", "invalid"])
    with pytest.raises(TypeError, match=r"not one kind: use \['invalid'\]"):
        check_plan(LADDER, outcomes="invalid")
    with pytest.raises(TypeError, match=r"outcomes\(outcomes=...\): .* not int"):
        outcomes(outcomes=[K.INVALID, 7])  # type: ignore[list-item]


@settings(max_examples=30)
@given(st.data())
def test_outcomes_by_name_draw_only_those(data: st.DataObject) -> None:
    script = data.draw(outcome_scripts(5, outcomes=["transient", "FATAL"]))
    assert {s.kind for s in script} <= {K.TRANSIENT, K.FATAL}


def test_the_old_kinds_still_works_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"check_plan\(kinds=...\) is deprecated"):
        # Only successes and transients: on_invalid never matters, so the bug hides.
        check_plan(
            SEEDED_BUG,
            reference=INTENDED,
            kinds=(K.SUCCEEDED, K.TRANSIENT),
            max_examples=20,
            max_steps=10,
        )
    with pytest.warns(DeprecationWarning, match=r"plan_state_machine\(kinds=...\)"):
        plan_state_machine(LADDER, kinds=[K.SUCCEEDED])
    with pytest.warns(DeprecationWarning, match=r"outcomes\(kinds=...\)"):
        outcomes(kinds=[K.SUCCEEDED])
    with pytest.warns(DeprecationWarning, match=r"outcome_scripts\(kinds=...\)"):
        outcome_scripts(3, kinds=[K.SUCCEEDED])


def test_outcomes_and_the_old_kinds_together_are_refused() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(TypeError, match="not both"):
            check_plan(LADDER, outcomes=[K.SUCCEEDED], kinds=[K.SUCCEEDED])
