"""The cost report prices each attempt at its stage's model and billed tier (issue 12): a
stage that escalates to another model is billed at that model's price, and a model with no
known price is named, never priced as another."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagedretry import ItemResult, ItemStatus, ResponseMeta, Usage
from stagedretry._outcomes import OutcomeKind
from stagedretry._results import Attempt
from stagedretry.cli._estimate import split_usage
from stagedretry.cli._exit import ExitCode
from stagedretry.cli._summary import RunStats, price_job
from stagedretry.cli._tiers import usage_by_model_tier
from stagedretry.cli.pipeline import Price, PriceChoice, choose_price, default_price
from stagedretry.cli.report import load_source, make_report

from .conftest import Invocation, Job

FLASH = "gemini-2.5-flash"
PRO = "gemini-2.5-pro"
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "author": {"type": "string"}},
    "required": ["title", "author"],
}


def _escalating_job(make_job: Callable[..., Job]) -> Job:
    """Flash on Flex, then flash on standard, then two stages on pro (the last on Flex)."""
    job = make_job(items=16, sim="", run="concurrency = 2")
    (job.folder / "output.schema.json").write_text(json.dumps(SCHEMA), "utf-8")
    text = (
        job.pipeline.read_text("utf-8")
        .replace(
            'kind = "sim"\n\n[backend.sim]\n',
            f'kind = "emulator"\nmodel = "{FLASH}"\n\n[backend.emulator]\n'
            "seed = 11\ninvalid_rate = 0.6\n",
        )
        .replace(
            '[output]\npath = "out/results.jsonl"',
            '[output]\npath = "out/results.jsonl"\nschema = "output.schema.json"',
        )
        .replace(
            "params = { temperature = 0.0 }",
            'params = { temperature = 0.0, service_tier = "flex" }',
            1,
        )
        .replace(
            'name = "full_t25"\nparams = { temperature = 0.25 }',
            f'name = "full_t25"\nparams = {{ temperature = 0.25, model = "{PRO}" }}',
        )
        .replace(
            'name = "partial_t25"\nkind = "partial"\nparams = { temperature = 0.25 }',
            f'name = "partial_t25"\nkind = "partial"\n'
            f'params = {{ temperature = 0.25, model = "{PRO}", service_tier = "flex" }}',
        )
        .replace("max_prompts = 5", "max_prompts = 8")
    )
    job.pipeline.write_text(text, "utf-8")
    return job


def _usd(price: Price, tokens: dict[str, int], *, half: bool) -> float:
    """Tokens at *price* by hand: fresh input, cached input, output; Flex halves input and
    output (cached input stays at the standard rate)."""
    factor = 0.5 if half else 1.0
    fresh = tokens["input"] - tokens["cached"]
    return (
        fresh * price.input * factor
        + tokens["cached"] * price.cached_input
        + tokens["output"] * price.output * factor
    ) / 1_000_000


def test_a_stage_on_another_model_is_billed_at_its_models_price(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _escalating_job(make_job)
    ran = cli("run", str(job.pipeline), "--no-progress", "--json")
    assert ran.code in (ExitCode.OK, ExitCode.SOME_FAILED), ran.err
    summary = ran.json()
    assert summary["tokens"]["thinking"] == 0
    stages = {s["name"]: s["tokens"] for s in summary["stages"]}
    assert stages["full_t25"]["input"] > 0, "the ladder must reach the pro stages"
    flash, pro = default_price(FLASH), default_price(PRO)
    assert flash is not None
    assert pro is not None
    expected = (
        _usd(flash.price, stages["full_t0"], half=True)
        + _usd(flash.price, stages["partial_t0"], half=False)
        + _usd(pro.price, stages["full_t25"], half=False)
        + _usd(pro.price, stages["partial_t25"], half=True)
    )
    all_flash = sum(
        _usd(flash.price, stages[name], half=name in ("full_t0", "partial_t25")) for name in stages
    )
    assert expected > all_flash * 1.2  # the bug being pinned: pro priced as flash
    cost = summary["cost"]
    parts = cost["parts"]
    assert parts["fresh_input"] + parts["cached_input"] + parts["output"] == pytest.approx(
        expected, abs=1e-5
    )
    assert cost["models"] == [FLASH, PRO]
    assert cost["unpriced"] == {}
    rows = {(t["model"], t["tier"]) for t in cost["tiers"]}
    assert rows <= {(FLASH, "flex"), (FLASH, "standard"), (PRO, "standard"), (PRO, "flex")}
    assert (PRO, "standard") in rows
    # The rows add up to the bill's tokens and USD.
    for kind in ("input", "cached", "output"):
        assert sum(t["tokens"][kind] for t in cost["tiers"]) == summary["tokens"][kind]
    assert sum(t["usd"] for t in cost["tiers"]) == pytest.approx(expected, abs=1e-5)
    assert PRO in cost["model_price_sources"]

    human = cli("run", str(job.pipeline), "--no-progress", width=200)
    assert f"Cost ({FLASH}, {PRO})" in human.out
    assert "By model and service tier" in human.out
    assert f"{PRO} prices: input" in human.out


def _result(*attempts: tuple[str, str | None, Usage]) -> ItemResult[str]:
    return ItemResult(
        id="x",
        status=ItemStatus.SUCCEEDED,
        attempts=tuple(
            Attempt(
                number=n,
                stage=stage,
                counted=True,
                outcome=OutcomeKind.SUCCEEDED,
                usage=usage,
                meta=ResponseMeta(service_tier=tier),
            )
            for n, (stage, tier, usage) in enumerate(attempts, 1)
        ),
    )


def test_a_model_without_a_price_is_named_and_left_out() -> None:
    flash = Price(input=1.0, cached_input=0.25, output=4.0, cache_storage=2.0)
    models = {"cheap": FLASH, "odd": "house-model-7", "also_cheap": FLASH}
    a = Usage(input_tokens=1000, cached_tokens=400, output_tokens=10)
    b = Usage(input_tokens=3000, output_tokens=30, thinking_tokens=5)
    results = [
        _result(("cheap", "flex", a), ("odd", "standard", b)),
        _result(("also_cheap", None, a), ("odd", "priority", b)),
    ]
    by_model_tier = usage_by_model_tier(results, lambda stage: models[stage])
    assert by_model_tier == {
        (FLASH, "flex"): a,
        (FLASH, "standard"): a,
        ("house-model-7", "standard"): b,
        ("house-model-7", "priority"): b,
    }

    def price_for(model: str) -> PriceChoice | None:
        return choose_price(model, {FLASH: flash}) if model == FLASH else None

    run = RunStats(
        wall_time=3600.0,
        cache={"created": 2},
        cache_tokens=900,
        cache_tokens_by_model={FLASH: 400, "house-model-7": 900},
    )
    cost = price_job(
        flash,
        FLASH,
        a + a + b + b,
        [run],
        ttl=0.0,
        keep=False,
        by_model_tier=by_model_tier,
        price_for=price_for,
    )
    # By hand: flex halves fresh input and output; cached input stays at 0.25.
    flex_usd = (600 * 0.5 + 400 * 0.25 + 10 * 2.0) / 1e6
    standard_usd = (600 * 1.0 + 400 * 0.25 + 10 * 4.0) / 1e6
    assert cost.fresh_input + cost.cached_input + cost.output == pytest.approx(
        flex_usd + standard_usd
    )
    # Two caches made (one per model): flash's created once at its input price and stored an
    # hour; the unpriced model's cache is left out with its tokens.
    assert cost.cache_creation == pytest.approx(400 * 1.0 / 1e6)
    assert cost.cache_storage == pytest.approx(400 * 1.0 * 2.0 / 1e6)
    assert cost.unpriced == {"house-model-7": 2 * b.total_tokens}
    assert cost.models == (FLASH, "house-model-7")
    assert sum(t.usd for t in cost.tiers) == pytest.approx(flex_usd + standard_usd)


@given(
    total=st.tuples(*(st.integers(0, 10**9) for _ in range(3))),
    shares=st.lists(st.tuples(*(st.integers(0, 10**6) for _ in range(3))), min_size=1, max_size=5),
)
def test_the_estimates_split_adds_up_to_its_tokens(
    total: tuple[int, int, int], shares: list[tuple[int, int, int]]
) -> None:
    fresh, cached, out = total
    usage = Usage(input_tokens=fresh + cached, cached_tokens=cached, output_tokens=out)
    keyed = {
        (f"m{n}", "standard"): Usage(input_tokens=f + c, cached_tokens=c, output_tokens=o)
        for n, (f, c, o) in enumerate(shares)
    }
    split = split_usage(usage, keyed)
    assert set(split) == set(keyed)
    assert sum(split.values(), Usage()) == usage
    assert all(u.fresh_input_tokens >= 0 and u.output_tokens >= 0 for u in split.values())


def test_the_estimate_prices_each_stage_at_its_models_price(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _escalating_job(make_job)
    ran = cli("estimate", str(job.pipeline), "--sample", "16", "--json")
    assert ran.code == ExitCode.OK, ran.err
    found = ran.json()
    cost = found["cost"]
    assert cost["models"] == [FLASH, PRO]
    rows = {(t["model"], t["tier"]): t for t in cost["tiers"]}
    assert (PRO, "standard") in rows
    for kind in ("input", "cached", "output"):
        assert sum(t["tokens"][kind] for t in rows.values()) == found["tokens"][kind]
    # Each row at its own model's price, on its tier, by hand.
    prices = {FLASH: default_price(FLASH), PRO: default_price(PRO)}
    expected = 0.0
    for (model, tier), row in rows.items():
        choice = prices[model]
        assert choice is not None
        expected += _usd(choice.price, row["tokens"], half=tier == "flex")
    parts = cost["parts"]
    assert parts["fresh_input"] + parts["cached_input"] + parts["output"] == pytest.approx(
        expected, abs=1e-5
    )


def test_the_report_prices_each_stage_at_its_models_price(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _escalating_job(make_job)
    ran = cli("run", str(job.pipeline), "--no-progress", "--json")
    assert ran.code in (ExitCode.OK, ExitCode.SOME_FAILED), ran.err
    summary = ran.json()
    parts = summary["cost"]["parts"]
    billed = parts["fresh_input"] + parts["cached_input"] + parts["output"]
    report = make_report(load_source(job.output))
    counted = report.traffic
    assert counted.cost == pytest.approx(billed, abs=1e-5)
    flash, pro = default_price(FLASH), default_price(PRO)
    assert flash is not None
    assert pro is not None
    by_stage = {s.name: s for s in counted.stages}
    tokens = {s["name"]: s["tokens"] for s in summary["stages"]}
    assert by_stage["full_t25"].cost == pytest.approx(
        _usd(pro.price, tokens["full_t25"], half=False), abs=1e-6
    )
    assert by_stage["full_t0"].cost == pytest.approx(
        _usd(flash.price, tokens["full_t0"], half=True), abs=1e-6
    )
    assert report.timeline is not None
    assert sum(a for _, a in report.timeline.spend) == pytest.approx(billed, abs=1e-5)
