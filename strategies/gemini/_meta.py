"""Typed metadata and token usage read from a ``GenerateContentResponse``.

Every attempt keeps these, whatever it came to: a SAFETY stop or a blocked
prompt keeps its ratings on the failed attempt.  Enum values are recorded by
their names, so a value the SDK does not know yet (``BRAND_NEW_REASON``) is
kept as the server sent it.

The service may report a token count only through its breakdown by modality
(``cacheTokensDetails`` without ``cachedContentTokenCount``), so each count is
the top-level number when sent, else the sum of its details.
"""

from __future__ import annotations

import enum
from typing import Any, Final

from google.genai import types

from stagedretry import ResponseMeta, Usage

__all__ = [
    "SAFETY_FINISH_REASONS",
    "TIER_HEADER",
    "answer_text",
    "enum_name",
    "response_meta",
    "response_usage",
    "served_tier",
]

SAFETY_FINISH_REASONS: Final = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
        "LANGUAGE",
    }
)
"""Finish reasons meaning the answer was withheld (or cut) by a policy, not by length."""

_UNSET_BLOCK: Final = "BLOCKED_REASON_UNSPECIFIED"
TIER_HEADER: Final = "x-gemini-service-tier"
"""The response header naming the tier that served (and bills) a request (Developer API)."""
_KNOWN_TIERS: Final = frozenset({"flex", "standard", "priority"})
# Vertex AI names the tier that served a request in usageMetadata.trafficType instead.
_TRAFFIC_TIERS: Final = {
    "ON_DEMAND": "standard",
    "ON_DEMAND_FLEX": "flex",
    "ON_DEMAND_PRIORITY": "priority",
}
_TRUNCATING_REASONS: Final = frozenset({"MAX_TOKENS"})
"""Finish reasons meaning the answer was cut off by the output token limit."""


def enum_name(value: object) -> str | None:
    """An SDK enum member's name (also for the SDK's pseudo-members of unknown values)."""
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return str(value.name)
    return str(value)


def _count(total: int | None, details: list[types.ModalityTokenCount] | None) -> int:
    """One token count: the top-level number when sent, else the sum of its per-modality details."""
    if total is not None:
        return total
    return sum(detail.token_count or 0 for detail in details or ())


def response_usage(response: types.GenerateContentResponse) -> Usage:
    """The tokens one response billed: input includes the cached part, as Gemini counts it.

    Tool-use prompt tokens (results of the service's own tools, fed back to
    the model) are input billed at the input price, so they count as input.
    """
    usage = response.usage_metadata
    if usage is None:
        return Usage()
    prompt = _count(usage.prompt_token_count, usage.prompt_tokens_details)
    tool_use = _count(usage.tool_use_prompt_token_count, usage.tool_use_prompt_tokens_details)
    return Usage(
        input_tokens=prompt + tool_use,
        output_tokens=_count(usage.candidates_token_count, usage.candidates_tokens_details),
        cached_tokens=_count(usage.cached_content_token_count, usage.cache_tokens_details),
        thinking_tokens=usage.thoughts_token_count or 0,
    )


def _ratings(ratings: list[types.SafetyRating] | None, into: dict[str, str]) -> None:
    for rating in ratings or ():
        category = enum_name(rating.category)
        # A rating may grade by severity alone (Vertex does), or only say it blocked:
        # either way it is kept, graded by what it does say.
        grade = enum_name(rating.probability) or enum_name(rating.severity)
        if grade is None and rating.blocked:
            grade = "BLOCKED"
        if category is not None and grade is not None:
            into[category] = grade


def served_tier(response: types.GenerateContentResponse, requested: str | None) -> str:
    """The tier a response was billed at: the service's ``x-gemini-service-tier`` header when
    it names a known tier, else Vertex AI's ``usageMetadata.trafficType`` (``ON_DEMAND``,
    ``ON_DEMAND_FLEX``, ``ON_DEMAND_PRIORITY``), else the tier *requested* (``None``:
    ``"standard"``, the service's default).

    The header is the only place this SDK exposes it on the Developer API: google-genai
    3.6.1 drops the body's ``usageMetadata.serviceTier``.  A Priority request over its
    limit is served (and billed) at ``standard``, and the header says so.
    """
    http = response.sdk_http_response
    headers = http.headers if http is not None else None
    if headers:
        for name, value in headers.items():
            if name.lower() == TIER_HEADER and isinstance(value, str):
                tier = value.strip().lower()
                if tier in _KNOWN_TIERS:
                    return tier
    usage = response.usage_metadata
    traffic = enum_name(usage.traffic_type) if usage is not None else None
    if traffic in _TRAFFIC_TIERS:
        return _TRAFFIC_TIERS[traffic]
    return requested or "standard"


def response_meta(
    response: types.GenerateContentResponse, requested_tier: str | None = None
) -> ResponseMeta:
    """What the response said besides its text: finish reason, safety, model, id and the
    tier it was billed at (see :func:`served_tier`)."""
    ratings: dict[str, str] = {}
    feedback = response.prompt_feedback
    block_reason = None
    if feedback is not None:
        _ratings(feedback.safety_ratings, ratings)
        block_reason = enum_name(feedback.block_reason)
        if block_reason == _UNSET_BLOCK:
            block_reason = None
    finish_reason = None
    candidates = response.candidates
    if candidates:
        first = candidates[0]
        finish_reason = enum_name(first.finish_reason)
        # The candidate's own ratings are about the answer, so they win over the prompt's.
        _ratings(first.safety_ratings, ratings)
    return ResponseMeta(
        finish_reason=finish_reason,
        safety_ratings=ratings,
        blocked=block_reason is not None,
        block_reason=block_reason,
        model_version=response.model_version,
        response_id=response.response_id,
        truncated=finish_reason in _TRUNCATING_REASONS,
        service_tier=served_tier(response, requested_tier),
        raw=response,
    )


def answer_text(response: types.GenerateContentResponse) -> str | None:
    """The text of the first candidate without thought parts; ``None`` when there is none.

    Read directly rather than through ``response.text``, which logs a warning
    for every answer holding non-text parts.
    """
    candidates = response.candidates
    if not candidates:
        return None
    content = candidates[0].content
    if content is None or not content.parts:
        return None
    texts: list[str] = []
    for part in content.parts:
        text: Any = part.text
        if isinstance(text, str) and not part.thought:
            texts.append(text)
    return "".join(texts) if texts else None
