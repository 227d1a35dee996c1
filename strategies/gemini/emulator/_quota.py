"""The emulator's own quotas: requests and input tokens per minute, requests per day, per model.

Counted by the server on arrival, independently of any client-side admission (so a test
of the admission is not the admission agreeing with itself): a moving window of one
quota minute for RPM and TPM (the strictest reading of "per minute"; a forum answer says
the service resets minute limits at second 00, which a moving window never exceeds), and
a counter per Pacific-time day for RPD (Gemini's reset at midnight Pacific time).  A
request over a limit is answered 429 ``RESOURCE_EXHAUSTED`` with the paid tier's
``QuotaFailure`` (``quotaMetric``, ``quotaId``, ``quotaDimensions``, ``quotaValue``), a
``Help`` link and a ``RetryInfo`` saying when the window has room again, and is not
counted.  The bodies and their sources are in ``docs/reference/gemini.md``.
"""

from __future__ import annotations

import collections
import datetime
import math
import threading
import zoneinfo
from typing import Any, Final

import attrs

from stagedretry import setting

from ._wire import MSG_QUOTA, ApiError, format_duration

__all__ = ["EmulatorQuota", "QuotaBook", "QuotaStats"]

_PACIFIC: Final = zoneinfo.ZoneInfo("America/Los_Angeles")
_HELP: Final = {
    "@type": "type.googleapis.com/google.rpc.Help",
    "links": [
        {
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }
    ],
}
# (quotaMetric, quotaId) of each limit, as the paid tier names them.
RPM_QUOTA: Final = (
    "generativelanguage.googleapis.com/generate_requests_per_model",
    "GenerateRequestsPerMinutePerProjectPerModel",
)
TPM_QUOTA: Final = (
    "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",
    "GenerateContentPaidTierInputTokensPerModelPerMinute",
)
RPD_QUOTA: Final = (
    "generativelanguage.googleapis.com/generate_requests_per_model_per_day",
    "GenerateRequestsPerDayPerProjectPerModel",
)


@attrs.frozen
class EmulatorQuota:
    """The ``[backend.emulator.quota]`` table: the limits the emulator enforces, per model.

    Each ``None`` is no limit.  ``minute`` is the length of a quota minute in whole
    seconds (default 60): a test or a benchmark shortens it, and then gives the client's
    admission the same ``minute``.
    """

    rpm: int | None = setting(None, minimum=1, unit="requests per minute")
    """Requests per minute, per model."""
    tpm: int | None = setting(None, minimum=1, unit="input tokens per minute")
    """Input tokens per minute, per model (``promptTokenCount``: cached tokens included)."""
    rpd: int | None = setting(None, minimum=1, unit="requests per day")
    """Requests per Pacific-time day, per model."""
    minute: int = setting(60, minimum=1, maximum=3600, unit="seconds")
    """Seconds in a quota minute."""

    @property
    def limited(self) -> bool:
        return any(v is not None for v in (self.rpm, self.tpm, self.rpd))


@attrs.frozen
class QuotaStats:
    """What the quotas saw: every request served, with its arrival time and input tokens,
    the violations by ``quotaId`` (a request may break several), and the requests refused."""

    served: tuple[tuple[float, int], ...]
    refused: dict[str, int]
    refusals: int = 0
    """Requests answered 429 for a quota."""

    def achieved(self, minute: float = 60.0) -> tuple[float, float]:
        """Requests and input tokens served per quota minute, as the quota counts them.

        The mean, over every window of *minute* seconds that lies between the first
        and the last request served, of the requests (and tokens) the window holds:
        a run that keeps every window full scores the quota itself, whatever head
        start its first window had.  ``(0.0, 0.0)`` when the run spans less than one
        window.
        """
        served = sorted(self.served)
        if not served:
            return 0.0, 0.0
        first, last = served[0][0], served[-1][0]
        span = last - minute - first
        if span <= 0:
            return 0.0, 0.0
        requests = tokens = 0.0
        for at, count in served:
            # The starts t of the windows [t, t + minute) that hold this arrival.
            inside = max(0.0, min(at, last - minute) - max(at - minute, first))
            requests += inside
            tokens += inside * count
        return requests / span, tokens / span


