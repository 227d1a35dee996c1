"""A validator's own ways of saying "invalid", and async validators (issue 9).

The validators here are what a user writes first: ``Book.model_validate_json``,
``jsonschema.validate``, a function raising ``ValueError``, an ``async def``.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pydantic
import pytest

import stagedretry as sr
from stagedretry import FieldError, OutcomeKind, ValidationFailed
from stagedretry._validating import CheckedValidator, as_validation_failure
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable


class Book(pydantic.BaseModel):
    title: str
    year: int


class Answers:
    """A ``from_callable`` strategy answering each request with the next text (the last repeats)."""

    def __init__(self, *texts: str) -> None:
        self.texts = texts
        self.sent: list[sr.Request] = []
        self.strategy = from_callable(self.call)

    async def call(self, request: sr.Request, ctx: sr.StageContext) -> str:
        self.sent.append(request)
        return self.texts[min(len(self.sent), len(self.texts)) - 1]


answers = Answers


async def run_one(texts: Answers, validator: Any, plan: sr.Plan | None = None) -> sr.ItemResult:
    runner = sr.Runner(
        plan or sr.Plan.ladder(), texts.strategy, validator=validator, clock=VirtualClock(), seed=1
    )
    return (await runner.run([("dune", "Catalogue Dune.")])).results[0]


def model_validate_json(text: str) -> Book:
    return Book.model_validate_json(text)


class TestPydanticValidationError:
    async def test_the_natural_idiom_advances_the_ladder_and_repairs_the_field(self) -> None:
        # The example: the first answer has a bad year; the partial stage asks only for it.
        strategy = answers('{"title": "A", "year": "nineteen"}', '{"year": 1965}')

        result = await run_one(strategy, lambda text: Book.model_validate_json(text))  # noqa: PLW0108

        assert result.ok
        assert result.output == Book(title="A", year=1965)
        assert [a.outcome for a in result.attempts] == [OutcomeKind.INVALID, OutcomeKind.SUCCEEDED]
        assert [a.stage for a in result.attempts] == ["full_t0", "partial_t0"]
        assert result.attempts[1].fields == (("year",),)
        assert strategy.sent[1].kept == {"title": "A"}
        assert result.prompts == 2

    def test_paths_come_from_errors_and_the_valid_fields_are_kept(self) -> None:
        text = '{"title": "A", "year": "nineteen"}'
        failed = failure(CheckedValidator(model_validate_json), text)
        assert [e.path for e in failed.errors] == [("year",)]
        assert failed.partial == {"title": "A"}
        assert failed.text == text
        # As the built-in adapter reads the same answer.
        built_in = failure(sr.validators.pydantic(Book), text)
        assert [e.path for e in built_in.errors] == [e.path for e in failed.errors]
        assert built_in.partial == failed.partial

    def test_unreadable_json_keeps_nothing(self) -> None:
        failed = failure(CheckedValidator(model_validate_json), '{"title": "A", "ye')
        assert [e.path for e in failed.errors] == [()]
        assert failed.partial is None

    def test_a_missing_field_is_named(self) -> None:
        failed = failure(CheckedValidator(model_validate_json), '{"title": "A"}')
        assert [e.path for e in failed.errors] == [("year",)]
        assert failed.partial == {"title": "A"}


class TestJsonSchemaValidationError:
    SCHEMA: dict[str, Any] = {  # noqa: RUF012
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "author": {
                "type": "object",
                "properties": {"born": {"type": "integer"}},
            },
        },
        "required": ["title"],
    }

    def validate(self, text: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(text)
        jsonschema.validate(data, self.SCHEMA)
        return data

    def test_its_absolute_path_names_the_field(self) -> None:
        text = '{"title": "Dune", "author": {"born": "1920"}}'
        failed = failure(CheckedValidator(self.validate), text)
        assert [e.path for e in failed.errors] == [("author", "born")]
        assert failed.errors[0].message == "'1920' is not of type 'integer'"
        # Kept down to the failing leaf: a partial stage re-asks author.born alone.
        assert failed.partial == {"title": "Dune", "author": {}}

    def test_a_missing_required_key_is_named_and_the_rest_kept(self) -> None:
        """Read as the json_schema adapter reads it: the missing key, not the whole answer."""
        failed = failure(CheckedValidator(self.validate), '{"author": {}}')
        assert [e.path for e in failed.errors] == [("title",)]
        assert failed.partial == {"author": {}}

    def test_an_error_about_the_whole_answer_keeps_nothing(self) -> None:
        failed = failure(CheckedValidator(self.validate), "[1, 2]")
        assert [e.path for e in failed.errors] == [()]
        assert failed.partial is None

    def test_a_key_additional_properties_refuses_is_mended_without_a_request(self) -> None:
        schema = {**self.SCHEMA, "additionalProperties": False}

        def validate(text: str) -> dict[str, Any]:
            data: dict[str, Any] = json.loads(text)
            jsonschema.validate(data, schema)
            return data

        failed = failure(CheckedValidator(validate), '{"title": "Dune", "confidence": 0.9}')
        assert [(e.path, e.kind) for e in failed.errors] == [
            (("confidence",), sr.FieldErrorKind.FORBIDDEN)
        ]

    async def test_it_advances_to_the_partial_stage(self) -> None:
        strategy = answers('{"title": 7}', '{"title": "Dune"}')
        result = await run_one(strategy, self.validate)
        assert result.ok
        assert result.attempts[1].fields == (("title",),)


class TestValueError:
    async def test_a_value_error_is_invalid_and_not_repairable(self) -> None:
        def year_is_an_int(text: str) -> dict[str, Any]:
            data: dict[str, Any] = json.loads(text)
            if not isinstance(data.get("year"), int):
                raise ValueError("year must be an int")
            return data

        strategy = answers('{"title": "A", "year": "nineteen"}', '{"title": "A", "year": 1965}')

        result = await run_one(strategy, year_is_an_int)

        assert result.ok
        # No field paths: the partial stage is skipped for the next full stage.
        assert [a.stage for a in result.attempts] == ["full_t0", "full_t25"]
        assert result.attempts[0].outcome is OutcomeKind.INVALID
        assert (
            result.attempts[0].error
            == "1 invalid field(s): <answer>: ValueError: year must be an int"
        )

    async def test_a_json_decode_error_is_invalid(self) -> None:
        strategy = answers("Sure! Here is the book: {", '{"title": "A"}')
        result = await run_one(strategy, json.loads)
        assert result.ok
        assert result.attempts[0].outcome is OutcomeKind.INVALID
        assert result.attempts[0].error is not None
        assert "<answer>: JSONDecodeError: Expecting value" in result.attempts[0].error

    def test_its_message_is_the_error_and_there_is_no_partial(self) -> None:
        failed = failure(CheckedValidator(json.loads), "nope")
        assert failed.errors == (
            FieldError("", "JSONDecodeError: Expecting value: line 1 column 1 (char 0)"),
        )
        assert failed.partial is None
        assert failed.text == "nope"


def year_of(text: str) -> int:
    return int(json.loads(text)["year"])


class TestBugsStayFatal:
    async def test_a_key_error_fails_the_item_naming_the_validator(self) -> None:
        result = await run_one(answers('{"title": "A"}'), year_of)
        assert result.status is sr.ItemStatus.FAILED
        assert result.prompts == 1
        assert result.reason == (f"the validator {__name__}.year_of raised KeyError: 'year'")

    def test_the_name_of_a_method_and_of_an_adapter(self) -> None:
        class Checks:
            def year(self, text: str) -> int:
                raise TypeError("oops")

            def __call__(self, text: str) -> int:
                raise TypeError("oops")

        with pytest.raises(sr.FatalError, match=r"Checks\.year raised TypeError: oops"):
            CheckedValidator(Checks().year)("{}")
        with pytest.raises(sr.FatalError, match=r"\.Checks raised TypeError"):
            CheckedValidator(Checks())("{}")

    def test_the_original_error_is_the_cause(self) -> None:
        with pytest.raises(sr.FatalError) as caught:
            CheckedValidator(year_of)("{}")
        assert isinstance(caught.value.__cause__, KeyError)

    def test_the_engines_own_exceptions_pass_through(self) -> None:
        def busy(text: str) -> int:
            raise sr.TransientError("lookup service busy")

        with pytest.raises(sr.TransientError, match="lookup service busy"):
            CheckedValidator(busy)("{}")

    def test_a_validation_failed_gets_the_text(self) -> None:
        def bad(text: str) -> int:
            raise ValidationFailed([FieldError("year", "no")], {})

        assert failure(CheckedValidator(bad), '{"year": 0}').text == '{"year": 0}'

    def test_other_exceptions_are_no_validation_failure(self) -> None:
        assert as_validation_failure(KeyError("x"), "{}") is None
        assert as_validation_failure(TypeError("x"), "{}") is None


async def lookup_book(text: str) -> Book:
    """An async validator, as one needing I/O (a catalogue lookup) is written."""
    return Book.model_validate_json(text)


class TestAsyncValidators:
    async def test_it_is_awaited_and_its_value_is_the_output(self) -> None:
        result = await run_one(answers('{"title": "Dune", "year": 1965}'), lookup_book)
        assert result.ok
        assert result.output == Book(title="Dune", year=1965)

    async def test_its_validation_error_advances_the_ladder(self) -> None:
        # The example: an invalid answer must never come out SUCCEEDED as a coroutine.
        strategy = answers('{"title": "A", "year": "nineteen"}', '{"year": 1965}')

        result = await run_one(strategy, lookup_book)

        assert [a.outcome for a in result.attempts] == [OutcomeKind.INVALID, OutcomeKind.SUCCEEDED]
        assert result.attempts[1].fields == (("year",),)
        assert result.output == Book(title="A", year=1965)

    async def test_it_may_await_io_on_the_runners_clock(self) -> None:
        clock = VirtualClock()

        async def slow_lookup(text: str) -> Book:
            await clock.sleep(2.0)
            return Book.model_validate_json(text)

        runner = sr.Runner(
            sr.Plan.ladder(),
            answers('{"title": "Dune", "year": 1965}').strategy,
            validator=slow_lookup,
            clock=clock,
        )
        result = (await runner.run([("dune", "p")])).results[0]
        assert result.ok
        assert result.attempts[0].duration == pytest.approx(2.0)

    async def test_a_bug_in_it_is_fatal_and_named(self) -> None:
        async def broken(text: str) -> Book:
            raise KeyError("catalogue")

        result = await run_one(answers("{}"), broken)
        assert result.status is sr.ItemStatus.FAILED
        assert "broken raised KeyError: 'catalogue'" in (result.reason or "")

    async def test_its_value_error_is_invalid(self) -> None:
        async def strict(text: str) -> dict[str, Any]:
            raise ValueError("not a book")

        result = await run_one(answers("{}"), strict, sr.Plan([sr.Stage("only")]))
        assert result.status is sr.ItemStatus.EXHAUSTED
        assert result.attempts[0].outcome is OutcomeKind.INVALID

    async def test_a_callable_instance_with_an_async_call(self) -> None:
        class Lookup:
            async def __call__(self, text: str) -> Book:
                return Book.model_validate_json(text)

        result = await run_one(answers('{"title": "Dune", "year": 1965}'), Lookup())
        assert result.output == Book(title="Dune", year=1965)

    async def test_an_awaitable_of_an_awaitable_is_never_an_output(self) -> None:
        async def twice(text: str) -> Any:
            return lookup_book(text)

        result = await run_one(answers('{"title": "Dune", "year": 1965}'), twice)
        assert result.status is sr.ItemStatus.FAILED
        assert "returned an awaitable of an awaitable" in (result.reason or "")


def failure(validator: Any, text: str) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        validator(text)
    return caught.value
