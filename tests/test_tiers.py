"""Service tiers in the plan: where a shed request goes (``on.shed``), where a stage that
has spent its ``max_attempts`` goes (``on.give_up``), and the move to a faster stage as an
item's deadline nears (``expedite``), from the plan file to the engine and the harness."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry import OutcomeKind as K
from stagedretry._plan import Trigger, declared_edges
from stagedretry._policy import EXPEDITE, before_request, count, decide
from stagedretry.testing import (
    ReferenceItem,
    ScriptedStrategy,
    ScriptStep,
    VirtualClock,
    check_plan,
    expected_path,
    outcomes,
    plans,
)

ITEM = "item"

# The recipe: Flex first, Standard after a shed request, after two transient errors
# in a row, or once the item has two minutes left of its fifteen.
FLEX = sr.Plan(
    stages=[
        sr.Stage(
            "full_flex",
            params={"service_tier": "flex"},
            max_attempts=2,
            on_shed="full_std",
            on_give_up="full_std",
            expedite=sr.Expedite(within=120.0, to="full_std"),
        ),
        sr.Stage("full_std", params={"service_tier": "standard"}),
        sr.Stage("partial_std", "partial", {"service_tier": "standard"}),
    ],
    max_prompts=4,
    deadline=900.0,
)

FLEX_TOML = """\
[plan]
max_prompts = 4
deadline = 900

[[plan.stages]]
name = "full_flex"
params = { service_tier = "flex" }
max_attempts = 2
on = { shed = "full_std", give_up = "full_std" }
expedite = { within = 120, to = "full_std" }

[[plan.stages]]
name = "full_std"
params = { service_tier = "standard" }

[[plan.stages]]
name = "partial_std"
kind = "partial"
params = { service_tier = "standard" }
"""

FLEX_YAML = """\
plan:
  max_prompts: 4
  deadline: 900
  stages:
    - name: full_flex
      params: {service_tier: flex}
      max_attempts: 2
      "on": {shed: full_std, give_up: full_std}
      expedite: {within: 120, to: full_std}
    - name: full_std
      params: {service_tier: standard}
    - name: partial_std
      kind: partial
      params: {service_tier: standard}
