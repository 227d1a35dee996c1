"""Completions and spend over time, and their plot as an inline SVG (no script, no library).

An attempt's ``started`` is read on the engine's monotonic clock, which means
nothing outside its process; each run records both clocks at its end (see
``run_record``), which places its attempts on the wall clock.  A run that
recorded nothing (it was killed) is placed by its start: its first attempt is
taken to begin when the run did.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

import attrs

from ..._journal import JournalEntry, RunRecord
from ..._results import Attempt, ItemStatus
from ..pipeline import Price
from ._traffic import token_cost

_WIDTH: Final = 760
_HEIGHT: Final = 210
_LEFT: Final = 64
_RIGHT: Final = 16
_TOP: Final = 28
_BOTTOM: Final = 36


@attrs.frozen
class Timeline:
    """When items finished and money (or tokens) went, in seconds since the first attempt.

    *finished* holds ``(seconds, status)`` per item that sent anything, in time order;
    *spend* ``(seconds, amount)`` per attempt, at its end, in time order; *unit* is
    ``"USD"``-like currency of the prices (``"$"``) or ``"tokens"`` without a price.
    *started* is the wall-clock time (Unix seconds) of the first attempt.
    """

    started: float
    finished: tuple[tuple[float, str], ...]
    spend: tuple[tuple[float, float], ...]
    unit: str
    runs: tuple[float, ...]
    """The seconds at which each run after the first began."""


def timeline(
    entries: Sequence[JournalEntry],
    runs: Sequence[RunRecord],
    anchors: Mapping[int, tuple[float, float]],
    price: Price | None,
    *,
    price_of: Callable[[Attempt], Price | None] | None = None,
) -> Timeline | None:
    """Place every attempt of *entries* on the wall clock; ``None`` if none was sent.

    Spend is each attempt's tokens at *price_of* the attempt, else at *price*."""
    offsets = _offsets(entries, runs, anchors)
    finished: list[tuple[float, str]] = []
    spend: list[tuple[float, float]] = []
    for entry in entries:
        attempts = entry.result.attempts
        if not attempts:
            continue
        offset = offsets[entry.run]
        for attempt in attempts:
            usage = attempt.usage
            # One unit for the whole line: with no backend price it counts tokens.
            paid = price_of(attempt) if price_of is not None and price is not None else price
            cost = token_cost(paid, usage)
            amount = (
                cost
                if cost is not None
                else usage.input_tokens + usage.output_tokens + usage.thinking_tokens
            )
            spend.append((offset + attempt.started + attempt.duration, amount))
        last = attempts[-1]
        finished.append((offset + last.started + last.duration, entry.result.status.value))
    if not spend:
        return None
    first = min(offsets[e.run] + a.started for e in entries for a in e.result.attempts[:1])
    starts = sorted(r.started_at - first for r in runs if r.started_at > first)
    return Timeline(
        started=first,
        finished=tuple(sorted((t - first, s) for t, s in finished)),
        spend=tuple(sorted((t - first, a) for t, a in spend)),
        unit="$" if price is not None else "tokens",
        runs=tuple(starts),
    )


def _offsets(
    entries: Sequence[JournalEntry],
    runs: Sequence[RunRecord],
    anchors: Mapping[int, tuple[float, float]],
) -> dict[int, float]:
    """Per run: what to add to a monotonic reading of that run to get Unix seconds."""
    earliest: dict[int, float] = {}
    for entry in entries:
        for attempt in entry.result.attempts:
            earliest[entry.run] = min(earliest.get(entry.run, math.inf), attempt.started)
    started = {r.id: r.started_at for r in runs}
    offsets = {}
    for run, first in earliest.items():
        if run in anchors:
            wall, mono = anchors[run]
            offsets[run] = wall - mono
        else:
            offsets[run] = started.get(run, 0.0) - first
    return offsets


# -- the plot ----------------------------------------------------------------------------------


