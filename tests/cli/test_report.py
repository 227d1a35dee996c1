"""``stagedretry report`` and the report ``run`` writes: its numbers are the run's own.

The page's tables are read back with the standard library's HTML parser and
held to the summary that ``run --json`` printed for the same run.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import html.parser
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import stagedretry as sr
from stagedretry.cli.report import (
    MERMAID_SHA256,
    MERMAID_VERSION,
    load_source,
    make_report,
    mermaid_js,
    render,
)
from stagedretry.cli.report._diagram import annotated_mermaid, label
from stagedretry.cli.report._mermaid_js import mermaid_gzip

from .conftest import Invocation, Job, invoke, sim_pipeline

PRICES = '[prices."gemini-2.5-flash"]\ninput = 0.3\ncached_input = 0.03\noutput = 2.5\n'
BUSY_SIM = (
    "seed = 11\ninvalid_rate = 0.4\ntransient_rate = 0.1\nrate_limit_rate = 0.05\n"
    "retry_after = 0.01\nlatency = 0.001"
)


class _Tables(html.parser.HTMLParser):
    """Each ``<table class=...>`` of a page as rows of cell texts, by class."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: list[list[str]] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("class") or "", [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            self._table[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def tables(page: Path) -> dict[str, list[dict[str, str]]]:
    parser = _Tables()
    parser.feed(page.read_text("utf-8"))
    return {
        name: [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]
        for name, rows in parser.tables.items()
    }


def _int(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Job, dict[str, Any]]:
    """A real run of 40 items through the sim backend, with prices: the job and its summary.

    Shared by the module's tests: none of them changes what the run wrote, but for the
    report a test writes again (the same file, from the same journal)."""
    job = sim_pipeline(tmp_path_factory.mktemp("report"), items=40, sim=BUSY_SIM, extra=PRICES)
    shown = invoke(["run", str(job.pipeline), "--json", "--no-progress"])
    assert shown.code in (0, 1), shown.err
    return job, shown.json()


def test_run_writes_the_report_beside_the_output_and_says_where(
    ran: tuple[Job, dict[str, Any]],
) -> None:
    job, summary = ran
    page = job.output.with_name("results.report.html")
    assert summary["report"] == str(page)
    assert page.is_file()
    assert (
        job.output.with_name("results.report.mmd")
        .read_text("utf-8")
        .startswith("stateDiagram-v2\n")
    )


def test_the_tables_hold_the_run_s_own_numbers(ran: tuple[Job, dict[str, Any]]) -> None:
    _, summary = ran
    shown = tables(Path(summary["report"]))
    stages = {row["stage"]: row for row in shown["stages"]}
    for stage in summary["stages"]:
        row = stages[stage["name"]]
        assert _int(row["tries"]) == stage["attempts"]
        assert _int(row["succeeded here"]) == stage["finished"]
        assert _int(row["input tokens"]) == stage["tokens"]["input"]
        for outcome, count in stage["outcomes"].items():
            assert _int(row[outcome]) == count
    total = stages["total"]
    assert _int(total["prompts"]) == summary["prompts"]
    assert _int(total["tries"]) == summary["attempts"]
    assert _int(total["succeeded here"]) == summary["items"]["succeeded"]
    parts = summary["cost"]["parts"]
    tokens_cost = parts["fresh_input"] + parts["cached_input"] + parts["output"]
    assert float(total["cost"].lstrip("$")) == pytest.approx(tokens_cost, abs=1e-4)
    # Every arrow taken: prompts add up to the run's, items into "succeeded" to its successes.
    moves = shown["transitions"]
    assert sum(_int(row["prompts"]) for row in moves) == summary["prompts"]
    assert (
        sum(_int(row["items"]) for row in moves if row["to"] == "succeeded")
        == summary["items"]["succeeded"]
    )
    statuses = {row["status"]: _int(row["items"]) for row in shown["statuses"]}
    assert statuses["total"] == summary["items"]["total"]
    assert statuses["exhausted"] == summary["items"]["exhausted"]


