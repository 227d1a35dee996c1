"""What an attempt came to, and how an exception is turned into that.

The exception hierarchy, for strategies and validators that want to say what
went wrong without being classified from the outside::

    StagedRetryError
     ├─ PlanError (also ValueError)        a declared plan or config is wrong
     ├─ RunStopped(batch=)                 the run stopped on a failure of its own,
     │   │                                 not of an item (raised by run() / a stream;
     │   │                                 defined in ``_stop``, beside the results it holds)
     │   ├─ ResourceError                  a shared resource could not be prepared
     │   └─ ItemError(position=)           an item is not one, or repeats an id
     ├─ ValidationFailed                   the answer does not validate        -> INVALID
     └─ AttemptError                       a strategy's verdict on one request
         ├─ TransientError                 timeout, connection, 5xx            -> TRANSIENT
         ├─ RateLimited(retry_after=)      429                                 -> RATE_LIMITED
         ├─ ResourceLost(resource=)        a shared resource vanished          -> RESOURCE_LOST
         ├─ StopRun                        key rejected, billing, no such      -> STOP_RUN
         │                                 model, a quota waiting cannot fix
         └─ FatalError                     bad request, bug                    -> FATAL

Other exceptions are classified by the rules in front (the user's, then the
strategy's), then by the engine's defaults (:func:`default_outcome`): an HTTP
status on the error, a transport error of any HTTP stack or socket, else FATAL.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import TypeAlias

import attrs

from ._describe import without_reprs
from ._http import Verdict, http_status, retry_after, transport_verdict
from ._usage import ResponseMeta, Usage


class OutcomeKind(enum.Enum):
    """The closed set of things one attempt can come to."""

    SUCCEEDED = "succeeded"
    INVALID = "invalid"
    TRANSIENT = "transient"
    RATE_LIMITED = "rate_limited"
    RESOURCE_LOST = "resource_lost"
    FATAL = "fatal"
    #: The failure belongs to the run, not to the item (the key is rejected, billing is
    #: disabled, the model does not exist, a per-day quota is spent): the run stops.
    STOP_RUN = "stop_run"
    #: A best-effort tier (Gemini's Flex) had no capacity for the request and shed it
    #: unserved: not billed, and the stage's ``on.shed`` says where the item goes.
    SHED = "shed"

    @property
    def spends_prompt(self) -> bool:
        """Whether an attempt of this kind counts toward ``max_prompts`` (it may be billed)."""
        return self not in (
            OutcomeKind.RATE_LIMITED,
            OutcomeKind.RESOURCE_LOST,
            OutcomeKind.STOP_RUN,
            OutcomeKind.SHED,
        )


@attrs.frozen
class Outcome:
    """A classified attempt: its kind and what the engine needs to act on it."""

    kind: OutcomeKind
    message: str = ""
    retry_after: float | None = attrs.field(default=None, kw_only=True)
    resource: str | None = attrs.field(default=None, kw_only=True)
    #: ``False`` when no request went out (e.g. a bad request refused before sending):
    #: such an attempt spends no prompt, whatever its kind.
    sent: bool = attrs.field(default=True, kw_only=True)


FieldPath: TypeAlias = tuple[str | int, ...]
"""Where a value sits in an answer: object keys (``str``) and array indexes (``int``).

