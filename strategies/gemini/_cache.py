"""One explicit Gemini context cache, shared by every item and every worker of a run.

``GeminiContextCache`` is a :class:`stagedretry.SharedResource`: the runner
prepares it once, hands its :class:`CacheHandle` to every attempt, renews it
(single-flight) when the server's expiry approaches or when a request finds it
gone, and closes it once.  The cache is found before it is created: its
``display_name`` carries a fingerprint of everything that goes into it, so a
second run, or a second process, reuses a live match instead of paying to
create another.  All times of expiry are the server's, judged by the server's
clock as the response that carried the cache shows it (``_server_clock``); processes
that create the same cache at once converge on one of them (``_converge``).
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import json
import math
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import structlog
from google.genai import errors, types

from stagedretry import Backoff, Clock, OutcomeKind, RenewReason, Secrets, Stage, StopRun

from ..backend import MAX_CACHE_TTL
from ._client_check import check_client
from ._converge import Candidate, winner
from ._errors import cache_gone, cache_too_small, classify
from ._errors import redact as _redact
from ._server_clock import Reading, ServerClock, from_date, from_time

if TYPE_CHECKING:
    from google import genai

__all__ = [
    "CacheHandle",
    "CacheStats",
    "ClosePolicy",
    "GeminiContextCache",
    "check_client",
    "model_path",
]

T = TypeVar("T")


def _log() -> Any:
    """structlog's logger as the application configured it; unconfigured, one that prints to
    stderr (structlog's own default is stdout, where a program's results may be piped)."""
    if structlog.is_configured():
        return structlog.get_logger("stagedretry.gemini")
    return structlog.wrap_logger(structlog.PrintLogger(sys.stderr))


DISPLAY_PREFIX: Final = "stagedretry"
MAX_DISPLAY_NAME: Final = 128
MAX_TAG: Final = 64
_CALL_ATTEMPTS: Final = 4
_CALL_BACKOFF: Final = Backoff(initial=0.5, maximum=8.0)
_LIST_PAGE_SIZE: Final = 100


class ClosePolicy(enum.Enum):
    """What closing the resource does to the server-side cache."""

    KEEP = "keep"
    """Leave it to expire by its TTL, so the next run (or process) reuses it."""
    DELETE = "delete"
    """Delete it: nothing is stored (or billed for storage) after the run."""


@attrs.frozen
class CacheHandle:
    """What every attempt receives: the cache to name, and the server's word on its life.

    ``name`` is ``None`` when the content was too small to cache and is sent
    inline instead.  ``expire_time`` and ``create_time`` are epoch seconds as
    the server reported them.  ``server_ahead`` is how many seconds the server's
    clock was last seen ahead of ours (negative: behind), read from the response
    that carried the cache and rounded up, so a renewal may come early, never late.
    """

    name: str | None
    model: str
    display_name: str
    expire_time: float | None = None
    create_time: float | None = None
    token_count: int | None = None
    server_ahead: float = 0.0

    @property
    def inline(self) -> bool:
        """Whether requests carry the instructions themselves instead of naming a cache."""
        return self.name is None


@attrs.frozen
class CacheStats:
    """How often the cache was created, reused, extended, recovered and deleted."""

    created: int = 0
    """Caches created (``caches.create``), re-creations included."""
    reused: int = 0
    """Live matches found by listing instead of creating."""
    updated: int = 0
    """TTL extensions (``caches.update``)."""
    lost: int = 0
    """Recoveries after a request found the cache gone."""
    deleted: int = 0
    """Caches deleted on close."""
    inline_fallbacks: int = 0
    """Times the content was too small to cache and went inline instead."""
    duplicates_deleted: int = 0
    """Caches this object created and then deleted because another process had created
    the same one (same fingerprint) first; the older one is used instead."""


_VERTEX_MODEL: Final = "publishers/google/models/"


def model_path(model: str) -> str:
    """``gemini-2.5-flash`` -> ``models/gemini-2.5-flash``, the form caches report.

    Vertex AI's names of Google's models (``projects/P/locations/L/publishers/google/
    models/gemini-2.5-flash``, ``publishers/google/models/...``) come to the same form, so
    a cache Vertex reports is known for the model it was asked for.
    """
    head, sep, tail = model.rpartition(_VERTEX_MODEL)
    if sep and (not head or head.endswith("/")):
        return f"models/{tail}"
    return model if "/" in model else f"models/{model}"


def _canonical(value: Any) -> Any:
    """Plain JSON data standing for *value*, stable across runs, for the fingerprint."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes | bytearray):
        return {"bytes.sha256": hashlib.sha256(value).hexdigest()}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return _canonical(dump(mode="json", exclude_none=True))
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, Sequence):
        return [_canonical(v) for v in value]
    if callable(value):
        try:
            signature = str(inspect.signature(value))
        except (TypeError, ValueError):
            signature = "(?)"
        name = getattr(value, "__qualname__", type(value).__qualname__)
        return {"callable": f"{getattr(value, '__module__', '?')}.{name}{signature}"}
    raise TypeError(f"cannot fingerprint a {type(value).__name__} for the cache")


