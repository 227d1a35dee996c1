"""Gemini through the real google-genai SDK: the strategy, the shared context cache, the rules.

``GeminiStrategy`` sends each stage's request with ``client.aio.models.generate_content``;
``GeminiContextCache`` is the one explicit context cache every item and worker shares;
``gemini_rules`` classify the SDK's exceptions, and ``error_examples`` gives real ones to
test a classification with.  The loopback emulator used by the tests
lives in ``strategies.gemini.emulator``.  This package is the only one that imports
``google.genai``.
"""

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
