"""The loopback HTTP server: routing, auth, fault application and the thread lifecycle.

The aiohttp app runs on its own event loop in a daemon thread bound to ``127.0.0.1:0``, so
one emulator serves the sync SDK client and ``client.aio`` in any test's event loop alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from types import TracebackType
from typing import Any, Final

import attrs
from aiohttp import web

from ._batches import INLINE_LIMIT, BatchService
from ._caches import ExpiryStyle, cache_id_of
from ._faults import CONTENT_FAULTS, DEEP, Fault, FaultBook, FaultKind
from ._flex import FLEX, TIER_HEADER, FlexSettings, Shedder, request_tier, shed_error
from ._ledger import Ledger, LedgerBook, RequestRecord
from ._model import SimulatedModel
from ._quota import EmulatorQuota, QuotaBook, QuotaStats, per_day
from ._service import GeminiService, Reply
from ._vertex import (
    TOKEN_PATH,
    Api,
    credentials_info,
    developer_model,
    missing_credentials,
    publisher_model_not_found,
    resource_exhausted,
    split_path,
)
from ._vertex import (
    VERSIONS as VERTEX_VERSIONS,
)
from ._wire import (
    BAD_GATEWAY_HTML,
    JSON_CONTENT_TYPE,
    MSG_BAD_KEY,
    MSG_BILLING_DISABLED,
    MSG_INTERNAL,
    MSG_KEY_BLOCKED,
    MSG_NO_BILLING_ACCOUNT,
    MSG_NO_KEY,
    MSG_OVERLOADED,
    MSG_PREPAY_DEPLETED,
    MSG_QUOTA,
    MSG_SPEND_CAP,
    MSG_UNAUTHENTICATED,
    ApiError,
    dumps,
    error_info,
    format_duration,
    format_timestamp,
    invalid,
    localized,
    model_not_found,
)

_ROUTE: Final = re.compile(r"^(?:/[^/]+)*?/(?P<version>v1|v1beta|v1beta1|v1alpha)/(?P<rest>.+?)/?$")
_DEVELOPER_VERSIONS: Final = frozenset({"v1", "v1beta", "v1alpha"})
_TOKEN_LIFETIME: Final = 3599
_JWT_GRANT: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_GENERATE: Final = re.compile(r"^models/(?P<model>[^/:]+):generateContent$")
_CACHE: Final = re.compile(r"^cachedContents/(?P<id>[^/]+)$")
_BATCH_CREATE: Final = re.compile(r"^models/(?P<model>[^/:]+):batchGenerateContent$")
_BATCH: Final = re.compile(r"^batches/(?P<id>[^/:]+)(?P<cancel>:cancel)?$")
_FILE: Final = re.compile(r"^files/(?P<id>[^/:]+)(?P<download>:download)?$")
_QUOTA_METRIC: Final = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
_STARTUP_TIMEOUT: Final = 10.0
_SHUTDOWN_TIMEOUT: Final = 1.0
_DISCONNECT_POLL: Final = 0.05


@attrs.define
class _Exchange:
    """What the ledger records about one request, filled in as handling proceeds."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: tuple[str, ...]
    status: int | None = None
    model: str | None = None
    cached_content: str | None = None
    fault: FaultKind | None = None
    service_tier: str | None = None
    shed: bool = False

    def record(self) -> RequestRecord:
        return RequestRecord(
            method=self.method,
            path=self.path,
            query=self.query,
            status=self.status,
            model=self.model,
            cached_content=self.cached_content,
            headers=self.headers,
            fault=self.fault,
            service_tier=self.service_tier,
            shed=self.shed,
        )


def _request_key(request: web.Request) -> str:
    return (request.headers.get("x-goog-api-key") or request.query.get("key") or "").strip()