``()`` is the whole answer.  A path is never a joined string: a key may hold
``.``, ``/``, ``~``, spaces or digits and still name exactly one key."""


def _as_path(value: str | Sequence[str | int]) -> FieldPath:
    # A str is ONE key, never split on dots: "price.usd" is the key "price.usd".
    # "" stays the whole answer, as it was before paths were tuples.
    if isinstance(value, str):
        return (value,) if value else ()
    return tuple(value)


def json_pointer(path: FieldPath) -> str:
    """*path* as an RFC 6901 JSON Pointer: ``("price.usd",)`` -> ``"/price.usd"``, ``()`` -> ``""``.

    For messages, prompts and logs only: the engine itself always carries the tuple.
    """
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class FieldErrorKind(enum.Enum):
    """What is wrong with a field, as far as the engine can act on it."""

    #: The value is wrong or missing: a partial stage re-asks it.
    INVALID = "invalid"
    #: The key is not allowed here (``additionalProperties: false``, pydantic's
    #: ``extra="forbid"``): the engine drops it and validates again, without a request.
    FORBIDDEN = "forbidden"


@attrs.frozen
class FieldError:
    """One field that failed validation.

    *path* is a :data:`FieldPath`; a plain ``str`` is accepted as a path of ONE
    key (``FieldError("price.usd", ...)`` names the key ``"price.usd"``, never
    ``price`` then ``usd``), and ``""`` or ``()`` is the whole answer.
    """

    path: FieldPath = attrs.field(converter=_as_path)
    message: str
    kind: FieldErrorKind = attrs.field(default=FieldErrorKind.INVALID, kw_only=True)

    @property
    def pointer(self) -> str:
        """The path as a JSON Pointer, for display."""
        return json_pointer(self.path)


class StagedRetryError(Exception):
    """Base of every exception this library raises on purpose."""


class PlanError(StagedRetryError, ValueError):
    """A plan or configuration is invalid; the message names the path of the mistake."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}" if path else problem)


class ValidationFailed(StagedRetryError):
    """The answer does not validate.

    *errors* name the failing fields by path; *partial* holds the part of the
    answer that did validate (``None`` when nothing could be read, e.g. the
    text was not JSON), which a partial stage keeps while it re-asks the rest.
    """

    def __init__(
        self,
        errors: Sequence[FieldError],
        partial: dict[str, object] | None = None,
        *,
        text: str | None = None,
    ) -> None:
        self.errors = tuple(errors)
        self.partial = partial
        self.text = text
        shown = "; ".join(f"{e.pointer or '<answer>'}: {e.message}" for e in self.errors[:5])
        more = f" (+{len(self.errors) - 5} more)" if len(self.errors) > 5 else ""
        super().__init__(f"{len(self.errors)} invalid field(s): {shown}{more}")


