"""Validator adapters: errors by dotted path and the valid part kept for a partial stage."""

from __future__ import annotations

import json
from typing import Any

import pydantic
import pytest

import stagedretry as sr
from stagedretry import FieldError, FieldErrorKind, ValidationFailed, validators


class Address(pydantic.BaseModel):
    city: str
    zip: int


class Book(pydantic.BaseModel):
    title: str
    year: int
    tags: list[str] = []
    address: Address | None = None


class Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    title: str


def failure(validator: Any, text: str) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        validator(text)
    return caught.value


class TestPydantic:
    def test_valid_answer_gives_the_model(self) -> None:
        book = validators.pydantic(Book)('{"title": "Dune", "year": 1965, "tags": ["sf"]}')

        assert book == Book(title="Dune", year=1965, tags=["sf"])

    def test_errors_by_path_and_the_valid_rest_kept(self) -> None:
        text = json.dumps(
            {
                "title": "Dune",
                "year": "nineteen",
                "tags": ["sf", 3],
                "address": {"city": "Arrakeen", "zip": "none"},
            }
        )

        exc = failure(validators.pydantic(Book), text)

        assert [e.path for e in exc.errors] == [("year",), ("tags", 1), ("address", "zip")]
        assert all(e.message for e in exc.errors)
        # Objects keep their valid keys; an array with a bad element is re-asked whole.
        assert exc.partial == {"title": "Dune", "address": {"city": "Arrakeen"}}
        assert exc.text == text

    def test_missing_field(self) -> None:
        exc = failure(validators.pydantic(Book), '{"year": 1965}')

        assert exc.errors == (FieldError("title", "Field required"),)
        assert exc.partial == {"year": 1965}

    def test_extra_field_forbidden_is_an_error_at_its_path(self) -> None:
        exc = failure(validators.pydantic(Strict), '{"title": "t", "junk": 1}')

        assert [(e.path, e.kind) for e in exc.errors] == [(("junk",), FieldErrorKind.FORBIDDEN)]
        assert exc.partial == {"title": "t"}

    @pytest.mark.parametrize("text", ["not json", '{"title": ', "[1, 2]", '"Dune"', "null"])
    def test_unparseable_or_not_an_object_keeps_nothing(self, text: str) -> None:
        exc = failure(validators.pydantic(Book), text)

        assert exc.partial is None
        assert [e.path for e in exc.errors] == [()]
        assert exc.text == text

    def test_whole_answer_error_keeps_nothing(self) -> None:
        class Pair(pydantic.BaseModel):
            low: int
            high: int

            @pydantic.model_validator(mode="after")
            def ordered(self) -> Pair:
                if self.low > self.high:
                    raise ValueError("low above high")
                return self

        exc = failure(validators.pydantic(Pair), '{"low": 5, "high": 1}')

        assert [e.path for e in exc.errors] == [()]
        assert exc.partial is None

    def test_message_summarises_the_fields(self) -> None:
        exc = failure(validators.pydantic(Book), '{"year": "x"}')

        assert str(exc).startswith("2 invalid field(s): ")
        assert "/title: Field required" in str(exc)

    def test_repr(self) -> None:
        assert repr(validators.pydantic(Book)) == "pydantic(Book)"


class TestJsonObject:
    def test_without_a_check_returns_the_object(self) -> None:
        assert validators.json_object()('{"a": [1, {"b": null}]}') == {"a": [1, {"b": None}]}

    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("{oops}", "not valid JSON: "),
            ("", "not valid JSON: "),
            ("[1]", "expected a JSON object, got list"),
            ("3", "expected a JSON object, got int"),
        ],
    )
    def test_not_an_object(self, text: str, problem: str) -> None:
        exc = failure(validators.json_object(), text)

        assert len(exc.errors) == 1
        assert exc.errors[0].path == ()
        assert exc.errors[0].message.startswith(problem)
        assert exc.partial is None
        assert exc.text == text

    def test_check_returns_the_output(self) -> None:
        def check(data: dict[str, Any]) -> tuple[str, int]:
            return data["title"], data["year"]

        assert validators.json_object(check)('{"title": "Dune", "year": 1965}') == ("Dune", 1965)

    def test_check_names_the_fields_and_gets_the_text(self) -> None:
        def check(data: dict[str, Any]) -> dict[str, Any]:
            if not isinstance(data.get("year"), int):
                raise ValidationFailed([FieldError("year", "not a number")], {"title": "Dune"})
            return data

        text = '{"title": "Dune", "year": "soon"}'

        exc = failure(validators.json_object(check), text)

        assert exc.errors == (FieldError("year", "not a number"),)
        assert exc.partial == {"title": "Dune"}
        assert exc.text == text

    def test_check_keeps_its_own_text(self) -> None:
        def check(data: dict[str, Any]) -> dict[str, Any]:
            raise ValidationFailed([FieldError("a", "bad")], None, text="the check's view")

        assert failure(validators.json_object(check), '{"a": 1}').text == "the check's view"


class TestValidationFailed:
    def test_summary_shows_five_and_counts_the_rest(self) -> None:
        errors = [FieldError(f"f{i}", "bad") for i in range(7)]

        exc = ValidationFailed(errors)

        assert str(exc) == (
            "7 invalid field(s): /f0: bad; /f1: bad; /f2: bad; /f3: bad; /f4: bad (+2 more)"
        )
        assert exc.partial is None
        assert isinstance(exc, sr.StagedRetryError)

    def test_whole_answer_is_named(self) -> None:
        assert str(ValidationFailed([FieldError("", "empty")])) == (
            "1 invalid field(s): <answer>: empty"
        )


def test_json_schema_names_every_bad_field_and_keeps_the_rest() -> None:
    """The JSON Schema validator reports each bad field by path and keeps the valid ones."""
    validate = sr.validators.json_schema(
        {
            "type": "object",
            "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
            "required": ["title", "year"],
        }
    )
    assert validate('{"title": "Dune", "year": 1965}') == {"title": "Dune", "year": 1965}
    with pytest.raises(sr.ValidationFailed) as caught:
        validate('{"title": "Dune", "year": "soon"}')
    assert [e.path for e in caught.value.errors] == [("year",)]
    assert caught.value.partial == {"title": "Dune"}


def test_json_schema_refuses_an_invalid_schema_up_front() -> None:
    """A schema its own draft's meta-schema refuses fails when the validator is built."""
    with pytest.raises(ValueError, match="minLength"):
        sr.validators.json_schema({"type": "object", "minLength": -1})