def _bearer_token(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _json_response(
    status: int, body: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        text=dumps(body),
        headers={"Content-Type": JSON_CONTENT_TYPE, **(headers or {})},
    )


def _error_response(error: ApiError, headers: Mapping[str, str] | None = None) -> web.Response:
    return _json_response(error.code, error.body(), headers)


def _reply_parts(reply: Reply) -> tuple[dict[str, Any], Any]:
    return reply.body, reply.usage


def _rate_limit(fault: Fault, model: str | None) -> tuple[ApiError, dict[str, str]]:
    # A per-day quota answers with the same body; only its QuotaFailure's quotaId tells
    # that waiting seconds will not refill it (googleapis/python-genai#2044).
    daily = fault.kind is FaultKind.DAILY_QUOTA
    details: list[dict[str, Any]] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": _QUOTA_METRIC,
                    "quotaId": (
                        "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
                        if daily
                        else "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
                    ),
                    "quotaDimensions": {
                        "location": "global",
                        "model": (model or "models/gemini-2.5-flash").removeprefix("models/"),
                    },
                    "quotaValue": "250" if daily else "10",
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    message = MSG_QUOTA
    headers: dict[str, str] = {}
    if fault.retry_delay is not None:
        delay = format_duration(fault.retry_delay)
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
        message = f"{MSG_QUOTA} Please retry in {delay}."
        if fault.retry_after_header:
            headers["Retry-After"] = str(math.ceil(fault.retry_delay))
    return ApiError(429, message, details=details), headers


def _unavailable(fault: Fault) -> tuple[ApiError, dict[str, str]]:
    """503 UNAVAILABLE; with ``retry_delay`` a RetryInfo detail (and header) as a 429 carries."""
    details: list[dict[str, Any]] = []
    headers: dict[str, str] = {}
    if fault.retry_delay is not None:
        delay = format_duration(fault.retry_delay)
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
        if fault.retry_after_header:
            headers["Retry-After"] = str(math.ceil(fault.retry_delay))
    return ApiError(503, MSG_OVERLOADED, details=details or None), headers


def _tier_answer(reply: Reply, requested: str | None) -> tuple[Reply, dict[str, str]]:
    """A Developer API answer naming the tier that served it, in the body and a header.

    The emulator serves every request at the tier it asked for (a Priority request is
    never over its limit here); no tier is ``standard``.
    """
    tier = requested or "standard"
    body = dict(reply.body)
    usage = body.get("usageMetadata")
    if isinstance(usage, dict):
        body["usageMetadata"] = {**usage, "serviceTier": tier}
    billed = attrs.evolve(reply.usage, service_tier=tier) if reply.usage is not None else None
    return attrs.evolve(reply, body=body, usage=billed), {TIER_HEADER: tier}


def _echo_key(key: str) -> ApiError:
    """A 400 that quotes *key* in three forms (see ``FaultKind.ECHO_KEY``)."""
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.DebugInfo",
            "detail": (
                f"caller credential fragment {key[6:-2].lower()!r}, "
                f"query form {urllib.parse.quote(key, safe='')!r}"
            ),
        }
    ]
    message = (
        f"Request contains an invalid argument: the gateway could not route caller {key.upper()}."
    )
    return ApiError(400, message, details=details)


def _account_error(kind: FaultKind, path: str) -> ApiError | None:
    """The error of a fault that is the key's or the project's, not the request's."""
    if kind is FaultKind.KEY_BLOCKED:
        version = match.group("version") if (match := _ROUTE.match(path)) else "v1beta"
        message = MSG_KEY_BLOCKED.format(version=version)
        return ApiError(
            403,
            message,
            details=[
                error_info("API_KEY_SERVICE_BLOCKED", consumer="projects/123456789012"),
                localized(message),
            ],
        )
    if kind is FaultKind.BILLING_DISABLED:
        return ApiError(
            403,
            MSG_BILLING_DISABLED,
            details=[error_info("BILLING_DISABLED", consumer="projects/123456789012")],
        )
    if kind is FaultKind.NO_BILLING_ACCOUNT:
        return ApiError(400, MSG_NO_BILLING_ACCOUNT, status="FAILED_PRECONDITION")
    if kind is FaultKind.SPEND_CAP:
        return ApiError(429, MSG_SPEND_CAP)
    if kind is FaultKind.PREPAY_DEPLETED:
        return ApiError(429, MSG_PREPAY_DEPLETED)
    if kind is FaultKind.UNAUTHENTICATED:
        return ApiError(
            401,
            MSG_UNAUTHENTICATED,
            details=[error_info("ACCESS_TOKEN_TYPE_UNSUPPORTED")],
        )
    return None


