"""The hypothesis strategies of stagedretry.testing, and config loading fuzzed with them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

import stagedretry as sr
from stagedretry import OutcomeKind
from stagedretry._stages import without
from stagedretry.testing import (
    NearMiss,
    NearMissKind,
    ScriptStep,
    near_misses,
    outcome_scripts,
    outcomes,
    plans,
)


@settings(max_examples=100)
@given(plan=st.from_type(sr.Plan))
def test_plans_from_type_survive_a_round_trip_through_plain_data(plan: sr.Plan) -> None:
    assert sr.Plan.from_dict(plan.to_dict()) == plan
    assert plan.stages[0].kind == "full"
    assert plan.to_mermaid().startswith("stateDiagram-v2")


@settings(max_examples=40)
@given(plan=plans())
def test_plans_survive_a_round_trip_through_a_yaml_file(plan: sr.Plan) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "plan.yaml"
        path.write_text(yaml.safe_dump({"plan": plan.to_dict()}, allow_unicode=True), "utf-8")
        assert sr.Plan.load(path) == plan


@settings(max_examples=50)
@given(plan=plans(max_stages=3, max_prompts=2, deadlines=False, transient_policies=False))
def test_plans_honour_their_bounds(plan: sr.Plan) -> None:
    assert 1 <= len(plan.stages) <= 3
    assert 1 <= plan.max_prompts <= 2
    assert plan.deadline is None
    assert all(s.on_transient == "retry" and s.max_attempts is None for s in plan.stages)
    # No deadline, no expedite; no max_attempts, nothing to give up to.
    assert all(s.expedite is None and s.on_give_up is None for s in plan.stages)


@settings(max_examples=100)
@given(plan=plans(min_stages=2))
def test_plans_draw_the_tier_keys_valid(plan: sr.Plan) -> None:
    for i, stage in enumerate(plan.stages):
        if stage.on_give_up is not None:
            assert stage.max_attempts is not None
        if stage.expedite is not None:
            assert plan.deadline is not None
            assert 0 < stage.expedite.within <= plan.deadline
            assert [s.name for s in plan.stages].index(stage.expedite.to) > i


def test_plans_reject_impossible_bounds() -> None:
    with pytest.raises(ValueError, match="at least one"):
        plans(max_stages=0)
    with pytest.raises(ValueError, match="include 'full'"):
        plans(kinds=("partial",))


@given(step=outcomes(("a", "b", "c")))
def test_outcomes_carry_the_right_extras(step: ScriptStep) -> None:
    assert set(step.fields) <= {"a", "b", "c"}
    assert len(set(step.fields)) == len(step.fields)
    if step.retry_after is not None:
        assert step.kind in (OutcomeKind.RATE_LIMITED, OutcomeKind.SHED)
        assert 0 <= step.retry_after <= 120


@given(script=outcome_scripts(4, outcomes=(OutcomeKind.TRANSIENT, OutcomeKind.FATAL)))
def test_outcome_scripts_are_bounded_and_use_the_kinds_asked_for(
    script: tuple[ScriptStep, ...],
) -> None:
    assert len(script) <= 4
    assert {s.kind for s in script} <= {OutcomeKind.TRANSIENT, OutcomeKind.FATAL}


@settings(max_examples=20)
@given(step=st.from_type(ScriptStep), backoff=st.from_type(sr.Backoff))
def test_registered_types(step: ScriptStep, backoff: sr.Backoff) -> None:
    assert isinstance(step, ScriptStep)
    assert 0 < backoff.initial <= backoff.maximum
    assert backoff.multiplier >= 1


class Author(BaseModel):
    name: str
    born: int = Field(ge=1000, le=2100)


class Book(BaseModel):
    title: str = Field(min_length=1, max_length=40)
    year: int = Field(ge=0, le=2100)
    pages: int | None = None
    tags: list[str] = Field(default_factory=list, max_length=3)
    author: Author


@settings(max_examples=60)
@given(data=st.data(), k=st.integers(0, 5))
def test_near_misses_break_exactly_k_fields(data: st.DataObject, k: int) -> None:
    whole = [b for b in NearMissKind if b is not NearMissKind.TRUNCATED]
    miss = data.draw(near_misses(Book, k, breaks=whole))
    assert isinstance(miss, NearMiss)
    assert len(miss.broken) == k
    validate = sr.validators.pydantic(Book)
    validate(Book.model_validate(miss.valid).model_dump_json())
    if k == 0:
        assert validate(miss.text) == Book.model_validate(miss.valid)
        return
    with pytest.raises(sr.ValidationFailed) as caught:
        validate(miss.text)
    assert {e.path[0] for e in caught.value.errors} == set(miss.broken)
    # What a partial stage keeps is exactly the part that was not broken.
    assert caught.value.partial == without(miss.valid, [*miss.paths, *miss.forbidden])


class Loose(BaseModel):
    anything: object


def test_near_misses_refuse_what_they_cannot_do() -> None:
    @settings(max_examples=1)
    @given(near_misses(Loose, 2, breaks=[NearMissKind.WRONG_TYPE, NearMissKind.MISSING]))
    def draw(miss: NearMiss) -> None:
        raise AssertionError("one field cannot be broken twice")

    with pytest.raises(ValueError, match="only 1 field"):
        draw()

    @settings(max_examples=1)
    @given(near_misses(Loose, 1, breaks=[NearMissKind.WRONG_TYPE]))
    def draw_one_kind(miss: NearMiss) -> None:
        raise AssertionError("a field typed object takes every type")

    with pytest.raises(ValueError, match="only 0 field"):
        draw_one_kind()
    with pytest.raises(TypeError, match="pydantic model"):
        near_misses(dict, 1)
    with pytest.raises(ValueError, match="negative"):
        near_misses(Book, -1)
