"""Adversarial checks of batch mode (issue 12 §2, §3): what a user can do between two runs.

A batch-mode run stopped while its jobs run (here by its ``run.deadline``) leaves them in the
journal, unread; the service bills them anyway.  A synchronous run of the same job would send
those requests again and pay twice: it is refused in one sentence naming the journal (exit 2),
and the batch-mode run re-attaches to them as before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, Case, Ran, base_env, run_args, sim_pipeline

_PIPELINE = sim_pipeline(sim="seed = 3", run='concurrency = 5\nmode = "batch"')


def _stopped_batch_run(folder: Path) -> None:
    """A batch-mode run whose jobs outlast its deadline: they stay in the journal, unread."""
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "stagedretry.cli",
            *run_args("--set", "backend.sim.batch_latency=600", "--set", "run.deadline=1"),
        ],
        cwd=folder,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == ExitCode.DEADLINE, (ran.returncode, ran.stderr)


def _nothing_sent(ran: Ran) -> None:
    assert not (ran.folder / "out" / "results.jsonl").read_text("utf-8").strip()


def _all_done(ran: Ran) -> None:
    summary = json.loads(ran.out)
    assert summary["items"]["pending"] == 0
    assert summary["items"]["cancelled"] == 0
    assert any(" 1 of an earlier run re-attached to" in note for note in summary["notes"])


CASES = [
    Case(
        "advb-sync-after-stopped-batch",
        run_args("--set", "run.mode=sync"),
        ExitCode.USAGE,
        files={"pipeline.toml": _PIPELINE, "input.jsonl": INPUT},
        before=_stopped_batch_run,
        stderr=(
            r"out/journal\.sqlite: 5 item\(s\) to run \(first 'item-1'\) have requests in batch "
            r"jobs .* run with mode = \"batch\""
        ),
        check=_nothing_sent,
    ),
    Case(
        "advb-batch-after-stopped-batch",
        run_args("--json"),
        ExitCode.SOME_FAILED,
        files={"pipeline.toml": _PIPELINE, "input.jsonl": INPUT},
        before=_stopped_batch_run,
        check=_all_done,
    ),
]
