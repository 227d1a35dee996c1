"""A tiny deterministic tokenizer shared by the offline strategies and the Gemini emulator."""

from __future__ import annotations

import re
from typing import Final

_TOKEN: Final = re.compile(r"\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """Words and punctuation marks in *text*: deterministic, close enough for accounting tests."""
    return len(_TOKEN.findall(text))


def truncate_tokens(text: str, limit: int) -> str:
    """The prefix of *text* that holds its first *limit* tokens."""
    if limit <= 0:
        return ""
    for index, match in enumerate(_TOKEN.finditer(text), start=1):
        if index == limit:
            return text[: match.end()]
    return text
