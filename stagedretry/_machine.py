"""The plan compiled onto a ``transitions`` state machine (the only module importing it).

One plain, synchronous ``Machine`` is built per plan, never per item: items keep
their position in a tiny engine-owned cursor that is passed to
``Event.trigger`` without ever being attached as a model.  Callbacks are never
used, so no I/O and no ``await`` can happen inside a transition.
"""

from __future__ import annotations

import enum
import logging
from typing import Any, Protocol

import attrs
from transitions import Machine

from ._plan import NEXT, RETRY, Plan, can_skip, resolve_target

# transitions logs every handled exception at ERROR (MachineError, CancelledError included)
# before the engine sees it; the engine reports through structlog instead.
logging.getLogger("transitions").setLevel(logging.CRITICAL)

TERMINAL_STATES = ("succeeded", "failed", "exhausted")


class Trigger(enum.Enum):
    """The events the engine fires, one per attempt or decision."""

    SUCCEED = "succeed"
    INVALID = "invalid"
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    RESOURCE_LOST = "resource_lost"
    FATAL = "fatal"
    GIVE_UP = "give_up"  # the stage's max_attempts is spent
    SKIP = "skip"  # nothing to repair: move on without a request
    EXHAUST = "exhaust"  # the prompt budget or the deadline is spent
    ABORT = "abort"  # a cap on waits (rate limits, lost resources) is reached


class Positioned(Protocol):
    """Anything with a ``state`` attribute the machine can read and write."""

    state: str


@attrs.frozen
class Edge:
    """One declared transition: ``source --trigger--> dest`` (``dest is None``: stay)."""

    trigger: Trigger
    source: str
    dest: str | None


def _edges(plan: Plan) -> list[Edge]:
    stages = plan.stages
    edges: list[Edge] = []
    for i, stage in enumerate(stages):
        name = stage.name
        invalid_dest = resolve_target(stages, i, stage.on_invalid)
        transient_dest = (
            None if stage.on_transient == RETRY else resolve_target(stages, i, stage.on_transient)
        )
        edges += [
            Edge(Trigger.SUCCEED, name, "succeeded"),
            Edge(Trigger.INVALID, name, invalid_dest),
            Edge(Trigger.TRANSIENT, name, transient_dest),
            Edge(Trigger.RATE_LIMITED, name, None),
            Edge(Trigger.RESOURCE_LOST, name, None),
            Edge(Trigger.FATAL, name, "failed"),
            Edge(Trigger.GIVE_UP, name, invalid_dest),
            Edge(Trigger.EXHAUST, name, "exhausted"),
            Edge(Trigger.ABORT, name, "failed"),
        ]
        if can_skip(stage):
            edges.append(Edge(Trigger.SKIP, name, resolve_target(stages, i, NEXT)))
    return edges


class CompiledPlan:
    """A plan's machine: fire a trigger on a cursor, read where it went."""

    __slots__ = ("_events", "edges", "initial", "machine", "plan", "stage_index")

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.edges = tuple(_edges(plan))
        self.initial = plan.stages[0].name
        states: list[Any] = [s.name for s in plan.stages]
        states += [{"name": t, "final": True} for t in TERMINAL_STATES]
        self.machine = Machine(
            model=None,
            states=states,
            transitions=[
                {"trigger": e.trigger.value, "source": e.source, "dest": e.dest} for e in self.edges
            ],
            initial=self.initial,
            auto_transitions=False,
            send_event=False,
        )
        self._events = {
            t: self.machine.events[t.value] for t in Trigger if t.value in self.machine.events
        }
        self.stage_index = {s.name: i for i, s in enumerate(plan.stages)}

    def fire(self, cursor: Positioned, trigger: Trigger) -> str:
        """Fire *trigger* on *cursor* through the machine and return the new state."""
        self._events[trigger].trigger(cursor)
        return cursor.state

    def to_mermaid(self) -> str:
        """The declared machine as a Mermaid ``stateDiagram-v2``."""
        lines = ["stateDiagram-v2", f"    [*] --> {self.initial}"]
        grouped: dict[tuple[str, str], list[str]] = {}
        for edge in self.edges:
            dest = edge.source if edge.dest is None else edge.dest
            grouped.setdefault((edge.source, dest), []).append(edge.trigger.value)
        for (source, dest), triggers in grouped.items():
            lines.append(f"    {source} --> {dest}: {', '.join(triggers)}")
        lines += [f"    {t} --> [*]" for t in TERMINAL_STATES]
        return "\n".join(lines) + "\n"


def compile_plan(plan: Plan) -> CompiledPlan:
    """Compile *plan* (cheap enough to call once per runner)."""
    return CompiledPlan(plan)
