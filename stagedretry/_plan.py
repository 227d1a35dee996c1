"""The declared plan: ordered stages, a prompt budget and the policy per outcome.

A plan is parsed and checked once, at the edge; every mistake is reported with
the path of the offending value before any work starts.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeGuard

import attrs

from ._describe import describe as _show
from ._describe import key_name
from ._documents import expect_table as _expect_table
from ._documents import load_document
from ._outcomes import PlanError

ParamValue = str | int | float | bool | tuple[str | int | float | bool, ...]
"""What a stage parameter may be: a scalar, or a tuple of scalars."""

NEXT: Final = "next"
FAIL: Final = "fail"
EXHAUST: Final = "exhaust"
RETRY: Final = "retry"
BUILTIN_KINDS: Final = ("full", "partial")
_SPECIAL_TARGETS: Final = (NEXT, FAIL, EXHAUST)

# Every wait is bounded (docs/reference/limits.md lists these).  A request needs a bound even
# when none is declared: 600 s is the default of the OpenAI and Anthropic SDKs, and covers the
# longest answer Gemini gives (65,536 output tokens at ~150 tokens/s, with thinking), ten times
# a long structured answer of a minute.
DEFAULT_TIMEOUT: Final = 600.0
"""Real seconds per request when neither the plan nor the stage sets ``timeout``."""
MAX_TIMEOUT: Final = 3600.0
"""The largest ``timeout`` (plan or stage) in seconds: one hour per request."""
MAX_DEADLINE: Final = 86400.0
"""The largest per-item ``deadline`` in seconds: one day."""
MAX_BACKOFF: Final = 3600.0
"""The largest ``initial`` or ``max`` of a backoff in seconds: one hour between two tries."""
MAX_MULTIPLIER: Final = 100.0
"""The largest backoff ``multiplier`` (a larger one overflows before ``max`` caps it)."""


def _freeze_params(value: Mapping[str, Any] | None) -> Mapping[str, ParamValue]:
    return MappingProxyType(
        {k: tuple(v) if isinstance(v, list) else v for k, v in (value or {}).items()}
    )


@attrs.frozen
class Backoff:
    """Exponential backoff with full jitter, in seconds.

    Before retry *n* (1-based) the wait is
    ``uniform(0, min(maximum, initial * multiplier**(n-1)))`` seconds.

    * *initial* -- seconds, the ceiling before the first retry (default 0.5); in (0, 3600].
    * *maximum* -- seconds, the ceiling no wait exceeds (default 30.0); must be >= *initial*,
      at most 3600.  In a plan's ``rate_limit_backoff`` it also caps a server's ``Retry-After``.
    * *multiplier* -- the factor from one ceiling to the next (default 2.0); in [1, 100].

    The values are checked when a :class:`Plan` holding the backoff is built:
    :class:`PlanError` names the offending field.
    """

    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0

    def ceiling(self, retry: int) -> float:
        """The upper bound of the wait before retry number *retry* (1-based)."""
        exponent = min(retry - 1, 64)
        return float(min(self.maximum, self.initial * self.multiplier**exponent))


@attrs.frozen
class Expedite:
    """A stage's move to a faster stage as the item's deadline nears (e.g. Flex to Standard).

    Before each request at the stage, if the item's deadline (the plan's
    ``deadline``, from the item's start) is at most *within* seconds away, the item
    moves to the stage *to* without sending anything: a best-effort tier that may
    take minutes is not worth waiting on with little time left.

    * *within* -- seconds before the item's deadline, in (0, the plan's ``deadline``];
      equal to the deadline, the stage always moves on.
    * *to* -- the name of another stage of the plan.

    Checked as part of its :class:`Plan` (which must have a ``deadline``):
    :class:`PlanError` names the path (``plan.stages[0].expedite.to``).  Expedite
    moves may not form a cycle.
    """

    within: float
    to: str


@attrs.frozen
class Stage:
    """One declared stage.

    * *name* -- unique in the plan; letters, digits, ``_`` and ``-`` (it becomes a
      machine state and a Mermaid node).  ``succeeded``, ``failed``, ``exhausted``,
      ``next``, ``fail``, ``exhaust`` and ``retry`` are reserved.
    * *kind* -- a stage kind: ``"full"`` (default), ``"partial"`` (never first) or
      one registered with the runner's *kinds*.
    * *params* -- scalars or tuples of scalars handed to the strategy unchanged
      (e.g. ``{"temperature": 0.25}``); default none.
    * *on_invalid* -- where a validation failure leads: ``"next"`` (default; past
      the last stage, ``exhausted``), ``"fail"``, ``"exhaust"`` or a stage name.
    * *on_transient* -- ``"retry"`` (default: stay, after a backoff) or a target
      like *on_invalid*.
    * *on_shed* -- where a request that a best-effort service tier shed unserved
      (:attr:`OutcomeKind.SHED`, e.g. Gemini's Flex) leads: ``"retry"`` (default:
      stay, after the rate-limit backoff or the server's delay) or a target like
      *on_invalid*, such as a stage on the standard tier.  A shed is never billed and
      spends no prompt; it counts against the plan's ``max_rate_limit_waits``.
    * *on_give_up* -- where the stage goes once it has sent *max_attempts* requests
      and a transient error would keep it there: a target like *on_invalid*, never
      the stage itself.  Default ``None``: follow *on_invalid*.
    * *max_attempts* -- requests this stage may send before a transient error
      follows *on_give_up* instead (the stage gives up); refusals such as rate
      limits, sheds and lost resources do not count.  Default ``None``: no cap of its own.
    * *expedite* -- an :class:`Expedite`: move to a faster stage, without a
      request, once the item's deadline is near.  Default ``None``.
    * *timeout* -- seconds per request at this stage, in (0, 3600]; default ``None``: the plan's.
    * *backoff* -- the :class:`Backoff` between transient retries here; default
      ``None``: the plan's.

    A stage is checked as part of its :class:`Plan`, which raises
    :class:`PlanError` with the path of the mistake (``plan.stages[2].on.invalid``).
    """

    name: str
    kind: str = "full"
    params: Mapping[str, ParamValue] = attrs.field(factory=dict, converter=_freeze_params)
    on_invalid: str = NEXT
    on_transient: str = RETRY
    max_attempts: int | None = None
    timeout: float | None = None
    backoff: Backoff | None = None
    on_shed: str = attrs.field(default=RETRY, kw_only=True)
    on_give_up: str | None = attrs.field(default=None, kw_only=True)
    expedite: Expedite | None = attrs.field(default=None, kw_only=True)

    @property
    def give_up_target(self) -> str:
        """Where the stage goes when it gives up: *on_give_up*, else *on_invalid*."""
        return self.on_invalid if self.on_give_up is None else self.on_give_up

    def param(self, name: str, default: Any = None) -> Any:
        """A parameter's value, or *default*."""
        return self.params.get(name, default)


def _to_stages(value: Iterable[Stage]) -> tuple[Stage, ...]:
    # A typed converter: mypy cannot infer ``converter=tuple``'s element type.
    return tuple(value)


@attrs.frozen
class Plan:
    """An immutable, validated declaration of how one item is worked on.

    * *stages* -- one or more :class:`Stage`, tried from the first; every stage must
      be reachable from the first.
    * *max_prompts* -- requests one item may send that may be billed (default 5,
      at least 1); the item ends ``exhausted`` rather than send one more.
    * *deadline* -- seconds per item, from its start, checked before each request
      and cutting the last request's timeout short, in (0, 86400]; default ``None``: none.
    * *timeout* -- seconds per request on the runner's clock (a stage may override it), in
      (0, 3600].  Default ``None``: :data:`DEFAULT_TIMEOUT`, 600 seconds, measured in real
      time whatever the clock (a guard against a connection that never answers, which a
      virtual clock moved by a test must not fire).  There is no "no timeout": a request
      that never answers ends as a transient failure, and the item goes on by its plan.
    * *backoff* -- between transient retries: :class:`Backoff` (0.5 s doubling to 30 s).
    * *rate_limit_backoff* -- the cooldown after a 429 without a server delay, and the
      cap on a server's delay (a 429's, or a 503's ``Retry-After``): :class:`Backoff`
      (2 s doubling to 300 s).
    * *max_rate_limit_waits* -- 429 refusals per item before it fails (default 20).
    * *max_resource_lost* -- losses of a shared resource in a row per item before it
      fails (default 2).

    Built in code, from plain data (:meth:`from_dict`) or a TOML/YAML file
    (:meth:`load`); any mistake raises :class:`PlanError` naming its path before
    any request is sent.  Rate limits and lost resources cost no prompt: see
    ``docs/explanation/budget.md``.
    """

    stages: tuple[Stage, ...] = attrs.field(converter=_to_stages)
    max_prompts: int = 5
    deadline: float | None = None
    timeout: float | None = None
    backoff: Backoff = Backoff()
    rate_limit_backoff: Backoff = Backoff(initial=2.0, maximum=300.0)
    max_rate_limit_waits: int = 20
    max_resource_lost: int = 2

    def __attrs_post_init__(self) -> None:
        _check_plan(self, "plan")

    @classmethod
    def ladder(cls, *, max_prompts: int = 5) -> Plan:
        """The default plan: ``full@0.0 -> partial@0.0 -> full@0.25 -> partial@0.25``."""
        return cls(
            stages=(
                Stage("full_t0", "full", {"temperature": 0.0}),
                Stage("partial_t0", "partial", {"temperature": 0.0}),
                Stage("full_t25", "full", {"temperature": 0.25}),
                Stage("partial_t25", "partial", {"temperature": 0.25}),
            ),
            max_prompts=max_prompts,
        )

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        kinds: Iterable[str] = BUILTIN_KINDS,
        where: str = "plan",
    ) -> Plan:
        """Build a plan from plain data (a parsed TOML/YAML document or code).

        *kinds* are the stage kind names that exist; *where* prefixes every
        error path.
        """
        return _parse_plan(data, tuple(kinds), where)

    @classmethod
    def load(cls, path: str | Path, *, kinds: Iterable[str] = BUILTIN_KINDS) -> Plan:
        """Read a plan from a TOML or YAML file (at the top level or under ``[plan]``).

        Raises :class:`PlanError` naming the file for any mistake, and for a file
        past the limits on outside data: larger than 1 MiB, nested more than 64
        levels deep, or (YAML) a key given twice in one mapping.
        """
        path = Path(path)
        return plan_from_document(load_document(path), path.name, kinds=kinds)

    def stage(self, name: str) -> Stage:
        """The stage called *name*."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain data that :meth:`from_dict` turns back into an equal plan."""
        out: dict[str, Any] = {"max_prompts": self.max_prompts}
        if self.deadline is not None:
            out["deadline"] = self.deadline
        if self.timeout is not None:
            out["timeout"] = self.timeout
        out["backoff"] = attrs.asdict(self.backoff)
        out["rate_limit_backoff"] = attrs.asdict(self.rate_limit_backoff)
        out["max_rate_limit_waits"] = self.max_rate_limit_waits
        out["max_resource_lost"] = self.max_resource_lost
        stages = []
        for s in self.stages:
            d: dict[str, Any] = {"name": s.name, "kind": s.kind}
            if s.params:
                d["params"] = {
                    k: list(v) if isinstance(v, tuple) else v for k, v in s.params.items()
                }
            on = {"invalid": s.on_invalid, "transient": s.on_transient}
            if s.on_shed != RETRY:
                on["shed"] = s.on_shed
            if s.on_give_up is not None:
                on["give_up"] = s.on_give_up
            d["on"] = on
            if s.max_attempts is not None:
                d["max_attempts"] = s.max_attempts
            if s.timeout is not None:
                d["timeout"] = s.timeout
            if s.backoff is not None:
                d["backoff"] = attrs.asdict(s.backoff)
            if s.expedite is not None:
                d["expedite"] = attrs.asdict(s.expedite)
            stages.append(d)
        out["stages"] = stages
        return out

    def to_mermaid(self) -> str:
        """The declared machine as a Mermaid ``stateDiagram-v2`` (text: no renderer needed)."""
        return mermaid(self.stages[0].name, declared_edges(self))


