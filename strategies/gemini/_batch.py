"""Gemini batch jobs: the wire form of a request in a JSONL source, a job's answers, its name.

:class:`~._strategy.GeminiStrategy` submits one batch job per group of entries with
``client.aio.batches.create`` (inlined requests while the body stays under the size
limit, else a JSONL file uploaded with ``client.aio.files.upload``) and reads it back
with ``client.aio.batches.get`` (and ``client.aio.files.download`` for a responses
file).  This module holds what that needs besides the SDK calls: the request as the
REST API spells it (a JSONL line is written by hand, the SDK has no public converter),
the deterministic display name that lets a restarted run find a job it created just
before it stopped, and each answer turned into what ``generate`` returns or raises.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import attrs
import pydantic
from google.genai import errors, types

from stagedretry import BatchEntry, Response, TransientError

from ._errors import redact
from ._meta import SAFETY_FINISH_REASONS, answer_text, response_meta, response_usage

__all__ = [
    "DONE_STATES",
    "INLINE_LIMIT",
    "REFOUND_STATES",
    "answer_of",
    "display_name",
    "read_line",
    "wire_request",
]

INLINE_LIMIT: Final = 20 * 1024 * 1024
"""Bytes: the largest ``batchGenerateContent`` body with inlined requests (the batch-mode
guide's "under 20MB"; the front end refuses a larger one with "Request payload size
exceeds the limit: 20971520 bytes.")."""

BATCH_TIER: Final = "batch"
"""``ResponseMeta.service_tier`` of an answer that came from a batch job."""

DONE_STATES: Final = frozenset(
    {
        types.JobState.JOB_STATE_SUCCEEDED,
        types.JobState.JOB_STATE_FAILED,
        types.JobState.JOB_STATE_CANCELLED,
        types.JobState.JOB_STATE_EXPIRED,
        types.JobState.JOB_STATE_PARTIALLY_SUCCEEDED,
    }
)
"""States after which a job changes no more."""

REFOUND_STATES: Final = frozenset(
    {
        types.JobState.JOB_STATE_PENDING,
        types.JobState.JOB_STATE_QUEUED,
        types.JobState.JOB_STATE_RUNNING,
        types.JobState.JOB_STATE_SUCCEEDED,
        types.JobState.JOB_STATE_PARTIALLY_SUCCEEDED,
    }
)
"""States of a job worth re-attaching to: one that failed, was cancelled or expired is
not (its unanswered entries are what is being sent again)."""

_PREFIX: Final = "stagedretry-"

# google.rpc.Code of a request's failure inside a job -> the HTTP status generateContent
# answers with for the same failure (https://cloud.google.com/apis/design/errors).
_HTTP_OF_GRPC: Final = {
    1: (499, "CANCELLED"),
    2: (500, "UNKNOWN"),
    3: (400, "INVALID_ARGUMENT"),
    4: (504, "DEADLINE_EXCEEDED"),
    5: (404, "NOT_FOUND"),
    6: (409, "ALREADY_EXISTS"),
    7: (403, "PERMISSION_DENIED"),
    8: (429, "RESOURCE_EXHAUSTED"),
    9: (400, "FAILED_PRECONDITION"),
    10: (409, "ABORTED"),
    11: (400, "OUT_OF_RANGE"),
    12: (501, "UNIMPLEMENTED"),
    13: (500, "INTERNAL"),
    14: (503, "UNAVAILABLE"),
    15: (500, "DATA_LOSS"),
    16: (401, "UNAUTHENTICATED"),
}

# GenerateContentConfig fields that are fields of the request itself, not of its
# generationConfig; the others the SDK moves up are not set by the strategy.
_TOP_LEVEL: Final = {
    "system_instruction": "systemInstruction",
    "tools": "tools",
    "tool_config": "toolConfig",
    "safety_settings": "safetySettings",
    "cached_content": "cachedContent",
    "labels": "labels",
}
_CLIENT_ONLY: Final = frozenset(
    {"http_options", "automatic_function_calling", "should_return_http_response"}
)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def _dump(value: Any) -> Any:
    """A value as JSON, SDK models by their wire (camelCase) names."""
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _content(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = types.UserContent(parts=[types.Part(text=value)])
    elif isinstance(value, Mapping):
        value = types.Content.model_validate(value)
    elif isinstance(value, types.Part):
        value = types.UserContent(parts=[value])
    dumped = _dump(value)
    assert isinstance(dumped, dict)
    return dumped


def wire_request(contents: Sequence[Any], config: types.GenerateContentConfig) -> dict[str, Any]:
    """A ``GenerateContentRequest`` as the REST API spells it, for one JSONL line.

    What ``client.aio.batches.create`` sends for an inlined request with the same
    *contents* and *config* (the tests compare the two as the emulator receives them).
    """
    request: dict[str, Any] = {"contents": [_content(c) for c in contents]}
    generation: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if value is None or name in _CLIENT_ONLY:
            continue
        if name == "system_instruction":
            request["systemInstruction"] = _content(value)
        elif name in _TOP_LEVEL:
            request[_TOP_LEVEL[name]] = _dump(value)
        elif name == "response_schema":
            schema = (
                value if isinstance(value, types.Schema) else types.Schema.model_validate(value)
            )
            generation["responseSchema"] = _dump(schema)
        elif name == "response_json_schema":
            generation["responseJsonSchema"] = value
        else:
            generation[_camel(name)] = _dump(value)
    request["generationConfig"] = generation  # sent even empty, as the SDK does
    return request


def display_name(entries: Sequence[BatchEntry], requests: Iterable[Mapping[str, Any]]) -> str:
    """A name that only the same attempts of the same requests share.

    It hashes each entry's key, item, stage and attempt number with its request, so a
    run restarted after it created a job (and before it recorded it) finds that job,
    while a later attempt of the same request, even word for word, gets a new one.
    """
    digest = hashlib.blake2b(digest_size=16)
    for entry, request in zip(entries, requests, strict=True):
        ctx = entry.ctx
        head = [entry.key, entry.request.item_id, ctx.stage.name, ctx.attempt]
        digest.update(json.dumps([head, request], sort_keys=True, default=str).encode())
        digest.update(b"\x00")
    return _PREFIX + digest.hexdigest()


def answer_of(
    response: types.GenerateContentResponse | None,
    error: types.JobError | None,
    secrets: Any = None,
) -> Response | Exception:
    """One request's answer as ``generate`` returns it, or the exception it would raise."""
    if error is not None or response is None:
        code = error.code if error is not None and error.code is not None else 2
        message = (error.message if error is not None else None) or "the batch gave no answer"
        return _api_error(code, redact(message, secrets)[:500])
    meta = attrs.evolve(response_meta(response), service_tier=BATCH_TIER)
    usage = response_usage(response)
    if meta.blocked or meta.finish_reason in SAFETY_FINISH_REASONS:
        return Response(None, usage, meta)
    return Response(answer_text(response), usage, meta)


def _api_error(code: int, message: str) -> errors.APIError:
    """The SDK's exception for a status, as ``generate`` would raise it for one request."""
    # A job reports a google.rpc.Status; an HTTP status is kept as it is.
    http, status = _HTTP_OF_GRPC.get(code, (code, "UNKNOWN")) if code < 100 else (code, None)
    body: dict[str, Any] = {"error": {"code": http, "message": message}}
    if status is not None:
        body["error"]["status"] = status
    if 400 <= http < 500:
        return errors.ClientError(http, body)
    if http >= 500:
        return errors.ServerError(http, body)
    return errors.APIError(http, body)


def read_line(line: str, secrets: Any = None) -> tuple[str | None, Response | Exception]:
    """One line of a responses file: its key, and its answer (or the exception)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None, TransientError("a line of the batch's responses file is not JSON")
    if not isinstance(row, dict):
        return None, TransientError("a line of the batch's responses file is not an object")
    key = row.get("key")
    if not isinstance(key, str):
        metadata = row.get("metadata")
        found = metadata.get("key") if isinstance(metadata, dict) else None
        key = found if isinstance(found, str) else None
    try:
        raw_error = row.get("error")
        error = (
            # Only the code and the message: a Status's details are objects, not strings.
            types.JobError(code=raw_error.get("code"), message=raw_error.get("message"))
            if isinstance(raw_error, dict)
            else None
        )
        response = (
            # _from_response drops the fields this SDK does not know yet, as the SDK does for
            # every response it reads: a newer server must not make an answer unreadable.
            types.GenerateContentResponse._from_response(response=row["response"], kwargs={})
            if isinstance(row.get("response"), dict)
            else None
        )
    except pydantic.ValidationError as exc:
        return key, TransientError(f"unreadable batch answer: {exc.error_count()} fields")
    return key, answer_of(response, error, secrets)
