"""The cache store: CachedContent entries with expiry on the emulator's clock."""

from __future__ import annotations

import base64
import binascii
import enum
import random
import re
import string
from collections.abc import Mapping
from typing import Any

import attrs

from ._vertex import Api, cache_gone_generate, cache_gone_manage, cache_resource, model_resource
from ._wire import ApiError, cache_expired, cache_not_found, format_timestamp, invalid

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_ID_ALPHABET = string.ascii_lowercase + string.digits
_VERTEX_PREFIX = re.compile(r"^projects/[^/]+/locations/[^/]+/(?=cachedContents/)")


class ExpiryStyle(enum.Enum):
    """How an expired cache answers: the Developer API's way, or Vertex's."""

    GEMINI = "gemini"
    """Expired caches vanish: 403 PERMISSION_DENIED "CachedContent not found (or ...)"."""
    VERTEX = "vertex"
    """Expired caches linger: 400 INVALID_ARGUMENT "Cache content <id> is expired."."""


@attrs.define(kw_only=True)
class CacheEntry:
    """One stored cache; ``contents``, ``system_instruction`` and ``tools`` are never returned."""

    seq: int
    cache_id: str
    model: str
    display_name: str | None
    create_time: float
    update_time: float
    expire_time: float
    total_tokens: int
    prompt_text: str
    modalities: dict[str, int] = attrs.field(factory=dict)
    """``total_tokens`` by modality, reported as ``cacheTokensDetails`` when the cache is read."""
    location: str | None = None
    """The Vertex location the cache was created in (``None`` on the Developer API)."""

    @property
    def name(self) -> str:
        """The resource name: ``cachedContents/<id>``, or Vertex's full name."""
        if self.location is not None:
            return cache_resource(self.cache_id, self.location)
        return f"cachedContents/{self.cache_id}"

    def to_json(self) -> dict[str, Any]:
        """Render the seven output fields of ``CachedContent`` (Vertex's names in Vertex mode)."""
        model = self.model if self.location is None else model_resource(self.model, self.location)
        body: dict[str, Any] = {"name": self.name, "model": model}
        if self.display_name:
            body["displayName"] = self.display_name
        body["createTime"] = format_timestamp(self.create_time)
        body["updateTime"] = format_timestamp(self.update_time)
        body["expireTime"] = format_timestamp(self.expire_time)
        body["usageMetadata"] = {"totalTokenCount": self.total_tokens}
        return body


def cache_id_of(name: object) -> str:
    """Accept ``cachedContents/<id>``, Vertex's ``projects/P/locations/L/cachedContents/<id>``
    or a bare id and return the id, or raise a 400."""
    if not isinstance(name, str) or not name:
        raise invalid("CachedContent name must be a non-empty string.")
    cache_id = _VERTEX_PREFIX.sub("", name, count=1).removeprefix("cachedContents/")
    if not cache_id or "/" in cache_id or not all(c.isalnum() or c in "-_" for c in cache_id):
        raise invalid(
            f"Invalid CachedContent name: {name}. Expected format: cachedContents/{{id}}."
        )
    return cache_id


