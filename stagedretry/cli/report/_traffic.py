"""The traffic of a run through its plan: items and prompts per transition, per-stage totals.

Each item's ``attempts`` are the stages it sent from and what each came to; the
transitions between two attempts (and after the last one) are found on the
plan's declared machine: the attempt's outcome picks the first edge (an invalid
answer fires ``invalid``, a transient error ``transient`` or ``give_up``...),
and edges that fire without a request (``skip``, ``exhaust``) may follow.  A
move the plan does not declare (results of another plan, a cancelled item) is
kept as an observed transition, so every attempt is counted once: the prompts
of all transitions add up to the prompts of all items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import attrs

from ..._outcomes import OutcomeKind
from ..._plan import Plan, Trigger, declared_edges
from ..._policy import DEADLINE_PASSED
from ..._results import Attempt, ItemResult, ItemStatus, Usage
from .._summary import price_job
from ..pipeline import Price

START: Final = "[*]"
"""The source of the transition every item takes into the plan's first stage."""
NO_REQUEST: Final = "no request"
"""The cause of a transition an item took without any attempt (an input error)."""
CANCELLED: Final = ItemStatus.CANCELLED.value

_FIRES: Final[Mapping[OutcomeKind, Trigger]] = {
    OutcomeKind.SUCCEEDED: Trigger.SUCCEED,
    OutcomeKind.INVALID: Trigger.INVALID,
    OutcomeKind.TRANSIENT: Trigger.TRANSIENT,
    OutcomeKind.RATE_LIMITED: Trigger.RATE_LIMITED,
    OutcomeKind.RESOURCE_LOST: Trigger.RESOURCE_LOST,
    OutcomeKind.FATAL: Trigger.FATAL,
    OutcomeKind.SHED: Trigger.SHED,
}
"""The event an attempt's outcome fires until a cap is reached (``stop_run`` fires none)."""


class _Counters:
    """An item's counters as the engine keeps them (``stagedretry._policy.count``), to tell
    which event an attempt fired: a transient error past the stage's ``max_attempts`` gives
    up, a refusal past the plan's cap aborts."""

    def __init__(self, plan: Plan | None) -> None:
        self.plan = plan
        self.caps = {s.name: s.max_attempts for s in plan.stages} if plan is not None else {}
        self.sent: Counter[str] = Counter()
        self.waits = 0
        self.lost = 0

    def fired(self, attempt: Attempt) -> frozenset[Trigger]:
        kind = attempt.outcome
        if attempt.counted:
            self.sent[attempt.stage] += 1
        if kind is OutcomeKind.RESOURCE_LOST:
            self.lost += 1
        elif attempt.counted:
            self.lost = 0
        if kind is OutcomeKind.RATE_LIMITED or kind is OutcomeKind.SHED:
            self.waits += 1
        trigger = _FIRES.get(kind)
        if trigger is None:
            return frozenset()
        plan = self.plan
        if plan is None:
            return frozenset({trigger})
        cap = self.caps.get(attempt.stage)
        if kind is OutcomeKind.TRANSIENT and cap is not None and self.sent[attempt.stage] >= cap:
            trigger = Trigger.GIVE_UP
        elif (
            (kind is OutcomeKind.RATE_LIMITED or kind is OutcomeKind.SHED)
            and self.waits > plan.max_rate_limit_waits
        ) or (kind is OutcomeKind.RESOURCE_LOST and self.lost > plan.max_resource_lost):
            trigger = Trigger.ABORT
        return frozenset({trigger})


_LATER: Final = frozenset({Trigger.SKIP, Trigger.EXHAUST, Trigger.EXPEDITE})
"""Events that fire between two attempts without a request of their own."""


@attrs.frozen
class Transition:
    """One arrow of the diagram: every move of any item from *source* to *dest*.

    * *triggers* -- the events the plan declares for this arrow (empty: not declared);
    * *items* -- distinct items that took it; *passes* -- times it was taken (a retry
      loop is taken once per retry);
    * *prompts* -- counted attempts (those that spend the budget) that led along it;
    * *causes* -- what moved the items: attempt outcomes (``invalid``...) or events
      without a request (``skip``, ``exhaust``), with their counts.
    """

    source: str
    dest: str
    triggers: tuple[str, ...]
    items: int
    passes: int
    prompts: int
    causes: Mapping[str, int]

    @property
    def declared(self) -> bool:
        return bool(self.triggers) or self.source == START


@attrs.frozen
class StageTraffic:
    """What one stage saw: attempts by outcome, prompts, items that succeeded there, tokens.

    *cost* is the tokens' price in the currency of ``[prices]`` (``None``: no price).
    """

    name: str
    kind: str
    attempts: int
    prompts: int
    outcomes: Mapping[str, int]
    succeeded: int
    usage: Usage
    cost: float | None


