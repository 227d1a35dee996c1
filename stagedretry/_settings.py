"""Typed settings: frozen attrs classes read from plain data with path-precise errors.

A strategy declares the stage params it understands, and a provider its
configuration section, as a frozen attrs class whose fields are made with
:func:`setting` (a unit, a range, a set of choices).  :func:`parse_settings`
reads a parsed TOML/YAML table into that class and refuses, with one sentence
naming the dotted path, every value the class cannot hold: an unknown key (with
the nearest known one), a wrong type, NaN or infinity, a value out of range.

Values are taken as the file wrote them: a boolean is never a number, a string
is never parsed as one, and a whole number is accepted where a float is
expected (``temperature = 1``).  Supported field types: ``bool``, ``int``,
``float``, ``str``, an :class:`enum.Enum`, another settings class (a table),
``tuple[X, ...]`` of any of those (a list; a lone scalar is a list of one) and
``X | None``.  Fields whose type is none of these are not settable from data:
give them ``settable=False`` and a default.
"""

from __future__ import annotations

import difflib
import enum
import math
import types
import typing
from collections.abc import Collection, Sequence
from typing import Any, Final, TypeVar

import attrs

from ._describe import describe as _show
from ._describe import key_name
from ._documents import expect_table as _expect_table
from ._outcomes import PlanError
from ._plan import Plan

T = TypeVar("T")

_META: Final = "stagedretry.setting"


@attrs.frozen
class _Spec:
    """The constraints :func:`setting` attaches to one field."""

    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] | None = None
    unit: str | None = None
    max_items: int | None = None
    settable: bool = True


def setting(
    default: Any = attrs.NOTHING,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    choices: Collection[str] | None = None,
    unit: str | None = None,
    max_items: int | None = None,
    settable: bool = True,
    factory: Any = None,
) -> Any:
    """An attrs field of a settings class, with its checks.

    *minimum* and *maximum* bound a number inclusively, *above* exclusively;
    *choices* are the allowed strings; *unit* names the unit in messages
    (``"seconds"``, ``"tokens"``); *max_items* caps a tuple's length.  A field
    with ``settable=False`` is derived by its owner and refused in data.
    The same conversion and checks run when the class is built in code: a
    whole number becomes a float where a float is declared, a lone string a
    tuple of one, and a wrong type or a value out of range raises
    :class:`PlanError` with the field's name as its path.
    """
    spec = _Spec(
        minimum=minimum,
        maximum=maximum,
        above=above,
        choices=tuple(choices) if choices is not None else None,
        unit=unit,
        max_items=max_items,
        settable=settable,
    )
    if factory is not None:
        return attrs.field(factory=factory, metadata={_META: spec}, converter=_CONVERTER)
    return attrs.field(default=default, metadata={_META: spec}, converter=_CONVERTER)


def _convert_field(value: object, instance: object, attribute: attrs.Attribute[Any]) -> Any:
    # One path for data and code: parse_settings hands the file's values to the class as
    # they are, and every field converts and checks its own (with its name as the path).
    field = _fields(type(instance)).get(attribute.name)
    if field is None or not field.spec.settable:
        return value
    return _read(field, value, attribute.name)


_CONVERTER: Final = attrs.Converter(_convert_field, takes_self=True, takes_field=True)


@attrs.frozen
class _Field:
    name: str
    kind: Any
    spec: _Spec
    required: bool

    @property
    def whole(self) -> bool | None:
        """Whether the field holds whole numbers (``None``: not a number field)."""
        base = _scalar_type(self.kind)
        return True if base is int else False if base is float else None


def _scalar_type(kind: Any) -> Any:
    """The element type under ``X | None`` and ``tuple[X, ...]``."""
    while typing.get_origin(kind) in (types.UnionType, typing.Union, tuple):
        args = [a for a in typing.get_args(kind) if a is not type(None) and a is not Ellipsis]
        if len(args) != 1:
            return kind
        kind = args[0]
    return kind


