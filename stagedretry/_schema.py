"""JSON Schema validation of structured answers, by the ``jsonschema`` package.

The schema's own ``$schema`` picks the draft (Draft 2020-12 when it names none).
What this module adds on top is what the engine needs from a failure: every
bad field as a :data:`~stagedretry.FieldPath` taken from the error tree
(``absolute_path``, the missing key of ``required``, the forbidden keys of
``additionalProperties: false``, the branch that fits inside ``anyOf``/``oneOf``),
and the part of the answer that is valid and may be kept while the rest is
re-asked.

One extension beyond the standard: ``"nullable": true`` (the OpenAPI keyword
that model response schemas use) lets ``null`` pass a ``type`` check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

import jsonschema
import jsonschema.validators
from jsonschema.exceptions import ValidationError

from ._limits import check_depth, loads
from ._outcomes import FieldError, FieldErrorKind, FieldPath, ValidationFailed, json_pointer
from ._stages import kept_part

#: Validators by class, extended once each with ``nullable`` (``extend`` builds a new class).
_NULLABLE: dict[type[Any], type[Any]] = {}
_BRANCHING: Final = frozenset({"anyOf", "oneOf"})


def parse_json_object(text: str) -> dict[str, Any]:
    """Parse *text* as a JSON object, or raise ``ValidationFailed`` with nothing to keep.

    Strict JSON within the limits of :mod:`stagedretry._limits`: no ``NaN`` or
    ``Infinity``, at most 64 levels deep.
    """
    try:
        data = loads(text)
    except ValueError as exc:
        raise ValidationFailed(
            [FieldError("", f"not valid JSON: {exc.args[0] if exc.args else exc}")], None, text=text
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed(
            [FieldError("", f"expected a JSON object, got {type(data).__name__}")], None, text=text
        )
    return data


def _with_nullable(base: type[Any]) -> type[Any]:
    found = _NULLABLE.get(base)
    if found is None:
        check_type = base.VALIDATORS["type"]

        def nullable_type(
            validator: Any, types: Any, instance: Any, schema: Mapping[str, Any]
        ) -> Iterator[ValidationError]:
            if instance is None and schema.get("nullable") is True:
                return
            yield from check_type(validator, types, instance, schema)

        found = jsonschema.validators.extend(base, {"type": nullable_type})  # type: ignore[no-untyped-call]
        _NULLABLE[base] = found
    return found


def _compile(schema: Mapping[str, Any]) -> Any:
    # jsonschema walks a schema recursively: a deeper one is refused before it can overflow.
    check_depth(schema)
    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        base.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        raise ValueError(f"#{json_pointer(tuple(exc.absolute_path))}: {exc.message}") from None
    for where, ref in _local_refs(schema, ()):
        if _lookup(schema, ref) is None:
            raise ValueError(f"#{json_pointer(where)}: cannot resolve $ref {ref!r}")
    return _with_nullable(base)(schema)


def _local_refs(node: object, where: FieldPath) -> Iterator[tuple[FieldPath, str]]:
    """Every ``"#/..."`` reference, checked up front so a typo fails when the validator is built."""
    if isinstance(node, Mapping):
        if "$id" in node and where:
            return  # a nested resource has its own base: jsonschema resolves those
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#"):
                yield (*where, key), value
            elif key not in ("enum", "const", "default", "examples"):
                yield from _local_refs(value, (*where, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _local_refs(value, (*where, i))


def _lookup(root: Mapping[str, Any], ref: str) -> object | None:
    if not ref.startswith("#/") and ref != "#":
        return root  # an anchor ("#name"): left to jsonschema
    node: object = root
    for token in ref[2:].split("/") if ref != "#" else ():
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def _message(error: ValidationError) -> str:
    if error.validator in _BRANCHING and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        if best is not None:
            return f"matches none of the allowed forms ({best.message})"
    return str(error.message)


def field_errors(errors: Iterable[ValidationError]) -> list[FieldError]:
    """The engine's view of jsonschema's errors: one :class:`FieldError` per failing leaf."""
    out: dict[tuple[FieldPath, FieldErrorKind], FieldError] = {}
    for error in errors:
        for found in _leaves(error):
            out.setdefault((found.path, found.kind), found)
    return list(out.values())


def _leaves(error: ValidationError) -> Iterator[FieldError]:
    path: FieldPath = tuple(error.absolute_path)
    instance = error.instance
    wanted: Any = error.validator_value
    if error.validator == "required" and isinstance(instance, Mapping):
        # jsonschema reports the object; the field to ask for is the missing key.
        for name in wanted:
            if isinstance(name, str) and name not in instance:
                yield FieldError((*path, name), "missing")
        return
    if (
        error.validator == "additionalProperties"
        and wanted is False
        and isinstance(instance, Mapping)
        and isinstance(error.schema, Mapping)
    ):
        for name in _extra_keys(error.schema, instance):
            yield FieldError((*path, name), "not allowed", kind=FieldErrorKind.FORBIDDEN)
        return
    if error.validator in _BRANCHING and error.context:
        fitting = _fitting_branch(error, path)
        if fitting is not None:
            # Only one branch has the answer's type (a nullable object, say): its own
            # errors name the failing leaves, so those are re-asked, not the whole value.
            for inner in fitting:
                yield from _leaves(inner)
            return
    yield FieldError(path, _message(error))


def _fitting_branch(error: ValidationError, path: FieldPath) -> list[ValidationError] | None:
    """The errors of the one ``anyOf``/``oneOf`` branch the value's own shape fits, if one.

    A branch fits when all its errors lie below the value (its type, required keys and
    the like hold); a ``false`` branch, whose error has no schema path, never fits.
    """
    branches: dict[object, list[ValidationError]] = {}
    for inner in error.context or ():
        key = inner.relative_schema_path[0] if inner.relative_schema_path else id(inner)
        branches.setdefault(key, []).append(inner)
    fitting = [
        errors
        for errors in branches.values()
        if all(len(e.absolute_path) > len(path) for e in errors)
    ]
    return fitting[0] if len(fitting) == 1 else None


def _extra_keys(schema: Mapping[str, Any], instance: Mapping[str, Any]) -> list[str]:
    properties = schema.get("properties") or {}
    patterns = [re.compile(p) for p in schema.get("patternProperties") or {}]
    return [
        key
        for key in instance
        if key not in properties and not any(p.search(key) for p in patterns)
    ]


class SchemaValidator:
    """A validator (``text -> dict``) for one JSON Schema; bad fields are named by path."""

    __slots__ = ("_root", "_validator")

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self._validator = _compile(schema)
        self._root = schema

    def __call__(self, text: str) -> dict[str, Any]:
        data = parse_json_object(text)
        errors = field_errors(self._validator.iter_errors(data))
        if errors:
            raise ValidationFailed(errors, kept_part(data, errors), text=text)
        return data

    def fingerprint_data(self) -> Mapping[str, object]:
        """The schema itself."""
        return {"schema": self._root}

    def __repr__(self) -> str:
        return f"SchemaValidator({self._root.get('title', 'schema')!r})"
