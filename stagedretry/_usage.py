"""What one response cost and what the provider said about it.

These sit below the outcomes and the results: an ``AttemptError`` carries them,
and so does every ``Attempt``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs


@attrs.frozen
class Usage:
    """Tokens of every kind for one attempt, item or batch.

    ``input_tokens`` is every prompt token, those served from a cache included;
    ``cached_tokens`` is the part of it that was served from a cache.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    thinking_tokens: int = 0

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_tokens + other.cached_tokens,
            self.thinking_tokens + other.thinking_tokens,
        )

    def __radd__(self, other: object) -> Usage:
        # ``sum(usages)`` starts from 0.
        if other == 0:
            return self
        return self.__add__(other)

    @property
    def fresh_input_tokens(self) -> int:
        """Input tokens billed at the full price (not served from a cache)."""
        return self.input_tokens - self.cached_tokens

    @property
    def cached_share(self) -> float:
        """Share of input tokens served from a cache (0 when there were none)."""
        return self.cached_tokens / self.input_tokens if self.input_tokens else 0.0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.thinking_tokens


NO_USAGE = Usage()


def _frozen_mapping(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(value or {}))


@attrs.frozen
class ResponseMeta:
    """What a provider told about one response, on success and on failure alike.

    ``safety_ratings`` maps a category to its probability, by enum name.
    ``truncated`` says the answer was cut off by the output token limit
    (Gemini's ``MAX_TOKENS``): the stages then keep what of it is complete.
    ``service_tier`` is the tier the request was billed at, as the provider names it
    (Gemini: ``"standard"``, ``"flex"``, ``"priority"``, or ``"batch"`` for an answer
    from a batch job); ``None`` when the provider does not say.
    ``raw`` is the provider's own response object for whoever needs more.
    """

    finish_reason: str | None = None
    safety_ratings: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_mapping)
    blocked: bool = False
    block_reason: str | None = None
    model_version: str | None = None
    response_id: str | None = None
    truncated: bool = False
    service_tier: str | None = None
    raw: Any = attrs.field(default=None, repr=False, eq=False)
