"""How the reference model reads a stage kind: the user's own kinds, declared.

The reference model (:mod:`._reference`) cannot run a stage kind's code: it
would then agree with any bug in it.  So each kind declares, as a class
attribute ``reading``, what it does in the terms the model understands: it asks
for the whole answer or repairs the fields that failed, and when it skips.  The
built-in kinds are read without one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from .._plan import Plan
from .._stages import FullStage, PartialStage, StageKind, builtin_kinds

__all__ = ["Asks", "KindReading", "Skips", "readings"]


class Asks(enum.Enum):
    """What a stage kind's request asks for."""

    #: The whole answer, as ``full`` does: an unreadable answer leaves nothing to repair.
    ANSWER = "answer"
    #: Only the fields that failed, as ``partial`` does: the request's ``fields`` are
    #: exactly those, and an unreadable answer leaves them still to repair.
    REPAIR = "repair"


class Skips(enum.Enum):
    """When a stage kind's ``build()`` returns ``None`` (skips, spending no prompt)."""

    #: It always sends a request.
    NEVER = "never"
    #: When no failed field is left to re-ask, as ``partial`` does.
    NOTHING_TO_REPAIR = "nothing_to_repair"
    #: Until an answer has failed validation (``state.errors`` is empty), as a kind
    #: that gives feedback on earlier mistakes does.
    UNTIL_INVALID = "until_invalid"


def _default_skips(reading: KindReading) -> Skips:
    return Skips.NOTHING_TO_REPAIR if reading.asks is Asks.REPAIR else Skips.NEVER


@attrs.frozen
class KindReading:
    """How the reference model reads one stage kind: the kind's class attribute ``reading``.

    ``asks`` (default :attr:`Asks.ANSWER`) and ``skips`` (default
    :attr:`Skips.NEVER`, or :attr:`Skips.NOTHING_TO_REPAIR` for a kind that
    repairs: it cannot ask for no fields).  ``keeps_prompt`` (default ``True``)
    says each request's prompt holds the item's own prompt, as ``full`` and
    ``partial`` do (words may come before or after it); say ``False`` for a
    kind that rewrites the prompt.  Raises ``ValueError`` for a kind that
    repairs yet declares another skip rule.

    ``check_plan(plan, stage_kinds=kinds)`` then checks the kind's real code
    against this declaration: a ``build()`` that skips when it should not (or
    asks for other fields) is reported with a shrunk script.
    """

    asks: Asks = Asks.ANSWER
    skips: Skips = attrs.field(default=attrs.Factory(_default_skips, takes_self=True))
    keeps_prompt: bool = attrs.field(default=True, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.asks is Asks.REPAIR and self.skips is not Skips.NOTHING_TO_REPAIR:
            raise ValueError(
                "a kind that repairs fields skips when nothing is left to repair: "
                f"skips={Skips.NOTHING_TO_REPAIR}, not {self.skips}"
            )


FULL = KindReading()
PARTIAL = KindReading(Asks.REPAIR)


def _same_code(kind: StageKind, base: type[object]) -> bool:
    # A subclass that keeps the built-in's build and parse behaves as the built-in does.
    cls = type(kind)
    return isinstance(kind, base) and all(
        getattr(cls, name) is getattr(base, name) for name in ("build", "parse")
    )


def reading_of(name: str, kind: StageKind) -> KindReading:
    """How the reference reads *kind*, registered as *name*; ``ValueError`` if it does not say."""
    declared = getattr(kind, "reading", None)
    if isinstance(declared, KindReading):
        return declared
    if declared is not None:
        raise TypeError(f"stage kind {name!r}: its reading is {declared!r}, not a KindReading")
    if _same_code(kind, FullStage):
        return FULL
    if _same_code(kind, PartialStage):
        return PARTIAL
    raise ValueError(
        f"stage kind {name!r} ({type(kind).__name__}) does not say how the reference model "
        "reads it: give its class an attribute reading = KindReading(asks=..., skips=...) "
        "(from stagedretry.testing)"
    )


def readings(plan: Plan, stage_kinds: Mapping[str, StageKind] | None) -> tuple[KindReading, ...]:
    """Each stage's reading, in order; ``ValueError`` naming the stage the model cannot read.

    *stage_kinds* is the mapping given to ``Runner(kinds=...)`` (default
    :func:`~stagedretry.builtin_kinds`).
    """
    kinds = builtin_kinds() if stage_kinds is None else stage_kinds
    out: list[KindReading] = []
    for i, stage in enumerate(plan.stages):
        kind = kinds.get(stage.kind)
        if kind is None:
            raise ValueError(
                f"plan.stages[{i}].kind: unknown stage kind {stage.kind!r} "
                f"(known: {', '.join(kinds)}); pass your kinds as stage_kinds="
            )
        try:
            out.append(reading_of(stage.kind, kind))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"plan.stages[{i}].kind: {exc}") from None
    return tuple(out)