# -- the declared machine ----------------------------------------------------------------------
# The triggers and edges are what the plan declares; ``_machine`` compiles them onto
# ``transitions``.  They live here so that drawing a plan needs no machine.

TERMINAL_STATES: Final = ("succeeded", "failed", "exhausted")


class Trigger(enum.Enum):
    """The events the engine fires, one per attempt or decision."""

    SUCCEED = "succeed"
    INVALID = "invalid"
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    RESOURCE_LOST = "resource_lost"
    FATAL = "fatal"
    GIVE_UP = "give_up"  # the stage's max_attempts is spent
    SHED = "shed"  # a best-effort service tier shed the request unserved
    EXPEDITE = "expedite"  # the deadline is near: on to a faster stage without a request
    SKIP = "skip"  # nothing to repair: move on without a request
    EXHAUST = "exhaust"  # the prompt budget or the deadline is spent
    ABORT = "abort"  # a cap on waits (rate limits, lost resources) is reached


@attrs.frozen
class Edge:
    """One declared transition: ``source --trigger--> dest`` (``dest is None``: stay)."""

    trigger: Trigger
    source: str
    dest: str | None


def declared_edges(plan: Plan) -> tuple[Edge, ...]:
    """Every transition *plan* declares, stage by stage."""
    stages = plan.stages
    edges: list[Edge] = []
    for i, stage in enumerate(stages):
        name = stage.name
        invalid_dest = resolve_target(stages, i, stage.on_invalid)
        transient_dest = (
            None if stage.on_transient == RETRY else resolve_target(stages, i, stage.on_transient)
        )
        shed_dest = None if stage.on_shed == RETRY else resolve_target(stages, i, stage.on_shed)
        edges += [
            Edge(Trigger.SUCCEED, name, "succeeded"),
            Edge(Trigger.INVALID, name, invalid_dest),
            Edge(Trigger.TRANSIENT, name, transient_dest),
            Edge(Trigger.RATE_LIMITED, name, None),
            Edge(Trigger.RESOURCE_LOST, name, None),
            Edge(Trigger.FATAL, name, "failed"),
            Edge(Trigger.GIVE_UP, name, resolve_target(stages, i, stage.give_up_target)),
            Edge(Trigger.SHED, name, shed_dest),
            Edge(Trigger.EXHAUST, name, "exhausted"),
            Edge(Trigger.ABORT, name, "failed"),
        ]
        if stage.expedite is not None:
            edges.append(Edge(Trigger.EXPEDITE, name, stage.expedite.to))
        if can_skip(stage):
            edges.append(Edge(Trigger.SKIP, name, resolve_target(stages, i, NEXT)))
    return tuple(edges)