class CacheStore:
    """All caches of one emulator; callers hold the emulator's lock around every call."""

    def __init__(self, *, seed: int, style: ExpiryStyle, api: Api = Api.GEMINI) -> None:
        self._rng = random.Random(f"stagedretry-emulator-cache-ids:{seed}")
        self._style = style
        self._api = api
        self._entries: dict[str, CacheEntry] = {}
        self._seq = 0
        self._last_created = 0  # microseconds

    def new_id(self) -> str:
        """Draw a fresh id, deterministic for a seed: 40 characters ``[a-z0-9]`` on the
        Developer API, 19 digits on Vertex."""
        while True:
            if self._api is Api.VERTEX:
                cache_id = str(self._rng.randrange(10**18, 10**19))
            else:
                cache_id = "".join(self._rng.choice(_ID_ALPHABET) for _ in range(40))
            if cache_id not in self._entries:
                return cache_id

    def creation_time(self, now: float) -> float:
        """*now* for a new cache, a microsecond after the last creation at the least.

        A server's ``create_time`` follows the order it made caches in, to the microsecond
        it reports; a frozen virtual clock would give several caches one time and leave
        processes converging on the oldest to break the tie by name alone.
        """
        micros = max(round(now * 1_000_000), self._last_created + 1)
        self._last_created = micros
        return micros / 1_000_000

    def _gone(self, cache_id: str, *, generating: bool) -> ApiError:
        """The API's error for a cache that does not exist (any more)."""
        if self._api is Api.VERTEX:
            return cache_gone_generate(cache_id) if generating else cache_gone_manage(cache_id)
        return cache_not_found()

    def add(self, **fields: Any) -> CacheEntry:
        """Store a new entry (fields as in :class:`CacheEntry`, minus ``seq``)."""
        self._seq += 1
        entry = CacheEntry(seq=self._seq, **fields)
        self._entries[entry.cache_id] = entry
        return entry

    def get(self, cache_id: str, now: float, *, generating: bool = False) -> CacheEntry:
        """Return a live entry or raise the style's cache-gone error.

        In GEMINI style an expired entry is purged and answers as a missing one. In VERTEX
        style it is kept and answers 400 "is expired" (to generateContent, and to get/patch as
        well).  A missing one answers 403 on the Developer API; on Vertex 404, worded one way
        to *generating* requests and another to get, update and delete.
        """
        entry = self._entries.get(cache_id)
        if entry is None:
            raise self._gone(cache_id, generating=generating)
        if entry.expire_time <= now:
            if self._style is ExpiryStyle.GEMINI:
                del self._entries[cache_id]
                raise self._gone(cache_id, generating=generating)
            raise cache_expired(cache_id)
        return entry

    def delete(self, cache_id: str, now: float) -> None:
        """Delete an entry; an expired one is gone already in GEMINI style."""
        entry = self._entries.get(cache_id)
        if entry is None or (entry.expire_time <= now and self._style is ExpiryStyle.GEMINI):
            self._entries.pop(cache_id, None)
            raise self._gone(cache_id, generating=False)
        del self._entries[cache_id]

    def drop(self, cache_id: str) -> bool:
        """Delete server-side without any check; True if something was there."""
        return self._entries.pop(cache_id, None) is not None

    def expire_all(self, now: float) -> None:
        """Make every entry expire now."""
        for entry in self._entries.values():
            entry.expire_time = min(entry.expire_time, now)

    def names(self) -> tuple[str, ...]:
        """Return the names of every stored entry, expired or not."""
        return tuple(entry.name for entry in self._entries.values())

    def page(
        self, now: float, page_size: int, page_token: str | None
    ) -> tuple[list[CacheEntry], str | None]:
        """Return one page of live entries in creation order, and the next page's token."""
        after = _decode_token(page_token) if page_token else 0
        live = [e for e in self._entries.values() if e.expire_time > now and e.seq > after]
        live.sort(key=lambda entry: entry.seq)
        chosen = live[:page_size]
        next_token = _encode_token(chosen[-1].seq) if len(live) > page_size else None
        return chosen, next_token


def page_size_of(query: Mapping[str, str]) -> int:
    """Read ``pageSize``: absent or 0 means the default, above 1000 is coerced to 1000."""
    raw = query.get("pageSize", query.get("page_size"))
    if raw is None or raw == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise invalid(f"Invalid value at 'page_size' (TYPE_INT32), \"{raw}\"") from None
    if size < 0:
        raise invalid("page_size must not be negative.")
    return min(size, MAX_PAGE_SIZE) or DEFAULT_PAGE_SIZE


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"after:{seq}".encode()).decode().rstrip("=")


def _decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "after":
            raise ValueError(token)
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "Invalid page token.") from None
