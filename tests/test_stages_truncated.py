"""An answer the provider flags as truncated is read for what it holds complete.

Both stage kinds keep the complete, valid fields of a cut-off answer and fail
the field that was cut and the ones never reached, whichever provider flags
the truncation (``ResponseMeta.truncated``).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pydantic
import pytest

import stagedretry as sr
from stagedretry import FieldError, ValidationFailed
from stagedretry._journal import result_from_json, result_to_json
from stagedretry._stages import complete_members, repairable_fields
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable

ITEM = sr.WorkItem("b1", "Describe the book.")
CUT = sr.ResponseMeta(finish_reason="MAX_TOKENS", truncated=True)
WHY = "cut off by the output token limit (finish reason MAX_TOKENS)"
DUNE = '{"title": "Dune", "year": 1965, "authors": ["Frank Her'


class Book(pydantic.BaseModel):
    title: str
    year: int
    authors: list[str]
    publisher: str


BOOK = sr.validators.pydantic(Book)


def state(
    errors: tuple[FieldError, ...] = (), partial: dict[str, Any] | None = None
) -> sr.ItemState:
    s = sr.ItemState(ITEM, "fix", 2, 0.0)
    s.errors = errors
    s.partial = partial
    return s


def cut(text: str, meta: sr.ResponseMeta = CUT) -> sr.Response:
    return sr.Response(text, meta=meta)


def failure(stage: sr.StageKind, response: sr.Response, st: sr.ItemState) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        stage.parse(response, st, BOOK)
    return info.value


@pytest.mark.parametrize(
    ("text", "complete", "cut_keys"),
    [
        (DUNE, {"title": "Dune", "year": 1965}, ("authors",)),
        # A number or an array at the end may go on: only a following comma proves it whole.
        ('{"title": "Dune", "year": 19', {"title": "Dune"}, ("year",)),
        ('{"a": 1, "b": [1, 2', {"a": 1}, ("b",)),
        ('{"a": 1, "b": {"c": 1, "d": "e', {"a": 1}, ("b",)),
        # Commas, quotes and brackets inside strings are text; a cut literal is not reached.
        ('{"a": "x, \\"y\\" [z", "b": tr', {"a": 'x, "y" [z'}, ()),
        ('{"a": "Frank', {}, ("a",)),
        ('{"a": 1, "b": "', {"a": 1}, ("b",)),
        # Cut in a key or right after a comma: nothing was cut but what never came.
        ('{"a": 1, "b', {"a": 1}, ()),
        ('{"a": 1, ', {"a": 1}, ()),
        ('{"a": 1, "b": ', {"a": 1}, ()),
        ("  {", {}, ()),
        ('{"a": 1}', {"a": 1}, ()),
    ],
)
def test_complete_members(text: str, complete: dict[str, Any], cut_keys: tuple[str, ...]) -> None:
    assert complete_members(text) == (complete, cut_keys)


@pytest.mark.parametrize("text", ["[1, 2", '"Dune', "Dune by Frank", ""])
def test_complete_members_of_no_object(text: str) -> None:
    assert complete_members(text) is None


class TestFull:
    def test_keeps_the_complete_fields_and_fails_the_cut_and_missing_ones(self) -> None:
        exc = failure(sr.FullStage(), cut(DUNE), state())

        assert exc.partial == {"title": "Dune", "year": 1965}
        assert exc.errors == (
            FieldError("authors", WHY),
            FieldError("publisher", f"Field required, as the answer was {WHY} before it"),
        )
        assert exc.text == DUNE
        # The attempt's error is this exception's text: it says the answer was cut off.
        assert str(exc).startswith(f"2 invalid field(s): /authors: {WHY}")

    def test_a_cut_string_is_never_kept(self) -> None:
        exc = failure(sr.FullStage(), cut('{"title": "Dune", "publisher": "Chil'), state())

        assert exc.partial == {"title": "Dune"}
        assert exc.errors[0] == FieldError("publisher", WHY)
        assert {e.path for e in exc.errors} == {("publisher",), ("year",), ("authors",)}

    def test_a_complete_but_invalid_field_fails_as_the_validator_says(self) -> None:
        exc = failure(sr.FullStage(), cut('{"title": "Dune", "year": "old", "authors": ['), state())

        assert exc.partial == {"title": "Dune"}
        paths = [e.path for e in exc.errors]
        assert paths[0] == ("authors",)
        assert ("year",) in paths
        assert ("publisher",) in paths

    def test_nothing_cut_and_all_present_is_the_output(self) -> None:
        text = '{"title": "Dune", "year": 1965, "authors": ["Frank Herbert"], "publisher": "C", '

        out = sr.FullStage().parse(cut(text), state(), BOOK)

        assert out == Book(title="Dune", year=1965, authors=["Frank Herbert"], publisher="C")

    def test_a_cut_optional_field_still_fails(self) -> None:
        def anything(text: str) -> dict[str, Any]:
            return dict(json.loads(text))

        with pytest.raises(ValidationFailed) as info:
            sr.FullStage().parse(cut('{"title": "Dune", "note": "a lo'), state(), anything)

        assert info.value.errors == (FieldError("note", WHY),)
        assert info.value.partial == {"title": "Dune"}

    def test_a_cut_text_that_is_no_object_says_it_was_cut(self) -> None:
        exc = failure(sr.FullStage(), cut("The book is Dune by Fr"), state())

        assert exc.partial is None
        assert exc.errors[0] == FieldError("", WHY)
        assert WHY in str(exc)

    def test_an_answer_not_flagged_as_truncated_is_read_whole(self) -> None:
        meta = sr.ResponseMeta(finish_reason="MAX_TOKENS")  # a provider that flags nothing
        exc = failure(sr.FullStage(), cut(DUNE, meta), state())

        assert exc.partial is None
        assert [e.path for e in exc.errors] == [()]

    def test_no_text_at_all_says_it_was_cut(self) -> None:
        exc = failure(sr.FullStage(), sr.Response(None, meta=CUT), state())

        assert exc.errors == (FieldError("", f"no text in the response ({WHY})"),)


class TestPartial:
    ASKED = (
        FieldError("authors", WHY),
        FieldError("publisher", "Field required"),
    )
    KEPT: ClassVar[dict[str, Any]] = {"title": "Dune", "year": 1965}

    def test_merges_the_complete_asked_fields_and_re_asks_the_cut_one(self) -> None:
        text = '{"authors": ["Frank Herbert"], "title": "Other", "publisher": "Chil'
        exc = failure(sr.PartialStage(), cut(text), state(self.ASKED, self.KEPT))

        # "title" was not asked for: the model may not rewrite what was kept.
        assert exc.partial == {**self.KEPT, "authors": ["Frank Herbert"]}
        assert exc.errors == (FieldError("publisher", WHY),)

    def test_a_cut_repair_holding_all_it_was_asked_is_the_output(self) -> None:
        text = '{"authors": ["Frank Herbert"], "publisher": "Chilton", "extra": "x'
        out = sr.PartialStage().parse(cut(text), state(self.ASKED, self.KEPT), BOOK)

        assert out == Book(title="Dune", year=1965, authors=["Frank Herbert"], publisher="Chilton")

    def test_a_repair_cut_before_any_field_keeps_the_earlier_errors(self) -> None:
        exc = failure(sr.PartialStage(), cut("Sure! Here is"), state(self.ASKED, self.KEPT))

        assert exc.partial == self.KEPT
        assert [e.path for e in exc.errors] == [("authors",), ("publisher",)]
        assert all(WHY in e.message for e in exc.errors)


async def _book_async(text: str) -> Book:
    return Book.model_validate_json(text)


@pytest.mark.parametrize("validator", [BOOK, _book_async], ids=["sync", "async"])
async def test_a_ladder_repairs_a_truncated_answer_for_any_provider(
    virtual_clock: VirtualClock, validator: Any
) -> None:
    asked: list[tuple[str, ...] | None] = []

    async def answer(request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        asked.append(request.fields)
        if request.fields is None:
            meta = sr.ResponseMeta(finish_reason="length", truncated=True)
            return sr.Response(DUNE, meta=meta)
        return sr.Response('{"authors": ["Frank Herbert"], "publisher": "Chilton"}')

    runner = sr.Runner(
        sr.Plan.ladder(), from_callable(answer), validator=validator, clock=virtual_clock
    )
    batch = await runner.run([ITEM])

    (result,) = batch.results
    assert result.ok
    assert result.prompts == 2
    assert asked == [None, (("authors",), ("publisher",))]
    assert result.output == Book(
        title="Dune", year=1965, authors=["Frank Herbert"], publisher="Chilton"
    )
    error = result.attempts[0].error
    assert error is not None
    assert "authors: cut off by the output token limit (finish reason length)" in error


def test_the_journal_keeps_the_truncated_flag() -> None:
    attempt = sr.Attempt("full_t0", sr.OutcomeKind.INVALID, 1, True, meta=CUT, error=WHY)
    result = sr.ItemResult("b1", sr.ItemStatus.EXHAUSTED, attempts=(attempt,))
    again = result_from_json(json.loads(json.dumps(result_to_json(result))))
    assert again.attempts[0].meta == CUT
    # A journal written before the flag existed reads as not truncated.
    old = result_to_json(result)
    del old["attempts"][0]["meta"]["truncated"]
    assert result_from_json(old).attempts[0].meta == sr.ResponseMeta(finish_reason="MAX_TOKENS")


@pytest.mark.parametrize("key", ["", "a.b", "a/b"])
def test_a_cut_member_is_named_by_its_own_key_whatever_it_is(key: str) -> None:
    # An empty key is a field like any other: cut, it is re-asked, never read as the whole
    # answer (which would leave a partial stage nothing to repair).
    text = '{"title": "Dune", ' + json.dumps(key) + ': "Frank Her'
    error = failure(sr.FullStage(), cut(text), state())
    assert [e.path for e in error.errors if e.message == WHY] == [(key,)]
    assert (key,) in repairable_fields(tuple(error.errors))
