"""Answers for the user's output model or JSON Schema: valid ones, and near-misses of them.

A near-miss starts from a valid answer and breaks it in one of the ways a
model's answer goes wrong (:class:`NearMissKind`): a value of the wrong type,
a value out of its declared range (bounds, lengths, pattern, enum), a
required key left out, a key the schema forbids, or an answer cut off by the
output token limit.  Each near-miss carries the paths it breaks, checked
against the specification itself (the pydantic model, or the JSON Schema
through ``jsonschema``), never against the validator under test: the state
machine then holds the user's validator and the plan's partial stages to them.

Leaf values (strings with patterns or formats, bounded numbers, enums) are
drawn by ``hypothesis-jsonschema``.  Objects and arrays are walked here:
its object generator uses Hypothesis internals that current Hypothesis no
longer has (``AttributeError: 'many' object has no attribute 'more'``).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
from hypothesis import assume
from hypothesis import strategies as st

from .._outcomes import FieldPath, OutcomeKind, json_pointer
from ._reference import ReferenceItem
from ._scripted import ScriptStep, Step

__all__ = [
    "AnswerDrawer",
    "AnswerReference",
    "AnswerSpec",
    "AnswerStep",
    "NearMiss",
    "NearMissKind",
    "near_misses",
]


class NearMissKind(enum.Enum):
    """How a near-miss breaks a valid answer."""

    WRONG_TYPE = "wrong_type"
    """A value of a JSON type the field does not take."""
    OUT_OF_RANGE = "out_of_range"
    """A value of the right type that breaks a constraint: bounds, length, pattern, enum."""
    MISSING = "missing"
    """A required key left out."""
    EXTRA = "extra"
    """A key the schema forbids (``additionalProperties: false``, pydantic's ``extra="forbid"``)."""
    TRUNCATED = "truncated"
    """Cut off by the output token limit: the cut field and the required ones after it fail."""


def _paths(broken: Sequence[str]) -> tuple[FieldPath, ...]:
    return tuple((name,) for name in broken)


@attrs.frozen
class NearMiss:
    """A valid answer with some fields broken, and the paths a partial stage must re-ask.

    ``data`` is the broken answer (for a truncated one, the part that was
    written out complete), ``valid`` the answer it was made from and
    ``broken`` the top-level fields that fail.  ``paths`` are the failing
    paths (what a partial stage asks for); ``forbidden`` the keys the schema
    forbids, which the engine drops without a request; ``kinds`` how each
    break was made.  ``text`` is the answer as the model would send it;
    ``truncated`` says the provider flagged it as cut off (``MAX_TOKENS``).
    """

    data: Mapping[str, Any]
    valid: Mapping[str, Any]
    broken: tuple[str, ...]
    paths: tuple[FieldPath, ...] = attrs.field(
        default=attrs.Factory(lambda self: _paths(self.broken), takes_self=True), kw_only=True
    )
    forbidden: tuple[FieldPath, ...] = attrs.field(default=(), kw_only=True)
    kinds: tuple[NearMissKind, ...] = attrs.field(default=(), kw_only=True)
    cut_text: str | None = attrs.field(default=None, kw_only=True, repr=False)

    @property
    def truncated(self) -> bool:
        """Whether the answer was cut off by the output token limit."""
        return self.cut_text is not None

    @property
    def text(self) -> str:
        """The answer's text: ``data`` as JSON, or the cut-off text."""
        return self.cut_text if self.cut_text is not None else json.dumps(dict(self.data))


# -- the specification ------------------------------------------------------------------

_DELETE: Any = object()


class AnswerSpec:
    """The user's output specification: a pydantic model class or a JSON Schema.

    It draws valid answers and checks answers the way the specification
    itself does (pydantic, or ``jsonschema``): the oracle the user's
    validator is held to.
    """

    def __init__(self, source: type[Any] | Mapping[str, Any]) -> None:
        import jsonschema

        self.model: type[Any] | None = None
        if isinstance(source, Mapping):
            self.schema: dict[str, Any] = json.loads(json.dumps(dict(source)))
            checker = jsonschema.validators.validator_for(self.schema)
            checker.check_schema(self.schema)
            self._checker = checker(self.schema)
        else:
            from pydantic import BaseModel, TypeAdapter

            if not (isinstance(source, type) and issubclass(source, BaseModel)):
                raise TypeError(
                    f"answers need a pydantic model class or a JSON Schema, got {source!r}"
                )
            self.model = source
            self._adapter = TypeAdapter(source)
            self.schema = source.model_json_schema()
        self.name = self.model.__name__ if self.model is not None else "the JSON Schema"
        top = self.resolve(self.schema)
        if top.get("type", "object") != "object" and "properties" not in top:
            # Answers are drawn as objects, the shape a partial stage repairs field by field.
            raise ValueError(
                f"answers must be JSON objects, but {self.name} describes "
                f"{top.get('type')!r} values"
            )
        self._answers: dict[bool, st.SearchStrategy[dict[str, Any]]] = {}
        self._branch_checks: dict[int, Any] = {}
        self._breaks: dict[str, list[tuple[NearMissKind, FieldPath, Any]]] = {}

    # -- the oracle -----------------------------------------------------------

    def failures(self, data: Any) -> tuple[set[FieldPath], set[FieldPath]]:
        """The paths *data* breaks, and the forbidden keys it holds, as the specification says."""
        if self.model is not None:
            return self._pydantic_failures(data)
        invalid: set[FieldPath] = set()
        forbidden: set[FieldPath] = set()
        for error in self._checker.iter_errors(data):
            path = tuple(error.absolute_path)
            if error.validator == "required" and isinstance(error.instance, dict):
                wanted: Any = error.validator_value
                invalid.update((*path, key) for key in wanted if key not in error.instance)
            elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
                known = self.resolve(error.schema).get("properties", {})
                forbidden.update((*path, key) for key in error.instance if key not in known)
            else:
                invalid.add(path)
        return invalid, forbidden

    def _pydantic_failures(self, data: Any) -> tuple[set[FieldPath], set[FieldPath]]:
        from pydantic import ValidationError

        try:
            self._adapter.validate_python(data)
        except ValidationError as exc:
            invalid: set[FieldPath] = set()
            forbidden: set[FieldPath] = set()
            for error in exc.errors(include_url=False):
                path = _trim(
                    data, tuple(error["loc"]), error["type"] in ("missing", "extra_forbidden")
                )
                (forbidden if error["type"] == "extra_forbidden" else invalid).add(path)
            return invalid, forbidden
        return set(), set()

    def output_data(self, output: Any) -> Any:
        """A validator's output as JSON data, to check again (a pydantic model is dumped)."""
        dump = getattr(output, "model_dump", None)
        return dump(mode="json", by_alias=True) if callable(dump) else output

    def validator(self) -> Any:
        """The validator the specification implies: ``validators.pydantic`` or ``json_schema``."""
        from .. import validators

        if self.model is not None:
            return validators.pydantic(self.model)
        return validators.json_schema(self.schema)

    # -- drawing valid answers ---------------------------------------------------

    def resolve(self, schema: Any) -> dict[str, Any]:
        """*schema* with local ``$ref`` followed (a bare ``allOf`` of one is unwrapped)."""
        seen = 0
        while isinstance(schema, dict):
            if "$ref" in schema and isinstance(schema["$ref"], str):
                ref = schema["$ref"]
                if not ref.startswith("#"):
                    raise ValueError(f"answers follow only local $ref, not {ref!r}")
                node: Any = self.schema
                for part in ref.lstrip("#").split("/")[1:]:
                    node = node[part.replace("~1", "/").replace("~0", "~")]
                schema = node
            elif (
                list(schema.get("allOf", ())) and len(schema["allOf"]) == 1 and "type" not in schema
            ):
                schema = schema["allOf"][0]
            else:
                return schema
            seen += 1
            if seen > 64:
                raise ValueError("answers cannot follow a recursive $ref")
        return {} if schema is True else {"not": {}} if schema is False else {}

    def values(
        self, schema: Any, depth: int = 0, *, every_key: bool = False
    ) -> st.SearchStrategy[Any]:
        """Values valid for *schema* (objects and arrays here, leaves by hypothesis-jsonschema).

        With *every_key* an object holds all its properties, optional ones too.
        """
        from hypothesis_jsonschema import from_schema

        node = self.resolve(schema)
        if depth > 8:
            return st.nothing()
        branches = node.get("anyOf") or node.get("oneOf")
        if branches:
            return st.one_of([self.values(b, depth + 1) for b in branches])
        if node.get("type") == "object" or "properties" in node:
            props = node.get("properties", {})
            required = (
                list(props) if every_key else [k for k in node.get("required", ()) if k in props]
            )
            return st.fixed_dictionaries(
                {k: self.values(props[k], depth + 1) for k in required},
                optional={
                    k: self.values(v, depth + 1) for k, v in props.items() if k not in required
                },
            )
        if node.get("type") == "array" and isinstance(node.get("items"), dict):
            low = int(node.get("minItems", 0))
            high = min(int(node.get("maxItems", low + 3)), low + 3)
            return st.lists(self.values(node["items"], depth + 1), min_size=low, max_size=high)
        leaf = {k: v for k, v in node.items() if k not in ("title", "description", "default")}
        if _is_plain_string(leaf):
            # Short strings: a failing answer shrinks in seconds, not minutes.
            leaf["maxLength"] = min(
                int(leaf.get("maxLength", 12)), max(12, int(leaf.get("minLength", 0)))
            )
        return from_schema(leaf, codec="utf-8") if leaf else _JSON

    def answers(self, *, every_key: bool = False) -> st.SearchStrategy[dict[str, Any]]:
        """Valid answers: JSON objects the specification accepts (built once: it is costly).

        With *every_key* they hold every top-level property, optional ones too.
        """
        built = self._answers.get(every_key)
        if built is None:
            built = self._answers[every_key] = self.values(self.schema, every_key=every_key).filter(
                lambda data: isinstance(data, dict) and self.failures(data) == (set(), set())
            )
        return built

    # -- breaking them -----------------------------------------------------------

    def breaks(self, valid: Mapping[str, Any]) -> list[tuple[NearMissKind, FieldPath, Any]]:
        """Every single break of *valid* that fails exactly its own path, as the oracle says."""
        # Shrinking replays the same answers many times: their breaks are remembered.
        key = json.dumps(valid)  # in its own order: the list of breaks follows it
        known = self._breaks.get(key)
        if known is not None:
            return known
        if len(self._breaks) > 4096:
            self._breaks.clear()
        out = self._breaks[key] = self._find_breaks(valid)
        return out

    def _find_breaks(self, valid: Mapping[str, Any]) -> list[tuple[NearMissKind, FieldPath, Any]]:
        out: list[tuple[NearMissKind, FieldPath, Any]] = []
        for kind, path, value in self._candidates(dict(valid), self.schema, ()):
            broken = _apply(dict(valid), [(path, value)])
            invalid, forbidden = self.failures(broken)
            if kind is NearMissKind.EXTRA:
                if invalid or forbidden != {path}:
                    continue
            elif invalid != {path} or forbidden:
                continue
            out.append((kind, path, value))
        return out

    def _candidates(
        self, data: dict[str, Any], schema: Any, at: FieldPath
    ) -> Iterator[tuple[NearMissKind, FieldPath, Any]]:
        node = self._branch(schema, data)
        props = node.get("properties", {})
        required = set(node.get("required", ()))
        if node.get("additionalProperties") is False:
            extra = next(
                f"unexpected_{i}" for i in range(len(props) + 1) if f"unexpected_{i}" not in props
            )
            yield NearMissKind.EXTRA, (*at, extra), "not in the schema"
        for key, value in data.items():
            if key not in props:
                continue
            path = (*at, key)
            if key in required:
                yield NearMissKind.MISSING, path, _DELETE
            for wrong in _wrong_types(value):
                yield NearMissKind.WRONG_TYPE, path, wrong
            for wrong in _out_of_range(self._branch(props[key], value), value):
                yield NearMissKind.OUT_OF_RANGE, path, wrong
            if isinstance(value, dict):
                yield from self._candidates(value, props[key], path)

    def _branch(self, schema: Any, value: Any) -> dict[str, Any]:
        """The branch of an ``anyOf``/``oneOf`` that *value* fits (the node itself otherwise)."""
        node = self.resolve(schema)
        branches = node.get("anyOf") or node.get("oneOf")
        if not branches:
            return node
        for branch in branches:
            resolved = self.resolve(branch)
            if self._fits(resolved, value):
                return self._branch(resolved, value)
        return node

    def _fits(self, schema: dict[str, Any], value: Any) -> bool:
        import jsonschema

        check = self._branch_checks.get(id(schema))
        if check is None:
            wrapped = {**schema, "$defs": self.schema.get("$defs", {})}
            check = jsonschema.validators.validator_for(wrapped)(wrapped)
            self._branch_checks[id(schema)] = check
        return bool(check.is_valid(value))


_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _is_plain_string(leaf: Mapping[str, Any]) -> bool:
    kinds = leaf.get("type")
    return (kinds == "string" or (isinstance(kinds, list) and "string" in kinds)) and not (
        {"pattern", "format", "enum", "const"} & set(leaf)
    )


def _trim(data: Any, loc: tuple[Any, ...], last_may_be_absent: bool) -> FieldPath:
    """The part of a pydantic error location that is a place in *data* (a union's tags dropped)."""
    path: list[str | int] = []
    node: Any = data
    for i, key in enumerate(loc):
        in_object = isinstance(node, dict) and isinstance(key, str) and key in node
        in_array = isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node)
        if in_object or in_array:
            path.append(key)
            node = node[key]
        elif last_may_be_absent and i == len(loc) - 1 and isinstance(node, dict):
            path.append(key)
        else:
            break
    return tuple(path)


