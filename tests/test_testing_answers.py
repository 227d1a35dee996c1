"""Answers for the user's output model or JSON Schema; the user's validator in the state machine."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import settings as Settings
from pydantic import BaseModel, ConfigDict, Field

import stagedretry as sr
from stagedretry._stages import from_truncated, repairable_fields
from stagedretry._strategy import Response
from stagedretry._usage import ResponseMeta
from stagedretry.testing import (
    NearMiss,
    NearMissKind,
    PlanCheckFailed,
    check_plan,
    near_misses,
    plan_state_machine,
)


class Author(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    born: int = Field(ge=1000, le=2100)


class Book(BaseModel):
    title: str = Field(min_length=1, max_length=40)
    isbn: str | None = Field(default=None, pattern=r"^\d{3}-\d{10}$")
    year: int = Field(ge=0, le=2100)
    tags: list[str] = Field(default_factory=list, max_length=3)
    author: Author


# The same shape as a hand-written JSON Schema, as a user of validators.json_schema has it.
BOOK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 40},
        "isbn": {"type": ["string", "null"], "pattern": r"^\d{3}-\d{10}$"},
        "year": {"type": "integer", "minimum": 0, "maximum": 2100},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
        "author": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "born": {"type": "integer", "minimum": 1000, "maximum": 2100},
            },
            "required": ["name", "born"],
            "additionalProperties": False,
        },
    },
    "required": ["title", "year", "author"],
}

NEAR = settings(
    max_examples=200, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def what_the_validator_reports(
    miss: NearMiss, validate: Any
) -> tuple[set[sr.FieldPath], set[sr.FieldPath]]:
    """The paths the user's validator fails (as a partial stage re-asks them) and forbids."""
    try:
        if miss.truncated:
            cut = Response(miss.text, meta=ResponseMeta(finish_reason="MAX_TOKENS", truncated=True))
            from_truncated(cut, validate)
        else:
            validate(miss.text)
    except sr.ValidationFailed as exc:
        forbidden = {e.path for e in exc.errors if e.kind is sr.FieldErrorKind.FORBIDDEN}
        return set(repairable_fields(tuple(exc.errors))), forbidden
    return set(), set()


@pytest.mark.parametrize(
    ("source", "validate"),
    [(Book, sr.validators.pydantic(Book)), (BOOK_SCHEMA, sr.validators.json_schema(BOOK_SCHEMA))],
    ids=["pydantic", "json-schema"],
)
def test_each_kind_of_near_miss_is_drawn_and_breaks_what_the_validator_reports(
    source: Any, validate: Any
) -> None:
    kinds: Counter[NearMissKind] = Counter()

    @NEAR
    @given(near_misses(source))
    def draw(miss: NearMiss) -> None:
        kinds.update(miss.kinds)
        assert miss.paths or miss.forbidden
        assert what_the_validator_reports(miss, validate) == (set(miss.paths), set(miss.forbidden))

    draw()
    total = sum(kinds.values())
    # Hypothesis favours the first kinds it is offered; each still gets a fair share.
    assert set(kinds) == set(NearMissKind), kinds
    assert all(count >= 0.04 * total for count in kinds.values()), kinds


def test_a_pattern_field_gets_real_values_and_no_warning() -> None:
    # Under the project's filterwarnings = error, a HypothesisWarning would fail this test;
    # before, every valid isbn was None (300 of 300 draws) and the pattern warned.
    isbns: Counter[str] = Counter()

    @NEAR
    @given(near_misses(Book, 0))
    def draw(miss: NearMiss) -> None:
        isbn = miss.valid["isbn"]
        isbns["none" if isbn is None else "string"] += 1
        Book.model_validate(miss.valid)

    draw()
    assert isbns["string"] >= 0.2 * sum(isbns.values()), isbns


def test_near_misses_refuse_a_source_they_cannot_read() -> None:
    with pytest.raises(TypeError, match="pydantic model class or a JSON Schema"):
        near_misses(int)
    with pytest.raises(ValueError, match="at least one kind"):
        near_misses(Book, breaks=[])


PLAN = sr.Plan.ladder(max_prompts=5)


