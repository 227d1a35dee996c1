"""Hostile JSON Schemas and answers: a schema that cannot work is refused when the validator
is built (``ValueError`` naming its place), never at an answer with a ``RecursionError``, a
fetch of a URI or an error of the ``referencing`` package; an answer never becomes ``inf``."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry import validators

REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    "root_loop": ({"$ref": "#"}, r"^#: its \$ref loops back"),
    "mutual_loop": (
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        r"loops back",
    ),
    "loop_through_all_of": (
        {
            "$defs": {"a": {"allOf": [{"type": "object"}, {"$ref": "#/$defs/a"}]}},
            "$ref": "#/$defs/a",
        },
        r"loops back",
    ),
    "loop_under_a_property": (
        {
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/x"}},
            "$defs": {"x": {"anyOf": [{"type": "string"}, {"not": {"$ref": "#/$defs/x"}}]}},
        },
        r"loops back",
    ),
    "remote": ({"$ref": "http://127.0.0.1:9/schema.json"}, r"^#/\$ref: cannot resolve \$ref"),
    "file": ({"properties": {"a": {"$ref": "file:///etc/passwd"}}}, r"^#/properties/a/\$ref"),
    "relative": ({"$ref": "other.json#/x"}, r"cannot resolve \$ref 'other.json#/x'"),
    "anchor": ({"$ref": "#nowhere"}, r"cannot resolve \$ref '#nowhere'"),
    "dynamic": ({"$dynamicRef": "#meta"}, r"^#/\$dynamicRef: cannot resolve"),
    "pointer": ({"$ref": "#/$defs/missing"}, r"cannot resolve \$ref '#/\$defs/missing'"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_schema_that_cannot_work_is_refused_when_built(name: str) -> None:
    schema, message = REFUSED[name]
    with pytest.raises(ValueError, match=message):
        validators.json_schema(schema)


WORKING: dict[str, dict[str, Any]] = {
    "recursive_tree": {
        "$defs": {
            "node": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
            }
        },
        "$ref": "#/$defs/node",
    },
    "nested_id": {
        "$id": "https://example.com/root.json",
        "$defs": {"s": {"$id": "s.json", "type": "string"}},
        "type": "object",
        "properties": {"a": {"$ref": "s.json"}},
    },
    "anchor": {
        "$defs": {"s": {"$anchor": "text", "type": "string"}},
        "type": "object",
        "properties": {"a": {"$ref": "#text"}},
    },
    "draft7": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"s": {"type": "string"}},
        "type": "object",
        "properties": {"a": {"$ref": "#/definitions/s"}},
    },
    "meta_schema": {"$ref": "https://json-schema.org/draft/2020-12/schema"},
}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(name=st.sampled_from(sorted(WORKING)), value=json_values)
def test_a_working_schema_with_references_judges_every_answer(name: str, value: Any) -> None:
    check = validators.json_schema(WORKING[name])
    text = json.dumps({"a": value, "kids": value})
    errors: tuple[sr.FieldError, ...] = ()
    try:
        check(text)
    except sr.ValidationFailed as failed:
        errors = tuple(failed.errors)
        assert errors


def test_references_resolve_to_their_targets() -> None:
    for name in ("nested_id", "anchor", "draft7"):
        check = validators.json_schema(WORKING[name])
        assert check('{"a": "x"}') == {"a": "x"}
        with pytest.raises(sr.ValidationFailed, match="is not of type 'string'"):
            check('{"a": 1}')


@pytest.mark.parametrize("number", ["1e999", "-1e999", "1E400", "123456789e999"])
@pytest.mark.parametrize(
    "check",
    [validators.json_object(), validators.json_schema({"type": "object"})],
    ids=["json_object", "json_schema"],
)
def test_a_number_too_large_for_a_float_is_invalid_not_inf(number: str, check: Any) -> None:
    with pytest.raises(sr.ValidationFailed, match="too large for a JSON number"):
        check(f'{{"a": {number}}}')


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_number_still_reads(number: float) -> None:
    got = validators.json_object()(json.dumps({"a": number}))
    assert got["a"] == number
    assert math.isfinite(got["a"])