@attrs.frozen
class Traffic:
    """A run's traffic: *stages* in plan order, *transitions* in drawing order."""

    initial: str | None
    stages: tuple[StageTraffic, ...]
    transitions: tuple[Transition, ...]
    statuses: Mapping[str, int]
    items: int
    prompts: int
    attempts: int
    usage: Usage
    cost: float | None

    @property
    def succeeded(self) -> int:
        return self.statuses.get(ItemStatus.SUCCEEDED.value, 0)


def token_cost(price: Price | None, usage: Usage) -> float | None:
    """What *usage* costs at *price* (the summary's own pricing, without the cache's storage)."""
    if price is None:
        return None
    return price_job(price, "", usage, (), ttl=0.0, keep=False).with_cache


class _Graph:
    """The declared machine as adjacency lists (empty without a plan)."""

    def __init__(self, plan: Plan | None) -> None:
        self.out: dict[str, list[tuple[Trigger, str]]] = {}
        self.triggers: dict[tuple[str, str], list[str]] = {}
        if plan is None:
            return
        for edge in declared_edges(plan):
            dest = edge.source if edge.dest is None else edge.dest
            self.out.setdefault(edge.source, []).append((edge.trigger, dest))
            self.triggers.setdefault((edge.source, dest), []).append(edge.trigger.value)

    def path(
        self,
        source: str,
        target: str,
        first: frozenset[Trigger] | None,
        *,
        repairable: bool = False,
        spent: bool = False,
    ) -> list[tuple[str, str]] | None:
        """The hops ``(dest, event)`` from *source* to *target*: the first by one of *first*
        (``None``: none, *source* is where the walk starts), then the events that fire without
        a request, as the engine fires them; ``None`` if the plan has no such path.

        Between two requests the engine skips a partial stage with nothing to repair, and
        ends the item ``exhausted`` at a stage it would send from once the budget is spent;
        whether there was something to repair is known only at the end (*repairable*: the
        item ended with field errors), which is where it matters.  The budget or the deadline
        is checked first: an item that ended for either (*spent*) ends at once.
        """
        stays = repairable or spent
        if first is None:
            return self._walk(source, target, [], stays)
        for trigger, dest in self.out.get(source, ()):
            if trigger in first:
                found = self._walk(dest, target, [(dest, trigger.value)], stays)
                if found is not None:
                    return found
        return None

    def _walk(
        self, state: str, target: str, hops: list[tuple[str, str]], stays: bool
    ) -> list[tuple[str, str]] | None:
        seen: set[str] = set()
        while state != target:
            if state in seen or state not in self.out:
                return None
            seen.add(state)
            later = {trigger: dest for trigger, dest in self.out[state] if trigger in _LATER}
            skip, exhaust = later.get(Trigger.SKIP), later.get(Trigger.EXHAUST)
            expedite = later.get(Trigger.EXPEDITE)
            if target == exhaust and (stays or skip is None):
                hops.append((exhaust, Trigger.EXHAUST.value))
                state = exhaust
            elif expedite is not None and (
                skip is None or self._walk(expedite, target, [], stays) is not None
            ):
                # The engine checks the deadline before it builds (and skips): an expedite
                # that leads on to the next attempt's stage is taken to be what happened.
                hops.append((expedite, Trigger.EXPEDITE.value))
                state = expedite
            elif skip is not None:
                hops.append((skip, Trigger.SKIP.value))
                state = skip
            else:
                return None
        return hops


class _Tally:
    def __init__(self) -> None:
        self.items: dict[tuple[str, str], set[int]] = {}
        self.passes: Counter[tuple[str, str]] = Counter()
        self.prompts: Counter[tuple[str, str]] = Counter()
        self.causes: dict[tuple[str, str], Counter[str]] = {}

    def move(
        self, source: str, hops: Sequence[tuple[str, str]], item: int, cause: str, prompt: bool
    ) -> None:
        """Count one move of *item* from *source* along *hops*; the first hop was caused by
        *cause* (an attempt's outcome) and spent a prompt if *prompt*."""
        for i, (dest, event) in enumerate(hops):
            pair = (source, dest)
            self.items.setdefault(pair, set()).add(item)
            self.passes[pair] += 1
            self.causes.setdefault(pair, Counter())[cause if i == 0 else event] += 1
            if i == 0 and prompt:
                self.prompts[pair] += 1
            source = dest


