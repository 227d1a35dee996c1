"""Batch mode seen by a user (issue 12 §2): ``estimate`` of a batch-mode job foretells the
batch-mode run, not the synchronous one."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from stagedretry.cli._app import demo_pipeline_path
from stagedretry.cli._exit import ExitCode

from .conftest import Invocation

Cli = Callable[..., Invocation]


def _batch_demo(folder: Path, items: int) -> Path:
    """The demo's pipeline on its first *items* records, in batch mode, with jobs that end
    as soon as they are made (the emulator's ``batch_completion = 0``)."""
    folder.mkdir()
    with demo_pipeline_path() as path:
        for name in ("pipeline.toml", "instructions.md"):
            shutil.copy(path.parent / name, folder / name)
        lines = (path.parent / "books.jsonl").read_text("utf-8").splitlines(keepends=True)
    (folder / "books.jsonl").write_text("".join(lines[:items]), "utf-8")
    pipeline = folder / "pipeline.toml"
    text = pipeline.read_text("utf-8")
    text = text.replace("[run]\n", '[run]\nmode = "batch"\n', 1)
    text = text.replace("[backend.emulator]\n", "[backend.emulator]\nbatch_completion = 0\n", 1)
    pipeline.write_text(text, "utf-8")
    return pipeline


def test_the_estimate_of_a_batch_job_has_no_cache_and_the_batch_price(
    cli: Cli, tmp_path: Path
) -> None:
    pipeline = _batch_demo(tmp_path / "job", items=30)
    estimated = cli("estimate", str(pipeline), "--json")
    assert estimated.code == ExitCode.OK, estimated.err
    guess = estimated.json()
    # Batch jobs carry no context cache: nothing read from one, nothing made or stored.
    assert guess["tokens"]["cached"] == 0, guess["tokens"]
    assert guess["cost"]["parts"]["cache_creation"] == 0
    assert guess["cost"]["parts"]["cache_storage"] == 0
    assert [t["tier"] for t in guess["cost"]["tiers"]] == ["batch"]
    # Half the standard price (Gemini's batch discount).
    tier = guess["cost"]["tiers"][0]
    assert tier["usd"] == pytest.approx(tier["at_standard"] / 2, rel=0.01)
    # No pace of the sample's foretells a job the service answers within 24 h.
    assert guess["seconds"] is None
    ran = cli("run", str(pipeline), "--json", "--no-progress", "--no-report")
    assert ran.code in (ExitCode.OK, ExitCode.SOME_FAILED), ran.err
    measured = ran.json()["cost"]["with_cache"]
    assert guess["cost"]["with_cache"] == pytest.approx(measured, rel=0.25)


@pytest.mark.parametrize("kind", ["batch_failed", "batch_expired"])
def test_a_job_fault_with_no_route_fires_on_the_jobs(cli: Cli, tmp_path: Path, kind: str) -> None:
    """A ``[[backend.emulator.faults]]`` table of a job fault needs no ``route``: it fires
    where jobs are made (it used to match ``generateContent`` and never fire)."""
    pipeline = _batch_demo(tmp_path / "job", items=6)
    with pipeline.open("a", encoding="utf-8") as file:
        file.write(f'\n[[backend.emulator.faults]]\nkind = "{kind}"\ntimes = 1\n')
    ran = cli("run", str(pipeline), "--json", "--no-progress", "--no-report")
    assert ran.code in (ExitCode.OK, ExitCode.SOME_FAILED), ran.err
    summary = ran.json()
    # The first job ended with half its 6 requests answered; the other 3 went in a new job.
    assert summary["notes"][0].startswith("batch mode: "), summary["notes"]
    assert " 3 request(s) sent again" in summary["notes"][0], summary["notes"]
    assert summary["items"]["pending"] == 0


def test_a_job_over_the_emulators_inline_limit_goes_as_a_file(cli: Cli, tmp_path: Path) -> None:
    """The emulator backend's client knows its emulator's ``batch_inline_limit``: a larger job
    is uploaded as a file (it was sent inline, refused with a 400, and every item failed)."""
    pipeline = _batch_demo(tmp_path / "job", items=6)
    ran = cli(
        "run",
        str(pipeline),
        "--json",
        "--no-progress",
        "--no-report",
        "--set",
        "backend.emulator.batch_inline_limit=20000",  # 6 requests, each with the instructions
    )
    assert ran.code == ExitCode.OK, ran.err
    summary = ran.json()
    assert summary["items"]["succeeded"] == 6, summary["failure_reasons"]
