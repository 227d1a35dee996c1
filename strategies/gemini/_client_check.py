"""Whether a ``google.genai.Client`` suits the engine: no retries of its own, the right API.

The engine retries, waits and counts every request itself, so a client that
retries on its own hides requests (and seconds) from the budget, the
accounting and the deadlines.  google-genai 3.x does so in two cases:

* ``HttpRetryOptions`` with more than one attempt (``attempts=None`` is 5):
  tenacity retries 408/429/5xx and transport errors (``retry_args`` in
  ``google/genai/_api_client.py``);
* no ``retry_options`` at all on the aiohttp transport, which ``client.aio``
  uses whenever aiohttp can be imported: after a connection error it sleeps
  1 to 10 s and connects again, once (``_async_request_once``, the
  ``if not implicit_retry or self._http_options.retry_options: raise`` branches).

And the Gemini Developer API's default version is ``v1`` since SDK 3.0,
while the context cache (``cachedContents``) and the response schemas the
strategy sends are the ``v1beta`` API's.  :func:`check_client` warns once per
client, naming the fix; :func:`strategies.gemini.connect` builds a client
that needs none.

The SDK has no public accessor for a client's options: they are read from
``client._api_client`` (its ``get_read_only_http_options()``, else its
``_http_options``), defensively, and never changed.  Anything unreadable is
taken as fine rather than guessed at.
"""

from __future__ import annotations

import importlib.util
import threading
import warnings
import weakref
from collections.abc import Mapping
from typing import Any, Final

NEEDED_API_VERSION: Final = "v1beta"
"""The Gemini Developer API version whose features the strategy and the cache use."""

SDK_DEFAULT_ATTEMPTS: Final = 5
"""The attempts of ``HttpRetryOptions()`` left unset (``_RETRY_ATTEMPTS`` in the SDK)."""

FIX: Final = (
    "build it with http_options=HttpOptions(api_version='v1beta', "
    "retry_options=HttpRetryOptions(attempts=1)), or with strategies.gemini.connect(api_key, "
    "base_url=...)"
)

_warned: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()


def client_problems(client: object) -> tuple[str, ...]:
    """What in *client*'s setup works against the engine, one phrase each; ``()`` when nothing.

    Reads the client's HTTP options only; sends nothing.
    """
    options = _http_options(client)
    if options is None:
        return ()
    problems = []
    retry = _field(options, "retry_options")
    if retry is None:
        if _uses_aiohttp(options):
            problems.append(
                "it retries on its own: with no retry_options, its aiohttp transport sleeps "
                "1 to 10 s and reconnects after a connection error, unseen by stagedretry's "
                "budget and deadlines"
            )
    else:
        attempts = _field(retry, "attempts")
        count = SDK_DEFAULT_ATTEMPTS if attempts is None else attempts
        if isinstance(count, int) and count > 1:
            shown = f"attempts={attempts}" if attempts is not None else "attempts unset: 5"
            problems.append(
                f"it retries on its own ({shown}): those retries are unseen by stagedretry's "
                "budget and accounting"
            )
    version = _field(options, "api_version")
    if not _is_vertex(client) and isinstance(version, str) and version != NEEDED_API_VERSION:
        problems.append(
            f"it calls API version {version!r} (the SDK's default is 'v1'), but the context "
            f"cache and response schemas are the {NEEDED_API_VERSION!r} API's"
        )
    return tuple(problems)


def check_client(client: object, *, stacklevel: int = 3) -> None:
    """Warn (``UserWarning``), once per client, when *client* retries on its own or calls
    another API version than ``v1beta``; the message names the fix.

    *stacklevel* as for :func:`warnings.warn`, counted from the caller of this function's
    caller (the default points at the code that built the strategy or the cache).
    """
    problems = client_problems(client)
    if not problems:
        return
    with _lock:
        try:
            if client in _warned:
                return
            _warned.add(client)
        except TypeError:  # not weakly referenceable: warn every time rather than never
            pass
    warnings.warn(
        f"this google-genai client does not suit stagedretry: {'; and '.join(problems)}; {FIX}",
        UserWarning,
        stacklevel=stacklevel,
    )


def _http_options(client: object) -> object | None:
    api_client = getattr(client, "_api_client", None)
    if api_client is None:
        return None
    read = getattr(api_client, "get_read_only_http_options", None)
    if callable(read):
        try:
            options: object = read()
        except Exception:  # an SDK that changed shape: read the attribute instead
            options = None
        if options is not None:
            return options
    return getattr(api_client, "_http_options", None)


def _field(options: object, name: str) -> Any:
    if isinstance(options, Mapping):
        return options.get(name)
    return getattr(options, name, None)


def _uses_aiohttp(options: object) -> bool:
    """Whether ``client.aio`` goes through aiohttp, as the SDK's ``_use_aiohttp`` decides."""
    if importlib.util.find_spec("aiohttp") is None:
        return False
    async_args = _field(options, "async_client_args") or {}
    transport = async_args.get("transport") if isinstance(async_args, Mapping) else None
    return transport is None and _field(options, "httpx_async_client") is None


def _is_vertex(client: object) -> bool:
    # Vertex AI names its versions differently (v1, v1beta1): not this check's business.
    return getattr(client, "vertexai", False) is True
