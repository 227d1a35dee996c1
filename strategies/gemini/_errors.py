"""How the google-genai SDK's exceptions map onto the engine's outcomes.

The rules run in a fixed order so the specific ones win over the general ones:

1. cache gone -> RESOURCE_LOST: the Developer API's 403 ``CachedContent not found``;
   Vertex AI's 404 ``NOT_FOUND`` for a request that named a cache (``Not found: cached
   content metadata for N.``, ``Cached content N is not found.``) and its 400s
   ``Cache content N is expired.`` and ``Invalid resource state for cache content N.``
   (:func:`cache_gone`: status first, then which request named the cache, wording last)
2. a failure of the run, not of the item (:func:`run_failure`) -> STOP_RUN: the key
   rejected (400 ``API_KEY_INVALID``, 401), any other 403 (permission, billing, a
   blocked or suspended key), 400 ``FAILED_PRECONDITION`` (location or billing), 404 for
   the model, a 429 whose ``QuotaFailure`` names a per-day quota or a quota of 0
   or that says a spending cap is reached or prepaid credits are spent, and Google Cloud
   credentials that cannot be found or refreshed (Vertex AI)
3. 429 -> RATE_LIMITED, with the server's ``RetryInfo.retryDelay`` or ``Retry-After`` as the wait
4. 408 / 5xx, timeouts, dropped connections, a body that is not JSON -> TRANSIENT; a 5xx
   carrying ``RetryInfo`` or ``Retry-After`` waits that long, as a 429 does
5. any other 4xx -> FATAL

A request sent on the ``flex`` tier meets one rule before these, applied by the strategy,
which alone knows the tier it asked for (:func:`flex_shed`): a 503, or a 429 that names no
quota of the project, is the service shedding best-effort load -> SHED (``stagedretry.Shed``,
not billed; the stage's ``on.shed`` decides where the item goes).  A Flex request that times
out stays TRANSIENT: nothing tells that it was not served and billed.

The wire bodies behind rule 2, with their sources, are in ``docs/reference/gemini.md``.

A truncated answer (``MAX_TOKENS``) or answer text that is not JSON is not an
exception at all: it comes back as text and fails validation, which the engine
records as INVALID.  Every message built here is cut short and masked: the
keys given (:class:`stagedretry.Secrets`, any case, any piece) and anything
shaped like a Gemini key (``AIza`` and 20 more key characters, in any case) or
written as one (``key=...``, ``x-goog-api-key: ...``), and OAuth 2 access tokens
(``Bearer ...``, ``ya29.``...).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from google.genai import errors

from stagedretry import Outcome, OutcomeKind, ResourceLost, Rule, Secrets, Shed, retry_after

from ..quota import describe_reset

__all__ = [
    "cache_gone",
    "cache_lost",
    "cache_too_small",
    "classify",
    "flex_shed",
    "gemini_rules",
    "redact",
    "retry_delay",
    "run_failure",
]

# Matched in any case, with the cache named by id or full name ("Cache content N is
# expired.", "Cached content projects/.../cachedContents/N is expired."): the wording is
# what decides a 400 or a 403, so a variant must not turn a lost cache into a failure.
_EXPIRED: Final = re.compile(r"\bcached? ?content\s+\S+\s+is expired", re.IGNORECASE)
_NOT_FOUND: Final = re.compile(r"\bcached? ?content not found", re.IGNORECASE)
# Vertex AI's 400 for a cache caught between expiry and deletion (Recidiviz/recidiviz-data).
_STALE: Final = re.compile(r"Invalid resource state for cache content", re.IGNORECASE)
# Vertex AI names a cache "cached content" or "cache content" in its 404s.
_NAMES_CACHE: Final = re.compile(r"\bcached? ?content\b", re.IGNORECASE)
_TOO_SMALL: Final = (
    # The Developer API: "Cached content is too small. total_token_count=896,
    # min_total_token_count=1024".
    re.compile(r"total_token_count=(\d+), min_total_token_count=(\d+)"),
    # Vertex AI: "The cached content is of 94 tokens. The minimum token count to start
    # caching is 1024."
    re.compile(r"cached content is of (\d+) tokens.*minimum token count to start caching is (\d+)"),
)
_TOO_SMALL_WORDS: Final = re.compile(
    r"Cached content is too small|minimum token count to start caching", re.IGNORECASE
)
_TRANSIENT_CODES: Final = frozenset({408, 500, 502, 503, 504})
_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)s\s*$")
_RETRY_IN: Final = re.compile(r"retry in (\d+(?:\.\d+)?)\s*s\b", re.IGNORECASE)
_MARK: Final = "[redacted]"
_KEY_PATTERNS: Final = (
    re.compile(r"(?i)AIza[0-9a-z_\-]{20,}"),
    re.compile(r"(?i)(key=)[^&\s'\"]+"),
    re.compile(r"(?i)(x-goog-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
    # OAuth 2 access tokens (Vertex AI): a bearer header, and Google's own token shape.
    re.compile(r"(?i)(bearer\s+)[^\s'\",}]+"),
    re.compile(r"ya29\.[0-9A-Za-z_\-.]+"),
)
_MESSAGE_LIMIT: Final = 300
_BAD_KEY: Final = re.compile(r"API key not (?:valid|found)", re.IGNORECASE)
# "models/x is not found for API version ...", Vertex's "Publisher Model `...` was not found or
# your project does not have access to it." and its older "Publisher Model `...` not found.".
_MODEL_NOT_FOUND: Final = re.compile(r"\bmodels?\b.*\bnot found", re.IGNORECASE)
_BILLING: Final = re.compile(r"billing", re.IGNORECASE)
# A quota that refills only the next day: no wait within a run brings it back.
# Matched in a quotaId ("...PerDay...") or, when a violation has none, a quotaMetric
# ("..._per_day").
_PER_DAY: Final = re.compile(r"PerDay|per[ _]day|daily", re.IGNORECASE)
_TOKENS: Final = re.compile(r"Tokens?", re.IGNORECASE)
# 429s about money, in the service's words (sources in docs/reference/gemini.md): no wait
# within a run brings the money back.
_SPEND_CAP: Final = re.compile(r"exceeded its (?:monthly )?spending cap", re.IGNORECASE)
_PREPAY: Final = re.compile(r"prepayment credits are depleted", re.IGNORECASE)


def redact(text: str, secrets: Secrets | None = None) -> str:
    """*text* with API keys (*secrets*, and anything shaped like a key) masked."""
    if secrets is not None:
        text = secrets.text(text)
    for pattern in _KEY_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + _MARK, text)
    return text


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _api_message(exc: errors.APIError) -> str:
    message = exc.message if isinstance(exc.message, str) else ""
    status = f" {exc.status}" if exc.status else ""
    return redact(_short(f"{exc.code}{status}: {message}" if message else f"{exc.code}{status}"))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return redact(_short(f"{name}: {text}" if text else name))


def cache_gone(exc: BaseException, *, named_cache: bool = False) -> bool:
    """Whether *exc* says the context cache named by the request no longer exists.

    By status first: a 404 ``NOT_FOUND`` (Vertex AI's answer for a deleted cache) is the
    cache's when the failed request named one (*named_cache*: a ``generateContent`` with
    ``cached_content``, or a get, update or delete of the cache) and does not say a model
    is missing; without that knowledge, when its message names a cached content.  A 403
    (the Developer API's answer) and a 400 (Vertex's for an expired cache) mean many
    other things, so for them the wording decides.  The wordings, with their sources, are
    in ``docs/reference/gemini.md``.
    """
    if not isinstance(exc, errors.APIError):
        return False
    message = exc.message if isinstance(exc.message, str) else ""
    if exc.code == 404 and exc.status in (None, "NOT_FOUND"):
        if _MODEL_NOT_FOUND.search(message):
            return False
        return named_cache or _NAMES_CACHE.search(message) is not None
    if exc.code == 403:
        return _NOT_FOUND.search(message) is not None
    if exc.code == 400:
        return _EXPIRED.search(message) is not None or _STALE.search(message) is not None
    return False


def cache_lost(
    exc: errors.APIError, *, resource: str | None, secrets: Secrets | None = None
) -> ResourceLost:
    """The engine's RESOURCE_LOST for *exc*, an answer that the cache a request named is gone.

    Raised by the strategy ``from`` *exc* when it knows its request named the cache
    (what :func:`cache_gone` calls *named_cache*); *resource* is the cache to renew.
    """
    return ResourceLost(redact(_api_message(exc), secrets), resource=resource)


def cache_too_small(exc: BaseException) -> tuple[int | None, int | None] | None:
    """``(tokens, minimum)`` when *exc* refuses to create a cache below the model's minimum
    size (either may be ``None`` if the message leaves it out), else ``None``.

    A 400 ``INVALID_ARGUMENT`` to ``caches.create`` in the words of the Developer
    API or of Vertex AI (see ``docs/reference/gemini.md``).
    """
    if not isinstance(exc, errors.APIError) or exc.code != 400:
        return None
    if exc.status not in (None, "INVALID_ARGUMENT"):
        return None
    message = exc.message if isinstance(exc.message, str) else ""
    if not _TOO_SMALL_WORDS.search(message):
        return None
    for pattern in _TOO_SMALL:
        match = pattern.search(message)
        if match is not None:
            return int(match.group(1)), int(match.group(2))
    return None, None


def parse_duration(text: object) -> float | None:
    """Seconds in a protobuf Duration string such as ``"17s"`` or ``"1.5s"`` (else ``None``)."""
    if not isinstance(text, str):
        return None
    match = _DURATION.match(text)
    return float(match.group(1)) if match else None


def _error_details(body: Any) -> Iterator[Mapping[str, Any]]:
    """The ``error.details`` entries of an error body (``e.details`` is the whole body)."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, Mapping):
        return
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, Mapping) else None
    if isinstance(details, list):
        yield from (d for d in details if isinstance(d, Mapping))


