"""How an error message names a value it did not expect: one wording for every reader.

Plans, pipelines, input lines and JSON Schema checks all say ``expected ..., got
the string 'five'`` the same way.
"""

from __future__ import annotations

import math
import re
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


# ``<ssl.SSLContext object at 0x7f...>``, ``<function f at 0x...>``, ``<coroutine object g at
# 0x...>``: Python's default reprs, which an exception's text often quotes (aiohttp's
# ``ssl:<ssl.SSLContext object at 0x7f...>``).  Innermost first: a bound method's repr holds one.
_ADDRESS_REPR: Final = re.compile(r"<(?P<what>[^<>]*?) at 0x[0-9A-Fa-f]+>")


def without_reprs(text: str) -> str:
    """*text* with each default object repr (``<x.Y object at 0x7f..>``) replaced by its name.

    ``Cannot connect to host h:443 ssl:<ssl.SSLContext object at 0x7f3a>`` becomes
    ``Cannot connect to host h:443 ssl:SSLContext``: the address changes with every run
    and says nothing to a reader, and it keeps equal errors from reading alike.
    """
    while True:
        shorter = _ADDRESS_REPR.sub(_name_of, text)
        if shorter == text:
            return text
        text = shorter


def _name_of(match: re.Match[str]) -> str:
    what = match["what"].removesuffix(" object")
    # "coroutine object ns.f" -> "f"; "ssl.SSLContext" -> "SSLContext".
    return what.split()[-1].rsplit(".", 1)[-1] if what.strip() else "object"
