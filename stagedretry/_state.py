"""Per-item state: the engine-owned cursor the plan's machine moves.

One ``ItemState`` per item, never shared: it is what the machine reads and writes
(``state``) and what stage kinds read to build a request.  It is deliberately a
small slotted object, not a model attached to the machine.
"""

from __future__ import annotations

from typing import Any, TypeVar

from ._outcomes import FieldError
from ._results import Attempt, WorkItem

T = TypeVar("T")


class Scratch:
    """Typed scratch space for custom stage kinds, keyed by the stored value's type."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[type[Any], Any] = {}

    def get(self, kind: type[T]) -> T | None:
        """The stored value of type *kind*, or ``None``."""
        value = self._values.get(kind)
        return value if isinstance(value, kind) else None

    def put(self, value: object) -> None:
        """Store *value* under its own type, replacing any earlier one."""
        self._values[type(value)] = value

    def __repr__(self) -> str:
        return f"Scratch({list(self._values.values())!r})"


class ItemState:
    """Where one item is, and what it has been through.

    Read-only for stage kinds and strategies, except :attr:`scratch` and
    :meth:`note_mended`.
    ``state`` is the machine's current state (a stage name or a terminal state).
    """

    __slots__ = (
        "_scratch",
        "attempts",
        "attempts_at",
        "errors",
        "item",
        "last_invalid",
        "lost_in_row",
        "mended",
        "partial",
        "prompts",
        "rate_limit_waits",
        "started",
        "state",
    )

    def __init__(self, item: WorkItem, initial: str, stages: int, started: float) -> None:
        self.item = item
        self.state = initial
        self.prompts = 0
        self.attempts: list[Attempt] = []
        self.attempts_at = [0] * stages
        self.errors: tuple[FieldError, ...] = ()
        self.partial: dict[str, Any] | None = None
        self.last_invalid: Any = None
        self.rate_limit_waits = 0
        self.lost_in_row = 0
        self.started = started
        self._scratch: Scratch | None = None
        self.mended: tuple[FieldError, ...] = ()

    @property
    def stage(self) -> str:
        """The current stage's name (or terminal state)."""
        return self.state

    @property
    def scratch(self) -> Scratch:
        """Typed space for custom stage kinds to keep their own per-item data."""
        if self._scratch is None:
            self._scratch = Scratch()
        return self._scratch

    def note_mended(self, errors: tuple[FieldError, ...]) -> None:
        """Record *errors* the stage mended without a request (e.g. forbidden keys dropped)."""
        self.mended += errors

    def take_mended(self) -> tuple[FieldError, ...]:
        """The errors mended since the last call, for the attempt's record; clears them."""
        mended, self.mended = self.mended, ()
        return mended

    def __repr__(self) -> str:
        return (
            f"ItemState(item={self.item.id!r}, state={self.state!r}, prompts={self.prompts}, "
            f"errors={len(self.errors)})"
        )
