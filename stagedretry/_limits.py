"""Limits on outside data, and a JSON reader that holds to them.

Everything read from outside (an input record, a model's answer, a journal
row, a pipeline or plan file, a JSON Schema file) is refused with a
``ValueError`` saying why when it breaks a limit, so that no later walk over
an accepted value (rendering a prompt, scrubbing secrets, writing a row) can
hit Python's recursion limit:

* :data:`MAX_DEPTH` -- arrays and objects (lists and tables) nest at most 64
  levels deep; a scalar at the top is depth 0, ``{"a": [1]}`` is depth 2.
* JSON numbers are finite: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON
  and could not be written back as JSON.
* Strings are Unicode text: a lone surrogate (``"\\ud800"``, valid JSON syntax)
  could not be written as UTF-8 to a journal, an output file or a terminal.

The limits on size (a record's line, a pipeline file) live with their readers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Final

MAX_DEPTH: Final = 64
"""How deep arrays and objects may nest in data read from outside."""

# A JSON string (escapes included) or a bracket: the brackets inside strings are skipped.
_TOKEN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_TOKEN_TEXT: Final = re.compile(_TOKEN.pattern.decode("ascii"), re.DOTALL)


class TooDeep(ValueError):
    """A value nests arrays and objects deeper than the limit."""

    def __init__(self, limit: int = MAX_DEPTH) -> None:
        super().__init__(f"nested more than {limit} levels deep")
        self.limit = limit


def check_json_depth(text: str | bytes, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`TooDeep` if the JSON *text* nests deeper than *limit*, without parsing it.

    Brackets inside strings do not count.  The scan is linear and never
    recurses, so it is safe on any input, valid JSON or not; it stops at the
    first bracket past the limit.
    """
    if isinstance(text, bytes):
        if text.count(b"[") + text.count(b"{") <= limit:
            return  # cannot be too deep: the common case costs two scans in C
        tokens: list[str | bytes] = [
            m.group() for m in _TOKEN.finditer(text) if len(m.group()) == 1
        ]
        opens: tuple[str | bytes, ...] = (b"[", b"{")
    else:
        if text.count("[") + text.count("{") <= limit:
            return
        tokens = [m.group() for m in _TOKEN_TEXT.finditer(text) if len(m.group()) == 1]
        opens = ("[", "{")
    depth = 0
    for token in tokens:
        depth += 1 if token in opens else -1
        if depth > limit:
            raise TooDeep(limit)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e999 is valid JSON text, but Python reads it as inf, which no strict writer takes.
        raise ValueError(f"{text[:40]} is too large for a JSON number")
    return value


_STRICT: Final = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite_float)


def _decode(data: bytes) -> str:
    # As json.loads reads bytes: UTF-8, -16 or -32 by its first bytes.
    return data.decode(json.detect_encoding(data), "surrogatepass")


def loads(text: str | bytes, limit: int = MAX_DEPTH, *, own: bool = False) -> Any:
    """Parse strict JSON: no deeper than *limit*, no ``NaN`` or ``Infinity``, nor a number
    too large for a float (``1e999``), no lone surrogate.  With *own* (data this library
    wrote itself: a journal's rows), ``NaN``, ``Infinity`` and lone surrogates are read as
    Python's ``json`` writes them: an output may hold them, and must read back unchanged.

    Raises ``ValueError`` (``json.JSONDecodeError``, :class:`TooDeep` or a
    plain one naming the constant or the surrogate) for anything else; never
    ``RecursionError``.
    """
    check_json_depth(text, limit)
    try:
        if own:
            return json.loads(text)
        # One decoder for every call: json.loads with hooks would build a new one each time,
        # half the cost of parsing a record.
        decoded = text if isinstance(text, str) else _decode(text)
        value = _STRICT.decode(decoded)
    except RecursionError:
        # Not reached below the limit; kept so that no caller ever sees one.
        raise TooDeep(limit) from None
    if isinstance(text, str) and not text.isascii():
        check_unicode(text)  # a surrogate already in the text (from a lenient decoder)
    if (b"\\u" in text) if isinstance(text, bytes) else ("\\u" in text):
        # Only a \u escape can yield one; the value is at most *limit* deep, so dumping it
        # to find out is safe.
        check_unicode(json.dumps(value, ensure_ascii=False))
    return value


def check_unicode(text: str) -> None:
    """Raise ``ValueError`` naming the first lone surrogate of *text* (no UTF-8 can hold it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end].encode("unicode_escape").decode("ascii")
        raise ValueError(
            f"a string holds a lone surrogate ({bad}), which is not Unicode text"
        ) from None


def check_depth(value: object, limit: int = MAX_DEPTH, *, max_nodes: int = 1_000_000) -> None:
    """Raise :class:`TooDeep` if the parsed *value* nests deeper than *limit*.

    Walks mappings, lists and tuples with a stack, not recursion.  A value
    that holds itself (a YAML alias to its own parent) is infinitely deep.
    More than *max_nodes* containers visited (YAML aliases can repeat a node
    exponentially often) raise ``ValueError`` as too large.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        depth += 1
        if depth > limit:
            raise TooDeep(limit)
        seen += 1
        if seen > max_nodes:
            raise ValueError(f"too large: more than {max_nodes} arrays and tables")
        stack.extend((child, depth) for child in children)


def utf8_json(data: object, **options: Any) -> str:
    """Compact JSON of *data* that encodes as UTF-8: non-ASCII text as is, unless a string holds
    a lone surrogate (an answer's ``"\\ud800"``), which is then escaped, as all non-ASCII is."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), **options)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":"), **options)
    return text
