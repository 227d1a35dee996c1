"""Found trying the service tiers as a user (issue 12): a job resumed on another tier keeps
the results it already paid for."""

from __future__ import annotations

from collections.abc import Callable

from stagedretry.cli._exit import ExitCode

from .conftest import Invocation, Job
from .test_model_prices import _escalating_job


def test_a_job_resumed_on_another_tier_keeps_its_paid_results(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _escalating_job(make_job)
    first = cli("run", str(job.pipeline), "--no-progress", "--json")
    assert first.code in (ExitCode.OK, ExitCode.SOME_FAILED), first.err
    done = first.json()
    assert done["attempts"] > 0
    # Flex sheds too much: the user moves the first stage to standard and runs again.
    again = cli(
        "run",
        str(job.pipeline),
        "--no-progress",
        "--json",
        "--set",
        "plan.stages[0].params.service_tier=standard",
    )
    assert again.code == first.code, again.err
    summary = again.json()
    assert summary["fingerprint"] == done["fingerprint"]
    assert summary["items"]["from_journal"] == done["items"]["total"]
    assert sum(summary["this_run"].values()) == 0
    # The bill still prices the journal's attempts at the tier they were billed at.
    assert {(t["model"], t["tier"]) for t in summary["cost"]["tiers"]} == {
        (t["model"], t["tier"]) for t in done["cost"]["tiers"]
    }
    # A change that decides the answer still starts afresh.
    other = cli(
        "run",
        str(job.pipeline),
        "--no-progress",
        "--json",
        "--set",
        "plan.stages[0].params.temperature=0.5",
    )
    assert other.json()["fingerprint"] != done["fingerprint"]