class GeminiEmulator:
    """A faithful, deterministic stand-in for the Gemini Developer API over loopback HTTP.

    Use it as ``with GeminiEmulator(seed=1) as emu:`` or call :meth:`start` / :meth:`stop`.
    The clock is read on every request, so a virtual clock can jump past cache expiry.

    *clock_offset* (seconds, default 0; negative: behind) sets the server's clock
    apart from *clock*, as a service whose clock disagrees with the client's: every
    time it reports (``createTime``, ``updateTime``, ``expireTime``, the ``Date``
    header) and every expiry it decides is on the shifted clock.

    *api_key* (default ``None``: any key is accepted) is the one key served: a
    request with another answers 400 ``INVALID_ARGUMENT`` (``API_KEY_INVALID``),
    one with none 403, as the API does.  *api* picks the API spoken:
    :attr:`Api.GEMINI` (default) or :attr:`Api.VERTEX` (Vertex AI's paths, names
    and wordings; requests need an OAuth 2 bearer token, which the emulator issues
    itself at ``/token`` to the credentials of :meth:`credentials_info`).
    *expiry_style* ``None`` is the API's own (lingering expired caches on Vertex).
    *models* (default ``None``: any name) are the model ids served,
    ``"gemini-2.5-flash"`` or ``"models/gemini-2.5-flash"``; any other answers 404
    ``NOT_FOUND`` in the API's words.  *quota* (default
    ``None``: none) makes it enforce requests and input tokens per minute and requests
    per day, per model, with the service's 429 bodies (see :class:`EmulatorQuota`;
    :attr:`quota_stats` tells what it served and refused).  *flex* (default: no
    shedding, no extra latency) is how it treats a request on the ``flex`` tier (see
    :class:`~strategies.gemini.emulator.FlexSettings`); every answer names its tier in
    the ``x-gemini-service-tier`` header and ``usageMetadata.serviceTier``.
    *batch_completion* (seconds on *clock*, default 2) is when a batch job ends after its
    creation (pending, then running from half that time); *batch_inline_limit* (bytes,
    default 20 MiB) is the largest ``batchGenerateContent`` body with inlined requests
    (Developer API only; see ``_batches``).  Raises ``ValueError`` for an *invalid_rate*
    outside [0, 1] or a negative *latency* (seconds per request).
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        clock: Callable[[], float] | None = None,
        min_cache_tokens: int | Mapping[str, int] = 1024,
        expiry_style: ExpiryStyle | None = None,
        invalid_rate: float = 0.15,
        invalid_rate_slope: float = 0.4,
        implicit_caching: bool = False,
        latency: float = 0.0,
        api_key: str | None = None,
        models: Collection[str] | None = None,
        clock_offset: float = 0.0,
        quota: EmulatorQuota | None = None,
        api: Api = Api.GEMINI,
        flex: FlexSettings | None = None,
        batch_completion: float = 2.0,
        batch_inline_limit: int = INLINE_LIMIT,
    ) -> None:
        if not (math.isfinite(batch_completion) and batch_completion >= 0):
            raise ValueError(
                f"batch_completion must be a non-negative number of seconds, "
                f"got {batch_completion!r}"
            )
        if batch_inline_limit <= 0:
            raise ValueError(f"batch_inline_limit must be positive, got {batch_inline_limit!r}")
        if not 0.0 <= invalid_rate <= 1.0:
            raise ValueError(f"invalid_rate must be in [0, 1], got {invalid_rate!r}")
        if latency < 0:
            raise ValueError(f"latency must not be negative, got {latency!r}")
        if not isinstance(api, Api):
            raise TypeError(f"api must be an Api, got {api!r}")
        if expiry_style is None:
            expiry_style = ExpiryStyle.VERTEX if api is Api.VERTEX else ExpiryStyle.GEMINI
        if not isinstance(expiry_style, ExpiryStyle):
            raise TypeError(f"expiry_style must be an ExpiryStyle, got {expiry_style!r}")
        self._api = api
        self._tokens_issued = 0
        self._base_clock = clock or time.time
        self.clock_offset = clock_offset
        self._latency = latency
        self._shedder = Shedder(seed, flex if flex is not None else FlexSettings())
        self._api_key = api_key.strip() if api_key is not None else None
        # The models served, as "models/<id>"; None serves any name (tests use made-up ones).
        self._models = (
            None
            if models is None
            else frozenset(f"models/{m.removeprefix('models/')}" for m in models)
        )
        self._ledger = LedgerBook()
        self._faults = FaultBook(seed)
        self._quota = QuotaBook(quota) if quota is not None and quota.limited else None
        self._service = GeminiService(
            seed=seed,
            clock=self._now,
            min_cache_tokens=min_cache_tokens,
            expiry_style=expiry_style,
            model=SimulatedModel(
                seed=seed, invalid_rate=invalid_rate, invalid_rate_slope=invalid_rate_slope
            ),
            implicit_caching=implicit_caching,
            ledger=self._ledger,
            api=api,
        )
        service = self._service
        self._batches = BatchService(
            seed=seed,
            clock=self._now,
            answer=lambda model, body, fault: _reply_parts(service.generate(model, body, fault)),
            faults=self._faults,
            ledger=self._ledger,
            completion=batch_completion,
            inline_limit=batch_inline_limit,
            lock=service.lock,
        )
        self._life = threading.Lock()
        # Orders a late server start against start() giving up on it (see _run).
        self._handoff = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._startup_error: BaseException | None = None
        self._stopped = False

    # -- public surface ------------------------------------------------------------------

    @property
    def clock_offset(self) -> float:
        """Seconds the server's clock runs ahead of *clock* (negative: behind); settable."""
        return self._clock_offset

    @clock_offset.setter
    def clock_offset(self, seconds: float) -> None:
        if not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ValueError(f"clock_offset must be a finite number of seconds, got {seconds!r}")
        self._clock_offset = float(seconds)

    def _now(self) -> float:
        """The server's time: the clock it was given, shifted by ``clock_offset``."""
        return self._base_clock() + self._clock_offset

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; raises RuntimeError before :meth:`start`."""
        if self._base_url is None:
            raise RuntimeError("the emulator is not running; call start() first")
        return self._base_url

    @property
    def api(self) -> Api:
        """The API this emulator speaks."""
        return self._api

    def credentials_info(self) -> dict[str, str]:
        """Google ``authorized_user`` credentials whose tokens this emulator issues.

        Written to a JSON file named by ``GOOGLE_APPLICATION_CREDENTIALS``, they are
        Application Default Credentials that ``google.auth.default()`` loads and
        refreshes against the emulator's ``/token``: no request leaves loopback.
        Raises RuntimeError before :meth:`start`.
        """
        return credentials_info(self.base_url)

    @property
    def tokens_issued(self) -> int:
        """How many access tokens ``/token`` has issued."""
        return self._tokens_issued

    @property
    def ledger(self) -> Ledger:
        """A frozen snapshot of every counter, taken under a lock."""
        return self._ledger.snapshot()

    def reset_ledger(self) -> None:
        """Forget every recorded request and counter (caches are kept)."""
        self._ledger.reset()

    @property
    def quota_stats(self) -> QuotaStats:
        """The requests the quotas served (arrival time, input tokens) and refused, by quotaId."""
        if self._quota is None:
            return QuotaStats((), {})
        return self._quota.stats()

    def inject(self, fault: Fault) -> None:
        """Add a fault rule; rules are consulted in order of injection."""
        self._faults.add(fault)

    def clear_faults(self) -> None:
        """Remove every fault rule."""
        self._faults.clear()

    def delete_cache(self, name: str) -> bool:
        """Drop a cache server-side (``cachedContents/<id>`` or a bare id); True if it existed."""
        return self._service.drop_cache(name)

    def expire_all_caches(self) -> None:
        """Make every cache expire at the current clock reading."""
        self._service.expire_all()

    def cache_names(self) -> tuple[str, ...]:
        """Names of every stored cache, for assertions about leaks."""
        return self._service.cache_names()

    def batch_names(self) -> tuple[str, ...]:
        """Names of every batch job the emulator still knows, in creation order."""
        return self._batches.names()

    def batch_requests(self, name: str) -> tuple[dict[str, Any], ...]:
        """The ``GenerateContentRequest`` bodies of batch job *name*, as received (inlined or
        read from its JSONL file); raises ``ApiError`` (404) for an unknown job."""
        return self._batches.requests_of(name)

    def drop_batch(self, name: str) -> bool:
        """Forget a batch job server-side, as if the service lost it; True if it existed."""
        return self._batches.drop(name)

    def start(self) -> str:
        """Start serving in a daemon thread and return the base URL.

        A start that fails or times out leaves nothing behind (a late server is
        taken down as soon as it comes up), so calling it again starts afresh.
        """
        with self._life:
            if self._stopped:
                raise RuntimeError("a stopped GeminiEmulator cannot be restarted")
            if self._thread is not None:
                return self.base_url
            ready = threading.Event()
            abandoned = threading.Event()
            thread = threading.Thread(
                target=self._run, args=(ready, abandoned), name="gemini-emulator", daemon=True
            )
            self._thread = thread
            thread.start()
            ready.wait(_STARTUP_TIMEOUT)
            with self._handoff:
                if not ready.is_set():
                    abandoned.set()
            error, self._startup_error = self._startup_error, None
            if not abandoned.is_set() and error is None:
                return self.base_url
            self._thread = None
            if abandoned.is_set():
                raise RuntimeError("the Gemini emulator did not start in time")
            thread.join()  # it has closed its loop and is returning
            raise RuntimeError("the Gemini emulator failed to start") from error

    def stop(self) -> None:
        """Stop serving and join the thread; idempotent. Hanging requests are abandoned."""
        with self._life:
            self._stopped = True
            thread, loop = self._thread, self._loop
            if thread is None or loop is None or not thread.is_alive():
                return
            loop.call_soon_threadsafe(self._begin_stop)
            thread.join(_STARTUP_TIMEOUT)

    def __enter__(self) -> GeminiEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- thread and loop -----------------------------------------------------------------

    def _run(self, ready: threading.Event, abandoned: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        try:
            runner, base_url, stopping = loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to start() in the caller's thread
            with self._handoff:
                if not abandoned.is_set():
                    self._startup_error = exc
                    ready.set()
            loop.close()
            return
        # Published only if start() still waits: a server it gave up on is nobody's.
        with self._handoff:
            if not abandoned.is_set():
                self._loop, self._runner, self._base_url = loop, runner, base_url
                self._stopping = stopping
                ready.set()
        if abandoned.is_set():
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> tuple[web.AppRunner, str, asyncio.Event]:
        """Bind a loopback port and serve; the runner, the base URL and the stop event."""
        stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.on_response_prepare.append(self._stamp_date)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
            handler_cancellation=True,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
        except BaseException:
            await runner.cleanup()
            raise
        return runner, f"http://127.0.0.1:{port}", stopping

    async def _stamp_date(self, request: web.Request, response: web.StreamResponse) -> None:
        """Date every answer on the server's clock, as a service's front end does (aiohttp
        would use the host's wall clock, which a virtual or shifted clock disagrees with)."""
        response.headers["Date"] = email.utils.formatdate(self._now(), usegmt=True)

    def _begin_stop(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        assert self._loop is not None
        self._loop.stop()

    async def _pause(self, seconds: float) -> None:
        """Sleep for real seconds, cut short when the emulator stops."""
        if seconds <= 0:
            return
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _hang(self, request: web.Request) -> None:
        """Never answer: wait until the client goes away or the emulator stops, then drop.

        Raising CancelledError is how aiohttp is told to close the connection without a
        response (it treats it as a premature disconnect); the ledger records status None.
        """
        assert self._stopping is not None
        while not self._stopping.is_set():
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            await self._pause(_DISCONNECT_POLL)
        transport = request.transport
        if transport is not None:
            transport.close()
        raise asyncio.CancelledError

    # -- request handling ----------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        exchange = _Exchange(
            method=request.method,
            path=request.path,
            query=tuple(
                (k, "<redacted>" if k.lower() == "key" else v) for k, v in request.query.items()
            ),
            headers=tuple(sorted({name.lower() for name in request.headers})),
        )
        try:
            response = await self._respond(request, exchange)
            exchange.status = response.status
            return response
        finally:
            self._ledger.record_request(exchange.record())

    async def _respond(self, request: web.Request, exchange: _Exchange) -> web.Response:
        if request.path == TOKEN_PATH and request.method == "POST":
            return await self._token(request)
        route = _ROUTE.match(request.path)
        rest = route.group("rest") if route else ""
        version = route.group("version") if route else "v1beta"
        project = location = None
        vertex = self._api is Api.VERTEX
        if vertex:
            place = split_path(rest) if version in VERTEX_VERSIONS else None
            project, location, rest = place if place is not None else (None, None, "")
        elif version not in _DEVELOPER_VERSIONS:
            rest = ""
        if not vertex:
            batch = await self._respond_batches(request, exchange, rest)
            if batch is not None:
                return batch
        generate = _GENERATE.match(rest)
        cache = _CACHE.match(rest)
        method = request.method
        if generate and method == "POST":
            family = "generateContent"
            exchange.model = f"models/{generate.group('model')}"
        elif (rest == "cachedContents" and method in ("GET", "POST")) or (
            cache and method in ("GET", "PATCH", "DELETE")
        ):
            family = "cachedContents"
            if cache:
                exchange.cached_content = f"cachedContents/{cache.group('id')}"
        else:
            return _error_response(ApiError(404, "Requested entity was not found."))
        try:
            self._authenticate(request)
            raw = await request.read()
            body = self._parse_body(raw) if method in ("POST", "PATCH") else {}
            if family == "generateContent":
                exchange.service_tier = request_tier(body)
                cached = body.get("cachedContent", body.get("cached_content"))
                if isinstance(cached, str):
                    bare = cached.rpartition("cachedContents/")[2] if vertex else cached
                    exchange.cached_content = (
                        bare if bare.startswith("cachedContents/") else f"cachedContents/{bare}"
                    )
            elif rest == "cachedContents" and method == "POST":
                model = body.get("model")
                if vertex and isinstance(model, str) and model:
                    # Vertex names the model in full; the service keeps "models/<id>".
                    body = {**body, "model": developer_model(model)}
                    model = body["model"]
                exchange.model = model if isinstance(model, str) else None
            fault = self._faults.pick(
                family, b"%s %s\n%s" % (method.encode(), request.path.encode(), raw)
            )
            exchange.fault = fault.kind if fault else None
            early = await self._early_fault(request, fault, exchange)
            if early is not None:
                return early
            if family == "generateContent":
                self._check_model(exchange.model, version, "generateContent", project, location)
            elif rest == "cachedContents" and method == "POST":
                self._check_model(exchange.model, version, "createCachedContent", project, location)
            if family == "generateContent" and self._quota is not None:
                assert exchange.model is not None
                refused = self._quota.admit(
                    exchange.model, self._service.prompt_tokens(body), self._now()
                )
                if refused is not None:
                    if self._api is Api.VERTEX and not per_day(refused):
                        # Vertex answers an outrun per-minute quota in its own bare words.
                        refused = resource_exhausted()
                    return _error_response(refused)
            flex = exchange.service_tier == FLEX and not vertex
            if flex and self._shedder.sheds(
                b"%s %s\n%s" % (method.encode(), request.path.encode(), raw)
            ):
                exchange.shed = True
                return _error_response(shed_error())
            if family == "generateContent" and self._latency:
                await self._pause(self._latency)
            if flex:
                await self._pause(self._shedder.settings.latency)
            reply = self._dispatch(
                method=method,
                generate=generate,
                cache=cache,
                body=body,
                request=request,
                fault=fault,
                location=location,
            )
        except ApiError as error:
            return _error_response(error)
        tier_headers: dict[str, str] = {}
        if vertex and generate:
            reply = self._vertex_answer(reply)
        elif generate and reply.usage is not None:
            reply, tier_headers = _tier_answer(reply, exchange.service_tier)
        text = dumps(reply.body)
        kind = fault.kind if fault else None
        if kind is FaultKind.TRUNCATED_JSON:
            return web.Response(
                status=200, text=text[: len(text) // 2], headers={"Content-Type": JSON_CONTENT_TYPE}
            )
        if kind is FaultKind.DEEP_JSON:
            deep = "[" * DEEP + "]" * DEEP
            return web.Response(
                status=200,
                text=f'{text[:-1]}, "deep": {deep}}}',
                headers={"Content-Type": JSON_CONTENT_TYPE},
            )
        if kind is FaultKind.NOT_JSON:
            return web.Response(
                status=200,
                text="<html><body><p>Service temporarily rerouted.</p></body></html>",
                headers={"Content-Type": "text/html; charset=UTF-8"},
            )
        if reply.usage is not None:
            self._ledger.bill(reply.usage)
        return web.Response(
            status=200, text=text, headers={"Content-Type": JSON_CONTENT_TYPE, **tier_headers}
        )

    async def _respond_batches(
        self, request: web.Request, exchange: _Exchange, rest: str
    ) -> web.Response | None:
        """The Batch API's and the Files API's routes (Developer API); None for any other."""
        method = request.method
        upload = request.path.startswith("/upload/") and rest == "files" and method == "POST"
        create = _BATCH_CREATE.match(rest) if method == "POST" else None
        job = _BATCH.match(rest)
        file = _FILE.match(rest)
        if upload or (file and method in ("GET", "DELETE")):
            family = "files"
        elif create:
            family = "batchGenerateContent"
            exchange.model = f"models/{create.group('model')}"
        elif (rest == "batches" and method == "GET") or (
            job
            and (
                (job.group("cancel") and method == "POST")
                or (not job.group("cancel") and method in ("GET", "DELETE"))
            )
        ):
            family = "batches"
        else:
            return None
        batches = self._batches
        try:
            # The upload URL is the session's credential: its chunks carry no key.
            if not (upload and "upload_id" in request.query):
                self._authenticate(request)
            raw = await request.read()
            fault = self._faults.pick(
                family, b"%s %s\n%s" % (method.encode(), request.path.encode(), raw)
            )
            exchange.fault = fault.kind if fault else None
            early = await self._early_fault(request, fault, exchange)
            if early is not None:
                return early
            if upload:
                return self._upload(request, raw)
            if create:
                self._check_model(exchange.model, "v1beta", "batchGenerateContent")
                body = self._parse_body(raw)
                return _json_response(
                    200, batches.create(create.group("model"), body, len(raw), fault)
                )
            if file:
                name = f"files/{file.group('id')}"
                if file.group("download"):
                    return web.Response(
                        status=200,
                        body=batches.download(name),
                        content_type="application/octet-stream",
                    )
                if method == "DELETE":
                    return _json_response(200, batches.delete_file(name))
                return _json_response(200, batches.get_file(name))
            if job is None:
                return _json_response(200, batches.list_jobs(request.query))
            name = f"batches/{job.group('id')}"
            if job.group("cancel"):
                return _json_response(200, batches.cancel(name))
            if method == "DELETE":
                return _json_response(200, batches.delete(name))
            return _json_response(200, batches.get(name))
        except ApiError as error:
            return _error_response(error)

    def _upload(self, request: web.Request, raw: bytes) -> web.Response:
        """One step of the resumable upload protocol (``start``, ``upload``, ``finalize``)."""
        command = request.headers.get("X-Goog-Upload-Command", "").lower()
        upload_id = request.query.get("upload_id")
        if upload_id is None:
            if command != "start" or request.headers.get("X-Goog-Upload-Protocol") != "resumable":
                raise invalid("Only the resumable upload protocol is supported.")
            upload_id = self._batches.start_upload(
                self._parse_body(raw),
                request.headers.get("X-Goog-Upload-Header-Content-Length"),
                request.headers.get("X-Goog-Upload-Header-Content-Type"),
            )
            query = {"upload_id": upload_id, "upload_protocol": "resumable"}
            url = f"{self.base_url}{request.path}?{urllib.parse.urlencode(query)}"
            return web.Response(
                status=200,
                headers={"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"},
            )
        done = self._batches.upload_chunk(
            upload_id, command, request.headers.get("X-Goog-Upload-Offset"), raw
        )
        if done is None:
            return web.Response(status=200, headers={"X-Goog-Upload-Status": "active"})
        return _json_response(200, done, {"X-Goog-Upload-Status": "final"})

    def _vertex_answer(self, reply: Reply) -> Reply:
        """A ``generateContent`` answer as Vertex shapes it: ``createTime`` and ``trafficType``."""
        body = dict(reply.body)
        body["createTime"] = format_timestamp(self._now())
        usage = body.get("usageMetadata")
        if isinstance(usage, dict):
            body["usageMetadata"] = {**usage, "trafficType": "ON_DEMAND"}
        return attrs.evolve(reply, body=body)

    async def _token(self, request: web.Request) -> web.Response:
        """An OAuth 2 token endpoint: a service account's signed JWT (or a refresh token)
        gets a bearer token for an hour."""
        form = await request.post()
        grant = form.get("grant_type")
        proof = form.get("assertion") if grant == _JWT_GRANT else form.get("refresh_token")
        if grant not in (_JWT_GRANT, "refresh_token") or not proof:
            return _json_response(
                400, {"error": "invalid_grant", "error_description": "Bad Request"}
            )
        with self._service.lock:
            self._tokens_issued += 1
            number = self._tokens_issued
        return _json_response(
            200,
            {
                "access_token": f"ya29.emulator-access-token-{number}",
                "expires_in": _TOKEN_LIFETIME,
                "scope": "https://www.googleapis.com/auth/cloud-platform",
                "token_type": "Bearer",
            },
        )

    def _authenticate(self, request: web.Request) -> None:
        if self._api is Api.VERTEX:
            # Vertex takes an OAuth 2 bearer token; an API key alone is refused.
            if not _bearer_token(request):
                raise missing_credentials(api_key_sent=bool(_request_key(request)))
            return
        key = _request_key(request)
        if not key:
            raise ApiError(403, MSG_NO_KEY)
        if self._api_key is not None and key != self._api_key:
            raise ApiError(
                400, MSG_BAD_KEY, details=[error_info("API_KEY_INVALID"), localized(MSG_BAD_KEY)]
            )

    def _check_model(
        self,
        model: str | None,
        version: str,
        method: str,
        project: str | None = None,
        location: str | None = None,
    ) -> None:
        """404 NOT_FOUND for a model this emulator was told it does not serve."""
        if self._models is not None and model is not None and model not in self._models:
            if project is not None and location is not None:
                raise publisher_model_not_found(model, project, location)
            raise model_not_found(model, version, method)

    @staticmethod
    def _parse_body(raw: bytes) -> dict[str, Any]:
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise invalid("Invalid JSON payload received. Unexpected token.") from None
        if not isinstance(body, dict):
            raise invalid("Invalid JSON payload received. Expected an object.")
        return body

    async def _early_fault(
        self, request: web.Request, fault: Fault | None, exchange: _Exchange
    ) -> web.Response | None:
        """Apply the faults that act before normal handling; a response ends the request."""
        if fault is None:
            return None
        kind = fault.kind
        if kind in (FaultKind.RATE_LIMIT, FaultKind.DAILY_QUOTA):
            error, headers = _rate_limit(fault, exchange.model)
            return _error_response(error, headers)
        account = _account_error(kind, request.path)
        if account is not None:
            return _error_response(account)
        if kind is FaultKind.INTERNAL:
            return _error_response(ApiError(500, MSG_INTERNAL))
        if kind is FaultKind.ECHO_KEY:
            return _error_response(_echo_key(_request_key(request)))
        if kind is FaultKind.UNAVAILABLE:
            return _error_response(*_unavailable(fault))
        if kind is FaultKind.BAD_GATEWAY:
            return web.Response(
                status=502,
                text=BAD_GATEWAY_HTML,
                headers={"Content-Type": "text/html; charset=UTF-8"},
            )
        if kind is FaultKind.HANG:
            await self._hang(request)
        if kind is FaultKind.SLOW:
            await self._pause(fault.delay)
        elif kind is FaultKind.CACHE_DROPPED and exchange.cached_content:
            with contextlib.suppress(ApiError):  # a malformed name is reported later
                self._service.drop_cache(exchange.cached_content)
        return None

    def _dispatch(
        self,
        *,
        method: str,
        generate: re.Match[str] | None,
        cache: re.Match[str] | None,
        body: dict[str, Any],
        request: web.Request,
        fault: Fault | None,
        location: str | None = None,
    ) -> Reply:
        service = self._service
        if generate:
            content_fault = fault.kind if fault and fault.kind in CONTENT_FAULTS else None
            return service.generate(generate.group("model"), body, content_fault)
        if cache is None:
            if method == "POST":
                return service.create_cache(body, location=location)
            return service.list_caches(request.query)
        name = cache_id_of(cache.group("id"))
        if method == "GET":
            return service.get_cache(name)
        if method == "PATCH":
            return service.update_cache(name, body, request.query)
        return service.delete_cache(name)
