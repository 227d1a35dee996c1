"""The sampling params most LLM APIs share, as a typed stage-params class.

``sim`` and ``callable`` declare these; ``gemini`` extends them.  Every field
defaults to ``None``: the model's own default.  Ranges are the Gemini API's
(``GenerationConfig`` in the API reference; recorded in the project's Gemini
reference notes): temperature in [0, 2], top_p in [0, 1], top_k and
max_output_tokens at least 1, up to 5 stop sequences.
"""

from __future__ import annotations

from typing import TypeVar

import attrs

from stagedretry import StageContext, parse_settings, setting

P = TypeVar("P")

_INT32: int = 2**31 - 1


@attrs.frozen
class SamplingParams:
    """Stage params for sampling: ``params = { temperature = 0.25, max_output_tokens = 800 }``."""

    temperature: float | None = setting(None, minimum=0.0, maximum=2.0)
    """Randomness of sampling, in [0, 2]; ``None``: the model's default."""
    top_p: float | None = setting(None, minimum=0.0, maximum=1.0)
    """Nucleus sampling's probability mass, in [0, 1]."""
    top_k: int | None = setting(None, minimum=1, maximum=_INT32)
    """Sample from the *top_k* most likely tokens (at least 1; the API's field is 32-bit)."""
    max_output_tokens: int | None = setting(None, minimum=1, maximum=_INT32, unit="tokens")
    """The most tokens an answer may have (at least 1); a longer answer is cut (MAX_TOKENS)."""
    seed: int | None = setting(None, minimum=-_INT32 - 1, maximum=_INT32)
    """The sampling seed (a 32-bit integer), for repeatable answers where the model honours it."""
    model: str | None = setting(None)
    """Another model for this stage (e.g. escalate to a larger one); ``None``: the strategy's."""
    stop_sequences: tuple[str, ...] | None = setting(None, max_items=5)
    """Up to 5 strings that end the answer; a single string is a list of one."""


def params_of(ctx: StageContext, params_type: type[P]) -> P:
    """*ctx*'s checked params; read here when a context was built by hand, not by a runner."""
    params = ctx.params
    if isinstance(params, params_type):
        return params
    return parse_settings(params_type, params, f"{ctx.stage.name}.params", noun="parameter")
