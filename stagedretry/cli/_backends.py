"""Turning a pipeline's ``[backend]`` into a strategy, its shared resources and a validator.

``gemini`` talks to Gemini with ``GEMINI_API_KEY``; ``emulator`` starts the
loopback Gemini emulator in this process and talks to it through the same SDK
code path; ``sim`` is the offline deterministic model.  The Gemini packages are
imported only when a pipeline asks for them.

Whatever a backend starts (the emulator's thread, an SDK client, the request
log) is put away by :meth:`Backend.aclose`; if building fails half way, what
was already started is put away before the error is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final

import attrs

from .. import validators
from .._outcomes import Outcome, PlanError, StagedRetryError
from .._pipeline import BackendKind, CacheClose, Pipeline
from .._redact import Secrets
from .._resources import SharedResource
from .._schema import SchemaValidator
from .._stages import Validator
from .._strategy import Request, Response, StageContext, Strategy, UsesResources

if TYPE_CHECKING:
    from google import genai

API_KEY_ENV: Final = "GEMINI_API_KEY"
Closer = Callable[[], Awaitable[None]]
_SIM_TYPES: Final[Mapping[str, type]] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
}


class BackendError(StagedRetryError):
    """The backend cannot be set up; the message is one sentence for the user."""


def api_key_from_env() -> str | None:
    """The Gemini API key from the environment, stripped, or ``None``."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    return key or None


def _closer_list(closers: Iterable[Closer]) -> list[Closer]:
    # A copy: the caller's list is not the backend's to empty.
    return list(closers)


@attrs.define
class Backend:
    """What a run needs from its backend, and how to put it away afterwards.

    *closers* put away what building it started, in the order it was started;
    :meth:`aclose` runs them newest first.
    """

    strategy: Strategy
    validator: Validator
    label: str
    resources: tuple[SharedResource, ...] = ()
    cache: Any = None
    """The ``GeminiContextCache`` (for its ``stats``), when there is one."""
    emulator: Any = None
    """The in-process ``GeminiEmulator`` of the ``emulator`` backend (for its ledger)."""
    _closers: list[Closer] = attrs.field(factory=list, converter=_closer_list)

    def cache_stats(self) -> dict[str, int] | None:
        """The cache's counters as plain data, or ``None`` without a provider cache."""
        if self.cache is None:
            return None
        return {k: int(v) for k, v in attrs.asdict(self.cache.stats).items()}

    async def aclose(self) -> None:
        """Close clients and stop the emulator, newest first; never raises."""
        await _close_all(self._closers)


async def _close_all(closers: list[Closer]) -> None:
    """Run and forget *closers*, newest first; a failing one does not stop the others."""
    while closers:
        closer = closers.pop()
        # Closing must never hide the run's own outcome.
        with contextlib.suppress(Exception):
            await closer()


# -- validators and the output schema ----------------------------------------------------------


def output_validator(pipeline: Pipeline) -> Validator | None:
    """The validator the output section declares, or ``None`` for "any JSON object"."""
    out = pipeline.output
    if out.model_class is not None:
        return validators.pydantic(out.model_class)
    if out.schema is not None:
        return SchemaValidator(out.schema)
    return None


def response_schema(pipeline: Pipeline) -> Any:
    """What to ask the model for: the pydantic class, the JSON Schema dict, or nothing."""
    out = pipeline.output
    if out.model_class is not None:
        return out.model_class
    if out.schema is not None:
        return dict(out.schema)
    return None


def sim_fields(pipeline: Pipeline) -> dict[str, type] | None:
    """The flat fields the simulator answers, read from the output model; ``None``: its default."""
    out = pipeline.output
    schema: Mapping[str, Any] | None = None
    if out.model_class is not None:
        schema = out.model_class.model_json_schema()
    elif out.schema is not None:
        schema = out.schema
    if schema is None:
        return None
    fields: dict[str, type] = {}
    for name, prop in (schema.get("properties") or {}).items():
        kind = prop.get("type") if isinstance(prop, Mapping) else None
        if not isinstance(kind, str) or kind not in _SIM_TYPES:
            raise PlanError(
                f"{pipeline.source.name}: output",
                f"the sim backend answers flat objects of strings, integers, numbers and "
                f"booleans; field {name!r} is {kind or 'a composite type'}",
            )
        fields[name] = _SIM_TYPES[kind]
    return fields


