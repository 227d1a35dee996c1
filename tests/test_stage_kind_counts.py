"""What a per-item counter in scratch counts: a custom kind's build() runs once per attempt
(transient retries and 429 refusals included), while ``state.prompts`` counts the budget."""

from __future__ import annotations

import asyncio

import attrs
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry.testing import ScriptedStrategy, VirtualClock

K = sr.OutcomeKind


@attrs.define
class Builds:
    count: int = 0
    seen: list[tuple[int, int]] = attrs.Factory(list)
    """(state.prompts, len(state.attempts)) at each build."""


class CountingStage:
    def __init__(self) -> None:
        self.last: Builds | None = None

    def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request:
        builds = state.scratch.get(Builds) or Builds()
        builds.count += 1
        builds.seen.append((state.prompts, len(state.attempts)))
        state.scratch.put(builds)
        self.last = builds
        return sr.Request(item.id, stage, item.prompt)

    def parse(self, response: sr.Response, state: sr.ItemState, validator: sr.Validator) -> object:
        return validator(response.text or "")


def run(script: list[sr.OutcomeKind], max_prompts: int) -> tuple[sr.ItemResult, Builds, list[int]]:
    kind = CountingStage()
    strategy = ScriptedStrategy({"x": script})
    plan = sr.Plan(
        stages=[sr.Stage("one", "counting"), sr.Stage("two", "counting")],
        max_prompts=max_prompts,
    )
    runner = sr.Runner(
        plan,
        strategy,
        validator=strategy.validator(),
        kinds={**sr.builtin_kinds(), "counting": kind},
        clock=VirtualClock(),
    )
    result = asyncio.run(runner.run([("x", "p")])).results[0]
    assert kind.last is not None
    return result, kind.last, [r.attempt for r in strategy.requests_for("x")]


def test_the_documented_counts() -> None:
    """docs/how-to/custom-stage-kind.md: a 429, a timeout, then an answer."""
    result, builds, ctx_attempts = run([K.RATE_LIMITED, K.TRANSIENT], max_prompts=3)

    assert result.ok
    assert builds.count == 3
    assert builds.seen == [(0, 0), (0, 1), (1, 2)]
    assert (result.prompts, len(result.attempts)) == (2, 3)
    assert ctx_attempts == [1, 2, 3]


@given(
    script=st.lists(st.sampled_from([K.RATE_LIMITED, K.TRANSIENT, K.INVALID]), max_size=6),
    max_prompts=st.integers(1, 8),
)
def test_a_build_counter_counts_attempts_not_prompts(
    script: list[sr.OutcomeKind], max_prompts: int
) -> None:
    """Property: however the attempts go, the builds are the attempts (one per ctx.attempt),
    and state.prompts at each build is the counted attempts before it."""
    result, builds, ctx_attempts = run(script, max_prompts)

    assert builds.count == len(result.attempts) == len(ctx_attempts)
    assert ctx_attempts == list(range(1, builds.count + 1))
    for n, (prompts, before) in enumerate(builds.seen):
        assert before == n
        assert prompts == sum(a.counted for a in result.attempts[:n])
    assert result.prompts == sum(a.counted for a in result.attempts)
    assert result.prompts == sum(a.outcome is not K.RATE_LIMITED for a in result.attempts)
