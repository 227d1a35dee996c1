"""Wire-format helpers: error bodies, RFC 3339 timestamps and protobuf Durations.

Everything here is pure and mirrors what the Gemini Developer API puts on the wire, so
the rest of the emulator never formats a status line or a timestamp by hand.
"""

from __future__ import annotations

import datetime
import json
import math
import re
import time
from typing import Any, Final

JSON_CONTENT_TYPE: Final = "application/json; charset=UTF-8"

# Real messages, quoted from the reference catalogue (gemini-api.md section 3.5).
MSG_CACHE_NOT_FOUND: Final = "CachedContent not found (or permission denied)"
MSG_CACHE_WITH_SYSTEM: Final = (
    "CachedContent can not be used with GenerateContent request setting system_instruction, "
    "tools or tool_config. Proposed fix: move those values to CachedContent from "
    "GenerateContent request."
)
MSG_QUOTA: Final = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)
MSG_OVERLOADED: Final = "The model is overloaded. Please try again later."
MSG_INTERNAL: Final = (
    "An internal error has occurred. Please retry or report in "
    "https://developers.generativeai.google/guide/troubleshooting"
)
MSG_BAD_KEY: Final = "API key not valid. Please pass a valid API key."
MSG_MODEL_NOT_FOUND: Final = (
    "{model} is not found for API version {version}, or is not supported for {method}. Call "
    "ListModels to see the list of available models and their supported methods."
)
MSG_KEY_BLOCKED: Final = (
    "Requests to this API generativelanguage.googleapis.com method "
    "google.ai.generativelanguage.{version}.GenerativeService.GenerateContent are blocked."
)
MSG_BILLING_DISABLED: Final = (
    "This API method requires billing to be enabled. Please enable billing on project "
    "#123456789012 by visiting https://console.developers.google.com/billing/enable?project="
    "123456789012 then retry. If you enabled billing for this project recently, wait a few "
    "minutes for the action to propagate to our systems and retry."
)
MSG_NO_BILLING_ACCOUNT: Final = (
    "User location is not supported for the API use without a billing account linked."
)
MSG_UNAUTHENTICATED: Final = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. See "
    "https://developers.google.com/identity/sign-in/web/devconsole-project."
)
MSG_SPEND_CAP: Final = (
    "Your billing account has exceeded its monthly spending cap. Please go to AI Studio at "
    "https://aistudio.google.com to manage your billing. Learn more at "
    "https://ai.google.dev/gemini-api/docs/billing."
)
MSG_PREPAY_DEPLETED: Final = (
    "Your prepayment credits are depleted. Please go to AI Studio at https://ai.studio/projects "
    "to manage your project and billing. Learn more at "
    "https://ai.google.dev/gemini-api/docs/billing#prepay. "
)
MSG_NO_KEY: Final = (
    "Method doesn't allow unregistered callers (callers without established identity). "
    "Please use API Key or other form of API consumer identity to call this API."
)

BAD_GATEWAY_HTML: Final = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n"
    "  <title>Error 502 (Server Error)!!1</title>\n"
    "  <p><b>502.</b> <ins>That\u2019s an error.</ins>\n"
    "  <p>The server encountered a temporary error and could not complete your request."
    "<p>Please try again in 30 seconds. <ins>That\u2019s all we know.</ins>\n"
)

_STATUS_NAMES: Final = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})$"
)
_DURATION = re.compile(r"^(\d+)(?:\.(\d{1,9}))?s$")


class ApiError(Exception):
    """A Google-style error answer: raised inside a handler, rendered as the JSON error body."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        status: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status or _STATUS_NAMES.get(code, "UNKNOWN")
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """Return ``{"error": {...}}`` exactly as the service shapes it."""
        error: dict[str, Any] = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid(message: str) -> ApiError:
    """Build a 400 INVALID_ARGUMENT error."""
    return ApiError(400, message)


def error_info(reason: str, **metadata: str) -> dict[str, Any]:
    """A ``google.rpc.ErrorInfo`` detail, as the service attaches it to auth and billing errors."""
    return {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com", **metadata},
    }


def localized(message: str) -> dict[str, Any]:
    """A ``google.rpc.LocalizedMessage`` detail repeating *message* in ``en-US``."""
    return {
        "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
        "locale": "en-US",
        "message": message,
    }


def model_not_found(model: str, version: str, method: str) -> ApiError:
    """The 404 for a model the API does not serve (e.g. ``models/gemini-pro`` once retired)."""
    return ApiError(404, MSG_MODEL_NOT_FOUND.format(model=model, version=version, method=method))


def cache_not_found() -> ApiError:
    """Build the Developer API's 403 for a missing, deleted or expired cache."""
    return ApiError(403, MSG_CACHE_NOT_FOUND)


def cache_expired(cache_id: str) -> ApiError:
    """Build Vertex's 400 for an expired cache."""
    return ApiError(400, f"Cache content {cache_id} is expired.")


def dumps(value: Any) -> str:
    """Serialise a response body the way the service does (UTF-8, no ASCII escaping)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ": "))


def format_timestamp(epoch: float) -> str:
    """Format epoch seconds as RFC 3339 with six fractional digits and a ``Z``."""
    micros = round(epoch * 1_000_000)
    seconds, fraction = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:06d}Z"


def parse_timestamp(text: object, field: str) -> float:
    """Parse an RFC 3339 timestamp (``Z`` or an offset, 0-9 fractional digits) to epoch seconds.

    Naive timestamps are rejected, as protobuf's Timestamp parser does.
    """
    match = _TIMESTAMP.match(text) if isinstance(text, str) else None
    if match is None:
        raise invalid(
            f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.Timestamp), "
            f"Field '{field}', Illegal timestamp format; timestamps must end with 'Z' or have "
            f"a valid timezone offset. {json.dumps(text)}"
        )
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = match.group(7) or ""
    offset_text = match.group(8)
    try:
        moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    except ValueError as exc:
        raise invalid(f"Invalid value at '{field}': {text!r} is not a valid date.") from exc
    offset = 0
    if offset_text not in ("Z", "z"):
        sign = -1 if offset_text[0] == "-" else 1
        offset = sign * (int(offset_text[1:3]) * 3600 + int(offset_text[4:6]) * 60)
    return moment.timestamp() - offset + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def parse_duration(text: object, field: str) -> float:
    """Parse a protobuf Duration string such as ``"3600s"`` or ``"3.5s"`` to seconds."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if match is None:
        raise invalid(
            f"Invalid value at '{field}' (type.googleapis.com/google.protobuf.Duration), "
            f"{json.dumps(text)}"
        )
    fraction = match.group(2) or ""
    return int(match.group(1)) + (int(fraction) / 10 ** len(fraction) if fraction else 0.0)


def format_duration(seconds: float) -> str:
    """Format seconds as a protobuf Duration string: ``"2s"``, or ``"1.5s"`` when fractional."""
    if seconds == math.floor(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.9f}".rstrip("0") + "s"
