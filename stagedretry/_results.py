"""Value objects that leave the engine: usage, response metadata, attempts and results."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic

import attrs

from ._outcomes import FieldError, FieldPath, OutcomeKind
from ._usage import NO_USAGE, ResponseMeta, Usage

if TYPE_CHECKING:
    from typing_extensions import TypeVar

    # Defaulted: a bare ``ItemResult`` or ``Runner`` means "output of any type", so
    # annotations written before results were generic stay valid under mypy --strict.
    T = TypeVar("T", default=Any)
else:
    # Python 3.11's TypeVar takes no default, and none is needed at runtime.
    from typing import TypeVar

    T = TypeVar("T")

# Usage and ResponseMeta are defined below the outcomes (an AttemptError carries them)
# and re-exported here, beside the results that hold them.
__all__ = [
    "NO_USAGE",
    "Attempt",
    "BatchResult",
    "ItemResult",
    "ItemStatus",
    "ResponseMeta",
    "T",
    "Usage",
    "WorkItem",
]


class ItemStatus(enum.Enum):
    """How an item ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXHAUSTED = "exhausted"
    CANCELLED = "cancelled"


@attrs.frozen
class Attempt:
    """One request of one item (or a refusal of one), whatever it came to.

    ``fields`` are the paths a partial request asked for (``None``: the whole
    answer); ``mended`` the errors the engine repaired itself, without another
    request (a key the schema forbids, dropped), whatever the outcome.
    """

    stage: str
    outcome: OutcomeKind
    number: int
    counted: bool
    usage: Usage = NO_USAGE
    meta: ResponseMeta | None = None
    error: str | None = None
    fields: tuple[FieldPath, ...] | None = None
    started: float = 0.0
    duration: float = 0.0
    mended: tuple[FieldError, ...] = ()


@attrs.frozen
class WorkItem:
    """One unit of work: an id, the prompt, and any context the caller wants back."""

    id: str
    prompt: str
    context: Any = attrs.field(default=None, eq=False)


ItemLike = WorkItem | tuple[Any, ...] | Mapping[str, Any]
"""One item of a run: a :class:`WorkItem`, an ``(id, prompt[, context])`` tuple, or a
mapping with ``id`` and ``prompt`` keys (its context is the mapping itself)."""
Items = Iterable[ItemLike] | AsyncIterable[ItemLike]
"""The items of a run: any iterable of :data:`ItemLike`, sync or async."""


@attrs.frozen
class ItemResult(Generic[T]):
    """The terminal result of one item.

    ``output`` is what the runner's validator returned (of type ``T``, the text
    itself without a validator) when the item succeeded, else ``None``.
    """

    id: str
    status: ItemStatus
    output: T | None = None
    final_stage: str | None = None
    prompts: int = 0
    attempts: tuple[Attempt, ...] = ()
    reason: str | None = None
    errors: tuple[FieldError, ...] = ()
    last_invalid: Any = attrs.field(default=None, repr=False)
    context: Any = attrs.field(default=None, repr=False, eq=False)

    @property
    def ok(self) -> bool:
        return self.status is ItemStatus.SUCCEEDED

    @property
    def usage(self) -> Usage:
        """Tokens of every attempt of this item, failed ones included."""
        return sum((a.usage for a in self.attempts), NO_USAGE)


@attrs.frozen
class BatchResult(Generic[T]):
    """Totals of a run; ``results`` is empty when the run was streamed.

    ``resumed`` counts the items skipped because the run's journal already held
    their result; they are in no other count (``journal.results()`` has them).
    """

    results: tuple[ItemResult[T], ...]
    counts: Mapping[ItemStatus, int]
    usage: Usage
    prompts: int
    attempts: int
    successes_per_stage: Mapping[str, int]
    transitions: Mapping[str, int]
    wall_time: float
    resumed: int = 0

    @property
    def total_input_tokens(self) -> int:
        return self.usage.input_tokens

    @property
    def total_output_tokens(self) -> int:
        return self.usage.output_tokens

    @property
    def total_cached_tokens(self) -> int:
        return self.usage.cached_tokens

    @property
    def total_thinking_tokens(self) -> int:
        return self.usage.thinking_tokens

    @property
    def items(self) -> int:
        return sum(self.counts.values())

    @property
    def succeeded(self) -> int:
        return self.counts.get(ItemStatus.SUCCEEDED, 0)

    @property
    def cached_share(self) -> float:
        """Share of input tokens served from a cache."""
        return self.usage.cached_share

    def summary(self) -> str:
        """A readable plain-text table of the run."""
        rate = self.items / self.wall_time if self.wall_time > 0 else 0.0
        names = [*self.successes_per_stage, *self.transitions, "tokens out"]
        width = max(len(n) for n in names) + 2

        def row(label: str, value: int, note: str = "") -> str:
            return f"{label:<{width}} {value:>10}{f'   {note}' if note else ''}"

        lines = [row("items", self.items, f"({rate:,.1f} items/s over {self.wall_time:.2f} s)")]
        lines += [row(f"  {s.value}", self.counts.get(s, 0)) for s in ItemStatus]
        if self.resumed:
            lines.append(row("resumed", self.resumed, "(from the journal, not run again)"))
        lines += [
            row("prompts", self.prompts, f"({self.attempts} attempts)"),
            row("tokens in", self.usage.input_tokens),
            row("  cached", self.usage.cached_tokens, f"({self.cached_share:.1%})"),
            row("tokens out", self.usage.output_tokens),
            row("thinking", self.usage.thinking_tokens),
        ]
        if self.successes_per_stage:
            lines.append("successes per stage")
            lines += [row(f"  {k}", v) for k, v in self.successes_per_stage.items()]
        if self.transitions:
            lines.append("transitions fired")
            lines += [row(f"  {k}", v) for k, v in sorted(self.transitions.items())]
        return "\n".join(lines)
