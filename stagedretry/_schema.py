"""A small JSON Schema validator for structured answers, reporting every bad field by path.

It covers the part of JSON Schema a model's response schema uses (types,
``properties``/``required``, ``items``, ``enum``, lengths, ranges, ``pattern``,
``anyOf``, ``nullable`` and local ``$ref``); :func:`check_schema` refuses any
other keyword up front, so nothing is silently left unchecked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

from ._describe import describe
from ._outcomes import FieldError, ValidationFailed

_ANNOTATIONS: Final = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "format",
        "propertyOrdering",
        "$schema",
        "$id",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
    }
)
_CHECKED: Final = frozenset(
    {
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "pattern",
        "anyOf",
        "nullable",
        "$ref",
        "$defs",
        "definitions",
    }
)
_TYPES: Final = frozenset({"string", "integer", "number", "boolean", "array", "object", "null"})


def parse_json_object(text: str) -> dict[str, Any]:
    """Parse *text* as a JSON object, or raise ``ValidationFailed`` with nothing to keep."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationFailed(
            [FieldError("", f"not valid JSON: {exc.args[0] if exc.args else exc}")], None, text=text
        ) from None
    if not isinstance(data, dict):
        raise ValidationFailed(
            [FieldError("", f"expected a JSON object, got {type(data).__name__}")], None, text=text
        )
    return data


def check_schema(schema: Mapping[str, Any]) -> str | None:
    """``None`` when *schema* only uses supported keywords, else what is wrong and where."""
    return _check(schema, schema, "#", 0)


def _check(node: object, root: Mapping[str, Any], where: str, depth: int) -> str | None:
    if depth > 32:
        return f"{where}: nested too deeply"
    if not isinstance(node, Mapping):
        return f"{where}: a schema must be an object"
    for key in node:
        if key not in _CHECKED and key not in _ANNOTATIONS:
            return f"{where}: unsupported keyword {key!r}"
    kinds = node.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds] if kinds is not None else []:
        if kind not in _TYPES:
            return f"{where}.type: unknown type {kind!r}"
    if "pattern" in node:
        try:
            re.compile(node["pattern"])
        except (re.error, TypeError) as exc:
            return f"{where}.pattern: not a regular expression ({exc})"
    if "$ref" in node and _resolve(root, node["$ref"]) is None:
        return f"{where}.$ref: cannot resolve {node['$ref']!r} (only local #/... references)"
    children: list[tuple[str, object]] = []
    for name, child in (node.get("properties") or {}).items():
        children.append((f"{where}.properties.{name}", child))
    for key in ("$defs", "definitions"):
        for name, child in (node.get(key) or {}).items():
            children.append((f"{where}.{key}.{name}", child))
    if isinstance(node.get("items"), Mapping):
        children.append((f"{where}.items", node["items"]))
    if isinstance(node.get("additionalProperties"), Mapping):
        children.append((f"{where}.additionalProperties", node["additionalProperties"]))
    for i, child in enumerate(node.get("anyOf") or []):
        children.append((f"{where}.anyOf[{i}]", child))
    for path, child in children:
        problem = _check(child, root, path, depth + 1)
        if problem is not None:
            return problem
    return None


def _resolve(root: Mapping[str, Any], ref: object) -> Mapping[str, Any] | None:
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    node: Any = root
    for token in ref[1:].strip("/").split("/"):
        if not token:
            continue
        key = token.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, Mapping) else None


def _type_ok(kind: str, value: object) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


