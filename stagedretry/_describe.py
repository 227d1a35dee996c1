"""How an error message names a value it did not expect: one wording for every reader.

Plans, pipelines, input lines and JSON Schema checks all say ``expected ..., got
the string 'five'`` the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

_LONGEST: Final = 60
_LOG10_2: Final = math.log10(2)
_PRINTABLE_BITS: Final = 14_000  # under the 4300 digits repr() of an int accepts
_LONGEST_KEY: Final = 80


def key_name(key: object) -> str:
    """A key of a document as a message names it: a key past 80 characters cut short, with its
    length (a page pasted as a key must not flood the one line of the error)."""
    name = str(key)
    if len(name) > _LONGEST_KEY:
        name = f"{name[: _LONGEST_KEY - 20]}... ({len(name)} characters)"
    return name


def describe(value: object) -> str:
    """Name *value* for a reader: ``the string 'x'``, ``the number 3``, ``null``, ``a table``..."""
    if value is None:
        return "null"
    if isinstance(value, str):
        shown = repr(value)
        # A whole document pasted in the wrong place must not flood the message.
        if len(shown) > _LONGEST:
            shown = shown[: _LONGEST - 4] + "...'"
        return f"the string {shown}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int) and value.bit_length() > _PRINTABLE_BITS:
        # repr() of an int past 4300 digits raises ValueError: its size is what matters.
        return f"the number {'-' if value < 0 else ''}1e{int(value.bit_length() * _LOG10_2)} or so"
    if isinstance(value, int | float):
        shown = repr(value)
        if len(shown) > _LONGEST:
            shown = f"{shown[: _LONGEST - 3]}... ({len(shown)} digits)"
        return f"the number {shown}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__
