"""Reading the errors of any HTTP stack, without importing one.

Nearly every LLM client is built on httpx (or its fork httpx2), aiohttp or
requests, and the SDKs on top (OpenAI's, Anthropic's, google-genai) raise
errors that carry an HTTP status.  The engine's default rules read them here,
structured fields first:

1. a status: ``status_code`` or ``status`` on the error or on its ``response``
   (``httpx.HTTPStatusError``, ``aiohttp.ClientResponseError``, the SDKs' status
   errors), with the server's ``Retry-After`` from the same headers;
2. the class: a transport error of a known HTTP stack, recognised by the
   top-level module and the name of each class in its MRO, so that nothing
   optional is imported and a subclass is recognised as its base;
3. the OS: socket errors (``ConnectionError``, ``TimeoutError``, name
   resolution, a network ``errno``);
4. the explicit cause (``raise SDKError(...) from httpx_error``): an SDK that
   wraps a transport error is as transient as the error it wraps.

Nothing here reads an error's wording.
"""

from __future__ import annotations

import asyncio
import email.utils
import enum
import errno
import socket
import ssl
import time
from collections.abc import Callable
from typing import Final


class Verdict(enum.Enum):
    """What a transport-level error says about sending the request again."""

    TRANSIENT = "transient"
    FATAL = "fatal"


_T: Final = Verdict.TRANSIENT
_F: Final = Verdict.FATAL

_HTTPX: Final = {
    # A request the client itself cannot send is a mistake in the setup, not a blip.
    "UnsupportedProtocol": _F,
    "LocalProtocolError": _F,
    "TransportError": _T,  # timeouts, network, remote protocol and proxy errors
    "DecodingError": _T,  # a malformed body
}

#: Per HTTP stack (top-level module), what each exception class named in an MRO means.  The
#: most derived class listed wins, so an exception to a family is listed beside the family.
_STACKS: Final[dict[str, dict[str, Verdict]]] = {
    "httpx": _HTTPX,
    "httpx2": _HTTPX,
    "aiohttp": {
        "InvalidURL": _F,
        "ClientConnectorCertificateError": _F,  # a certificate will not verify next time either
        "ServerFingerprintMismatch": _F,
        "TooManyRedirects": _F,
        "ClientConnectionError": _T,  # disconnects, resets, timeouts, refused connections
        "ClientPayloadError": _T,  # a body cut short or badly encoded
        "ContentTypeError": _T,  # a body that is not what the API sends
    },
    "requests": {
        "ConnectionError": _T,
        "Timeout": _T,
        "ChunkedEncodingError": _T,
        "ContentDecodingError": _T,
    },
}

#: ``errno`` values of an ``OSError`` that say the network failed, not the program.
_NETWORK_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNRESET",
        "ECONNREFUSED",
        "ECONNABORTED",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "EPIPE",
    )
    if hasattr(errno, name)
)

_OS_TRANSIENT: Final = (
    TimeoutError,
    asyncio.TimeoutError,
    ConnectionError,
    socket.gaierror,  # name resolution: a resolver hiccup as often as a typo
    socket.herror,
    asyncio.IncompleteReadError,  # the peer closed mid-answer
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
    ssl.SSLSyscallError,
)

#: How many explicit causes are followed (a chain is short; a cycle must not loop).
_CAUSE_DEPTH: Final = 4


def _attr(obj: object, name: str) -> object:
    # A foreign object's property may raise anything: that only means "not there".
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _code(value: object) -> int | None:
    # ``status`` is a string on some errors ("UNAVAILABLE"), and a bool is an int.
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status *exc* carries (on itself or on its ``response``), else ``None``."""
    for holder in (exc, _attr(exc, "response")):
        if holder is None:
            continue
        for name in ("status_code", "status"):
            code = _code(_attr(holder, name))
            if code is not None:
                return code
    return None


def _header(exc: BaseException, name: str) -> str | None:
    for holder in (exc, _attr(exc, "response")):
        headers = _attr(holder, "headers") if holder is not None else None
        if headers is None:
            continue
        get = _attr(headers, "get")
        if not callable(get):
            continue
        try:
            # httpx, aiohttp and requests headers are case-insensitive; a plain dict is not.
            value = get(name) or get(name.title())
        except Exception:  # a foreign mapping that will not be read: no advice
            value = None
        if isinstance(value, str):
            return value
    return None


def retry_after(exc: BaseException, *, now: Callable[[], float] = time.time) -> float | None:
    """The server's advised wait in seconds, from the headers *exc* carries, else ``None``.

    ``retry-after-ms`` (OpenAI's and Anthropic's APIs) is read first, then
    ``Retry-After`` as seconds or as an HTTP-date.  A date is measured against
    the response's own ``Date`` header when it has one (the server's clock, not
    this machine's), else against *now*.
    """
    millis = _header(exc, "retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = _header(exc, "retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    moment = _http_date(value)
    if moment is None:
        return None
    date = _header(exc, "date")
    served = _http_date(date) if date is not None else None
    return max(0.0, moment - (served if served is not None else now()))


def _http_date(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _by_class(exc: BaseException) -> Verdict | None:
    for cls in type(exc).__mro__:
        table = _STACKS.get(cls.__module__.partition(".")[0])
        if table is not None:
            verdict = table.get(cls.__name__)
            if verdict is not None:
                return verdict
    return None


def _by_os(exc: BaseException) -> Verdict | None:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return _F
    if isinstance(exc, _OS_TRANSIENT):
        return _T
    if isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS:
        return _T
    return None


def transport_verdict(exc: BaseException) -> Verdict | None:
    """Whether *exc* is a transport error worth a retry, one that is not, or neither (``None``).

    The first of *exc* and its explicit causes that is known decides.
    """
    seen: BaseException | None = exc
    for _ in range(_CAUSE_DEPTH):
        if seen is None:
            return None
        verdict = _by_class(seen) or _by_os(seen)
        if verdict is not None:
            return verdict
        seen = seen.__cause__
    return None
