"""Answers and journal rows past the limits: an answer is INVALID, a damaged row a JournalError."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry._limits import MAX_DEPTH
from stagedretry._stages import FullStage, PartialStage
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable

ITEM = sr.WorkItem("b1", "Describe the book.")
DEEP = '{"title": ' + "[" * 100_000 + "]" * 100_000 + "}"
GOOD = '{"title": "Dune", "year": 1965}'


class Book(pydantic.BaseModel):
    title: str
    year: int


def state(errors: tuple[sr.FieldError, ...] = (), partial: dict[str, Any] | None = None) -> Any:
    s = sr.ItemState(ITEM, "full_t0", 2, 0.0)
    s.errors = errors
    s.partial = partial
    return s


VALIDATORS = {
    "json_object": sr.validators.json_object(),
    "json_schema": sr.validators.json_schema(
        {"type": "object", "properties": {"title": {"type": "string"}}}
    ),
    "pydantic": sr.validators.pydantic(Book),
    "json.loads": json.loads,
}


@pytest.mark.parametrize("name", list(VALIDATORS))
@pytest.mark.parametrize("truncated", [False, True])
def test_an_answer_nested_too_deep_is_invalid_whatever_the_validator(
    name: str, truncated: bool
) -> None:
    meta = sr.ResponseMeta(finish_reason="MAX_TOKENS", truncated=True) if truncated else None
    with pytest.raises(sr.ValidationFailed) as info:
        FullStage().parse(sr.Response(DEEP, meta=meta), state(), VALIDATORS[name])
    assert (
        info.value.errors[0].message == f"not valid JSON: nested more than {MAX_DEPTH} levels deep"
    )
    assert info.value.partial is None


def test_a_deep_repair_changes_nothing_a_later_partial_stage_could_use() -> None:
    errors = (sr.FieldError("year", "missing"),)
    before = state(errors, {"title": "Dune"})
    with pytest.raises(sr.ValidationFailed) as info:
        PartialStage().parse(sr.Response(DEEP), before, sr.validators.json_object())
    assert info.value.partial == {"title": "Dune"}
    assert [e.path for e in info.value.errors] == [("year",)]
    assert "nested more than" in info.value.errors[0].message


@pytest.mark.parametrize("constant", ["NaN", "Infinity"])
def test_nan_in_an_answer_is_invalid_for_the_engines_own_validators(constant: str) -> None:
    text = f'{{"title": "Dune", "year": {constant}}}'
    for validator in (VALIDATORS["json_object"], VALIDATORS["json_schema"]):
        with pytest.raises(sr.ValidationFailed, match=f"{constant} is not a JSON number"):
            FullStage().parse(sr.Response(text), state(), validator)


async def test_a_run_with_a_deep_answer_moves_on_and_succeeds() -> None:
    answers = iter([DEEP, GOOD])

    async def generate(request: sr.Request, ctx: sr.StageContext) -> str:
        return next(answers)

    runner = sr.Runner(
        sr.Plan.ladder(),
        from_callable(generate),
        validator=sr.validators.pydantic(Book),
        clock=VirtualClock(),
    )
    batch = await runner.run([("b1", "Describe the book.")])
    (result,) = batch.results
    assert result.status is sr.ItemStatus.SUCCEEDED
    assert [a.outcome for a in result.attempts] == [
        sr.OutcomeKind.INVALID,
        sr.OutcomeKind.SUCCEEDED,
    ]
    assert "nested more than" in (result.attempts[0].error or "")


async def test_a_recursion_error_from_the_validator_is_invalid() -> None:
    calls = iter([RecursionError("maximum recursion depth exceeded"), None])

    def validate(text: str) -> dict[str, Any]:
        problem = next(calls)
        if problem is not None:
            raise problem
        return dict(json.loads(text))

    async def generate(request: sr.Request, ctx: sr.StageContext) -> str:
        return GOOD

    runner = sr.Runner(
        sr.Plan.ladder(), from_callable(generate), validator=validate, clock=VirtualClock()
    )
    (result,) = (await runner.run([("b1", "Describe the book.")])).results
    assert result.status is sr.ItemStatus.SUCCEEDED
    assert result.attempts[0].outcome is sr.OutcomeKind.INVALID
    assert "nested too deeply" in (result.attempts[0].error or "")


# -- journal rows ----------------------------------------------------------------------------------


async def journal_with_one_result(path: Path) -> sr.Journal:
    async def generate(request: sr.Request, ctx: sr.StageContext) -> str:
        return GOOD

    runner = sr.Runner(
        sr.Plan.ladder(),
        from_callable(generate),
        validator=sr.validators.pydantic(Book),
        clock=VirtualClock(),
    )
    journal = sr.Journal(path)
    await runner.run([("b1", "Describe the book.")], journal=journal)
    return journal


def damage(path: Path, sql: str, value: object) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute(sql, (value,))
    db.close()


ROWS = [
    ("not-json", '{"id": ', "Expecting value"),
    ("no-id", "{}", "KeyError: 'id'"),
    ("a-list", "[1]", "expected a JSON object, got list"),
    ("wrong-shape", '{"id": "b1", "status": "succeeded", "attempts": [[1]]}', "has no attribute"),
    ("bad-status", '{"id": "b1", "status": "bogus"}', "'bogus' is not a valid ItemStatus"),
    # NaN and Infinity are what json.dumps writes for an output's nan or inf: a row holding
    # them reads back (tests/test_hostile_text.py); a constant no writer makes is damage.
    ("nan", '{"id": "b1", "status": "succeeded", "output": -NaN}', "Expecting value"),
    (
        "deep",
        '{"id": "b1", "status": "succeeded", "output": ' + "[" * 100_000 + "]" * 100_000 + "}",
        "nested more than 128 levels deep",
    ),
    ("blob", b"\xff\xfe", "expected text, got bytes"),
]


@pytest.mark.parametrize(("text", "why"), [(t, w) for _, t, w in ROWS], ids=[n for n, _, _ in ROWS])
async def test_a_damaged_result_row_is_a_journal_error_naming_the_journal(
    tmp_path: Path, text: str | bytes, why: str
) -> None:
    path = tmp_path / "journal.sqlite"
    journal = await journal_with_one_result(path)
    damage(path, "UPDATE results SET result = ?", text)
    with journal, pytest.raises(sr.JournalError) as info:
        list(journal.results())
    message = str(info.value)
    assert message.startswith(f"the journal {str(path)!r} holds a result that cannot be read (")
    assert why in message
    assert "\n" not in message


async def test_damaged_run_statistics_are_a_journal_error(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    journal = await journal_with_one_result(path)
    damage(path, "UPDATE runs SET stats = ?", "[")
    with journal, pytest.raises(sr.JournalError, match="holds a run's statistics that cannot"):
        journal.runs()


async def test_a_schema_version_that_is_no_number_is_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    await journal_with_one_result(path)
    damage(path, "UPDATE meta SET value = ? WHERE key = 'schema'", "two")
    with pytest.raises(sr.JournalError, match="is not a stagedretry journal"):
        sr.Journal(path).open()


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=64) | st.text(max_size=64))
def test_any_damaged_row_is_a_journal_error(tmp_path_factory: Any, row: str | bytes) -> None:
    import asyncio

    path = tmp_path_factory.mktemp("j") / "journal.sqlite"
    journal = asyncio.run(journal_with_one_result(path))
    damage(path, "UPDATE results SET result = ?", row)
    # No random text or bytes is a result row: each is refused, naming the journal.
    with journal, pytest.raises(sr.JournalError, match=re.escape(repr(str(path)))):
        list(journal.results())