def test_check_plan_runs_the_users_validator_on_generated_answers() -> None:
    result = check_plan(PLAN, answers=Book, validator=sr.validators.pydantic(Book), max_examples=25)
    assert result.examples >= 25
    assert result.reached["partial_t0"] > 0  # near-misses were repaired by a partial stage


def test_check_plan_reads_a_json_schema_with_its_own_validator() -> None:
    check_plan(PLAN, answers=BOOK_SCHEMA, max_examples=15)


class NoFields(BaseModel):
    pass


@pytest.mark.parametrize(
    ("source", "message"),
    [
        # Answers are objects: a schema of anything else is refused by name, not filtered forever.
        (
            {"type": "integer"},
            "answers must be JSON objects, but the JSON Schema describes 'integer'",
        ),
        ({"type": "array", "items": {"type": "string"}}, "describes 'array' values"),
        (
            {"$ref": "#/$defs/N", "$defs": {"N": {"type": "number"}}},
            "describes 'number' values",
        ),
    ],
)
def test_answers_that_are_not_objects_are_refused_at_once(source: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        near_misses(source)
    assert message in str(caught.value)
    with pytest.raises(ValueError, match="answers must be JSON objects"):
        check_plan(PLAN, answers=source)


@pytest.mark.parametrize("source", [NoFields, {"type": "object"}, {}])
def test_an_answer_with_no_field_to_break(source: Any) -> None:
    # near_misses cannot break a field there is none of: refused when built, not when drawn.
    with pytest.raises(ValueError, match="has no field an answer can break; cannot break 1"):
        near_misses(source)
    # The state machine answers an invalid step that has no field to break with text that
    # is no JSON at all (or, for {}, breaks the keys it drew), and walks on.
    result = check_plan(PLAN, answers=source, max_examples=10, max_steps=8)
    assert result.reached["full_t25"] > 0


def test_answers_refuse_what_they_cannot_combine() -> None:
    with pytest.raises(ValueError, match="needs answers="):
        plan_state_machine(PLAN, validator=sr.validators.pydantic(Book))
    with pytest.raises(ValueError, match="neither answer= nor text_answers="):
        plan_state_machine(PLAN, answers=Book, text_answers=True)


class LaxBook(BaseModel):
    """The model the validator was written against: the year's range was forgotten."""

    title: str = Field(min_length=1, max_length=40)
    isbn: str | None = Field(default=None, pattern=r"^\d{3}-\d{10}$")
    year: int
    tags: list[str] = Field(default_factory=list, max_length=3)
    author: Author


# Found in seconds; shrinking such a failure can take minutes, so these tests skip it.
FOUND_ONLY = Settings(
    max_examples=200,
    deadline=None,
    database=None,
    phases=[Phase.generate],
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_a_validator_that_accepts_a_near_miss_is_caught() -> None:
    lax = sr.validators.pydantic(LaxBook)
    with pytest.raises(PlanCheckFailed) as caught:
        check_plan(PLAN, answers=Book, validator=lax, settings=FOUND_ONLY)
    # The answer it let through: a year out of range.
    shown = [str(step) for step in caught.value.script]
    assert any("out_of_range" in step and "/year" in step for step in shown), shown


def fields_by_head(text: str) -> Book:
    """A hand-written validator that names the top-level field, not the path inside it."""
    try:
        return sr.validators.pydantic(Book)(text)  # type: ignore[no-any-return]
    except sr.ValidationFailed as exc:
        heads = [sr.FieldError(e.path[:1], e.message) for e in exc.errors]
        raise sr.ValidationFailed(heads, exc.partial, text=text) from None


def test_a_validator_naming_other_paths_than_it_fails_is_caught() -> None:
    with pytest.raises(PlanCheckFailed) as caught:
        check_plan(PLAN, answers=Book, validator=fields_by_head, settings=FOUND_ONLY)
    # An answer broken inside the author (a value, or a key it forbids): the validator named
    # /author as a whole, so the engine re-asked (or dropped) more than the break.
    shown = [str(step) for step in caught.value.script]
    assert any("/author/" in step or "extra" in step for step in shown), shown
