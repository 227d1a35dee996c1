"""Hypothesis strategies for stagedretry's public types (this module needs hypothesis).

``plans()`` draws valid plans (every stage reachable by construction), usable
both to test the engine and to fuzz config loading through
``Plan.from_dict(plan.to_dict())``; ``outcomes()`` and ``outcome_scripts()``
draw what requests come to; ``near_misses()`` (from ``_answers``) draws almost-valid
answers for a pydantic model or JSON Schema, the input a partial stage exists
to repair.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from .._outcomes import OutcomeKind
from .._plan import Backoff, Expedite, Plan, Stage
from .._stages import StageKind, builtin_kinds
from ._answers import NearMiss, near_misses
from ._kinds import Skips, reading_of
from ._reach import swarm_outcomes
from ._scripted import DEFAULT_ANSWER, ScriptStep, chosen_outcomes

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
    outcomes: Sequence[OutcomeKind | str] | None = None,
    kinds: Sequence[OutcomeKind | str] | None = None,
) -> st.SearchStrategy[ScriptStep]:
    """One outcome of one request, of one of *outcomes* (repeat a kind to draw it more often).

    *outcomes* are :class:`OutcomeKind` members or their names (default: every
    kind but ``STOP_RUN``); ``kinds=`` is its deprecated old name.  An ``INVALID``
    one names some of *fields* (none: an unreadable answer); a ``RATE_LIMITED``
    one may carry the server's advised delay.
    """
    kinds_ = chosen_outcomes(outcomes, kinds, ITEM_OUTCOMES, "outcomes")
    names = tuple(fields)

    def extras(kind: OutcomeKind) -> st.SearchStrategy[ScriptStep]:
        if kind is OutcomeKind.INVALID and names:
            # As often unreadable (nothing to repair) as with fields to repair.
            some = st.lists(st.sampled_from(names), unique=True, min_size=1, max_size=len(names))
            return (st.just([]) | some).map(lambda failed: ScriptStep(kind, fields=tuple(failed)))
        if kind is OutcomeKind.RATE_LIMITED or kind is OutcomeKind.SHED:
            delays = st.none() | st.floats(0.0, 120.0, allow_nan=False)
            return delays.map(lambda delay: ScriptStep(kind, retry_after=delay))
        return st.just(ScriptStep(kind))

    if not kinds_:
        raise ValueError("outcomes() needs at least one kind")
    built = {kind: extras(kind) for kind in set(kinds_)}
    return st.one_of([built[kind] for kind in kinds_])


def outcome_scripts(
    max_len: int = 12,
    fields: Sequence[str] = tuple(DEFAULT_ANSWER),
    *,
    outcomes: Sequence[OutcomeKind | str] | None = None,
    kinds: Sequence[OutcomeKind | str] | None = None,
) -> st.SearchStrategy[tuple[ScriptStep, ...]]:
    """A script of up to *max_len* outcomes for one item (*outcomes* as for :func:`outcomes`).

    Each script draws from a random subset of the outcome kinds (swarm testing), so
    some scripts hold no outcome that ends the item and walk deep into a plan.
    """
    chosen = chosen_outcomes(outcomes, kinds, ITEM_OUTCOMES, "outcome_scripts")
    # A fresh key per strategy: the subset is shared by the steps of one script only.
    steps = swarm_outcomes(lambda some: _outcomes(fields, outcomes=some), chosen, key=object())
    return st.lists(steps, max_size=max_len).map(tuple)


_outcomes = outcomes


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
    stage_kinds: Mapping[str, StageKind] | None = None,
) -> st.SearchStrategy[Plan]:
    """A valid plan of *min_stages* to *max_stages* stages, every one reachable by construction.

    Targets may point anywhere (back edges and loops included), ``on_shed``
    (a fallback for a shed request) included.  With *deadlines* false no item
    deadline is drawn (per-request timeouts still are), hence no ``expedite``
    either (with a deadline, a stage may expedite to a later one); with
    *transient_policies* false every stage keeps the default TRANSIENT policy
    (retry in place, no ``max_attempts``, no ``on_give_up``).

    *kinds* are the stage-kind names drawn from; a name other than ``full`` and
    ``partial`` must be a key of *stage_kinds* (the mapping given to the
    runner), whose kind declares its :class:`~stagedretry.testing.KindReading`,
    so that every plan drawn is one :func:`check_plan` can run with the same
    *stage_kinds*.  Raises ``ValueError`` at once otherwise.
    """
    may_skip = _may_skip(kinds, stage_kinds)
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
        deadline = draw(st.none() | st.floats(1.0, 3600.0)) if deadlines else None
        for i, name in enumerate(names):
            on_invalid = draw(st.just("next") | targets)
            on_transient = (
                draw(st.just("retry") | st.just("retry") | targets)
                if transient_policies
                else "retry"
            )
            if i + 1 < n and not may_skip[stage_kinds[i]] and i + 1 not in reached:
                leads = {_index(names, i, on_invalid), _index(names, i, on_transient)}
                if i + 1 not in leads:
                    if not transient_policies or draw(st.booleans()):
                        on_invalid = draw(st.sampled_from(("next", names[i + 1])))
                    else:
                        on_transient = draw(st.sampled_from(("next", names[i + 1])))
            for target in (on_invalid, on_transient):
                reached.add(_index(names, i, target))
            if may_skip[stage_kinds[i]]:
                reached.add(i + 1)
            on_shed = draw(st.just("retry") | st.just("retry") | targets)
            max_attempts = draw(st.none() | st.integers(1, 4)) if transient_policies else None
            # Giving up leaves the stage: its target is never the stage itself.
            leave = [t for t in ("next", "fail", "exhaust", *names) if _index(names, i, t) != i]
            on_give_up = (
                draw(st.none() | st.sampled_from(leave)) if max_attempts is not None else None
            )
            # Expedite only forwards, so that its moves never form a cycle.
            expedite = None
            if deadline is not None and i + 1 < n and draw(st.integers(0, 3)) == 0:
                expedite = Expedite(
                    draw(st.floats(0.001, deadline) | st.just(deadline)),
                    names[draw(st.integers(i + 1, n - 1))],
                )
            stages.append(
                Stage(
                    name=name,
                    kind=stage_kinds[i],
                    params=draw(_params()),
                    on_invalid=on_invalid,
                    on_transient=on_transient,
                    max_attempts=max_attempts,
                    timeout=draw(st.none() | st.floats(0.5, 300.0)),
                    backoff=draw(st.none() | backoffs()),
                    on_shed=on_shed,
                    on_give_up=on_give_up,
                    expedite=expedite,
                )
            )
        return Plan(
            stages=tuple(stages),
            max_prompts=draw(_budgets(n, min_prompts, max_prompts)),
            deadline=deadline,
            timeout=draw(st.none() | st.floats(0.5, 300.0)),
            backoff=draw(backoffs()),
            rate_limit_backoff=draw(backoffs()),
            max_rate_limit_waits=draw(st.integers(0, 25)),
            max_resource_lost=draw(st.integers(0, 3)),
        )

    return draw_plan()


def _may_skip(kinds: Sequence[str], stage_kinds: Mapping[str, StageKind] | None) -> dict[str, bool]:
    """Whether each of *kinds* may skip a stage, as its reading declares (``ValueError``: none)."""
    known = builtin_kinds() if stage_kinds is None else stage_kinds
    out: dict[str, bool] = {}
    for name in kinds:
        kind = known.get(name)
        if kind is None:
            raise ValueError(
                f"plans(kinds=...) names the stage kind {name!r}, which check_plan cannot run "
                f"without it: pass stage_kinds= with it (known: {', '.join(known)})"
            )
        out[name] = reading_of(name, kind).skips is not Skips.NEVER
    return out


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
