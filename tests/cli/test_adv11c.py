"""Issue 11 §4 tried as an adversary: the job's ceilings and its estimate in the cases the
first tests did not reach (a ``--retry`` run, a per-model quota)."""

from __future__ import annotations

from collections.abc import Callable

from stagedretry import Journal, Usage
from stagedretry.cli._exit import ExitCode
from stagedretry.cli.pipeline import load_pipeline

from .conftest import Invocation, Job

Cli = Callable[..., Invocation]
RUN = ("--json", "--no-progress", "--no-report")


def _paid_tokens(job: Job) -> int:
    """Every token the journal says the job paid for: each item's every result, replaced
    ones included."""
    pipeline = load_pipeline(job.pipeline)
    with Journal(job.journal, pipeline.fingerprint) as journal:
        ids = [e.result.id for e in journal.entries()]
        usage = sum(
            (a.usage for i in ids for e in journal.history(i) for a in e.result.attempts),
            Usage(),
        )
    return usage.total_tokens


def test_a_retry_run_counts_what_the_retried_items_already_spent(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    job = make_job(items=30, sim="seed = 3\ninvalid_rate = 0.9", run="concurrency = 2")
    first = cli("run", str(job.pipeline), *RUN)
    assert first.code == ExitCode.SOME_FAILED
    spent = _paid_tokens(job)
    assert first.json()["items"]["exhausted"] > 0
    # The job has spent its ceiling already: a retry of its failures must send nothing.
    retry = ("--retry", "failed,exhausted")
    again = cli("run", str(job.pipeline), *RUN, *retry, "--set", f"run.max_tokens={spent}")
    assert again.code == ExitCode.RUN_STOPPED, again.out
    assert sum(again.json()["this_run"].values()) == 0
    assert f"({spent:,} tokens spent)" in again.json()["run_failure"]
    # A retry with room goes on; what it spends replaces results, which stay paid for.
    raised = cli("run", str(job.pipeline), *RUN, *retry, "--set", f"run.max_tokens={spent * 10}")
    assert sum(raised.json()["this_run"].values()) > 0
    total = _paid_tokens(job)
    assert total > spent
    third = cli("run", str(job.pipeline), *RUN, *retry, "--set", f"run.max_tokens={total}")
    assert third.code == ExitCode.RUN_STOPPED, third.out
    assert sum(third.json()["this_run"].values()) == 0
    assert f"({total:,} tokens spent)" in third.json()["run_failure"]


def test_a_retry_with_another_model_counts_each_earlier_result_once(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    job = make_job(items=30, sim="seed = 5\ninvalid_rate = 0.6", run="concurrency = 2")
    first = cli("run", str(job.pipeline), *RUN)
    data = first.json()
    assert 0 < data["items"]["exhausted"] < 30  # some keep their result, adopted by the retry
    t = data["tokens"]
    spent = t["input"] + t["output"] + t["thinking"]
    # Another model is another fingerprint: the kept results are copied under it, and the
    # retried ones stay under the first; neither is forgotten, neither counted twice.
    for ceiling, code in ((spent, ExitCode.RUN_STOPPED), (spent + 1, None)):
        ran = cli(
            "run", str(job.pipeline), *RUN, "--retry", "exhausted", "--model", "other-model",
            "--set", f"run.max_tokens={ceiling}",
        )  # fmt: skip
        if code is not None:
            assert ran.code == code, ran.out
            assert sum(ran.json()["this_run"].values()) == 0
            assert f"({spent:,} tokens spent)" in ran.json()["run_failure"]
        else:
            assert sum(ran.json()["this_run"].values()) > 0
