"""The input records that would fail before any request, grouped by reason (``plan check``)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._input import InputRecord


@attrs.frozen
class BadReason:
    """One reason for ``input_error`` and the input lines that have it, in file order."""

    reason: str
    lines: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.lines)

    def describe(self, shown_lines: int = 5) -> str:
        """``3 records: the record has no field 'title' ... (lines 2, 5, 9)``, the lines cut after
        *shown_lines* (``lines 1, 2, 3, 4, 5 and 35 more``)."""
        first = ", ".join(str(n) for n in self.lines[:shown_lines])
        more = f" and {self.count - shown_lines} more" if self.count > shown_lines else ""
        word = "line" if self.count == 1 else "lines"
        noun = "record" if self.count == 1 else "records"
        return f"{self.count} {noun}: {self.reason} ({word} {first}{more})"


def bad_reasons(records: Iterable[InputRecord]) -> list[BadReason]:
    """The reasons of the records that would fail on input, most frequent first (equal
    counts in the order of their first line)."""
    groups: dict[str, list[int]] = {}
    for record in records:
        if record.error is not None:
            groups.setdefault(record.error, []).append(record.line)
    found = [BadReason(reason, tuple(lines)) for reason, lines in groups.items()]
    found.sort(key=lambda group: -group.count)  # stable: first seen first among equals
    return found
