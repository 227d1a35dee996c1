"""A deterministic offline model, for examples, tests and benchmarks.

Answers a flat JSON object whose fields are declared by name and type.  Each
field is invalid with a probability that falls as the temperature is lowered;
requests can also fail with transient errors or rate limits, or stop the run
(``stop_rate``, as a rejected key would), after a latency slept on the
engine's clock.  Everything is decided by a seeded hash of the
request, so a run is reproducible.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import attrs

from stagedretry import (
    BatchEntry,
    BatchJobLost,
    BatchJobState,
    Clock,
    FieldError,
    Outcome,
    PlanError,
    RateLimited,
    Request,
    Response,
    StageContext,
    StopRun,
    TransientError,
    Usage,
    ValidationFailed,
    setting,
    validators,
)

from ._sampling import SamplingParams, params_of
from ._tokens import count_tokens
from .backend import MAX_WAIT, BackendSpec, Built, JobInputs

BOOK_FIELDS: Mapping[str, type] = {"title": str, "author": str, "year": int, "pages": int}


def _unit(*parts: object) -> float:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@attrs.frozen
class SimModel:
    """The knobs of the simulated model.

    ``invalid_rate`` is the chance of one field being invalid at temperature 0;
    ``temperature_slope`` is added per unit of temperature.
    """

    fields: Mapping[str, type] = BOOK_FIELDS
    seed: int = 0
    invalid_rate: float = 0.2
    temperature_slope: float = 0.4
    transient_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    latency: float = 0.0
    instructions_tokens: int = 0
    #: The chance that a request meets a failure of the run (a :class:`StopRun`).
    stop_rate: float = 0.0
    #: Seconds from a batch job's submission until it is done (on the runner's clock).
    batch_latency: float = 0.0


class SimStrategy:
    """The strategy over a :class:`SimModel`; its stage params are :class:`SamplingParams`.

    Only ``temperature`` changes its answers; the other sampling params are
    accepted and ignored, so a plan's sampling settings run here unchanged.
    Params only Gemini has (``thinking_budget``, the penalties,
    ``response_mime_type``) are refused by name when the runner is built.
    """

    __slots__ = ("_jobs", "model")
    params_type = SamplingParams

    def __init__(self, model: SimModel | None = None, **knobs: Any) -> None:
        self.model = model or SimModel(**knobs)
        # Batch jobs live in this process only: a resumed process finds them lost (its
        # requests are then sent again, as for a job the service no longer has).
        self._jobs: dict[str, tuple[float, Clock, dict[str, Response | Exception]]] = {}

    def invalid_probability(self, temperature: float) -> float:
        m = self.model
        return min(1.0, max(0.0, m.invalid_rate + m.temperature_slope * temperature))

    async def generate(self, request: Request, ctx: StageContext) -> Response:
        if self.model.latency:
            await ctx.clock.sleep(self.model.latency)
        return self._answer(request, ctx)

    async def submit_batch(self, entries: Sequence[BatchEntry]) -> str:
        """A job answering each entry as :meth:`generate` would, done ``batch_latency``
        seconds later; no cached tokens (no context cache inside batch jobs)."""
        answers: dict[str, Response | Exception] = {}
        for entry in entries:
            try:
                answer = self._answer(entry.request, entry.ctx)
                answers[entry.key] = attrs.evolve(
                    answer, usage=attrs.evolve(answer.usage, cached_tokens=0)
                )
            except Exception as exc:
                answers[entry.key] = exc
        clock = entries[0].ctx.clock
        name = f"batches/sim-{len(self._jobs) + 1}"
        self._jobs[name] = (clock.monotonic() + self.model.batch_latency, clock, answers)
        return name

    async def poll_batch(self, name: str) -> BatchJobState:
        """The job's state; :class:`BatchJobLost` for a job of another process."""
        job = self._jobs.get(name)
        if job is None:
            raise BatchJobLost(f"the sim backend has no batch job {name!r} (another process's)")
        done_at, clock, answers = job
        if clock.monotonic() < done_at:
            return BatchJobState(name, "JOB_STATE_RUNNING", False)
        return BatchJobState(name, "JOB_STATE_SUCCEEDED", True, answers)

    def _answer(self, request: Request, ctx: StageContext) -> Response:
        m = self.model
        temperature = params_of(ctx, SamplingParams).temperature or 0.0
        key = (m.seed, request.item_id, request.stage.name, ctx.attempt)
        if m.stop_rate and _unit(*key, "stop") < m.stop_rate:
            raise StopRun(
                "the simulated key was rejected (backend.sim.stop_rate; set it to 0 to go on)"
            )
        if m.rate_limit_rate and _unit(*key, "429") < m.rate_limit_rate:
            raise RateLimited("simulated 429", retry_after=m.retry_after)
        prompt_tokens = count_tokens(request.prompt) + m.instructions_tokens
        if m.transient_rate and _unit(*key, "503") < m.transient_rate:
            raise TransientError("simulated 503 overloaded")
        p = self.invalid_probability(temperature)
        # The simulator answers a flat object: a partial request's paths are one key each.
        wanted = (
            tuple(dict.fromkeys(str(p[0]) for p in request.fields if p))
            if request.fields is not None
            else tuple(m.fields)
        )
        answer: dict[str, Any] = {}
        for name in wanted:
            typ = m.fields.get(name, str)
            bad = _unit(*key, name) < p
            answer[name] = _value(typ, bad, request.item_id, name)
        text = json.dumps(answer)
        usage = Usage(
            input_tokens=prompt_tokens,
            output_tokens=count_tokens(text),
            cached_tokens=m.instructions_tokens,
        )
        return Response(text, usage)

    def classify(self, exc: BaseException) -> Outcome | None:
        return None

    def fingerprint_data(self) -> Mapping[str, object]:
        """The model's knobs but its latency and its run stops, which decide no answer."""
        knobs = attrs.asdict(self.model, recurse=False)
        del knobs["latency"], knobs["stop_rate"], knobs["batch_latency"]
        knobs["fields"] = {name: typ.__name__ for name, typ in self.model.fields.items()}
        return knobs

    def validator(self) -> Any:
        """A validator for this model's fields, reporting each bad field by name."""
        return validators.json_object(_FieldsCheck(self.model.fields))

    def __repr__(self) -> str:
        return f"SimStrategy({self.model!r})"


