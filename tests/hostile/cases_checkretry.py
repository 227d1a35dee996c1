"""Misusing ``run --retry`` and ``plan check``: one sentence, the documented code, nothing sent."""

from __future__ import annotations

from pathlib import Path

from stagedretry import Journal
from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, PLAN, Case, Ran, run_args, sim_pipeline

_FILES = {"pipeline.toml": sim_pipeline(), "input.jsonl": INPUT}


def _nothing_sent(ran: Ran) -> None:
    assert not (ran.folder / "out/results.jsonl").exists()


def _no_journal_made(ran: Ran) -> None:
    _nothing_sent(ran)
    assert not (ran.folder / "out/journal.sqlite").exists()


def _empty_journal(folder: Path) -> None:
    """A journal that holds no result (another job's, keyed by another fingerprint)."""
    with Journal(folder / "out/journal.sqlite", "0123456789abcdef"):
        pass


CASES = [
    Case(
        "retry-without-a-journal",
        run_args("--retry", "failed,exhausted"),
        ExitCode.USAGE,
        files=_FILES,
        stderr=r"^error: --retry failed,exhausted: there is no journal at .*journal\.sqlite"
        r".*run without --retry first",
        check=_no_journal_made,
    ),
    Case(
        "retry-unknown-status",
        run_args("--retry", "failed,broken"),
        ExitCode.USAGE,
        files=_FILES,
        stderr=r"^error: --retry: unknown status 'broken' \(expected a comma-separated list of: "
        r"succeeded, failed, exhausted, cancelled\)\n$",
        check=_no_journal_made,
    ),
    Case(
        "retry-no-status",
        run_args("--retry", " , "),
        ExitCode.USAGE,
        files=_FILES,
        stderr=r"^error: --retry: expected a comma-separated list of statuses",
        check=_no_journal_made,
    ),
    Case(
        "retry-with-fresh",
        run_args("--retry", "failed", "--fresh"),
        ExitCode.USAGE,
        files=_FILES,
        stderr=r"^error: --retry and --fresh cannot be used together",
        check=_no_journal_made,
    ),
    Case(
        "retry-a-journal-without-these-items",
        run_args("--retry", "failed"),
        ExitCode.USAGE,
        files=_FILES,
        before=_empty_journal,
        stderr=r"--retry failed: the journal .* holds no result for any item of the input",
        check=_nothing_sent,
    ),
    Case(
        "retry-status-with-escapes",
        run_args("--retry", "failed,\x1b[2Jx"),
        ExitCode.USAGE,
        files=_FILES,
        stderr=r"unknown status '\\x1b\[2Jx'",
        check=_no_journal_made,
    ),
    Case(
        "check-every-record-bad",
        ("plan", "check", "pipeline.toml"),
        ExitCode.SOME_FAILED,
        files={
            "pipeline.toml": sim_pipeline(),
            "input.jsonl": "".join(f'{{"id": "item-{n}"}}\n' for n in range(1, 31)),
        },
        stderr=r"^error: 30 of 30 records would fail with input_error; fix them, or accept them "
        r"with --max-bad-records 30\n$",
    ),
    Case(
        "check-bad-records-accepted",
        ("plan", "check", "pipeline.toml", "--max-bad-records", "30"),
        ExitCode.OK,
        files={
            "pipeline.toml": sim_pipeline(),
            "input.jsonl": "".join(f'{{"id": "item-{n}"}}\n' for n in range(1, 31)),
        },
    ),
    Case(
        "check-negative-allowance",
        ("plan", "check", "pipeline.toml", "--max-bad-records", "-5"),
        ExitCode.USAGE,
        files=_FILES,
    ),
    Case(
        "check-a-bare-plan",
        ("plan", "check", "plan.toml"),
        ExitCode.OK,
        files={"plan.toml": PLAN.replace("[plan]", "").replace("[[plan.stages]]", "[[stages]]")},
    ),
    Case(
        "show-a-bare-yaml-plan",
        ("plan", "show", "plan.yaml"),
        ExitCode.OK,
        files={"plan.yaml": "max_prompts: 2\nstages:\n  - name: only\n    kind: full\n"},
    ),
    Case(
        "check-a-plan-at-the-top-of-a-pipeline",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files={
            "pipeline.toml": sim_pipeline()
            .replace("[plan]\n", "")
            .replace("[[plan.stages]]", "[[stages]]"),
            "input.jsonl": INPUT,
        },
        stderr=r"put the plan's keys under \[plan\]",
    ),
]
