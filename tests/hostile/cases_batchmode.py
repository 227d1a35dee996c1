"""``[run] mode``: a mode that is not one, set in the file or on the command line, is one
sentence naming ``run.mode`` (exit 2); a batch-mode job runs to its end and says so."""

from __future__ import annotations

import json

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, Case, Ran, run_args, sim_pipeline


def _usage(name: str, run: str, extra_args: tuple[str, ...] = (), stderr: str = "") -> Case:
    return Case(
        f"batchmode-{name}",
        run_args(*extra_args),
        ExitCode.USAGE,
        files={"pipeline.toml": sim_pipeline(run=run), "input.jsonl": INPUT},
        stderr=r"pipeline\.toml: run\.mode: " + stderr,
    )


def _batch_summary(ran: Ran) -> None:
    summary = json.loads(ran.out)
    assert any(note.startswith("batch mode: ") for note in summary["notes"]), summary["notes"]
    assert summary["items"]["pending"] == 0


CASES = [
    _usage("upper-case", 'mode = "BATCH"', stderr="expected one of sync, batch"),
    _usage("a-number", "mode = 1", stderr="expected one of sync, batch"),
    _usage("a-table", "mode = { batch = true }", stderr="expected one of sync, batch"),
    _usage("empty", 'mode = ""', stderr="expected one of sync, batch"),
    _usage(
        "set-unknown",
        "concurrency = 2",
        ("--set", "run.mode=async"),
        stderr="expected one of sync, batch",
    ),
    Case(
        "batchmode-runs-to-the-end",
        run_args("--json", "--set", "run.mode=batch"),
        ExitCode.SOME_FAILED,
        files={"pipeline.toml": sim_pipeline(sim="seed = 3"), "input.jsonl": INPUT},
        check=_batch_summary,
    ),
]
