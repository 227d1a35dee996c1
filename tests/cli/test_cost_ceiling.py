"""``[run] max_cost_usd`` and ``max_tokens``: the job stops at its ceiling (exit 3), and goes on
only when the ceiling is raised.  Default prices come from genai-prices, each part sourced."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagedretry import Attempt, ItemResult, ItemStatus, Journal, OutcomeKind, Usage
from stagedretry.cli._ceiling import Ceiling
from stagedretry.cli._exit import ExitCode
from stagedretry.cli.pipeline import (
    STORAGE,
    Pipeline,
    Price,
    choose_price,
    default_price,
    load_pipeline,
)

from .conftest import Invocation, Job, sim_pipeline

Cli = Callable[..., Invocation]


def _item_costs(job: Job) -> list[float]:
    """Each journaled item's own cost at the job's price, in input order (with one worker,
    the order the run ended them)."""
    pipeline = load_pipeline(job.pipeline)
    price = pipeline.price
    assert price is not None
    with Journal(job.journal, pipeline.fingerprint) as journal:
        results = [e.result for e in journal.entries()]
    costs = []
    for result in results:
        usage = sum((a.usage for a in result.attempts), Usage())
        costs.append(
            (
                usage.fresh_input_tokens * price.input
                + usage.cached_tokens * price.cached_input
                + (usage.output_tokens + usage.thinking_tokens) * price.output
            )
            / 1e6
        )
    return costs


def test_the_cost_ceiling_stops_at_the_ceiling_and_a_raised_one_goes_on(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    ceiling = 0.002
    job = make_job(items=100, run=f"concurrency = 1\nmax_cost_usd = {ceiling}")
    first = cli("run", str(job.pipeline), "--json", "--no-progress", "--no-report")
    assert first.code == ExitCode.RUN_STOPPED
    data = first.json()
    spent = data["cost"]["with_cache"]
    costs = _item_costs(job)
    # At the ceiling: reached, and not reached one item earlier (one worker: no overshoot
    # beyond the item that crossed it).
    assert spent >= ceiling
    assert sum(costs[:-1]) < ceiling
    assert spent == pytest.approx(sum(costs), abs=1e-6)
    assert 0 < data["items"]["pending"] < 100
    assert "run.max_cost_usd=0.002 is reached" in data["run_failure"]
    assert data["exit_code"] == 3
    # The same command: the job's spend is already past the ceiling; nothing is sent.
    again = cli("run", str(job.pipeline), "--json", "--no-progress", "--no-report")
    assert again.code == ExitCode.RUN_STOPPED
    assert sum(again.json()["this_run"].values()) == 0
    assert again.json()["cost"]["with_cache"] == pytest.approx(spent)
    # Raised on the command line: the job goes on from where it stopped and finishes.
    raised = cli(
        "run", str(job.pipeline), "--json", "--no-progress", "--no-report",
        "--set", "run.max_cost_usd=100",
    )  # fmt: skip
    assert raised.code in (ExitCode.OK, ExitCode.SOME_FAILED)
    assert raised.json()["items"]["pending"] == 0
    assert raised.json()["items"]["from_journal"] == 100 - data["items"]["pending"]


def test_the_token_ceiling_stops_within_the_items_in_flight(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    ceiling = 3000
    job = make_job(items=200, run=f"concurrency = 4\nmax_tokens = {ceiling}")
    ran = cli("run", str(job.pipeline), "--json", "--no-progress", "--no-report")
    assert ran.code == ExitCode.RUN_STOPPED
    data = ran.json()
    t = data["tokens"]
    spent = t["input"] + t["output"] + t["thinking"]
    assert spent >= ceiling
    # The overshoot is bounded by the items in flight: 4 workers, each at most 5 prompts.
    per_prompt = max(1, spent // max(1, data["prompts"]))
    assert spent - ceiling <= 4 * 5 * per_prompt * 3
    assert data["items"]["pending"] > 0
    assert "run.max_tokens=3,000 is reached" in data["run_failure"]
    assert "run stopped" in ran.err


def test_a_cost_ceiling_without_a_known_price_is_refused_before_anything_runs(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    job = make_job(items=5, run="max_cost_usd = 1.0")
    ran = cli("run", str(job.pipeline), "--model", "my-own-model", "--no-progress")
    assert ran.code == ExitCode.USAGE
    assert "run.max_cost_usd: no price is known for the model 'my-own-model'" in ran.err
    assert not job.journal.exists()


@pytest.mark.parametrize("value", ["0", "-1", '"ten"'])
def test_a_bad_ceiling_names_its_key(make_job: Callable[..., Job], cli: Cli, value: str) -> None:
    job = make_job(items=2, run=f"max_cost_usd = {value}")
    ran = cli("run", str(job.pipeline), "--no-progress")
    assert ran.code == ExitCode.USAGE
    assert "run.max_cost_usd" in ran.err


def test_default_prices_come_from_genai_prices_with_their_sources(
    make_job: Callable[..., Job], cli: Cli
) -> None:
    job = make_job(items=3)
    data = cli("run", str(job.pipeline), "--json", "--no-progress", "--no-report").json()
    sources = data["cost"]["price_sources"]
    assert sources["input"].startswith("genai-prices ")
    assert "ai.google.dev/gemini-api/docs/pricing" in sources["output"]
    assert "checked 2026-11-30" in sources["cache_storage"]
    shown = cli("run", str(job.pipeline), "--fresh", "--no-progress", "--no-report").out
    assert "prices: input, cached_input, output from genai-prices " in shown
    assert "prices: cache_storage from https://ai.google.dev/gemini-api/docs/pricing" in shown


@pytest.mark.parametrize(
    ("model", "fresh", "cached", "out", "storage"),
    [
        ("gemini-2.5-flash", 0.30, 0.03, 2.50, 1.00),
        ("gemini-2.5-pro", 1.25, 0.125, 10.0, 4.50),
        ("gemini-2.5-flash-lite", 0.10, 0.01, 0.40, 1.00),
        ("models/gemini-2.5-flash", 0.30, 0.03, 2.50, 1.00),
    ],
)
def test_default_prices_of_gemini_models(
    model: str, fresh: float, cached: float, out: float, storage: float
) -> None:
    choice = default_price(model)
    assert choice is not None
    assert choice.price == Price(
        input=fresh, cached_input=cached, output=out, cache_storage=storage
    )


def test_the_pipeline_table_overrides_the_defaults_and_storage_falls_back() -> None:
    table = {"gemini-2.5-pro": Price(input=9.0, cached_input=0.9, output=90.0)}
    choice = choose_price("gemini-2.5-pro", table)
    assert choice is not None
    assert choice.price.input == 9.0
    assert choice.price.cache_storage == STORAGE["gemini-2.5-pro"].usd_per_mtok_hour
    assert choice.sources["input"] == "the pipeline's [prices] table"
    assert choice.sources["cache_storage"] == STORAGE["gemini-2.5-pro"].source
    assert choose_price("no-such-model", {}) is None


def _result(n: int, usage: Usage) -> ItemResult:
    attempt = Attempt(stage="s", number=1, outcome=OutcomeKind.SUCCEEDED, counted=True, usage=usage)
    return ItemResult(f"i{n}", ItemStatus.SUCCEEDED, attempts=(attempt,))


@given(
    st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=40),
    st.integers(min_value=1, max_value=100_000),
)
def test_the_token_ceiling_is_reached_at_the_first_prefix_past_it(
    sizes: list[int], limit: int
) -> None:
    pipeline = load_pipeline_for_tests(max_tokens=limit)
    ceiling = Ceiling.start(pipeline, (), ())
    assert ceiling is not None
    stops: list[str] = []
    ceiling.stop = stops.append
    total = 0
    first = None
    for n, size in enumerate(sizes):
        total += size
        ceiling.add(_result(n, Usage(input_tokens=size)))
        if first is None and total >= limit:
            first = n
        assert (ceiling.reached is not None) == (first is not None)
    assert len(stops) == (1 if first is not None else 0)


@functools.cache
def _sim_pipeline() -> Pipeline:
    folder = Path(tempfile.mkdtemp(prefix="ceiling-"))
    return load_pipeline(sim_pipeline(folder, items=1).pipeline)


def load_pipeline_for_tests(*, max_tokens: int) -> Pipeline:
    """A minimal sim pipeline (read once) with *max_tokens* as its token ceiling."""
    base = _sim_pipeline()
    return attrs.evolve(base, run=attrs.evolve(base.run, max_tokens=max_tokens))