_FIELDS: dict[type[Any], dict[str, _Field]] = {}


def _fields(cls: type[Any]) -> dict[str, _Field]:
    """The fields of a settings class, read once per class (types resolved)."""
    found = _FIELDS.get(cls)
    if found is not None:
        return found
    attrs.resolve_types(cls)
    out = {}
    for field in attrs.fields(cls):
        if not field.init:
            continue
        spec = field.metadata.get(_META, _Spec())
        out[field.name] = _Field(field.name, field.type, spec, field.default is attrs.NOTHING)
    _FIELDS[cls] = out
    return out


def settable_keys(cls: type[Any]) -> tuple[str, ...]:
    """The keys :func:`parse_settings` accepts for *cls*, in declaration order."""
    return tuple(name for name, f in _fields(cls).items() if f.spec.settable)


def parse_settings(
    cls: type[T],
    data: object,
    where: str,
    *,
    noun: str = "key",
) -> T:
    """Read *data* (a mapping from a parsed file) into the settings class *cls*.

    *where* is the dotted path of *data* (``"plan.stages[0].params"``), used
    in every message; *noun* names a key in the unknown-key message
    (``"parameter"`` for stage params).  Raises :class:`PlanError` whose
    ``path`` is the offending value's path.  Missing keys take the class's
    defaults.
    """
    if not attrs.has(cls):
        raise TypeError(f"{cls.__name__} is not an attrs class")
    build: Any = cls
    table = _expect_table(data, where)
    fields = _fields(cls)
    known = settable_keys(cls)
    values: dict[str, Any] = {}
    for key, raw in table.items():
        field = fields.get(key)
        if field is None or not field.spec.settable:
            raise PlanError(f"{where}.{key_name(key)}", _unknown(key, known, noun))
        values[key] = raw  # converted and checked by the field itself, as in code
    for name, field in fields.items():
        if field.required and name not in values:
            raise PlanError(f"{where}.{name}", "missing")
    try:
        made: T = build(**values)
        return made
    except PlanError as exc:
        # A field's check, or one across fields made by the class itself: under *where*.
        raise PlanError(f"{where}.{exc.path}" if exc.path else where, exc.problem) from None


