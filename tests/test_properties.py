"""Property-based tests of the engine against the pure reference model of a plan.

For random valid plans and random scripts of outcomes, the real ``Runner`` must
take exactly the path the reference model takes (``stagedretry.testing.expected_path``).
The narrower properties below check the documented rules directly on the
engine's results, without the reference, so a bug shared by both would still show.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry import OutcomeKind
from stagedretry.testing import (
    ScriptedStrategy,
    ScriptStep,
    VirtualClock,
    expected_path,
    outcome_scripts,
    outcomes,
    plans,
)

ITEM = "item"

# Outcomes that keep an item going are drawn more often than the two that end it
# at once (SUCCEEDED, FATAL), so that paths get long enough to reach partial
# stages, attempt caps, budgets and caps on refusals.
BUSY = (
    *[OutcomeKind.INVALID] * 3,
    *[OutcomeKind.TRANSIENT] * 2,
    OutcomeKind.RATE_LIMITED,
    *[OutcomeKind.RESOURCE_LOST] * 2,
    OutcomeKind.SUCCEEDED,
    OutcomeKind.FATAL,
)
busy_scripts = st.lists(outcomes(outcomes=BUSY), min_size=1, max_size=16).map(tuple)
roomy_plans = plans(min_stages=2, min_prompts=3, deadlines=False)


async def run_one(
    plan: sr.Plan, script: tuple[ScriptStep, ...]
) -> tuple[sr.ItemResult, ScriptedStrategy]:
    strategy = ScriptedStrategy({ITEM: script})
    runner = sr.Runner(
        plan, strategy, validator=strategy.validator(), clock=VirtualClock(), concurrency=1, seed=0
    )
    batch = await runner.run([sr.WorkItem(ITEM, "Describe the book.")])
    (result,) = batch.results
    return result, strategy


@settings(max_examples=250)
@given(plan=roomy_plans, script=busy_scripts)
async def test_engine_takes_the_reference_path(
    plan: sr.Plan, script: tuple[ScriptStep, ...]
) -> None:
    await check_against_reference(plan, script)


@settings(max_examples=100)
@given(plan=plans(deadlines=False), script=outcome_scripts(max_len=14))
async def test_engine_takes_the_reference_path_on_any_plan(
    plan: sr.Plan, script: tuple[ScriptStep, ...]
) -> None:
    await check_against_reference(plan, script)


async def check_against_reference(plan: sr.Plan, script: tuple[ScriptStep, ...]) -> None:
    result, strategy = await run_one(plan, script)
    expected = expected_path(plan, script)
    assert expected.differences(result) == []
    assert result.prompts <= plan.max_prompts
    assert strategy.played(ITEM) == expected.steps_used
    assert [r.fields for r in strategy.requests] == list(expected.fields)


@settings(max_examples=60)
@given(
    plan=roomy_plans,
    scripts=st.lists(busy_scripts, min_size=2, max_size=6),
)
async def test_concurrent_items_each_follow_their_own_path(
    plan: sr.Plan, scripts: list[tuple[ScriptStep, ...]]
) -> None:
    strategy = ScriptedStrategy({f"i{n}": s for n, s in enumerate(scripts)})
    runner = sr.Runner(
        plan, strategy, validator=strategy.validator(), clock=VirtualClock(), concurrency=3, seed=1
    )
    batch = await runner.run([sr.WorkItem(f"i{n}", "p") for n in range(len(scripts))])
    by_id = {r.id: r for r in batch.results}
    for n, script in enumerate(scripts):
        expected_path(plan, script).check(by_id[f"i{n}"])
    assert batch.prompts == sum(r.prompts for r in batch.results)
    assert all(r.prompts <= plan.max_prompts for r in batch.results)


@settings(max_examples=100)
@given(
    plan=plans(deadlines=False), script=st.lists(outcomes(outcomes=BUSY), max_size=30).map(tuple)
)
async def test_prompts_never_exceed_the_budget(
    plan: sr.Plan, script: tuple[ScriptStep, ...]
) -> None:
    # Long scripts with a non-terminating default: every item must still end, within budget.
    strategy = ScriptedStrategy({ITEM: script}, default=OutcomeKind.TRANSIENT)
    runner = sr.Runner(plan, strategy, clock=VirtualClock(), concurrency=1)
    (result,) = (await runner.run([(ITEM, "p")])).results
    assert result.prompts <= plan.max_prompts
    assert result.prompts == sum(a.counted for a in result.attempts)
    assert result.status is not sr.ItemStatus.CANCELLED


@settings(max_examples=100)
@given(
    plan=plans(min_stages=2, min_prompts=3, deadlines=False, transient_policies=False),
    script=busy_scripts,
)
async def test_transient_never_changes_the_stage_by_default(
    plan: sr.Plan, script: tuple[ScriptStep, ...]
) -> None:
    result, _ = await run_one(plan, script)
    attempts = result.attempts
    for before, after in itertools.pairwise(attempts):
        if before.outcome is OutcomeKind.TRANSIENT:
            assert after.stage == before.stage
    if attempts and attempts[-1].outcome is OutcomeKind.TRANSIENT:
        # The last request failed transiently and nothing followed: only the budget ends that.
        assert result.status is sr.ItemStatus.EXHAUSTED
        assert result.prompts == plan.max_prompts


REFUSALS = (
    OutcomeKind.RATE_LIMITED,
    *[OutcomeKind.RESOURCE_LOST] * 2,
    *[OutcomeKind.TRANSIENT] * 2,
)


@settings(max_examples=150)
@given(
    plan=plans(deadlines=False, max_prompts=12),
    script=st.lists(outcomes(outcomes=REFUSALS), min_size=2, max_size=24).map(tuple),
)
async def test_refusals_spend_nothing_and_have_caps_of_their_own(
    plan: sr.Plan, script: tuple[ScriptStep, ...]
) -> None:
    result, _ = await run_one(plan, script)
    expected_path(plan, script).check(result)
    attempts = result.attempts
    kinds = [a.outcome for a in attempts]
    assert result.prompts == sum(k in (OutcomeKind.TRANSIENT, OutcomeKind.SUCCEEDED) for k in kinds)
    # Losses since the last served request: a rate-limit refusal does not break the row.
    served = [i for i, a in enumerate(attempts) if a.counted]
    since = kinds[served[-1] + 1 :] if served else kinds
    lost_in_row = since.count(OutcomeKind.RESOURCE_LOST)
    rate_limits = kinds.count(OutcomeKind.RATE_LIMITED)
    if result.status is sr.ItemStatus.FAILED and kinds[-1] is OutcomeKind.RESOURCE_LOST:
        assert lost_in_row == plan.max_resource_lost + 1  # a row too long, whatever came before
    elif result.status is sr.ItemStatus.FAILED and kinds[-1] is OutcomeKind.RATE_LIMITED:
        assert rate_limits == plan.max_rate_limit_waits + 1  # all refusals in total, not a run


def _declared(plan: sr.Plan, stage: str) -> str:
    """Where an INVALID at *stage* leads, straight from the plan's declaration."""
    names = [s.name for s in plan.stages]
    index = names.index(stage)
    target = plan.stages[index].on_invalid
    if target == "next":
        return names[index + 1] if index + 1 < len(names) else "exhausted"
    return {"fail": "failed", "exhaust": "exhausted"}.get(target, target)


