"""Service tiers from the command line (issue 12): ``service_tier`` as a stage param, the
emulator's ``flex`` table, a price per tier and the cost report split by tier."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from stagedretry import ItemResult, ItemStatus, ResponseMeta, Usage
from stagedretry._outcomes import OutcomeKind
from stagedretry._results import Attempt
from stagedretry.cli._exit import ExitCode
from stagedretry.cli._summary import price_job
from stagedretry.cli._tiers import tier_costs, token_cost, usage_by_tier
from stagedretry.cli.pipeline import Price, choose_price, default_price

from .conftest import Invocation, Job

MODEL = "gemini-2.5-flash"
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "author": {"type": "string"}},
    "required": ["title", "author"],
}


def _emulator_job(make_job: Callable[..., Job], *, emulator: str, extra: str = "") -> Job:
    job = make_job(items=12, sim="", run="concurrency = 2", extra=extra)
    (job.folder / "output.schema.json").write_text(json.dumps(SCHEMA), "utf-8")
    text = (
        job.pipeline.read_text("utf-8")
        .replace(
            'kind = "sim"\n\n[backend.sim]\n',
            f'kind = "emulator"\nmodel = "{MODEL}"\n\n[backend.emulator]\n{emulator}\n',
        )
        .replace(
            '[output]\npath = "out/results.jsonl"',
            '[output]\npath = "out/results.jsonl"\nschema = "output.schema.json"',
        )
        # The first stage on Flex; the others stay on standard.
        .replace(
            "params = { temperature = 0.0 }",
            'params = { temperature = 0.0, service_tier = "flex" }',
            1,
        )
    )
    job.pipeline.write_text(text, "utf-8")
    return job


def test_the_cost_report_splits_the_bill_by_tier(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _emulator_job(
        make_job, emulator="seed = 5\ninvalid_rate = 0.4\nflex = { shed_rate = 0.2 }"
    )
    ran = cli("run", str(job.pipeline), "--no-progress", "--json")
    assert ran.code in (ExitCode.OK, ExitCode.SOME_FAILED), ran.err
    summary = ran.json()
    cost = summary["cost"]
    tiers = {t["tier"]: t for t in cost["tiers"]}
    assert set(tiers) == {"flex", "standard"}
    assert [t["tier"] for t in cost["tiers"]] == ["standard", "flex"]
    # The tiers' tokens add up to the run's, kind by kind.
    for kind in ("input", "cached", "output", "thinking"):
        assert sum(t["tokens"][kind] for t in tiers.values()) == summary["tokens"][kind]
    # Flex is half price on input and output; standard costs what it would on standard.
    flex, standard = tiers["flex"], tiers["standard"]
    assert flex["tokens"]["cached"] == 0
    assert flex["usd"] == pytest.approx(flex["at_standard"] / 2, abs=2e-6)
    assert standard["usd"] == standard["at_standard"]
    parts = cost["parts"]
    assert parts["fresh_input"] + parts["cached_input"] + parts["output"] == pytest.approx(
        flex["usd"] + standard["usd"], abs=1e-5
    )
    assert "flex-inference" in cost["tier_price_sources"]["flex"]
    assert "standard" not in cost["tier_price_sources"]
    # Shed requests were retried and spent no prompt.
    assert any(s["outcomes"].get("shed") for s in summary["stages"])

    human = cli("run", str(job.pipeline), "--no-progress")
    assert "By service tier" in human.out
    assert "flex prices from 50% of standard" in human.out


def test_a_bad_tier_is_one_sentence_naming_its_place(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _emulator_job(make_job, emulator="seed = 1")
    job.pipeline.write_text(
        job.pipeline.read_text("utf-8").replace('service_tier = "flex"', 'service_tier = "Flex"'),
        "utf-8",
    )
    ran = cli("run", str(job.pipeline), "--no-progress")
    assert ran.code == ExitCode.USAGE
    assert "plan.stages[0].params.service_tier" in ran.err
    assert "expected one of flex, standard, priority, got 'Flex'" in ran.err
    assert "Traceback" not in ran.err + ran.out

    shed = _emulator_job(make_job, emulator="seed = 1\nflex = { shed_rate = 2 }")
    ran = cli("run", str(shed.pipeline), "--no-progress")
    assert ran.code == ExitCode.USAGE
    assert "backend.emulator.flex.shed_rate" in ran.err
    assert "Traceback" not in ran.err + ran.out


def test_default_tier_prices_follow_the_documented_ratios() -> None:
    choice = default_price(MODEL)
    assert choice is not None
    standard = choice.tier("standard")
    assert standard == choice.price == choice.tier(None)
    flex, priority, batch = choice.tier("flex"), choice.tier("priority"), choice.tier("batch")
    assert (flex.input, flex.output) == (standard.input / 2, standard.output / 2)
    assert flex.cached_input == standard.cached_input
    assert (priority.input, priority.cached_input, priority.output) == (
        2 * standard.input,
        2 * standard.cached_input,
        2 * standard.output,
    )
    # genai-prices carries Gemini's Batch prices: half, caching at the standard rate.
    assert choice.tier_sources["batch"].startswith("genai-prices")
    assert (batch.input, batch.output) == pytest.approx((standard.input / 2, standard.output / 2))
    assert choice.tier("no-such-tier") == standard


def test_a_pipeline_price_sets_each_tier_and_the_rest_follows_its_standard() -> None:
    price = Price(input=1.0, cached_input=0.1, output=4.0, flex={"output": 1.0})  # type: ignore[arg-type]
    choice = choose_price(MODEL, {MODEL: price})
    assert choice is not None
    flex = choice.tier("flex")
    assert (flex.input, flex.cached_input, flex.output) == (0.5, 0.1, 1.0)
    assert choice.tier("batch").input == 0.5
    assert "the pipeline's [prices] table" in choice.tier_sources["flex"]
    assert choice.tier_sources["priority"].startswith("standard + 100%")


def _result(*attempts: tuple[str | None, Usage]) -> ItemResult[Any]:
    return ItemResult(
        id="x",
        status=ItemStatus.SUCCEEDED,
        attempts=tuple(
            Attempt(
                stage="s",
                outcome=OutcomeKind.SUCCEEDED,
                number=n,
                counted=True,
                usage=usage,
                meta=ResponseMeta(service_tier=tier) if tier != "-" else None,
            )
            for n, (tier, usage) in enumerate(attempts, 1)
        ),
    )


def test_an_attempt_that_names_no_tier_is_billed_as_standard() -> None:
    a = Usage(input_tokens=1000, output_tokens=10)
    b = Usage(input_tokens=2000, cached_tokens=500, output_tokens=20)
    results = [
        _result(("flex", a), (None, b), ("flex", Usage())),
        _result(("-", a), ("batch", b), ("-", Usage())),
    ]
    by_tier = usage_by_tier(results)
    assert by_tier == {"flex": a, "standard": b + a, "batch": b}
    price = Price(input=1.0, cached_input=0.25, output=4.0)
    choice = choose_price(MODEL, {MODEL: price})
    assert choice is not None
    costs = tier_costs(by_tier, choice.tier, price)
    assert [c.tier for c in costs] == ["standard", "batch", "flex"]
    assert sum(c.usd for c in costs) < sum(c.at_standard for c in costs)
    cost = price_job(
        price,
        MODEL,
        a + b + a + b,
        [],
        ttl=0.0,
        keep=False,
        by_model_tier={(MODEL, tier): used for tier, used in by_tier.items()},
        price_for=lambda model: choice,
    )
    assert cost.fresh_input + cost.cached_input + cost.output == pytest.approx(
        sum(c.usd for c in costs)
    )
    plain = price_job(price, MODEL, a + b + a + b, [], ttl=0.0, keep=False)
    assert plain.with_cache == pytest.approx(token_cost(price, a + b + a + b))
    assert plain.tiers == ()
