"""Typed settings and stage params: every malformed value is refused with its path, before any
request, for each built-in strategy family (gemini, sim, callable)."""

from __future__ import annotations

import enum
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from strategies import SamplingParams
from strategies.callable import from_callable
from strategies.gemini import GeminiParams, GeminiStrategy, connect, disconnect
from strategies.sim import SimStrategy

# -- malformed stage params, by family ----------------------------------------------------------

COMMON_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"temperature": "hot"}, "temperature", "expected a number in [0, 2], got the string 'hot'"),
    ({"temperature": math.nan}, "temperature", "expected a number in [0, 2], got the number nan"),
    ({"temperature": math.inf}, "temperature", "expected a number in [0, 2], got the number inf"),
    ({"temperature": -0.1}, "temperature", "expected a number in [0, 2], got the number -0.1"),
    ({"temperature": 2.5}, "temperature", "expected a number in [0, 2], got the number 2.5"),
    ({"temperature": True}, "temperature", "got the boolean true"),
    ({"temprature": 0.3}, "temprature", "unknown parameter (did you mean 'temperature'?"),
    ({"max_tokens": 100}, "max_tokens", "unknown parameter (did you mean 'max_output_tokens'?"),
    ({"top_p": 1.5}, "top_p", "expected a number in [0, 1], got the number 1.5"),
    ({"top_p": [0.5]}, "top_p", "expected a number in [0, 1], got a list"),
    ({"top_k": 0}, "top_k", "expected a whole number in [1, 2147483647], got the number 0"),
    ({"top_k": 2.5}, "top_k", "expected a whole number in [1, 2147483647], got the number 2.5"),
    ({"top_k": 2**40}, "top_k", "expected a whole number in [1, 2147483647]"),
    ({"temperature": 10**400}, "temperature", "expected a number in [0, 2], got the number 1000"),
    ({"seed": -(10**400)}, "seed", "expected a whole number in [-2147483648, 2147483647]"),
    ({"max_output_tokens": 0}, "max_output_tokens", "a whole number of tokens in [1, 2147483647]"),
    ({"max_output_tokens": "800"}, "max_output_tokens", "got the string '800'"),
    ({"seed": 2**40}, "seed", "expected a whole number in [-2147483648, 2147483647]"),
    ({"model": ""}, "model", "expected a non-empty string"),
    ({"model": 5}, "model", "expected a string, got the number 5"),
    ({"stop_sequences": ["a", "b", "c", "d", "e", "f"]}, "stop_sequences", "at most 5 items"),
    ({"stop_sequences": ["END", 1]}, "stop_sequences[1]", "expected a string, got the number 1"),
]
GEMINI_CASES: list[tuple[dict[str, Any], str, str]] = [
    *COMMON_CASES,
    ({"thinking_budget": -2}, "thinking_budget", "in [-1, 32768], got the number -2"),
    ({"thinking_budget": 40_000}, "thinking_budget", "in [-1, 32768], got the number 40000"),
    ({"response_mime_type": "text/html"}, "response_mime_type", "expected one of application/json"),
    ({"presence_penalty": 3}, "presence_penalty", "expected a number in [-2, 2], got the number 3"),
    ({"frequency_penalty": -math.inf}, "frequency_penalty", "got the number -inf"),
]
# Params that only Gemini understands are unknown to the generic families.
GENERIC_CASES: list[tuple[dict[str, Any], str, str]] = [
    *COMMON_CASES,
    ({"thinking_budget": 0}, "thinking_budget", "unknown parameter"),
    ({"response_mime_type": "application/json"}, "response_mime_type", "unknown parameter"),
]


def _plan(params: dict[str, Any]) -> sr.Plan:
    """Three stages, the bad params on the third: the path names the right one."""
    return sr.Plan(
        stages=[
            sr.Stage("full_t0", "full", {"temperature": 0.0}),
            sr.Stage("partial_t0", "partial", {"temperature": 0.0}),
            sr.Stage("full_hot", "full", params),
        ]
    )


