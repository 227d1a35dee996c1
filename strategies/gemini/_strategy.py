"""The Gemini strategy: one stage request -> one ``generate_content`` call of the real SDK.

The strategy never creates or renews the context cache itself: the runner
injects the current :class:`~._cache.CacheHandle` into every attempt and owns
its renewal.  A request names the cache (and then carries no system
instruction or tools, which the service would refuse); when the content was too
small to cache, or a stage switches to another model, the instructions travel
inline instead.  Every answer, good or bad, comes back with its usage and
metadata, so a blocked prompt or a SAFETY stop is an INVALID attempt that keeps
its safety ratings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import pydantic
import structlog
from google.genai import types

from stagedretry import (
    Outcome,
    Request,
    Response,
    Rule,
    SharedResource,
    StageContext,
    TransientError,
)

from ._cache import CacheHandle, GeminiContextCache, check_client, fingerprint, model_path
from ._errors import classify as _classify
from ._errors import redact
from ._meta import SAFETY_FINISH_REASONS, answer_text, response_meta, response_usage
from ._schema import ResponseSchema

if TYPE_CHECKING:
    from google import genai

__all__ = ["STAGE_PARAMS", "GeminiStrategy"]

_log = structlog.get_logger("stagedretry.gemini")

_FLOAT_PARAMS: Final = ("temperature", "top_p", "top_k", "presence_penalty", "frequency_penalty")
_INT_PARAMS: Final = ("max_output_tokens", "seed")
STAGE_PARAMS: Final = frozenset(
    {
        *_FLOAT_PARAMS,
        *_INT_PARAMS,
        "model",
        "stop_sequences",
        "thinking_budget",
        "response_mime_type",
    }
)
"""The stage params the strategy maps onto ``GenerateContentConfig``."""

_JSON_MIME: Final = "application/json"
_CONFIG_MEMO: Final = 512
_NO_AFC: Final = types.AutomaticFunctionCallingConfig(disable=True)


def _api_key(client: Any) -> str:
    key = getattr(getattr(client, "_api_client", None), "api_key", None)
    return key if isinstance(key, str) else ""


class GeminiStrategy:
    """Send each stage's request to Gemini through a user's ``google.genai.Client``.

    *model* is the default model (a stage may override it with the ``model``
    param).  With *cache*, requests name the shared context cache found in
    ``ctx.resources[cache.name]``; the runner takes it from :meth:`shared_resources`
    (passing it as ``resources=[cache]`` too is harmless).  *response_schema* (a
    pydantic model or a schema dict) asks for JSON of that shape; a partial stage
    asks for the failed fields only.
    *rules* classify exceptions before the Gemini rules do.  *http_timeout*
    (seconds) bounds each HTTP request on the SDK's side.

    Build the client with ``HttpOptions(retry_options=HttpRetryOptions(attempts=1))``
    and an explicit ``api_version``: the engine does the retrying, and counts
    every request.
    """

    def __init__(
        self,
        client: genai.Client,
        model: str,
        *,
        cache: GeminiContextCache | None = None,
        response_schema: Any = None,
        safety_settings: Sequence[types.SafetySetting | Mapping[str, Any]] | None = None,
        system_instruction: Any = None,
        rules: Iterable[Rule] = (),
        http_timeout: float | None = None,
    ) -> None:
        if cache is not None and system_instruction is not None:
            raise ValueError(
                "give the system instruction to the GeminiContextCache: a request naming a "
                "cache may not carry its own"
            )
        if http_timeout is not None and (not math.isfinite(http_timeout) or http_timeout <= 0):
            raise ValueError(
                f"http_timeout must be a positive number of seconds, got {http_timeout!r}"
            )
        self._client = client
        self._aio_models = client.aio.models
        self._model = model
        self._cache = cache
        self._schema = ResponseSchema.of(response_schema)
        self._safety = (
            [types.SafetySetting.model_validate(s) for s in safety_settings]
            if safety_settings is not None
            else None
        )
        self._system_instruction = system_instruction
        self._rules = tuple(rules)
        self._http_options = (
            types.HttpOptions(timeout=max(1, math.ceil(http_timeout * 1000)))
            if http_timeout is not None
            else None
        )
        self._secret = _api_key(client)
        self._configs: dict[tuple[Any, ...], tuple[Any, types.GenerateContentConfig]] = {}
        self._warned: set[tuple[str, str]] = set()
        check_client(client)

    @property
    def model(self) -> str:
        """The default model."""
        return self._model

    @property
    def cache(self) -> GeminiContextCache | None:
        """The shared context cache the requests name, if any."""
        return self._cache

    def shared_resources(self) -> Sequence[SharedResource]:
        """The cache, which the runner then prepares once and renews for every worker."""
        return () if self._cache is None else (self._cache,)

    def fingerprint_data(self) -> Mapping[str, object]:
        """What decides an answer, for a journal: model, schema, safety, instructions' hashes.

        The cache is known by its own fingerprint (model, system instruction,
        contents, tools), never by its server-side name, which changes on renewal.
        """
        schema = self._schema
        safety = self._safety
        return {
            "model": self._model,
            "schema": dict(schema.schema) if schema is not None else None,
            "safety": [s.model_dump(mode="json", exclude_none=True) for s in safety]
            if safety is not None
            else None,
            # The cache's own hash, of the model and the instruction alone.
            "system_instruction": fingerprint(self._model, self._system_instruction, (), ())
            if self._system_instruction is not None
            else None,
            "cache": self._cache.fingerprint if self._cache is not None else None,
        }

    # -- Strategy -------------------------------------------------------------------------------

    async def generate(self, request: Request, ctx: StageContext) -> Response:
        """Send one request; return its text (``None`` when withheld) with usage and metadata."""
        params = request.params
        model = str(params.get("model", self._model))
        handle = self._handle(ctx)
        use_cache = (
            handle is not None and handle.name is not None and model_path(model) == handle.model
        )
        config = self._config(request, handle if use_cache else None)
        contents: Any = request.prompt
        cache = self._cache
        if not use_cache and cache is not None and cache.contents:
            contents = [*cache.contents, types.UserContent(parts=[types.Part(text=request.prompt)])]
        try:
            answer = await self._aio_models.generate_content(
                model=model, contents=contents, config=config
            )
        except (pydantic.ValidationError, UserWarning) as exc:
            # The body arrived but could not be read: a known field of the wrong type, or
            # (only when warnings are errors) an enum value this SDK does not know yet.
            if isinstance(exc, UserWarning) and "is not a valid" not in str(exc):
                raise
            raise TransientError(
                redact(f"unreadable response: {type(exc).__name__}: {exc}", self._secret)[:300]
            ) from exc
        meta = response_meta(answer)
        usage = response_usage(answer)
        if meta.blocked or meta.finish_reason in SAFETY_FINISH_REASONS:
            return Response(None, usage, meta)
        return Response(answer_text(answer), usage, meta)

    def classify(self, exc: BaseException) -> Outcome | None:
        """The user's rules first, then the Gemini rules (a lost cache names this cache)."""
        for rule in self._rules:
            outcome = rule(exc)
            if outcome is not None:
                return outcome
        cache = self._cache
        outcome = _classify(exc, resource=cache.name if cache is not None else None)
        if outcome is not None and self._secret and self._secret in outcome.message:
            outcome = Outcome(
                outcome.kind,
                redact(outcome.message, self._secret),
                retry_after=outcome.retry_after,
                resource=outcome.resource,
            )
        return outcome

    # -- building requests ----------------------------------------------------------------------

    def _handle(self, ctx: StageContext) -> CacheHandle | None:
        cache = self._cache
        if cache is None:
            return None
        handle = ctx.resources.get(cache.name)
        if handle is None:
            raise RuntimeError(
                f"the GeminiContextCache {cache.name!r} is not among the runner's resources: "
                "pass it as Runner(..., resources=[cache])"
            )
        if not isinstance(handle, CacheHandle):
            raise TypeError(
                f"ctx.resources[{cache.name!r}] is a {type(handle).__name__}, not a CacheHandle"
            )
        return handle

    def _config(self, request: Request, handle: CacheHandle | None) -> types.GenerateContentConfig:
        """The request's config, built once per stage, field list and cache generation."""
        stage = request.stage
        key = (id(stage), request.fields, handle)
        found = self._configs.get(key)
        if found is not None and found[0] is stage:
            return found[1]
        config = self._build_config(request, handle)
        if len(self._configs) >= _CONFIG_MEMO:
            self._configs.clear()
        # The stage is kept beside its config so a recycled id() never matches another stage.
        self._configs[key] = (stage, config)
        return config

    def _build_config(
        self, request: Request, handle: CacheHandle | None
    ) -> types.GenerateContentConfig:
        stage = request.stage
        fields: dict[str, Any] = {"automatic_function_calling": _NO_AFC}
        for name, value in stage.params.items():
            if name in _FLOAT_PARAMS:
                fields[name] = _number(stage.name, name, value, float)
            elif name in _INT_PARAMS:
                fields[name] = _number(stage.name, name, value, int)
            elif name == "stop_sequences":
                seq = (value,) if isinstance(value, str) else value
                fields[name] = [str(s) for s in seq] if isinstance(seq, tuple) else None
            elif name == "thinking_budget":
                fields["thinking_config"] = types.ThinkingConfig(
                    thinking_budget=_number(stage.name, name, value, int)
                )
            elif name == "response_mime_type":
                fields[name] = str(value)
            elif name != "model" and (stage.name, name) not in self._warned:
                self._warned.add((stage.name, name))
                _log.warning(
                    "gemini_stage_param_ignored",
                    stage=stage.name,
                    param=name,
                    known=sorted(STAGE_PARAMS),
                )
        schema = self._schema
        if schema is not None:
            fields.setdefault("response_mime_type", _JSON_MIME)
            chosen = schema.for_fields(request.fields)
            if schema.json_schema:
                fields["response_json_schema"] = chosen
            else:
                fields["response_schema"] = chosen
        if handle is not None:
            fields["cached_content"] = handle.name
        else:
            cache = self._cache
            system = cache.system_instruction if cache is not None else self._system_instruction
            if system is not None:
                fields["system_instruction"] = system
            if cache is not None and cache.tools:
                fields["tools"] = list(cache.tools)
        if self._safety is not None:
            fields["safety_settings"] = self._safety
        if self._http_options is not None:
            fields["http_options"] = self._http_options
        return types.GenerateContentConfig(**fields)

    def __repr__(self) -> str:
        cache = self._cache.display_name if self._cache is not None else None
        return f"GeminiStrategy(model={self._model!r}, cache={cache!r})"


def _number(stage: str, name: str, value: object, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"stage {stage!r}: param {name!r} must be a number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise ValueError(f"stage {stage!r}: param {name!r} must be a whole number, got {value!r}")
    return kind(value)
