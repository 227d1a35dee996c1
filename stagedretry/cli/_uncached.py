"""Which stages ran without a cache, and why: the summary's lines for them.

A provider says per model whether its stages named a cache
(:class:`~strategies.backend.CacheChoice`); here each stage that sent requests without
one becomes a row, in the plan's order, as the summary prints it:
``stage full_pro (gemini-2.5-pro): no cache, 53 requests expected to cost $0.011 inline
vs $0.024 cached``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from rich.text import Text

from strategies.backend import CacheChoice

__all__ = ["UncachedStage", "uncached_lines", "uncached_stages"]


@attrs.frozen
class UncachedStage:
    """One stage whose requests carried the instructions inline, and why."""

    stage: str
    model: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "model": self.model, "reason": self.reason}

    def sentence(self) -> str:
        return f"stage {self.stage} ({self.model}): no cache, {self.reason}"


def uncached_stages(
    choices: Iterable[CacheChoice], ran: Sequence[str]
) -> tuple[UncachedStage, ...]:
    """The stages of *ran* (the stages that sent requests, in the plan's order) that a
    choice in *choices* says ran without a cache."""
    why = {
        stage: (choice.model, choice.reason)
        for choice in choices
        if choice.reason is not None
        for stage in choice.stages
    }
    return tuple(UncachedStage(s, *why[s]) for s in ran if s in why)


def uncached_lines(rows: Iterable[UncachedStage]) -> list[Text]:
    """One dim line per row, for the human summary."""
    return [Text(row.sentence(), style="yellow") for row in rows]
