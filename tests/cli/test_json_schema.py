"""The JSON Schema validator behind ``output.schema``: every bad field named by path."""

from __future__ import annotations

import json

import pytest

from stagedretry import ValidationFailed
from stagedretry._schema import SchemaValidator, check_schema

SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 10},
        "year": {"type": "integer", "minimum": 1450, "maximum": 2025},
        "price": {"type": "number", "exclusiveMinimum": 0},
        "genre": {"$ref": "#/$defs/genre"},
        "tags": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-z]+$"},
            "maxItems": 2,
        },
        "isbn": {"type": "string", "nullable": True},
        "meta": {
            "type": "object",
            "properties": {"pages": {"type": "integer"}},
            "required": ["pages"],
            "additionalProperties": False,
        },
        "either": {"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["n/a"]}]},
    },
    "required": ["title", "year"],
    "$defs": {"genre": {"type": "string", "enum": ["fiction", "poetry"]}},
}
GOOD = {
    "title": "Quiet",
    "year": 1999,
    "price": 9.5,
    "genre": "poetry",
    "tags": ["sea"],
    "isbn": None,
    "meta": {"pages": 120},
    "either": "n/a",
}


def test_a_valid_answer_passes() -> None:
    assert SchemaValidator(SCHEMA)(json.dumps(GOOD)) == GOOD


@pytest.mark.parametrize(
    ("field", "value", "path", "message"),
    [
        ("title", "", "title", "at least 1 characters"),
        ("title", "x" * 11, "title", "at most 10 characters"),
        ("title", 5, "title", "expected string, got the number 5"),
        ("year", 1200, "year", "must be >= 1450"),
        ("year", 2030.0, "year", "must be <= 2025"),
        ("year", True, "year", "expected integer, got the boolean true"),
        ("price", 0, "price", "must be > 0"),
        ("genre", "drama", "genre", "expected one of 'fiction', 'poetry'"),
        ("tags", ["a", "b", "c"], "tags", "at most 2 items"),
        ("tags", ["ok", "Bad"], "tags.1", "does not match"),
        ("isbn", 12, "isbn", "expected string, got the number 12"),
        ("meta", {"pages": 1, "extra": 2}, "meta.extra", "not allowed"),
        ("meta", {}, "meta.pages", "missing"),
        ("either", 1.5, "either", "matches none of the allowed forms"),
    ],
)
def test_each_violation_is_named_by_path_and_the_rest_is_kept(
    field: str, value: object, path: str, message: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        SchemaValidator(SCHEMA)(json.dumps({**GOOD, field: value}))
    assert [(e.path, message in e.message) for e in caught.value.errors] == [(path, True)]
    assert caught.value.partial == {k: v for k, v in GOOD.items() if k != field}


def test_a_missing_required_field_and_a_non_object() -> None:
    with pytest.raises(ValidationFailed) as caught:
        SchemaValidator(SCHEMA)(json.dumps({"title": "T"}))
    assert [(e.path, e.message) for e in caught.value.errors] == [("year", "missing")]
    with pytest.raises(ValidationFailed) as whole:
        SchemaValidator(SCHEMA)("[1]")
    assert whole.value.partial is None


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "oneOf": []}, "#: unsupported keyword 'oneOf'"),
        (
            {"type": "object", "properties": {"a": {"type": "text"}}},
            "#.properties.a.type: unknown type 'text'",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}},
            "cannot resolve '#/$defs/x'",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}},
            "not a regular expression",
        ),
    ],
)
def test_unsupported_schemas_are_refused_up_front(schema: dict[str, object], problem: str) -> None:
    found = check_schema(schema)
    assert found is not None
    assert problem in found
    with pytest.raises(ValueError, match=r"unsupported|unknown|cannot|regular"):
        SchemaValidator(schema)
