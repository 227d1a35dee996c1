"""The emulator's tokenizer: simple, deterministic and documented.

A token is one match of ``\\w+|[^\\w\\s]``: a run of word characters, or one punctuation
character. ``{"a": 1}`` is therefore 7 tokens. Text parts count by that rule; an inline or
file part (an image, a PDF) counts a flat :data:`MEDIA_PART_TOKENS`, like one Gemini image
tile; function calls, function responses and tool declarations count the tokens of their
JSON text. Real tokenizers differ, but usage arithmetic only needs to be consistent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, Final

MEDIA_PART_TOKENS: Final = 258
"""Tokens charged for one ``inlineData`` / ``fileData`` part."""

_TOKEN: Final = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Count the tokens of one string."""
    return sum(1 for _ in _TOKEN.finditer(text))


def truncate_tokens(text: str, limit: int) -> str:
    """Return the prefix of ``text`` that holds its first ``limit`` tokens."""
    if limit <= 0:
        return ""
    for index, match in enumerate(_TOKEN.finditer(text), start=1):
        if index == limit:
            return text[: match.end()]
    return text


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
