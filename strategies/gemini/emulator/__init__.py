"""A loopback emulator of the Gemini Developer API, driven by the real google-genai SDK.

It serves ``cachedContents`` and ``generateContent`` faithfully enough for the SDK (errors,
paging, timestamps, token usage), answers schema requests deterministically with a tunable
share of invalid fields, and injects faults on demand.
"""

from ._backend import BACKEND, EmulatorSection, EmulatorSettings, FaultSettings
from ._caches import ExpiryStyle
from ._client import make_client
from ._faults import Fault, FaultKind
from ._ledger import Ledger, RequestRecord, Usage
from ._server import GeminiEmulator
from ._tokens import count_tokens

__all__ = [
    "BACKEND",
    "EmulatorSection",
    "EmulatorSettings",
    "ExpiryStyle",
    "Fault",
    "FaultKind",
    "FaultSettings",
    "GeminiEmulator",
    "Ledger",
    "RequestRecord",
    "Usage",
    "count_tokens",
    "make_client",
]
