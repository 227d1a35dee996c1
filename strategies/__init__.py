"""Provider strategies for stagedretry: ``callable``, ``sim`` and ``gemini``.

A strategy turns a :class:`Request` into a :class:`Response`.  The types are
defined by the engine and re-exported here for strategy authors.
"""

from stagedretry import Request, Response, ResponseMeta, StageContext, Strategy, Usage

from ._sampling import SamplingParams

__all__ = [
    "Request",
    "Response",
    "ResponseMeta",
    "SamplingParams",
    "StageContext",
    "Strategy",
    "Usage",
]
