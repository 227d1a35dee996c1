"""The server's clock, as seen from ours: how far ahead of the local clock it runs.

A cache's ``expire_time`` is on the server's clock; deciding whether it still has
``renew_margin`` seconds left needs the server's *now*, not ours.  Two kinds of
reading give it, each taken from the response that also carried the cache:

- a time the server has just set in the body (``create_time`` of a cache it has just
  created, ``update_time`` of one it has just extended): microsecond resolution;
- the HTTP ``Date`` header (RFC 9110, section 6.6.1), which the SDK keeps on the
  ``caches.list`` pager (``sdk_http_response.headers``) but not on a ``CachedContent``:
  one-second resolution, truncated.

A reading bounds the offset (server minus local): the server stamped its answer after
the request left (local time *sent*) and before the answer arrived (*received*), and a
``Date`` of second ``D`` was stamped in ``[D, D + 1)``.  Readings that agree narrow the
bounds; one that does not (the server's clock was corrected) replaces them.  The offset
used is the *upper* bound: the server's now is taken as late as the readings allow, so
a cache is renewed early by at most their uncertainty (for a ``Date`` alone, under one
second plus the round trip), and never late.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = ["Reading", "ServerClock", "from_date", "from_time", "header"]

DATE_RESOLUTION: Final = 1.0
"""Seconds: an HTTP-date names a whole second, and the server's time is anywhere in it."""


@attrs.frozen
class Reading:
    """Bounds on the offset (seconds the server's clock is ahead of ours; negative: behind)."""

    low: float
    high: float


def header(headers: Any, name: str) -> str | None:
    """The value of header *name* (any case) in *headers*, a mapping of strings or ``None``."""
    if not isinstance(headers, Mapping):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted and isinstance(value, str):
            return value
    return None


def parse_http_date(text: str) -> float | None:
    """Epoch seconds named by an HTTP-date (``Sun, 06 Nov 1994 08:49:37 GMT``), or ``None``
    for a text that is not one (a proxy's garbage must not move the estimate)."""
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000", RFC 5322's unknown zone: HTTP-dates are GMT
        return None
    seconds = moment.timestamp()
    return seconds if math.isfinite(seconds) else None


def from_time(server_time: float | None, *, sent: float, received: float) -> Reading | None:
    """The reading a time the server set while answering gives (``None`` without one)."""
    if server_time is None or not math.isfinite(server_time):
        return None
    return Reading(low=server_time - received, high=server_time - sent)


def from_date(headers: Any, *, sent: float, received: float) -> Reading | None:
    """The reading the ``Date`` header in *headers* gives (``None`` without a readable one)."""
    text = header(headers, "date")
    moment = parse_http_date(text) if text is not None else None
    if moment is None:
        return None
    return Reading(low=moment - received, high=moment + DATE_RESOLUTION - sent)


@attrs.define
class ServerClock:
    """What is known of the server's clock: bounds on its offset from ours.

    Before any reading the clocks are assumed to agree (offset 0).
    """

    bounds: Reading | None = None
    readings: int = 0
    """How many readings were taken."""

    def observe(self, reading: Reading | None) -> None:
        """Narrow the bounds by *reading*, or restart from it if it disagrees with them."""
        if reading is None:
            return
        self.readings += 1
        known = self.bounds
        if known is not None:
            low, high = max(known.low, reading.low), min(known.high, reading.high)
            if low <= high:
                self.bounds = Reading(low=low, high=high)
                return
        self.bounds = reading

    @property
    def offset(self) -> float:
        """Seconds to add to a local time for the server's (the upper bound; 0 unknown)."""
        return self.bounds.high if self.bounds is not None else 0.0

    def now(self, local: float) -> float:
        """The server's latest possible time at local time *local* (epoch seconds)."""
        return local + self.offset