def _nice(top: float) -> tuple[float, float]:
    """An axis maximum at or above *top* and its tick step (1, 2 or 5 times a power of ten)."""
    if top <= 0:
        return 1.0, 0.25
    raw = top / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    return step * math.ceil(top / step - 1e-9), step


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds >= 2 * 3600:
        return 3600.0, "h"
    if seconds >= 120:
        return 60.0, "min"
    return 1.0, "s"


def _number(value: float, unit: str) -> str:
    if unit == "$":
        return f"${value:,.4g}" if value < 1 else f"${value:,.2f}"
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"


def _panel(
    title: str,
    series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]],
    span: float,
    unit: str,
    runs: Iterable[float],
) -> str:
    """One step chart: *series* are ``(label, colour, cumulative points)``."""
    width, height = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    top = max((y for _, _, points in series for _, y in points), default=0.0)
    y_max, y_step = _nice(top)
    x_max, x_step = _nice(span)
    scale, label = _time_unit(x_max)
    x_max, x_step = _nice(span / scale)
    x_max, x_step = x_max * scale, x_step * scale

    def x(t: float) -> float:
        return _LEFT + width * (t / x_max if x_max else 0.0)

    def y(v: float) -> float:
        return _TOP + height * (1 - (v / y_max if y_max else 0.0))

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {_HEIGHT}" '
        f'role="img" aria-label="{html.escape(title)}" class="chart">',
        f'<text x="{_LEFT}" y="16" class="chart-title">{html.escape(title)}</text>',
    ]
    ticks = round(y_max / y_step)
    for i in range(ticks + 1):
        value = y_step * i
        parts.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + width}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            'class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end">'
            f"{html.escape(_number(value, unit))}</text>"
        )
    for i in range(round(x_max / x_step) + 1):
        t = x_step * i
        parts.append(
            f'<text x="{x(t):.1f}" y="{_TOP + height + 16}" text-anchor="middle">'
            f"{t / scale:g}</text>"
        )
    parts.append(
        f'<text x="{_LEFT + width}" y="{_HEIGHT - 4}" text-anchor="end">'
        f"time since the first request ({label})</text>"
    )
    for start in runs:
        parts.append(
            f'<line x1="{x(start):.1f}" x2="{x(start):.1f}" y1="{_TOP}" y2="{_TOP + height}" '
            'class="run"/>'
        )
    legend = _LEFT + 8
    for name, colour, points in series:
        path = [f"M{x(0):.1f},{y(0):.1f}"]
        for t, v in points:
            path.append(f"H{x(t):.1f}V{y(v):.1f}")
        parts.append(
            f'<path d="{"".join(path)}" fill="none" stroke="{colour}" stroke-width="2"/>'
            f'<text x="{legend}" y="{_TOP + 14}" fill="{colour}">{html.escape(name)}</text>'
        )
        legend += 12 + 8 * len(name)
    parts.append("</svg>")
    return "".join(parts)


def _cumulative(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    total = 0.0
    out = []
    for t, v in points:
        total += v
        out.append((t, total))
    return out


def timeline_svg(line: Timeline) -> str:
    """Two step charts, items finished and spend, as inline SVG elements."""
    span = max(line.spend[-1][0], line.finished[-1][0] if line.finished else 0.0)
    finished = _cumulative((t, 1.0) for t, _ in line.finished)
    succeeded = _cumulative((t, 1.0) for t, s in line.finished if s == ItemStatus.SUCCEEDED.value)
    spend = _cumulative(line.spend)
    what = "spend" if line.unit == "$" else "tokens (no price in [prices])"
    items = _panel(
        "items finished",
        [("finished", "#4051b5", finished), ("succeeded", "#2e7d32", succeeded)],
        span,
        "items",
        line.runs,
    )
    name = "spend" if line.unit == "$" else "tokens"
    return items + _panel(what, [(name, "#b5402a", spend)], span, line.unit, line.runs)