def _wrong_types(value: Any) -> list[Any]:
    """Values of other JSON types than *value*'s, wrong even for a lax parser (no "12" for 12)."""
    wrong: list[Any] = []
    if not isinstance(value, dict):
        wrong.append({"not": "this"})
    if not isinstance(value, list):
        wrong.append([["not this"]])
    if not isinstance(value, str):
        wrong.append("not this")
    if isinstance(value, str | dict | list):
        wrong.append(12.5)
    return wrong


def _out_of_range(node: Mapping[str, Any], value: Any) -> Iterator[Any]:
    """Values of *value*'s type that break a constraint of *node*."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        step = 1 if isinstance(value, int) else 0.5
        if "maximum" in node:
            yield node["maximum"] + step
        if "minimum" in node:
            yield node["minimum"] - step
        if "exclusiveMaximum" in node:
            yield node["exclusiveMaximum"]
        if "exclusiveMinimum" in node:
            yield node["exclusiveMinimum"]
    if isinstance(value, str):
        if "maxLength" in node:
            yield "x" * (int(node["maxLength"]) + 1)
        if int(node.get("minLength", 0)) > 0:
            yield "x" * (int(node["minLength"]) - 1)
        if "pattern" in node:
            yield from ("", "~ not this ~", "0" * 64)
        if "format" in node:
            yield "not a " + str(node["format"])
    if isinstance(value, list) and value:
        if "maxItems" in node:
            yield [value[0]] * (int(node["maxItems"]) + 1)
        if int(node.get("minItems", 0)) > 0:
            yield value[: int(node["minItems"]) - 1]
    if "enum" in node or "const" in node:
        yield from ("not one of these", -123456789)


def _apply(data: dict[str, Any], changes: Sequence[tuple[FieldPath, Any]]) -> dict[str, Any]:
    """A copy of *data* with each path set to its value (or deleted); objects along it copied."""
    out: dict[Any, Any] = dict(data)
    for path, value in changes:
        node = out
        for key in path[:-1]:
            child = dict(node[key])
            node[key] = child
            node = child
        if value is _DELETE:
            node.pop(path[-1], None)
        else:
            node[path[-1]] = value
    return out


# -- drawing near-misses --------------------------------------------------------------


def _truncated(draw: Draw, spec: AnswerSpec, valid: dict[str, Any], k: int) -> NearMiss | None:
    """Cut *valid* off inside one member, with k-1 required members never reached."""
    required = [key for key in spec.resolve(spec.schema).get("required", ()) if key in valid]
    keys = list(valid)
    cut = draw(st.sampled_from(keys))
    after = [key for key in required if key != cut]
    if len(after) < k - 1:
        return None
    never = draw(st.permutations(after))[: k - 1]
    before = [key for key in keys if key != cut and key not in never]
    ordered = {key: valid[key] for key in before}
    head = json.dumps(ordered)[:-1] if ordered else "{"
    value = json.dumps(valid[cut])
    # Cut inside a string (the parser keeps what it has), or just after the value: either
    # way the member is not followed by a comma, so it is not complete.
    end = (
        draw(st.integers(2, len(value) - 1))
        if value.startswith('"') and len(value) > 2
        else len(value)
    )
    text = f"{head}{', ' if ordered else ''}{json.dumps(cut)}: {value[:end]}"
    if any(spec.failures(ordered)[0] - {(key,) for key in (cut, *never)}):
        return None  # the complete part fails elsewhere too (a rule across fields)
    paths = tuple((key,) for key in (cut, *never))
    return NearMiss(
        ordered, valid, (cut, *never), paths=paths, kinds=(NearMissKind.TRUNCATED,), cut_text=text
    )


def draw_near_miss(
    draw: Draw,
    spec: AnswerSpec,
    valid: dict[str, Any],
    k: int,
    kinds: Sequence[NearMissKind] = tuple(NearMissKind),
) -> NearMiss:
    """A near-miss of *valid* breaking *k* top-level fields, one of *kinds* each."""
    if k == 0:
        return NearMiss(valid, valid, ())
    candidates = [c for c in spec.breaks(valid) if c[0] in kinds]
    heads = {c[1][0] for c in candidates}
    available = [kind for kind in kinds if any(c[0] is kind for c in candidates)]
    if NearMissKind.TRUNCATED in kinds:
        available.append(NearMissKind.TRUNCATED)
    if len(heads) < k and NearMissKind.TRUNCATED not in kinds:
        raise ValueError(
            f"{spec.name} has only {len(heads)} field(s) an answer can break; cannot break {k}"
        )
    # Cycled: hypothesis favours the first entries of a list, so each kind gets a turn.
    first = draw(st.sampled_from(available * 4))
    if first is NearMissKind.TRUNCATED:
        miss = _truncated(draw, spec, valid, k)
        assume(miss is not None)
        assert miss is not None
        return miss
    chosen: list[tuple[NearMissKind, FieldPath, Any]] = []
    for i in range(k):
        left = [c for c in candidates if c[1][0] not in {p[0] for _, p, _ in chosen}]
        if not left:
            raise ValueError(
                f"{spec.name} has only {len(heads)} field(s) an answer can break; cannot break {k}"
            )
        kinds_left = sorted({c[0] for c in left}, key=lambda kind: kind.value)
        kind = first if i == 0 else draw(st.sampled_from(kinds_left))
        chosen.append(draw(st.sampled_from([c for c in left if c[0] is kind])))
    data = _apply(valid, [(path, value) for _, path, value in chosen])
    paths = tuple(p for kind, p, _ in chosen if kind is not NearMissKind.EXTRA)
    forbidden = tuple(p for kind, p, _ in chosen if kind is NearMissKind.EXTRA)
    # Breaks of different fields may meet in a rule across fields: keep the clean ones.
    assume(spec.failures(data) == (set(paths), set(forbidden)))
    return NearMiss(
        data,
        valid,
        tuple(str(p[0]) for _, p, _ in chosen),
        paths=paths,
        forbidden=forbidden,
        kinds=tuple(kind for kind, _, _ in chosen),
    )


def near_misses(
    source: type[Any] | Mapping[str, Any],
    k: int = 1,
    *,
    breaks: Sequence[NearMissKind] = tuple(NearMissKind),
) -> st.SearchStrategy[NearMiss]:
    """An answer for *source* (a pydantic model class or a JSON Schema) with *k* fields broken.

    Each broken field is broken in one of the ways *breaks* allows (see
    :class:`NearMissKind`; one is drawn per field, so each appears about as
    often as the others), at the field or inside it.  Raises ``TypeError``
    for a *source* that is neither, ``ValueError`` for a negative *k* and,
    when drawn, ``ValueError`` if the answer has fewer than *k* fields that
    can be broken.
    """
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    spec = AnswerSpec(source)
    if k > 0 and not spec.resolve(spec.schema).get("properties"):
        # Refused now: drawing would find no field to break in any answer.
        raise ValueError(f"{spec.name} has no field an answer can break; cannot break {k}")
    kinds = tuple(breaks)
    if not kinds:
        raise ValueError("near_misses() needs at least one kind of break")

    @st.composite
    def drawn(draw: Draw) -> NearMiss:
        # Every top-level key present, as a model's dump has them: k fields to break.
        return draw_near_miss(draw, spec, draw(spec.answers(every_key=True)), k, kinds)

    return drawn()


# -- answers in the state machine -------------------------------------------------------


@attrs.frozen(repr=False)
class AnswerStep(ScriptStep):
    """A request answered with generated text; ``paths`` are those it breaks (what to re-ask)."""

    text: str = attrs.field(default="", kw_only=True)
    paths: tuple[FieldPath, ...] = attrs.field(default=(), kw_only=True)
    truncated: bool = attrs.field(default=False, kw_only=True)
    how: tuple[NearMissKind, ...] = attrs.field(default=(), kw_only=True)

    def _extras(self) -> list[str]:
        extras = []
        if self.how:
            extras.append("+".join(kind.value for kind in self.how))
        if self.paths:
            extras.append(f"breaks {', '.join(json_pointer(p) for p in self.paths)}")
        text = self.text if len(self.text) <= 80 else self.text[:77] + "..."
        extras.append(f"text={text!r}")
        return extras


def _heads(paths: Sequence[FieldPath]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(p[0]) for p in paths if p))


def _at(data: Mapping[str, Any], path: FieldPath) -> Any:
    node: Any = data
    for key in path:
        node = node[key]
    return node


def _skeleton(truth: Mapping[str, Any], asked: Sequence[FieldPath]) -> dict[str, Any]:
    """The answer to a partial request: the true values at the paths asked, nested as asked."""
    out: dict[Any, Any] = {}
    for path in asked:
        try:
            value = _at(truth, path)
        except (KeyError, IndexError, TypeError):
            continue  # an optional field the truth does not hold: left out
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


UNREADABLE = "Sorry, I cannot give that as JSON."


Draw = Callable[[st.SearchStrategy[Any]], Any]
"""What draws a value in a rule or a composite strategy (``data.draw`` or ``draw``)."""


class AnswerDrawer:
    """Draws, for each request of one item, an answer text of the outcome kind the rule drew."""

    def __init__(self, spec: AnswerSpec) -> None:
        self.spec = spec
        self.truth: dict[str, Any] | None = None

    def answer(
        self, draw: Draw, step: ScriptStep, asked: tuple[FieldPath, ...] | None
    ) -> ScriptStep:
        """*step* as an :class:`AnswerStep` for a request asking *asked* (``None``: everything)."""
        kind = step.kind
        if kind not in (OutcomeKind.SUCCEEDED, OutcomeKind.INVALID):
            return step
        if asked is None or self.truth is None:
            return self._full(draw, kind)
        return self._partial(draw, kind, asked, self.truth)

    def _full(self, draw: Draw, kind: OutcomeKind) -> ScriptStep:
        truth = self.truth = draw(self.spec.answers())
        if kind is OutcomeKind.SUCCEEDED:
            return AnswerStep(kind, text=json.dumps(truth))
        if draw(st.integers(0, 7)) == 0:
            return AnswerStep(kind, text=UNREADABLE)
        candidates = self.spec.breaks(truth)
        heads = len({c[1][0] for c in candidates})
        if not truth:
            return AnswerStep(kind, text=UNREADABLE)  # an empty answer has nothing else to break
        k = draw(st.integers(1, max(1, min(2, heads))))
        miss = draw_near_miss(draw, self.spec, truth, k)
        # A near-miss that only holds forbidden keys is mended by the engine: a success.
        outcome = OutcomeKind.INVALID if miss.paths else OutcomeKind.SUCCEEDED
        return AnswerStep(
            outcome,
            fields=_heads(miss.paths),
            text=miss.text,
            paths=miss.paths,
            truncated=miss.truncated,
            how=miss.kinds,
        )

    def _partial(
        self,
        draw: Draw,
        kind: OutcomeKind,
        asked: tuple[FieldPath, ...],
        truth: dict[str, Any],
    ) -> ScriptStep:
        answer = _skeleton(truth, asked)
        if kind is OutcomeKind.SUCCEEDED:
            return AnswerStep(kind, text=json.dumps(answer))
        candidates = [
            c for c in self.spec.breaks(truth) if c[1] in asked and c[0] is not NearMissKind.EXTRA
        ]
        if not candidates or draw(st.integers(0, 7)) == 0:
            return AnswerStep(kind, text=UNREADABLE)
        chosen = draw(
            st.lists(st.sampled_from(candidates), min_size=1, max_size=3, unique_by=lambda c: c[1])
        )
        paths = tuple(path for _, path, _ in chosen)
        broken = _apply(
            answer, [(path, value) for _, path, value in chosen if _has(answer, path[:-1])]
        )
        return AnswerStep(
            kind,
            fields=_heads(paths),
            text=json.dumps(broken),
            paths=paths,
            how=tuple(k for k, _, _ in chosen),
        )


def _has(data: Mapping[str, Any], path: FieldPath) -> bool:
    try:
        return isinstance(_at(data, path), dict)
    except (KeyError, IndexError, TypeError):
        return False


class AnswerReference(ReferenceItem):
    """The reference model, reading the exact paths an :class:`AnswerStep` breaks.

    A scripted step names top-level fields; a generated answer may break a
    field deep inside one, which is then exactly what a partial stage re-asks.
    """

    def play(self, step: Step) -> None:
        super().play(step)
        if isinstance(step, AnswerStep) and step.kind is OutcomeKind.INVALID and step.paths:
            self.repair = tuple(dict.fromkeys(step.paths))
