"""Hypothesis strategies for stagedretry's public types (this module needs hypothesis).

``plans()`` draws valid plans (every stage reachable by construction), usable
both to test the engine and to fuzz config loading through
``Plan.from_dict(plan.to_dict())``; ``outcomes()`` and ``outcome_scripts()``
draw what requests come to; ``near_misses()`` draws almost-valid answers for a
pydantic model, the input a partial stage exists to repair.
"""

from __future__ import annotations

import functools
import json
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from hypothesis import strategies as st

from .._outcomes import OutcomeKind
from .._plan import Backoff, Plan, Stage
from ._reach import swarm_outcomes
from ._scripted import DEFAULT_ANSWER, ScriptStep

#: What one request of one item can come to: every kind but STOP_RUN, which ends the run.
ITEM_OUTCOMES: tuple[OutcomeKind, ...] = tuple(
    k for k in OutcomeKind if k is not OutcomeKind.STOP_RUN
)

__all__ = [
    "NearMiss",
    "backoffs",
    "near_misses",
    "outcome_scripts",
    "outcomes",
    "plans",
]

_RESERVED = frozenset({"succeeded", "failed", "exhausted", "next", "fail", "exhaust", "retry"})

_NAMES = (
    st.tuples(
        st.sampled_from("abcdefghijklmnopqrstuvwxyz"),
        st.text("abcdefghijklmnopqrstuvwxyz0123456789_-", max_size=9),
    )
    .map("".join)
    .filter(lambda n: n not in _RESERVED)
)

_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.booleans(),
    st.integers(-(2**31), 2**31),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)


def outcomes(
    fields: Sequence[str] = tuple(DEFAULT_ANSWER),
    *,
    kinds: Sequence[OutcomeKind] = ITEM_OUTCOMES,
) -> st.SearchStrategy[ScriptStep]:
    """One outcome of one request, of one of *kinds* (repeat a kind to draw it more often).

    An ``INVALID`` one names some of *fields* (none: an unreadable answer); a
    ``RATE_LIMITED`` one may carry the server's advised delay.
    """
    names = tuple(fields)

    def extras(kind: OutcomeKind) -> st.SearchStrategy[ScriptStep]:
        if kind is OutcomeKind.INVALID and names:
            # As often unreadable (nothing to repair) as with fields to repair.
            some = st.lists(st.sampled_from(names), unique=True, min_size=1, max_size=len(names))
            return (st.just([]) | some).map(lambda failed: ScriptStep(kind, fields=tuple(failed)))
        if kind is OutcomeKind.RATE_LIMITED:
            delays = st.none() | st.floats(0.0, 120.0, allow_nan=False)
            return delays.map(lambda delay: ScriptStep(kind, retry_after=delay))
        return st.just(ScriptStep(kind))

    if not kinds:
        raise ValueError("outcomes() needs at least one kind")
    built = {kind: extras(kind) for kind in set(kinds)}
    return st.one_of([built[kind] for kind in kinds])


def outcome_scripts(
    max_len: int = 12,
    fields: Sequence[str] = tuple(DEFAULT_ANSWER),
    *,
    kinds: Sequence[OutcomeKind] = ITEM_OUTCOMES,
) -> st.SearchStrategy[tuple[ScriptStep, ...]]:
    """A script of up to *max_len* outcomes for one item.

    Each script draws from a random subset of *kinds* (swarm testing), so
    some scripts hold no outcome that ends the item and walk deep into a plan.
    """
    # A fresh key per strategy: the subset is shared by the steps of one script only.
    steps = swarm_outcomes(lambda some: outcomes(fields, kinds=some), kinds, key=object())
    return st.lists(steps, max_size=max_len).map(tuple)


@functools.cache
def backoffs() -> st.SearchStrategy[Backoff]:
    """A valid backoff: ``0 < initial <= maximum``, ``multiplier >= 1``."""

    @st.composite
    def draw_backoff(draw: st.DrawFn) -> Backoff:
        initial = draw(st.floats(0.001, 10.0))
        maximum = draw(st.floats(initial, 600.0))
        multiplier = draw(st.floats(1.0, 4.0))
        return Backoff(initial, maximum, multiplier)

    return draw_backoff()