def _assert_refused(
    build: Callable[[sr.Plan], object], params: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(sr.PlanError) as caught:
        build(_plan(params))
    assert caught.value.path == f"plan.stages[2].params.{key}"
    assert problem in caught.value.problem
    assert "\n" not in str(caught.value)


@pytest.fixture
async def gemini_strategy() -> AsyncIterator[GeminiStrategy]:
    # A dead loopback port: building a runner must refuse the plan before any request.
    client = connect("test-key", base_url="http://127.0.0.1:9")
    try:
        yield GeminiStrategy(client, "gemini-2.5-flash")
    finally:
        await disconnect(client)


@pytest.mark.parametrize(("params", "key", "problem"), GEMINI_CASES)
async def test_gemini_runner_refuses_malformed_params(
    gemini_strategy: GeminiStrategy, params: dict[str, Any], key: str, problem: str
) -> None:
    _assert_refused(lambda plan: sr.Runner(plan, gemini_strategy), params, key, problem)


@pytest.mark.parametrize(("params", "key", "problem"), GENERIC_CASES)
def test_sim_runner_refuses_malformed_params(
    params: dict[str, Any], key: str, problem: str
) -> None:
    _assert_refused(lambda plan: sr.Runner(plan, SimStrategy()), params, key, problem)


async def _echo(request: sr.Request, ctx: sr.StageContext) -> str:
    return "{}"


@pytest.mark.parametrize(("params", "key", "problem"), GENERIC_CASES)
def test_callable_runner_refuses_malformed_params(
    params: dict[str, Any], key: str, problem: str
) -> None:
    _assert_refused(lambda plan: sr.Runner(plan, from_callable(_echo)), params, key, problem)


async def test_the_strategy_receives_the_typed_params(virtual_clock: sr.Clock) -> None:
    seen: list[Any] = []

    async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
        seen.append(ctx.params)
        return '{"ok": true}'

    plan = sr.Plan(stages=[sr.Stage("only", "full", {"temperature": 1, "stop_sequences": "END"})])
    batch = await sr.Runner(plan, from_callable(answer), clock=virtual_clock).run([("a", "p")])
    assert batch.succeeded == 1
    assert seen == [SamplingParams(temperature=1.0, stop_sequences=("END",))]
    assert isinstance(seen[0].temperature, float)


async def test_a_strategy_that_declares_no_params_gets_the_plan_mapping(
    virtual_clock: sr.Clock,
) -> None:
    seen: list[Any] = []

    async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
        seen.append(ctx.params)
        return "{}"

    plan = sr.Plan(stages=[sr.Stage("only", "full", {"anything": "goes"})])
    strategy = from_callable(answer, params_type=None)
    await sr.Runner(plan, strategy, clock=virtual_clock).run([("a", "p")])
    assert dict(seen[0]) == {"anything": "goes"}


async def test_a_custom_params_type_is_checked_and_handed_on(virtual_clock: sr.Clock) -> None:
    @attrs.frozen
    class Mine:
        mode: str = sr.setting("fast", choices=("fast", "careful"))
        retries: int = sr.setting(0, minimum=0, maximum=3)

    seen: list[Any] = []

    async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
        seen.append(ctx.params)
        return "{}"

    strategy = from_callable(answer, params_type=Mine)
    good = sr.Plan(stages=[sr.Stage("only", "full", {"mode": "careful"})])
    await sr.Runner(good, strategy, clock=virtual_clock).run([("a", "p")])
    assert seen == [Mine(mode="careful")]
    bad = sr.Plan(stages=[sr.Stage("only", "full", {"mode": "sloppy"})])
    with pytest.raises(sr.PlanError, match=r"params\.mode: expected one of fast, careful"):
        sr.Runner(bad, strategy)


def test_gemini_params_extend_the_sampling_params() -> None:
    assert set(sr.settable_keys(SamplingParams)) < set(sr.settable_keys(GeminiParams))


# -- parse_settings itself ----------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Inner:
    at: tuple[int, ...] = sr.setting((), minimum=1)
    color: Color = sr.setting(Color.RED)


@attrs.frozen
class Outer:
    name: str = sr.setting()
    rate: float = sr.setting(0.5, minimum=0.0, maximum=1.0)
    wait: float = sr.setting(1.0, above=0.0, maximum=3600.0, unit="seconds")
    inner: Inner = sr.setting(factory=Inner)
    items: tuple[Inner, ...] = sr.setting(())
    derived: int = sr.setting(0, settable=False)


def test_nested_tables_enums_and_lists_of_tables() -> None:
    data = {"name": "x", "inner": {"color": "blue", "at": 3}, "items": [{"at": [1, 2]}]}
    parsed = sr.parse_settings(Outer, data, "backend.emulator")
    assert parsed == Outer(
        name="x", inner=Inner(at=(3,), color=Color.BLUE), items=(Inner(at=(1, 2)),)
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "backend.emulator.name: missing"),
        ({"name": "x", "derived": 3}, "backend.emulator.derived: unknown key"),
        ({"name": "x", "inner": 5}, "backend.emulator.inner: expected a table, got the number 5"),
        (
            {"name": "x", "items": [{"at": [0]}]},
            "backend.emulator.items[0].at[0]: expected a whole number of at least 1, "
            "got the number 0",
        ),
        (
            {"name": "x", "inner": {"color": "green"}},
            "backend.emulator.inner.color: expected one of red, blue, got the string 'green'",
        ),
        (
            {"name": "x", "wait": 0},
            "backend.emulator.wait: expected a number of seconds above 0 and at most 3600, "
            "got the number 0",
        ),
        ({"name": "x", "items": {"at": 1}}, "backend.emulator.items: expected a list of tables"),
        ({"name": "x", 3: 1}, "backend.emulator: keys must be strings, got 3"),
        ("text", "backend.emulator: expected a table, got the string 'text'"),
    ],
)
def test_parse_settings_names_the_path(data: Any, message: str) -> None:
    with pytest.raises(sr.PlanError) as caught:
        sr.parse_settings(Outer, data, "backend.emulator")
    assert str(caught.value).startswith(message)


