"""Any value at all for a plan's durations and counts: a plan within the documented bounds,
or one :class:`PlanError` naming the place; never an ``OverflowError`` or a ``ValueError``
from printing an int of more than 4300 digits."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry import _plan

STAGE = {"name": "s", "kind": "full"}

# Where each value goes, and the bound the plan must hold it to.
PLACES: dict[str, tuple[Any, float]] = {
    "timeout": (lambda v: {"stages": [STAGE], "timeout": v}, _plan.MAX_TIMEOUT),
    "deadline": (lambda v: {"stages": [STAGE], "deadline": v}, _plan.MAX_DEADLINE),
    "stage_timeout": (
        lambda v: {"stages": [{**STAGE, "timeout": v}]},
        _plan.MAX_TIMEOUT,
    ),
    "backoff_initial": (
        lambda v: {"stages": [STAGE], "backoff": {"initial": v}},
        _plan.MAX_BACKOFF,
    ),
    "rate_limit_max": (
        lambda v: {"stages": [STAGE], "rate_limit_backoff": {"max": v}},
        _plan.MAX_BACKOFF,
    ),
    "multiplier": (
        lambda v: {"stages": [STAGE], "backoff": {"multiplier": v}},
        _plan.MAX_MULTIPLIER,
    ),
    "max_prompts": (lambda v: {"stages": [STAGE], "max_prompts": v}, 2**63 - 1),
    "max_rate_limit_waits": (
        lambda v: {"stages": [STAGE], "max_rate_limit_waits": v},
        2**63 - 1,
    ),
    "max_attempts": (
        lambda v: {"stages": [{**STAGE, "max_attempts": v}]},
        2**63 - 1,
    ),
}

HUGE = [10**400, -(10**400), 10**5000, -(10**5000), 2**63, 2**1024]
values = st.one_of(
    st.sampled_from(HUGE),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@given(place=st.sampled_from(sorted(PLACES)), value=values)
def test_any_value_makes_a_bounded_plan_or_one_plan_error(place: str, value: object) -> None:
    build, bound = PLACES[place]
    try:
        plan = sr.Plan.from_dict(build(value))
    except sr.PlanError as error:
        message = str(error)
    else:
        message = None
    if message is not None:
        assert message.startswith("plan.")
        assert len(message) < 300
        return
    held = {
        "timeout": plan.timeout,
        "deadline": plan.deadline,
        "stage_timeout": plan.stages[0].timeout,
        "backoff_initial": plan.backoff.initial,
        "rate_limit_max": plan.rate_limit_backoff.maximum,
        "multiplier": plan.backoff.multiplier,
        "max_prompts": plan.max_prompts,
        "max_rate_limit_waits": plan.max_rate_limit_waits,
        "max_attempts": plan.stages[0].max_attempts,
    }[place]
    if held is not None:
        assert not isinstance(held, bool)
        assert math.isfinite(held)
        assert 0 <= held <= bound


@pytest.mark.parametrize("value", HUGE, ids=["e400", "-e400", "e5000", "-e5000", "2^63", "2^1024"])
def test_a_huge_int_in_code_is_one_plan_error(value: int) -> None:
    with pytest.raises(sr.PlanError, match=r"plan\.timeout: must be "):
        sr.Plan(stages=(sr.Stage("s", "full"),), timeout=value)
    with pytest.raises(sr.PlanError, match=r"plan\.backoff\.initial: must be "):
        sr.Plan(stages=(sr.Stage("s", "full"),), backoff=sr.Backoff(initial=value))
    with pytest.raises(sr.PlanError, match=r"plan\.max_prompts: must be "):
        sr.Plan(stages=(sr.Stage("s", "full"),), max_prompts=value)


def test_a_too_long_duration_says_at_most_however_long() -> None:
    with pytest.raises(sr.PlanError) as error:
        sr.Plan.from_dict({"stages": [STAGE], "timeout": 10**5000})
    assert str(error.value) == "plan.timeout: must be at most 3600 seconds, got 1e5000 or so"
