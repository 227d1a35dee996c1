"""The Gemini strategy: one stage request -> one ``generate_content`` call of the real SDK.

The strategy never creates or renews the context cache itself: the runner
injects the current :class:`~._cache.CacheHandle` into every attempt and owns
its renewal.  A request names the cache of its stage's model (and then carries no
system instruction or tools, which the service would refuse): the job's cache, or
for a stage on another model that model's own (:mod:`._model_caches`, made only when
it pays).  When the content was too small to cache, or that model's cache does not
pay, the instructions travel inline instead.  Every answer, good or bad, comes
back with its usage and metadata, so a blocked prompt or a SAFETY stop is an
INVALID attempt that keeps its safety ratings.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import pydantic
from google.genai import errors, types

from stagedretry import (
    BatchEntry,
    BatchJobLost,
    BatchJobState,
    FieldError,
    Outcome,
    Plan,
    Request,
    Response,
    Rule,
    Secrets,
    SharedResource,
    StageContext,
    StopRun,
    TransientError,
    Usage,
    ValidationFailed,
    settable_keys,
)

from .._sampling import params_of
from .._tokens import count_tokens
from ..backend import MAX_WAIT, CacheChoice, CachePrice
from ..quota import Quota, QuotaAdmission, make_admission
from ._batch import (
    DONE_STATES,
    INLINE_LIMIT,
    REFOUND_STATES,
    answer_of,
    display_name,
    read_line,
    wire_request,
)
from ._cache import CacheHandle, GeminiContextCache, fingerprint, model_path
from ._client_check import check_client
from ._errors import cache_gone, cache_lost, flex_shed, redact
from ._errors import classify as _classify
from ._meta import SAFETY_FINISH_REASONS, answer_text, response_meta, response_usage
from ._model_caches import ModelCache, Reach, stage_models
from ._params import FLEX, JSON_MIME, GeminiParams
from ._schema import ResponseSchema

if TYPE_CHECKING:
    from google import genai

__all__ = ["STAGE_PARAMS", "GeminiStrategy"]

STAGE_PARAMS: Final = frozenset(settable_keys(GeminiParams))
"""The stage params the strategy maps onto ``GenerateContentConfig`` (see :class:`GeminiParams`)."""

_CONFIG_MEMO: Final = 512
_NO_AFC: Final = types.AutomaticFunctionCallingConfig(disable=True)


class GeminiStrategy:
    """Send each stage's request to Gemini through a user's ``google.genai.Client``.

    One attempt is one ``client.aio.models.generate_content`` call; its answer
    comes back as a :class:`~stagedretry.Response` with the text (``None`` when
    the prompt was blocked or the answer stopped for safety), the tokens of every
    kind (:class:`~stagedretry.Usage`) and the metadata (finish reason, safety
    ratings, model version).

    Arguments:

    - *model*: the default model, e.g. ``"gemini-2.5-flash"``; a stage may name
      another with its ``model`` param.
    - *cache*: a :class:`GeminiContextCache`; requests then name the cache found
      in ``ctx.resources[cache.name]`` (the runner takes it from
      :meth:`shared_resources`; passing it as ``resources=[cache]`` too is
      harmless).  A stage on another model gets that model's own cache of the same
      instructions (:meth:`plan_resources`), made when the first item reaches it and
      only if it pays; else it sends the instructions inline (:meth:`cache_choices`
      says which and why).
    - *cache_prices*: USD per million tokens of each model
      (:class:`~strategies.backend.CachePrice`), as a mapping by model name or a
      function of it, to weigh whether another model's cache pays; a model without a
      price gets its cache as the job's model does.  Default: none.
    - *expected_items*: how many items the run takes (default ``None``: unknown, taken
      as as many again as have started), for the same choice.
    - *response_schema*: a pydantic model class or a JSON Schema dict; answers are
      asked for as JSON of that shape, and a partial stage asks for the failed
      fields only.
    - *safety_settings*, *system_instruction* (not together with *cache*, which
      holds it), *rules* (classify exceptions before the Gemini rules do).
    - *quota*: a :class:`~strategies.quota.Quota` (or a ready
      :class:`~strategies.quota.QuotaAdmission`, to share one between strategies or to
      choose its storage): each request then waits for room under its model's limits
      before it is sent (see :meth:`admit`).  Default: no admission; 429s are only
      reacted to.
    - *http_timeout*: seconds that bound each HTTP request on the SDK's side, at most
      3600 (default: none; the runner's per-attempt timeout still applies).
    - *batch_inline_limit*: bytes; a batch job whose requests take more goes as an
      uploaded JSONL file instead of inlined requests (default 20 MiB, the service's).
    - *batch_lookback*: how many of the newest batch jobs :meth:`submit_batch` looks
      through for the one it is about to create (default 100; 0: no look, one call less).
    - *api_key*: the key *client* sends, if it is not in ``GEMINI_API_KEY`` or
      ``GOOGLE_API_KEY`` (the SDK does not tell which key a client holds).  It
      is only masked: in this strategy's messages, in the runner's errors, logs
      and journal (:meth:`secrets`), in any case and any piece of 8 characters.

    Stage params are :class:`GeminiParams` (``params_type``): the runner checks
    every stage against it when it is built.  Raises :class:`ValueError` for a
    *cache* together with a *system_instruction*, or a non-positive
    *http_timeout*.

    Build the client with ``HttpOptions(api_version="v1beta",
    retry_options=HttpRetryOptions(attempts=1))`` (or use
    :func:`~strategies.gemini.connect`): the engine does the retrying, and counts every
    request.  A client that retries on its own (no ``retry_options`` on the aiohttp
    transport, or more than one attempt) or calls another API version than ``v1beta``
    draws one ``UserWarning`` per client, naming the fix.
    """

    params_type: Final = GeminiParams
    """Stage params are checked against :class:`GeminiParams` when a runner is built."""

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
        api_key: str | None = None,
        quota: Quota | QuotaAdmission | None = None,
        batch_inline_limit: int = INLINE_LIMIT,
        batch_lookback: int = 100,
        cache_prices: Mapping[str, CachePrice] | Callable[[str], CachePrice | None] | None = None,
        expected_items: int | None = None,
    ) -> None:
        if cache is not None and system_instruction is not None:
            raise ValueError(
                "give the system instruction to the GeminiContextCache: a request naming a "
                "cache may not carry its own"
            )
        if http_timeout is not None and not (
            math.isfinite(http_timeout) and 0 < http_timeout <= MAX_WAIT
        ):
            raise ValueError(
                f"http_timeout must be a positive number of seconds, at most "
                f"{MAX_WAIT:g}, got {http_timeout!r}"
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
        self._api_key = api_key
        self._secrets = Secrets.from_environment([api_key])
        self._configs: dict[tuple[Any, ...], tuple[Any, types.GenerateContentConfig]] = {}
        self._admission = make_admission(quota)
        if batch_inline_limit <= 0 or batch_lookback < 0:
            raise ValueError(
                "batch_inline_limit must be positive and batch_lookback not negative, got "
                f"{batch_inline_limit!r} and {batch_lookback!r}"
            )
        self._inline_limit = batch_inline_limit
        self._batch_lookback = batch_lookback
        if expected_items is not None and expected_items < 0:
            raise ValueError(f"expected_items must be 0 or more, got {expected_items!r}")
        self._prices = _price_lookup(cache_prices)
        self._expected_items = expected_items
        self._reach = Reach()
        # The caches of the other models the plans' stages name, by ``models/<id>``.
        self._model_caches: dict[str, ModelCache] = {}
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

    def plan_resources(self, plan: Plan, params: Sequence[Any]) -> Sequence[SharedResource]:
        """A :class:`ModelCache` for each model *plan*'s stages name besides the cache's
        (:class:`stagedretry.PlansResources`); one per model, kept across runners."""
        cache = self._cache
        if cache is None:
            return ()
        models = stage_models(plan.stages, params, self._model)
        self._reach.stages_on(models)
        by_model: dict[str, list[str]] = {}
        for stage, model in models.items():
            by_model.setdefault(model, []).append(stage)
        # The job's cache serves the stages on its model, and only them.  A plan with no stage
        # on it prepares it at the first attempt all the same, as the cache given was made for.
        on_its_model = by_model.get(cache.model)
        if on_its_model:
            cache.add_stages(on_its_model)
        made = []
        for model, stages in by_model.items():
            if model == cache.model:
                continue
            found = self._model_caches.get(model)
            if found is None:
                tokens = _instruction_tokens(cache.system_instruction) + sum(
                    _instruction_tokens(c) for c in cache.contents
                )
                found = ModelCache(
                    self._client,
                    cache,
                    model,
                    reach=self._reach,
                    tokens=tokens,
                    price=self._prices(model.removeprefix("models/")),
                    expected_items=self._expected_items,
                    api_key=self._api_key,
                )
                self._model_caches[model] = found
            found.add_stages(stages)
            made.append(found)
        return made

    @property
    def model_caches(self) -> tuple[ModelCache, ...]:
        """The caches of the other models the plans' stages name (see :meth:`plan_resources`)."""
        return tuple(self._model_caches.values())

    def cache_choices(self) -> tuple[CacheChoice, ...]:
        """For each model whose stages sent requests: whether they named a cache, and why not.

        Empty without a cache.  A model none of whose stages was reached is left out.
        """
        cache = self._cache
        if cache is None:
            return ()
        reach = self._reach
        found = []
        if reach.requests(cache.model):
            found.append(
                CacheChoice(
                    cache.model.removeprefix("models/"), cache.stages or (), cache.inline_reason
                )
            )
        found.extend(c.choice() for c in self._model_caches.values() if reach.requests(c.model))
        return tuple(found)

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

    @property
    def admission(self) -> QuotaAdmission | None:
        """The quota admission every request waits for, if any."""
        return self._admission

    async def admit(self, request: Request, ctx: StageContext) -> Callable[[Usage | None], None]:
        """Wait for room under the quota of the stage's model (:class:`stagedretry.Admits`).

        The request's input tokens are estimated locally (the prompt, and the cached or
        inline instructions, by the emulator's own token rule) and corrected by the
        real ``promptTokenCount`` when the answer comes back.
        """
        admission = self._admission
        if admission is None:
            return _no_settle
        model = params_of(ctx, GeminiParams).model or self._model
        return await admission.admit(model, self.estimate_tokens(request, ctx))

    def estimate_tokens(self, request: Request, ctx: StageContext) -> int:
        """The request's input tokens by the local rule: what quota admission charges first."""
        tokens = count_tokens(request.prompt)
        cache = self._cache
        if cache is None:
            return tokens + _instruction_tokens(self._system_instruction)
        model = params_of(ctx, GeminiParams).model or self._model
        _, handle = self._handle(ctx, model)
        if (
            handle is not None
            and handle.name is not None
            and handle.token_count is not None
            and model_path(model) == handle.model
        ):
            return tokens + handle.token_count
        return (
            tokens
            + _instruction_tokens(cache.system_instruction)
            + sum(_instruction_tokens(c) for c in cache.contents or ())
        )

    # -- Strategy -------------------------------------------------------------------------------

    def _prepare(
        self, request: Request, ctx: StageContext, *, inline: bool = False
    ) -> tuple[str, Any, types.GenerateContentConfig, bool, GeminiContextCache | None]:
        """The model, contents and config of one request, whether it names its cache, and the
        cache whose instructions it carries (named or inline).

        *inline* sends the cache's instructions and contents inline, first, even when the
        cache could be named (a batch job: the stable prefix first lets implicit caching
        apply, where an explicit cache is not reliably honoured).
        """
        params = params_of(ctx, GeminiParams)
        model = params.model or self._model
        if inline:
            # No cache is prepared for a batch job: the job's instructions go inline.
            cache, handle = self._cache, None
        else:
            cache, handle = self._handle(ctx, model)
        use_cache = (
            handle is not None and handle.name is not None and model_path(model) == handle.model
        )
        config = self._config(request, params, handle if use_cache else None)
        contents: Any = request.prompt
        if cache is not None and not inline:
            self._reach.saw(ctx, model_path(model))
        if not use_cache and cache is not None and cache.contents:
            contents = [*cache.contents, types.UserContent(parts=[types.Part(text=request.prompt)])]
        return model, contents, config, use_cache, cache

    async def generate(self, request: Request, ctx: StageContext) -> Response:
        """Send one request; return its text (``None`` when withheld) with usage and metadata."""
        model, contents, config, use_cache, cache = self._prepare(request, ctx)
        tier = params_of(ctx, GeminiParams).service_tier
        try:
            answer = await self._aio_models.generate_content(
                model=model, contents=contents, config=config
            )
        except errors.APIError as exc:
            if use_cache and cache is not None and cache_gone(exc, named_cache=True):
                # Known from the request, not only from the words: this request named the
                # cache, so a 404 that names no model means the cache is gone (Vertex AI).
                raise cache_lost(exc, resource=cache.name, secrets=self._secrets) from exc
            if tier == FLEX:
                # Known from the request: only a request sent on the flex tier can be shed;
                # the same 503 on standard stays TRANSIENT.
                shed = flex_shed(exc, self._secrets)
                if shed is not None:
                    raise shed from exc
            raise
        except (pydantic.ValidationError, UserWarning) as exc:
            # The body arrived but could not be read: a known field of the wrong type, or
            # (only when warnings are errors) an enum value this SDK does not know yet.
            if isinstance(exc, UserWarning) and "is not a valid" not in str(exc):
                raise
            raise TransientError(
                redact(f"unreadable response: {type(exc).__name__}: {exc}", self._secrets)[:300]
            ) from exc
        except RecursionError:
            # The SDK reads the body, and with a JSON schema the answer too, with json.loads:
            # nested past Python's recursion limit, that is an answer no validator could read
            # (a model looping on "[[[[" does it), so invalid, as unreadable JSON is. The SDK
            # raised before handing the response over: its usage cannot be recorded.
            raise ValidationFailed(
                [FieldError("", "unreadable response: nested too deeply to parse")], None
            ) from None
        meta = response_meta(answer, tier)
        usage = response_usage(answer)
        if meta.blocked or meta.finish_reason in SAFETY_FINISH_REASONS:
            return Response(None, usage, meta)
        return Response(answer_text(answer), usage, meta)

    # -- SubmitsBatchJobs -----------------------------------------------------------------------

    async def submit_batch(self, entries: Sequence[BatchEntry]) -> str:
        """Create one batch job answering *entries* (one model); return its ``batches/…`` name.

        Each request is built as :meth:`generate` builds it, but with the cache's
        instructions inline and first (no ``cached_content``), and carries its entry's key
        in its ``metadata`` (a JSONL line: ``key``).  Inlined while the body stays under
        *batch_inline_limit* bytes, else uploaded as a JSONL file.  A job with the same
        deterministic display name that is pending, running or succeeded is found with
        one ``batches.list`` look at the newest *batch_lookback* jobs and returned instead
        of creating another (a run restarted just after it created the job).  Raises
        :class:`~stagedretry.StopRun` on Vertex AI (its batch jobs read Cloud Storage or
        BigQuery), :class:`ValueError` for no entries or entries on several models, and
        the SDK's errors as :meth:`generate` does.
        """
        if self._client.vertexai:
            raise StopRun(
                "batch mode needs the Gemini Developer API: a Vertex AI batch job reads its "
                "requests from Cloud Storage or BigQuery, which stagedretry does not use; "
                "run this pipeline in the synchronous mode or on the gemini backend"
            )
        if not entries:
            raise ValueError("a batch job needs at least one entry")
        prepared = [self._prepare(e.request, e.ctx, inline=True) for e in entries]
        models = {model for model, _, _, _, _ in prepared}
        if len(models) != 1:
            raise ValueError(f"one batch job answers one model, got {sorted(models)}")
        model = prepared[0][0]
        configs = [_batch_config(config) for _, _, config, _, _ in prepared]
        contents = [c if isinstance(c, list) else [c] for _, c, _, _, _ in prepared]
        wire = [wire_request(c, config) for c, config in zip(contents, configs, strict=True)]
        name = display_name(entries, wire)
        found = await self._find_batch(name)
        if found is not None:
            return found
        batches = self._client.aio.batches
        job_config = types.CreateBatchJobConfig(display_name=name, http_options=self._http_options)
        lines = [
            json.dumps({"key": e.key, "request": r}) for e, r in zip(entries, wire, strict=True)
        ]
        if sum(len(line) for line in lines) + _INLINE_OVERHEAD * len(lines) <= self._inline_limit:
            inlined = [
                types.InlinedRequest(
                    model=model, contents=c, config=config, metadata={"key": entry.key}
                )
                for entry, c, config in zip(entries, contents, configs, strict=True)
            ]
            job = await batches.create(model=model, src=inlined, config=job_config)
        else:
            data = ("\n".join(lines) + "\n").encode()
            uploaded = await self._client.aio.files.upload(
                file=io.BytesIO(data),
                config=types.UploadFileConfig(
                    mime_type="jsonl",
                    display_name=name,
                    # A copy: the SDK writes the upload's headers into the options it is given.
                    http_options=self._http_options.model_copy(deep=True)
                    if self._http_options is not None
                    else None,
                ),
            )
            if uploaded.name is None:
                raise TransientError("the Files API gave the uploaded batch requests no name")
            job = await batches.create(model=model, src=uploaded.name, config=job_config)
        if job.name is None:
            raise TransientError("the Batch API gave the new job no name")
        return job.name

    async def poll_batch(self, name: str) -> BatchJobState:
        """Look at job *name* once with ``batches.get``; when it is done, read its answers.

        Each answer is the :class:`~stagedretry.Response` :meth:`generate` would return
        (usage with the cached tokens the server reports, ``meta.service_tier ==
        "batch"``), each per-request error the SDK exception :meth:`generate` would raise
        for that status.  Raises :class:`~stagedretry.BatchJobLost` when the service no
        longer has the job (404) or its responses file, and the SDK's errors otherwise.
        """
        try:
            job = await self._client.aio.batches.get(
                name=name, config=types.GetBatchJobConfig(http_options=self._http_options)
            )
        except errors.APIError as exc:
            if exc.code == 404:
                raise BatchJobLost(f"the service no longer has the batch job {name}") from exc
            raise
        state = job.state
        label = state.value if state is not None else "JOB_STATE_UNSPECIFIED"
        if state not in DONE_STATES:
            return BatchJobState(name, label, False)
        answers: dict[str, Response | Exception] = {}
        dest = job.dest
        if dest is not None and dest.inlined_responses:
            for inlined in dest.inlined_responses:
                key = (inlined.metadata or {}).get("key")
                if key is not None:
                    answers[key] = answer_of(inlined.response, inlined.error, self._secrets)
        elif dest is not None and dest.file_name:
            try:
                data = await self._client.aio.files.download(
                    file=dest.file_name,
                    config=types.DownloadFileConfig(http_options=self._http_options),
                )
            except errors.APIError as exc:
                if exc.code in (403, 404):
                    raise BatchJobLost(
                        f"the responses file {dest.file_name} of the batch job {name} is gone"
                    ) from exc
                raise
            # Split on newlines only: JSON may hold U+2028 or U+0085 raw, which splitlines cuts.
            for line in data.decode("utf-8", "replace").split("\n"):
                if line.strip():
                    key, answer = read_line(line, self._secrets)
                    if key is not None:
                        answers[key] = answer
        return BatchJobState(name, label, True, answers)

    async def _find_batch(self, display: str) -> str | None:
        """The name of a live job called *display* among the newest ones, if any."""
        if self._batch_lookback == 0:
            return None
        pager = await self._client.aio.batches.list(
            config=types.ListBatchJobsConfig(
                page_size=min(self._batch_lookback, 1000), http_options=self._http_options
            )
        )
        seen = 0
        async for job in pager:
            if job.display_name == display and job.state in REFOUND_STATES and job.name:
                return job.name
            seen += 1
            if seen >= self._batch_lookback:
                break
        return None

    def classify(self, exc: BaseException) -> Outcome | None:
        """The user's rules first, then the Gemini rules (a lost cache names this cache)."""
        for rule in self._rules:
            outcome = rule(exc)
            if outcome is not None:
                return outcome
        cache = self._cache
        outcome = _classify(exc, resource=cache.name if cache is not None else None)
        if outcome is not None and self._secrets.found(outcome.message):
            outcome = Outcome(
                outcome.kind,
                redact(outcome.message, self._secrets),
                retry_after=outcome.retry_after,
                resource=outcome.resource,
            )
        return outcome

    def secrets(self) -> tuple[str, ...]:
        """The *api_key* given, for the runner to mask (:class:`stagedretry.HoldsSecrets`)."""
        return (self._api_key,) if self._api_key else ()

    # -- building requests ----------------------------------------------------------------------

    def _handle(
        self, ctx: StageContext, model: str
    ) -> tuple[GeminiContextCache | None, CacheHandle | None]:
        """The cache for *model*'s requests (the job's, or that model's own) and its handle
        for this attempt (``None``: none, or it is not prepared for this stage)."""
        cache = self._cache
        if cache is None:
            return None, None
        other = self._model_caches.get(model_path(model))
        if other is not None:
            found = ctx.resources.get(other.name)
            if isinstance(found, CacheHandle):
                return other, found
            # Not among this runner's resources (a runner built before the plan named it):
            # the job's cache, which a request on another model sends inline.
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
        return cache, handle

    def _config(
        self, request: Request, params: GeminiParams, handle: CacheHandle | None
    ) -> types.GenerateContentConfig:
        """The request's config, built once per stage, field list and cache generation."""
        stage = request.stage
        key = (id(stage), request.fields, handle)
        found = self._configs.get(key)
        if found is not None and found[0] is stage:
            return found[1]
        config = self._build_config(request, params, handle)
        if len(self._configs) >= _CONFIG_MEMO:
            self._configs.clear()
        # The stage is kept beside its config so a recycled id() never matches another stage.
        self._configs[key] = (stage, config)
        return config

    def _build_config(
        self, request: Request, params: GeminiParams, handle: CacheHandle | None
    ) -> types.GenerateContentConfig:
        fields: dict[str, Any] = {"automatic_function_calling": _NO_AFC}
        for name in _CONFIG_FIELDS:
            value = getattr(params, name)
            if value is not None:
                fields[name] = list(value) if isinstance(value, tuple) else value
        if params.thinking_budget is not None:
            fields["thinking_config"] = types.ThinkingConfig(thinking_budget=params.thinking_budget)
        schema = self._schema
        if schema is not None:
            fields.setdefault("response_mime_type", JSON_MIME)
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


_INLINE_OVERHEAD: Final = 64
"""Bytes an inlined request adds to its JSONL line's size (wrapping, separators)."""


def _batch_config(config: types.GenerateContentConfig) -> types.GenerateContentConfig:
    """A request's config inside a batch job: what only the client reads is left out, and the
    service tier (a batch job is billed at the batch price whatever a stage's tier says)."""
    return config.model_copy(
        update={"http_options": None, "automatic_function_calling": None, "service_tier": None}
    )


def _price_lookup(
    prices: Mapping[str, CachePrice] | Callable[[str], CachePrice | None] | None,
) -> Callable[[str], CachePrice | None]:
    """*prices* as a function of a model's id (``gemini-2.5-pro``; ``models/`` is dropped)."""
    if prices is None:
        return _no_price
    if callable(prices):
        return prices
    table = {k.removeprefix("models/"): v for k, v in prices.items()}
    return table.get


def _no_price(model: str) -> CachePrice | None:
    return None


def _no_settle(usage: Usage | None) -> None:
    """Nothing to settle: no quota is kept."""


def _instruction_tokens(value: Any) -> int:
    """Tokens of an instruction or a content given as text, ``Content``, parts or a list."""
    if value is None:
        return 0
    if isinstance(value, str):
        return count_tokens(value)
    if isinstance(value, (list, tuple)):
        return sum(_instruction_tokens(v) for v in value)
    parts = getattr(value, "parts", None)
    if parts is not None:
        return sum(_instruction_tokens(p) for p in parts)
    text = getattr(value, "text", None)
    return count_tokens(text) if isinstance(text, str) else 0


_CONFIG_FIELDS: Final = tuple(
    name for name in settable_keys(GeminiParams) if name not in ("model", "thinking_budget")
)
"""The params that are ``GenerateContentConfig`` fields of the same name."""
