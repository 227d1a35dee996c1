"""The API semantics: cachedContents CRUD and generateContent, independent of HTTP.

Each method takes parsed JSON, reads the clock once, and returns a :class:`Reply` or raises
:class:`~._wire.ApiError`. State lives in one :class:`~._caches.CacheStore` guarded by one
lock, because the public helpers (``delete_cache``...) run on the caller's thread.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from ._caches import CacheStore, ExpiryStyle, cache_id_of, page_size_of
from ._faults import DEEP, FaultKind
from ._ledger import LedgerBook, Usage
from ._model import GenerationConfig, SimulatedModel
from ._tokens import (
    content_text,
    content_tokens,
    count_tokens,
    json_tokens,
    request_modalities,
    request_tokens,
    truncate_tokens,
)
from ._vertex import Api
from ._vertex import cache_too_small as vertex_too_small
from ._wire import MSG_CACHE_WITH_SYSTEM, ApiError, invalid, parse_duration, parse_timestamp

DEFAULT_TTL: Final = 3600.0
DEFAULT_MIN_CACHE_TOKENS: Final = 1024
MAX_DISPLAY_NAME: Final = 128

_HARM_CATEGORIES: Final = (
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)


@attrs.frozen(kw_only=True)
class Reply:
    """A successful answer: the JSON body, and the usage to bill if it is delivered intact."""

    body: dict[str, Any]
    usage: Usage | None = None


def _safety_ratings(
    flagged: str | None = None, *, by_severity: bool = False
) -> list[dict[str, Any]]:
    """The four usual ratings, NEGLIGIBLE unless one category is ``flagged`` HIGH.

    *by_severity* rates the flagged category the other way the ``SafetyRating`` message
    allows: ``blocked`` with a ``severity`` and no ``probability`` (proto3 JSON omits an
    unset enum), so a reader that keys on the probability alone loses it.
    """
    ratings: list[dict[str, Any]] = []
    for category in _HARM_CATEGORIES:
        if category == flagged and by_severity:
            ratings.append(
                {"category": category, "blocked": True, "severity": "HARM_SEVERITY_HIGH"}
            )
        elif category == flagged:
            ratings.append({"category": category, "probability": "HIGH", "blocked": True})
        else:
            ratings.append({"category": category, "probability": "NEGLIGIBLE"})
    return ratings


def _field(body: Mapping[str, Any], camel: str) -> Any:
    """Read a top-level request field in camelCase or snake_case."""
    if camel in body:
        return body[camel]
    return body.get("".join("_" + c.lower() if c.isupper() else c for c in camel))


class GeminiService:
    """The emulated Gemini Developer API, minus HTTP."""

    def __init__(
        self,
        *,
        seed: int,
        clock: Callable[[], float],
        min_cache_tokens: int | Mapping[str, int],
        expiry_style: ExpiryStyle,
        model: SimulatedModel,
        implicit_caching: bool,
        ledger: LedgerBook,
        api: Api = Api.GEMINI,
    ) -> None:
        self.lock = threading.RLock()
        self._api = api
        self._seed = seed
        self._clock = clock
        self._min_cache_tokens = min_cache_tokens
        self._model = model
        self._implicit = implicit_caching
        self._ledger = ledger
        self._store = CacheStore(seed=seed, style=expiry_style, api=api)
        self._prefixes: dict[str, int] = {}
        self._answers = 0

    # -- helpers used by the public emulator object ------------------------------------

    def drop_cache(self, name: str) -> bool:
        """Delete a cache server-side, as if the service dropped it; True if it existed."""
        with self.lock:
            return self._store.drop(cache_id_of(name))

    def expire_all(self) -> None:
        """Expire every cache at the current clock reading."""
        with self.lock:
            self._store.expire_all(self._clock())

    def cache_names(self) -> tuple[str, ...]:
        """Names of every stored cache (including lingering expired ones in VERTEX style)."""
        with self.lock:
            return self._store.names()

    def min_tokens_for(self, model: str) -> int:
        """The minimum cache size for ``model`` (``models/x`` or ``x``)."""
        if isinstance(self._min_cache_tokens, int):
            return self._min_cache_tokens
        bare = model.removeprefix("models/")
        for key in (model, bare, f"models/{bare}", "*"):
            if key in self._min_cache_tokens:
                return self._min_cache_tokens[key]
        return DEFAULT_MIN_CACHE_TOKENS

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        """The input tokens of a ``generateContent`` body, its cache's included (what a TPM
        quota counts); a cache that is gone or malformed counts nothing (the request then
        fails on its own)."""
        contents = body.get("contents")
        tokens = request_tokens(
            contents if isinstance(contents, list) else [],
            _field(body, "systemInstruction"),
            body.get("tools"),
            _field(body, "toolConfig"),
        )
        cache_name = _field(body, "cachedContent")
        if isinstance(cache_name, str):
            with self.lock, contextlib.suppress(ApiError):
                tokens += self._store.get(cache_id_of(cache_name), self._clock()).total_tokens
        return tokens

    # -- cachedContents ------------------------------------------------------------------

    def create_cache(self, body: Mapping[str, Any], *, location: str | None = None) -> Reply:
        """``POST cachedContents``: validate, count tokens, store, return the 7 fields.

        *location* is the Vertex location of the request's path (``None`` on the Developer
        API); *body*'s ``model`` is ``models/<id>`` in either case.
        """
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("* CreateCachedContentRequest.cached_content.model: model is required\n")
        if not model.startswith("models/") or model == "models/":
            raise invalid(f"Invalid model name: {model}. Expected format: models/{{model}}.")
        display_name = _field(body, "displayName")
        if display_name is not None and (
            not isinstance(display_name, str) or len(display_name) > MAX_DISPLAY_NAME
        ):
            raise invalid("display_name must be a string of at most 128 characters.")
        contents = body.get("contents") or []
        system = _field(body, "systemInstruction")
        tools = body.get("tools")
        tool_config = _field(body, "toolConfig")
        if not isinstance(contents, list):
            raise invalid("Invalid JSON payload received. contents must be a list.")
        with self.lock:
            now = self._clock()
            expire = self._expiry(body, now, "cached_content")
            total = request_tokens(contents, system, tools, tool_config)
            minimum = self.min_tokens_for(model)
            if total < minimum and self._api is Api.VERTEX:
                raise vertex_too_small(total, minimum)
            if total < minimum:
                raise invalid(
                    "Cached content is too small. "
                    f"total_token_count={total}, min_total_token_count={minimum}"
                )
            texts = [content_text(system)] + [content_text(c) for c in contents]
            created = self._store.creation_time(now)
            entry = self._store.add(
                cache_id=self._store.new_id(),
                model=model,
                display_name=display_name or None,
                create_time=created,
                update_time=created,
                expire_time=expire,
                total_tokens=total,
                modalities=request_modalities(contents, system, tools, tool_config),
                prompt_text="\n".join(texts) + json.dumps([tools, tool_config], sort_keys=True),
                location=location if self._api is Api.VERTEX else None,
            )
            self._ledger.count(caches_created=1, cache_tokens_created=total)
            return Reply(body=entry.to_json())

    def get_cache(self, name: str) -> Reply:
        """``GET cachedContents/{id}``."""
        with self.lock:
            return Reply(body=self._store.get(cache_id_of(name), self._clock()).to_json())

    def list_caches(self, query: Mapping[str, str]) -> Reply:
        """``GET cachedContents``: one page of live caches, in creation order."""
        size = page_size_of(query)
        token = query.get("pageToken", query.get("page_token")) or None
        with self.lock:
            entries, next_token = self._store.page(self._clock(), size, token)
            self._ledger.count(caches_listed=1)
        body: dict[str, Any] = {}
        if entries:
            body["cachedContents"] = [entry.to_json() for entry in entries]
        if next_token:
            body["nextPageToken"] = next_token
        return Reply(body=body)

    def update_cache(self, name: str, body: Mapping[str, Any], query: Mapping[str, str]) -> Reply:
        """``PATCH cachedContents/{id}``: only the expiration changes; ``updateTime`` moves."""
        mask_text = query.get("updateMask", query.get("update_mask"))
        fields = dict(body)
        if mask_text:
            mask = {m.strip() for m in mask_text.split(",") if m.strip()}
            allowed = {"ttl", "expireTime", "expire_time"}
            if not mask <= allowed:
                raise invalid(
                    f"Field mask {sorted(mask - allowed)} is not updatable; "
                    "only expiration (ttl or expire_time) can be updated."
                )
            fields = {k: v for k, v in fields.items() if k in mask or _snake_in(k, mask)}
        else:
            for key in ("displayName", "display_name", "contents", "model", "systemInstruction"):
                if key in fields:
                    raise invalid("Only expiration (ttl or expire_time) can be updated.")
        if "ttl" not in fields and _field(fields, "expireTime") is None:
            raise invalid("Either ttl or expire_time must be set to update a CachedContent.")
        with self.lock:
            now = self._clock()
            entry = self._store.get(cache_id_of(name), now)
            entry.expire_time = self._expiry(fields, now, "cached_content", default=None)
            entry.update_time = now
            self._ledger.count(caches_updated=1)
            return Reply(body=entry.to_json())

    def delete_cache(self, name: str) -> Reply:
        """``DELETE cachedContents/{id}``: 200 with ``{}``."""
        with self.lock:
            self._store.delete(cache_id_of(name), self._clock())
            self._ledger.count(caches_deleted=1)
        return Reply(body={})

    def _expiry(
        self, body: Mapping[str, Any], now: float, where: str, default: float | None = DEFAULT_TTL
    ) -> float:
        ttl = body.get("ttl")
        expire_time = _field(body, "expireTime")
        if ttl is not None and expire_time is not None:
            raise invalid("Only one of ttl or expire_time can be set on a CachedContent.")
        if ttl is not None:
            seconds = parse_duration(ttl, f"{where}.ttl")
            if seconds <= 0:
                raise invalid("ttl must be positive.")
            return now + seconds
        if expire_time is not None:
            moment = parse_timestamp(expire_time, f"{where}.expire_time")
            if moment <= now:
                raise invalid("expire_time must be in the future.")
            return moment
        assert default is not None
        return now + default

    # -- generateContent -----------------------------------------------------------------

    def generate(self, model_id: str, body: Mapping[str, Any], fault: FaultKind | None) -> Reply:
        """``POST models/{model}:generateContent``, shaped by a content fault if one fired."""
        model = f"models/{model_id}"
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise invalid("* GenerateContentRequest.contents: contents is not specified\n")
        system = _field(body, "systemInstruction")
        tools = body.get("tools")
        tool_config = _field(body, "toolConfig")
        cache_name = _field(body, "cachedContent")
        config = GenerationConfig.from_json(_field(body, "generationConfig"))
        with self.lock:
            cached = 0
            cache_modalities: dict[str, int] = {}
            prefix = ""
            if cache_name is not None:
                cache_id = cache_id_of(cache_name)
                if system is not None or tools is not None or tool_config is not None:
                    raise invalid(MSG_CACHE_WITH_SYSTEM)
                entry = self._store.get(cache_id, self._clock(), generating=True)
                if entry.model != model:
                    raise invalid(
                        f"Model used by GenerateContent request ({model}) and CachedContent "
                        f"({entry.model}) has to be the same."
                    )
                cached = entry.total_tokens
                cache_modalities = dict(entry.modalities) or {"TEXT": cached}
                prefix = entry.prompt_text
            fresh = request_tokens(contents, system, tools, tool_config)
            prompt_modalities = request_modalities(contents, system, tools, tool_config)
            for modality, tokens in cache_modalities.items():
                prompt_modalities[modality] = prompt_modalities.get(modality, 0) + tokens
            if cache_name is None and self._implicit:
                cached = self._implicit_hit(model, [system, tools, tool_config, *contents])
                # A prefix hit is read from the request's own parts; its text is what repeats.
                cache_modalities = {"TEXT": cached} if cached else {}
            self._answers += 1
            response_id = self._response_id(self._answers)
        prompt_tokens = fresh + (cached if cache_name is not None else 0)
        prompt = "\n".join([prefix, content_text(system), *(content_text(c) for c in contents)])
        answer = self._model.answer(model=model_id, prompt=prompt, config=config)
        usage_tail: dict[str, Any] = {"modelVersion": model_id, "responseId": response_id}
        details = _Details(
            prompt=prompt_modalities,
            cache=cache_modalities,
            only=fault is FaultKind.USAGE_DETAILS_ONLY,
        )

        if fault is FaultKind.BLOCKED_PROMPT or fault is FaultKind.NO_CANDIDATES:
            usage = Usage(prompt_tokens=prompt_tokens, cached_tokens=cached)
            if fault is FaultKind.NO_CANDIDATES:
                return Reply(body={"usageMetadata": _usage_json(usage, details)}, usage=usage)
            feedback = {
                "blockReason": "SAFETY",
                "safetyRatings": _safety_ratings("HARM_CATEGORY_HARASSMENT"),
            }
            return Reply(
                body={
                    "promptFeedback": feedback,
                    "usageMetadata": _usage_json(usage, details),
                    **usage_tail,
                },
                usage=usage,
            )
        if fault is FaultKind.SAFETY_STOP or fault is FaultKind.SAFETY_STOP_BY_SEVERITY:
            usage = Usage(
                prompt_tokens=prompt_tokens,
                cached_tokens=cached,
                thoughts_tokens=answer.thoughts_tokens,
            )
            candidate = {
                "finishReason": "SAFETY",
                "index": 0,
                "safetyRatings": _safety_ratings(
                    "HARM_CATEGORY_DANGEROUS_CONTENT",
                    by_severity=fault is FaultKind.SAFETY_STOP_BY_SEVERITY,
                ),
            }
            return Reply(
                body={
                    "candidates": [candidate],
                    "usageMetadata": _usage_json(usage, details),
                    **usage_tail,
                },
                usage=usage,
            )

        text = answer.text
        finish = "BRAND_NEW_REASON" if fault is FaultKind.UNKNOWN_ENUM else "STOP"
        if fault is FaultKind.DEEP_ANSWER:
            text = '{"title": ' + "[" * DEEP + "]" * DEEP + "}"
        full = count_tokens(text)
        if fault is FaultKind.MAX_TOKENS:
            text = truncate_tokens(text, max(1, full // 2))
            finish = "MAX_TOKENS"
        if config.max_output_tokens is not None:
            # Thinking spends the same budget first, as it does on Gemini 2.5 models.
            room = max(0, config.max_output_tokens - answer.thoughts_tokens)
            if count_tokens(text) > room:
                text = truncate_tokens(text, room)
                finish = "MAX_TOKENS"
        content: dict[str, Any] = {"role": "model"}
        if text:
            content = {"parts": [{"text": text}], "role": "model"}
        usage = Usage(
            prompt_tokens=prompt_tokens,
            cached_tokens=cached,
            candidates_tokens=count_tokens(text),
            thoughts_tokens=answer.thoughts_tokens,
        )
        candidate = {
            "content": content,
            "finishReason": finish,
            "index": 0,
            "safetyRatings": _safety_ratings(),
        }
        return Reply(
            body={
                "candidates": [candidate],
                "usageMetadata": _usage_json(usage, details),
                **usage_tail,
            },
            usage=usage,
        )

    def _implicit_hit(self, model: str, items: list[Any]) -> int:
        """Tokens of the longest previously seen request prefix, if large enough to count."""
        best = 0
        running = 0
        digest = hashlib.blake2b(model.encode(), digest_size=16)
        seen: list[tuple[str, int]] = []
        for item in items:
            if item is None:
                continue
            digest.update(json.dumps(item, sort_keys=True).encode())
            running += (
                content_tokens(item)
                if isinstance(item, dict) and "parts" in item
                else json_tokens(item)
            )
            key = digest.copy().hexdigest()
            if key in self._prefixes:
                best = self._prefixes[key]
            seen.append((key, running))
        self._prefixes.update(seen)
        return best if best >= self.min_tokens_for(model) else 0

    def _response_id(self, number: int) -> str:
        digest = hashlib.blake2b(f"{self._seed}:response:{number}".encode(), digest_size=16)
        return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")


def _snake_in(camel: str, mask: set[str]) -> bool:
    return "".join("_" + c.lower() if c.isupper() else c for c in camel) in mask


@attrs.frozen(kw_only=True)
class _Details:
    """The per-modality breakdown of one answer's usage, and how to report it."""

    prompt: Mapping[str, int]
    cache: Mapping[str, int]
    only: bool = False
    """Report prompt, candidates and cached tokens through their details alone."""


