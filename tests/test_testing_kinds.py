"""The user's own stage kinds in the harness (issue 14 §1): declared readings, seeded bugs."""

from __future__ import annotations

from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry.testing import (
    Asks,
    KindReading,
    PlanCheckFailed,
    ScriptedStrategy,
    ScriptStep,
    Skips,
    VirtualClock,
    check_plan,
    expected_path,
    plans,
)
from stagedretry.testing._reference import ReferenceItem


@attrs.define
class Hints:
    lines: list[str] = attrs.Factory(list)


class FeedbackStage:
    """The how-to's kind: re-send the prompt with every mistake so far; skip until one."""

    reading: ClassVar[KindReading] = KindReading(asks=Asks.ANSWER, skips=Skips.UNTIL_INVALID)

    def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request | None:
        if not state.errors:
            return None
        hints = state.scratch.get(Hints) or Hints()
        hints.lines += [f"- {e.pointer or 'the answer'}: {e.message}" for e in state.errors]
        state.scratch.put(hints)
        return sr.Request(item.id, stage, item.prompt + "\n" + "\n".join(hints.lines))

    def parse(self, response: sr.Response, state: sr.ItemState, validator: sr.Validator) -> Any:
        if response.text is None:
            raise sr.ValidationFailed([sr.FieldError("", "the answer has no text")])
        return validator(response.text)


class SilentFeedback(FeedbackStage):
    """Seeded bug: build() always returns None, so the item silently moves on."""

    def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request | None:
        return None


class StrictRepair(sr.PartialStage):
    """A partial stage with its own prompt: it repairs, so it must ask for exactly what failed."""

    reading: ClassVar[KindReading] = KindReading(Asks.REPAIR)

    def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request | None:
        request = super().build(item, state, stage)
        if request is None:
            return None
        return attrs.evolve(request, prompt="Fix only these fields.\n" + request.prompt)


class GreedyRepair(StrictRepair):
    """Seeded bug: re-asks every field of the answer, not only the failed ones."""

    def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request | None:
        request = super().build(item, state, stage)
        if request is None:
            return None
        return attrs.evolve(request, fields=tuple((k,) for k in sorted(sr.testing.DEFAULT_ANSWER)))


class Undeclared:
    def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request:
        return sr.Request(item.id, stage, item.prompt)

    def parse(self, response: sr.Response, state: sr.ItemState, validator: sr.Validator) -> Any:
        return validator(response.text or "")


KINDS = {**sr.builtin_kinds(), "feedback": FeedbackStage(), "repair": StrictRepair()}
PLAN = sr.Plan.from_dict(
    {
        "max_prompts": 4,
        "stages": [
            {"name": "first", "kind": "full"},
            {"name": "with_feedback", "kind": "feedback", "on": {"invalid": "with_feedback"}},
        ],
    },
    kinds=KINDS,
)
REPAIR_PLAN = sr.Plan(
    stages=[sr.Stage("ask"), sr.Stage("fix", "repair"), sr.Stage("ask_again", on_invalid="fix")],
    max_prompts=6,
)
FAST: dict[str, Any] = {"max_examples": 40, "max_steps": 15}


def test_check_plan_runs_a_plan_with_the_users_kinds() -> None:
    check_plan(PLAN, stage_kinds=KINDS, **FAST)
    check_plan(REPAIR_PLAN, stage_kinds=KINDS, **FAST)
    check_plan(REPAIR_PLAN, stage_kinds=KINDS, text_answers=True, **FAST)


def test_a_kind_that_always_skips_is_caught_with_a_reason_that_names_it() -> None:
    with pytest.raises(PlanCheckFailed) as caught:
        check_plan(PLAN, stage_kinds={**KINDS, "feedback": SilentFeedback()}, **FAST)
    failure = caught.value
    assert failure.script == (ScriptStep("invalid"),)
    message = str(failure)
    assert "the engine is at 'exhausted'" in message
    assert "stage 'with_feedback' (kind 'feedback') skipped" in message
    assert "the reference says 'with_feedback'" in message
    assert "shrunk script (1 step(s)): [INVALID]" in message


def test_a_repairing_kind_that_asks_for_more_than_failed_is_caught() -> None:
    with pytest.raises(PlanCheckFailed, match="requests asked for") as caught:
        check_plan(REPAIR_PLAN, stage_kinds={**KINDS, "repair": GreedyRepair()}, **FAST)
    # Shrunk to an answer with a field to repair, then the repair that asked for too much.
    first, second = caught.value.script
    assert first.kind is sr.OutcomeKind.INVALID
    assert first.fields
    assert second.kind is sr.OutcomeKind.SUCCEEDED


def test_the_reference_without_the_users_kinds_says_what_to_pass() -> None:
    with pytest.raises(ValueError, match=r"plan.stages\[1\].kind: unknown stage kind 'feedback'"):
        check_plan(PLAN)
    with pytest.raises(ValueError, match="stage_kinds="):
        check_plan(PLAN)


def test_a_kind_without_a_reading_is_refused_naming_it() -> None:
    kinds = {**sr.builtin_kinds(), "feedback": Undeclared()}
    with pytest.raises(ValueError) as caught:
        check_plan(PLAN, stage_kinds=kinds)
    message = str(caught.value)
    assert message.startswith("plan.stages[1].kind: stage kind 'feedback' (Undeclared)")
    assert "reading = KindReading(asks=..., skips=...)" in message


def test_a_repairing_kind_must_skip_when_nothing_is_left() -> None:
    assert KindReading(Asks.REPAIR).skips is Skips.NOTHING_TO_REPAIR
    assert KindReading().skips is Skips.NEVER
    with pytest.raises(ValueError, match="nothing is left to repair"):
        KindReading(Asks.REPAIR, Skips.NEVER)


