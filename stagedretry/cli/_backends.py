"""The app's side of a backend: its inputs from the pipeline, the API key, the request log.

What a backend is and how it is built belongs to its provider (a
:class:`~strategies.backend.BackendSpec`, found through the registry).  Here:
the :class:`~strategies.backend.JobInputs` the pipeline's common sections
give every backend, the checks that need no network, the request log wrapped
around the strategy, and turning a setup failure into one sentence.  Whatever a
build starts is put away by :func:`~strategies.backend.close_all` over the
built backend's closers; if building fails half way, what was already started
is put away before the error is raised.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

import attrs

from strategies.backend import BackendError, Built, CachePrice, Closer, JobInputs, close_all

from .. import (
    BatchEntry,
    BatchJobState,
    DeclaresParams,
    Outcome,
    Plan,
    PlanError,
    PlansResources,
    Request,
    Response,
    SharedResource,
    StageContext,
    Strategy,
    SubmitsBatchJobs,
    UsesResources,
    Validator,
    json_pointer,
    validators,
)
from .._redact import ENVIRONMENT_KEYS, HoldsSecrets, Secrets
from ._batch_mode import check_batch_backend
from ._endpoint import LOOPBACK_KEY, is_loopback
from ._files import FileIOError, IOFailures, cannot_write, log_write_failed, open_log, remedy
from .pipeline import Pipeline, choose_price

API_KEY_ENV: Final = "GEMINI_API_KEY"
API_KEY_ENVS: Final = (API_KEY_ENV, "GOOGLE_API_KEY")
"""Where the app looks for the Gemini API key, in order: the SDK's two variables."""
NEEDS_KEY: Final = f"an API key in the {API_KEY_ENV} environment variable (or GOOGLE_API_KEY)"


def api_key_variable() -> str:
    """The variable the key is read from: the first of :data:`API_KEY_ENVS` that is set."""
    for name in API_KEY_ENVS:
        if os.environ.get(name, "").strip():
            return name
    return API_KEY_ENV


def api_key_from_env() -> str | None:
    """The Gemini API key from ``GEMINI_API_KEY``, else ``GOOGLE_API_KEY``, stripped, or
    ``None``."""
    key = os.environ.get(api_key_variable(), "").strip()
    return key or None


def key_on_loopback(pipeline: Pipeline) -> bool:
    """Whether *pipeline*'s backend wants a key but talks to an endpoint on this machine's
    loopback (its ``base_url``, such as an emulator's), where none is needed."""
    backend = pipeline.backend
    return backend.spec.needs_api_key and is_loopback(getattr(backend.section, "base_url", None))


def run_api_key(pipeline: Pipeline) -> str | None:
    """The key a run of *pipeline* sends: the environment's; with none there, the loopback
    placeholder (never shown) for an endpoint on loopback; ``None`` for a backend that needs
    no key."""
    if not pipeline.backend.spec.needs_api_key:
        return None
    key = api_key_from_env()
    if key is None and key_on_loopback(pipeline):
        return LOOPBACK_KEY
    return key


def key_problem(key: str) -> str | None:
    """Why *key* cannot be an API key, in words that never show it, or ``None``.

    A key travels in an HTTP header, so it is printable ASCII without spaces (a
    Gemini key is letters, digits, ``-`` and ``_``): a newline or an escape
    pasted into the variable would fail every request, a non-ASCII letter could
    not even be sent.
    """
    for position, char in enumerate(key, start=1):
        if not ("!" <= char <= "~"):
            if not char.isprintable():
                kind = "a control character (a line break, a tab, an escape)"
            elif char.isspace():
                kind = "a space"
            else:
                kind = "a non-ASCII character"
            return (
                f"the {api_key_variable()} environment variable holds {kind} at position "
                f"{position}, "
                "which no API key has: set it to the key alone"
            )
    return None


def command_secrets(key: str | None = None) -> Secrets:
    """What a command masks: *key* and the keys in ``GEMINI_API_KEY`` and ``GOOGLE_API_KEY``."""
    return Secrets.from_environment([key])


def short_keys() -> list[tuple[str, int]]:
    """``(variable, length)`` of each key variable set to a value too short to be masked."""
    found = []
    for name in ENVIRONMENT_KEYS:
        value = os.environ.get(name, "").strip()
        if value and Secrets([value]).skipped:
            found.append((name, len(value)))
    return found


