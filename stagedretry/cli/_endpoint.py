"""Where the ``caches`` commands talk to, and with which key.

``--base-url`` is an ``http://`` or ``https://`` URL with a host (Google's endpoint when not
given).  An endpoint on this machine's loopback (``127.0.0.0/8``, ``::1``, ``localhost``), such
as the emulator, needs no key: without one in the environment a placeholder is sent, which is
never shown or written.  Google's endpoint, or any other host, needs the user's key.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Final
from urllib.parse import urlsplit

from strategies.gemini._server_clock import from_date

LOOPBACK_KEY: Final = "stagedretry-loopback-placeholder-key"
"""The key sent to a loopback endpoint when the environment holds none: an emulator that wants
no key accepts it, one that wants a key refuses it as it would refuse a wrong one."""


_CACHE_NAME = re.compile(
    r"(?:projects/[A-Za-z0-9._-]+/locations/[A-Za-z0-9._-]+/)?cachedContents/[A-Za-z0-9_-]{1,256}"
)


def cache_name(name: str) -> str | None:
    """The full resource name *name* stands for (an id alone means ``cachedContents/<id>``), or
    ``None`` when it is not a cache's name: an id is letters, digits, ``-`` and ``_``, so an
    empty name, ``..``, a ``?`` or a control character never reaches a URL."""
    full = name if "/" in name else f"cachedContents/{name}"
    return full if _CACHE_NAME.fullmatch(full) else None


def is_loopback(url: str | None) -> bool:
    """Whether *url* names this machine's loopback (``None``, Google's endpoint, does not)."""
    if url is None:
        return False
    host = urlsplit(url).hostname
    if host is None:
        return False
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: resolving it could lead anywhere
        return False


def server_offset(headers: Any, *, sent: float, received: float) -> float | None:
    """Seconds the server's clock is ahead of ours (negative: behind), read from the HTTP
    ``Date`` header in *headers* of an answer to a request sent at local time *sent* and
    answered at *received* (epoch seconds); ``None`` without a readable ``Date``.

    A cache's ``expire_time`` is on the server's clock, so its life left is judged on that
    clock.  The header is read as the cache itself reads it (its bounds on the offset); a
    listing shows the middle of them, good to about half a second.
    """
    reading = from_date(headers, sent=sent, received=received)
    return None if reading is None else (reading.low + reading.high) / 2