def test_the_report_s_own_totals_equal_the_summary_s(ran: tuple[Job, dict[str, Any]]) -> None:
    job, summary = ran
    report = make_report(load_source(job.output))
    counted = report.traffic
    assert counted.prompts == summary["prompts"]
    assert sum(t.prompts for t in counted.transitions) == summary["prompts"]
    assert sum(s.succeeded for s in counted.stages) == summary["items"]["succeeded"]
    assert counted.usage.input_tokens == summary["tokens"]["input"]
    assert counted.usage.output_tokens == summary["tokens"]["output"]
    # The run recorded its plan: every arrow taken is one the plan declares.
    assert all(t.declared for t in counted.transitions if t.passes)
    assert report.source.recorded.plan is not None
    # The timeline's spend is the tokens' cost, every item that sent something finished on it.
    assert report.timeline is not None
    assert sum(a for _, a in report.timeline.spend) == pytest.approx(counted.cost)
    assert len(report.timeline.finished) == summary["items"]["total"]
    assert len(report.timeline.spend) == summary["attempts"]
    assert all(t >= 0 for t, _ in report.timeline.spend)
    # The diagram's entry arrow carries every item.
    assert f"[*] --> full_t0: {summary['items']['total']} items" in report.mermaid


def test_report_from_the_output_the_journal_or_the_pipeline_is_the_same(
    ran: tuple[Job, dict[str, Any]], cli: Callable[..., Invocation], tmp_path: Path
) -> None:
    job, _ = ran
    pages = []
    for n, args in enumerate(
        [(str(job.output),), (str(job.journal),), ("--pipeline", str(job.pipeline))]
    ):
        page = tmp_path / f"r{n}.html"
        made = cli("report", *args, "-o", str(page))
        assert made.code == 0, made.err
        assert made.out.splitlines() == [f"report:  {page}", f"diagram: {tmp_path / f'r{n}.mmd'}"]
        pages.append(tables(page))
    assert pages[0]["stages"] == pages[1]["stages"] == pages[2]["stages"]
    assert pages[0]["transitions"] == pages[1]["transitions"] == pages[2]["transitions"]


def test_the_default_paths_sit_beside_the_output(
    ran: tuple[Job, dict[str, Any]], cli: Callable[..., Invocation]
) -> None:
    job, _ = ran
    page = job.output.with_name("results.report.html")
    page.unlink()
    made = cli("report", str(job.journal))
    assert made.code == 0, made.err
    assert made.out.splitlines()[0] == f"report:  {page}"
    assert page.is_file()


def test_no_report_writes_none(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=5)
    shown = cli("run", str(job.pipeline), "--no-progress", "--no-report")
    assert shown.code in (0, 1)
    assert "report:" not in shown.out
    assert not job.output.with_name("results.report.html").exists()


def test_a_report_that_cannot_be_written_is_a_warning_not_a_failure(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=5, sim="seed = 3\ninvalid_rate = 0.0")
    job.output.with_name("results.report.html").mkdir(parents=True)
    shown = cli("run", str(job.pipeline), "--no-progress")
    assert shown.code == 0, shown.err
    assert "warning: the report was not written" in shown.err
    assert "report:" not in shown.out
    assert len(job.lines()) == 5


def test_a_run_that_recorded_nothing_is_drawn_from_its_attempts(tmp_path: Path) -> None:
    """A killed run leaves no statistics: the stages come from the attempts, and it says so."""
    path = tmp_path / "killed.journal.sqlite"
    attempt = sr.Attempt("draft", sr.OutcomeKind.SUCCEEDED, 1, True, started=5.0, duration=1.0)
    with sr.Journal(path, "0" * 16) as journal:
        run = journal.begin_run()
        journal.record(
            sr.ItemResult("a", sr.ItemStatus.SUCCEEDED, prompts=1, attempts=(attempt,)),
            line=1,
            digest="d",
            run=run,
        )
    report = make_report(load_source(path))
    assert [s.name for s in report.traffic.stages] == ["draft"]
    assert "No run recorded its plan" in render(report)
    assert report.timeline is not None
    assert report.timeline.finished == ((1.0, "succeeded"),)


