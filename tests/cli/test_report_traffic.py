"""The report's traffic against the engine itself: random plans, random outcomes, real runs.

Every move an item made must be explained by the plan's declared machine (no
observed arrow), items are conserved at every state (as many passes in as out),
and the totals are the results' own: prompts, attempts, statuses, successes.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry import OutcomeKind
from stagedretry.cli.report import traffic
from stagedretry.cli.report._traffic import START
from stagedretry.testing import (
    ScriptedStrategy,
    ScriptStep,
    VirtualClock,
    expected_path,
    outcomes,
    plans,
)

BUSY = (
    *[OutcomeKind.INVALID] * 3,
    *[OutcomeKind.TRANSIENT] * 2,
    OutcomeKind.RATE_LIMITED,
    *[OutcomeKind.RESOURCE_LOST] * 2,
    OutcomeKind.SHED,
    OutcomeKind.SUCCEEDED,
    OutcomeKind.FATAL,
)
scripts = st.lists(outcomes(outcomes=BUSY), min_size=1, max_size=14).map(tuple)
# The events each cause may fire: an attempt's outcome, or an event that sends nothing.
FIRES = {
    "succeeded": {"succeed"},
    "invalid": {"invalid"},
    "transient": {"transient", "give_up"},
    "rate_limited": {"rate_limited", "abort"},
    "resource_lost": {"resource_lost", "abort"},
    "fatal": {"fatal"},
    "shed": {"shed", "abort"},
    "skip": {"skip"},
    "expedite": {"expedite"},
    "exhaust": {"exhaust"},
}


async def _run(plan: sr.Plan, items: list[tuple[ScriptStep, ...]]) -> list[sr.ItemResult]:
    strategy = ScriptedStrategy({f"i{n}": s for n, s in enumerate(items)})
    runner = sr.Runner(
        plan, strategy, validator=strategy.validator(), clock=VirtualClock(), concurrency=2, seed=0
    )
    batch = await runner.run([sr.WorkItem(f"i{n}", "p") for n in range(len(items))])
    return list(batch.results)


@settings(max_examples=120)
@given(plan=plans(deadlines=False), items=st.lists(scripts, min_size=1, max_size=5))
async def test_every_move_is_a_declared_transition_and_items_are_conserved(
    plan: sr.Plan, items: list[tuple[ScriptStep, ...]]
) -> None:
    results = await _run(plan, items)
    counted = traffic(results, plan)
    taken = [t for t in counted.transitions if t.passes]
    assert [t for t in taken if not t.declared] == []
    for t in taken:
        if t.source != START:  # each cause fires an event the plan declares for this arrow
            assert {c for c in t.causes if not FIRES[c] & set(t.triggers)} == set(), t
    # Conservation: every pass into a stage leaves it again; terminal states hold the items.
    into: Counter[str] = Counter()
    out_of: Counter[str] = Counter()
    for t in taken:
        into[t.dest] += t.passes
        out_of[t.source] += t.passes
    for stage in plan.stages:
        assert into[stage.name] == out_of[stage.name], stage.name
    statuses = Counter(r.status.value for r in results)
    for status, count in statuses.items():
        assert into[status] == count
    assert out_of[START] == len(results)
    # The totals are the results' own.
    assert counted.prompts == sum(r.prompts for r in results)
    assert sum(t.prompts for t in counted.transitions) == counted.prompts
    assert counted.attempts == sum(len(r.attempts) for r in results)
    assert sum(s.attempts for s in counted.stages) == counted.attempts
    assert sum(s.succeeded for s in counted.stages) == statuses["succeeded"]
    assert dict(counted.statuses) == dict(statuses)


@settings(max_examples=120)
@given(plan=plans(deadlines=False), script=scripts)
async def test_skipped_stages_are_the_reference_model_s(
    plan: sr.Plan, script: tuple[ScriptStep, ...]
) -> None:
    (result,) = await _run(plan, [script])
    counted = traffic([result], plan)
    skipped: Counter[str] = Counter()
    for t in counted.transitions:
        skipped[t.source] += t.causes.get("skip", 0)
    assert +skipped == Counter(expected_path(plan, script).skipped)


def test_without_a_plan_the_stages_are_drawn_as_the_attempts_show_them() -> None:
    first = sr.Attempt("draft", OutcomeKind.INVALID, 1, True)
    second = sr.Attempt("repair", OutcomeKind.SUCCEEDED, 1, True)
    results = [
        sr.ItemResult("a", sr.ItemStatus.SUCCEEDED, prompts=2, attempts=(first, second)),
        sr.ItemResult("b", sr.ItemStatus.FAILED, reason="input_error: no title"),
    ]
    counted = traffic(results, None)
    assert [s.name for s in counted.stages] == ["draft", "repair"]
    pairs = {(t.source, t.dest): t for t in counted.transitions}
    assert pairs[("draft", "repair")].prompts == 1
    assert pairs[("repair", "succeeded")].items == 1
    assert pairs[(START, "failed")].causes == {"no request": 1}
    assert counted.prompts == 2
