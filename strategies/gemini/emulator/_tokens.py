"""The emulator's tokenizer: simple, deterministic and documented.

A token is one match of ``\\w+|[^\\w\\s]``: a run of word characters, or one punctuation
character. ``{"a": 1}`` is therefore 7 tokens. Text parts count by that rule; an inline or
file part (an image, a PDF) counts a flat :data:`MEDIA_PART_TOKENS`, like one Gemini image
tile; function calls, function responses and tool declarations count the tokens of their
JSON text. Real tokenizers differ, but usage arithmetic only needs to be consistent.

The service also breaks counts down by modality (``promptTokensDetails`` and its siblings);
:func:`request_modalities` gives that breakdown: a media part counts for the modality of its
MIME type, everything else is TEXT.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

from strategies._tokens import count_tokens, truncate_tokens

__all__ = [
    "MEDIA_PART_TOKENS",
    "content_text",
    "content_tokens",
    "contents_tokens",
    "count_tokens",
    "json_tokens",
    "part_modality",
    "part_tokens",
    "request_modalities",
    "request_tokens",
    "truncate_tokens",
]

MEDIA_PART_TOKENS: Final = 258
"""Tokens charged for one ``inlineData`` / ``fileData`` part."""


def part_tokens(part: object) -> int:
    """Count the tokens of one ``Part`` JSON object."""
    if not isinstance(part, dict):
        return 0
    total = 0
    text = part.get("text")
    if isinstance(text, str):
        total += count_tokens(text)
    for key in ("inlineData", "inline_data", "fileData", "file_data"):
        if key in part:
            total += MEDIA_PART_TOKENS
    for key in (
        "functionCall",
        "function_call",
        "functionResponse",
        "function_response",
        "executableCode",
        "executable_code",
        "codeExecutionResult",
        "code_execution_result",
    ):
        if key in part:
            total += json_tokens(part[key])
    return total


_MEDIA_KEYS: Final = ("inlineData", "inline_data", "fileData", "file_data")
_MODALITY_OF_MIME: Final = {"image": "IMAGE", "audio": "AUDIO", "video": "VIDEO"}


def part_modality(part: object) -> str:
    """The ``MediaModality`` name a part counts for: a media part's MIME type decides, else TEXT."""
    if not isinstance(part, dict):
        return "TEXT"
    for key in _MEDIA_KEYS:
        media = part.get(key)
        if isinstance(media, dict):
            mime = media.get("mimeType", media.get("mime_type"))
            top = mime.split("/", 1)[0] if isinstance(mime, str) else ""
            # PDFs and other files are DOCUMENT, as the service reports them.
            return _MODALITY_OF_MIME.get(top, "DOCUMENT")
    return "TEXT"


def request_modalities(
    contents: Iterable[object], system: object, tools: Any, tool_config: Any
) -> dict[str, int]:
    """:func:`request_tokens` broken down by modality; the modalities with no tokens are absent."""
    counts: dict[str, int] = {}
    parts: list[object] = []
    for content in [system, *contents]:
        if isinstance(content, dict) and isinstance(content.get("parts"), list):
            parts.extend(content["parts"])
    for part in parts:
        tokens = part_tokens(part)
        if tokens:
            modality = part_modality(part)
            counts[modality] = counts.get(modality, 0) + tokens
    declared = json_tokens(tools) + json_tokens(tool_config)
    if declared:
        counts["TEXT"] = counts.get("TEXT", 0) + declared
    return counts


def content_tokens(content: object) -> int:
    """Count the tokens of one ``Content`` JSON object (its parts; the role is free)."""
    if not isinstance(content, dict):
        return 0
    parts = content.get("parts")
    if not isinstance(parts, list):
        return 0
    return sum(part_tokens(part) for part in parts)


def contents_tokens(contents: Iterable[object]) -> int:
    """Count the tokens of a list of ``Content`` objects."""
    return sum(content_tokens(content) for content in contents)


def request_tokens(contents: Iterable[object], system: object, tools: Any, tool_config: Any) -> int:
    """Count what a request (or a cache) holds: contents, system instruction, tools, tool config."""
    return (
        contents_tokens(contents)
        + content_tokens(system)
        + json_tokens(tools)
        + json_tokens(tool_config)
    )


def json_tokens(value: Any) -> int:
    """Count the tokens of a JSON value's compact text (tool declarations, function calls)."""
    if value is None:
        return 0
    return count_tokens(json.dumps(value, sort_keys=True, separators=(",", ":")))


def content_text(content: object) -> str:
    """Join the text parts of one ``Content`` object, for hashing the prompt."""
    if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
        return ""
    texts = []
    for part in content["parts"]:
        if isinstance(part, dict):
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            else:
                texts.append(json.dumps(part, sort_keys=True))
    return "\n".join(texts)
