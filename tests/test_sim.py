"""The offline simulated model: deterministic, temperature-sensitive, faulty on request."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies._tokens import count_tokens
from strategies.sim import BOOK_FIELDS, SimModel, SimStrategy

ITEMS = [(f"book-{i}", f"Describe book number {i}.") for i in range(300)]


def single(temperature: float) -> sr.Plan:
    return sr.Plan([sr.Stage("only", params={"temperature": temperature})], max_prompts=1)


async def run(
    sim: SimStrategy, plan: sr.Plan | None = None, items: list[tuple[str, str]] = ITEMS
) -> sr.BatchResult:
    runner = sr.Runner(
        plan or sr.Plan.ladder(),
        sim,
        validator=sim.validator(),
        concurrency=32,
        clock=VirtualClock(),
        seed=0,
    )
    return await runner.run(items)


def summary(batch: sr.BatchResult) -> list[tuple[str, str, Any, int]]:
    return sorted((r.id, r.status.value, json.dumps(r.output), r.prompts) for r in batch.results)


def test_sim_is_a_strategy() -> None:
    assert isinstance(SimStrategy(), sr.Strategy)


async def test_same_seed_same_run() -> None:
    first = await run(SimStrategy(seed=4, invalid_rate=0.3, transient_rate=0.1))
    second = await run(SimStrategy(seed=4, invalid_rate=0.3, transient_rate=0.1))
    other = await run(SimStrategy(seed=5, invalid_rate=0.3, transient_rate=0.1))

    assert summary(first) == summary(second)
    assert first.usage == second.usage
    assert summary(first) != summary(other)


@pytest.mark.parametrize(("low", "high"), [(0.0, 0.25), (0.25, 1.0)])
async def test_lower_temperature_fails_less(low: float, high: float) -> None:
    sim = SimStrategy(invalid_rate=0.1, temperature_slope=0.4)

    cold = await run(sim, single(low))
    warm = await run(sim, single(high))

    assert cold.succeeded > warm.succeeded
    assert sim.invalid_probability(low) < sim.invalid_probability(high)


def test_invalid_probability_is_clamped() -> None:
    sim = SimStrategy(invalid_rate=0.8, temperature_slope=1.0)

    assert sim.invalid_probability(0.0) == pytest.approx(0.8)
    assert sim.invalid_probability(2.0) == 1.0
    assert SimStrategy(invalid_rate=-1.0).invalid_probability(0.0) == 0.0


async def test_invalid_rate_roughly_matches() -> None:
    # Four fields, each bad with p = 0.2: an answer is all valid with (0.8)^4 ~ 0.41.
    batch = await run(SimStrategy(invalid_rate=0.2, temperature_slope=0.0), single(0.0))

    assert 0.30 < batch.succeeded / len(ITEMS) < 0.52


async def test_ladder_repairs_fields_with_partial_stages() -> None:
    batch = await run(SimStrategy(invalid_rate=0.2))

    assert batch.succeeded / len(ITEMS) > 0.9  # one stage alone: about 0.41
    assert batch.successes_per_stage["partial_t0"] > 0
    # A partial stage asks exactly for the fields the attempt before it got wrong.
    repairs = 0
    for result in batch.results:
        for before, attempt in itertools.pairwise(result.attempts):
            if attempt.stage != "partial_t0":
                continue
            repairs += 1
            assert before.error is not None
            assert attempt.fields
            shown = f"; {before.error.split(': ', 1)[1]}"
            failed = {(f,) for f in BOOK_FIELDS if f"; /{f}: " in shown}
            assert set(attempt.fields) == failed
    assert repairs > 50
    for result in batch.results:
        if result.ok:
            assert set(result.output) == set(BOOK_FIELDS)


async def test_bad_fields_are_named_by_the_validator() -> None:
    batch = await run(SimStrategy(invalid_rate=1.0, temperature_slope=0.0), single(0.0))

    result = batch.results[0]
    assert result.status is sr.ItemStatus.EXHAUSTED
    assert sorted(e.path for e in result.errors) == sorted((f,) for f in BOOK_FIELDS)


async def test_faults_at_their_rates() -> None:
    sim = SimStrategy(invalid_rate=0.0, temperature_slope=0.0, transient_rate=0.3)

    batch = await run(sim, sr.Plan.ladder(max_prompts=10))

    attempts = [a for r in batch.results for a in r.attempts]
    transient = sum(a.outcome is sr.OutcomeKind.TRANSIENT for a in attempts)
    assert 0.2 < transient / len(attempts) < 0.4
    assert batch.succeeded == len(ITEMS)


async def test_rate_limits_carry_the_advice_and_cost_no_prompt() -> None:
    sim = SimStrategy(invalid_rate=0.0, temperature_slope=0.0, rate_limit_rate=0.2, retry_after=3.0)
    clock = VirtualClock()
    runner = sr.Runner(sr.Plan.ladder(), sim, validator=sim.validator(), concurrency=1, clock=clock)

    batch = await runner.run(ITEMS[:40])

    refused = [a for r in batch.results for a in r.attempts if not a.counted]
    assert refused
    assert all(a.outcome is sr.OutcomeKind.RATE_LIMITED for a in refused)
    assert batch.prompts == 40
    assert clock.monotonic() == pytest.approx(3.0 * len(refused))


async def test_latency_runs_on_the_engine_clock() -> None:
    sim = SimStrategy(invalid_rate=0.0, temperature_slope=0.0, latency=2.5)
    clock = VirtualClock()
    runner = sr.Runner(sr.Plan.ladder(), sim, validator=sim.validator(), concurrency=5, clock=clock)

    batch = await runner.run(ITEMS[:20])

    assert batch.succeeded == 20
    assert clock.monotonic() == pytest.approx(4 * 2.5)
    assert {a.duration for r in batch.results for a in r.attempts} == {2.5}


async def test_usage_counts_prompt_and_cached_instructions() -> None:
    sim = SimStrategy(SimModel(invalid_rate=0.0, temperature_slope=0.0, instructions_tokens=500))
    prompt = "Describe book number 7, please."

    batch = await run(sim, items=[("b7", prompt)])

    (result,) = batch.results
    (attempt,) = result.attempts
    assert attempt.usage.input_tokens == count_tokens(prompt) + 500
    assert attempt.usage.cached_tokens == 500
    assert attempt.usage.output_tokens == count_tokens(json.dumps(result.output))
    assert batch.cached_share == pytest.approx(500 / (count_tokens(prompt) + 500))


def test_count_tokens() -> None:
    assert count_tokens('{"a": 1, "bc": "d e"}') == 16  # words and marks
    assert count_tokens("") == 0


async def test_custom_fields() -> None:
    sim = SimStrategy(fields={"name": str, "score": float, "ok": bool}, invalid_rate=0.0)

    batch = await run(sim, single(0.0), items=[("x", "p")])

    (result,) = batch.results
    assert result.ok
    assert set(result.output) == {"name", "score", "ok"}
    assert isinstance(result.output["score"], float)
    assert isinstance(result.output["ok"], bool)
