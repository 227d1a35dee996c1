"""A read-only view over a response schema, whichever dialect and spelling it arrives in.

Two dialects reach the emulator: the Gemini ``Schema`` (``responseSchema``: upper- or
lower-case ``type``, ``nullable``, ``propertyOrdering``) and JSON Schema
(``responseJsonSchema``: lower-case types, ``anyOf`` with ``null``, ``$defs``/``$ref``).
The SDK also leaks snake_case keys (``property_ordering``, ``min_items``), so every keyword
is looked up in both spellings. Property *names* are never rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._wire import invalid

TYPES = frozenset({"object", "string", "integer", "number", "boolean", "array", "null"})
_CAMEL = re.compile(r"([A-Z])")
_MAX_REF_HOPS = 32


def _snake(name: str) -> str:
    return _CAMEL.sub(lambda m: "_" + m.group(1).lower(), name)


class SchemaView:
    """One schema node; ``$ref`` is resolved against the root, keywords read in any spelling."""

    __slots__ = ("_raw", "_root")

    def __init__(self, raw: object, root: Mapping[str, Any] | None = None) -> None:
        if not isinstance(raw, Mapping):
            raise invalid(f"Invalid JSON payload received. Schema must be an object, got {raw!r}.")
        base: Mapping[str, Any] = raw if root is None else root
        self._root = base
        self._raw = self._resolve(raw)

    def _resolve(self, raw: Mapping[str, Any]) -> Mapping[str, Any]:
        hops = 0
        while isinstance(raw.get("$ref"), str):
            hops += 1
            if hops > _MAX_REF_HOPS:
                raise invalid("Schema $ref chain is too long.")
            raw = self._follow(raw["$ref"])
        return raw

    def _follow(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#"):
            raise invalid(f"Only local schema references are supported, got {ref!r}.")
        node: Any = self._root
        for token in ref.lstrip("#").strip("/").split("/"):
            if not token:
                continue
            key = token.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, Mapping) or key not in node:
                raise invalid(f"Unresolvable schema reference {ref!r}.")
            node = node[key]
        if not isinstance(node, Mapping):
            raise invalid(f"Schema reference {ref!r} does not point to a schema.")
        return node

    def get(self, camel: str) -> Any:
        """Read a keyword by its camelCase name, falling back to snake_case."""
        if camel in self._raw:
            return self._raw[camel]
        return self._raw.get(_snake(camel))

    def child(self, raw: object) -> SchemaView:
        """Wrap a sub-schema that shares this node's root."""
        return SchemaView(raw, self._root)

    @property
    def type(self) -> str:
        """The lower-case type, inferred from the keywords when absent; ``"any"`` if unknown."""
        declared = self.get("type")
        if isinstance(declared, list):
            names = [str(t).lower() for t in declared if str(t).lower() != "null"]
            declared = names[0] if len(names) == 1 else None
        if isinstance(declared, str):
            name = declared.lower()
            if name in TYPES:
                return name
            if name == "type_unspecified":
                return "any"
            raise invalid(f"Invalid schema type {declared!r}.")
        if self.get("properties") is not None:
            return "object"
        if self.get("items") is not None:
            return "array"
        if self.enum is not None:
            return "string"
        return "any"

    @property
    def nullable(self) -> bool:
        """Whether null is a valid value (Gemini ``nullable`` or a JSON Schema null type)."""
        if self.get("nullable") is True:
            return True
        declared = self.get("type")
        return isinstance(declared, list) and any(str(t).lower() == "null" for t in declared)

    @property
    def enum(self) -> tuple[Any, ...] | None:
        """Allowed values (``enum`` or JSON Schema ``const``), if restricted."""
        values = self.get("enum")
        if isinstance(values, list) and values:
            return tuple(values)
        if "const" in self._raw:
            return (self._raw["const"],)
        return None

    def properties(self) -> list[tuple[str, SchemaView]]:
        """Object properties in ``propertyOrdering`` order, then declaration order."""
        props = self.get("properties")
        if not isinstance(props, Mapping):
            return []
        ordering = self.get("propertyOrdering")
        names = [n for n in ordering if n in props] if isinstance(ordering, list) else []
        names += [n for n in props if n not in names]
        return [(name, self.child(props[name])) for name in names]

    @property
    def items(self) -> SchemaView | None:
        """The array item schema, if any."""
        raw = self.get("items")
        return self.child(raw) if isinstance(raw, Mapping) else None

    def branches(self) -> tuple[list[SchemaView], bool]:
        """The non-null ``anyOf``/``oneOf``/``allOf`` branches, and whether a null branch exists."""
        for key in ("anyOf", "oneOf", "allOf"):
            raw = self.get(key)
            if isinstance(raw, list) and raw:
                views = [self.child(branch) for branch in raw]
                real = [v for v in views if v.type != "null"]
                return real, len(real) < len(views)
        return [], False

    def number(self, camel: str) -> float | None:
        """Read a numeric keyword (``minimum``, ``maxItems``...) as a float, if present."""
        value = self.get(camel)
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # int64 fields are strings in proto3 JSON
            try:
                return float(value)
            except ValueError:
                raise invalid(f"Invalid value for schema keyword {camel!r}: {value!r}.") from None
        raise invalid(f"Invalid value for schema keyword {camel!r}: {value!r}.")

    def exclusive(self, camel: str, bound: float | None) -> tuple[float | None, bool]:
        """Combine ``minimum``/``exclusiveMinimum`` (either JSON Schema draft) into one bound."""
        flag = self.get(camel)
        if isinstance(flag, bool):
            return bound, flag and bound is not None
        limit = self.number(camel)
        if limit is None:
            return bound, False
        if bound is None:
            return limit, True
        stricter = max(bound, limit) if camel == "exclusiveMinimum" else min(bound, limit)
        return stricter, stricter == limit

    @property
    def format(self) -> str | None:
        """The ``format`` keyword, lower-cased."""
        value = self.get("format")
        return value.lower() if isinstance(value, str) else None
