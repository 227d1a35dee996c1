"""Fault injection: declarative rules and the deterministic book that decides when they fire."""

from __future__ import annotations

import enum
import hashlib
import threading
from collections import Counter

import attrs

DEEP: int = 100_000
"""How many arrays deep the ``deep_json`` and ``deep_answer`` faults nest."""


class FaultKind(enum.Enum):
    """What an injected fault does to the request it hits."""

    RATE_LIMIT = "rate_limit"
    """429 RESOURCE_EXHAUSTED with QuotaFailure, Help and RetryInfo details."""
    INTERNAL = "internal"
    """500 INTERNAL."""
    UNAVAILABLE = "unavailable"
    """503 UNAVAILABLE, "The model is overloaded" (with RetryInfo if ``retry_delay`` is set)."""
    BAD_GATEWAY = "bad_gateway"
    """502 with a ``text/html`` body, as a Google front end sends it."""
    ECHO_KEY = "echo_key"
    """400 INVALID_ARGUMENT quoting the request's API key, as a careless gateway might.

    The message holds the key upper-cased; a ``DebugInfo`` detail holds a lower-cased
    piece of it (the key without its first 6 and last 2 characters) and the whole key
    percent-encoded.  The SDK's ``APIError.message`` is the message; its ``str()``
    shows the details too.  For testing that no form of the key is written anywhere.
    """
    SLOW = "slow"
    """Answer normally after ``delay`` real seconds."""
    HANG = "hang"
    """Never answer, until the client disconnects or the emulator stops."""
    TRUNCATED_JSON = "truncated_json"
    """200 with a JSON content type and the body cut in half."""
    NOT_JSON = "not_json"
    """200 with a ``text/html`` body."""
    DEEP_JSON = "deep_json"
    """200 whose JSON body carries an extra value nested 100,000 arrays deep."""
    CACHE_DROPPED = "cache_dropped"
    """Delete the request's cache server-side, then handle the request normally."""
    BLOCKED_PROMPT = "blocked_prompt"
    """200 with ``promptFeedback.blockReason`` SAFETY and no candidates."""
    SAFETY_STOP = "safety_stop"
    """200 with a candidate stopped for SAFETY, carrying no content."""
    SAFETY_STOP_BY_SEVERITY = "safety_stop_by_severity"
    """As SAFETY_STOP, the flagged rating ``blocked`` with a ``severity`` and no ``probability``."""
    MAX_TOKENS = "max_tokens"
    """200 with the answer cut to half its tokens and ``finishReason`` MAX_TOKENS."""
    UNKNOWN_ENUM = "unknown_enum"
    """200 with ``finishReason`` "BRAND_NEW_REASON", a value the SDK does not know."""
    DEEP_ANSWER = "deep_answer"
    """200 whose answer text is a JSON object holding arrays nested 100,000 deep."""
    NO_CANDIDATES = "no_candidates"
    """200 with only ``usageMetadata``."""
    KEY_BLOCKED = "key_blocked"
    """403 PERMISSION_DENIED, ``ErrorInfo`` reason ``API_KEY_SERVICE_BLOCKED``: the key may not call
    this API (continuedev/continue#12781)."""
    BILLING_DISABLED = "billing_disabled"
    """403 PERMISSION_DENIED "This API method requires billing to be enabled...", ``ErrorInfo``
    reason ``BILLING_DISABLED`` (the message as in pgmichael/wavenet-for-chrome#83)."""
    NO_BILLING_ACCOUNT = "no_billing_account"
    """400 FAILED_PRECONDITION "User location is not supported for the API use without a billing
    account linked." (google-gemini/cookbook#135)."""
    UNAUTHENTICATED = "unauthenticated"
    """401 UNAUTHENTICATED "Request had invalid authentication credentials..."
    (google-gemini/gemini-cli#29275)."""
    DAILY_QUOTA = "daily_quota"
    """429 RESOURCE_EXHAUSTED whose QuotaFailure names the quota
    ``GenerateRequestsPerDayPerProjectPerModel-FreeTier``, with Help and, as seen in the
    wild, a RetryInfo of ``retry_delay`` (googleapis/python-genai#2044)."""
    SPEND_CAP = "spend_cap"
    """429 RESOURCE_EXHAUSTED "Your billing account has exceeded its monthly spending cap. ...",
    with no details (the wording as reported: help.apiyi.com, 2026)."""
    PREPAY_DEPLETED = "prepay_depleted"
    """429 RESOURCE_EXHAUSTED "Your prepayment credits are depleted. ...", with no details
    (discuss.ai.google.dev threads 169215 and 170539)."""
    USAGE_DETAILS_ONLY = "usage_details_only"
    """200 whose ``usageMetadata`` gives prompt, candidates and cached tokens per modality only.

    ``promptTokenCount``, ``candidatesTokenCount`` and ``cachedContentTokenCount`` are left
    out; ``promptTokensDetails``, ``candidatesTokensDetails`` and ``cacheTokensDetails`` carry
    the same numbers broken down by modality (``totalTokenCount`` stays).
    """
    BATCH_FAILED = "batch_failed"
    """A batch job ends ``BATCH_STATE_FAILED`` at its completion time with only the first half
    of its requests answered (route ``batchGenerateContent``: drawn when the job is created)."""
    BATCH_EXPIRED = "batch_expired"
    """A batch job ends ``BATCH_STATE_EXPIRED`` at its completion time with only the first half
    of its requests answered (route ``batchGenerateContent``)."""