def _value(typ: type, bad: bool, item_id: str, name: str) -> Any:
    if typ is int:
        return "unknown" if bad else 1 + int(_unit(item_id, name) * 999)
    if typ is float:
        return "n/a" if bad else round(_unit(item_id, name) * 100, 2)
    if typ is bool:
        return "maybe" if bad else _unit(item_id, name) < 0.5
    return None if bad else f"{name} of {item_id}"


class _FieldsCheck:
    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, type]) -> None:
        self._fields = fields

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for name, typ in self._fields.items():
            value = data.get(name)
            if name not in data:
                errors.append(FieldError(name, "missing"))
            elif not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                errors.append(FieldError(name, f"expected {typ.__name__}, got {value!r}"))
        if errors:
            failed = {e.path[0] for e in errors}
            raise ValidationFailed(errors, {k: v for k, v in data.items() if k not in failed})
        return data


# -- the backend spec --------------------------------------------------------------------------


@attrs.frozen
class SimSettings:
    """The ``[backend.sim]`` table: the knobs of :class:`SimModel` a pipeline sets.

    A ``*_rate`` is a probability in [0, 1]; the other numbers are at least 0, and
    ``retry_after`` and ``latency`` at most 3600 seconds (every wait is bounded).
    ``stop_rate`` (default 0) is the share of requests that meet a failure of the
    run, as a rejected key would (the run stops, exit 3); like ``latency`` it is not
    part of the pipeline's fingerprint, so ``--set backend.sim.stop_rate=0`` resumes.
    The fields and the instruction's tokens are not settings: each run derives
    them from its output shape and its cache.
    """

    seed: int = setting(0, minimum=0)
    """Seeds every draw: the same seed, the same answers and failures."""
    invalid_rate: float = setting(0.2, minimum=0.0, maximum=1.0)
    """The chance that a field of an answer is invalid, at temperature 0."""
    temperature_slope: float = setting(0.4, minimum=0.0)
    """Added to ``invalid_rate`` per unit of temperature (a hotter stage errs more)."""
    transient_rate: float = setting(0.0, minimum=0.0, maximum=1.0)
    """The chance that a request fails with a transient error (a simulated 503)."""
    rate_limit_rate: float = setting(0.0, minimum=0.0, maximum=1.0)
    """The chance that a request is refused with a simulated 429."""
    retry_after: float = setting(1.0, minimum=0.0, maximum=MAX_WAIT, unit="seconds")
    """The wait a simulated 429 advises, in seconds."""
    latency: float = setting(0.0, minimum=0.0, maximum=MAX_WAIT, unit="seconds")
    """Seconds each request takes; not part of the fingerprint."""
    stop_rate: float = setting(0.0, minimum=0.0, maximum=1.0)
    """The chance that a request meets a failure of the run, as a rejected key would (the run
    stops, exit 3), to try a stop and its resume; not part of the fingerprint."""
    batch_latency: float = setting(0.0, minimum=0.0, maximum=MAX_WAIT, unit="seconds")
    """Seconds from a batch job's submission until it is done (``run.mode = "batch"``); not
    part of the fingerprint."""