def test_a_journal_lists_its_fingerprints_the_latest_run_s_first(tmp_path: Path) -> None:
    path = tmp_path / "two.journal.sqlite"
    for fingerprint in ("a" * 16, "b" * 16, "a" * 16):
        with sr.Journal(path, fingerprint) as journal:
            journal.end_run(journal.begin_run(), {})
    with sr.Journal(path, "c" * 16) as journal:
        journal.record(sr.ItemResult("x", sr.ItemStatus.FAILED), line=1, digest="d", run=0)
    with sr.Journal(path) as journal:
        assert journal.fingerprints() == ["a" * 16, "b" * 16, "c" * 16]


# -- hostile text ------------------------------------------------------------------------------

HOSTILE = "</pre><script>alert(1)</script><img src=x onerror=alert(2)>\"'&"


def test_hostile_ids_reasons_and_stage_names_are_escaped(tmp_path: Path) -> None:
    path = tmp_path / "h.journal.sqlite"
    stage = 'st"]; click st call alert(3)\n%%{init: {"securityLevel": "loose"}}%%'
    attempt = sr.Attempt(stage, sr.OutcomeKind.INVALID, 1, True)
    with sr.Journal(path, "0" * 16) as journal:
        run = journal.begin_run()
        journal.record(
            sr.ItemResult(
                HOSTILE,
                sr.ItemStatus.EXHAUSTED,
                final_stage=stage,
                prompts=1,
                attempts=(attempt,),
                reason=HOSTILE,
            ),
            line=1,
            digest="d",
            run=run,
        )
        journal.end_run(run, {"report": {"pipeline": HOSTILE, "model": HOSTILE}})
    report = make_report(load_source(path))
    page = render(report)
    # Only the page's own two scripts, and no tag of the data.
    assert len(re.findall(r"<script", page)) == 2
    assert "<img" not in page
    assert "</pre><script>" not in page
    assert html_escaped(HOSTILE) in page
    # The diagram: the name is drawn under a generated id, its label keeps only plain marks.
    assert re.search(r'\n    state "st[\w ?().$/+,-]*" as state_0\n', report.mermaid)
    assert "%%" not in report.mermaid
    for line in report.mermaid.splitlines()[1:]:
        assert re.fullmatch(
            r'    [\w\[\]*]+( : [^:"]*| --> [\w\[\]*]+(: [^:"]*)?)|    state "[^"]*" as \w+', line
        ), line


def html_escaped(text: str) -> str:
    return html.escape(text, quote=True)


def html_unescaped(text: str) -> str:
    return html.unescape(text)


def test_labels_keep_only_plain_characters() -> None:
    assert label('a"b<c>d:e;f#g{h}i`j\nk') == "a?b?c?d?e?f?g?h?i?j?k"
    assert len(label("x" * 500)) == 120


def test_stage_names_that_are_mermaid_keywords_get_their_own_ids() -> None:
    plan = sr.Plan(stages=[sr.Stage("end"), sr.Stage("state", "partial")])
    result = sr.ItemResult(
        "a",
        sr.ItemStatus.SUCCEEDED,
        prompts=1,
        attempts=(sr.Attempt("end", sr.OutcomeKind.SUCCEEDED, 1, True),),
    )
    from stagedretry.cli.report import traffic

    text = annotated_mermaid(traffic([result], plan))
    assert 'state "end" as state_0' in text
    assert 'state "state" as state_1' in text
    assert "\n    end " not in text


# -- the vendored renderer ---------------------------------------------------------------------


def test_the_vendored_mermaid_is_the_pinned_release() -> None:
    assert MERMAID_VERSION == "12.3.0"
    data = gzip.decompress(mermaid_gzip())
    assert hashlib.sha256(data).hexdigest() == MERMAID_SHA256
    assert mermaid_js() == data
    licence = Path(__file__).resolve().parents[2] / "stagedretry/cli/report/assets/mermaid.LICENSE"
    assert "MIT" in licence.read_text("utf-8")
    vendored = licence.with_name("VENDORED.md").read_text("utf-8")
    assert MERMAID_SHA256 in vendored
    assert MERMAID_VERSION in vendored


def test_the_page_embeds_everything_and_loads_nothing(ran: tuple[Job, dict[str, Any]]) -> None:
    _, summary = ran
    page = Path(summary["report"]).read_text("utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "default-src 'none'" in html_unescaped(page)
    json.dumps(page)  # one text file
