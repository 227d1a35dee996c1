"""The bill split by service tier: tokens and USD per tier, and what they cost on standard.

Every attempt's ``ResponseMeta.service_tier`` names the tier it was billed at (Gemini:
``standard``, ``flex``, ``priority``; a batch job's answers ``batch``).  An attempt that
names none (another backend, or a failure that told nothing) is billed as ``standard``,
the tier a request without one is served at, and never the cheaper reading.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import attrs

from .._results import ItemResult, Usage
from .pipeline import Price

__all__ = [
    "STANDARD",
    "TierCost",
    "tier_costs",
    "token_cost",
    "usage_by_model_tier",
    "usage_by_tier",
]

STANDARD: Final = "standard"
_MILLION: Final = 1_000_000


@attrs.frozen
class TierCost:
    """One tier's share of the bill: its tokens, their price in USD on that tier, and the
    same tokens at the standard price."""

    tier: str
    usage: Usage
    usd: float
    at_standard: float
    model: str = ""
    """The model the tokens were sent to ("": the job's one model)."""

    @property
    def saving(self) -> float:
        """USD the tier saved against standard (negative for a premium tier)."""
        return self.at_standard - self.usd

    def to_json(self) -> dict[str, Any]:
        u = self.usage
        return {
            **({"model": self.model} if self.model else {}),
            "tier": self.tier,
            "tokens": {
                "input": u.input_tokens,
                "cached": u.cached_tokens,
                "fresh_input": u.fresh_input_tokens,
                "output": u.output_tokens,
                "thinking": u.thinking_tokens,
            },
            "usd": round(self.usd, 6),
            "at_standard": round(self.at_standard, 6),
        }


def usage_by_tier(results: Iterable[ItemResult[Any]]) -> dict[str, Usage]:
    """The tokens of every attempt of *results*, added up by the tier each was billed at
    (an attempt that billed nothing, such as a shed request, is left out)."""
    found: dict[str, Usage] = {}
    empty = Usage()
    for result in results:
        for attempt in result.attempts:
            if attempt.usage == empty:
                continue
            meta = attempt.meta
            tier = (meta.service_tier if meta is not None else None) or STANDARD
            found[tier] = found.get(tier, Usage()) + attempt.usage
    return found


def usage_by_model_tier(
    results: Iterable[ItemResult[Any]], model_of: Callable[[str], str]
) -> dict[tuple[str, str], Usage]:
    """As :func:`usage_by_tier`, keyed by (model, tier): *model_of* names the model a stage
    sends to (its ``model`` param, else the backend's)."""
    found: dict[tuple[str, str], Usage] = {}
    empty = Usage()
    for result in results:
        for attempt in result.attempts:
            if attempt.usage == empty:
                continue
            meta = attempt.meta
            key = (
                model_of(attempt.stage),
                (meta.service_tier if meta is not None else None) or STANDARD,
            )
            found[key] = found.get(key, Usage()) + attempt.usage
    return found


def token_cost(price: Price, usage: Usage) -> float:
    """USD of *usage* at *price*: fresh input, cached input, and output with thinking."""
    return (
        usage.fresh_input_tokens * price.input
        + usage.cached_tokens * price.cached_input
        + (usage.output_tokens + usage.thinking_tokens) * price.output
    ) / _MILLION


def tier_costs(
    by_tier: Mapping[str, Usage], price_of: Callable[[str], Price], standard: Price
) -> tuple[TierCost, ...]:
    """A :class:`TierCost` per tier of *by_tier*, standard first, then by name."""
    order = sorted(by_tier, key=lambda tier: (tier != STANDARD, tier))
    return tuple(
        TierCost(
            tier=tier,
            usage=by_tier[tier],
            usd=token_cost(price_of(tier), by_tier[tier]),
            at_standard=token_cost(standard, by_tier[tier]),
        )
        for tier in order
    )