def test_subclasses_that_keep_the_builtin_code_are_read_as_the_builtins() -> None:
    class Mine(sr.FullStage):
        pass

    plan = sr.Plan(stages=[sr.Stage("a", "mine"), sr.Stage("b", "partial")])
    path = expected_path(
        plan, [ScriptStep("invalid", fields=["year"])], stage_kinds={**KINDS, "mine": Mine()}
    )
    assert path.stages == ("a", "b")
    assert path.fields == (None, (("year",),))


def test_the_reference_reads_until_invalid_skips() -> None:
    # No invalid answer yet: the feedback stage is skipped, whatever else happened.
    plan = sr.Plan(stages=[sr.Stage("a", on_transient="next"), sr.Stage("f", "feedback")])
    path = expected_path(plan, ["transient"], stage_kinds=KINDS)
    assert path.skipped == ("f",)
    assert path.status is sr.ItemStatus.EXHAUSTED
    path = expected_path(plan, ["invalid"], stage_kinds=KINDS)
    assert path.stages == ("a", "f")
    assert path.fields == (None, None)


async def test_a_skipping_custom_kind_ends_with_its_own_reason(
    virtual_clock: VirtualClock,
) -> None:
    plan = sr.Plan(stages=[sr.Stage("a", on_transient="next"), sr.Stage("f", "feedback")])
    strategy = ScriptedStrategy(["transient"])
    runner = sr.Runner(plan, strategy, clock=virtual_clock, kinds=KINDS)
    result = (await runner.run([("x", "p")])).results[0]
    assert result.status is sr.ItemStatus.EXHAUSTED
    assert result.reason == "stage 'f' (kind 'feedback') skipped: its build() sent no request"
    # The built-in partial keeps the words that fit it.
    plan = sr.Plan(stages=[sr.Stage("a", on_transient="next"), sr.Stage("p", "partial")])
    result = (await sr.Runner(plan, ScriptedStrategy(["transient"])).run([("x", "p")])).results[0]
    assert result.reason == "nothing left to repair"


def test_plans_refuses_a_kind_check_plan_could_not_run() -> None:
    with pytest.raises(ValueError, match=r"stage kind 'feedback'.*stage_kinds="):
        plans(kinds=("full", "feedback"))
    with pytest.raises(ValueError, match="does not say how the reference model reads it"):
        plans(kinds=("full", "mine"), stage_kinds={**KINDS, "mine": Undeclared()})


@settings(max_examples=60)
@given(
    plan=plans(kinds=("full", "partial", "feedback", "repair"), stage_kinds=KINDS, min_stages=2),
    script=st.lists(st.sampled_from(["invalid", "transient", "succeeded"]), max_size=10),
)
def test_every_plan_drawn_with_the_users_kinds_is_one_the_reference_runs(
    plan: sr.Plan, script: list[str]
) -> None:
    ReferenceItem(plan, KINDS)
    assert expected_path(plan, script, stage_kinds=KINDS).prompts <= plan.max_prompts


# check_plan runs its own hypothesis search inside: nesting is the point here.
@settings(max_examples=3, suppress_health_check=[HealthCheck.nested_given])
@given(plan=plans(kinds=("full", "feedback", "repair"), stage_kinds=KINDS, max_stages=4))
def test_check_plan_runs_the_plans_drawn_with_the_users_kinds(plan: sr.Plan) -> None:
    check_plan(plan, stage_kinds=KINDS, max_examples=10, max_steps=10)


class OnlyOnce(FeedbackStage):
    """Seeded bug: skips once in the whole run (it keeps state), so a replay differs."""

    reading: ClassVar[KindReading] = KindReading(asks=Asks.ANSWER)

    def __init__(self) -> None:
        self.skipped = False

    def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request | None:
        if state.errors and not self.skipped:
            self.skipped = True
            return None
        return sr.Request(item.id, stage, item.prompt)


def test_a_kind_that_keeps_state_between_items_is_named_not_a_hypothesis_error() -> None:
    # A replayed script comes to another end: hypothesis's Flaky error becomes a finding.
    with pytest.raises(PlanCheckFailed) as caught:
        check_plan(PLAN, stage_kinds={**KINDS, "feedback": OnlyOnce()}, **FAST)
    message = str(caught.value)
    assert message.startswith("the engine does not do the same when the same script is replayed")
    assert "first seen: " in message
    assert "stage 'with_feedback' (kind 'feedback') skipped" in message


class Forgetful(FeedbackStage):
    """Seeded bug: sends only the feedback, dropping the item's own prompt."""

    def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request | None:
        request = super().build(item, state, stage)
        if request is None:
            return None
        return attrs.evolve(request, prompt=request.prompt.replace(item.prompt, "Try again."))


class Rewriter(Forgetful):
    """The same code, declared: its prompts are its own."""

    reading: ClassVar[KindReading] = KindReading(skips=Skips.UNTIL_INVALID, keeps_prompt=False)


def test_a_kind_that_drops_the_items_prompt_is_caught() -> None:
    with pytest.raises(PlanCheckFailed) as caught:
        check_plan(PLAN, stage_kinds={**KINDS, "feedback": Forgetful()}, **FAST)
    message = str(caught.value)
    assert (
        "the request of stage 'with_feedback' (kind 'feedback') does not carry the item's "
        "prompt 'Describe the book.': 'Try again. - the answer: " in message
    )
    # The request is seen when it is answered: the invalid answer, then the one it got.
    first, _answered = caught.value.script
    assert first.kind is sr.OutcomeKind.INVALID
    # A kind that says it rewrites the prompt is held to the rest of its reading only.
    check_plan(PLAN, stage_kinds={**KINDS, "feedback": Rewriter()}, **FAST)
