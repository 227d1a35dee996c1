"""The JSON Schema validator behind ``output.schema``: every bad field named by path."""

from __future__ import annotations

import json

import pytest

from stagedretry import FieldErrorKind, ValidationFailed
from stagedretry._schema import SchemaValidator

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
        ("title", "", ("title",), "should be non-empty"),
        ("title", "x" * 11, ("title",), "is too long"),
        ("title", 5, ("title",), "5 is not of type 'string'"),
        ("year", 1200, ("year",), "less than the minimum of 1450"),
        ("year", 2030.0, ("year",), "greater than the maximum of 2025"),
        ("year", True, ("year",), "is not of type 'integer'"),
        ("price", 0, ("price",), "less than or equal to the minimum of 0"),
        ("genre", "drama", ("genre",), "is not one of ['fiction', 'poetry']"),
        ("tags", ["a", "b", "c"], ("tags",), "is too long"),
        ("tags", ["ok", "Bad"], ("tags", 1), "does not match"),
        ("isbn", 12, ("isbn",), "12 is not of type 'string'"),
        ("either", 1.5, ("either",), "matches none of the allowed forms"),
    ],
)
def test_each_violation_is_named_by_path_and_the_rest_is_kept(
    field: str, value: object, path: tuple[str | int, ...], message: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        SchemaValidator(SCHEMA)(json.dumps({**GOOD, field: value}))
    assert [(e.path, message in e.message) for e in caught.value.errors] == [(path, True)]
    assert caught.value.partial == {k: v for k, v in GOOD.items() if k != field}


def test_nested_failures_keep_the_valid_siblings() -> None:
    with pytest.raises(ValidationFailed) as extra:
        SchemaValidator(SCHEMA)(json.dumps({**GOOD, "meta": {"pages": 1, "extra": 2}}))
    assert [(e.path, e.message, e.kind) for e in extra.value.errors] == [
        (("meta", "extra"), "not allowed", FieldErrorKind.FORBIDDEN)
    ]
    assert extra.value.partial == {**GOOD, "meta": {"pages": 1}}
    with pytest.raises(ValidationFailed) as missing:
        SchemaValidator(SCHEMA)(json.dumps({**GOOD, "meta": {}}))
    assert [(e.path, e.message) for e in missing.value.errors] == [(("meta", "pages"), "missing")]
    assert missing.value.partial == {**GOOD, "meta": {}}


def test_a_missing_required_field_and_a_non_object() -> None:
    with pytest.raises(ValidationFailed) as caught:
        SchemaValidator(SCHEMA)(json.dumps({"title": "T"}))
    assert [(e.path, e.message) for e in caught.value.errors] == [(("year",), "missing")]
    with pytest.raises(ValidationFailed) as whole:
        SchemaValidator(SCHEMA)("[1]")
    assert whole.value.partial is None


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ({"type": "object", "oneOf": []}, "#/oneOf: [] should be non-empty"),
        (
            {"type": "object", "properties": {"a": {"type": "text"}}},
            "#/properties/a/type: 'text' is not valid",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "#/$defs/x"}}},
            "cannot resolve $ref '#/$defs/x'",
        ),
        (
            {"type": "object", "properties": {"a": {"type": "string", "pattern": "("}}},
            "#/properties/a/pattern: '(' is not a 'regex'",
        ),
    ],
)
def test_invalid_schemas_are_refused_up_front(schema: dict[str, object], problem: str) -> None:
    with pytest.raises(ValueError, match=r"not valid|non-empty|cannot resolve|regex") as caught:
        SchemaValidator(schema)
    assert problem in str(caught.value)


def test_enum_and_const_respect_json_types() -> None:
    # JSON booleans are not numbers, so true is not 1; but 1.0 and 1 are one JSON number.
    schema = {
        "type": "object",
        "properties": {"n": {"enum": [0, 1, 2]}, "c": {"const": 1}, "f": {"const": False}},
    }
    validate = SchemaValidator(schema)
    for bad in ({"n": True}, {"c": True}, {"f": 0}):
        with pytest.raises(ValidationFailed):
            validate(json.dumps(bad))
    assert validate(json.dumps({"n": 1, "c": 1.0, "f": False})) == {"n": 1, "c": 1.0, "f": False}


def test_nullable_and_anyof_with_null_keep_working() -> None:
    schema = {
        "type": "object",
        "properties": {
            "a": {"type": "string", "nullable": True},
            "b": {"anyOf": [{"$ref": "#/$defs/pair"}, {"type": "null"}]},
        },
        "$defs": {
            "pair": {
                "type": "object",
                "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                "required": ["x", "y"],
            }
        },
    }
    validate = SchemaValidator(schema)
    assert validate('{"a": null, "b": null}') == {"a": None, "b": None}
    with pytest.raises(ValidationFailed) as caught:
        validate('{"a": "s", "b": {"x": 1, "y": "two"}}')
    # Only the object branch fits an object: its own failing leaf is named, not all of "b".
    assert [e.path for e in caught.value.errors] == [("b", "y")]
    assert caught.value.partial == {"a": "s", "b": {"x": 1}}