def retry_delay(exc: errors.APIError, *, now: Callable[[], float] = time.time) -> float | None:
    """The wait an error asks for: ``RetryInfo.retryDelay``, else ``Retry-After``, else the message.

    ``None`` when the server gave no advice (the engine then backs off on its own).
    """
    for detail in _error_details(exc.details):
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            seconds = parse_duration(detail.get("retryDelay"))
            if seconds is not None:
                return seconds
    # The engine's reader of HTTP advice: retry-after-ms, Retry-After in seconds or as a date.
    seconds = retry_after(exc, now=now)
    if seconds is not None:
        return seconds
    match = _RETRY_IN.search(exc.message or "") if isinstance(exc.message, str) else None
    return float(match.group(1)) if match else None


def _reasons(exc: errors.APIError) -> list[str]:
    """The ``ErrorInfo.reason`` of each detail of an error body (``API_KEY_INVALID``, ...)."""
    return [
        str(d["reason"])
        for d in _error_details(exc.details)
        if str(d.get("@type", "")).endswith("google.rpc.ErrorInfo") and d.get("reason")
    ]


def _daily_quota(exc: errors.APIError, now: float) -> str | None:
    """Which quota a 429 names that waiting cannot fix within a run (per day, or of size 0),
    and when it resets, in a few words; ``None`` when it names none."""
    for detail in _error_details(exc.details):
        if not str(detail.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            continue
        violations = detail.get("violations")
        for violation in violations if isinstance(violations, list) else ():
            if not isinstance(violation, Mapping):
                continue
            quota = str(violation.get("quotaId") or violation.get("quotaMetric") or "")
            named = f"{violation.get('quotaId') or ''} {violation.get('quotaMetric') or ''}"
            value = str(violation.get("quotaValue", ""))
            dimensions = violation.get("quotaDimensions")
            model = dimensions.get("model") if isinstance(dimensions, Mapping) else None
            of = f" of {model}" if isinstance(model, str) and model else ""
            if value == "0":
                return (
                    f"the quota {quota or 'named'}{of} is 0 on this project's tier: it does "
                    "not reset; use another model or tier"
                )
            if _PER_DAY.search(named):
                what = "input tokens per day" if _TOKENS.search(quota) else "requests per day"
                limit = f", {int(value):,}" if value.isascii() and value.isdigit() else ""
                return (
                    f"the {what} quota{of} ({quota}{limit}) is spent; it resets "
                    f"{describe_reset(now)}"
                )
    return None


def _spend_cap(exc: errors.APIError) -> str | None:
    """What a 429 about money says, in a few words: a spend cap reached, prepaid credit spent."""
    message = exc.message if isinstance(exc.message, str) else ""
    if _SPEND_CAP.search(message):
        return (
            "the billing account's monthly spending cap is reached: raise it in AI Studio, "
            "or wait for the next billing month"
        )
    if _PREPAY.search(message):
        return "the project's prepaid credits are spent: add funds in AI Studio"
    return None


def _names_quota(exc: errors.APIError) -> bool:
    """Whether an error body carries a ``QuotaFailure``: a limit of the project, not load."""
    return any(
        str(d.get("@type", "")).endswith("google.rpc.QuotaFailure")
        for d in _error_details(exc.details)
    )


def flex_shed(exc: BaseException, secrets: Secrets | None = None) -> Shed | None:
    """The :class:`~stagedretry.Shed` for *exc*, the answer to a request sent on the flex tier,
    when it says the service shed it; else ``None`` (the ordinary rules then apply).

    The flex-inference page lists two answers when "Flex capacity is unavailable or the
    system is congested": 503 Service Unavailable (at capacity) and 429 (resources
    exhausted).  So a 503 is a shed, and so is a 429 that neither stops the run (a per-day
    quota, a spend cap) nor names a ``QuotaFailure`` (the project's own rate limit, which
    Flex shares with standard: a fallback would not help, so it stays RATE_LIMITED).
    The server's ``RetryInfo`` or ``Retry-After``, if any, becomes ``retry_after``.
    Sources in ``docs/reference/gemini.md`` ("Service tiers").
    """
    if not isinstance(exc, errors.APIError):
        return None
    if exc.code == 503 or (exc.code == 429 and run_failure(exc) is None and not _names_quota(exc)):
        return Shed(redact(_api_message(exc), secrets), retry_after=retry_delay(exc))
    return None


def run_failure(exc: BaseException, *, now: Callable[[], float] = time.time) -> str | None:
    """Why *exc* stops the whole run (what to fix, in a few words), or ``None`` if it does not.

    A failure belongs to the run when no item can mend it and every later
    request would meet it: the API key rejected, the project without permission
    or billing, the model not found, a per-day quota spent (the words say which,
    and when it resets: midnight Pacific time, read on *now*, the wall clock), a
    spending cap reached or prepaid credits spent.  A missing or expired context
    cache is the item's resource, renewed: never a stop.
    """
    credentials = _credentials_failure(exc)
    if credentials is not None:
        return credentials
    if not isinstance(exc, errors.APIError) or cache_gone(exc):
        return None
    code = exc.code
    message = exc.message if isinstance(exc.message, str) else ""
    reasons = _reasons(exc)
    tag = f" ({', '.join(reasons)})" if reasons else ""
    if code == 401:
        return f"the credentials were not accepted{tag}"
    if code == 400 and ("API_KEY_INVALID" in reasons or _BAD_KEY.search(message)):
        return f"the API key was rejected{tag}"
    if code == 403 or (code == 400 and exc.status == "FAILED_PRECONDITION"):
        if "BILLING_DISABLED" in reasons or _BILLING.search(message):
            return f"billing is not enabled for the key's project{tag}"
        if code == 400:
            return f"the account cannot use the API from here{tag}"
        return f"the key or its project has no permission{tag}"
    if code == 404 and _MODEL_NOT_FOUND.search(message):
        return "the model was not found"
    if code == 429:
        quota = _daily_quota(exc, now())
        if quota is not None:
            return f"a quota that waiting cannot refill is spent: {quota}"
        money = _spend_cap(exc)
        if money is not None:
            return money
    return None


def _credentials_failure(exc: BaseException) -> str | None:
    """Why Google Cloud credentials (Vertex AI) fail every request, or ``None``.

    google-auth raises before any request is sent: no credentials found, or a token
    that cannot be refreshed (unless it says a retry may help).
    """
    try:
        from google.auth import exceptions as auth_exceptions
    except ImportError:  # pragma: no cover - google-auth is a dependency of the SDK
        return None
    if isinstance(exc, auth_exceptions.DefaultCredentialsError):
        return (
            "no Google Cloud credentials were found (Application Default Credentials: "
            "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS)"
        )
    if isinstance(exc, auth_exceptions.RefreshError) and not getattr(exc, "retryable", False):
        return "the Google Cloud credentials could not be refreshed into an access token"
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The transport exceptions of every HTTP stack the SDK may use (those installed)."""
    found: list[type[BaseException]] = [TimeoutError, asyncio.TimeoutError, ConnectionError]
    import httpx2

    found += [httpx2.TransportError, httpx2.DecodingError]
    try:
        from google.auth import exceptions as auth_exceptions
    except ImportError:  # pragma: no cover - google-auth is a dependency of the SDK
        pass
    else:
        # A refresh that failed but says a retry may help; the others stop the run first.
        found += [auth_exceptions.TransportError, auth_exceptions.RefreshError]
    try:
        import aiohttp
    except ImportError:
        pass
    else:
        found.append(aiohttp.ClientError)
    return tuple(found)


def _config_errors() -> tuple[type[BaseException], ...]:
    """Transport exceptions that are a mistake in the setup, not a passing fault."""
    try:
        import aiohttp
    except ImportError:
        return ()
    return (aiohttp.InvalidURL,)


_TRANSPORT: Final = _transport_errors()
_CONFIG: Final = _config_errors()


def classify(exc: BaseException, *, resource: str | None = None) -> Outcome | None:
    """The Gemini verdict on *exc*, or ``None`` to leave it to the engine's defaults.

    *resource* names the shared cache a RESOURCE_LOST outcome should renew
    (``None``: every shared resource of the runner).
    """
    cause = run_failure(exc)
    if cause is not None and not isinstance(exc, errors.APIError):
        return Outcome(OutcomeKind.STOP_RUN, f"{cause}: {_describe(exc)}")
    if isinstance(exc, errors.APIError):
        code = exc.code
        if cache_gone(exc):
            return Outcome(OutcomeKind.RESOURCE_LOST, _api_message(exc), resource=resource)
        cause = run_failure(exc)
        if cause is not None and code == 429:
            # The cause says all (which quota, when it resets, or which money limit): the
            # server's quota message would add "Please retry in Ns.", which a stop contradicts.
            status = f" {exc.status}" if exc.status else ""
            return Outcome(OutcomeKind.STOP_RUN, f"{cause} ({code}{status})")
        if cause is not None:
            return Outcome(OutcomeKind.STOP_RUN, f"{cause}: {_api_message(exc)}")
        if code == 429:
            return Outcome(
                OutcomeKind.RATE_LIMITED, _api_message(exc), retry_after=retry_delay(exc)
            )
        if code in _TRANSIENT_CODES or (500 <= code <= 599 and code != 501):
            # A 503 may say when to come back (RetryInfo, Retry-After), as a 429 does.
            return Outcome(OutcomeKind.TRANSIENT, _api_message(exc), retry_after=retry_delay(exc))
        if 400 <= code <= 499 or code == 501:
            return Outcome(OutcomeKind.FATAL, _api_message(exc))
        # An odd status (201, 204, 3xx) where only 200 means success: a garbled answer.
        return Outcome(OutcomeKind.TRANSIENT, _api_message(exc))
    if _CONFIG and isinstance(exc, _CONFIG):
        return Outcome(OutcomeKind.FATAL, _describe(exc))
    if isinstance(exc, _TRANSPORT):
        return Outcome(OutcomeKind.TRANSIENT, _describe(exc))
    if isinstance(exc, json.JSONDecodeError):
        # A 200 whose body is not JSON (aiohttp raises the decoder's error as is).
        return Outcome(OutcomeKind.TRANSIENT, f"the response body is not JSON: {_describe(exc)}")
    return None


class GeminiRules(tuple[Rule, ...]):
    """The Gemini rules in their order, usable as ``rules=gemini_rules`` or as one rule.

    Iterating gives the individual rules; calling it runs them in order and
    returns the first verdict.
    """

    __slots__ = ()

    def __call__(self, exc: BaseException) -> Outcome | None:
        for rule in self:
            outcome = rule(exc)
            if outcome is not None:
                return outcome
        return None

    def __repr__(self) -> str:
        return "gemini_rules"


def _cache_rule(exc: BaseException) -> Outcome | None:
    return classify(exc) if cache_gone(exc) else None


def _run_rule(exc: BaseException) -> Outcome | None:
    return classify(exc) if run_failure(exc) is not None else None


def _rate_limit_rule(exc: BaseException) -> Outcome | None:
    if isinstance(exc, errors.APIError) and exc.code == 429:
        return classify(exc)
    return None


def _general_rule(exc: BaseException) -> Outcome | None:
    return classify(exc)


gemini_rules: Final = GeminiRules((_cache_rule, _run_rule, _rate_limit_rule, _general_rule))
"""The Gemini classifier rules: cache gone, a failure of the run, 429, then by status and type."""