def output_validator(pipeline: Pipeline) -> Validator | None:
    """The validator the output section declares, or ``None`` for "any JSON object"."""
    out = pipeline.output
    if out.model_class is not None:
        return validators.pydantic(out.model_class)
    if out.schema is not None:
        return validators.json_schema(out.schema)
    return None


def cache_prices(pipeline: Pipeline) -> Callable[[str], CachePrice | None]:
    """The price a model's cache is weighed with: the pipeline's ``[prices]`` entry, else
    genai-prices' data with our storage table (``None``: no price known)."""

    def price_of(model: str) -> CachePrice | None:
        chosen = choose_price(model, pipeline.prices)
        if chosen is None:
            return None
        price = chosen.price
        return CachePrice(price.input, price.cached_input, price.cache_storage or 0.0)

    return price_of


def job_inputs(
    pipeline: Pipeline, *, api_key: str | None = None, expected_items: int | None = None
) -> JobInputs:
    """What the pipeline's common sections give every backend; *expected_items* is the
    number of items the run takes, when known."""
    cache = pipeline.cache
    return JobInputs(
        model=pipeline.backend.model,
        system_instruction=cache.system_instruction if cache is not None else None,
        cache=cache.options if cache is not None else None,
        output_model=pipeline.output.model_class,
        output_schema=pipeline.output.shape,
        validator=output_validator(pipeline),
        api_key=api_key,
        cache_prices=cache_prices(pipeline),
        expected_items=expected_items,
    )


def check_backend(pipeline: Pipeline, *, need_key: bool) -> None:
    """Every check that needs no network: the backend's own, and a key where it needs one."""
    backend = pipeline.backend
    if backend.spec.needs_api_key and need_key:
        key = api_key_from_env()
        if key is None and not key_on_loopback(pipeline):
            raise BackendError(
                f"the {backend.kind} backend needs {NEEDS_KEY}; an endpoint on loopback, "
                'such as an emulator\'s base_url = "http://127.0.0.1:PORT", needs none'
            )
        problem = key_problem(key) if key is not None else None
        if problem is not None:
            raise BackendError(problem)
    try:
        backend.spec.check(backend.section, job_inputs(pipeline))
    except PlanError as exc:
        raise PlanError(f"{pipeline.source.name}: {exc.path}", exc.problem) from None


# -- the request log ---------------------------------------------------------------------------


def _sent_params(params: object) -> dict[str, Any]:
    """The stage params the strategy received, for the audit line (unset ones left out)."""
    if attrs.has(type(params)):
        values = attrs.asdict(params)  # type: ignore[arg-type]
    else:
        values = dict(params) if isinstance(params, Mapping) else {}
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None}


class RecordingStrategy:
    """Append one JSON line per request to a log *before* sending it, then delegate.

    The log is an audit trail: which item, stage and attempt was sent when.  It
    is flushed per line, so it survives the death of the process; *secrets*
    are scrubbed from it as from every file a run writes.  The wrapped
    strategy's stage-params type and shared resources are its own, so the
    runner checks and prepares them as without the log.

    A line that cannot be written (a full disk) is reported once to *failures*
    (which stops the run from taking new items) and the log is written no
    more; the requests already on their way are still sent.
    """

    __slots__ = ("_failures", "_file", "_inner", "_path", "_secrets")

    def __init__(
        self,
        inner: Strategy,
        file: IO[str],
        secrets: Secrets | None = None,
        *,
        path: Path | None = None,
        failures: IOFailures | None = None,
    ) -> None:
        self._inner = inner
        self._file: IO[str] | None = file
        self._secrets = secrets or Secrets()
        self._path = path if path is not None else Path(getattr(file, "name", "?"))
        self._failures = failures

    @property
    def params_type(self) -> type[Any] | None:
        """The wrapped strategy's stage-params type (``None`` if it declares none)."""
        inner = self._inner
        return inner.params_type if isinstance(inner, DeclaresParams) else None

    async def generate(self, request: Request, ctx: StageContext) -> Response:
        self._log_request(request, ctx)
        return await self._inner.generate(request, ctx)

    def _log_request(self, request: Request, ctx: StageContext) -> None:
        entry = {
            "item": request.item_id,
            "stage": request.stage.name,
            "attempt": ctx.attempt,
            # A log is an edge: paths are shown as JSON Pointers ("/price.usd").
            "fields": (
                [json_pointer(p) for p in request.fields] if request.fields is not None else None
            ),
            "params": _sent_params(ctx.params),
            "time": round(time.time(), 6),
        }
        self._write(json.dumps(self._secrets.leaves(entry), default=str) + "\n")

    def _write(self, line: str) -> None:
        file = self._file
        if file is None:
            return
        try:
            file.write(line)
            file.flush()
        except OSError as exc:
            self._file = None
            log_write_failed("request log", self._path, exc, self._failures, lost="requests")

    def classify(self, exc: BaseException) -> Outcome | None:
        return self._inner.classify(exc)

    def secrets(self) -> Sequence[str]:
        """The wrapped strategy's secrets, for the runner to mask."""
        inner = self._inner
        return tuple(inner.secrets()) if isinstance(inner, HoldsSecrets) else ()

    def shared_resources(self) -> Sequence[SharedResource]:
        """The wrapped strategy's shared resources: recording needs none of its own."""
        inner = self._inner
        return inner.shared_resources() if isinstance(inner, UsesResources) else ()

    def plan_resources(self, plan: Plan, params: Sequence[Any]) -> Sequence[SharedResource]:
        """The wrapped strategy's resources for *plan* (e.g. another model's cache)."""
        inner = self._inner
        return inner.plan_resources(plan, params) if isinstance(inner, PlansResources) else ()

    def __repr__(self) -> str:
        return f"RecordingStrategy({self._inner!r})"