@functools.cache
def _params() -> st.SearchStrategy[dict[str, Any]]:
    values = _SCALARS | st.lists(_SCALARS, max_size=3).map(tuple)
    temperature = st.fixed_dictionaries(
        {}, optional={"temperature": st.floats(0.0, 2.0), "model": st.sampled_from(("m1", "m2"))}
    )
    extra = st.dictionaries(_NAMES, values, max_size=2)
    return st.tuples(temperature, extra).map(lambda pair: {**pair[1], **pair[0]})


def plans(
    *,
    min_stages: int = 1,
    max_stages: int = 5,
    min_prompts: int = 1,
    max_prompts: int = 8,
    kinds: Sequence[str] = ("full", "partial"),
    deadlines: bool = True,
    transient_policies: bool = True,
) -> st.SearchStrategy[Plan]:
    """A valid plan of *min_stages* to *max_stages* stages, every one reachable by construction.

    Targets may point anywhere (back edges and loops included).  With
    *deadlines* false no item deadline is drawn (per-request timeouts still are);
    with *transient_policies* false every stage keeps the default TRANSIENT
    policy (retry in place, no ``max_attempts``).
    """
    if not 1 <= min_stages <= max_stages or not 1 <= min_prompts <= max_prompts:
        raise ValueError(
            "a plan needs at least one stage and one prompt, and each minimum <= its maximum"
        )
    if "full" not in kinds:
        raise ValueError("the first stage must be of a non-partial kind: include 'full'")

    @st.composite
    def draw_plan(draw: st.DrawFn) -> Plan:
        names = draw(st.lists(_NAMES, min_size=min_stages, max_size=max_stages, unique=True))
        n = len(names)
        stage_kinds = ["full" if i == 0 else draw(st.sampled_from(tuple(kinds))) for i in range(n)]
        targets = st.sampled_from(("next", "fail", "exhaust", *names))
        stages: list[Stage] = []
        # Stage i+1 must be the target of some stage <= i: then, stage 0 being
        # reachable, every stage is (by induction).
        reached = {0}
        for i, name in enumerate(names):
            on_invalid = draw(st.just("next") | targets)
            on_transient = (
                draw(st.just("retry") | st.just("retry") | targets)
                if transient_policies
                else "retry"
            )
            if i + 1 < n and stage_kinds[i] == "full" and i + 1 not in reached:
                leads = {_index(names, i, on_invalid), _index(names, i, on_transient)}
                if i + 1 not in leads:
                    if not transient_policies or draw(st.booleans()):
                        on_invalid = draw(st.sampled_from(("next", names[i + 1])))
                    else:
                        on_transient = draw(st.sampled_from(("next", names[i + 1])))
            for target in (on_invalid, on_transient):
                reached.add(_index(names, i, target))
            if stage_kinds[i] != "full":
                reached.add(i + 1)
            stages.append(
                Stage(
                    name=name,
                    kind=stage_kinds[i],
                    params=draw(_params()),
                    on_invalid=on_invalid,
                    on_transient=on_transient,
                    max_attempts=(
                        draw(st.none() | st.integers(1, 4)) if transient_policies else None
                    ),
                    timeout=draw(st.none() | st.floats(0.5, 300.0)),
                    backoff=draw(st.none() | backoffs()),
                )
            )
        return Plan(
            stages=tuple(stages),
            max_prompts=draw(_budgets(n, min_prompts, max_prompts)),
            deadline=draw(st.none() | st.floats(1.0, 3600.0)) if deadlines else None,
            timeout=draw(st.none() | st.floats(0.5, 300.0)),
            backoff=draw(backoffs()),
            rate_limit_backoff=draw(backoffs()),
            max_rate_limit_waits=draw(st.integers(0, 25)),
            max_resource_lost=draw(st.integers(0, 3)),
        )

    return draw_plan()