def _modality_list(counts: Mapping[str, int]) -> list[dict[str, Any]]:
    return [{"modality": m, "tokenCount": n} for m, n in counts.items() if n]


def _usage_json(usage: Usage, details: _Details | None = None) -> dict[str, Any]:
    """Render ``usageMetadata`` with proto3 JSON rules: zero fields are omitted.

    Each ``*TokensDetails`` list sums to its count.  With ``details.only`` the counts
    themselves are left out and only their breakdowns (and the total) are sent.
    """
    total = usage.prompt_tokens + usage.candidates_tokens + usage.thoughts_tokens
    only = details is not None and details.only
    prompt = dict(details.prompt) if details is not None else {}
    # Only what the answer read from a cache is broken down as cache tokens.
    cache = dict(details.cache) if details is not None and usage.cached_tokens else {}
    if sum(prompt.values()) != usage.prompt_tokens:
        prompt = {"TEXT": usage.prompt_tokens}
    if sum(cache.values()) != usage.cached_tokens:
        cache = {"TEXT": usage.cached_tokens}
    body: dict[str, Any] = {}
    if usage.prompt_tokens and not only:
        body["promptTokenCount"] = usage.prompt_tokens
    if usage.candidates_tokens and not only:
        body["candidatesTokenCount"] = usage.candidates_tokens
    if total:
        body["totalTokenCount"] = total
    if usage.cached_tokens and not only:
        body["cachedContentTokenCount"] = usage.cached_tokens
    if usage.prompt_tokens:
        body["promptTokensDetails"] = _modality_list(prompt)
    if usage.cached_tokens:
        body["cacheTokensDetails"] = _modality_list(cache)
    if usage.candidates_tokens and only:
        body["candidatesTokensDetails"] = [
            {"modality": "TEXT", "tokenCount": usage.candidates_tokens}
        ]
    if usage.thoughts_tokens:
        body["thoughtsTokenCount"] = usage.thoughts_tokens
    return body