def traffic(
    results: Iterable[ItemResult],
    plan: Plan | None,
    price: Price | None = None,
    *,
    price_of: Callable[[Attempt], Price | None] | None = None,
) -> Traffic:
    """Add up *results* on *plan*'s machine (``None``: stages in the order they were seen).

    Costs are each attempt's tokens at *price_of* the attempt (its stage's model on its
    billed tier), else at *price*; a stage with an attempt of no known price has none."""
    pricer: Callable[[Attempt], Price | None] = price_of or (lambda _: price)
    costs: dict[str, float | None] = {}
    graph = _Graph(plan)
    kinds = {s.name: s.kind for s in plan.stages} if plan is not None else {}
    order = [s.name for s in plan.stages] if plan is not None else []
    initial = plan.stages[0].name if plan is not None else None
    tally = _Tally()
    statuses: Counter[str] = Counter()
    outcomes: dict[str, Counter[str]] = {}
    usage: dict[str, Usage] = {}
    succeeded: Counter[str] = Counter()
    spent: Counter[str] = Counter()
    items = prompts = attempts = 0
    for number, result in enumerate(results):
        items += 1
        statuses[result.status.value] += 1
        end = result.status.value
        if not result.attempts:
            tally.move(START, [(end, NO_REQUEST)], number, NO_REQUEST, False)
            continue
        first = result.attempts[0].stage
        for attempt in result.attempts:
            if attempt.stage not in outcomes:
                outcomes[attempt.stage] = Counter()
                usage[attempt.stage] = Usage()
                if attempt.stage not in order:
                    order.append(attempt.stage)
            outcomes[attempt.stage][attempt.outcome.value] += 1
            usage[attempt.stage] = usage[attempt.stage] + attempt.usage
            before = costs.get(attempt.stage, 0.0)
            paid = token_cost(pricer(attempt), attempt.usage)
            costs[attempt.stage] = None if before is None or paid is None else before + paid
            attempts += 1
            prompts += attempt.counted
            spent[attempt.stage] += attempt.counted
        entry = initial if initial is not None else first
        tally.move(START, [(entry, "start")], number, "start", False)
        if entry != first:
            hops = graph.path(entry, first, None) or [(first, "skip")]
            tally.move(entry, hops, number, hops[0][1], False)
        steps: list[tuple[Attempt, str]] = [
            (a, b.stage) for a, b in zip(result.attempts, result.attempts[1:], strict=False)
        ]
        steps.append((result.attempts[-1], end))
        repairable = any(error.path for error in result.errors)
        ran_out = result.status is ItemStatus.EXHAUSTED and (
            result.reason == DEADLINE_PASSED.reason
            or (plan is not None and result.prompts >= plan.max_prompts)
        )
        counters = _Counters(plan)
        for attempt, target in steps:
            fired = counters.fired(attempt)
            path = graph.path(
                attempt.stage, target, fired, repairable=repairable, spent=ran_out
            ) or [(target, attempt.outcome.value)]
            tally.move(attempt.stage, path, number, attempt.outcome.value, attempt.counted)
        if result.status is ItemStatus.SUCCEEDED:
            succeeded[result.attempts[-1].stage] += 1
    stages = tuple(
        StageTraffic(
            name=name,
            kind=kinds.get(name, "?"),
            attempts=sum(outcomes.get(name, Counter()).values()),
            prompts=spent[name],
            outcomes=dict(outcomes.get(name, Counter())),
            succeeded=succeeded[name],
            usage=usage.get(name, Usage()),
            cost=costs.get(name, None if price_of is None and price is None else 0.0),
        )
        for name in order
    )
    spent_usd = [s.cost for s in stages]
    total = sum((s.usage for s in stages), Usage())
    return Traffic(
        initial=initial if initial is not None else (order[0] if order else None),
        stages=stages,
        transitions=_transitions(graph, tally, order),
        statuses=dict(statuses),
        items=items,
        prompts=prompts,
        attempts=attempts,
        usage=total,
        cost=None if None in spent_usd else sum(c for c in spent_usd if c is not None),
    )


def _transitions(graph: _Graph, tally: _Tally, order: Sequence[str]) -> tuple[Transition, ...]:
    """The declared arrows (taken or not) in the plan's order, then the observed ones."""
    pairs = list(graph.triggers)
    pairs += [pair for pair in tally.passes if pair not in graph.triggers]
    rank = {name: i for i, name in enumerate([START, *order])}
    pairs.sort(key=lambda pair: rank.get(pair[0], len(rank)))
    return tuple(
        Transition(
            source=source,
            dest=dest,
            triggers=tuple(graph.triggers.get((source, dest), ())),
            items=len(tally.items.get((source, dest), ())),
            passes=tally.passes[(source, dest)],
            prompts=tally.prompts[(source, dest)],
            causes=dict(tally.causes.get((source, dest), Counter())),
        )
        for source, dest in pairs
    )