def _budgets(stages: int, low: int, high: int) -> st.SearchStrategy[int]:
    """A plan's ``max_prompts`` in ``[low, high]``, mostly as real plans set it.

    Real plans give about one prompt per stage and a few to spare; drawn
    uniformly, hypothesis's bias towards small numbers made most plans send one
    request only.  One draw in four still spans the whole range.
    """
    real = st.integers(0, 3).map(lambda spare: min(max(stages + spare, low), high))
    return st.one_of(real, real, real, st.integers(low, high))


def _index(names: Sequence[str], i: int, target: str) -> int:
    """Where *target* of stage *i* leads, as a stage index (``-1``: a terminal state)."""
    if target == "next":
        return i + 1 if i + 1 < len(names) else -1
    if target in ("retry",):
        return i
    return names.index(target) if target in names else -1


# -- near misses ---------------------------------------------------------------------------


@attrs.frozen
class NearMiss:
    """A valid answer with some top-level fields broken.

    ``data`` is the broken answer, ``valid`` the answer it was made from and
    ``broken`` the fields that differ; ``text`` is ``data`` as JSON.
    """

    data: Mapping[str, Any]
    valid: Mapping[str, Any]
    broken: tuple[str, ...]

    @property
    def text(self) -> str:
        return json.dumps(dict(self.data))


_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)

# Values that fail most field types; the first that fails a given field is used.
_WRONG: tuple[Any, ...] = (None, {"__wrong__": True}, [["__wrong__"]], "__wrong__", -1, 10**30)


def near_misses(model: type[Any], k: int = 1) -> st.SearchStrategy[NearMiss]:
    """An answer that validates as the pydantic *model* except for *k* broken top-level fields."""
    from pydantic import BaseModel, TypeAdapter, ValidationError

    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"near_misses needs a pydantic model class, got {model!r}")
    if k < 0:
        raise ValueError(f"k must not be negative, got {k}")
    adapter = TypeAdapter(model)

    def failing(data: Mapping[str, Any]) -> set[str]:
        try:
            adapter.validate_python(dict(data))
        except ValidationError as exc:
            return {str(e["loc"][0]) if e["loc"] else "" for e in exc.errors()}
        return set()

    def breakers(valid: Mapping[str, Any]) -> dict[str, Any]:
        """For each field, a value that fails it alone (fields nothing fails are left out)."""
        out: dict[str, Any] = {}
        for name in valid:
            for wrong in _WRONG:
                if failing({**valid, name: wrong}) == {name}:
                    out[name] = wrong
                    break
        return out

    @st.composite
    def draw_near_miss(draw: st.DrawFn) -> NearMiss:
        instance = draw(_instances(model))
        valid = instance.model_dump(mode="json")
        wrongs = breakers(valid)
        if len(wrongs) < k:
            raise ValueError(
                f"{model.__name__} has only {len(wrongs)} field(s) a wrong value can break; "
                f"cannot break {k}"
            )
        names = st.sampled_from(sorted(wrongs))
        broken = draw(st.lists(names, min_size=k, max_size=k, unique=True))
        data = {**valid, **{name: wrongs[name] for name in broken}}
        return NearMiss(data, valid, tuple(broken))

    return draw_near_miss()


def _instances(model: type[Any]) -> st.SearchStrategy[Any]:
    """Valid instances of a pydantic *model*, honouring the fields' declared constraints."""
    from pydantic import BaseModel

    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            fields[name] = _instances(annotation)
        elif annotation is Any or annotation is object:
            fields[name] = _JSON
        elif info.metadata:
            # Annotated carries the field's constraints (annotated-types), which hypothesis honours.
            constrained: Any = typing.Annotated[annotation, *info.metadata]
            fields[name] = st.from_type(constrained)
        else:
            fields[name] = st.from_type(annotation)

    def build(values: dict[str, Any]) -> Any:
        return model.model_validate(values)

    def valid(values: dict[str, Any]) -> bool:
        from pydantic import ValidationError

        try:
            json.dumps(model.model_validate(values).model_dump(mode="json"))
        except (ValidationError, ValueError, TypeError):
            return False  # breaks a constraint hypothesis did not know, or is not JSON
        return True

    return st.fixed_dictionaries(fields).filter(valid).map(build)
