"""Property: random schemas and wrong answers, repaired by exactly the failing paths.

Random object schemas (nested up to 3 deep, arrays of objects, enums mixing
booleans and integers, nullable fields, closed objects) with keys drawn from an
alphabet a joined path would break, as JSON Schema and as pydantic models with
those keys as aliases.  A valid answer is broken at random leaves (a wrong value
or a missing key) and given forbidden extra keys; then:

* the partial request asks for exactly the broken paths (cut at an array, which is
  re-asked whole), never for a forbidden key;
* the merge of a repair that also tries to rewrite every kept field changes only
  the asked paths;
* dropping the forbidden keys, the merged answer validates under ``jsonschema``.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Optional

import attrs
import jsonschema
import pydantic
from hypothesis import given, settings
from hypothesis import strategies as st

from stagedretry import FieldErrorKind, FieldPath, ValidationFailed, validators
from stagedretry._stages import _dropped, merge, repair_unit, repairable_fields, value_at

KEYS = st.text(alphabet="ab.~/[] 0é鍵", min_size=1, max_size=4)
EXTRA = "¿extra?"  # never drawn from KEYS' alphabet


@attrs.frozen
class Spec:
    kind: str  # int, str, bool, enum, nullable, obj, arr
    values: tuple[Any, ...] = ()
    fields: tuple[tuple[str, Spec], ...] = ()
    closed: bool = False
    item: Spec | None = None


LEAVES = st.one_of(
    st.sampled_from([Spec("int"), Spec("str"), Spec("bool"), Spec("nullable")]),
    st.lists(st.one_of(st.booleans(), st.integers(-3, 3)), min_size=1, max_size=4).map(
        lambda v: Spec("enum", tuple(v))
    ),
)


def objects(depth: int) -> st.SearchStrategy[Spec]:
    child = LEAVES if depth >= 3 else st.one_of(LEAVES, objects(depth + 1), arrays(depth + 1))
    return st.builds(
        lambda fields, closed: Spec("obj", fields=tuple(fields.items()), closed=closed),
        st.dictionaries(KEYS, child, min_size=1, max_size=3),
        st.booleans(),
    )


def arrays(depth: int) -> st.SearchStrategy[Spec]:
    return objects(depth).map(lambda item: Spec("arr", item=item))


def schema_of(spec: Spec) -> dict[str, Any]:
    if spec.kind in ("int", "str", "bool"):
        return {"type": {"int": "integer", "str": "string", "bool": "boolean"}[spec.kind]}
    if spec.kind == "enum":
        return {"enum": list(spec.values)}
    if spec.kind == "nullable":
        return {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    if spec.kind == "arr":
        assert spec.item is not None
        return {"type": "array", "items": schema_of(spec.item)}
    out: dict[str, Any] = {
        "type": "object",
        "properties": {k: schema_of(s) for k, s in spec.fields},
        "required": [k for k, _ in spec.fields],
    }
    if spec.closed:
        out["additionalProperties"] = False
    return out


def model_of(spec: Spec, name: str = "M") -> Any:
    if spec.kind in ("int", "str", "bool"):
        return {"int": int, "str": str, "bool": bool}[spec.kind]
    if spec.kind == "enum":
        return Literal[spec.values]  # type: ignore[valid-type]
    if spec.kind == "nullable":
        return Optional[int]  # noqa: UP045 - built at run time from a spec
    if spec.kind == "arr":
        assert spec.item is not None
        return list[model_of(spec.item, name + "I")]  # type: ignore[misc]
    fields = {
        f"f{i}": (model_of(s, f"{name}_{i}"), pydantic.Field(alias=k))
        for i, (k, s) in enumerate(spec.fields)
    }
    config = pydantic.ConfigDict(extra="forbid" if spec.closed else "ignore", strict=True)
    return pydantic.create_model(name, __config__=config, **fields)  # type: ignore[call-overload]


@st.composite
def instances(draw: st.DrawFn, spec: Spec) -> Any:
    if spec.kind == "int":
        return draw(st.integers(-5, 5))
    if spec.kind == "str":
        return draw(st.text(max_size=3))
    if spec.kind == "bool":
        return draw(st.booleans())
    if spec.kind == "enum":
        return draw(st.sampled_from(spec.values))
    if spec.kind == "nullable":
        return draw(st.none() | st.integers(-5, 5))
    if spec.kind == "arr":
        assert spec.item is not None
        return draw(st.lists(instances(spec.item), min_size=1, max_size=2))
    return {k: draw(instances(s)) for k, s in spec.fields}


def places(spec: Spec, value: Any, path: FieldPath = ()) -> list[tuple[FieldPath, Spec, bool]]:
    """(path, spec, closed parent object) of every field in *value*."""
    out: list[tuple[FieldPath, Spec, bool]] = []
    if spec.kind == "obj":
        for k, s in spec.fields:
            out.append(((*path, k), s, spec.closed))
            out += places(s, value[k], (*path, k))
    elif spec.kind == "arr":
        assert spec.item is not None
        for i, element in enumerate(value):
            out += places(spec.item, element, (*path, i))
    return out


def put(data: Any, path: FieldPath, value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


@st.composite
def broken_answers(draw: st.DrawFn) -> tuple[Spec, Any, Any, set[FieldPath], list[FieldPath]]:
    spec = draw(objects(1))
    valid = draw(instances(spec))
    answer = json.loads(json.dumps(valid))
    fields = places(spec, valid)
    chosen = draw(st.lists(st.sampled_from(fields), min_size=1, max_size=3, unique_by=str))
    broken: set[FieldPath] = set()
    for path, leaf, _ in chosen:
        if any(path[: len(b)] == b for b in broken) or any(b[: len(path)] == path for b in broken):
            continue  # one change per place: a broken value is not broken again inside
        if leaf.kind in ("obj", "arr") or draw(st.booleans()):
            parent = value_at(answer, path[:-1])
            del parent[path[-1]]  # a missing key
        else:
            put(answer, path, 12345 if leaf.kind == "str" else "bad")
        broken.add(path)
    extras = [(*p[:-1], EXTRA) for p, _, closed in fields if closed and len(p) > 0]
    extras = [e for e in dict.fromkeys(extras) if value_at(answer, e[:-1]) is not None][:2]
    for extra in extras:
        target = value_at(answer, extra[:-1])
        if isinstance(target, dict):
            target[EXTRA] = 0.9
    if spec.closed:
        answer[EXTRA] = 0.9
        extras.append((EXTRA,))
    extras = [e for e in extras if isinstance(value_at(answer, e[:-1] or ()), dict)]
    return spec, valid, answer, broken, extras


def expected_units(broken: set[FieldPath]) -> set[FieldPath]:
    units = {repair_unit(p) for p in broken}
    return {u for u in units if not any(len(o) < len(u) and u[: len(o)] == o for o in units)}


def check(validator: Any, case: tuple[Spec, Any, Any, set[FieldPath], list[FieldPath]]) -> None:
    spec, valid, answer, broken, _ = case
    try:
        validator(json.dumps(answer))
    except ValidationFailed as exc:
        failed = exc
    else:
        raise AssertionError("a broken answer passed")
    assert failed.partial is not None
    fields = repairable_fields(failed.errors)
    assert set(fields) == expected_units(broken)
    assert all(e.path[-1] == EXTRA for e in failed.errors if e.kind is FieldErrorKind.FORBIDDEN)

    # A repair that also tries to rewrite every kept field at the top.
    repair = dict.fromkeys(valid, "rewritten")
    for path in fields:
        put_path(repair, path, value_at(valid, path))
    merged = merge(failed.partial, repair, fields)
    for key, value in failed.partial.items():
        if not any(path[0] == key for path in fields):
            assert merged[key] == value
    for error in failed.errors:
        if error.kind is FieldErrorKind.FORBIDDEN:
            merged = _dropped(merged, error.path)
    jsonschema.validate(merged, schema_of(spec))


def put_path(data: dict[str, Any], path: FieldPath, value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(data.get(str(key)), dict):
            data[str(key)] = {}
        data = data[str(key)]
    data[str(path[-1])] = value


@settings(max_examples=60, deadline=None)
@given(case=broken_answers())
def test_json_schema_repairs_exactly_the_broken_paths(
    case: tuple[Spec, Any, Any, set[FieldPath], list[FieldPath]],
) -> None:
    check(validators.json_schema(schema_of(case[0])), case)


@settings(max_examples=40, deadline=None)
@given(case=broken_answers())
def test_pydantic_with_aliases_repairs_exactly_the_broken_paths(
    case: tuple[Spec, Any, Any, set[FieldPath], list[FieldPath]],
) -> None:
    check(validators.pydantic(model_of(case[0])), case)