def check_backend(pipeline: Pipeline, *, need_key: bool) -> None:
    """Every check that needs no network: packages present, key present, sim fields flat."""
    kind = pipeline.backend.kind
    if kind is BackendKind.SIM:
        sim_fields(pipeline)
        return
    try:
        import strategies.gemini

        if kind is BackendKind.EMULATOR:
            import strategies.gemini.emulator  # noqa: F401
    except ImportError as exc:
        raise BackendError(
            f"the {kind.value} backend needs google-genai and aiohttp ({exc}); "
            "install them with: pip install 'stagedretry[cli]'"
        ) from None
    if kind is BackendKind.GEMINI and need_key and api_key_from_env() is None:
        raise BackendError(
            f"the gemini backend needs an API key in the {API_KEY_ENV} environment variable"
        )
    if pipeline.output.model_class is None and pipeline.output.schema is None:
        raise PlanError(
            f"{pipeline.source.name}: output",
            f"the {kind.value} backend needs output.model or output.schema: the answer's shape "
            "is what the stages validate and repair",
        )


# -- the request log ---------------------------------------------------------------------------


class RecordingStrategy:
    """Append one JSON line per request to a log *before* sending it, then delegate.

    The log is an audit trail: which item, stage and attempt was sent when.  It
    is flushed per line, so it survives the death of the process; *secrets*
    are scrubbed from it as from every file a run writes.
    """

    __slots__ = ("_file", "_inner", "_secrets")

    def __init__(self, inner: Strategy, file: IO[str], secrets: Secrets | None = None) -> None:
        self._inner = inner
        self._file = file
        self._secrets = secrets or Secrets()

    async def generate(self, request: Request, ctx: StageContext) -> Response:
        entry = {
            "item": request.item_id,
            "stage": request.stage.name,
            "attempt": ctx.attempt,
            "fields": list(request.fields) if request.fields is not None else None,
            "time": round(time.time(), 6),
        }
        self._file.write(json.dumps(self._secrets.data(entry)) + "\n")
        self._file.flush()
        return await self._inner.generate(request, ctx)

    def classify(self, exc: BaseException) -> Outcome | None:
        return self._inner.classify(exc)

    def shared_resources(self) -> Sequence[SharedResource]:
        """The wrapped strategy's shared resources: recording needs none of its own."""
        inner = self._inner
        return inner.shared_resources() if isinstance(inner, UsesResources) else ()

    def __repr__(self) -> str:
        return f"RecordingStrategy({self._inner!r})"


# -- building ----------------------------------------------------------------------------------


async def build_backend(pipeline: Pipeline, *, api_key: str | None) -> Backend:
    """Set up the pipeline's backend; raise :class:`BackendError` with one clear sentence.

    Nothing is left running when it raises: what was started is closed first.
    *api_key* is used before ``GEMINI_API_KEY``.
    """
    check_backend(pipeline, need_key=api_key is None)
    kind = pipeline.backend.kind
    key = (api_key or api_key_from_env()) if kind is BackendKind.GEMINI else None
    closers: list[Closer] = []
    try:
        if kind is BackendKind.SIM:
            parts = _sim_backend(pipeline)
        elif kind is BackendKind.EMULATOR:
            parts = await _emulator_backend(pipeline, closers)
        else:
            assert key is not None  # check_backend
            client = gemini_client(key, pipeline.backend.api_version, pipeline.backend.base_url)
            closers.append(_client_closer(client))
            parts = _gemini_backend(pipeline, client, label=f"gemini {pipeline.backend.model}")
        log_path = pipeline.run.request_log
        if log_path is not None:
            recording = _with_request_log(parts.strategy, log_path, Secrets([key]), closers)
            parts = attrs.evolve(parts, strategy=recording)
    except BaseException as exc:
        await _close_all(closers)
        if isinstance(exc, ValueError | TypeError):
            # A setting the pipeline's checks let through but the strategy refuses.
            raise BackendError(f"the {kind.value} backend cannot be set up: {exc}") from None
        raise
    return attrs.evolve(parts, closers=closers)