def fingerprint(
    model: str, system_instruction: object, contents: Sequence[object], tools: Sequence[object]
) -> str:
    """A short hash of everything that goes into the cache."""
    document = {
        "model": model_path(model),
        "system_instruction": _canonical(system_instruction),
        "contents": _canonical(list(contents)),
        "tools": _canonical(list(tools)),
    }
    text = json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _duration(seconds: float) -> str:
    """A protobuf Duration string: ``3600s``, ``1.5s``."""
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return f"{text}s"


def _epoch(moment: Any) -> float | None:
    timestamp = getattr(moment, "timestamp", None)
    return float(timestamp()) if callable(timestamp) else None


def _headers(pager: Any) -> Any:
    """The HTTP headers of the page *pager* holds (``None`` if the SDK kept none)."""
    response = getattr(pager, "sdk_http_response", None)
    return getattr(response, "headers", None)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    """One item or a list of them, as a tuple (``None`` is nothing)."""
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


class GeminiContextCache:
    """An explicit context cache that every stage of every item shares (a :class:`SharedResource`).

    *system_instruction*, *contents* and *tools* all go into the cache; requests
    then name it instead of repeating them, and pay the cached-input price for
    those tokens.  The runner owns the lifecycle: :meth:`prepare` once per run
    (single-flight), :meth:`renew` on a lost cache or near its end, :meth:`close`
    at the end.

    Arguments:

    - *model*: the model the cache belongs to (``"gemini-2.5-flash"`` or
      ``"models/..."``); a request on another model cannot use it.
    - *ttl*: seconds of life asked for on create and on every extension
      (default 3600, the service's own default; finite and positive).
    - *renew_margin*: seconds (default 300, at least 0, below *ttl*); the cache
      is extended once less than this much of its life remains, judged by the
      server's ``expire_time`` and clock, never by a local "now + ttl".
    - *tag*: 1 to 64 characters without ``:`` or line breaks, joined with the
      content's fingerprint in the ``display_name`` (``stagedretry:<tag>:<hash>``)
      so that a later run, or another process, finds the same cache again.
    - *on_close*: ``"keep"`` (default: the next run reuses it until it expires,
      billed for storage per token-hour meanwhile) or ``"delete"``.
    - *name*: the key under which stages find the :class:`CacheHandle` in
      ``ctx.resources`` (default ``"gemini_cache"``).
    - *api_key*: the key *client* sends, if it is not in ``GEMINI_API_KEY`` or
      ``GOOGLE_API_KEY``; only masked, in the cache's log events and, through
      :meth:`secrets`, in the runner's :class:`~stagedretry.ResourceError`.

    Content below the model's minimum for explicit caching (1,024 tokens for
    Gemini 2.5 Flash, 4,096 for 2.5 Pro: https://ai.google.dev/gemini-api/docs/caching)
    is refused by the service with 400 ``Cached content is too small`` (Vertex AI:
    ``The cached content is of N tokens. The minimum token count to start caching is
    M.``); the cache then falls back to sending the instructions inline
    (``stats.inline_fallbacks``).

    Raises :class:`ValueError` for a bad *ttl*, *renew_margin*, *tag* or
    *on_close*.  Cache API calls are retried a few times on transient errors and
    429s; past that, :meth:`prepare` raises the SDK's ``APIError`` (a
    :class:`~stagedretry.StopRun` for a failure of the run: the key rejected, no
    billing, the model not found) and the runner stops the run with a
    :class:`~stagedretry.ResourceError`.

    Build the client with ``HttpOptions(api_version="v1beta",
    retry_options=HttpRetryOptions(attempts=1))`` (or use
    :func:`~strategies.gemini.connect`) so every request is the engine's to count and
    retry; a client that retries on its own or calls another API version draws one
    ``UserWarning`` naming the fix.
    """

    def __init__(
        self,
        client: genai.Client,
        model: str,
        *,
        system_instruction: Any = None,
        contents: Any = (),
        tools: Sequence[Any] = (),
        ttl: float = 3600.0,
        renew_margin: float = 300.0,
        tag: str | None = None,
        on_close: ClosePolicy | str = ClosePolicy.KEEP,
        name: str = "gemini_cache",
        api_key: str | None = None,
    ) -> None:
        if not math.isfinite(ttl) or ttl <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        if ttl > MAX_CACHE_TTL:
            raise ValueError(f"ttl must be at most {MAX_CACHE_TTL:g} seconds (7 days), got {ttl!r}")
        if not math.isfinite(renew_margin) or renew_margin < 0:
            raise ValueError(f"renew_margin must be zero or more seconds, got {renew_margin!r}")
        if renew_margin >= ttl:
            raise ValueError(
                f"renew_margin ({renew_margin:g} s) must be shorter than ttl ({ttl:g} s), "
                "or every use would renew the cache"
            )
        if tag is not None and (not tag or len(tag) > MAX_TAG or any(c in tag for c in ":\n\r")):
            raise ValueError(
                f"tag must be 1 to {MAX_TAG} characters without ':' or newlines, got {tag!r}"
            )
        try:
            policy = ClosePolicy(on_close)
        except ValueError:
            raise ValueError(
                f"on_close must be one of {[p.value for p in ClosePolicy]}, got {on_close!r}"
            ) from None
        self._client = client
        self._api_key = api_key
        self._secrets = Secrets.from_environment([api_key])
        self._model = model_path(model)
        self._system_instruction = system_instruction
        self._contents = _as_tuple(contents)
        self._tools = _as_tuple(tools)
        self._ttl = float(ttl)
        self._renew_margin = float(renew_margin)
        self._tag = tag
        self._on_close = policy
        self._name = name
        self._fingerprint = fingerprint(
            self._model, system_instruction, self._contents, self._tools
        )
        self._display_name = ":".join([DISPLAY_PREFIX, *([tag] if tag else []), self._fingerprint])
        assert len(self._display_name) <= MAX_DISPLAY_NAME
        self._inline = False
        # (tokens, minimum) from the service's 400 when the content was too small to cache.
        self._too_small: tuple[int | None, int | None] | None = None
        # The stages (by name) that send to this cache's model; None: every stage.
        self._stages: set[str] | None = None
        self._server_clock = ServerClock()
        self._stats = CacheStats()
        check_client(client)

    # -- SharedResource -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The key under which stages find the handle in ``ctx.resources``."""
        return self._name

    @property
    def model(self) -> str:
        """The model the cache is made for, as ``models/<id>``."""
        return self._model

    @property
    def system_instruction(self) -> Any:
        """The system instruction held by the cache (sent inline if it cannot be cached)."""
        return self._system_instruction

    @property
    def contents(self) -> tuple[Any, ...]:
        """The contents held by the cache, ahead of every prompt."""
        return self._contents

    @property
    def tools(self) -> tuple[Any, ...]:
        """The tools held by the cache."""
        return self._tools

    @property
    def ttl(self) -> float:
        """Seconds of life asked for on create and on every extension."""
        return self._ttl

    @property
    def renew_margin(self) -> float:
        """Seconds of server-side life left at which the cache is extended."""
        return self._renew_margin

    @property
    def tag(self) -> str | None:
        """The user's tag in the display name."""
        return self._tag

    @property
    def on_close(self) -> ClosePolicy:
        """Whether closing keeps the cache for the next run or deletes it."""
        return self._on_close

    @property
    def fingerprint(self) -> str:
        """A hash of model, system instruction, contents and tools."""
        return self._fingerprint

    @property
    def display_name(self) -> str:
        """``stagedretry[:<tag>]:<fingerprint>``: how this cache is found again."""
        return self._display_name

    def secrets(self) -> tuple[str, ...]:
        """The *api_key* given, for the runner to mask (:class:`stagedretry.HoldsSecrets`)."""
        return (self._api_key,) if self._api_key else ()

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the counters since this object was made."""
        return self._stats

    def add_stages(self, names: Iterable[str]) -> None:
        """Mark *names* as stages on this cache's model (:meth:`GeminiStrategy.plan_resources`
        does it); from then on only stages so marked use it."""
        if self._stages is None:
            self._stages = set()
        self._stages.update(names)

    @property
    def stages(self) -> tuple[str, ...] | None:
        """The names of the stages on this cache's model, sorted; ``None``: every stage."""
        return None if self._stages is None else tuple(sorted(self._stages))

    def used_by(self, stage: Stage) -> bool:
        """Whether *stage* uses this cache (:class:`stagedretry.StageScoped`): a stage on its
        model.  The runner prepares it when the first such stage is reached, not before."""
        return self._stages is None or stage.name in self._stages

    @property
    def inline_reason(self) -> str | None:
        """Why requests carry the instructions inline instead of naming this cache, in one
        phrase (``"below the model's minimum of 4096 tokens"``); ``None`` while they name it."""
        if self._too_small is None:
            return None
        minimum = self._too_small[1]
        if minimum is None:
            return "below the model's minimum size for a cache"
        return f"below the model's minimum of {minimum} tokens"

    async def prepare(self, clock: Clock) -> CacheHandle:
        """Reuse a live cache with this fingerprint, else create one (or go inline if too small)."""
        if self._inline:
            return self._inline_handle()
        return await self._find_or_create(clock, exclude=None)

    def needs_renewal(self, handle: CacheHandle, clock: Clock) -> bool:
        """Whether the server's expiry is within ``renew_margin`` of the server's now (no I/O).

        The server's now is our clock plus how far ahead the server's clock was
        last seen: from the ``Date`` of the list that found the cache, or the
        ``create_time`` / ``update_time`` the server has just set.
        """
        expire = handle.expire_time
        return (
            expire is not None and expire <= clock.time() + handle.server_ahead + self.renew_margin
        )

    async def renew(self, handle: CacheHandle, reason: RenewReason, clock: Clock) -> CacheHandle:
        """Extend the cache before it expires; find or re-create it once it is gone."""
        if handle.name is None:
            return handle
        if reason is RenewReason.LOST:
            self._bump(lost=1)
            return await self._find_or_create(clock, exclude=handle.name)
        extended = await self._extend(handle, clock)
        if extended is None:
            self._bump(lost=1)
            return await self._find_or_create(clock, exclude=handle.name)
        self._bump(updated=1)
        return extended

    async def close(self, handle: CacheHandle | None) -> None:
        """Keep the cache for the next run, or delete it, as ``on_close`` says.

        A failure to delete is logged, never raised: the run's results matter more.
        """
        if handle is None or handle.name is None or self.on_close is ClosePolicy.KEEP:
            return
        name = handle.name
        try:
            await self._call(clock=None, make=lambda: self._client.aio.caches.delete(name=name))
        except Exception as exc:
            if not cache_gone(exc, named_cache=True):
                _log().warning(
                    "gemini_cache_delete_failed",
                    cache=name,
                    error=_redact(f"{exc!r}", self._secrets)[:300],
                )
            return
        self._bump(deleted=1)

    # -- the work -------------------------------------------------------------------------------

    async def _find_or_create(self, clock: Clock, *, exclude: str | None) -> CacheHandle:
        found = await self._call(clock, lambda: self._find(clock, exclude))
        if found is not None:
            adopted = await self._adopt(found, clock)
            if adopted is not None:
                self._bump(reused=1)
                return adopted
        handle = await self._create(clock)
        if handle.name is None:
            return handle
        return await self._converge(handle, clock, exclude=exclude)

    async def _adopt(self, found: types.CachedContent, clock: Clock) -> CacheHandle | None:
        """A found cache, extended first if it is close to its end by the server's clock;
        ``None`` if the extension finds it gone."""
        handle = self._handle(found)
        if not self.needs_renewal(handle, clock):
            return handle
        # A match close to its end is extended before its first use, never trusted as is.
        extended = await self._extend(handle, clock)
        if extended is not None:
            self._bump(updated=1)
        return extended

    async def _converge(
        self, mine: CacheHandle, clock: Clock, *, exclude: str | None
    ) -> CacheHandle:
        """After creating *mine*, look again: if another process created the same cache
        first, use that one and delete *mine* (only ever our own).

        Every process applies the same rule (``_converge.winner``) to what it sees, so
        all settle on the oldest live cache.  Should the second look or the winner's
        extension fail, the run goes on with *mine*: a duplicate costs storage, not items.
        """
        assert mine.name is not None
        try:
            found = await self._call(clock, lambda: self._find(clock, exclude))
            adopted = None
            if found is not None and found.name != mine.name:
                adopted = await self._adopt(found, clock)
        except StopRun:
            raise
        except Exception as exc:
            _log().warning(
                "gemini_cache_converge_failed",
                cache=mine.name,
                error=_redact(f"{exc!r}", self._secrets)[:300],
                fallback="this process uses the cache it created",
            )
            return mine
        if adopted is None:  # ours is the oldest, or the older one vanished meanwhile
            return mine
        await self._delete_duplicate(mine.name)
        self._bump(reused=1)
        return adopted

    async def _delete_duplicate(self, name: str) -> None:
        """Delete a cache this object created and lost to an older one."""
        try:
            await self._call(clock=None, make=lambda: self._client.aio.caches.delete(name=name))
        except Exception as exc:
            if not cache_gone(exc):
                # Left to expire by its TTL: storage is billed until then, nothing else.
                _log().warning(
                    "gemini_cache_duplicate_kept",
                    cache=name,
                    error=_redact(f"{exc!r}", self._secrets)[:300],
                )
                return
        self._bump(duplicates_deleted=1)

    async def _find(self, clock: Clock, exclude: str | None) -> types.CachedContent | None:
        """The live cache with this fingerprint and model that every process would pick
        (``_converge.winner``), if any; learns the server's clock from the list's ``Date``."""
        sent = clock.time()
        pager = await self._client.aio.caches.list(
            config=types.ListCachedContentsConfig(page_size=_LIST_PAGE_SIZE)
        )
        candidates: list[Candidate[types.CachedContent]] = []
        while True:
            # Each page's Date is a reading of the server's clock, taken with the list.
            reading = from_date(_headers(pager), sent=sent, received=clock.time())
            self._server_clock.observe(reading)
            for cached in pager.page:
                if cached.display_name != self.display_name or cached.name in (exclude, None):
                    continue
                if model_path(cached.model or "") != self._model:
                    continue
                candidates.append(
                    Candidate(
                        name=str(cached.name),
                        create_time=_epoch(cached.create_time),
                        expire_time=_epoch(cached.expire_time),
                        item=cached,
                    )
                )
            sent = clock.time()
            try:
                await pager.next_page()
            except IndexError:  # the SDK's way of saying there is no next page
                break
        server_now = self._server_clock.now(clock.time())
        best = winner(candidates, server_now=server_now)
        return best.item if best is not None else None

    async def _extend(self, handle: CacheHandle, clock: Clock) -> CacheHandle | None:
        """The cache with a fresh TTL, or ``None`` if the server says it is gone."""
        name = handle.name
        assert name is not None
        before = clock.time()
        try:
            updated = await self._call(
                clock,
                lambda: self._client.aio.caches.update(
                    name=name, config=types.UpdateCachedContentConfig(ttl=_duration(self.ttl))
                ),
            )
        except errors.APIError as exc:
            if cache_gone(exc, named_cache=True):
                return None
            raise
        reading = from_time(_epoch(updated.update_time), sent=before, received=clock.time())
        return self._handle(updated, reading=reading)

    async def _create(self, clock: Clock) -> CacheHandle:
        config = types.CreateCachedContentConfig(
            display_name=self.display_name,
            ttl=_duration(self.ttl),
            system_instruction=self.system_instruction,
            contents=list(self.contents) or None,
            tools=list(self.tools) or None,
        )
        before = clock.time()
        try:
            created = await self._call(
                clock, lambda: self._client.aio.caches.create(model=self._model, config=config)
            )
        except errors.APIError as exc:
            sizes = cache_too_small(exc)
            if sizes is None:
                raise
            self._inline = True
            self._too_small = sizes
            self._bump(inline_fallbacks=1)
            _log().warning(
                "gemini_cache_too_small",
                display_name=self.display_name,
                tokens=sizes[0],
                minimum=sizes[1],
                detail=_redact(str(exc.message), self._secrets),
                fallback="instructions are sent inline with every request",
            )
            return self._inline_handle()
        self._bump(created=1)
        reading = from_time(_epoch(created.create_time), sent=before, received=clock.time())
        return self._handle(created, reading=reading)

    async def _call(self, clock: Clock | None, make: Callable[[], Awaitable[T]]) -> T:
        """Run one cache API call, retrying transient faults and 429s a few times."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return await make()
            except Exception as exc:
                outcome = classify(exc)
                if outcome is not None and outcome.kind is OutcomeKind.STOP_RUN:
                    # The key, the project or the model: the run stops with what to fix.
                    raise StopRun(outcome.message) from exc
                retryable = outcome is not None and outcome.kind in (
                    OutcomeKind.TRANSIENT,
                    OutcomeKind.RATE_LIMITED,
                )
                if not retryable or attempt >= _CALL_ATTEMPTS or clock is None:
                    raise
                assert outcome is not None
                delay = outcome.retry_after
                await clock.sleep(_CALL_BACKOFF.ceiling(attempt) if delay is None else delay)

    def _handle(
        self,
        cached: types.CachedContent,
        *,
        reading: Reading | None = None,
    ) -> CacheHandle:
        """A handle for *cached*, after taking *reading* of the server's clock (from a
        time the server has just set in the response that returned *cached*)."""
        self._server_clock.observe(reading)
        usage = cached.usage_metadata
        return CacheHandle(
            name=cached.name,
            model=model_path(cached.model or self._model),
            display_name=cached.display_name or self.display_name,
            expire_time=_epoch(cached.expire_time),
            create_time=_epoch(cached.create_time),
            token_count=usage.total_token_count if usage is not None else None,
            server_ahead=self._server_clock.offset,
        )

    def _inline_handle(self) -> CacheHandle:
        return CacheHandle(name=None, model=self._model, display_name=self.display_name)

    def _bump(self, **increments: int) -> None:
        stats = self._stats
        self._stats = attrs.evolve(
            stats, **{key: getattr(stats, key) + value for key, value in increments.items()}
        )

    def __repr__(self) -> str:
        return (
            f"GeminiContextCache(model={self._model!r}, display_name={self.display_name!r}, "
            f"ttl={self.ttl:g}, renew_margin={self.renew_margin:g}, "
            f"on_close={self.on_close.value!r})"
        )