class AttemptError(StagedRetryError):
    """Raised by a strategy to state what a request came to.

    *meta* keeps whatever the response told before it failed (safety ratings,
    finish reason) and *usage* the tokens it was billed, so both reach the
    item's attempt record.
    """

    kind: OutcomeKind = OutcomeKind.FATAL

    def __init__(
        self,
        message: str = "",
        *,
        meta: ResponseMeta | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.meta = meta
        self.usage = usage

    def outcome(self) -> Outcome:
        """The outcome this error stands for."""
        return Outcome(self.kind, str(self))


class TransientError(AttemptError):
    """The request may succeed if sent again: timeout, dropped connection, 5xx."""

    kind = OutcomeKind.TRANSIENT


class RateLimited(AttemptError):
    """The provider refused the request for now; *retry_after* is its advice in seconds."""

    kind = OutcomeKind.RATE_LIMITED

    def __init__(
        self,
        message: str = "",
        *,
        retry_after: float | None = None,
        meta: ResponseMeta | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message, meta=meta, usage=usage)
        self.retry_after = retry_after

    def outcome(self) -> Outcome:
        """A RATE_LIMITED outcome carrying the provider's advised delay."""
        return Outcome(self.kind, str(self), retry_after=self.retry_after)


class Shed(RateLimited):
    """A best-effort service tier shed the request unserved (it is not billed).

    Raised by a strategy for a request sent on a tier that may shed load (Gemini's
    ``flex``); *retry_after* is the provider's advice in seconds, if it gave one.
    """

    kind = OutcomeKind.SHED


class ResourceLost(AttemptError):
    """A shared resource the request used is gone (e.g. an expired context cache)."""

    kind = OutcomeKind.RESOURCE_LOST

    def __init__(
        self,
        message: str = "",
        *,
        resource: str | None = None,
        meta: ResponseMeta | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message, meta=meta, usage=usage)
        self.resource = resource

    def outcome(self) -> Outcome:
        """A RESOURCE_LOST outcome naming the resource to renew (``None``: all)."""
        return Outcome(self.kind, str(self), resource=self.resource)


class StopRun(AttemptError):
    """The failure belongs to the run, not to the item: raise it to stop the run.

    For what no item can mend and every later request would meet: the API key
    rejected, billing disabled, the model not found, a per-day quota or a spend
    cap reached.  The item ends ``cancelled`` (not final) and spends no prompt;
    the runner takes no new item and :meth:`Runner.run` raises
    :class:`RunStopped` with this message once the requests in flight are done.
    Say what to fix in the message: it is what the user reads.
    """

    kind = OutcomeKind.STOP_RUN


class FatalError(AttemptError):
    """Retrying cannot help: a bad request, a bug.

    Pass ``sent=False`` when the request never went out, so it costs no prompt.
    """

    kind = OutcomeKind.FATAL

    def __init__(
        self,
        message: str = "",
        *,
        sent: bool = True,
        meta: ResponseMeta | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message, meta=meta, usage=usage)
        self.sent = sent

    def outcome(self) -> Outcome:
        """A FATAL outcome that spends a prompt only if the request was sent."""
        return Outcome(self.kind, str(self), sent=self.sent)


Rule = Callable[[BaseException], Outcome | None]
"""A classifier rule: an outcome for the exceptions it knows, ``None`` for the rest."""


def describe(exc: BaseException) -> str:
    """A one-line summary of *exc* for attempt records and logs (object reprs named only)."""
    text = without_reprs(str(exc))
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def status_outcome(status: int, message: str, retry_after: float | None = None) -> Outcome | None:
    """What an HTTP error *status* means by the outcome table (``None`` for a non-error status).

    429 is RATE_LIMITED; 408 and 5xx (but 501 and 505, which no retry mends) are
    TRANSIENT; 401 (the credentials are rejected: no item can mend that) is
    STOP_RUN; any other 4xx is FATAL.  *retry_after* is the server's advised wait.
    """
    if status == 401:
        return Outcome(OutcomeKind.STOP_RUN, message)
    if status == 429:
        return Outcome(OutcomeKind.RATE_LIMITED, message, retry_after=retry_after)
    if status == 408 or (500 <= status <= 599 and status not in (501, 505)):
        return Outcome(OutcomeKind.TRANSIENT, message, retry_after=retry_after)
    if 400 <= status <= 599:
        return Outcome(OutcomeKind.FATAL, message)
    return None


def default_outcome(exc: BaseException) -> Outcome:
    """The engine's own rules, applied after the user's and the strategy's.

    The engine's exceptions say what they are; then an HTTP status on the error
    (or its ``response``) decides, then a transport error of any HTTP stack or
    socket (see ``_http``); anything else is a bug, hence FATAL.
    """
    if isinstance(exc, AttemptError):
        return exc.outcome()
    if isinstance(exc, ValidationFailed):
        return Outcome(OutcomeKind.INVALID, describe(exc))
    status = http_status(exc)
    if status is not None:
        outcome = status_outcome(status, describe(exc), retry_after(exc))
        if outcome is not None:
            return outcome
    verdict = transport_verdict(exc)
    if verdict is Verdict.TRANSIENT:
        return Outcome(OutcomeKind.TRANSIENT, describe(exc))
    return Outcome(OutcomeKind.FATAL, describe(exc))


def classify(exc: BaseException, rules: Sequence[Rule]) -> Outcome:
    """Run *rules* in order; the first outcome wins, else the engine's defaults."""
    for rule in rules:
        outcome = rule(exc)
        if outcome is not None:
            return outcome
    return default_outcome(exc)
