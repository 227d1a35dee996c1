"""The report page in a real headless Chromium, opened from ``file://`` with no network.

It must load with no console error (a script blocked by the page's policy, a
mermaid parse error, a failed load are all errors), draw the diagram as SVG,
and show something: a screenshot of the diagram is not blank.  Hostile ids,
reasons and stage names must show as text and never become markup.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import stagedretry as sr

from ._chromium import Browser, assert_not_blank, chromium

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = '"><img src=x id=pwned onerror="window.pwned=1"><script>window.pwned=2</script>'
DRAWN = "document.body.dataset.diagram"

PIPELINE = """
name = "browser-job"
[plan]
max_prompts = 5
backoff = { initial = 0.001, max = 0.01 }
[[plan.stages]]
name = "full_t0"
params = { temperature = 0.0 }
[[plan.stages]]
name = "partial_t0"
kind = "partial"
params = { temperature = 0.0 }
[[plan.stages]]
name = "full_t25"
params = { temperature = 0.25 }
[backend]
kind = "sim"
[backend.sim]
seed = 5
invalid_rate = 0.5
transient_rate = 0.1
retry_after = 0.01
[input]
path = "input.jsonl"
template = "Describe {title}."
[output]
path = "out/results.jsonl"
[run]
concurrency = 4
[prices."gemini-2.5-flash"]
input = 0.3
cached_input = 0.03
output = 2.5
"""


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stagedretry.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as opened:
        yield opened


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real small run through the command, with a hostile id among its items."""
    folder = tmp_path_factory.mktemp("browser-job")
    rows = [{"id": f"item-{n}", "title": f"Title {n}"} for n in range(1, 21)]
    rows.append({"id": HOSTILE, "title": "a hostile id"})
    rows.append({"id": HOSTILE + "-2"})  # no title: an input error, with no request
    (folder / "input.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    (folder / "pipeline.toml").write_text(PIPELINE, "utf-8")
    ran = _cli(folder, "run", str(folder / "pipeline.toml"), "--no-progress")
    assert ran.returncode in (0, 1), ran.stderr
    page = folder / "out" / "results.report.html"
    assert f"report:  {page}" in ran.stdout
    return page


def test_the_run_s_report_draws_in_chromium(browser: Browser, job: Path) -> None:
    loaded = browser.load(job.as_uri(), DRAWN)
    assert loaded.errors == ()
    assert loaded.value == "drawn"
    assert browser.evaluate("document.querySelectorAll('#diagram svg g.node').length") >= 6
    # The stages' names and the traffic are drawn in the SVG, not only in its source.
    drawn = browser.evaluate("document.querySelector('#diagram svg').textContent")
    assert "full_t0" in drawn
    assert "items" in drawn
    assert_not_blank(browser.screenshot("#diagram svg"), colours=16, inked=0.02)
    assert_not_blank(browser.screenshot("#timeline svg"), colours=4, inked=0.01)


def test_hostile_ids_show_as_text_and_run_nothing(browser: Browser, job: Path) -> None:
    browser.load(job.as_uri(), DRAWN)
    assert browser.evaluate("window.pwned === undefined && !document.getElementById('pwned')")
    listed = browser.evaluate("document.querySelector('#failures').textContent")
    assert HOSTILE + "-2" in listed


def test_a_hostile_journal_draws_and_runs_nothing(browser: Browser, tmp_path: Path) -> None:
    """Names and reasons that the plan would refuse, written straight into a journal."""
    stage = 'x"]; click x call alert(1); state "y'
    reason = "</pre></script><script>window.pwned=3</script>$$\\alert$$ %%{init: {}}%%"
    attempt = sr.Attempt(stage, sr.OutcomeKind.INVALID, 1, True, started=1.0, duration=0.5)
    done = sr.Attempt("end", sr.OutcomeKind.SUCCEEDED, 1, True, started=2.0, duration=0.5)
    journal_path = tmp_path / "hostile.journal.sqlite"
    with sr.Journal(journal_path, "f" * 16) as journal:
        run = journal.begin_run()
        journal.record(
            sr.ItemResult(
                HOSTILE, sr.ItemStatus.EXHAUSTED, final_stage=stage, prompts=1,
                attempts=(attempt,), reason=reason,
            ),
            line=1, digest="d1", run=run,
        )  # fmt: skip
        journal.record(
            sr.ItemResult("ok", sr.ItemStatus.SUCCEEDED, final_stage="end", prompts=2,
                          attempts=(attempt, done)),
            line=2, digest="d2", run=run,
        )  # fmt: skip
        journal.end_run(run, {})
    made = _cli(tmp_path, "report", str(journal_path))
    assert made.returncode == 0, made.stderr
    page = tmp_path / "hostile.report.html"
    loaded = browser.load(page.as_uri(), DRAWN)
    assert loaded.errors == ()
    assert loaded.value == "drawn"
    assert browser.evaluate("window.pwned === undefined && !document.getElementById('pwned')")
    assert reason in browser.evaluate("document.querySelector('#failures').textContent")
    assert browser.evaluate("document.querySelectorAll('#diagram svg g.node').length") >= 3
