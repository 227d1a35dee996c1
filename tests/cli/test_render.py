"""What a person sees: the live progress bar and the summary tables of a short run."""

from __future__ import annotations

import re
from collections.abc import Callable

from rich.console import Console

from stagedretry import Attempt, ItemResult, ItemStatus, OutcomeKind, Usage
from stagedretry.cli._progress import LiveProgress

from .conftest import Invocation, Job, recording_console

PRICED = """
[prices."gemini-2.5-flash"]
input = 0.30
cached_input = 0.03
output = 2.50
cache_storage = 1.00
"""


def _with_cache(job: Job) -> None:
    (job.folder / "rules.md").write_text("Follow the cataloguing rules. " * 200, "utf-8")
    text = job.pipeline.read_text("utf-8")
    job.pipeline.write_text(text + '\n[cache]\nsystem_instruction = "rules.md"\n', "utf-8")


def test_a_short_run_renders_the_progress_bar_and_the_summary(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=30, sim="seed = 5\ninvalid_rate = 0.2\ntransient_rate = 0.1", extra=PRICED)
    _with_cache(job)
    done = cli("run", str(job.pipeline), terminal=True, width=100)
    assert done.code in (0, 1)
    # The progress bar (on stderr): done/total, outcomes, prompts, cached share, rate, ETA.
    bar = done.err
    assert "running" in bar
    assert "30/30" in bar
    assert re.search(r"ok \d+ +failed \d+ +exhausted \d+", bar)
    assert re.search(r"prompts \d+", bar)
    assert re.search(r"cached \d+%", bar)
    assert "items/s" in bar
    assert "ETA" in bar
    # The summary (on stdout): per status, per stage, tokens, cost with and without the cache.
    out = done.out
    for heading in ("Items", "Stages", "Tokens", "Cost (gemini-2.5-flash)"):
        assert heading in out
    assert re.search(r"succeeded +\d+ +\d+", out)
    for stage in ("full_t0", "partial_t0", "full_t25", "partial_t25"):
        assert stage in out
    assert "served from cache" in out
    assert re.search(r"\d+\.\d% cached share", out)
    assert "with the cache" in out
    assert "without" in out
    assert re.search(r"the cache saved \$\d+\.\d+ \(\d+%\)", out)
    assert "output:" in out
    assert "journal:" in out


def test_the_summary_fits_an_80_column_terminal(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=5, extra=PRICED)
    done = cli("run", str(job.pipeline), "--no-progress", width=80, terminal=True)
    assert "…" not in done.out  # no column had to be cut short
    # The report's path is printed whole, never wrapped: a terminal or a script can open it.
    lines = [line for line in done.out.splitlines() if not line.startswith("report:  ")]
    assert max(len(line.rstrip()) for line in lines) <= 80


def test_no_progress_and_a_pipe_show_no_bar(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=5)
    assert "items/s" not in cli("run", str(job.pipeline), "--no-progress", terminal=True).err
    assert "ETA" not in cli("run", str(job.pipeline), "--fresh").err  # not a terminal


def test_the_bar_counts_results_as_they_come() -> None:
    console: Console = recording_console(100, terminal=True)
    usage = Usage(input_tokens=100, cached_tokens=80, output_tokens=10)
    attempt = Attempt("full_t0", OutcomeKind.SUCCEEDED, 1, True, usage)
    with LiveProgress(console, total=4, done=1) as bar:
        bar.seed([ItemResult("a", ItemStatus.SUCCEEDED, prompts=1, attempts=(attempt,))])
        bar.advance(ItemResult("b", ItemStatus.SUCCEEDED, prompts=1, attempts=(attempt,)))
        bar.advance(ItemResult("c", ItemStatus.EXHAUSTED, prompts=5))
        assert (
            bar.stats_line().plain == "  ok 2  failed 0  exhausted 1  ·  prompts 7  ·  cached 80%"
        )
        bar.advance(ItemResult("d", ItemStatus.CANCELLED))
        assert "cancelled 1" in bar.stats_line().plain
    assert "4/4" in console.export_text()
