"""Command-line overrides: ``--set key.path=value``, applied to a pipeline's data before reading."""

from __future__ import annotations

import re
import tomllib
from typing import Any, Final

from stagedretry import PlanError
from stagedretry._limits import MAX_DEPTH, TooDeep, check_depth

_SEGMENT: Final = re.compile(r'"(?P<quoted>[^"]*)"|(?P<bare>[^.\["]+)|\[(?P<index>\d+)\]')


_LONGEST_KEY: Final = 80


def _named(key: str) -> str:
    """``--set KEY`` for a message, a key past 80 characters cut short (one line, not a page)."""
    if len(key) > _LONGEST_KEY:
        key = f"{key[: _LONGEST_KEY - 20]}... ({len(key)} characters)"
    return f"--set {key}"


def split_key(key: str) -> tuple[str | int, ...]:
    """``plan.stages[1].params.temperature`` -> ``("plan", "stages", 1, "params", "temperature")``.

    Quote a segment holding dots: ``prices."gemini-2.5-flash".input``.
    """
    out: list[str | int] = []
    pos = 0
    expect_dot = False
    while pos < len(key):
        if expect_dot and key[pos] == ".":
            pos += 1
            expect_dot = False
            continue
        match = _SEGMENT.match(key, pos)
        if match is None or (expect_dot and match.group("index") is None):
            raise PlanError(_named(key), f"cannot read the key at character {pos + 1}")
        if match.group("index") is not None:
            if not out:
                raise PlanError(_named(key), "a key cannot start with an index")
            out.append(int(match.group("index")))
        else:
            out.append(
                match.group("quoted") if match.group("quoted") is not None else match.group("bare")
            )
        pos = match.end()
        expect_dot = True
    if not out or not isinstance(out[0], str) or not out[0] or key.endswith("."):
        raise PlanError(_named(key), "empty key")
    return tuple(out)


def parse_override(text: str) -> tuple[str, Any]:
    """Read ``key.path=value``; the value is a TOML value, else a plain string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise PlanError(_named(text), "expected key.path=value")
    # The key's tables and the value's nest together in the pipeline: both count to the limit.
    room = MAX_DEPTH - len(split_key(key))
    if room < 0:
        raise PlanError(_named(key), f"the key is {TooDeep()}")
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
        check_depth(value, room)
    except (TooDeep, RecursionError):
        raise PlanError(_named(key), f"the key and value are {TooDeep()}") from None
    except ValueError:  # not a TOML value (an integer too long to convert is not one either)
        value = raw
    return key, value


def apply_override(data: dict[str, Any], key: str, value: Any) -> None:
    """Set *key* in the parsed file *data*, making the tables it passes through.

    A list index may name an existing element or the one after the last.
    """
    path = split_key(key)
    node: Any = data
    for i, segment in enumerate(path[:-1]):
        following = path[i + 1]
        if isinstance(segment, int):
            if not isinstance(node, list) or segment >= len(node):
                raise PlanError(_named(key), f"there is no element [{segment}] to set")
            node = node[segment]
            continue
        if not isinstance(node, dict):
            raise PlanError(_named(key), f"{segment!r} is inside a value that is not a table")
        if segment not in node:
            node[segment] = [] if isinstance(following, int) else {}
        node = node[segment]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last > len(node):
            raise PlanError(_named(key), f"there is no element [{last}] to set")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise PlanError(_named(key), "the key goes inside a value that is not a table")