class SchemaValidator:
    """A validator (``text -> dict``) for one JSON Schema; bad fields are named by dotted path."""

    __slots__ = ("_root",)

    def __init__(self, schema: Mapping[str, Any]) -> None:
        problem = check_schema(schema)
        if problem is not None:
            raise ValueError(problem)
        self._root = schema

    def __call__(self, text: str) -> dict[str, Any]:
        data = parse_json_object(text)
        errors: list[FieldError] = []
        self._walk(self._root, data, "", errors)
        if errors:
            failed = {e.path.split(".", 1)[0] for e in errors}
            partial = None if "" in failed else {k: v for k, v in data.items() if k not in failed}
            raise ValidationFailed(errors, partial, text=text)
        return data

    def fingerprint_data(self) -> Mapping[str, object]:
        """The schema itself."""
        return {"schema": self._root}

    def errors(self, value: object) -> list[FieldError]:
        """Every violation in *value* (already parsed)."""
        errors: list[FieldError] = []
        self._walk(self._root, value, "", errors)
        return errors

    def _walk(
        self, node: Mapping[str, Any], value: object, path: str, out: list[FieldError]
    ) -> None:
        while "$ref" in node:
            target = _resolve(self._root, node["$ref"])
            assert target is not None  # checked by check_schema
            node = target
        if value is None and node.get("nullable") is True:
            return
        if "anyOf" in node:
            for branch in node["anyOf"]:
                trial: list[FieldError] = []
                self._walk(branch, value, path, trial)
                if not trial:
                    break
            else:
                out.append(FieldError(path, "matches none of the allowed forms"))
                return
        kinds = node.get("type")
        if kinds is not None:
            wanted = kinds if isinstance(kinds, list) else [kinds]
            if not any(_type_ok(k, value) for k in wanted):
                out.append(
                    FieldError(path, f"expected {' or '.join(wanted)}, got {describe(value)}")
                )
                return
        if "const" in node and value != node["const"]:
            out.append(FieldError(path, f"expected {node['const']!r}"))
        if "enum" in node and value not in node["enum"]:
            shown = ", ".join(repr(v) for v in node["enum"][:8])
            out.append(FieldError(path, f"expected one of {shown}, got {value!r}"))
            return
        if isinstance(value, str):
            self._string(node, value, path, out)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            self._number(node, value, path, out)
        elif isinstance(value, list):
            self._array(node, value, path, out)
        elif isinstance(value, dict):
            self._object(node, value, path, out)

    def _string(
        self, node: Mapping[str, Any], value: str, path: str, out: list[FieldError]
    ) -> None:
        if "minLength" in node and len(value) < node["minLength"]:
            out.append(FieldError(path, f"at least {node['minLength']} characters"))
        if "maxLength" in node and len(value) > node["maxLength"]:
            out.append(FieldError(path, f"at most {node['maxLength']} characters"))
        if "pattern" in node and re.search(node["pattern"], value) is None:
            out.append(FieldError(path, f"does not match {node['pattern']!r}"))

    def _number(
        self, node: Mapping[str, Any], value: float, path: str, out: list[FieldError]
    ) -> None:
        if "minimum" in node and value < node["minimum"]:
            out.append(FieldError(path, f"must be >= {node['minimum']}"))
        if "maximum" in node and value > node["maximum"]:
            out.append(FieldError(path, f"must be <= {node['maximum']}"))
        low = node.get("exclusiveMinimum")
        if isinstance(low, int | float) and not isinstance(low, bool) and value <= low:
            out.append(FieldError(path, f"must be > {low}"))
        high = node.get("exclusiveMaximum")
        if isinstance(high, int | float) and not isinstance(high, bool) and value >= high:
            out.append(FieldError(path, f"must be < {high}"))

    def _array(
        self, node: Mapping[str, Any], value: list[Any], path: str, out: list[FieldError]
    ) -> None:
        if "minItems" in node and len(value) < node["minItems"]:
            out.append(FieldError(path, f"at least {node['minItems']} items"))
        if "maxItems" in node and len(value) > node["maxItems"]:
            out.append(FieldError(path, f"at most {node['maxItems']} items"))
        items = node.get("items")
        if isinstance(items, Mapping):
            for i, element in enumerate(value):
                self._walk(items, element, _join(path, str(i)), out)

    def _object(
        self, node: Mapping[str, Any], value: dict[str, Any], path: str, out: list[FieldError]
    ) -> None:
        properties: Mapping[str, Any] = node.get("properties") or {}
        for name in node.get("required") or ():
            if name not in value:
                out.append(FieldError(_join(path, name), "missing"))
        extra = node.get("additionalProperties", True)
        for name, child in value.items():
            if name in properties:
                self._walk(properties[name], child, _join(path, name), out)
            elif extra is False:
                out.append(FieldError(_join(path, name), "not allowed"))
            elif isinstance(extra, Mapping):
                self._walk(extra, child, _join(path, name), out)

    def __repr__(self) -> str:
        return f"SchemaValidator({self._root.get('title', 'schema')!r})"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
