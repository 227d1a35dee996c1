"""Why items did not succeed, in a few lines: each item's reason, equal reasons grouped.

A reason names what ended the item (``fatal: 400 INVALID_ARGUMENT: temperature out of
range``; ``exhausted (budget spent): transient: ClientConnectorError: ...``).  Reasons that
differ only in what varies per item (its id, a number, a quoted value, a hex id) are one
group: the group shows the parts its items share and ``…`` where they differ.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

import attrs
from rich.text import Text

from .._describe import without_reprs
from .._outcomes import OutcomeKind, json_pointer
from .._results import ItemResult, ItemStatus

TOP: Final = 5
"""Reasons the terminal summary lists; the rest are counted in one line."""
JSON_TOP: Final = 20
"""Reasons ``--json`` lists."""
LONGEST: Final = 200
"""Characters of one reason shown on the terminal."""
VARIES: Final = "\N{HORIZONTAL ELLIPSIS}"
"""Stands where the items of one group differ."""
TIMES: Final = "\N{MULTIPLICATION SIGN}"

_CONTROLS: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# What varies from item to item inside one kind of failure: quoted values, hex ids, numbers.
_SHORTEST_ID: Final = 3
"""Ids shorter than this are not looked for in a reason (numbers are slots anyway)."""
_ID: Final = "\x00"
"""Stands for the item's own id while a reason is split (no reason holds a NUL)."""
_SLOT: Final = re.compile(
    r"""(\x00|'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\b[0-9a-fA-F]{8,}\b|\d+(?:\.\d+)?)"""
)


@attrs.frozen
class Reason:
    """One group of equal reasons: its text (``…`` where the items differ) and how many."""

    text: str
    count: int

    def to_json(self) -> dict[str, object]:
        return {"reason": self.text, "count": self.count}


def item_reason(result: ItemResult) -> str | None:
    """What ended *result*, in one line; ``None`` for an item that succeeded or was cancelled."""
    if result.status in (ItemStatus.SUCCEEDED, ItemStatus.CANCELLED):
        return None
    reason = result.reason or result.status.value
    last = result.attempts[-1] if result.attempts else None
    if reason.startswith("input_error"):
        text = reason
    elif result.status is ItemStatus.FAILED:
        if last is not None and last.outcome is OutcomeKind.FATAL and last.error:
            text = f"fatal: {last.error}"
        else:
            text = f"failed: {reason}"
    else:
        detail = None
        if last is not None:
            if last.outcome is OutcomeKind.INVALID and result.errors:
                first = result.errors[0]
                where = json_pointer(first.path) or "the answer"
                detail = f"invalid: {where}: {first.message}"
            elif last.error:
                detail = f"{last.outcome.value}: {last.error}"
        text = f"{result.status.value} ({reason})" + (f" after {detail}" if detail else "")
    text = " ".join(without_reprs(text).split())
    # Server text reaches a terminal here: an escape sequence is shown, not obeyed.
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _split(text: str, item_id: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The fixed parts of *text* and its varying slots (the item's own id is always one)."""
    if len(item_id) >= _SHORTEST_ID:
        # As a word of its own: a short id ("a", "42") would otherwise match inside others.
        text = re.sub(rf"(?<![\w-]){re.escape(item_id)}(?![\w-])", _ID, text)
    parts = _SLOT.split(text)
    slots = tuple(item_id if part == _ID else part for part in parts[1::2])
    return tuple(parts[0::2]), slots


def group_reasons(results: Iterable[ItemResult]) -> tuple[Reason, ...]:
    """The reasons of the items that did not succeed, grouped, the most frequent first.

    Reasons of one shape are one group, split again by the slots that name a few
    recurring values (a field, a status) rather than one per item: items missing
    ``'author'`` and items missing ``'title'`` are two reasons, not ``no field …``.
    """
    shapes: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
    for result in results:
        text = item_reason(result)
        if text is None:
            continue
        fixed, slots = _split(text, result.id)
        shapes.setdefault(fixed, []).append(slots)
    reasons = []
    for fixed, members in shapes.items():
        recurring = _recurring_slots(members)
        groups: dict[tuple[str, ...], list[tuple[str, ...]]] = {}
        for slots in members:
            groups.setdefault(tuple(slots[i] for i in recurring), []).append(slots)
        for group in groups.values():
            shown = [
                values[0] if len(set(values)) == 1 else VARIES
                for values in zip(*group, strict=True)
            ]
            text = "".join(
                part + (shown[i] if i < len(shown) else "") for i, part in enumerate(fixed)
            )
            reasons.append(Reason(text, len(group)))
    # Stable: among equal counts, the reason met first comes first.
    return tuple(sorted(reasons, key=lambda r: -r.count))


def _recurring_slots(members: Sequence[tuple[str, ...]]) -> tuple[int, ...]:
    """The slots whose values recur (each seen twice or more, at most :data:`TOP` of them)."""
    recurring = []
    for index, values in enumerate(zip(*members, strict=True)):
        counts = Counter(values)
        if 1 < len(counts) <= TOP and min(counts.values()) > 1:
            recurring.append(index)
    return tuple(recurring)


def reason_lines(reasons: Sequence[Reason], top: int = TOP) -> list[Text]:
    """The terminal's lines: a title, the *top* reasons with their counts, and what is left."""
    if not reasons:
        return []
    lines = [Text("Why items did not succeed", style="italic")]
    for reason in reasons[:top]:
        text = reason.text
        if len(text) > LONGEST:
            text = text[: LONGEST - 1] + VARIES
        lines.append(Text.assemble("  ", text, (f" {TIMES}{reason.count}", "bold")))
    rest = reasons[top:]
    if rest:
        items = sum(r.count for r in rest)
        lines.append(
            Text(
                f"  and {len(rest)} more reason{'s' if len(rest) > 1 else ''} "
                f"({items} item{'s' if items > 1 else ''}; each is in the output file)",
                style="dim",
            )
        )
    lines.append(Text(""))
    return lines