class RecordingBatchStrategy(RecordingStrategy):
    """A :class:`RecordingStrategy` over a strategy that submits batch jobs: each request of a
    job is logged, as a request sent on its own is, before the job is submitted."""

    __slots__ = ()

    async def submit_batch(self, entries: Sequence[BatchEntry]) -> str:
        for entry in entries:
            self._log_request(entry.request, entry.ctx)
        inner = self._inner
        assert isinstance(inner, SubmitsBatchJobs)
        return await inner.submit_batch(entries)

    async def poll_batch(self, name: str) -> BatchJobState:
        inner = self._inner
        assert isinstance(inner, SubmitsBatchJobs)
        return await inner.poll_batch(name)


# -- building ----------------------------------------------------------------------------------


async def build_backend(
    pipeline: Pipeline,
    *,
    api_key: str | None,
    secrets: Secrets | None = None,
    failures: IOFailures | None = None,
    expected_items: int | None = None,
) -> Built:
    """Set up the pipeline's backend; raise :class:`BackendError` with one clear sentence.

    Nothing is left running when it raises: what was started is closed first.
    *api_key* is used before ``GEMINI_API_KEY``; a backend that needs no key
    gets it too when there is one (an emulator then sends it, as a user's code
    would).  *secrets* are masked in the request log (default: the key and
    the environment's).  Put the result away with ``close_all(built.closers)``.
    Raises :class:`FileIOError` when the request log cannot be opened; a later
    write that fails goes to *failures*.
    """
    check_backend(pipeline, need_key=api_key is None)
    backend = pipeline.backend
    key = api_key or api_key_from_env()
    try:
        built = await backend.spec.build(
            backend.section, job_inputs(pipeline, api_key=key, expected_items=expected_items)
        )
    except (ValueError, TypeError) as exc:
        # A setting the pipeline's checks let through but the strategy refuses.
        raise BackendError(f"the {backend.kind} backend cannot be set up: {exc}") from None
    try:
        check_batch_backend(pipeline, built.strategy)
    except BackendError:
        await close_all(built.closers)
        raise
    log_path = pipeline.run.request_log
    if log_path is None:
        return built
    try:
        file = open_log("request log", log_path)
    except BaseException:
        await close_all(built.closers)
        raise

    async def close_log() -> None:
        try:
            file.close()
        except OSError as exc:  # the last buffered line could not be written
            if failures is not None:
                error = cannot_write("request log", log_path, exc, FileIOError)
                failures.add(f"{error}; {remedy(error)}")

    closers: tuple[Closer, ...] = (close_log, *built.closers)
    masking = command_secrets(key) if secrets is None else secrets
    wrapper = (
        RecordingBatchStrategy
        if isinstance(built.strategy, SubmitsBatchJobs)
        else RecordingStrategy
    )
    recording = wrapper(built.strategy, file, masking, path=log_path, failures=failures)
    return attrs.evolve(built, strategy=recording, closers=closers)
