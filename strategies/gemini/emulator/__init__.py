"""A loopback emulator of the Gemini Developer API (or of Vertex AI), driven by the real SDK.

It serves ``cachedContents`` and ``generateContent`` faithfully enough for the SDK (errors,
paging, timestamps, token usage), and the Batch API with the Files API it reads and writes;
it answers schema requests deterministically with a tunable share of invalid fields, and
injects faults on demand.

Each name is loaded when first used: ``BACKEND`` (the command line's spec) imports
neither ``google.genai`` nor ``aiohttp``, which only :meth:`BACKEND.build` and the
server need.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._backend import BACKEND, EmulatorSection, EmulatorSettings, FaultSettings
    from ._caches import ExpiryStyle
    from ._client import make_client, make_vertex_client
    from ._faults import Fault, FaultKind
    from ._flex import FlexSettings
    from ._ledger import BatchRecord, Ledger, RequestRecord, TierTotals, Usage
    from ._quota import EmulatorQuota, QuotaStats
    from ._server import GeminiEmulator
    from ._tokens import count_tokens
    from ._vertex import Api, credentials_info

__all__ = [
    "BACKEND",
    "Api",
    "BatchRecord",
    "EmulatorQuota",
    "EmulatorSection",
    "EmulatorSettings",
    "ExpiryStyle",
    "Fault",
    "FaultKind",
    "FaultSettings",
    "FlexSettings",
    "GeminiEmulator",
    "Ledger",
    "QuotaStats",
    "RequestRecord",
    "TierTotals",
    "Usage",
    "count_tokens",
    "credentials_info",
    "make_client",
    "make_vertex_client",
]

_MODULES = {
    "Api": "._vertex",
    "BACKEND": "._backend",
    "BatchRecord": "._ledger",
    "EmulatorQuota": "._quota",
    "EmulatorSection": "._backend",
    "EmulatorSettings": "._backend",
    "ExpiryStyle": "._caches",
    "Fault": "._faults",
    "FaultKind": "._faults",
    "FaultSettings": "._backend",
    "FlexSettings": "._flex",
    "GeminiEmulator": "._server",
    "Ledger": "._ledger",
    "QuotaStats": "._quota",
    "RequestRecord": "._ledger",
    "TierTotals": "._ledger",
    "Usage": "._ledger",
    "count_tokens": "._tokens",
    "credentials_info": "._vertex",
    "make_client": "._client",
    "make_vertex_client": "._client",
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