def _with_request_log(
    strategy: Strategy, path: Path, secrets: Secrets, closers: list[Closer]
) -> Strategy:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file = path.open("a", encoding="utf-8")
    except OSError as exc:
        raise BackendError(
            f"cannot open the request log {str(path)!r}: {exc.strerror or exc}"
        ) from None

    async def close() -> None:
        file.close()

    closers.append(close)
    return RecordingStrategy(strategy, file, secrets)


def _sim_backend(pipeline: Pipeline) -> Backend:
    from strategies._tokens import count_tokens
    from strategies.sim import SimStrategy

    cache = pipeline.cache
    model = attrs.evolve(
        pipeline.backend.sim,
        instructions_tokens=(
            count_tokens(cache.system_instruction) if cache is not None and cache.enabled else 0
        ),
    )
    fields = sim_fields(pipeline)
    if fields is not None:
        model = attrs.evolve(model, fields=fields)
    strategy = SimStrategy(model)
    validator = output_validator(pipeline) or strategy.validator()
    return Backend(strategy=strategy, validator=validator, label=f"sim (seed {model.seed})")


def gemini_client(api_key: str, api_version: str, base_url: str | None) -> genai.Client:
    """An SDK client with its own retries off, so every request is the engine's to count."""
    from strategies.gemini import connect

    return connect(api_key, api_version=api_version, base_url=base_url)


def _client_closer(client: genai.Client) -> Closer:
    from strategies.gemini import disconnect

    async def close_client() -> None:
        await disconnect(client)

    return close_client


def _gemini_backend(pipeline: Pipeline, client: genai.Client, *, label: str) -> Backend:
    from strategies.gemini import ClosePolicy, GeminiContextCache, GeminiStrategy

    model = pipeline.backend.model
    cache_config = pipeline.cache
    cache = None
    system_instruction = None
    if cache_config is not None and cache_config.enabled:
        cache = GeminiContextCache(
            client,
            model,
            system_instruction=cache_config.system_instruction,
            ttl=cache_config.ttl,
            renew_margin=cache_config.renew_margin,
            tag=cache_config.tag,
            on_close=(
                ClosePolicy.DELETE
                if cache_config.on_close is CacheClose.DELETE
                else ClosePolicy.KEEP
            ),
        )
    elif cache_config is not None:
        system_instruction = cache_config.system_instruction
    strategy = GeminiStrategy(
        client,
        model,
        cache=cache,
        response_schema=response_schema(pipeline),
        system_instruction=system_instruction,
    )
    return Backend(
        strategy=strategy,
        validator=output_validator(pipeline) or validators.json_object(),
        label=label,
        resources=(cache,) if cache is not None else (),
        cache=cache,
    )


async def _emulator_backend(pipeline: Pipeline, closers: list[Closer]) -> Backend:
    """Start the in-process emulator and a client for it; both are added to *closers*."""
    from strategies.gemini.emulator import ExpiryStyle, Fault, GeminiEmulator, make_client

    knobs = pipeline.backend.emulator
    emulator = GeminiEmulator(
        seed=knobs.seed,
        min_cache_tokens=knobs.min_cache_tokens,
        expiry_style=knobs.expiry_style or ExpiryStyle.GEMINI,
        invalid_rate=knobs.invalid_rate,
        invalid_rate_slope=knobs.invalid_rate_slope,
        latency=knobs.latency,
    )
    for spec in knobs.faults:
        emulator.inject(
            Fault(
                kind=spec.kind,
                rate=spec.rate,
                at=frozenset(spec.at) if spec.at is not None else None,
                times=spec.times,
                route=spec.route,
                retry_delay=spec.retry_delay,
                retry_after_header=spec.retry_after_header,
                delay=spec.delay,
            )
        )
    try:
        base_url = await asyncio.to_thread(emulator.start)
    except RuntimeError as exc:
        raise BackendError(f"the Gemini emulator did not start: {exc}") from None

    async def stop() -> None:
        await asyncio.to_thread(emulator.stop)

    closers.append(stop)
    client = make_client(base_url, api_version=pipeline.backend.api_version)
    closers.append(_client_closer(client))
    backend = _gemini_backend(
        pipeline, client, label=f"emulator {pipeline.backend.model} (in-process, seed {knobs.seed})"
    )
    return attrs.evolve(backend, emulator=emulator)
