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
import jsonschema_specifications  # type: ignore[import-untyped]  # jsonschema's own dependency
import referencing
import referencing.exceptions
from jsonschema.exceptions import ValidationError
from referencing.jsonschema import DRAFT202012, specification_with

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
    _check_refs(schema)
    # The bundled meta-schemas and nothing else: a $ref is never fetched (an unbounded
    # wait, and a request the schema's author may not have meant).
    return _with_nullable(base)(schema, registry=_BUNDLED)


_BUNDLED: Final[referencing.Registry[Any]] = jsonschema_specifications.REGISTRY
_NOT_SCHEMAS: Final = frozenset({"enum", "const", "default", "examples"})
_REFS: Final = ("$ref", "$dynamicRef")
# Keywords that apply their subschemas to the same value: a cycle through them never ends.
_IN_PLACE_LISTS: Final = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE: Final = ("not", "if", "then", "else")

# referencing's Resolver is not among its public names: held as Any.
_Resolver = Any
_Node = tuple[Mapping[str, Any], _Resolver, FieldPath]


def _check_refs(schema: Mapping[str, Any]) -> None:
    """Every ``$ref`` resolves within the schema (or to a bundled meta-schema), and no chain of
    references loops back to where it started without reading any of the answer.

    Checked when the validator is built: at the first answer, jsonschema would fetch an
    unknown URI, or recurse until ``RecursionError``.
    """
    dialect = schema.get("$schema")
    specification = (
        specification_with(dialect, default=DRAFT202012)
        if isinstance(dialect, str)
        else DRAFT202012
    )
    resource = specification.create_resource(schema)
    uri = resource.id() or ""
    resolver = _BUNDLED.with_resource(uri, resource).resolver(base_uri=uri)
    nodes: list[_Node] = []
    stack: list[tuple[object, _Resolver, FieldPath]] = [(schema, resolver, ())]
    while stack:
        node, here, where = stack.pop()
        if isinstance(node, list):
            stack.extend((v, here, (*where, i)) for i, v in enumerate(node))
            continue
        if not isinstance(node, Mapping):
            continue
        if where and isinstance(node.get("$id"), str):
            here = here.in_subresource(specification.create_resource(node))
        nodes.append((node, here, where))
        for key, value in node.items():
            if key in _REFS and isinstance(value, str):
                try:
                    here.lookup(value)
                except referencing.exceptions.Unresolvable:
                    raise ValueError(
                        f"#{json_pointer((*where, key))}: cannot resolve {key} {value!r}"
                        " (only references within the schema are followed)"
                    ) from None
            elif key not in _NOT_SCHEMAS:
                stack.append((value, here, (*where, key)))
    _check_loops(nodes)


def _in_place(node: Mapping[str, Any], here: _Resolver) -> Iterator[_Node]:
    """The subschemas applied to the same value as *node*, each with its resolver."""
    for key in _REFS:
        ref = node.get(key)
        if isinstance(ref, str):
            found = here.lookup(ref)
            if isinstance(found.contents, Mapping):
                yield found.contents, found.resolver, ()
    for key in _IN_PLACE_LISTS:
        branches = node.get(key)
        if isinstance(branches, list):
            yield from ((b, here, ()) for b in branches if isinstance(b, Mapping))
    for key in _IN_PLACE_ONE:
        sub = node.get(key)
        if isinstance(sub, Mapping):
            yield sub, here, ()


def _check_loops(nodes: list[_Node]) -> None:
    """Depth-first over the in-place edges, iterative: a back edge is a loop."""
    done: set[int] = set()
    for start, resolver, where in nodes:
        if id(start) in done:
            continue
        open_: set[int] = {id(start)}
        path: list[tuple[int, Iterator[_Node]]] = [(id(start), _in_place(start, resolver))]
        while path:
            key, edges = path[-1]
            step = next(edges, None)
            if step is None:
                path.pop()
                open_.discard(key)
                done.add(key)
                continue
            node, here, _ = step
            if id(node) in open_:
                raise ValueError(
                    f"#{json_pointer(where)}: its $ref loops back to itself without reading"
                    " any of the answer"
                )
            if id(node) not in done:
                open_.add(id(node))
                path.append((id(node), _in_place(node, here)))


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
