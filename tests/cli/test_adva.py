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


def test_a_stage_model_with_no_price_is_said_never_priced_as_another(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _escalating_job(make_job)
    house = "gemini-house-9"
    job.pipeline.write_text(
        job.pipeline.read_text("utf-8").replace("gemini-2.5-pro", house), "utf-8"
    )
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == ExitCode.OK, checked.err
    assert f"no price for {house!r} (a stage's model)" in checked.out
    ran = cli("run", str(job.pipeline), "--no-progress", "--json")
    assert ran.code in (ExitCode.OK, ExitCode.SOME_FAILED), ran.err
    summary = ran.json()
    cost = summary["cost"]
    stages = {s["name"]: s["tokens"] for s in summary["stages"]}
    left_out = sum(stages[n]["input"] + stages[n]["output"] for n in ("full_t25", "partial_t25"))
    assert left_out > 0
    assert cost["unpriced"] == {house: left_out}
    assert all(t["model"] != house for t in cost["tiers"])
    # The priced rows hold exactly the other stages' tokens.
    for kind in ("input", "cached", "output"):
        assert sum(t["tokens"][kind] for t in cost["tiers"]) == sum(
            stages[n][kind] for n in ("full_t0", "partial_t0")
        )
    human = cli("run", str(job.pipeline), "--no-progress", width=250)
    assert f"no price for {house!r} in [prices] nor in genai-prices' data" in human.out
