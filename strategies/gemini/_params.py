"""The Gemini strategy's stage params: what maps onto ``GenerateContentConfig``.

Ranges from the Gemini API reference (``GenerationConfig``): temperature in
[0, 2], top_p in [0, 1], presence and frequency penalties in [-2, 2]; a
thinking budget of -1 asks for dynamic thinking, 0 turns thinking off where
the model allows it, and no model takes more than 32,768 thinking tokens.
"""

from __future__ import annotations

import attrs

from stagedretry import setting

from .._sampling import SamplingParams

JSON_MIME = "application/json"
MIME_TYPES = (JSON_MIME, "text/plain", "text/x.enum")
SERVICE_TIERS = ("flex", "standard", "priority")
"""The ``service_tier`` values, as the Gemini API names them on the wire (lower case)."""
FLEX = "flex"
STANDARD = "standard"


@attrs.frozen
class GeminiParams(SamplingParams):
    """Stage params of :class:`~strategies.gemini.GeminiStrategy`; ``None`` is the model's default.

    Adds to :class:`~strategies.SamplingParams`: ``presence_penalty`` and
    ``frequency_penalty`` (in [-2, 2]), ``thinking_budget`` (tokens, -1 for
    dynamic, at most 32,768) and ``response_mime_type`` (``application/json``,
    ``text/plain`` or ``text/x.enum``; with a response schema the default is JSON) and
    ``service_tier`` (``flex``, ``standard`` or ``priority``; ``None`` sends no tier, which
    the service serves and bills as ``standard``).
    """

    presence_penalty: float | None = setting(None, minimum=-2.0, maximum=2.0)
    """Penalises tokens already present in the answer, in [-2, 2]."""
    frequency_penalty: float | None = setting(None, minimum=-2.0, maximum=2.0)
    """Penalises tokens by how often they appear in the answer, in [-2, 2]."""
    thinking_budget: int | None = setting(None, minimum=-1, maximum=32768, unit="tokens")
    """Thinking tokens the model may spend: -1 dynamic, 0 none (where the model allows it),
    at most 32,768."""
    response_mime_type: str | None = setting(None, choices=MIME_TYPES)
    """The answer's MIME type; with a response schema the default is ``application/json``."""
    service_tier: str | None = setting(None, choices=SERVICE_TIERS)
    """The tier that serves and bills the request: ``flex`` (half price, best effort: it may
    be shed, minutes of latency), ``standard`` or ``priority`` (a premium, may be served at
    standard); ``None``: no tier sent, served at ``standard``."""
