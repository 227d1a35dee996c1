"""Example exceptions of the google-genai SDK by outcome kind, for testing a classification.

Each API error is made by the SDK itself (``errors.APIError.raise_for_response``)
from an HTTP response carrying a body as the Gemini API sends it (the sources of
each body are in ``docs/reference/gemini.md`` and the research note), so a test
of a ``classify()`` sees what a real client raises.  The transport errors are
the SDK's default HTTP stack's own (httpx2).  Give the map to
``stagedretry.testing.check_classification`` or ``check_plan(errors=...)``.
"""

from __future__ import annotations

from typing import Any, Final

import httpx2
from google.genai import errors

from stagedretry import OutcomeKind

__all__ = ["error_examples"]

_TYPE: Final = "type.googleapis.com/google.rpc."
_QUOTA: Final = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)
_METRIC: Final = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
_URL: Final = (
    "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"
)


def _quota(quota_id: str, value: str, retry: str | None) -> list[dict[str, Any]]:
    details: list[dict[str, Any]] = [
        {
            "@type": _TYPE + "QuotaFailure",
            "violations": [
                {
                    "quotaMetric": _METRIC,
                    "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                    "quotaValue": value,
                }
            ],
        },
        {
            "@type": _TYPE + "Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    if retry is not None:
        details.append({"@type": _TYPE + "RetryInfo", "retryDelay": retry})
    return details


def _error_info(reason: str) -> dict[str, Any]:
    return {
        "@type": _TYPE + "ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }


def _api_error(
    code: int,
    status: str,
    message: str,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> errors.APIError:
    """The error the SDK raises for an HTTP answer with this status and Google error body."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    response = httpx2.Response(
        code, json={"error": error}, headers=headers, request=httpx2.Request("POST", _URL)
    )
    try:
        errors.APIError.raise_for_response(response)
    except errors.APIError as raised:
        return raised
    raise AssertionError(f"the SDK raised nothing for HTTP {code}")  # pragma: no cover


def error_examples() -> dict[OutcomeKind, tuple[BaseException, ...]]:
    """Exceptions the Gemini client raises, by the outcome kind each must come to.

    Fresh objects on each call: ``RATE_LIMITED`` (a per-minute quota's 429 with
    and without ``RetryInfo``), ``TRANSIENT`` (500, 503, 504, a read timeout, a
    refused connection), ``RESOURCE_LOST`` (a cache not found, a cache
    expired), ``FATAL`` (a bad request, a request too large) and ``STOP_RUN``
    (a rejected key, rejected credentials, billing disabled, a per-day quota).
    """
    request = httpx2.Request("POST", _URL)
    return {
        OutcomeKind.RATE_LIMITED: (
            _api_error(
                429,
                "RESOURCE_EXHAUSTED",
                f"{_QUOTA} Please retry in 2s.",
                _quota("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "10", "2s"),
            ),
            _api_error(
                429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."
            ),
        ),
        OutcomeKind.TRANSIENT: (
            _api_error(
                500,
                "INTERNAL",
                "An internal error has occurred. Please retry or report in "
                "https://developers.generativeai.google/guide/troubleshooting",
            ),
            _api_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
            _api_error(
                504, "DEADLINE_EXCEEDED", "Deadline expired before operation could complete."
            ),
            httpx2.ReadTimeout("The read operation timed out", request=request),
            httpx2.ConnectError("[Errno 111] Connection refused", request=request),
        ),
        OutcomeKind.RESOURCE_LOST: (
            _api_error(403, "PERMISSION_DENIED", "CachedContent not found (or permission denied)"),
            _api_error(400, "INVALID_ARGUMENT", "Cache content 5550123 is expired."),
        ),
        OutcomeKind.FATAL: (
            _api_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
            _api_error(
                400,
                "INVALID_ARGUMENT",
                "The input token count (1200000) exceeds the maximum number of tokens allowed "
                "(1048576).",
            ),
        ),
        OutcomeKind.STOP_RUN: (
            _api_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [_error_info("API_KEY_INVALID")],
            ),
            _api_error(
                401,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                "login cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                [_error_info("ACCESS_TOKEN_TYPE_UNSUPPORTED")],
            ),
            _api_error(
                403,
                "PERMISSION_DENIED",
                "This API method requires billing to be enabled. Please enable billing on "
                "project #123456789012 by visiting "
                "https://console.developers.google.com/billing/enable?project=123456789012 "
                "then retry.",
                [_error_info("BILLING_DISABLED")],
            ),
            _api_error(
                429,
                "RESOURCE_EXHAUSTED",
                _QUOTA,
                _quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "250", "4s"),
            ),
        ),
    }