def _unknown(key: object, known: Sequence[str], noun: str) -> str:
    close = difflib.get_close_matches(str(key), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    listed = ", ".join(known) if known else "none"
    return f"unknown {noun} ({hint}known: {listed})"


def _read(field: _Field, raw: object, where: str) -> Any:
    value = _convert(field.kind, field.spec, raw, where)
    _check(field, value, where)
    return value


def _convert(kind: Any, spec: _Spec, raw: object, where: str) -> Any:
    """Turn file data into a value of *kind*; type errors only, ranges come after."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        if raw is None:
            return None
        if len(options) != 1:
            raise TypeError(f"{where}: only 'X | None' unions are supported")
        return _convert(options[0], spec, raw, where)
    if origin is tuple:
        args = typing.get_args(kind)
        element = args[0]
        items = raw if isinstance(raw, list | tuple) else [raw]
        if not isinstance(raw, list | tuple) and attrs.has(element):
            raise PlanError(where, f"expected a list of tables, got {_show(raw)}")
        return tuple(_convert(element, spec, v, f"{where}[{i}]") for i, v in enumerate(items))
    if isinstance(kind, type) and isinstance(raw, kind) and not isinstance(raw, bool | int):
        return raw  # already built: a default, or a value given in code
    if isinstance(kind, type) and attrs.has(kind):
        return parse_settings(kind, raw, where)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        names = [str(m.value) for m in kind]
        if not isinstance(raw, str) or raw not in names:
            raise PlanError(where, f"expected one of {', '.join(names)}, got {_show(raw)}")
        return kind(raw)
    if kind is bool:
        if not isinstance(raw, bool):
            raise PlanError(where, f"expected true or false, got {_show(raw)}")
        return raw
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise PlanError(where, f"expected {_whole(spec)}, got {_show(raw)}")
        return raw
    if kind is float:
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not _finite(raw):
            raise PlanError(where, f"expected {_number(spec)}, got {_show(raw)}")
        # Checked before float(), so the message shows the value as the file wrote it.
        _check_scalar(spec, raw, where, whole=False)
        return float(raw)
    if kind is str:
        if not isinstance(raw, str):
            raise PlanError(where, f"expected a string, got {_show(raw)}")
        return raw
    raise TypeError(f"{where}: a field of type {kind!r} cannot be read from data")


def _check(field: _Field, value: object, where: str) -> None:
    """Range, choice and length checks of one converted value (or of a value built in code)."""
    spec = field.spec
    if value is None:
        return
    if isinstance(value, tuple):
        if spec.max_items is not None and len(value) > spec.max_items:
            raise PlanError(where, f"at most {spec.max_items} items, got {len(value)}")
        for i, element in enumerate(value):
            _check_scalar(spec, element, f"{where}[{i}]", whole=field.whole)
        return
    _check_scalar(spec, value, where, whole=field.whole)


def _check_scalar(spec: _Spec, value: object, where: str, *, whole: bool | None = None) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        if not _finite(value) or not _in_range(spec, value):
            if whole is None:
                whole = isinstance(value, int)
            shape = _whole(spec) if whole else _number(spec)
            raise PlanError(where, f"expected {shape}, got {_show(value)}")
    elif isinstance(value, str):
        if spec.choices is not None and value not in spec.choices:
            raise PlanError(where, f"expected one of {', '.join(spec.choices)}, got {value!r}")
        if not value.strip():
            raise PlanError(where, "expected a non-empty string")


def _finite(value: float) -> bool:
    # An int is finite, but one too large for a float is refused: nothing here takes it.
    if isinstance(value, int):
        return abs(value) <= _LARGEST_INT
    return math.isfinite(value)


_LARGEST_INT: Final = 2**63
"""The largest whole number a setting may hold (a signed 64-bit integer's range)."""


def _in_range(spec: _Spec, value: float) -> bool:
    if spec.minimum is not None and value < spec.minimum:
        return False
    if spec.maximum is not None and value > spec.maximum:
        return False
    return not (spec.above is not None and value <= spec.above)


def _bounds(spec: _Spec) -> str:
    low, high = spec.minimum, spec.maximum
    if low is not None and high is not None:
        return f" in [{_bound(low)}, {_bound(high)}]"
    parts = []
    if spec.above is not None:
        parts.append(f"above {_bound(spec.above)}")
    if low is not None:
        parts.append(f"of at least {_bound(low)}")
    if high is not None:
        parts.append(f"{'and ' if parts else 'of '}at most {_bound(high)}")
    return "".join(f" {p}" for p in parts)


def _bound(value: float) -> str:
    # 2 and 2147483647 read as written; 0.5 stays 0.5.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _number(spec: _Spec) -> str:
    unit = f" of {spec.unit}" if spec.unit else ""
    return f"a number{unit}{_bounds(spec)}"


def _whole(spec: _Spec) -> str:
    unit = f" of {spec.unit}" if spec.unit else ""
    return f"a whole number{unit}{_bounds(spec)}"


def stage_params(plan: Plan, params_type: type[T], *, where: str = "plan") -> tuple[T, ...]:
    """Each stage's params read into *params_type*, in stage order.

    Raises :class:`PlanError` naming the first bad value, e.g.
    ``plan.stages[0].params.temperature: expected a number in [0, 2], got the
    string 'hot'``.  *where* prefixes every path.
    """
    return tuple(
        parse_settings(params_type, stage.params, f"{where}.stages[{i}].params", noun="parameter")
        for i, stage in enumerate(plan.stages)
    )
