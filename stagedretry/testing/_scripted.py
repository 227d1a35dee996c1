"""A strategy that replays scripted outcomes, for testing plans and the engine.

Each item gets a script: what each of its requests comes to, in order.  The
strategy answers or raises accordingly and records every request, so a test can
assert on the stages visited, the parameters sent and the fields a partial stage
asked for.
"""

from __future__ import annotations

import enum
import json
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs

from .._batch_jobs import BatchEntry, BatchJobLost, BatchJobState
from .._clock import Clock
from .._outcomes import (
    FatalError,
    FieldError,
    FieldPath,
    Outcome,
    OutcomeKind,
    RateLimited,
    ResourceLost,
    Shed,
    StopRun,
    TransientError,
    ValidationFailed,
)
from .._results import Usage
from .._strategy import Request, Response, StageContext

__all__ = [
    "DEFAULT_ANSWER",
    "UNREADABLE_ANSWER",
    "JobEnd",
    "JobStep",
    "RecordedRequest",
    "ScriptStep",
    "ScriptedJob",
    "ScriptedStrategy",
    "Step",
    "wrong_fields",
]

DEFAULT_ANSWER: Mapping[str, Any] = MappingProxyType(
    {"title": "Dune", "author": "Frank Herbert", "year": 1965, "pages": 412}
)
"""The answer a :class:`ScriptedStrategy` gives unless told otherwise."""


