"""A report of a job: its traffic, its diagram and its page, written beside the output.

:func:`make_report` adds up a :class:`~._source.Source`; :func:`write_report`
writes the page and the diagram's Mermaid source, each atomically (a temporary
file renamed over the old one), so a reader never sees half a report.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

import attrs

from ..._results import ItemStatus
from .._files import FileIOError, cannot_write
from ._diagram import annotated_mermaid
from ._page import render_page
from ._source import ReportError, Source
from ._timeline import Timeline, timeline
from ._traffic import Traffic, traffic

HTML_SUFFIX: Final = ".report.html"
MERMAID_SUFFIX: Final = ".report.mmd"


class ReportIOError(FileIOError):
    """The report cannot be written where it should go (exit 4)."""


@attrs.frozen
class Report:
    """What a report shows: the *traffic* on the plan, its *mermaid* source, the *timeline*."""

    source: Source
    traffic: Traffic
    mermaid: str
    timeline: Timeline | None


def make_report(source: Source) -> Report:
    """Add up *source*'s results on its plan (recorded, or as the attempts show it)."""
    recorded = source.recorded
    results = [e.result for e in source.entries]
    counted = traffic(results, recorded.plan, recorded.price, price_of=recorded.price_of)
    return Report(
        source=source,
        traffic=counted,
        mermaid=annotated_mermaid(counted),
        timeline=timeline(
            source.entries, source.runs, source.anchors, recorded.price, price_of=recorded.price_of
        ),
    )


def default_path(source: Source) -> Path:
    """``<output stem>.report.html`` beside the output, else beside the journal."""
    base = source.output if source.output is not None else source.journal
    stem = base.name.removesuffix(".journal.sqlite") if base == source.journal else base.stem
    return base.with_name(stem + HTML_SUFFIX)


def mermaid_path(page: Path) -> Path:
    """Where the diagram's Mermaid source goes for the page *page*: ``x.report.mmd``."""
    name = page.name.removesuffix(".html")
    return page.with_name(name + (".mmd" if name != page.name else MERMAID_SUFFIX))


def render(report: Report) -> str:
    """The page's HTML text."""
    source, recorded, counted = report.source, report.source.recorded, report.traffic
    facts = [
        ("pipeline", recorded.pipeline or "unknown"),
        ("fingerprint", source.fingerprint),
        ("backend", recorded.backend or "unknown"),
        ("model", recorded.model or "unknown"),
        ("runs", str(len(source.runs))),
        ("items", f"{counted.items:,}"),
        ("succeeded", f"{counted.succeeded:,}"),
        ("prompts", f"{counted.prompts:,}"),
    ]
    if counted.cost is not None:
        facts.append(("cost of the tokens", f"${counted.cost:,.4f}"))
    notes = list(source.notes)
    if recorded.plan is None:
        notes.append(
            "No run recorded its plan (a run killed before its end records none): the stages "
            "are drawn as the attempts show them. Give --pipeline to draw the declared plan."
        )
    if recorded.price is None:
        notes.append(
            "No price for this model in [prices] nor in genai-prices' data: costs are not shown."
        )
    failed = [
        (r.id, r.status.value, r.final_stage, r.prompts, r.reason)
        for r in (e.result for e in source.entries)
        if r.status is not ItemStatus.SUCCEEDED
    ]
    return render_page(
        title=recorded.pipeline or source.journal.name,
        facts=facts,
        traffic=counted,
        mermaid=report.mermaid,
        timeline=report.timeline,
        failed=failed,
        notes=notes,
    )


def _write(path: Path, text: str, what: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise cannot_write(what, path, exc, ReportIOError) from None


def _run_files(source: Source) -> dict[Path, str]:
    """The files of the run a report reads, which a report must never replace."""
    journal = source.journal
    files = {journal: "the journal the report reads"}
    for tail in ("-wal", "-shm", ".lock"):
        files[journal.with_name(journal.name + tail)] = "a file of the journal the report reads"
    for output in (source.output, source.recorded.output):
        if output is not None:
            files[output] = "the run's output"
            files[output.with_name(output.name + ".lock")] = "a file of the run's output"
    return files


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and a.samefile(b))
    except OSError:
        return False


# How an earlier report's page and diagram begin: only those (or an empty file) are replaced.
_MARKS: Final = (b"<title>stagedretry report", b"stateDiagram-v2")
_LOOK: Final = 4096


def _is_report(path: Path) -> bool:
    with path.open("rb") as file:
        head = file.read(_LOOK)
    return not head or any(mark in head for mark in _MARKS)


def _check_target(path: Path, what: str, source: Source) -> None:
    """Refuse to replace a run's own files, another file that is no earlier report (the
    input, a notes file), or what is not a regular file (a device, a pipe): the report is
    written by renaming a new file over the old one, which would replace any of them."""
    for run_file, name in _run_files(source).items():
        if _same(path, run_file):
            raise ReportError(
                f"the {what} would replace {str(path)!r}, {name}: give -o another path"
            )
    if path.is_dir():
        raise ReportIOError(f"cannot write the {what} {str(path)!r}: it is a folder")
    if path.exists() and not path.is_file():
        raise ReportError(
            f"cannot write the {what} {str(path)!r}: it is not a regular file "
            "(a device or a pipe): give -o a file's path"
        )
    try:
        replaces_other = path.is_file() and not _is_report(path)
    except OSError:
        replaces_other = False  # unreadable: the write says why
    if replaces_other:
        raise ReportError(
            f"the {what} would replace {str(path)!r}, which is no earlier report: "
            "give -o another path (or remove that file first)"
        )


def write_report(report: Report, path: Path | None = None) -> tuple[Path, Path]:
    """Write the page to *path* (default: :func:`default_path`) and the Mermaid source beside
    it; return both paths.  Raises :class:`ReportIOError` naming the file that failed, and
    :class:`~._source.ReportError` when *path* or the diagram's path is one of the run's own
    files (its output, its journal) or not a regular file; nothing is written then."""
    page = path if path is not None else default_path(report.source)
    diagram = mermaid_path(page)
    _check_target(page, "report", report.source)
    _check_target(diagram, "report's diagram", report.source)
    _write(diagram, report.mermaid, "report's diagram")
    _write(page, render(report), "report")
    return page, diagram
