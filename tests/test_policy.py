"""The outcome policy on its own: one row of the budget table per case, no runner, no clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry import OutcomeKind as K
from stagedretry._machine import compile_plan
from stagedretry._plan import Trigger
from stagedretry._policy import (
    BUDGET_SPENT,
    DEADLINE_PASSED,
    Decision,
    before_request,
    build_failed,
    count,
    decide,
)
from stagedretry.testing import plans

LADDER = sr.Plan.ladder(max_prompts=3)
PLAN = sr.Plan(
    stages=(
        sr.Stage("ask", max_attempts=2, backoff=sr.Backoff(1.0, 8.0)),
        sr.Stage("fix", "partial", on_transient="next"),
        sr.Stage("again", on_invalid="again", max_attempts=1),
    ),
    backoff=sr.Backoff(0.5, 30.0),
    rate_limit_backoff=sr.Backoff(2.0, 60.0),
    max_rate_limit_waits=2,
    max_resource_lost=1,
    deadline=100.0,
)


def state(
    plan: sr.Plan = PLAN,
    *,
    at: int = 0,
    prompts: int = 0,
    sent: int = 0,
    rate_limited: int = 0,
    lost: int = 0,
) -> sr.ItemState:
    """An item at stage *at* whose counters already include the attempt being decided."""
    s = sr.ItemState(sr.WorkItem("a", "p"), plan.stages[at].name, len(plan.stages), 10.0)
    s.prompts = prompts
    s.attempts_at[at] = sent
    s.rate_limit_waits = rate_limited
    s.lost_in_row = lost
    return s


@pytest.mark.parametrize(
    ("at", "counters", "outcome", "expected"),
    [
        # SUCCEEDED and INVALID: the trigger alone; the plan says where it leads.
        (0, {"sent": 1}, sr.Outcome(K.SUCCEEDED), Decision(Trigger.SUCCEED)),
        (0, {"sent": 1}, sr.Outcome(K.INVALID, "bad"), Decision(Trigger.INVALID)),
        # FATAL ends the item with the outcome's message.
        (1, {"sent": 1}, sr.Outcome(K.FATAL, "401"), Decision(Trigger.FATAL, "401")),
        # TRANSIENT retries in place after a full-jitter backoff: the stage's own, by retry number.
        (
            0,
            {"sent": 1},
            sr.Outcome(K.TRANSIENT),
            Decision(Trigger.TRANSIENT, wait=1.0, jitter=True),
        ),
        # ... until the stage's max_attempts, when it gives up (to on_invalid: the next stage).
        (0, {"sent": 2}, sr.Outcome(K.TRANSIENT), Decision(Trigger.GIVE_UP)),
        # A stage whose transient policy moves on does not wait.
        (1, {"sent": 1}, sr.Outcome(K.TRANSIENT), Decision(Trigger.TRANSIENT)),
        # Giving up onto the same stage is a retry: it backs off (the plan's backoff here).
        (2, {"sent": 1}, sr.Outcome(K.TRANSIENT), Decision(Trigger.GIVE_UP, wait=0.5, jitter=True)),
        # A TRANSIENT with the server's delay (a 503 with Retry-After) waits exactly that,
        # for this item only, under the plan's cap on a server's delay.
        (
            0,
            {"sent": 1},
            sr.Outcome(K.TRANSIENT, retry_after=20.0),
            Decision(Trigger.TRANSIENT, wait=20.0),
        ),
        (
            0,
            {"sent": 1},
            sr.Outcome(K.TRANSIENT, retry_after=3600.0),
            Decision(Trigger.TRANSIENT, wait=60.0),
        ),
        # ... and still gives up at max_attempts; moving to another stage waits for nothing.
        (0, {"sent": 2}, sr.Outcome(K.TRANSIENT, retry_after=5.0), Decision(Trigger.GIVE_UP)),
        (1, {"sent": 1}, sr.Outcome(K.TRANSIENT, retry_after=5.0), Decision(Trigger.TRANSIENT)),
        # RATE_LIMITED pauses every worker: the server's advice, capped by the plan ...
        (
            0,
            {"rate_limited": 1},
            sr.Outcome(K.RATE_LIMITED, retry_after=5.0),
            Decision(Trigger.RATE_LIMITED, wait=5.0, pause_all=True),
        ),
        (
            0,
            {"rate_limited": 1},
            sr.Outcome(K.RATE_LIMITED, retry_after=3600.0),
            Decision(Trigger.RATE_LIMITED, wait=60.0, pause_all=True),
        ),
        # ... else the rate-limit backoff, by the number of refusals so far.
        (
            0,
            {"rate_limited": 2},
            sr.Outcome(K.RATE_LIMITED),
            Decision(Trigger.RATE_LIMITED, wait=4.0, jitter=True, pause_all=True),
        ),
        # Past its cap the item is aborted.
        (
            0,
            {"rate_limited": 3},
            sr.Outcome(K.RATE_LIMITED),
            Decision(Trigger.ABORT, "rate limited 3 times"),
        ),
        # RESOURCE_LOST renews, until it was lost too often in a row.
        (1, {"lost": 1}, sr.Outcome(K.RESOURCE_LOST), Decision(Trigger.RESOURCE_LOST, renew=True)),
        (
            1,
            {"lost": 2},
            sr.Outcome(K.RESOURCE_LOST),
            Decision(Trigger.ABORT, "resource lost 2 times in a row"),
        ),
    ],
)
def test_the_outcome_table(
    at: int, counters: dict[str, int], outcome: sr.Outcome, expected: Decision
) -> None:
    assert decide(state(at=at, **counters), at, PLAN, outcome) == expected


@pytest.mark.parametrize(
    ("outcome", "prompts", "sent", "rate_limited", "lost"),
    [
        (sr.Outcome(K.SUCCEEDED), 1, 1, 0, 0),
        (sr.Outcome(K.INVALID), 1, 1, 0, 0),
        (sr.Outcome(K.TRANSIENT), 1, 1, 0, 0),
        (sr.Outcome(K.FATAL), 1, 1, 0, 0),
        # Never sent: never billed, and it does not break a row of losses.
        (sr.Outcome(K.FATAL, sent=False), 0, 0, 0, 1),
        (sr.Outcome(K.RATE_LIMITED), 0, 0, 1, 1),  # refused, not billed, the row goes on
        (sr.Outcome(K.RESOURCE_LOST), 0, 0, 0, 2),  # refused, and one more in a row
    ],
)
def test_what_an_attempt_counts(
    outcome: sr.Outcome, prompts: int, sent: int, rate_limited: int, lost: int
) -> None:
    s = state(lost=1)

    counted = count(s, 0, outcome)

    assert counted is (prompts == 1)
    assert (s.prompts, s.attempts_at[0], s.rate_limit_waits, s.lost_in_row) == (
        prompts,
        sent,
        rate_limited,
        lost,
    )


def test_a_rate_limit_between_two_losses_does_not_reset_the_row() -> None:
    # Only a request that was served shows the renewed resource works; a 429 refused it.
    s = state(lost=1)
    count(s, 0, sr.Outcome(K.RATE_LIMITED))
    assert s.lost_in_row == 1
    count(s, 0, sr.Outcome(K.RESOURCE_LOST))
    assert s.lost_in_row == 2


@pytest.mark.parametrize("kind", [K.SUCCEEDED, K.INVALID, K.TRANSIENT, K.FATAL])
def test_a_served_request_resets_the_row(kind: K) -> None:
    s = state(lost=2)
    count(s, 0, sr.Outcome(kind))
    assert s.lost_in_row == 0


def test_before_a_request() -> None:
    assert before_request(state(prompts=2), PLAN, now=10.0) is None
    assert before_request(state(prompts=3, plan=LADDER), LADDER, now=10.0) is BUDGET_SPENT
    assert before_request(state(), PLAN, now=109.9) is None
    assert before_request(state(), PLAN, now=110.0) is DEADLINE_PASSED
    # The budget is checked first: an item out of both ends "budget spent".
    assert before_request(state(prompts=5), PLAN, now=500.0) is BUDGET_SPENT


def test_a_stage_kind_that_cannot_build_fails_its_item() -> None:
    decision = build_failed("mine", KeyError("x"))
    assert decision.trigger is Trigger.FATAL
    assert decision.reason == "stage kind 'mine' failed to build a request: KeyError: 'x'"


def test_the_policy_does_not_touch_the_item() -> None:
    s = state(sent=1, rate_limited=1, lost=1)
    before = (s.state, s.prompts, list(s.attempts_at), s.rate_limit_waits, s.lost_in_row)
    for kind in K:
        decide(s, 0, PLAN, sr.Outcome(kind))
    assert (s.state, s.prompts, list(s.attempts_at), s.rate_limit_waits, s.lost_in_row) == before


@given(plan=plans(), data=st.data())
def test_an_item_waits_before_a_retry_exactly_when_the_machine_keeps_it(
    plan: sr.Plan, data: st.DataObject
) -> None:
    """The policy's own reading of the plan agrees with the compiled machine."""
    at = data.draw(st.integers(0, len(plan.stages) - 1))
    sent = data.draw(st.integers(1, 6))
    s = state(plan, at=at, sent=sent, prompts=sent)

    decision = decide(s, at, plan, sr.Outcome(K.TRANSIENT))

    before = s.state
    after = compile_plan(plan).fire(s, decision.trigger)
    assert decision.jitter is (after == before)
    assert not decision.pause_all
    if decision.jitter:
        backoff = plan.stages[at].backoff or plan.backoff
        assert decision.wait == backoff.ceiling(sent)
