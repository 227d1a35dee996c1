"""Response schemas: the whole answer's, and one of only the fields a partial stage re-asks.

A schema is given as a pydantic model or as a dict.  A dict whose root ``type``
is upper case (``"OBJECT"``) is a Gemini ``Schema`` and goes out as
``responseSchema``; anything else is JSON Schema and goes out as
``responseJsonSchema``, as does a pydantic model's ``model_json_schema()``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import attrs

from stagedretry import FieldPath

__all__ = ["ResponseSchema", "subset_schema"]

_ORDERING_KEYS: Final = ("propertyOrdering", "property_ordering")
_REF_PREFIXES: Final = ("#/$defs/", "#/definitions/")


def _refs(node: Any) -> Iterator[str]:
    """Every local ``$ref`` target name below *node*."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                for prefix in _REF_PREFIXES:
                    if value.startswith(prefix):
                        yield value[len(prefix) :]
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _prune_definitions(schema: dict[str, Any]) -> None:
    """Drop the ``$defs`` / ``definitions`` no longer reachable from the kept properties."""
    for defs_key in ("$defs", "definitions"):
        defs = schema.get(defs_key)
        if not isinstance(defs, dict):
            continue
        body = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
        wanted: set[str] = set()
        pending = list(_refs(body))
        while pending:
            name = pending.pop()
            if name in wanted or name not in defs:
                continue
            wanted.add(name)
            pending.extend(_refs(defs[name]))
        kept = {name: value for name, value in defs.items() if name in wanted}
        if kept:
            schema[defs_key] = kept
        else:
            del schema[defs_key]


def _root(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """The object node of *schema*, following a root ``$ref`` into its definitions."""
    return _resolved(schema, schema) or schema


_Tree = dict[str, "_Tree | None"]
"""The paths asked for, as a tree of keys; ``None`` below a key: all of its value."""


def _tree(fields: Sequence[FieldPath]) -> _Tree:
    tree: _Tree = {}
    for path in fields:
        node = tree
        for i, key in enumerate(path):
            if i == len(path) - 1:
                node[str(key)] = None
                break
            child = node.get(str(key), {})
            if child is None:
                break  # an enclosing value is asked for whole already
            node[str(key)] = child
            node = child
    return tree


def _narrow(root: Mapping[str, Any], node: Mapping[str, Any], tree: _Tree) -> dict[str, Any]:
    """A copy of object *node* with only the properties in *tree*, in the order asked."""
    found = _resolved(root, node)
    properties = found.get("properties") if found is not None else None
    if found is None or not isinstance(properties, Mapping):
        # Not a plain object schema here (a union, say): the whole value is described,
        # and the merge still takes only the asked paths from the answer.
        return copy.deepcopy(dict(node))
    chosen = [name for name in tree if name in properties]  # in the order asked
    if not chosen:
        return copy.deepcopy(dict(node))
    out: dict[str, Any] = {
        k: copy.deepcopy(v)
        for k, v in found.items()
        if k not in ("properties", "required", *_ORDERING_KEYS)
    }
    out["properties"] = {
        name: (
            copy.deepcopy(properties[name])
            if tree[name] is None
            else _narrow(root, properties[name], tree[name] or {})
        )
        for name in chosen
    }
    required = found.get("required")
    if isinstance(required, list):
        out["required"] = [name for name in required if name in chosen]
    for key in _ORDERING_KEYS:
        if isinstance(found.get(key), list):
            out[key] = [name for name in found[key] if name in chosen]
    return out


def _resolved(root: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """*node*, or the local definition its ``$ref`` names (with its own keys laid over)."""
    ref = node.get("$ref")
    if not isinstance(ref, str) or "properties" in node:
        return node
    for prefix, defs_key in zip(_REF_PREFIXES, ("$defs", "definitions"), strict=True):
        defs = root.get(defs_key)
        if ref.startswith(prefix) and isinstance(defs, Mapping):
            target = defs.get(ref[len(prefix) :])
            if isinstance(target, Mapping):
                return {**{k: v for k, v in node.items() if k != "$ref"}, **target}
    return None


def subset_schema(schema: Mapping[str, Any], fields: Sequence[FieldPath]) -> dict[str, Any]:
    """A copy of object *schema* describing only the paths in *fields*.

    A path narrows nested objects down to the key asked for, through local
    ``$ref`` s (inlined where narrowed); where a value is not a plain object
    (a union, an array) it is described whole.  Paths the schema does not
    declare are ignored; if none is declared the whole schema is returned, so
    a request never goes out with an empty object.  The kept ``$defs`` are
    those still referenced.
    """
    root = _root(schema)
    tree = _tree(fields)
    properties = root.get("properties")
    if not isinstance(properties, Mapping) or not any(name in properties for name in tree):
        return copy.deepcopy(dict(schema))
    out = _narrow(schema, root, tree)
    for defs_key in ("$defs", "definitions"):
        if defs_key in schema and defs_key not in out:
            out[defs_key] = copy.deepcopy(schema[defs_key])
    _prune_definitions(out)
    return out


def _is_gemini_dialect(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    return isinstance(kind, str) and kind.isupper()


@attrs.frozen
class ResponseSchema:
    """The answer's schema in one dialect, and the subsets already built, by field list.

    ``json_schema`` says whether it travels as ``responseJsonSchema`` (JSON
    Schema) or as ``responseSchema`` (the Gemini dialect).
    """

    schema: Mapping[str, Any]
    json_schema: bool
    _subsets: dict[tuple[FieldPath, ...], dict[str, Any]] = attrs.field(
        factory=dict, init=False, repr=False, eq=False
    )

    @classmethod
    def of(cls, source: object) -> ResponseSchema | None:
        """Read a pydantic model class or a schema dict; ``None`` stays ``None``."""
        if source is None:
            return None
        if isinstance(source, Mapping):
            schema = copy.deepcopy(dict(source))
            return cls(schema, not _is_gemini_dialect(schema))
        to_schema = getattr(source, "model_json_schema", None)
        if isinstance(source, type) and callable(to_schema):
            return cls(to_schema(), True)
        raise TypeError(f"response_schema must be a pydantic model class or a dict, got {source!r}")

    def for_fields(self, fields: tuple[FieldPath, ...] | None) -> Mapping[str, Any]:
        """The schema to send: the whole one, or only the paths *fields* for a partial request."""
        if fields is None:
            return self.schema
        found = self._subsets.get(fields)
        if found is None:
            found = subset_schema(self.schema, fields)
            self._subsets[fields] = found
        return found