def mermaid(initial: str, edges: Iterable[Edge]) -> str:
    """*edges* as a Mermaid ``stateDiagram-v2``, one arrow per (source, dest) pair."""
    lines = ["stateDiagram-v2", f"    [*] --> {initial}"]
    grouped: dict[tuple[str, str], list[str]] = {}
    for edge in edges:
        dest = edge.source if edge.dest is None else edge.dest
        grouped.setdefault((edge.source, dest), []).append(edge.trigger.value)
    for (source, dest), triggers in grouped.items():
        lines.append(f"    {source} --> {dest}: {', '.join(triggers)}")
    lines += [f"    {t} --> [*]" for t in TERMINAL_STATES]
    return "\n".join(lines) + "\n"


# -- parsing -----------------------------------------------------------------------------------


def plan_from_document(
    data: Mapping[str, Any], name: str, *, kinds: Iterable[str] = BUILTIN_KINDS
) -> Plan:
    """The plan in a parsed plan file *name*: at the top level, or alone under ``[plan]``.

    What :meth:`Plan.load` does once the file is read; raises :class:`PlanError`.
    """
    where = f"{name}: plan"
    if "plan" in data:
        extra = sorted(set(data) - {"plan"})
        if extra:
            raise PlanError(name, f"unknown top-level key(s) {extra} beside [plan]")
        data = _expect_table(data["plan"], where)
    return Plan.from_dict(data, kinds=kinds, where=where)