def _fields(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def outcome_kind(value: OutcomeKind | str) -> OutcomeKind:
    """*value* as an :class:`OutcomeKind`: a kind, or its name or value in any letter case.

    ``"invalid"``, ``"INVALID"``, ``"rate_limited"`` and ``"rate-limited"`` are
    accepted; anything else raises at once (``ValueError`` for an unknown name,
    ``TypeError`` for another type), so a typo never reaches the engine.
    """
    if isinstance(value, OutcomeKind):
        return value
    if isinstance(value, str):
        # "Rate-Limited", " rate limited": the spellings a user types for rate_limited.
        wanted = "_".join(value.strip().lower().replace("-", " ").split())
        for kind in OutcomeKind:
            if wanted == kind.value:
                return kind
        known = ", ".join(k.value for k in OutcomeKind)
        raise ValueError(f"unknown outcome kind {value!r} (known: {known})")
    raise TypeError(f"an outcome kind is an OutcomeKind or its name, not {type(value).__name__}")


def outcome_kinds(values: Iterable[OutcomeKind | str], where: str) -> tuple[OutcomeKind, ...]:
    """Each of *values* as an :class:`OutcomeKind` (see :func:`outcome_kind`) at *where*."""
    if isinstance(values, (str, OutcomeKind)):
        raise TypeError(f"{where} is a sequence of outcome kinds, not one kind: use [{values!r}]")
    try:
        return tuple(outcome_kind(v) for v in values)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None


def chosen_outcomes(
    outcomes: Iterable[OutcomeKind | str] | None,
    kinds: Iterable[OutcomeKind | str] | None,
    default: tuple[OutcomeKind, ...],
    where: str,
) -> tuple[OutcomeKind, ...]:
    """The outcome kinds a harness function was given as ``outcomes=`` (or the old ``kinds=``).

    ``kinds=`` meant outcome kinds in the harness but stage kinds in ``Plan.load``
    and ``Runner``; it still works here, with a ``DeprecationWarning``.
    """
    if kinds is not None:
        if outcomes is not None:
            raise TypeError(f"{where}() takes outcomes= or the old kinds=, not both")
        warnings.warn(
            f"{where}(kinds=...) is deprecated: the outcome kinds are now outcomes=...; "
            "kinds means stage kinds, as in Plan.load and Runner",
            DeprecationWarning,
            stacklevel=3,
        )
        outcomes = kinds
    if outcomes is None:
        return default
    return outcome_kinds(outcomes, f"{where}(outcomes=...)")


@attrs.frozen(repr=False)
class ScriptStep:
    """What one request comes to.

    ``fields`` are the fields an ``INVALID`` answer gets wrong, each a top-level
    key (never split: ``"author.name"`` is one key); none means the answer
    could not be read at all: after a full request there is then nothing to
    repair, after a partial one the fields that failed before are still to
    repair.  A partial answer holds only the fields asked for, so it can get
    only those wrong: the named ones among them, or all of them if it names none
    of them.  ``retry_after`` is a ``RATE_LIMITED`` or ``SHED`` refusal's advised delay and
    ``resource`` the name of a lost resource.  *kind* may be given by name
    (``ScriptStep("invalid", fields=["year"])``, any letter case); an unknown name
    raises ``ValueError`` at once.

    ``error`` is the exception a :class:`ScriptedStrategy` raises for the step
    instead of the engine's own (your client's ``429``, say): the runner's rules
    and the strategy's ``classify()`` then decide what it comes to, which is how
    the harness checks a classification (see ``check_plan(errors=...)``).
    """

    kind: OutcomeKind = attrs.field(converter=outcome_kind)
    fields: tuple[str, ...] = attrs.field(default=(), converter=_fields, kw_only=True)
    retry_after: float | None = attrs.field(default=None, kw_only=True)
    resource: str | None = attrs.field(default=None, kw_only=True)
    error: BaseException | None = attrs.field(default=None, kw_only=True, eq=False)

    def __attrs_post_init__(self) -> None:
        if self.fields and self.kind is not OutcomeKind.INVALID:
            raise ValueError(f"only an INVALID step has failed fields, not {self.kind.name}")
        if self.retry_after is not None and self.kind not in _ADVISED:
            raise ValueError(
                f"only a RATE_LIMITED or SHED step has retry_after, not {self.kind.name}"
            )
        if self.resource is not None and self.kind is not OutcomeKind.RESOURCE_LOST:
            raise ValueError(f"only a RESOURCE_LOST step names a resource, not {self.kind.name}")
        if self.error is not None and self.kind is OutcomeKind.SUCCEEDED:
            raise ValueError("a SUCCEEDED step answers: it raises no error")

    @classmethod
    def of(cls, step: Step) -> ScriptStep:
        """*step* as a ``ScriptStep`` (a bare kind or its name becomes a step without extras)."""
        return step if isinstance(step, ScriptStep) else cls(step)

    def _extras(self) -> list[str]:
        extras = []
        if self.fields:
            extras.append(f"fields={self.fields!r}")
        if self.retry_after is not None:
            extras.append(f"retry_after={self.retry_after!r}")
        if self.resource is not None:
            extras.append(f"resource={self.resource!r}")
        if self.error is not None:
            extras.append(f"error={shown_error(self.error)}")
        return extras

    def __str__(self) -> str:
        extras = self._extras()
        return f"{self.kind.name}({', '.join(extras)})" if extras else self.kind.name

    def __repr__(self) -> str:
        # Short and evaluable: hypothesis prints it in every counterexample.
        return f"ScriptStep({', '.join([f'OutcomeKind.{self.kind.name}', *self._extras()])})"


_ADVISED = frozenset({OutcomeKind.RATE_LIMITED, OutcomeKind.SHED})

Step = OutcomeKind | ScriptStep | str
"""A script entry: a bare outcome kind (or its name) or a :class:`ScriptStep` with its extras."""


def shown_error(error: BaseException) -> str:
    """*error* in a script as printed: its type and the start of its text, on one line."""
    code, message = getattr(error, "code", None), getattr(error, "message", None)
    if isinstance(code, int) and isinstance(message, str):
        # An HTTP client's error (google-genai's among them): its status and message read
        # better than a str() that dumps the whole body.
        status = getattr(error, "status", None)
        text = f"{code} {status}: {message}" if isinstance(status, str) else f"{code}: {message}"
    else:
        text = str(error)
    text = " ".join(text.split())
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{type(error).__name__}({text!r})"


@attrs.frozen
class RecordedRequest:
    """One request a :class:`ScriptedStrategy` received, and the step it replayed."""

    item_id: str
    stage: str
    params: Mapping[str, Any]
    fields: tuple[FieldPath, ...] | None
    attempt: int
    step: ScriptStep
    prompt: str = attrs.field(repr=False)
    kept: Mapping[str, Any] | None = attrs.field(default=None, repr=False)


UsageFor = Usage | Callable[[RecordedRequest], Usage]
"""The usage a scripted answer reports: fixed, or computed from the request."""

SCRIPTED_USAGE = Usage(input_tokens=10, output_tokens=5)
"""What each scripted answer reports as its usage unless told otherwise."""


class JobEnd(enum.Enum):
    """How a scripted batch job ends: its state, by the names the Gemini SDK gives them,
    or ``LOST`` (the service no longer knows it: polling raises :class:`BatchJobLost`)."""

    SUCCEEDED = "JOB_STATE_SUCCEEDED"
    FAILED = "JOB_STATE_FAILED"
    CANCELLED = "JOB_STATE_CANCELLED"
    EXPIRED = "JOB_STATE_EXPIRED"
    LOST = "LOST"


@attrs.frozen
class JobStep:
    """What one batch job submitted to a :class:`ScriptedStrategy` comes to.

    * *end* -- how it ends (default :attr:`JobEnd.SUCCEEDED`, which answers every entry).
    * *answered* -- for a job that does not succeed, how many of its entries (in key
      order) it answered before it ended (default 0); a ``LOST`` job answers none.
    * *delay* -- seconds on the runner's clock from submission to done (default: the
      strategy's ``batch_delay``).
    * *error* -- raised by ``submit_batch`` instead of creating the job (a 429, a 400).

    An unanswered entry plays no step of its item's script: the request it stands for
    is sent again in a later job, which plays it.
    """

    end: JobEnd = JobEnd.SUCCEEDED
    answered: int = attrs.field(default=0, validator=attrs.validators.ge(0))
    delay: float | None = attrs.field(default=None, kw_only=True)
    error: BaseException | None = attrs.field(default=None, kw_only=True, eq=False)


@attrs.frozen
class ScriptedJob:
    """One batch job a :class:`ScriptedStrategy` created: its entries' keys (in key order),
    the keys it answered, the stage, the step it plays and when it is done (runner's clock)."""

    name: str
    stage: str
    keys: tuple[str, ...]
    answered: tuple[str, ...]
    step: JobStep
    done_at: float


class ScriptedStrategy:
    """A strategy that plays each item's script of outcomes, then *default*.

    *scripts* maps item ids to their scripts; a plain sequence is every item's
    script.  A success answers *answer* as a JSON object (only the requested
    fields when a partial stage asks for some); :meth:`validator` accepts
    exactly that answer.  *usage* is the usage reported with each answer, or a
    function of the request.  Everything received is in :attr:`requests`.

    An ``INVALID`` step raises :class:`ValidationFailed` naming its fields, so
    any validator will do; with *text_answers* it answers text instead (JSON
    with the named fields wrong, or text that is not JSON), so the answer goes
    through the stage's real parsing and :meth:`validator`, which must be the
    runner's.  An unreadable answer to a partial request is always text: what
    the engine makes of it is the point.

    It also answers through batch jobs (:class:`~stagedretry.SubmitsBatchJobs`), for
    a runner in batch mode: each job plays the next of *jobs* (then succeeds), is
    done *batch_delay* seconds (on the runner's clock) after it was submitted, and
    answers each entry by its item's script, as :meth:`generate` would.  The jobs
    are in :attr:`jobs` and :attr:`submissions` counts the calls to ``submit_batch``.
    """

    def __init__(
        self,
        scripts: Mapping[str, Sequence[Step]] | Sequence[Step] = (),
        *,
        default: Step = OutcomeKind.SUCCEEDED,
        answer: Mapping[str, Any] = DEFAULT_ANSWER,
        usage: UsageFor = SCRIPTED_USAGE,
        text_answers: bool = False,
        jobs: Sequence[JobStep] = (),
        batch_delay: float = 60.0,
    ) -> None:
        self.text_answers = text_answers
        self._job_steps = tuple(jobs)
        self.batch_delay = batch_delay
        self.submissions = 0
        self.jobs: dict[str, ScriptedJob] = {}
        self._answers: dict[str, Mapping[str, Response | Exception]] = {}
        self._clocks: dict[str, Clock] = {}
        if isinstance(scripts, Mapping):
            self._scripts: dict[str, tuple[ScriptStep, ...]] = {
                str(k): tuple(ScriptStep.of(s) for s in v) for k, v in scripts.items()
            }
            self._shared: tuple[ScriptStep, ...] = ()
        else:
            self._scripts = {}
            self._shared = tuple(ScriptStep.of(s) for s in scripts)
        self.default = ScriptStep.of(default)
        self.answer: Mapping[str, Any] = MappingProxyType(dict(answer))
        self._usage = usage
        self._played: dict[str, int] = {}
        self.requests: list[RecordedRequest] = []

    # -- what tests read ------------------------------------------------------

    def script(self, item_id: str) -> tuple[ScriptStep, ...]:
        """The script *item_id* plays before falling back to the default step."""
        return self._scripts.get(item_id, self._shared)

    def requests_for(self, item_id: str) -> tuple[RecordedRequest, ...]:
        """The requests made for *item_id*, in order."""
        return tuple(r for r in self.requests if r.item_id == item_id)

    def played(self, item_id: str) -> int:
        """How many steps *item_id* has used (the default step included)."""
        return self._played.get(item_id, 0)

    def feed(self, item_id: str, *steps: Step) -> None:
        """Append *steps* to *item_id*'s script."""
        self._scripts[item_id] = self.script(item_id) + tuple(ScriptStep.of(s) for s in steps)

    def validator(self) -> Callable[[str], dict[str, Any]]:
        """A validator that accepts exactly :attr:`answer` (as JSON) and names what differs."""
        return _AnswerValidator(self.answer)

    # -- the Strategy protocol --------------------------------------------------

    async def generate(self, request: Request, ctx: StageContext) -> Response:
        step = await self.next_step(request, ctx)
        recorded = RecordedRequest(
            request.item_id,
            request.stage.name,
            MappingProxyType(dict(request.params)),
            request.fields,
            ctx.attempt,
            step,
            request.prompt,
            request.kept,
        )
        self.requests.append(recorded)
        return self.act(step, recorded)

    def classify(self, exc: BaseException) -> Outcome | None:
        return None  # everything raised is already one of the engine's own exceptions

    # -- the SubmitsBatchJobs protocol ------------------------------------------

    async def submit_batch(self, entries: Sequence[BatchEntry]) -> str:
        """Create a job answering *entries* by their items' scripts; its :class:`JobStep`
        decides how it ends."""
        number = self.submissions
        self.submissions += 1
        step = self._job_steps[number] if number < len(self._job_steps) else JobStep()
        if step.error is not None:
            raise step.error.with_traceback(None)
        ordered = sorted(entries, key=lambda e: e.key)
        if step.end is JobEnd.SUCCEEDED:
            reached = len(ordered)
        elif step.end is JobEnd.LOST:
            reached = 0
        else:
            reached = min(step.answered, len(ordered))
        answers: dict[str, Response | Exception] = {}
        for entry in ordered[:reached]:
            try:
                answers[entry.key] = await self.generate(entry.request, entry.ctx)
            except Exception as exc:
                answers[entry.key] = exc
        clock = entries[0].ctx.clock
        name = f"batches/scripted-{number + 1}"
        delay = self.batch_delay if step.delay is None else step.delay
        self.jobs[name] = ScriptedJob(
            name,
            entries[0].request.stage.name,
            tuple(e.key for e in ordered),
            tuple(answers),
            step,
            clock.monotonic() + delay,
        )
        self._answers[name] = answers
        self._clocks[name] = clock
        return name

    async def poll_batch(self, name: str) -> BatchJobState:
        """Look at job *name*: running until its time, then done with its answers."""
        job = self.jobs.get(name)
        if job is None:
            raise BatchJobLost(f"no batch job {name!r}")
        if self._clocks[name].monotonic() < job.done_at:
            return BatchJobState(name, "JOB_STATE_RUNNING", False)
        if job.step.end is JobEnd.LOST:
            raise BatchJobLost(f"the batch job {name!r} is gone")
        return BatchJobState(name, job.step.end.value, True, self._answers[name])

    # -- for subclasses ---------------------------------------------------------

    async def next_step(self, request: Request, ctx: StageContext) -> ScriptStep:
        """The step for this request; a subclass may wait for it to be fed."""
        item_id = request.item_id
        played = self._played.get(item_id, 0)
        self._played[item_id] = played + 1
        script = self.script(item_id)
        return script[played] if played < len(script) else self.default

    def act(self, step: ScriptStep, request: RecordedRequest) -> Response:
        """Answer as *step* says, or raise the exception that stands for it."""
        kind = step.kind
        if step.error is not None:
            # The step's own exception, for the runner's rules to classify; a fresh
            # traceback each time, since one example may be raised many times.
            raise step.error.with_traceback(None)
        if kind is OutcomeKind.SUCCEEDED:
            return Response(json.dumps(self._asked(request)), self._usage_for(request))
        if kind is OutcomeKind.INVALID:
            wrong = wrong_fields(step.fields, request.fields)
            if not wrong:
                if self.text_answers or request.fields is not None:
                    return Response(UNREADABLE_ANSWER, self._usage_for(request))
                raise _invalid((), self.answer)
            if self.text_answers:
                return Response(self._wrong_answer(request, wrong), self._usage_for(request))
            raise _invalid(wrong, self.answer)
        if kind is OutcomeKind.TRANSIENT:
            raise TransientError("scripted transient error")
        if kind is OutcomeKind.RATE_LIMITED:
            raise RateLimited("scripted rate limit", retry_after=step.retry_after)
        if kind is OutcomeKind.SHED:
            raise Shed("scripted shed request", retry_after=step.retry_after)
        if kind is OutcomeKind.RESOURCE_LOST:
            raise ResourceLost("scripted lost resource", resource=step.resource)
        if kind is OutcomeKind.STOP_RUN:
            raise StopRun("scripted run stop")
        raise FatalError("scripted fatal error")

    def _usage_for(self, request: RecordedRequest) -> Usage:
        return self._usage(request) if callable(self._usage) else self._usage

    def _asked(self, request: RecordedRequest) -> dict[str, Any]:
        if request.fields is None:
            return dict(self.answer)
        asked = {path[0] for path in request.fields if path}
        return {k: v for k, v in self.answer.items() if k in asked}

    def _wrong_answer(self, request: RecordedRequest, wrong: tuple[str, ...]) -> str:
        # The wrong fields come first, in the step's order: the validator reports them in
        # the order of the answer, which is the order the reference model expects.
        asked = self._asked(request)
        data = {k: _wrong_value(self.answer.get(k)) for k in wrong}
        data.update((k, v) for k, v in asked.items() if k not in data)
        return json.dumps(data)

    def __repr__(self) -> str:
        return f"ScriptedStrategy(items={len(self._scripts)}, requests={len(self.requests)})"


UNREADABLE_ANSWER = "Sorry, I cannot give that as JSON."
"""The text of an unreadable scripted answer: not JSON."""


def wrong_fields(fields: Sequence[str], asked: Sequence[FieldPath] | None) -> tuple[str, ...]:
    """The top-level fields an ``INVALID`` step gets wrong, for a request that *asked* them.

    A full request (*asked* ``None``) gets *fields* wrong (each one key, never
    split).  A partial answer holds only the fields asked, so it gets wrong the
    named ones among them, or all of them if it names none of them.  ``()``: the
    answer is unreadable.
    """
    heads = tuple(dict.fromkeys(fields))
    if asked is None or not heads:
        return heads
    asked_heads = tuple(dict.fromkeys(path[0] for path in asked if path))
    named = tuple(h for h in heads if h in asked_heads)
    return named or tuple(str(h) for h in asked_heads)


def _wrong_value(right: object) -> object:
    wrong = "<not this>"
    return None if right == wrong else wrong


def _invalid(fields: tuple[str, ...], answer: Mapping[str, Any]) -> ValidationFailed:
    if not fields:
        return ValidationFailed(
            [FieldError("", "scripted unreadable answer")], None, text="<not json>"
        )
    heads = set(fields)
    kept = {k: v for k, v in answer.items() if k not in heads}
    broken = dict(answer) | dict.fromkeys(heads)
    return ValidationFailed(
        [FieldError(f, "scripted invalid value") for f in fields],
        kept,
        text=json.dumps(broken),
    )


class _AnswerValidator:
    """Accepts a JSON object equal to the expected answer."""

    __slots__ = ("_answer",)

    def __init__(self, answer: Mapping[str, Any]) -> None:
        self._answer = answer

    def __call__(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ValidationFailed([FieldError("", f"not JSON: {exc}")], None, text=text) from None
        if not isinstance(data, dict):
            raise ValidationFailed([FieldError("", "not a JSON object")], None, text=text)
        # In the answer's order, then the missing ones: the text decides the order of errors.
        wrong = [k for k in data if k in self._answer and data[k] != self._answer[k]]
        wrong += [k for k in self._answer if k not in data]
        if wrong:
            raise ValidationFailed(
                [FieldError(k, "missing or wrong") for k in wrong],
                {k: v for k, v in data.items() if k not in wrong},
                text=text,
            )
        return data

    def __repr__(self) -> str:
        return f"ScriptedStrategy.validator({sorted(self._answer)!r})"