@attrs.frozen
class SimSection:
    """The sim backend's part of ``[backend]``: the ``[backend.sim]`` table."""

    sim: SimSettings = setting(factory=SimSettings)
    """The ``[backend.sim]`` table."""


_JSON_TYPES: Final[Mapping[str, type]] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
}


def answer_fields(schema: Mapping[str, Any] | None) -> dict[str, type] | None:
    """The flat fields the simulator answers for *schema*; ``None``: its default (a book).

    Raises :class:`~stagedretry.PlanError` at ``output`` for a field that is
    not a string, integer, number or boolean.
    """
    if schema is None:
        return None
    fields: dict[str, type] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") if isinstance(prop, Mapping) else None
        if not isinstance(kind, str) or kind not in _JSON_TYPES:
            raise PlanError(
                "output",
                f"the sim backend answers flat objects of strings, integers, numbers and "
                f"booleans; field {name!r} is {kind or 'a composite type'}",
            )
        fields[name] = _JSON_TYPES[kind]
    return fields


class SimBackend:
    """The ``sim`` backend: offline and deterministic, no key, nothing to start."""

    name: Final = "sim"
    section_type: Final = SimSection
    params_type: Final = SamplingParams
    neutral: Final = frozenset({"sim.latency", "sim.stop_rate", "sim.batch_latency"})
    needs_api_key: Final = False

    def check(self, section: SimSection, job: JobInputs) -> None:
        answer_fields(job.output_schema)

    async def build(self, section: SimSection, job: JobInputs) -> Built:
        cache = job.shared_cache
        instruction = job.system_instruction if cache is not None else None
        model = SimModel(
            **attrs.asdict(section.sim),
            instructions_tokens=count_tokens(instruction) if instruction is not None else 0,
        )
        fields = answer_fields(job.output_schema)
        if fields is not None:
            model = attrs.evolve(model, fields=fields)
        strategy = SimStrategy(model)
        return Built(
            strategy=strategy,
            validator=job.validator or strategy.validator(),
            label=f"sim (seed {model.seed})",
        )

    def __repr__(self) -> str:
        return "SimBackend()"


BACKEND: Final[BackendSpec[SimSection]] = SimBackend()
"""The sim backend's spec, for the command-line app's registry."""
