"""plan_state_machine and check_plan: the live engine against the reference, and a seeded bug."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

import stagedretry as sr
from stagedretry import OutcomeKind
from stagedretry.testing import PlanCheckFailed, ScriptStep, check_plan, plan_state_machine

PLANS = Path(__file__).parent / "plans"

# How a user checks a plan file: one line.
TestLadderPlan = plan_state_machine(sr.Plan.load(PLANS / "ladder.toml")).TestCase
TestLadderPlan.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)

# A plan with loops, declared transient targets, attempt caps, a timeout and small caps on waits.
TANGLED = sr.Plan(
    stages=[
        sr.Stage("draft", max_attempts=2, timeout=30.0),
        sr.Stage("fix", "partial", on_transient="redo", on_invalid="fix"),
        sr.Stage("redo", on_invalid="fix", on_transient="fail"),
    ],
    max_prompts=7,
    timeout=60.0,
    max_rate_limit_waits=3,
    max_resource_lost=1,
)
TestTangledPlan = plan_state_machine(TANGLED).TestCase
TestTangledPlan.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)

# Two partial stages in a row, answered with text that goes through the real parsing: an
# unreadable repair leaves the earlier failed fields to the second partial stage (issue 9).
TWO_REPAIRS = sr.Plan(
    stages=[
        sr.Stage("ask"),
        sr.Stage("repair", "partial"),
        sr.Stage("repair_again", "partial"),
        sr.Stage("ask_again", on_invalid="repair"),
    ],
    max_prompts=8,
    max_rate_limit_waits=3,
    max_resource_lost=1,
)
TestTwoPartialStagesWithTextAnswers = plan_state_machine(TWO_REPAIRS, text_answers=True).TestCase
TestTwoPartialStagesWithTextAnswers.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None
)

# The plan that was meant: every failed draft goes to the repair stage first.
INTENDED = sr.Plan(
    stages=[
        sr.Stage("draft"),
        sr.Stage("repair", "partial"),
        sr.Stage("final", on_invalid="repair"),
    ],
    max_prompts=6,
)
# The plan that was written: the draft's invalid transition skips the repair stage.
SEEDED_BUG = attrs.evolve(
    INTENDED, stages=(attrs.evolve(INTENDED.stages[0], on_invalid="final"), *INTENDED.stages[1:])
)


def test_check_plan_passes_a_correct_engine_on_the_ladder() -> None:
    check_plan(sr.Plan.ladder(max_prompts=3), max_examples=30, max_steps=15)


def test_check_plan_finds_and_shrinks_a_seeded_plan_bug() -> None:
    with pytest.raises(PlanCheckFailed) as caught:
        check_plan(SEEDED_BUG, reference=INTENDED, max_examples=100)
    failure = caught.value
    assert isinstance(failure, AssertionError)
    # Shrunk to the one step that shows it: a draft answer with a field to repair.
    assert len(failure.script) == 1
    (step,) = failure.script
    assert step.kind is OutcomeKind.INVALID
    assert len(step.fields) == 1
    assert "'final'" in str(failure)
    assert "'repair'" in str(failure)


def test_the_state_machine_test_case_fails_on_the_seeded_bug() -> None:
    machine = plan_state_machine(SEEDED_BUG, reference=INTENDED)
    with pytest.raises(AssertionError, match="the reference says 'repair'"):
        run_state_machine_as_test(
            machine, settings=settings(max_examples=50, deadline=None, report_multiple_bugs=False)
        )


def test_a_transient_policy_the_reference_does_not_declare_is_found() -> None:
    eager = attrs.evolve(
        INTENDED,
        stages=(attrs.evolve(INTENDED.stages[0], on_transient="next"), *INTENDED.stages[1:]),
    )
    with pytest.raises(PlanCheckFailed) as caught:
        check_plan(eager, reference=INTENDED, max_examples=100)
    assert caught.value.script == (ScriptStep(OutcomeKind.TRANSIENT),)


def test_a_smaller_budget_than_the_reference_is_found() -> None:
    stingy = attrs.evolve(INTENDED, max_prompts=2)
    with pytest.raises(PlanCheckFailed, match="exhausted") as caught:
        check_plan(stingy, reference=INTENDED, max_examples=100)
    assert len(caught.value.script) == 2


def test_kinds_limit_the_outcomes_drawn() -> None:
    # With only successes and transients drawn, on_invalid never matters: the bug hides.
    check_plan(
        SEEDED_BUG,
        reference=INTENDED,
        outcomes=(OutcomeKind.SUCCEEDED, OutcomeKind.TRANSIENT),
        max_examples=20,
        max_steps=10,
    )


def test_plans_the_reference_cannot_follow_are_refused() -> None:
    with pytest.raises(ValueError, match=r"plan.stages\[0\].kind: unknown stage kind 'custom'"):
        plan_state_machine(sr.Plan(stages=[sr.Stage("a", "custom")]))


async def test_check_plan_refuses_to_run_inside_an_event_loop() -> None:
    with pytest.raises(RuntimeError, match="synchronous"):
        check_plan(INTENDED)


def test_check_plan_with_text_answers_agrees_on_the_two_partial_plan() -> None:
    check_plan(
        TWO_REPAIRS,
        outcomes=[sr.OutcomeKind.INVALID] * 3
        + [sr.OutcomeKind.SUCCEEDED, sr.OutcomeKind.TRANSIENT],
        text_answers=True,
        max_examples=30,
    )
