"""The simulated model: deterministic, schema-conforming answers with controlled errors.

Every choice (a value, a length, whether a field is invalid) is drawn from a BLAKE2 hash of
the seed, the model id, the temperature, the prompt text and the field's path. The same
request therefore always gets the same answer, and a different prompt or temperature a
different one. Each answered field is independently *invalid* with probability
``invalid_rate + invalid_rate_slope * temperature`` (clamped to [0, 1]); invalid values are
chosen so that even pydantic's lax mode rejects them (a word where a number belongs, a value
outside the enum, a number out of range, a string where a list belongs, null where null is
not allowed).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

from ._schema import SchemaView
from ._wire import format_timestamp, invalid

JSON_MIME: Final = "application/json"
ENUM_MIME: Final = "text/x.enum"
DEFAULT_TEMPERATURE: Final = 1.0
_MAX_DEPTH: Final = 6

_WORDS: Final = (
    "amber", "harbor", "quiet", "river", "lantern", "meadow", "copper", "signal", "orchard",
    "granite", "velvet", "winter", "compass", "ember", "willow", "atlas", "cinder", "falcon",
    "garden", "horizon", "island", "juniper", "kernel", "lagoon", "marble", "nectar", "oasis",
    "pepper", "quartz", "raven", "saffron", "timber", "umber", "valley", "walnut", "zephyr",
)  # fmt: skip
_FIRST: Final = ("Ada", "Boris", "Chiara", "Dmitri", "Elena", "Farid", "Greta", "Hiro", "Ines")
_LAST: Final = ("Okafor", "Lindqvist", "Moreau", "Tanaka", "Varga", "Castillo", "Novak", "Reyes")


@attrs.frozen(kw_only=True)
class Answer:
    """The model's raw answer before usage accounting."""

    text: str
    thoughts_tokens: int = 0


