"""Service tiers in the emulator: the request's ``serviceTier``, Flex's shedding and latency.

What the service does, with sources in ``docs/reference/gemini.md`` ("Service tiers"):
a ``generateContent`` body may carry ``serviceTier`` (the SDK's spelling; the REST
examples write ``service_tier``) as ``flex``, ``standard`` or ``priority`` in lower
case; no tier is ``standard``.  The answer names the tier that served it in the
``x-gemini-service-tier`` header and in ``usageMetadata.serviceTier``.  A Flex request
may be shed with a 503 ``UNAVAILABLE`` that carries no ``RetryInfo``, and is served
after minutes rather than seconds.  The emulator sheds at ``shed_rate`` (drawn from
the seed and the request, as a fault's ``rate`` is) and waits ``latency`` real seconds
before serving a Flex request.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

import attrs

from stagedretry import setting

from ...backend import MAX_WAIT
from ._wire import ApiError

__all__ = ["FLEX", "TIERS", "TIER_HEADER", "FlexSettings", "Shedder", "request_tier", "shed_error"]

FLEX: Final = "flex"
STANDARD: Final = "standard"
TIERS: Final = ("flex", "standard", "priority")
"""The tiers the service takes, in its wire spelling; ``unspecified`` means standard."""
TIER_HEADER: Final = "x-gemini-service-tier"
MSG_SHED: Final = (
    "This model is currently experiencing high demand. Spikes in demand are usually "
    "temporary. Please try again later."
)
"""The words of the service's 503 at capacity, as reported in 2026 (see the reference)."""


@attrs.frozen
class FlexSettings:
    """The ``flex`` table of ``[backend.emulator]``: how the emulated Flex tier behaves.

    ``shed_rate`` is the chance in [0, 1] that a Flex request is shed (503, not billed;
    default 0); ``latency`` is the real seconds a served Flex request waits before its
    answer, on top of ``latency`` (default 0, at most 3600).  Neither touches a
    request on another tier.
    """

    shed_rate: float = setting(0.0, minimum=0.0, maximum=1.0)
    """The chance that a Flex request is shed with a 503, drawn from the seed and the request."""
    latency: float = setting(0.0, minimum=0.0, maximum=MAX_WAIT, unit="seconds")
    """Real seconds a served Flex request takes, on top of the emulator's ``latency``."""


def request_tier(body: Mapping[str, Any]) -> str | None:
    """The tier a ``generateContent`` body asks for (``None``: none sent, i.e. standard).

    Raises the service's 400 ``INVALID_ARGUMENT`` for a value it does not take (the
    enum in another case, or an unknown name).
    """
    value = body.get("serviceTier", body.get("service_tier"))
    if value is None:
        return None
    if value == "unspecified":
        return STANDARD
    if isinstance(value, str) and value in TIERS:
        return value
    shown = value if isinstance(value, str) else repr(value)
    raise ApiError(
        400,
        "Invalid value at 'service_tier' "
        f'(type.googleapis.com/google.ai.generativelanguage.v1beta.ServiceTier), "{shown}"',
    )


def shed_error() -> ApiError:
    """The service's answer to a Flex request it sheds: 503 ``UNAVAILABLE``, no ``RetryInfo``."""
    return ApiError(503, MSG_SHED)


class Shedder:
    """Decides which Flex requests are shed: deterministic for a seed, thread-safe.

    A draw depends on the seed, the request's bytes and how often the same request was
    seen, not on the order requests arrive in, so a retry of a shed request draws anew.
    """

    def __init__(self, seed: int, settings: FlexSettings) -> None:
        self._salt = f"{seed}:flex:".encode()
        self._settings = settings
        self._seen: Counter[bytes] = Counter()
        self._lock = threading.Lock()

    @property
    def settings(self) -> FlexSettings:
        """The Flex behaviour this shedder applies."""
        return self._settings

    def sheds(self, request: bytes) -> bool:
        """Whether this sighting of a Flex *request* (method, path and body) is shed."""
        rate = self._settings.shed_rate
        if rate <= 0.0:
            return False
        digest = hashlib.blake2b(request, digest_size=16).digest()
        with self._lock:
            self._seen[digest] += 1
            count = self._seen[digest]
        key = self._salt + digest + count.to_bytes(8, "big")
        draw = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64
        return draw < rate