@settings(max_examples=100)
@given(
    plan=roomy_plans,
    script=st.lists(
        outcomes(outcomes=(OutcomeKind.INVALID, OutcomeKind.INVALID, OutcomeKind.SUCCEEDED)).filter(
            lambda s: s.kind is OutcomeKind.SUCCEEDED or bool(s.fields)
        ),
        max_size=10,
    ).map(tuple),
)
async def test_invalid_moves_exactly_as_declared(
    plan: sr.Plan, script: tuple[ScriptStep, ...]
) -> None:
    # Every INVALID here names fields, so a partial target always has something to repair.
    result, _ = await run_one(plan, script)
    attempts = result.attempts
    for n, attempt in enumerate(attempts):
        if attempt.outcome is not OutcomeKind.INVALID:
            continue
        target = _declared(plan, attempt.stage)
        if n + 1 < len(attempts):
            assert attempts[n + 1].stage == target
        elif target == "failed":
            assert result.status is sr.ItemStatus.FAILED
        else:
            # Past the last stage, or the budget is spent before the target's request.
            assert result.status is sr.ItemStatus.EXHAUSTED
            assert target == "exhausted" or result.prompts == plan.max_prompts


@settings(max_examples=100)
@given(plan=plans(deadlines=False), script=busy_scripts)
async def test_terminal_states_absorb(plan: sr.Plan, script: tuple[ScriptStep, ...]) -> None:
    result, strategy = await run_one(plan, script)
    # Nothing is asked after the item ends: one request per attempt, the rest unplayed.
    assert len(strategy.requests_for(ITEM)) == len(result.attempts)
    assert strategy.played(ITEM) == len(result.attempts)
    last = result.attempts[-1].outcome if result.attempts else None
    if result.status is sr.ItemStatus.SUCCEEDED:
        assert last is OutcomeKind.SUCCEEDED
        assert result.output == dict(strategy.answer)
    else:
        assert OutcomeKind.SUCCEEDED not in [a.outcome for a in result.attempts]
    if last is OutcomeKind.FATAL:
        assert result.status is sr.ItemStatus.FAILED