PLAN_KEYS: Final = (
    "stages",
    "max_prompts",
    "deadline",
    "timeout",
    "backoff",
    "rate_limit_backoff",
    "max_rate_limit_waits",
    "max_resource_lost",
)
_STAGE_KEYS = ("name", "kind", "params", "on", "max_attempts", "timeout", "backoff", "expedite")
_ON_KEYS = ("invalid", "transient", "shed", "give_up")
_EXPEDITE_KEYS = ("within", "to")
_BACKOFF_KEYS = ("initial", "max", "maximum", "multiplier")


def _valid_name(name: object) -> bool:
    # Names become machine states and Mermaid node ids: keep them plain.
    return (
        isinstance(name, str)
        and bool(name)
        and name.isascii()
        and name.replace("_", "").replace("-", "").isalnum()
    )


def _reject_unknown(table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise PlanError(
                f"{where}.{key_name(key)}", f"unknown key (allowed: {', '.join(allowed)})"
            )


def _int(value: object, where: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PlanError(where, f"expected an integer, got {_show(value)}")
    if value < minimum:
        raise PlanError(where, f"must be at least {minimum}, got {_number(value)}")
    if value > _LARGEST_COUNT:
        # Past a 64-bit integer a count bounds nothing, and no journal column holds it.
        raise PlanError(where, f"must be at most {_LARGEST_COUNT}, got {_number(value)}")
    return value


_LARGEST_COUNT: Final = 2**63 - 1


def _is_number(value: object) -> TypeGuard[float]:
    """A finite int or float; a boolean is not a number here, nor an int no float can hold."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, int):
        return value.bit_length() <= _FLOAT_BITS  # math.isfinite() would raise OverflowError
    return math.isfinite(value)


_FLOAT_BITS: Final = 1023


def _number(value: object) -> str:
    """*value* as an error shows it: as written, or the size of an int too long to print."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _show(value).removeprefix("the number ")
    return repr(value)


def _check_seconds(value: object, where: str, maximum: float) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > maximum:
        # Compared as an int: even one no float can hold is simply too long.
        raise PlanError(where, f"must be at most {maximum:g} seconds, got {_number(value)}")
    if not (_is_number(value) and value > 0):
        raise PlanError(where, f"must be a positive number of seconds, got {_number(value)}")
    if value > maximum:
        raise PlanError(where, f"must be at most {maximum:g} seconds, got {_number(value)}")


def _seconds(value: object, where: str, maximum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PlanError(where, f"expected a number of seconds, got {_show(value)}")
    _check_seconds(value, where, maximum)
    return float(value)


_MAXIMA: Final = {"deadline": MAX_DEADLINE, "timeout": MAX_TIMEOUT}


def _str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise PlanError(where, f"expected a string, got {_show(value)}")
    return value


def _backoff(value: object, where: str) -> Backoff:
    table = _expect_table(value, where)
    _reject_unknown(table, _BACKOFF_KEYS, where)
    default = Backoff()
    initial = _seconds(table.get("initial", default.initial), f"{where}.initial", MAX_BACKOFF)
    maximum = _seconds(
        table.get("max", table.get("maximum", default.maximum)), f"{where}.max", MAX_BACKOFF
    )
    multiplier = table.get("multiplier", default.multiplier)
    if not _is_number(multiplier):
        raise PlanError(
            f"{where}.multiplier",
            f"expected a number in [1, {MAX_MULTIPLIER:g}], got {_show(multiplier)}",
        )
    backoff = Backoff(initial, maximum, float(multiplier))
    # The same checks as for a Backoff built in code, under this file's path.
    _check_backoff(backoff, where)
    return backoff


def _params(value: object, where: str) -> dict[str, ParamValue]:
    table = _expect_table(value, where)
    out: dict[str, ParamValue] = {}
    for key, item in table.items():
        if isinstance(item, list):
            for i, element in enumerate(item):
                if not isinstance(element, str | int | float | bool):
                    raise PlanError(
                        f"{where}.{key}[{i}]", f"expected a scalar, got {_show(element)}"
                    )
            out[key] = tuple(item)
        elif isinstance(item, str | int | float | bool):
            out[key] = item
        else:
            raise PlanError(f"{where}.{key}", f"expected a scalar or a list, got {_show(item)}")
    return out


def _parse_stage(value: object, where: str, kinds: tuple[str, ...]) -> Stage:
    table = _expect_table(value, where)
    _reject_unknown(table, _STAGE_KEYS, where)
    if "name" not in table:
        raise PlanError(f"{where}.name", "missing (every stage needs a unique name)")
    name = _str(table["name"], f"{where}.name")
    if not _valid_name(name):
        raise PlanError(
            f"{where}.name", f"{name!r} is not a valid name (letters, digits, '_' and '-')"
        )
    kind = _str(table.get("kind", "full"), f"{where}.kind")
    if kind not in kinds:
        raise PlanError(f"{where}.kind", f"unknown stage kind {kind!r} (known: {', '.join(kinds)})")
    on = _expect_table(table.get("on", {}), f"{where}.on")
    _reject_unknown(on, _ON_KEYS, f"{where}.on")
    return Stage(
        name=name,
        kind=kind,
        params=_params(table.get("params", {}), f"{where}.params"),
        on_invalid=_str(on.get("invalid", NEXT), f"{where}.on.invalid"),
        on_transient=_str(on.get("transient", RETRY), f"{where}.on.transient"),
        max_attempts=(
            None
            if table.get("max_attempts") is None
            else _int(table["max_attempts"], f"{where}.max_attempts", minimum=1)
        ),
        timeout=(
            None
            if table.get("timeout") is None
            else _seconds(table["timeout"], f"{where}.timeout", MAX_TIMEOUT)
        ),
        backoff=(
            None if table.get("backoff") is None else _backoff(table["backoff"], f"{where}.backoff")
        ),
        on_shed=_str(on.get("shed", RETRY), f"{where}.on.shed"),
        on_give_up=(
            None if on.get("give_up") is None else _str(on["give_up"], f"{where}.on.give_up")
        ),
        expedite=(
            None
            if table.get("expedite") is None
            else _expedite(table["expedite"], f"{where}.expedite")
        ),
    )


def _expedite(value: object, where: str) -> Expedite:
    table = _expect_table(value, where)
    _reject_unknown(table, _EXPEDITE_KEYS, where)
    for key in _EXPEDITE_KEYS:
        if key not in table:
            raise PlanError(f"{where}.{key}", "missing (expedite needs within and to)")
    # The upper bound (the plan's deadline) is checked with the plan.
    within = _seconds(table["within"], f"{where}.within", MAX_DEADLINE)
    return Expedite(within, _str(table["to"], f"{where}.to"))


def _parse_plan(data: Mapping[str, Any], kinds: tuple[str, ...], where: str) -> Plan:
    table = _expect_table(data, where)
    _reject_unknown(table, PLAN_KEYS, where)
    raw_stages = table.get("stages")
    if raw_stages is None:
        raise PlanError(f"{where}.stages", "missing (a plan needs at least one stage)")
    if not isinstance(raw_stages, list | tuple):
        raise PlanError(f"{where}.stages", f"expected a list of stages, got {_show(raw_stages)}")
    stages = tuple(_parse_stage(s, f"{where}.stages[{i}]", kinds) for i, s in enumerate(raw_stages))
    kwargs: dict[str, Any] = {}
    if "max_prompts" in table:
        kwargs["max_prompts"] = _int(table["max_prompts"], f"{where}.max_prompts", minimum=1)
    for key, maximum in _MAXIMA.items():
        if table.get(key) is not None:
            kwargs[key] = _seconds(table[key], f"{where}.{key}", maximum)
    for key in ("backoff", "rate_limit_backoff"):
        if key in table:
            kwargs[key] = _backoff(table[key], f"{where}.{key}")
    if "max_rate_limit_waits" in table:
        kwargs["max_rate_limit_waits"] = _int(
            table["max_rate_limit_waits"], f"{where}.max_rate_limit_waits", minimum=0
        )
    if "max_resource_lost" in table:
        kwargs["max_resource_lost"] = _int(
            table["max_resource_lost"], f"{where}.max_resource_lost", minimum=0
        )
    # Check with the caller's path prefix first; the constructor checks again as "plan".
    _check_fields(stages, kwargs.get("max_prompts", 5), where, kwargs.get("deadline"))
    return Plan(stages=stages, **kwargs)


# -- checks ------------------------------------------------------------------------------------


def _check_backoff(backoff: object, where: str) -> None:
    if not isinstance(backoff, Backoff):
        raise PlanError(where, f"expected a Backoff, got {_show(backoff)}")
    _check_seconds(backoff.initial, f"{where}.initial", MAX_BACKOFF)
    _check_seconds(backoff.maximum, f"{where}.max", MAX_BACKOFF)
    multiplier = backoff.multiplier
    if not (_is_number(multiplier) and 1 <= multiplier <= MAX_MULTIPLIER):
        raise PlanError(
            f"{where}.multiplier",
            f"expected a number in [1, {MAX_MULTIPLIER:g}], got {_show(multiplier)}",
        )
    if backoff.maximum < backoff.initial:
        raise PlanError(
            where, f"max ({backoff.maximum}) is smaller than initial ({backoff.initial})"
        )


def _check_plan(plan: Plan, where: str) -> None:
    _check_fields(plan.stages, plan.max_prompts, where, plan.deadline)
    # Plans built in code get the same checks as parsed ones.
    _check_backoff(plan.backoff, f"{where}.backoff")
    _check_backoff(plan.rate_limit_backoff, f"{where}.rate_limit_backoff")
    _int(plan.max_rate_limit_waits, f"{where}.max_rate_limit_waits", minimum=0)
    _int(plan.max_resource_lost, f"{where}.max_resource_lost", minimum=0)
    for key, maximum in _MAXIMA.items():
        value = getattr(plan, key)
        if value is not None:
            _check_seconds(value, f"{where}.{key}", maximum)


def _check_fields(
    stages: Sequence[Stage], max_prompts: int, where: str, deadline: object = None
) -> None:
    _int(max_prompts, f"{where}.max_prompts", minimum=1)
    if not stages:
        raise PlanError(f"{where}.stages", "a plan needs at least one stage")
    names: dict[str, int] = {}
    for i, stage in enumerate(stages):
        if not isinstance(stage, Stage):
            raise PlanError(f"{where}.stages[{i}]", f"expected a Stage, got {_show(stage)}")
        if stage.name in names:
            raise PlanError(
                f"{where}.stages[{i}].name",
                f"duplicate stage name {stage.name!r} (also stages[{names[stage.name]}])",
            )
        if stage.name in (*TERMINAL_STATES, *_SPECIAL_TARGETS, RETRY):
            raise PlanError(f"{where}.stages[{i}].name", f"{stage.name!r} is a reserved name")
        if not _valid_name(stage.name):
            raise PlanError(
                f"{where}.stages[{i}].name",
                f"{stage.name!r} is not a valid name (letters, digits, '_' and '-')",
            )
        if stage.timeout is not None:
            _check_seconds(stage.timeout, f"{where}.stages[{i}].timeout", MAX_TIMEOUT)
        if stage.backoff is not None:
            _check_backoff(stage.backoff, f"{where}.stages[{i}].backoff")
        names[stage.name] = i
    known = ", ".join(names)
    for i, stage in enumerate(stages):
        here = f"{where}.stages[{i}]"
        if stage.on_invalid not in names and stage.on_invalid not in _SPECIAL_TARGETS:
            raise PlanError(
                f"{here}.on.invalid",
                f"unknown stage {stage.on_invalid!r} (known: {known}; or next, fail, exhaust)",
            )
        if stage.on_transient not in names and stage.on_transient not in (*_SPECIAL_TARGETS, RETRY):
            raise PlanError(
                f"{here}.on.transient",
                f"unknown stage {stage.on_transient!r} "
                f"(known: {known}; or retry, next, fail, exhaust)",
            )
        if not isinstance(stage.on_shed, str) or (
            stage.on_shed not in names and stage.on_shed not in (*_SPECIAL_TARGETS, RETRY)
        ):
            raise PlanError(
                f"{here}.on.shed",
                f"unknown stage {_show_target(stage.on_shed)} "
                f"(known: {known}; or retry, next, fail, exhaust)",
            )
        if stage.on_give_up is not None:
            if not isinstance(stage.on_give_up, str) or (
                stage.on_give_up not in names and stage.on_give_up not in _SPECIAL_TARGETS
            ):
                raise PlanError(
                    f"{here}.on.give_up",
                    f"unknown stage {_show_target(stage.on_give_up)} "
                    f"(known: {known}; or next, fail, exhaust)",
                )
            if resolve_target(stages, i, stage.on_give_up) == stage.name:
                raise PlanError(
                    f"{here}.on.give_up",
                    f"{stage.on_give_up!r} is the stage itself: a stage that gives up leaves",
                )
            if stage.max_attempts is None:
                raise PlanError(
                    f"{here}.on.give_up",
                    "needs the stage's max_attempts (without it the stage never gives up)",
                )
        if stage.max_attempts is not None:
            _int(stage.max_attempts, f"{here}.max_attempts", minimum=1)
        if stage.expedite is not None:
            _check_expedite(stage, names, deadline, f"{here}.expedite")
    _check_expedite_cycles(stages, where)
    if stages[0].kind == "partial":
        raise PlanError(
            f"{where}.stages[0].kind",
            "the first stage cannot be 'partial': there is nothing to repair yet",
        )
    reachable = _reachable(stages)
    for i, stage in enumerate(stages):
        if stage.name not in reachable:
            raise PlanError(
                f"{where}.stages[{i}]",
                f"stage {stage.name!r} is unreachable from {stages[0].name!r}",
            )


def _show_target(target: object) -> str:
    return repr(target) if isinstance(target, str) else _show(target)


def _check_expedite(stage: Stage, names: Mapping[str, int], deadline: object, where: str) -> None:
    expedite = stage.expedite
    if not isinstance(expedite, Expedite):
        raise PlanError(where, f"expected an Expedite, got {_show(expedite)}")
    if deadline is None:
        raise PlanError(
            where, "needs the plan's deadline (expedite acts as the item's deadline nears)"
        )
    _check_seconds(expedite.within, f"{where}.within", MAX_DEADLINE)
    if _is_number(deadline) and expedite.within > deadline:
        raise PlanError(
            f"{where}.within",
            f"must be at most the plan's deadline ({deadline:g} seconds), got {expedite.within:g}",
        )
    if not isinstance(expedite.to, str) or expedite.to not in names:
        raise PlanError(
            f"{where}.to",
            f"unknown stage {_show_target(expedite.to)} (known: {', '.join(names)})",
        )
    if expedite.to == stage.name:
        raise PlanError(f"{where}.to", f"{expedite.to!r} is the stage itself")


def _check_expedite_cycles(stages: Sequence[Stage], where: str) -> None:
    # Expedite moves send nothing and, once the deadline is near, it stays near: a cycle
    # of them would never end.
    to = {s.name: s.expedite.to for s in stages if s.expedite is not None}
    for i, stage in enumerate(stages):
        path = [stage.name]
        while path[-1] in to:
            path.append(to[path[-1]])
            if path[-1] == stage.name:
                raise PlanError(
                    f"{where}.stages[{i}].expedite.to",
                    f"expedite moves form a cycle ({' -> '.join(path)}): "
                    "an item there would never send a request",
                )
            if len(path) > len(stages):
                break  # a cycle further on, reported at its own stage


def resolve_target(stages: Sequence[Stage], index: int, target: str) -> str:
    """The state a stage's *target* leads to: a stage name or a terminal state."""
    if target == NEXT:
        return stages[index + 1].name if index + 1 < len(stages) else "exhausted"
    if target == FAIL:
        return "failed"
    if target == EXHAUST:
        return "exhausted"
    return target


def can_skip(stage: Stage) -> bool:
    """Whether a stage of this kind may be skipped (nothing to repair); ``full`` never is."""
    return stage.kind != "full"


def _reachable(stages: Sequence[Stage]) -> set[str]:
    index = {s.name: i for i, s in enumerate(stages)}
    seen = {stages[0].name}
    todo = [0]
    while todo:
        i = todo.pop()
        stage = stages[i]
        targets = [
            resolve_target(stages, i, stage.on_invalid),
            resolve_target(stages, i, stage.give_up_target),
        ]
        for target in (stage.on_transient, stage.on_shed):
            if target != RETRY:
                targets.append(resolve_target(stages, i, target))
        if stage.expedite is not None:
            targets.append(stage.expedite.to)
        if can_skip(stage):
            targets.append(resolve_target(stages, i, NEXT))
        for name in targets:
            if name in index and name not in seen:
                seen.add(name)
                todo.append(index[name])
    return seen
