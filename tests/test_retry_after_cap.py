"""The server's retry_after is capped at the plan's rate_limit_backoff.maximum (issue 14 §5)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry import OutcomeKind as K
from stagedretry.testing import ScriptedStrategy, ScriptStep, VirtualClock


def waited(plan: sr.Plan, *delays: float) -> float:
    """Virtual seconds one item waits for 429s advising *delays*, then a success."""
    clock = VirtualClock()
    steps = [ScriptStep(K.RATE_LIMITED, retry_after=d) for d in delays]
    runner = sr.Runner(plan, ScriptedStrategy({"a": steps}), clock=clock)
    result = asyncio.run(runner.run([("a", "p")])).results[0]
    assert result.ok
    return clock.monotonic()


def test_two_half_hour_delays_wait_ten_minutes_by_default() -> None:
    assert sr.Plan.ladder().rate_limit_backoff.maximum == 300.0
    assert waited(sr.Plan.ladder(), 1800.0, 1800.0) == 600.0


def test_a_higher_maximum_lets_the_whole_delay_be_waited() -> None:
    plan = sr.Plan(
        stages=sr.Plan.ladder().stages, rate_limit_backoff=sr.Backoff(initial=2.0, maximum=3600.0)
    )
    assert waited(plan, 1800.0, 1800.0) == 3600.0


@given(
    delay=st.floats(0.0, 7200.0, allow_nan=False),
    maximum=st.floats(1.0, 3600.0, allow_nan=False),
)
def test_the_wait_is_the_servers_delay_up_to_the_maximum(delay: float, maximum: float) -> None:
    plan = sr.Plan(
        stages=[sr.Stage("ask")], rate_limit_backoff=sr.Backoff(initial=1.0, maximum=maximum)
    )
    assert waited(plan, delay) == min(delay, maximum)
