"""Every wait of the engine is bounded: a default per-request timeout, capped durations, bounded
resource calls (issue 10, section 2)."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry import _plan as _plan_module
from stagedretry import _resources
from stagedretry._plan import (
    DEFAULT_TIMEOUT,
    MAX_BACKOFF,
    MAX_DEADLINE,
    MAX_MULTIPLIER,
    MAX_TIMEOUT,
)
from stagedretry._resources import ResourcePool
from stagedretry.testing import VirtualClock

ONE_STAGE = [{"name": "only"}]


def _plan(**plan: Any) -> sr.Plan:
    return sr.Plan.from_dict({"stages": ONE_STAGE, **plan})


class Forever:
    """A strategy whose first request never answers (it waits on the clock for ever)."""

    def __init__(self) -> None:
        self.calls = 0

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        self.calls += 1
        if self.calls == 1:
            await asyncio.Event().wait()
        return sr.Response('{"ok": true}')

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None


class TestTheDefaultTimeout:
    def test_an_unset_timeout_means_the_documented_default(self) -> None:
        assert DEFAULT_TIMEOUT == 600.0
        assert _plan().timeout is None  # nothing declared: the default guard applies
        assert "timeout" not in _plan().to_dict()  # the fingerprint of existing journals holds
        assert _plan(timeout=30).timeout == 30.0

    async def test_a_request_that_never_answers_ends_by_the_default_timeout(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(_plan_module, "DEFAULT_TIMEOUT", 0.2)  # 600 real s, shortened
        strategy = Forever()
        runner = sr.Runner(_plan(max_prompts=3), strategy, clock=VirtualClock())
        began = time.monotonic()
        async with asyncio.timeout(10):  # without the guard: a failure here, not a hang
            batch = await runner.run([("a", "prompt")])
        assert 0.2 <= time.monotonic() - began < 5
        result = batch.results[0]
        assert result.status is sr.ItemStatus.SUCCEEDED
        assert result.attempts[0].outcome is sr.OutcomeKind.TRANSIENT
        assert strategy.calls == 2

    async def test_the_default_is_real_time_so_moving_a_virtual_clock_does_not_fire_it(
        self,
    ) -> None:
        # A test that simulates hours over live requests (the soak) must not time them out.
        clock = VirtualClock(autojump=False)
        answer = asyncio.Event()

        class Live:
            async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
                await answer.wait()
                return sr.Response('{"ok": true}')

            def classify(self, exc: BaseException) -> sr.Outcome | None:
                return None

        running = asyncio.ensure_future(sr.Runner(_plan(), Live(), clock=clock).run([("a", "p")]))
        await asyncio.sleep(0.05)
        clock.advance(10 * DEFAULT_TIMEOUT)
        answer.set()
        batch = await running
        assert [a.outcome for a in batch.results[0].attempts] == [sr.OutcomeKind.SUCCEEDED]

    async def test_a_declared_timeout_is_on_the_runners_clock(self) -> None:
        clock = VirtualClock()
        plan = sr.Plan.from_dict({"stages": [{"name": "only", "timeout": 7}]})
        batch = await sr.Runner(plan, Forever(), clock=clock).run([("a", "prompt")])
        assert batch.results[0].attempts[0].duration == pytest.approx(7.0)


# Every duration of a plan, with its path in messages and its largest value.
PLAN_DURATIONS = [
    ({"timeout": "{}"}, "plan.timeout", MAX_TIMEOUT),
    ({"deadline": "{}"}, "plan.deadline", MAX_DEADLINE),
    ({"backoff": {"initial": "{}", "max": MAX_BACKOFF}}, "plan.backoff.initial", MAX_BACKOFF),
    ({"backoff": {"initial": 0.1, "max": "{}"}}, "plan.backoff.max", MAX_BACKOFF),
    (
        {"rate_limit_backoff": {"initial": "{}", "max": MAX_BACKOFF}},
        "plan.rate_limit_backoff.initial",
        MAX_BACKOFF,
    ),
    (
        {"rate_limit_backoff": {"initial": 0.1, "max": "{}"}},
        "plan.rate_limit_backoff.max",
        MAX_BACKOFF,
    ),
    ({"stages": [{"name": "s", "timeout": "{}"}]}, "plan.stages[0].timeout", MAX_TIMEOUT),
    (
        {"stages": [{"name": "s", "backoff": {"initial": 0.1, "max": "{}"}}]},
        "plan.stages[0].backoff.max",
        MAX_BACKOFF,
    ),
]


def _put(template: Any, value: float) -> Any:
    if template == "{}":
        return value
    if isinstance(template, dict):
        return {k: _put(v, value) for k, v in template.items()}
    if isinstance(template, list):
        return [_put(v, value) for v in template]
    return template


def _plan_with(template: dict[str, Any], value: float) -> sr.Plan:
    data = {"stages": ONE_STAGE, **_put(template, value)}
    return sr.Plan.from_dict(data)


@pytest.mark.parametrize(("template", "path", "maximum"), PLAN_DURATIONS)
@pytest.mark.parametrize("value", [1e308, math.inf, -math.inf, math.nan, -1.0, 0.0])
def test_every_plan_duration_refuses_what_cannot_be_waited(
    template: dict[str, Any], path: str, maximum: float, value: float
) -> None:
    with pytest.raises(sr.PlanError) as caught:
        _plan_with(template, value)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: ")


@pytest.mark.parametrize(("template", "path", "maximum"), PLAN_DURATIONS)
def test_every_plan_duration_takes_its_largest_value(
    template: dict[str, Any], path: str, maximum: float
) -> None:
    _plan_with(template, maximum)
    with pytest.raises(sr.PlanError, match=f"at most {maximum:g} seconds"):
        _plan_with(template, maximum * 1.001)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_timeout_is_accepted_exactly_in_its_range(value: float) -> None:
    if math.isfinite(value) and 0 < value <= MAX_TIMEOUT:
        assert _plan(timeout=value).timeout == value
    else:
        with pytest.raises(sr.PlanError) as caught:
            _plan(timeout=value)
        assert caught.value.path == "plan.timeout"


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_backoff_multiplier_is_bounded(value: float) -> None:
    if math.isfinite(value) and 1 <= value <= MAX_MULTIPLIER:
        backoff = _plan(backoff={"multiplier": value}).backoff
        # The largest ceiling of the longest run of retries is still a number.
        assert backoff.ceiling(10_000) <= backoff.maximum
    else:
        with pytest.raises(sr.PlanError) as caught:
            _plan(backoff={"multiplier": value})
        assert caught.value.path == "plan.backoff.multiplier"


class _Hanging:
    """A shared resource whose prepare or close never ends."""

    name = "slow"

    def __init__(self, *, hang_prepare: bool) -> None:
        self.hang_prepare = hang_prepare

    async def prepare(self, clock: sr.Clock) -> Any:
        if self.hang_prepare:
            await asyncio.Event().wait()
        return "handle"

    def needs_renewal(self, handle: Any, clock: sr.Clock) -> bool:
        return False

    async def renew(self, handle: Any, reason: sr.RenewReason, clock: sr.Clock) -> Any:
        return handle

    async def close(self, handle: Any) -> None:
        await asyncio.Event().wait()


def test_the_resource_bounds_are_the_documented_ones() -> None:
    assert (_resources.PREPARE_TIMEOUT, _resources.CLOSE_TIMEOUT) == (120.0, 30.0)


# The bounds are real seconds (a provider hangs in real time); shortened here to keep tests fast.


async def test_a_resource_that_never_prepares_fails_the_run_after_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_resources, "PREPARE_TIMEOUT", 0.2)
    runner = sr.Runner(_plan(), Forever(), resources=[_Hanging(hang_prepare=True)])
    began = time.monotonic()
    with pytest.raises(
        sr.ResourceError, match=r"could not prepare resource 'slow': no answer within 0\.2 s"
    ):
        await runner.run([("a", "prompt")])
    assert time.monotonic() - began < 5


async def test_a_resource_that_never_closes_is_given_up_after_its_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_resources, "CLOSE_TIMEOUT", 0.2)
    pool = ResourcePool([_Hanging(hang_prepare=False)])
    await pool.current(VirtualClock())
    errors = await pool.close()
    assert [str(e) for e in errors] == ["closing resource 'slow' took over 0.2 s: given up"]


class _OwnTimeout(_Hanging):
    """A resource whose close fails at once with a timeout of its own (its HTTP client's)."""

    async def close(self, handle: Any) -> None:
        raise TimeoutError("the delete call timed out after 5 s")


async def test_a_resources_own_timeout_is_its_own_words_not_the_bound() -> None:
    pool = ResourcePool([_OwnTimeout(hang_prepare=False)])
    await pool.current(VirtualClock())
    errors = await pool.close()
    assert [str(e) for e in errors] == ["the delete call timed out after 5 s"]


class _Advising:
    """Refuses the first request with a server's advice, then answers."""

    def __init__(self, advice: float) -> None:
        self.advice = advice
        self.calls = 0

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        self.calls += 1
        if self.calls == 1:
            raise sr.RateLimited("slow down", retry_after=self.advice)
        return sr.Response('{"ok": true}')

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None


@pytest.mark.parametrize("advice", [math.nan, math.inf, 1e308, -5.0])
async def test_a_servers_advice_never_makes_an_endless_or_broken_wait(advice: float) -> None:
    clock = VirtualClock()
    plan = _plan(rate_limit_backoff={"initial": 1, "max": 60}, backoff={"initial": 1, "max": 2})
    batch = await sr.Runner(plan, _Advising(advice), clock=clock).run([("a", "p")])
    assert batch.results[0].status is sr.ItemStatus.SUCCEEDED
    assert math.isfinite(clock.monotonic())
    assert clock.monotonic() <= 60.0