CONTENT_FAULTS = frozenset(
    {
        FaultKind.BLOCKED_PROMPT,
        FaultKind.SAFETY_STOP,
        FaultKind.SAFETY_STOP_BY_SEVERITY,
        FaultKind.MAX_TOKENS,
        FaultKind.UNKNOWN_ENUM,
        FaultKind.DEEP_ANSWER,
        FaultKind.NO_CANDIDATES,
        FaultKind.USAGE_DETAILS_ONLY,
    }
)
"""Kinds that shape a generateContent answer; they never fire on other routes."""

JOB_FAULTS = frozenset({FaultKind.BATCH_FAILED, FaultKind.BATCH_EXPIRED})
"""Kinds that decide how a batch job ends; they fire only on a ``batchGenerateContent``."""

ROUTES = frozenset(
    {"generateContent", "cachedContents", "batchGenerateContent", "batches", "files", "*"}
)


def _check_rate(
    instance: Fault, attribute: attrs.Attribute[float | None], value: float | None
) -> None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be in [0, 1], got {value!r}")


def _check_route(instance: Fault, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ROUTES:
        raise ValueError(f"route must be one of {sorted(ROUTES)}, got {value!r}")


def _to_schedule(value: object) -> frozenset[int] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return frozenset({value})
    if not isinstance(value, (set, frozenset, list, tuple, range)):
        raise TypeError(f"at must be a set of 1-based request indices, got {value!r}")
    return frozenset(int(index) for index in value)


def _default_route(fault: Fault) -> str:
    return "batchGenerateContent" if fault.kind in JOB_FAULTS else "generateContent"


def _default_retry_delay(fault: Fault) -> float | None:
    return 2.0 if fault.kind in (FaultKind.RATE_LIMIT, FaultKind.DAILY_QUOTA) else None


@attrs.frozen(kw_only=True)
class Fault:
    """One fault rule.

    With neither ``rate`` nor ``at`` the fault hits every matching request; with ``at`` only
    the listed 1-based indices (counted over requests this rule matches); with ``rate`` each
    candidate request is hit with that probability; with both, a request must be scheduled
    *and* win the draw. ``times`` caps how often it fires in total.

    The draw is a hash of the emulator's seed, the rule's position, the request (its route
    and body) and how many times this rule has seen that same request before, so it does not
    depend on the order in which concurrent requests arrive: a seeded run meets the same
    faults every time (``at`` and ``times`` count in arrival order, as documented).
    """

    kind: FaultKind = attrs.field(validator=attrs.validators.instance_of(FaultKind))
    rate: float | None = attrs.field(default=None, validator=_check_rate)
    at: frozenset[int] | None = attrs.field(default=None, converter=_to_schedule)
    times: int | None = attrs.field(default=None)
    route: str = attrs.field(
        default=attrs.Factory(_default_route, takes_self=True), validator=_check_route
    )
    """The requests it matches (see ``ROUTES``); default ``batchGenerateContent`` for a job
    fault (the only route it fires on), else ``generateContent``."""
    retry_delay: float | None = attrs.field(
        default=attrs.Factory(_default_retry_delay, takes_self=True)
    )
    """RATE_LIMIT, UNAVAILABLE: seconds sent as RetryInfo ``retryDelay``; None sends no RetryInfo.

    Default 2 s for RATE_LIMIT (most 429s carry it) and none for UNAVAILABLE (most 503s do not).
    """
    retry_after_header: bool = False
    """RATE_LIMIT, UNAVAILABLE: also send a ``Retry-After`` header (whole seconds, rounded up)."""
    delay: float = 1.0
    """SLOW: real seconds to wait before answering."""


@attrs.define
class _Rule:
    fault: Fault
    salt: bytes
    """The seed and the rule's position: what makes this rule's draws its own."""
    seen: int = 0
    fired: int = 0
    repeats: Counter[bytes] = attrs.field(factory=Counter)
    """How many times this rule has seen each request (by digest)."""

    def draw(self, request: bytes) -> float:
        """A number in [0, 1) for this sighting of *request*: the same in every run."""
        digest = hashlib.blake2b(request, digest_size=16).digest()
        self.repeats[digest] += 1
        key = self.salt + digest + self.repeats[digest].to_bytes(8, "big")
        return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64


class FaultBook:
    """The injected rules, consulted in order of injection; thread-safe and deterministic.

    Every rule counts every request it matches (so ``at`` indices do not depend on other
    rules); the first rule that decides to fire wins and only it spends one of its ``times``.
    """

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._rules: list[_Rule] = []
        self._added = 0
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        """Append a rule; its draws are keyed by the emulator seed and the rule's position."""
        with self._lock:
            self._added += 1
            self._rules.append(_Rule(fault, f"{self._seed}:{self._added}:".encode()))

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def pick(self, family: str, request: bytes = b"") -> Fault | None:
        """Return the fault that hits this request of route ``family``, if any.

        *request* identifies the request (its method, path and body): a ``rate`` draw
        depends on it and on how often the rule has seen it, not on the arrival order.
        """
        with self._lock:
            chosen: Fault | None = None
            for rule in self._rules:
                fault = rule.fault
                if fault.route not in ("*", family):
                    continue
                if fault.kind in CONTENT_FAULTS and family != "generateContent":
                    continue
                if fault.kind in JOB_FAULTS and family != "batchGenerateContent":
                    continue
                rule.seen += 1
                if chosen is not None:
                    continue
                if fault.times is not None and rule.fired >= fault.times:
                    continue
                if fault.at is not None and rule.seen not in fault.at:
                    continue
                if fault.rate is not None and rule.draw(request) >= fault.rate:
                    continue
                rule.fired += 1
                chosen = fault
            return chosen
