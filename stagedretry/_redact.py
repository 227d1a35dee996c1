"""Scrubbing secrets (an API key) from everything written or printed, by one rule.

The journal, the output file, the log (tracebacks included) and the command's
error messages all go through :class:`Secrets`, so no writer can forget a
field: each secret is replaced by ``[redacted]`` wherever it appears.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

REDACTED: Final = "[redacted]"


class Secrets:
    """The secret strings of one run; empty or ``None`` values are ignored."""

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[str | None] = ()) -> None:
        # Longest first: a secret containing another is replaced whole.
        self._values = tuple(sorted({v for v in values if v}, key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def text(self, text: str) -> str:
        """*text* with every secret replaced."""
        for secret in self._values:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def data(self, value: Any) -> Any:
        """A copy of *value* with every secret replaced, through mappings, lists and tuples.

        Numbers, booleans and ``None`` are kept; any other object whose text
        holds a secret (an exception, say) becomes its scrubbed text.
        """
        if not self._values or value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.data(k): self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.data(v) for v in value)
        shown = str(value)
        scrubbed = self.text(shown)
        return value if scrubbed == shown else scrubbed

    def __repr__(self) -> str:
        # Never the values themselves.
        return f"Secrets({len(self._values)} hidden)"
