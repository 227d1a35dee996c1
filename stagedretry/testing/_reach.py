"""How deep a plan check goes: outcome draws biased towards deep stages, and reach statistics.

Drawn uniformly, most scripts end within two or three requests: a success or
a fatal error is as likely as an invalid answer, so a late stage of a long
plan is almost never reached and a change to it goes unseen.  Swarm testing
(Groce et al., 2012) fixes that without weighting any one kind: each example
draws only a random subset of the outcome kinds, so some examples have no
way to end early and walk the whole plan, while others keep the full mix.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

import attrs
from hypothesis import strategies as st

from .._outcomes import OutcomeKind
from ._reference import ReferenceItem
from ._scripted import ScriptStep

__all__ = ["PlanCheckResult", "ReachTally", "advancing_steps", "swarm_outcomes"]

# Outcomes that end an item at once, whatever the plan says.
_ENDING = frozenset({OutcomeKind.SUCCEEDED, OutcomeKind.FATAL, OutcomeKind.STOP_RUN})


def swarm_outcomes(
    draw_for: Callable[[tuple[OutcomeKind, ...]], st.SearchStrategy[ScriptStep]],
    kinds: Sequence[OutcomeKind],
    *,
    key: object,
) -> st.SearchStrategy[ScriptStep]:
    """Outcomes of *kinds*, drawn per example from a random subset of them (swarm testing).

    *draw_for* builds the strategy for a subset (repeats in *kinds* keep their
    weight within it).  The subset is shared by every draw with the same *key*
    in one example, so a state machine's steps all use it.  A quarter of the
    examples keep every kind.
    """
    distinct = tuple(dict.fromkeys(kinds))
    if len(distinct) < 2:
        return draw_for(tuple(kinds))

    @functools.cache
    def for_subset(enabled: frozenset[OutcomeKind]) -> st.SearchStrategy[ScriptStep]:
        return draw_for(tuple(k for k in kinds if k in enabled))

    everything = frozenset(distinct)
    # The kinds that never end an item: with only these, an item walks every stage.
    walking = everything - _ENDING
    subsets = st.sets(st.sampled_from(distinct), min_size=1).map(frozenset)
    choices = [subsets, st.just(everything)]
    if walking and walking != everything:
        choices.append(st.just(walking))
    chosen = st.shared(st.one_of(choices), key=("swarm", key))
    return chosen.flatmap(for_subset)


def advancing(key: object) -> st.SearchStrategy[bool]:
    """Whether this step of an example should advance the item (see :func:`advancing_steps`).

    Drawn per step, at a rate shared by the example: half the examples never
    advance on purpose (their walks stay as drawn), the others about half of
    their steps.
    """
    # Hypothesis shrinks towards not advancing: a shrunk script keeps its simplest steps.
    rate = st.shared(st.sampled_from((False, True)), key=("advancing", key))
    return rate.flatmap(lambda on: st.booleans() if on else st.just(False))


def advancing_steps(
    model: ReferenceItem, fields: Sequence[str], kinds: Sequence[OutcomeKind]
) -> list[ScriptStep]:
    """The outcomes of *kinds* after which *model* is at a later stage than now, deepest first.

    Tried: an unreadable answer, one with the first of *fields* wrong, a
    transient error, a shed request (a fallback stage may be reached only so).
    Reaching the last stage may take a precise run of these (two unreadable
    answers, then one with fields to repair): a random walk
    that must hit that run by chance rarely does, a walk that mostly advances
    does.  Empty when no outcome leads further (or the item has ended).
    """
    here = model.stage_index
    if here is None:
        return []
    candidates = (
        ScriptStep(OutcomeKind.INVALID),
        ScriptStep(OutcomeKind.INVALID, fields=tuple(fields[:1])),
        ScriptStep(OutcomeKind.TRANSIENT),
        ScriptStep(OutcomeKind.SHED),
    )
    deeper: list[tuple[int, ScriptStep]] = []
    for step in candidates:
        if step.kind not in kinds:
            continue
        twin = model.fork()
        twin.play(step)
        there = twin.stage_index
        if there is not None and there > here:
            deeper.append((there, step))
    deeper.sort(key=lambda pair: -pair[0])
    return [step for _, step in deeper]


def _frozen(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(counts))


@attrs.frozen
class PlanCheckResult:
    """What a plan check exercised: how many examples reached each stage, and how they ended.

    ``examples`` is the number of items played (one per hypothesis example,
    shrinking included); ``steps`` the outcomes fed to them in all.
    ``reached`` maps every stage of the plan, in order, to the number of
    examples whose item sent at least one request at it; ``skipped`` to the
    number that passed it over with nothing to repair.  ``ended`` maps an
    item status (``"succeeded"``, ``"failed"``, ``"exhausted"``) to the number
    of examples whose item ended so; items still running when the example
    stopped are not counted there.
    """

    examples: int
    steps: int
    reached: Mapping[str, int] = attrs.field(converter=_frozen)
    skipped: Mapping[str, int] = attrs.field(converter=_frozen)
    ended: Mapping[str, int] = attrs.field(converter=_frozen)

    @property
    def unreached(self) -> tuple[str, ...]:
        """The stages no example sent a request at, in plan order."""
        return tuple(name for name, count in self.reached.items() if count == 0)

    def __str__(self) -> str:
        width = max((len(name) for name in self.reached), default=0)
        rows = [f"{self.examples} examples, {self.steps} steps; requests sent at each stage:"]
        for name, count in self.reached.items():
            share = count / self.examples if self.examples else 0.0
            skipped = self.skipped.get(name, 0)
            note = f"  (skipped in {skipped})" if skipped else ""
            rows.append(f"  {name:<{width}}  {count:>5}  {share:6.1%}{note}")
        ends = ", ".join(f"{status} {count}" for status, count in self.ended.items())
        rows.append(f"ended: {ends or 'none'}")
        return "\n".join(rows)


class ReachTally:
    """Counts, across the examples of one state machine, the stages each item reached."""

    def __init__(self, stages: Sequence[str]) -> None:
        self._stages = tuple(stages)
        self.examples = 0
        self.steps = 0
        self._reached: Counter[str] = Counter()
        self._skipped: Counter[str] = Counter()
        self._ended: Counter[str] = Counter()

    def record(
        self, requested: Sequence[str], skipped: Sequence[str], steps: int, ended: str | None
    ) -> None:
        """Count one example: the stages it sent requests at and skipped, and how it ended."""
        self.examples += 1
        self.steps += steps
        self._reached.update(set(requested))
        self._skipped.update(set(skipped))
        if ended is not None:
            self._ended[ended] += 1

    def deepest(self, requested: Sequence[str]) -> int:
        """The plan index of the deepest stage in *requested* (``-1``: none)."""
        index = {name: i for i, name in enumerate(self._stages)}
        return max((index.get(name, -1) for name in requested), default=-1)

    def result(self) -> PlanCheckResult:
        """The counts so far, as a frozen value."""
        return PlanCheckResult(
            self.examples,
            self.steps,
            {name: self._reached[name] for name in self._stages},
            {name: self._skipped[name] for name in self._stages if self._skipped[name]},
            dict(sorted(self._ended.items())),
        )