def test_settings_built_in_code_get_the_same_checks() -> None:
    with pytest.raises(sr.PlanError, match=r"^temperature: expected a number in \[0, 2\]"):
        SamplingParams(temperature=3.0)
    with pytest.raises(sr.PlanError, match=r"^top_k: expected a whole number in \[1, "):
        GeminiParams(top_k=0)
    with pytest.raises(
        sr.PlanError, match=r"^temperature: expected a number in \[0, 2\], got the string 'hot'"
    ):
        GeminiParams(temperature="hot")  # type: ignore[arg-type]
    with pytest.raises(
        sr.PlanError, match=r"^top_k: expected a whole number .*got the boolean true"
    ):
        GeminiParams(top_k=True)
    with pytest.raises(sr.PlanError, match=r"^temperature: expected a number .*got a list"):
        GeminiParams(temperature=[1])  # type: ignore[arg-type]


def test_settings_built_in_code_are_converted_as_parsed_ones() -> None:
    params = GeminiParams(temperature=1, stop_sequences="END")  # type: ignore[arg-type]
    assert params == GeminiParams(temperature=1.0, stop_sequences=("END",))
    assert isinstance(params.temperature, float)
    assert isinstance(params.stop_sequences, tuple)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_temperature_is_accepted_exactly_when_finite_and_in_range(value: float) -> None:
    if math.isfinite(value) and 0.0 <= value <= 2.0:
        parsed = sr.parse_settings(SamplingParams, {"temperature": value}, "p")
        assert parsed.temperature == value
    else:
        with pytest.raises(sr.PlanError) as caught:
            sr.parse_settings(SamplingParams, {"temperature": value}, "p")
        assert caught.value.path == "p.temperature"


@given(st.integers())
def test_a_whole_number_setting_keeps_its_bounds(value: int) -> None:
    if 1 <= value <= 2**31 - 1:
        assert sr.parse_settings(SamplingParams, {"top_k": value}, "p").top_k == value
    else:
        with pytest.raises(sr.PlanError, match=r"^p\.top_k: "):
            sr.parse_settings(SamplingParams, {"top_k": value}, "p")
