"""The plan compiled onto a ``transitions`` state machine (the only module importing it).

One plain, synchronous ``Machine`` is built per plan, never per item: items keep
their position in a tiny engine-owned cursor that is passed to
``Event.trigger`` without ever being attached as a model.  Callbacks are never
used, so no I/O and no ``await`` can happen inside a transition.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from transitions import Machine

from ._plan import TERMINAL_STATES, Plan, Trigger, declared_edges

# transitions logs every handled exception at ERROR (MachineError, CancelledError included)
# before the engine sees it; the engine reports through structlog instead.
logging.getLogger("transitions").setLevel(logging.CRITICAL)

__all__ = ["CompiledPlan", "Positioned", "compile_plan"]


class Positioned(Protocol):
    """Anything with a ``state`` attribute the machine can read and write."""

    state: str


class CompiledPlan:
    """A plan's machine: fire a trigger on a cursor, read where it went."""

    __slots__ = ("_events", "initial", "machine", "stage_index")

    def __init__(self, plan: Plan) -> None:
        edges = declared_edges(plan)
        self.initial = plan.stages[0].name
        states: list[Any] = [s.name for s in plan.stages]
        states += [{"name": t, "final": True} for t in TERMINAL_STATES]
        self.machine = Machine(
            model=None,
            states=states,
            transitions=[
                {"trigger": e.trigger.value, "source": e.source, "dest": e.dest} for e in edges
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


def compile_plan(plan: Plan) -> CompiledPlan:
    """Compile *plan* (cheap enough to call once per runner)."""
    return CompiledPlan(plan)
