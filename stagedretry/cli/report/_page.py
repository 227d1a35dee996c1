"""The report as one self-contained HTML page: it opens offline, from ``file://``.

Everything is in the file: the styles, the tables and the timeline (server-side
HTML and SVG, readable without JavaScript), the diagram's Mermaid source and the
vendored renderer that draws it.  Everything that comes from the data (ids,
reasons, stage and pipeline names) is HTML-escaped; the page's Content Security
Policy loads nothing from anywhere and runs exactly two scripts, known by their
hashes (the loader and mermaid itself), so no text in a result can run as code.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Final

from ..._outcomes import OutcomeKind
from ..._results import ItemStatus
from ._mermaid_js import MERMAID_VERSION, mermaid_gzip_base64, mermaid_script_hash
from ._timeline import Timeline, timeline_svg
from ._traffic import START, Traffic, Transition

LISTED: Final = 200
"""Items that did not succeed listed by id at most (the rest are counted)."""
_LONGEST_REASON: Final = 500

_LOADER: Final = """
(async () => {
  const source = document.getElementById("diagram-source");
  try {
    const packed = document.getElementById("mermaid-gz").textContent.trim();
    const bytes = Uint8Array.from(atob(packed), (c) => c.charCodeAt(0));
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    const script = document.createElement("script");
    script.textContent = await new Response(stream).text();
    document.head.appendChild(script);
    mermaid.initialize({ startOnLoad: false, securityLevel: "strict" });
    await mermaid.run({ nodes: [source] });
    document.body.dataset.diagram = "drawn";
  } catch (error) {
    document.getElementById("diagram-note").hidden = false;
    document.body.dataset.diagram = "failed";
    throw error;
  }
})();
"""

_STYLE: Final = """
:root { color-scheme: light; font-family: system-ui, sans-serif; color: #1d1d1f; }
body { max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.5em; margin-bottom: .2em; } h2 { font-size: 1.15em; margin-top: 2em; }
.meta { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: .5em 0; font-variant-numeric: tabular-nums; }
th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child, td.text { text-align: left; }
td:first-child { white-space: nowrap; }
td.text { max-width: 40em; overflow-wrap: anywhere; }
tr.total td { font-weight: 600; }
pre.mermaid { background: #fafafa; border: 1px solid #eee; padding: 1em; overflow-x: auto; }
#diagram svg { max-width: 100%; height: auto; }
.chart { width: 100%; max-width: 760px; display: block; font-size: 11px; }
.chart text { fill: #444; } .chart .chart-title { font-size: 13px; font-weight: 600; }
.chart .grid { stroke: #e4e4e4; } .chart .run { stroke: #999; stroke-dasharray: 4 3; }
.note { color: #8a5a00; }
footer { margin-top: 3em; color: #777; font-size: .85em; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:,.4f}" if abs(value) < 100 else f"${value:,.2f}"


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """A table of already-escaped cells (a cell starting with ``\\0`` is text, left-aligned)."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="text">{cell[1:]}</td>' if cell.startswith("\0") else f"<td>{cell}</td>"
            for cell in row
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    )


def _text(value: object) -> str:
    return "\0" + _e(value)


def script_hash(text: str) -> str:
    """The CSP source (``'sha256-...'``) that lets the inline script *text* run."""
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return f"'sha256-{digest}'"


def _stages(traffic: Traffic) -> str:
    kinds = [k.value for k in OutcomeKind if k is not OutcomeKind.STOP_RUN]
    rows = []
    for s in traffic.stages:
        u = s.usage
        rows.append(
            [
                _text(s.name),
                _e(s.kind),
                _n(s.attempts),
                _n(s.prompts),
                *(_n(s.outcomes.get(k, 0)) for k in kinds),
                _n(s.succeeded),
                _n(u.input_tokens),
                _n(u.cached_tokens),
                _n(u.output_tokens + u.thinking_tokens),
                _money(s.cost),
            ]
        )
    u = traffic.usage
    rows.append(
        [
            "total",
            "",
            _n(traffic.attempts),
            _n(traffic.prompts),
            *(_n(sum(s.outcomes.get(k, 0) for s in traffic.stages)) for k in kinds),
            _n(sum(s.succeeded for s in traffic.stages)),
            _n(u.input_tokens),
            _n(u.cached_tokens),
            _n(u.output_tokens + u.thinking_tokens),
            _money(traffic.cost),
        ]
    )
    headers = ["stage", "kind", "tries", "prompts", *kinds, "succeeded here", "input tokens",
               "cached", "output + thinking", "cost"]  # fmt: skip
    return _table(headers, rows, cls="stages").replace(
        "<tr><td>total</td>", '<tr class="total"><td>total</td>'
    )


def _transitions(traffic: Traffic) -> str:
    rows = [
        [
            _text("start" if t.source == START else t.source),
            _text(t.dest),
            _text(_declared(t)),
            _text(", ".join(f"{k} {v:,}" for k, v in sorted(t.causes.items()))),
            _n(t.items),
            _n(t.passes),
            _n(t.prompts),
        ]
        for t in traffic.transitions
        if t.passes
    ]
    return _table(["from", "to", "declared events", "what moved them", "items", "times",
                   "prompts"], rows, cls="transitions")  # fmt: skip


def _declared(transition: Transition) -> str:
    if transition.source == START:
        return "(the first stage)"
    return ", ".join(transition.triggers) if transition.triggers else "(not declared)"


def _statuses(traffic: Traffic) -> str:
    rows = [
        [_text(s.value), _n(traffic.statuses.get(s.value, 0))]
        for s in ItemStatus
        if traffic.statuses.get(s.value, 0) or s is not ItemStatus.CANCELLED
    ]
    rows.append(["total", _n(traffic.items)])
    return _table(["status", "items"], rows, cls="statuses")


def _failures(failed: Sequence[tuple[str, str, str | None, int, str | None]]) -> str:
    if not failed:
        return "<p>Every item succeeded.</p>"
    reasons = Counter(reason or "(no reason)" for *_, reason in failed)
    top = _table(
        ["reason", "items"],
        ([_text(r[:_LONGEST_REASON]), _n(c)] for r, c in reasons.most_common(10)),
        cls="reasons",
    )
    listed = _table(
        ["id", "status", "last stage", "prompts", "reason"],
        (
            [_text(i), _text(s), _text(stage or "-"), _n(p), _text((r or "")[:_LONGEST_REASON])]
            for i, s, stage, p, r in failed[:LISTED]
        ),
        cls="items",
    )
    more = (
        f"<p>... and {_n(len(failed) - LISTED)} more (see the output file).</p>"
        if len(failed) > LISTED
        else ""
    )
    return f"<h3>Most frequent reasons</h3>{top}<h3>Items</h3>{listed}{more}"


def _version() -> str:
    try:
        return version("stagedretry")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "unknown"


def render_page(
    *,
    title: str,
    facts: Sequence[tuple[str, str]],
    traffic: Traffic,
    mermaid: str,
    timeline: Timeline | None,
    failed: Sequence[tuple[str, str, str | None, int, str | None]],
    notes: Sequence[str] = (),
) -> str:
    """The whole page as text. *facts* are ``(label, value)`` pairs shown under the title;
    *failed* ``(id, status, last stage, prompts, reason)`` per item that did not succeed."""
    csp = (
        "default-src 'none'; "
        f"script-src {script_hash(_LOADER)} {mermaid_script_hash()}; "
        "style-src 'unsafe-inline'; img-src data:; font-src data:"
    )
    meta = " · ".join(f"{_e(k)}: <b>{_e(v)}</b>" for k, v in facts)
    chart = (
        timeline_svg(timeline)
        if timeline is not None
        else "<p>No request was sent: nothing to plot.</p>"
    )
    notes_html = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>stagedretry report: {_e(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>stagedretry report: {_e(title)}</h1>
<p class="meta">{meta}</p>
{notes_html}
</header>
<section id="items"><h2>Items</h2>{_statuses(traffic)}</section>
<section id="diagram"><h2>The plan, with what went through it</h2>
<pre class="mermaid" id="diagram-source">{_e(mermaid)}</pre>
<p id="diagram-note" class="note" hidden>The diagram could not be drawn here (this browser
lacks DecompressionStream, or scripts are off): above is its Mermaid source.</p>
</section>
<section id="stages"><h2>Stages (tries by outcome, tokens and cost)</h2>{_stages(traffic)}</section>
<section id="transitions"><h2>Transitions taken</h2>{_transitions(traffic)}</section>
<section id="timeline"><h2>Over time</h2>{chart}</section>
<section id="failures"><h2>Items that did not succeed</h2>{_failures(failed)}</section>
<footer>Made {made} by stagedretry {_e(_version())}; the diagram is drawn by mermaid
{MERMAID_VERSION} (MIT licence), embedded in this file.</footer>
<script type="application/octet-stream" id="mermaid-gz">{mermaid_gzip_base64()}</script>
<script>{_LOADER}</script>
</body>
</html>
"""