@attrs.frozen(kw_only=True)
class GenerationConfig:
    """The ``generationConfig`` fields the model honours, read in either key spelling."""

    temperature: float = DEFAULT_TEMPERATURE
    max_output_tokens: int | None = None
    mime_type: str = "text/plain"
    schema: SchemaView | None = None
    thinking_budget: int | None = None

    @classmethod
    def from_json(cls, raw: object) -> GenerationConfig:
        """Parse and validate the request's ``generationConfig`` (camelCase or snake_case)."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise invalid("Invalid JSON payload received. generation_config must be an object.")
        get = _getter(raw)
        temperature = get("temperature")
        if temperature is None:
            temperature = DEFAULT_TEMPERATURE
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            raise invalid(
                f"Invalid value at 'generation_config.temperature' (TYPE_FLOAT), {temperature!r}"
            )
        if not 0.0 <= temperature <= 2.0:
            raise invalid(
                "* GenerateContentRequest.generation_config.temperature: must be in [0.0, 2.0]\n"
            )
        max_tokens = get("maxOutputTokens")
        if max_tokens is not None and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
        ):
            raise invalid(
                "Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), "
                f"{max_tokens!r}"
            )
        if isinstance(max_tokens, int) and max_tokens < 1:
            max_tokens = None  # proto3: 0 means "unset"
        mime = get("responseMimeType") or "text/plain"
        if not isinstance(mime, str):
            raise invalid("response_mime_type must be a string.")
        schema_raw = get("responseSchema")
        json_schema_raw = get("responseJsonSchema")
        if json_schema_raw is None:
            json_schema_raw = raw.get("_responseJsonSchema")
        if schema_raw is not None and json_schema_raw is not None:
            raise invalid("response_schema and response_json_schema cannot both be set.")
        schema_source = schema_raw if schema_raw is not None else json_schema_raw
        schema = SchemaView(schema_source) if schema_source is not None else None
        if schema is not None and mime not in (JSON_MIME, ENUM_MIME):
            raise invalid(
                "* GenerateContentRequest.generation_config.response_mime_type: "
                "response_schema requires response_mime_type to be application/json "
                "or text/x.enum.\n"
            )
        budget = None
        thinking = get("thinkingConfig")
        if isinstance(thinking, Mapping):
            value = _getter(thinking)("thinkingBudget")
            if isinstance(value, int) and not isinstance(value, bool):
                budget = value
        return cls(
            temperature=float(temperature),
            max_output_tokens=max_tokens,
            mime_type=mime,
            schema=schema,
            thinking_budget=budget,
        )


def _getter(raw: Mapping[str, Any]) -> Any:
    """Return a lookup reading a camelCase key or its snake_case twin."""

    def get(camel: str) -> Any:
        if camel in raw:
            return raw[camel]
        snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
        return raw.get(snake)

    return get


class _Draw:
    """Deterministic pseudo-random draws keyed by a field path and a purpose."""

    def __init__(self, basis: str) -> None:
        self._basis = basis

    def unit(self, path: str, purpose: str) -> float:
        digest = hashlib.blake2b(f"{self._basis}\x00{path}\x00{purpose}".encode(), digest_size=8)
        return int.from_bytes(digest.digest()) / 2**64

    def index(self, path: str, purpose: str, count: int) -> int:
        return min(int(self.unit(path, purpose) * count), count - 1)

    def between(self, path: str, purpose: str, low: int, high: int) -> int:
        return low + self.index(path, purpose, high - low + 1)

    def words(self, path: str, count: int) -> list[str]:
        return [_WORDS[self.index(path, f"word{i}", len(_WORDS))] for i in range(count)]


class SimulatedModel:
    """Answers prompts deterministically; :meth:`answer` is pure given its arguments."""

    def __init__(self, *, seed: int, invalid_rate: float, invalid_rate_slope: float) -> None:
        self._seed = seed
        self._rate = invalid_rate
        self._slope = invalid_rate_slope

    def invalid_probability(self, temperature: float) -> float:
        """The chance that one answered field is invalid at this temperature."""
        return min(1.0, max(0.0, self._rate + self._slope * temperature))

    def answer(self, *, model: str, prompt: str, config: GenerationConfig) -> Answer:
        """Produce the answer text (untruncated) and the thinking tokens spent on it."""
        draw = _Draw(f"{self._seed}\x00{model}\x00{config.temperature!r}\x00{prompt}")
        thoughts = 0
        if config.thinking_budget is not None and config.thinking_budget != 0:
            ceiling = config.thinking_budget if config.thinking_budget > 0 else 64
            thoughts = min(ceiling, draw.between("$", "thoughts", 16, 64))
        schema = config.schema
        if schema is None:
            sentence = _sentence(draw, "$", 8, 14)
            if config.mime_type == JSON_MIME:
                return Answer(text=json.dumps({"text": sentence}), thoughts_tokens=thoughts)
            return Answer(text=sentence, thoughts_tokens=thoughts)
        writer = _Writer(draw, self.invalid_probability(config.temperature))
        if config.mime_type == ENUM_MIME:
            value = writer.field(schema, "$", 0)
            return Answer(
                text=value if isinstance(value, str) else json.dumps(value),
                thoughts_tokens=thoughts,
            )
        return Answer(
            text=json.dumps(writer.root(schema), ensure_ascii=False), thoughts_tokens=thoughts
        )


def _sentence(draw: _Draw, path: str, low: int, high: int) -> str:
    words = draw.words(path, draw.between(path, "length", low, high))
    return " ".join(words).capitalize() + "."


class _Writer:
    """Walks a schema and writes one value, valid or (per field) deliberately invalid."""

    def __init__(self, draw: _Draw, p_invalid: float) -> None:
        self._draw = draw
        self._p = p_invalid

    def root(self, schema: SchemaView) -> Any:
        """Answer the whole schema; object properties (or a scalar root) are the fields."""
        node, _ = _collapse(schema)
        items = node.items
        if node.type == "object" or (
            node.type == "array" and items is not None and _collapse(items)[0].type == "object"
        ):
            return self.valid(schema, "$", 0)
        return self.field(schema, "$", 0)

    def field(self, schema: SchemaView, path: str, depth: int) -> Any:
        """One field: invalid with probability p, else valid."""
        if self._p > 0 and self._draw.unit(path, "invalid") < self._p:
            return self.invalid(schema, path)
        return self.valid(schema, path, depth)

    def valid(self, schema: SchemaView, path: str, depth: int) -> Any:
        node, nullable = _collapse(schema)
        draw = self._draw
        if nullable and (depth >= _MAX_DEPTH or draw.unit(path, "null") < 0.15):
            return None
        branches, _ = node.branches()
        if branches:
            return self.valid(branches[draw.index(path, "branch", len(branches))], path, depth)
        enum = node.enum
        if enum is not None:
            return enum[draw.index(path, "enum", len(enum))]
        kind = node.type
        if kind == "object":
            return {
                name: self.field(child, f"{path}.{name}", depth + 1)
                for name, child in node.properties()
            }
        if kind == "array":
            low, high = _item_bounds(node, depth)
            items = node.items
            count = draw.between(path, "count", low, high)
            if items is None:
                return [_sentence(draw, f"{path}[{i}]", 1, 3) for i in range(count)]
            return [self.valid(items, f"{path}[{i}]", depth + 1) for i in range(count)]
        if kind == "integer":
            low_i, high_i = _int_bounds(node, path)
            return draw.between(path, "int", low_i, high_i)
        if kind == "number":
            return _number(node, draw.unit(path, "number"))
        if kind == "boolean":
            return draw.unit(path, "bool") < 0.5
        if kind == "null":
            return None
        return _string(node, path, draw)

    def invalid(self, schema: SchemaView, path: str) -> Any:
        """A value of the wrong type, outside the enum or out of range; never null if nullable."""
        node, allows_null = _collapse(schema)
        enum = node.enum
        if enum is not None:
            bad = "NOT_IN_ENUM"
            while bad in enum:
                bad += "_X"
            return bad
        branches, _ = node.branches()
        if branches:
            return _union_misfit([b.type for b in branches])
        kind = node.type
        options: list[Any]
        if kind == "object":
            options = ["not-an-object", [1, 2, 3]]
        elif kind == "array":
            options = ["not-a-list", {"not": "a list"}]
            max_items = node.number("maxItems")
            if max_items is not None:
                options.append(["x"] * (int(max_items) + 1))
        elif kind in ("integer", "number"):
            options = ["not-a-number", 3.75 if kind == "integer" else [1.5]]
            out = _out_of_range(node)
            if out is not None:
                options.append(int(out) if kind == "integer" else out)
        elif kind == "boolean":
            options = ["maybe", 42]
        elif kind in ("string", "any"):
            options = [12345, ["not", "a", "string"]]
            if not allows_null:
                options.append(None)
            max_length = node.number("maxLength")
            if max_length is not None:
                options.append("x" * (int(max_length) + 5))
        else:
            options = ["not-null"]
        return options[self._draw.index(path, "variant", len(options))]


def _collapse(schema: SchemaView) -> tuple[SchemaView, bool]:
    """Unwrap ``anyOf: [X, null]`` into X; return the node and whether null is allowed."""
    nullable = schema.nullable
    branches, has_null = schema.branches()
    if len(branches) == 1:
        inner, inner_nullable = _collapse(branches[0])
        return inner, nullable or has_null or inner_nullable
    return schema, nullable or has_null


def _item_bounds(node: SchemaView, depth: int) -> tuple[int, int]:
    min_items = node.number("minItems")
    max_items = node.number("maxItems")
    low = int(min_items) if min_items is not None else 1
    high = int(max_items) if max_items is not None else max(low, 3)
    if max_items is not None and min_items is None:
        low = min(low, high)
    if depth >= _MAX_DEPTH:
        high = low
    return low, max(low, high)


def _int_bounds(node: SchemaView, path: str) -> tuple[int, int]:
    low_f, low_x = node.exclusive("exclusiveMinimum", node.number("minimum"))
    high_f, high_x = node.exclusive("exclusiveMaximum", node.number("maximum"))
    low = None if low_f is None else (math.floor(low_f) + 1 if low_x else math.ceil(low_f))
    high = None if high_f is None else (math.ceil(high_f) - 1 if high_x else math.floor(high_f))
    yearish = "year" in path.rsplit(".", 1)[-1].lower()
    if low is None and high is None:
        low, high = (1950, 2024) if yearish else (0, 100)
    elif low is None:
        assert high is not None
        low = high - 100
    elif high is None:
        high = low + 100
    return low, max(low, high)


def _number(node: SchemaView, unit: float) -> float:
    low, low_x = node.exclusive("exclusiveMinimum", node.number("minimum"))
    high, high_x = node.exclusive("exclusiveMaximum", node.number("maximum"))
    lo = low if low is not None else (high - 100.0 if high is not None else 0.0)
    hi = high if high is not None else lo + 100.0
    value = round(lo + (hi - lo) * unit, 2)
    ok_low = value > lo if low_x else value >= lo
    ok_high = value < hi if high_x else value <= hi
    return value if ok_low and ok_high else (lo + hi) / 2


def _out_of_range(node: SchemaView) -> float | None:
    low, _ = node.exclusive("exclusiveMinimum", node.number("minimum"))
    high, _ = node.exclusive("exclusiveMaximum", node.number("maximum"))
    if high is not None:
        return high + 1000.0
    if low is not None:
        return low - 1000.0
    return None


def _accepts(kind: str, value: object) -> bool:
    """Coarsely, whether a branch of this type could accept ``value`` (lax mode included)."""
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "string":
        return isinstance(value, str)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind in ("integer", "boolean"):
        return isinstance(value, (int, str))
    return kind == "any"


def _union_misfit(types: list[str]) -> Any:
    """A value no branch of a union accepts (best effort, by branch type)."""
    for candidate in ([["not", "valid"]], {"not": ["valid"]}, "not-valid", 3.75):
        if not any(_accepts(kind, candidate) for kind in types):
            return candidate
    return None


def _string(node: SchemaView, path: str, draw: _Draw) -> str:
    name = path.rsplit(".", 1)[-1].lower()
    fmt = node.format
    epoch = 946_684_800 + draw.unit(path, "time") * 946_080_000  # 2000..2030
    if fmt == "date-time":
        text = format_timestamp(int(epoch))
    elif fmt == "date" or (fmt is None and name.endswith("date")):
        text = format_timestamp(int(epoch))[:10]
    elif fmt == "email" or "email" in name:
        text = f"{draw.words(path, 1)[0]}@example.com"
    elif fmt == "uuid":
        digest = hashlib.blake2b(f"{draw.unit(path, 'uuid')}".encode(), digest_size=16).hexdigest()
        text = f"{digest[:8]}-{digest[8:12]}-4{digest[13:16]}-a{digest[17:20]}-{digest[20:32]}"
    elif fmt in ("uri", "url") or name.endswith(("url", "link")):
        text = "https://example.com/" + "/".join(draw.words(path, 2))
    elif "year" in name:
        text = str(draw.between(path, "year", 1950, 2024))
    elif "title" in name:
        text = " ".join(w.capitalize() for w in draw.words(path, draw.between(path, "n", 2, 4)))
    elif "author" in name or name in ("name", "person") or name.endswith("_name"):
        first = _FIRST[draw.index(path, "first", len(_FIRST))]
        text = f"{first} {_LAST[draw.index(path, 'last', len(_LAST))]}"
    else:
        text = _sentence(draw, path, 3, 8)
    min_length = node.number("minLength")
    max_length = node.number("maxLength")
    if max_length is not None and len(text) > max_length:
        text = text[: int(max_length)]
    if min_length is not None and len(text) < min_length:
        text = text.ljust(int(min_length), "x")
    return text