@attrs.define
class _Model:
    window: collections.deque[tuple[float, int]] = attrs.field(factory=collections.deque)
    tokens: int = 0
    day: str = ""
    today: int = 0


class QuotaBook:
    """The quota counters of one emulator; thread-safe."""

    def __init__(self, quota: EmulatorQuota) -> None:
        self.quota = quota
        self._models: dict[str, _Model] = {}
        self._served: list[tuple[float, int]] = []
        self._refused: collections.Counter[str] = collections.Counter()
        self._refusals = 0
        self._lock = threading.Lock()

    def stats(self) -> QuotaStats:
        with self._lock:
            return QuotaStats(tuple(self._served), dict(self._refused), self._refusals)

    def admit(self, model: str, tokens: int, now: float) -> ApiError | None:
        """Count one request of *model* with *tokens* input tokens, or the 429 refusing it."""
        quota = self.quota
        bare = model.removeprefix("models/")
        with self._lock:
            entry = self._models.setdefault(bare, _Model())
            day = datetime.datetime.fromtimestamp(now, _PACIFIC).date().isoformat()
            if entry.day != day:
                entry.day, entry.today = day, 0
            window = entry.window
            while window and window[0][0] <= now - quota.minute:
                entry.tokens -= window.popleft()[1]
            if quota.rpd is not None and entry.today >= quota.rpd:
                # What is left of the minute: a day quota's RetryInfo is short, as seen in
                # the wild (googleapis/python-genai#2044), and no reason to wait.
                left = quota.minute - now % quota.minute
                return self._refuse([(RPD_QUOTA, quota.rpd)], bare, left)
            broken: list[tuple[tuple[str, str], int]] = []
            delay = 0.0
            if quota.rpm is not None and len(window) >= quota.rpm:
                broken.append((RPM_QUOTA, quota.rpm))
                oldest = window[len(window) - quota.rpm][0]
                delay = oldest + quota.minute - now
            if quota.tpm is not None and entry.tokens + tokens > quota.tpm:
                broken.append((TPM_QUOTA, quota.tpm))
                delay = max(delay, self._room_at(entry, tokens, now))
            if broken:
                # Every quota the request would break, and the wait after which it breaks none.
                return self._refuse(broken, bare, delay)
            window.append((now, tokens))
            entry.tokens += tokens
            entry.today += 1
            self._served.append((now, tokens))
            return None

    def _room_at(self, entry: _Model, tokens: int, now: float) -> float:
        """Seconds until the window has room for *tokens* more (a whole minute if never)."""
        quota = self.quota
        assert quota.tpm is not None
        excess = entry.tokens + tokens - quota.tpm
        for at, count in entry.window:
            excess -= count
            if excess <= 0:
                return at + quota.minute - now
        return float(quota.minute)

    def _refuse(
        self, broken: list[tuple[tuple[str, str], int]], model: str, delay: float
    ) -> ApiError:
        self._refusals += 1
        for (_, quota_id), _ in broken:
            self._refused[quota_id] += 1
        # Whole milliseconds, at least one: a Duration the SDK and the rules both read.
        seconds = max(0.001, math.ceil(delay * 1000) / 1000)
        retry = format_duration(seconds)
        details: list[dict[str, Any]] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": metric,
                        "quotaId": quota_id,
                        "quotaDimensions": {"location": "global", "model": model},
                        "quotaValue": str(value),
                    }
                    for (metric, quota_id), value in broken
                ],
            },
            _HELP,
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry},
        ]
        listed = "".join(
            f"\n* Quota exceeded for metric: {metric}, limit: {value}, model: {model}"
            for (metric, _), value in broken
        )
        message = f"{MSG_QUOTA}{listed}\nPlease retry in {retry}."
        return ApiError(429, message, details=details)


def per_day(refusal: ApiError) -> bool:
    """Whether *refusal* (from :meth:`QuotaBook.admit`) names the requests-per-day quota."""
    for detail in refusal.details or ():
        for violation in detail.get("violations", ()):
            if violation.get("quotaId") == RPD_QUOTA[1]:
                return True
    return False