"""


class SlowStrategy(ScriptedStrategy):
    """A scripted strategy whose requests take *latency* seconds of the runner's clock each
    (a function of the request's stage): Flex answers may take minutes."""

    def __init__(self, *args: Any, latency: Callable[[str], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._latency = latency

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        await ctx.clock.sleep(self._latency(request.stage.name))
        return await super().generate(request, ctx)


async def run_one(
    plan: sr.Plan, script: list[Any], strategy: ScriptedStrategy | None = None
) -> tuple[sr.ItemResult, sr.BatchResult[Any], ScriptedStrategy, VirtualClock]:
    strategy = strategy if strategy is not None else ScriptedStrategy({ITEM: script})
    clock = VirtualClock()
    runner = sr.Runner(
        plan, strategy, validator=strategy.validator(), clock=clock, concurrency=1, seed=0
    )
    batch = await runner.run([sr.WorkItem(ITEM, "Describe the book.")])
    (result,) = batch.results
    return result, batch, strategy, clock


def path(result: sr.ItemResult) -> list[tuple[str, K, bool]]:
    return [(a.stage, a.outcome, a.counted) for a in result.attempts]


# -- the plan: keys, files, checks ---------------------------------------------------------


def test_the_recipe_reads_the_same_from_toml_yaml_and_plain_data(tmp_path: Path) -> None:
    (tmp_path / "flex.toml").write_text(FLEX_TOML, encoding="utf-8")
    (tmp_path / "flex.yaml").write_text(FLEX_YAML, encoding="utf-8")

    assert sr.Plan.load(tmp_path / "flex.toml") == FLEX
    assert sr.Plan.load(tmp_path / "flex.yaml") == FLEX
    assert sr.Plan.from_dict(FLEX.to_dict()) == FLEX


def test_to_dict_writes_the_new_keys_only_when_declared() -> None:
    flex, std, _ = FLEX.to_dict()["stages"]

    assert flex["on"] == {
        "invalid": "next",
        "transient": "retry",
        "shed": "full_std",
        "give_up": "full_std",
    }
    assert flex["expedite"] == {"within": 120.0, "to": "full_std"}
    # A plan without them writes what it wrote before.
    assert std["on"] == {"invalid": "next", "transient": "retry"}
    assert "expedite" not in std


def test_the_machine_declares_the_fallback_edges() -> None:
    edges = {(e.trigger, e.source): e.dest for e in declared_edges(FLEX)}

    assert edges[Trigger.SHED, "full_flex"] == "full_std"
    assert edges[Trigger.GIVE_UP, "full_flex"] == "full_std"
    assert edges[Trigger.EXPEDITE, "full_flex"] == "full_std"
    # The defaults: a shed stays (dest None), giving up follows on.invalid, no expedite.
    assert edges[Trigger.SHED, "full_std"] is None
    assert edges[Trigger.GIVE_UP, "full_std"] == "partial_std"
    assert (Trigger.EXPEDITE, "full_std") not in edges
    assert "    full_flex --> full_std: invalid, give_up, shed, expedite" in FLEX.to_mermaid()


def test_a_stage_reached_only_by_a_fallback_is_reachable() -> None:
    plan = sr.Plan(
        [
            sr.Stage("flex", on_invalid="fail", on_shed="std", expedite=sr.Expedite(9, "hurried")),
            sr.Stage("std", on_invalid="fail", max_attempts=1, on_give_up="late"),
            sr.Stage("late", on_invalid="fail"),
            sr.Stage("hurried", on_invalid="fail"),
        ],
        deadline=60,
    )
    assert [s.name for s in plan.stages] == ["flex", "std", "late", "hurried"]


def test_unreachable_without_the_fallback() -> None:
    with pytest.raises(sr.PlanError, match=r"^plan\.stages\[1\]: stage 'std' is unreachable"):
        sr.Plan([sr.Stage("flex", on_invalid="fail"), sr.Stage("std")])


def flex_dict(change: Callable[[dict[str, Any]], object]) -> dict[str, Any]:
    data = FLEX.to_dict()
    change(data)
    return data


def stage0(**values: Any) -> Callable[[dict[str, Any]], object]:
    return lambda d: d["stages"][0].update(values)


def on0(**values: Any) -> Callable[[dict[str, Any]], object]:
    return lambda d: d["stages"][0]["on"].update(values)


KNOWN = "known: full_flex, full_std, partial_std"
BAD = [
    (
        on0(shed="full_stdd"),
        f"plan.stages[0].on.shed: unknown stage 'full_stdd' ({KNOWN}; "
        "or retry, next, fail, exhaust)",
    ),
    (on0(shed=3), "plan.stages[0].on.shed: expected a string, got the number 3"),
    (
        on0(give_up="retry"),
        f"plan.stages[0].on.give_up: unknown stage 'retry' ({KNOWN}; or next, fail, exhaust)",
    ),
    (
        on0(give_up="full_flex"),
        "plan.stages[0].on.give_up: 'full_flex' is the stage itself: a stage that gives up leaves",
    ),
    (
        lambda d: d["stages"][1]["on"].update(give_up="next"),
        "plan.stages[1].on.give_up: needs the stage's max_attempts "
        "(without it the stage never gives up)",
    ),
    (
        stage0(expedite={"within": 120, "to": "full_stdd"}),
        f"plan.stages[0].expedite.to: unknown stage 'full_stdd' ({KNOWN})",
    ),
    (
        stage0(expedite={"within": 120, "to": "full_flex"}),
        "plan.stages[0].expedite.to: 'full_flex' is the stage itself",
    ),
    (
        stage0(expedite={"within": 901, "to": "full_std"}),
        "plan.stages[0].expedite.within: must be at most the plan's deadline (900 seconds), "
        "got 901",
    ),
    (
        stage0(expedite={"within": 0, "to": "full_std"}),
        "plan.stages[0].expedite.within: must be a positive number of seconds, got 0",
    ),
    (
        stage0(expedite={"within": "2m", "to": "full_std"}),
        "plan.stages[0].expedite.within: expected a number of seconds, got the string '2m'",
    ),
    (
        stage0(expedite={"to": "full_std"}),
        "plan.stages[0].expedite.within: missing (expedite needs within and to)",
    ),
    (
        stage0(expedite={"within": 60, "to": "full_std", "tier": "priority"}),
        "plan.stages[0].expedite.tier: unknown key (allowed: within, to)",
    ),
    (
        stage0(expedite="full_std"),
        "plan.stages[0].expedite: expected a table, got the string 'full_std'",
    ),
    (
        lambda d: d.pop("deadline"),
        "plan.stages[0].expedite: needs the plan's deadline "
        "(expedite acts as the item's deadline nears)",
    ),
    (
        lambda d: d["stages"][1].update(expedite={"within": 60, "to": "full_flex"}),
        "plan.stages[0].expedite.to: expedite moves form a cycle "
        "(full_flex -> full_std -> full_flex): an item there would never send a request",
    ),
]


@pytest.mark.parametrize(("change", "message"), BAD)
def test_a_mistake_is_one_sentence_naming_its_path(
    change: Callable[[dict[str, Any]], object], message: str
) -> None:
    with pytest.raises(sr.PlanError) as caught:
        sr.Plan.from_dict(flex_dict(change))

    assert str(caught.value) == message
    assert caught.value.path == message.split(": ", 1)[0]


@pytest.mark.parametrize(("change", "message"), BAD[:2] + BAD[3:5])
def test_a_mistake_in_a_file_names_the_file(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    import yaml

    (tmp_path / "flex.yaml").write_text(yaml.safe_dump({"plan": flex_dict(change)}))
    with pytest.raises(sr.PlanError) as caught:
        sr.Plan.load(tmp_path / "flex.yaml")

    assert str(caught.value) == f"flex.yaml: {message}"


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        (
            attrs.evolve(FLEX.stages[0], on_shed="std"),
            f"plan.stages[0].on.shed: unknown stage 'std' ({KNOWN}; or retry, next, fail, exhaust)",
        ),
        (
            attrs.evolve(FLEX.stages[0], on_give_up=["full_std"]),
            f"plan.stages[0].on.give_up: unknown stage a list ({KNOWN}; or next, fail, exhaust)",
        ),
        (
            attrs.evolve(FLEX.stages[0], expedite=sr.Expedite(math.nan, "full_std")),
            "plan.stages[0].expedite.within: must be a positive number of seconds, got nan",
        ),
        (
            attrs.evolve(FLEX.stages[0], expedite=("full_std", 120)),
            "plan.stages[0].expedite: expected an Expedite, got a list",
        ),
    ],
)
def test_a_plan_built_in_code_gets_the_same_checks(stage: sr.Stage, message: str) -> None:
    with pytest.raises(sr.PlanError) as caught:
        attrs.evolve(FLEX, stages=(stage, *FLEX.stages[1:]))

    assert str(caught.value).startswith(message)


# -- the policy ----------------------------------------------------------------------------


def at(plan: sr.Plan, index: int, *, started: float = 0.0) -> sr.ItemState:
    return sr.ItemState(sr.WorkItem(ITEM, "p"), plan.stages[index].name, len(plan.stages), started)


def test_a_shed_with_a_fallback_moves_at_once_and_spends_no_prompt() -> None:
    state = at(FLEX, 0)
    outcome = sr.Outcome(K.SHED, "flex shed", retry_after=30.0)

    assert count(state, 0, outcome) is False
    assert (state.prompts, state.attempts_at[0], state.rate_limit_waits) == (0, 0, 1)
    # No wait: the fallback stage is tried at once; nobody else pauses either.
    decision = decide(state, 0, FLEX, outcome)
    assert (decision.trigger, decision.wait, decision.pause_all) == (Trigger.SHED, 0.0, False)


def test_a_shed_without_a_fallback_stays_after_the_servers_delay() -> None:
    state = at(FLEX, 1)
    outcome = sr.Outcome(K.SHED, "flex shed", retry_after=30.0)
    count(state, 1, outcome)

    decision = decide(state, 1, FLEX, outcome)
    assert (decision.trigger, decision.wait, decision.jitter, decision.pause_all) == (
        Trigger.SHED,
        30.0,
        False,
        False,
    )


def test_sheds_count_against_the_refusal_cap_even_with_a_fallback() -> None:
    plan = attrs.evolve(FLEX, max_rate_limit_waits=1)
    state = at(plan, 0)
    state.rate_limit_waits = 1
    outcome = sr.Outcome(K.SHED)
    count(state, 0, outcome)

    decision = decide(state, 0, plan, outcome)
    assert (decision.trigger, decision.reason) == (Trigger.ABORT, "shed 2 times")


def test_a_stage_gives_up_to_its_own_target() -> None:
    state = at(FLEX, 0)
    state.attempts_at[0] = 2
    decision = decide(state, 0, FLEX, sr.Outcome(K.TRANSIENT))

    assert decision.trigger is Trigger.GIVE_UP
    assert decision.wait == 0.0  # moving on is not a retry


@pytest.mark.parametrize(
    ("now", "expected"),
    [(0.0, None), (779.9, None), (780.0, EXPEDITE), (899.0, EXPEDITE)],
)
def test_expedite_fires_within_its_window_of_the_deadline(now: float, expected: Any) -> None:
    state = at(FLEX, 0)
    assert before_request(state, FLEX, now, 0) == expected
    assert before_request(state, FLEX, now) == expected  # the stage found by its name
    # The budget and a passed deadline come first.
    assert before_request(state, FLEX, 900.0, 0) is not None
    assert before_request(state, FLEX, 900.0, 0).trigger is Trigger.EXHAUST  # type: ignore[union-attr]
    assert before_request(at(FLEX, 1), FLEX, now, 1) is None  # full_std has none


# -- the engine, scripted --------------------------------------------------------------------


async def test_a_shed_flex_request_falls_back_to_standard_without_paying() -> None:
    result, batch, strategy, clock = await run_one(FLEX, [ScriptStep(K.SHED, retry_after=60.0)])

    assert result.status is sr.ItemStatus.SUCCEEDED
    assert path(result) == [("full_flex", K.SHED, False), ("full_std", K.SUCCEEDED, True)]
    assert result.prompts == 1
    assert [r.params["service_tier"] for r in strategy.requests] == ["flex", "standard"]
    assert batch.transitions["shed"] == 1
    assert clock.monotonic() == 0.0  # the fallback does not wait out the server's delay
    assert result.attempts[0].usage == sr.Usage()  # a shed is never billed


async def test_a_flex_stage_that_spends_its_attempts_gives_up_to_standard() -> None:
    # on.invalid still leads to the next stage; giving up leads to the declared one.
    plan = sr.Plan(
        [
            attrs.evolve(FLEX.stages[0], expedite=None, on_give_up="full_std"),
            sr.Stage("partial_flex", "partial", {"service_tier": "flex"}),
            FLEX.stages[1],
        ],
        max_prompts=4,
    )
    result, batch, _, _ = await run_one(plan, [K.TRANSIENT, K.TRANSIENT])

    assert path(result) == [
        ("full_flex", K.TRANSIENT, True),
        ("full_flex", K.TRANSIENT, True),
        ("full_std", K.SUCCEEDED, True),
    ]
    assert batch.transitions["give_up"] == 1
    assert "skip" not in batch.transitions  # partial_flex was not on the way

    # Without on.give_up the same stage follows on.invalid, as before.
    default = attrs.evolve(
        plan, stages=(attrs.evolve(plan.stages[0], on_give_up=None), *plan.stages[1:])
    )
    result, batch, _, _ = await run_one(default, [K.TRANSIENT, K.TRANSIENT])
    assert [a.stage for a in result.attempts] == ["full_flex", "full_flex", "full_std"]
    assert batch.transitions["skip"] == 1  # through partial_flex, with nothing to repair


async def test_an_item_near_its_deadline_expedites_to_standard() -> None:
    # A Flex request that takes 13 minutes to fail leaves two minutes: the retry goes to
    # Standard, without another request at Flex.
    strategy = SlowStrategy(
        {ITEM: [K.TRANSIENT]}, latency=lambda stage: 780.0 if stage == "full_flex" else 5.0
    )
    result, batch, _, clock = await run_one(FLEX, [], strategy)

    assert result.status is sr.ItemStatus.SUCCEEDED
    assert path(result) == [("full_flex", K.TRANSIENT, True), ("full_std", K.SUCCEEDED, True)]
    assert batch.transitions["expedite"] == 1
    assert 785.0 <= clock.monotonic() < 786.0  # the 0.5 s backoff at most, then Standard

    # With time to spare, the retry stays on Flex.
    strategy = SlowStrategy(
        {ITEM: [K.TRANSIENT]}, latency=lambda stage: 600.0 if stage == "full_flex" else 5.0
    )
    result, batch, _, _ = await run_one(FLEX, [], strategy)
    assert [a.stage for a in result.attempts] == ["full_flex", "full_flex"]
    assert "expedite" not in batch.transitions


async def test_the_report_draws_sheds_and_expedites_on_their_arrows() -> None:
    from stagedretry.cli.report import traffic

    shed, _, _, _ = await run_one(FLEX, [K.SHED])
    strategy = SlowStrategy(
        {ITEM: [K.TRANSIENT]}, latency=lambda stage: 780.0 if stage == "full_flex" else 5.0
    )
    hurried, _, _, _ = await run_one(FLEX, [], strategy)

    arrows = {(t.source, t.dest): t for t in traffic([shed, hurried], FLEX).transitions}
    fallback = arrows["full_flex", "full_std"]
    assert fallback.triggers == ("invalid", "give_up", "shed", "expedite")
    assert dict(fallback.causes) == {"shed": 1, "expedite": 1}
    assert fallback.items == 2
    assert fallback.prompts == 0  # neither move spent a prompt


async def test_a_window_as_long_as_the_deadline_never_uses_flex() -> None:
    plan = attrs.evolve(
        FLEX,
        stages=(
            attrs.evolve(FLEX.stages[0], expedite=sr.Expedite(900.0, "full_std")),
            *FLEX.stages[1:],
        ),
    )
    result, batch, strategy, _ = await run_one(plan, [])

    assert path(result) == [("full_std", K.SUCCEEDED, True)]
    assert [r.params["service_tier"] for r in strategy.requests] == ["standard"]
    assert batch.transitions["expedite"] == 1


async def test_a_passed_deadline_still_exhausts_rather_than_expedite() -> None:
    strategy = SlowStrategy({ITEM: [K.TRANSIENT]}, latency=lambda stage: 950.0)
    result, _, _, _ = await run_one(FLEX, [], strategy)

    assert result.status is sr.ItemStatus.EXHAUSTED
    assert result.reason == "deadline passed"
    assert [a.stage for a in result.attempts] == ["full_flex"]


# -- the engine against the reference model --------------------------------------------------

# Sheds drawn often, so that fallbacks, their cycles and the refusal cap are all reached.
SHEDDY = (
    *[K.SHED] * 3,
    *[K.INVALID] * 2,
    *[K.TRANSIENT] * 2,
    K.RATE_LIMITED,
    K.RESOURCE_LOST,
    K.SUCCEEDED,
    K.FATAL,
)


@settings(max_examples=100)
@given(
    plan=plans(min_stages=2, min_prompts=2, deadlines=False),
    script=st.lists(outcomes(outcomes=SHEDDY), max_size=16).map(tuple),
)
async def test_the_engine_takes_the_reference_path_through_sheds_and_give_ups(
    plan: sr.Plan, script: tuple[ScriptStep, ...]
) -> None:
    result, _, strategy, _ = await run_one(plan, list(script))
    expected = expected_path(plan, script)

    assert expected.differences(result) == []
    assert strategy.played(ITEM) == expected.steps_used
    # A shed never spends a prompt, whatever the plan does with it.
    assert not any(a.counted for a in result.attempts if a.outcome is K.SHED)
    assert result.prompts == sum(a.counted for a in result.attempts) <= plan.max_prompts


# The outcomes of the timed check: every wait they cause is the server's own delay (no
# jitter), so the model can add up the time; TRANSIENT (a jittered backoff) is left out.
TIMED = (
    *[K.SHED] * 2,
    *[K.INVALID] * 3,
    K.RATE_LIMITED,
    K.RESOURCE_LOST,
    K.SUCCEEDED,
    K.FATAL,
)
DEADLINE = 1000.0


def advised(step: ScriptStep, delay: float) -> ScriptStep:
    if step.kind in (K.SHED, K.RATE_LIMITED):
        return attrs.evolve(step, retry_after=delay)
    return step


@st.composite
def timed_cases(draw: st.DrawFn) -> tuple[sr.Plan, tuple[ScriptStep, ...], tuple[float, ...]]:
    plan = draw(plans(min_stages=2, deadlines=False, transient_policies=False))
    # A deadline, and windows anywhere in it: some stages expedite at once, some later.
    stages = list(plan.stages)
    for i in range(len(stages) - 1):
        if draw(st.booleans()):
            within = draw(st.sampled_from((DEADLINE, 1.0)) | st.floats(1.0, DEADLINE))
            to = stages[draw(st.integers(i + 1, len(stages) - 1))].name
            stages[i] = attrs.evolve(stages[i], expedite=sr.Expedite(within, to))
    plan = attrs.evolve(
        plan,
        stages=[attrs.evolve(s, timeout=None) for s in stages],
        timeout=None,
        deadline=DEADLINE,
    )
    # At most 16 steps of at most 30 s each, plus the server's delays: never the deadline.
    steps = draw(st.lists(outcomes(outcomes=TIMED), max_size=15))
    delays = draw(st.lists(st.floats(0.0, 25.0), min_size=len(steps), max_size=len(steps)))
    script = tuple(advised(s, d) for s, d in zip(steps, delays, strict=True))
    latency = tuple(draw(st.lists(st.floats(0.0, 30.0), min_size=16, max_size=16)))
    return plan, script, latency


class Timed(SlowStrategy):
    """Request *n* of the item takes ``latency[n]`` seconds."""

    def __init__(self, script: tuple[ScriptStep, ...], latency: tuple[float, ...]) -> None:
        self.sent = 0
        super().__init__({ITEM: script}, latency=self._next)
        self._times = latency

    def _next(self, stage: str) -> float:
        self.sent += 1
        return self._times[self.sent - 1]


def reference_with_time(
    plan: sr.Plan, script: tuple[ScriptStep, ...], latency: tuple[float, ...]
) -> ReferenceItem:
    """The reference model fed the time the engine's clock shows at each check.

    Each request takes its latency; then the item waits the server's delay if a shed keeps
    it on its stage, while a 429's delay is a cooldown that holds the next request back;
    the checks are made again after it (a deadline or an expedite's window it reached).
    """
    now = [0.0]
    item = ReferenceItem(plan, elapsed=lambda: now[0])
    steps = iter(script)
    for n in range(len(latency)):
        if item.done:
            break
        step = next(steps, ScriptStep(K.SUCCEEDED))
        stage = item.stage
        assert stage is not None
        now[0] += latency[n]
        delay = step.retry_after or 0.0
        waits = item.rate_limit_waits + (step.kind in (K.SHED, K.RATE_LIMITED))
        if waits <= plan.max_rate_limit_waits:
            waited = step.kind is K.RATE_LIMITED or (
                step.kind is K.SHED and stage.on_shed in ("retry", stage.name)
            )
            if waited:
                now[0] += min(delay, plan.rate_limit_backoff.maximum)
        item.play(step)
    assert item.done
    return item


@settings(max_examples=100)
@given(case=timed_cases())
async def test_the_engine_and_the_reference_agree_on_expedites_in_time(
    case: tuple[sr.Plan, tuple[ScriptStep, ...], tuple[float, ...]],
) -> None:
    plan, script, latency = case
    result, _, _, _ = await run_one(plan, [], Timed(script, latency))
    model = reference_with_time(plan, script, latency)

    assert model.path().differences(result) == []


def test_check_plan_follows_the_fallbacks() -> None:
    result = check_plan(FLEX, max_examples=40)
    # Every stage is reached, full_std also through sheds and give-ups.
    assert result.unreached == ()


def test_check_plan_keeps_an_expedite_that_fires_from_the_start() -> None:
    always = attrs.evolve(
        FLEX,
        stages=(
            attrs.evolve(FLEX.stages[0], expedite=sr.Expedite(900.0, "full_std")),
            *FLEX.stages[1:],
        ),
    )
    result = check_plan(always, max_examples=20)
    assert result.unreached == ("full_flex",)  # never sent to: it expedites at once
    # A reference that forgot the expedite is caught.
    with pytest.raises(AssertionError, match="full_flex"):
        check_plan(
            always,
            reference=attrs.evolve(
                FLEX,
                deadline=None,
                stages=(attrs.evolve(FLEX.stages[0], expedite=None), *FLEX.stages[1:]),
            ),
            max_examples=20,
        )


def test_check_plan_finds_a_fallback_that_went_elsewhere() -> None:
    meant = FLEX
    wrong = attrs.evolve(
        FLEX, stages=(attrs.evolve(FLEX.stages[0], on_shed="partial_std"), *FLEX.stages[1:])
    )
    with pytest.raises(AssertionError, match="SHED"):
        check_plan(wrong, reference=meant, max_examples=100)


def test_the_reference_expedites_a_stage_whose_window_is_the_whole_deadline() -> None:
    plan = attrs.evolve(
        FLEX,
        stages=(
            attrs.evolve(FLEX.stages[0], expedite=sr.Expedite(900.0, "full_std")),
            *FLEX.stages[1:],
        ),
    )
    expected = expected_path(plan, [K.SUCCEEDED])

    assert expected.stages == ("full_std",)
    assert expected.expedited == ("full_flex",)
    # A narrower window is not reached when no time passes, unless told the time.
    assert expected_path(FLEX, [K.SUCCEEDED]).stages == ("full_flex",)
    late = expected_path(FLEX, [K.TRANSIENT], elapsed=lambda played: 800.0 * played)
    assert late.stages == ("full_flex", "full_std")
    assert late.expedited == ("full_flex",)
