"""A loopback emulator of the Gemini Developer API, driven by the real google-genai SDK.

It serves ``cachedContents`` and ``generateContent`` faithfully enough for the SDK (errors,
paging, timestamps, token usage), answers schema requests deterministically with a tunable
share of invalid fields, and injects faults on demand.

Each name is loaded when first used: ``BACKEND`` (the command line's spec) imports
neither ``google.genai`` nor ``aiohttp``, which only :meth:`BACKEND.build` and the
server need.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._backend import BACKEND, EmulatorSection, EmulatorSettings, FaultSettings
    from ._caches import ExpiryStyle
    from ._client import make_client
    from ._faults import Fault, FaultKind
    from ._ledger import Ledger, RequestRecord, Usage
    from ._quota import EmulatorQuota, QuotaStats
    from ._server import GeminiEmulator
    from ._tokens import count_tokens

__all__ = [
    "BACKEND",
    "EmulatorQuota",
    "EmulatorSection",
    "EmulatorSettings",
    "ExpiryStyle",
    "Fault",
    "FaultKind",
    "FaultSettings",
    "GeminiEmulator",
    "Ledger",
    "QuotaStats",
    "RequestRecord",
    "Usage",
    "count_tokens",
    "make_client",
]

_MODULES = {
    "BACKEND": "._backend",
    "EmulatorQuota": "._quota",
    "EmulatorSection": "._backend",
    "EmulatorSettings": "._backend",
    "ExpiryStyle": "._caches",
    "Fault": "._faults",
    "FaultKind": "._faults",
    "FaultSettings": "._backend",
    "GeminiEmulator": "._server",
    "Ledger": "._ledger",
    "QuotaStats": "._quota",
    "RequestRecord": "._ledger",
    "Usage": "._ledger",
    "count_tokens": "._tokens",
    "make_client": "._client",
}


def __getattr__(name: str) -> _typing.Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
