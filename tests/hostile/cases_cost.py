"""Cost guards and the estimate, misused: a ceiling of the wrong kind, one that cannot be
counted, one that is reached, an estimate asked of a missing file or with a quota of zero,
and an estimate of a gemini job with no key (it sends nothing, so it needs none)."""

from __future__ import annotations

import json
import signal

from stagedretry.cli._exit import ExitCode

from ._corpus import Case, Ran, run_args
from .cases_stops import GEMINI, files

SIM = 'kind = "sim"\n\n[backend.sim]\nseed = 3\ninvalid_rate = 0.0'


def _with_run(extra: str, backend: str = SIM) -> dict[str, str | bytes]:
    found = files(backend)
    text = found["pipeline.toml"]
    assert isinstance(text, str)
    found["pipeline.toml"] = text.replace(
        "[run]\nconcurrency = 2\n", f"[run]\nconcurrency = 2\n{extra}\n"
    )
    return found


def _stopped_at_the_ceiling(ran: Ran) -> None:
    summary = json.loads(ran.out)
    assert summary["exit_code"] == ExitCode.RUN_STOPPED
    assert "run.max_tokens=500 is reached" in summary["run_failure"]
    assert summary["items"]["pending"] > 0


def _estimated_offline(ran: Ran) -> None:
    found = json.loads(ran.out)
    assert found["items"] == 60
    assert found["mix"]["source"] == "a sample of 3 items run on the emulator"
    assert not (ran.folder / "out").exists()  # nothing of the job was written


CASES = [
    Case(
        "cost-ceiling-not-a-number",
        run_args(),
        ExitCode.USAGE,
        files=_with_run('max_cost_usd = "ten dollars"'),
        stderr=r"pipeline\.toml: run\.max_cost_usd: ",
    ),
    Case(
        "cost-ceiling-zero",
        run_args(),
        ExitCode.USAGE,
        files=_with_run("max_cost_usd = 0"),
        stderr=r"run\.max_cost_usd: ",
    ),
    Case(
        "cost-ceiling-without-a-price",
        (*run_args(), "--model", "my-own-model"),
        ExitCode.USAGE,
        files=_with_run("max_cost_usd = 5"),
        stderr=r"run\.max_cost_usd: no price is known for the model 'my-own-model'",
    ),
    Case(
        "cost-token-ceiling-reached",
        (*run_args(), "--json"),
        ExitCode.RUN_STOPPED,
        files=_with_run("max_tokens = 500"),
        stderr=r"error: the run stopped: the job's token ceiling run\.max_tokens=500 is reached",
        check=_stopped_at_the_ceiling,
    ),
    Case(
        "cost-token-ceiling-negative",
        (*run_args(), "--set", "run.max_tokens=-5"),
        ExitCode.USAGE,
        files=_with_run(""),
        stderr=r"run\.max_tokens",
    ),
    Case(
        "cost-estimate-missing-pipeline",
        ("estimate", "nowhere.toml"),
        ExitCode.USAGE,
    ),
    Case(
        "cost-estimate-zero-rpm",
        ("estimate", "pipeline.toml", "--rpm", "0"),
        ExitCode.USAGE,
        files=_with_run(""),
        stderr=r"--rpm",
    ),
    Case(
        "cost-estimate-huge-sample",
        ("estimate", "pipeline.toml", "--sample", "99999999999"),
        ExitCode.USAGE,
        files=_with_run(""),
        stderr=r"--sample",
    ),
    Case(
        "cost-estimate-gemini-without-a-key",
        ("estimate", "pipeline.toml", "--sample", "3", "--json"),
        ExitCode.OK,
        files=_with_run("", backend=GEMINI),
        check=_estimated_offline,
    ),
]

SLOW = 'kind = "sim"\n\n[backend.sim]\nseed = 3\ninvalid_rate = 0.0\nlatency = 2.0'

CASES.append(
    Case(
        "cost-estimate-interrupted-in-its-sample",
        ("estimate", "pipeline.toml", "--sample", "4"),
        ExitCode.INTERRUPTED,
        files=_with_run("", backend=SLOW),
        signals=((r"estimate: running a sample", signal.SIGINT),),
        stderr=r"interrupted: no estimate was made",
        timeout=30.0,
    )
)
