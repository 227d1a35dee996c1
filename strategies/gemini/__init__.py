"""Gemini through the real google-genai SDK: the strategy, the shared context cache, the rules.

``GeminiStrategy`` sends each stage's request with ``client.aio.models.generate_content``;
``GeminiContextCache`` is the one explicit context cache every item and worker shares;
``gemini_rules`` classify the SDK's exceptions, and ``error_examples`` gives real ones to
test a classification with.  The loopback emulator used by the tests
lives in ``strategies.gemini.emulator``; Vertex AI's client and backend in
``strategies.gemini.vertex``.  This package is the only one that imports
``google.genai``.

Each name is loaded when first used: ``BACKEND`` (the command line's spec) and
``GeminiParams`` do not import ``google.genai``, so a command that sends nothing
(``plan show``, ``plan check``) starts without the SDK.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from ._backend import BACKEND, GeminiSection
    from ._cache import CacheHandle, CacheStats, ClosePolicy, GeminiContextCache
    from ._client import connect, disconnect
    from ._errors import classify, gemini_rules, run_failure
    from ._examples import error_examples
    from ._meta import response_meta, response_usage
    from ._params import GeminiParams
    from ._schema import subset_schema
    from ._strategy import STAGE_PARAMS, GeminiStrategy

__all__ = [
    "BACKEND",
    "STAGE_PARAMS",
    "CacheHandle",
    "CacheStats",
    "ClosePolicy",
    "GeminiContextCache",
    "GeminiParams",
    "GeminiSection",
    "GeminiStrategy",
    "classify",
    "connect",
    "disconnect",
    "error_examples",
    "gemini_rules",
    "response_meta",
    "response_usage",
    "run_failure",
    "subset_schema",
]

_MODULES = {
    "BACKEND": "._backend",
    "CacheHandle": "._cache",
    "CacheStats": "._cache",
    "ClosePolicy": "._cache",
    "GeminiContextCache": "._cache",
    "GeminiParams": "._params",
    "GeminiSection": "._backend",
    "GeminiStrategy": "._strategy",
    "STAGE_PARAMS": "._strategy",
    "classify": "._errors",
    "connect": "._client",
    "disconnect": "._client",
    "error_examples": "._examples",
    "gemini_rules": "._errors",
    "response_meta": "._meta",
    "response_usage": "._meta",
    "run_failure": "._errors",
    "subset_schema": "._schema",
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
