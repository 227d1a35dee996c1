"""The outcome policy: what an item does next, as a pure function of what it has been through.

This is the budget table of ``docs/explanation/budget.md`` in code.  The runner
counts an attempt (:func:`count`), asks :func:`decide` what follows, and applies
the :class:`Decision`: it fires the trigger on the plan's machine, waits on its
clock, pauses every worker or renews a shared resource.  Nothing here awaits,
draws a random number or touches the machine, so every row of the table can be
tested on its own.

=============  ===========================================  ===========================
outcome        next                                         cap
=============  ===========================================  ===========================
SUCCEEDED      ``succeed``                                  --
INVALID        ``invalid`` (the stage's ``on_invalid``)     --
TRANSIENT      ``transient``, a jittered backoff if it      the stage's ``max_attempts``,
               stays on the stage (the server's delay if    then ``give_up`` (the stage's
               it gave one, capped by                       ``on_give_up``, else
               ``rate_limit_backoff.maximum``)              ``on_invalid``)
RATE_LIMITED   ``rate_limited``, every worker pauses        ``max_rate_limit_waits``,
                                                            then ``abort``
SHED           ``shed`` (the stage's ``on_shed``): on to    ``max_rate_limit_waits`` (with
               its target at once, or, if it stays, after   the 429s), then ``abort``
               the rate-limit backoff or the server's
               delay; only this item waits
RESOURCE_LOST  ``resource_lost``, renew for every worker    ``max_resource_lost`` in a
                                                            row (only a served request
                                                            breaks the row), then ``abort``
FATAL          ``fatal``                                    --
STOP_RUN       no trigger: the item ends ``cancelled``      --
               (not final) and the run stops
=============  ===========================================  ===========================

Before each request: the budget spent ends the item ``exhausted`` (``exhaust``), so does
the deadline passed; a deadline at most the stage's ``expedite.within`` seconds away moves
the item to ``expedite.to`` (``expedite``) without a request.
"""

from __future__ import annotations

import attrs

from ._outcomes import Outcome, OutcomeKind, describe
from ._plan import RETRY, Plan, Trigger, resolve_target
from ._state import ItemState

__all__ = [
    "BUDGET_SPENT",
    "DEADLINE_PASSED",
    "NOTHING_TO_REPAIR",
    "STOPPED",
    "Decision",
    "before_request",
    "build_failed",
    "count",
    "decide",
    "skipped",
]


@attrs.frozen
class Decision:
    """What follows one attempt (or one step that sent nothing).

    *trigger* is fired on the plan's machine; ``None`` fires nothing: the run
    stops (*reason* says why) and the item ends ``cancelled``, not final, so a
    later run takes it again.  *reason* says why the item ends,
    if the trigger ends it (``None``: the terminal state's usual reason).
    *wait* is in seconds: exactly that long, or with *jitter* a uniform draw
    from ``[0, wait]``.  With *pause_all* the wait is a cooldown every worker
    honours before its next request; without it only this item waits.  *renew*
    asks for the lost shared resource to be renewed before the next request.
    """

    trigger: Trigger | None
    reason: str | None = None
    wait: float = 0.0
    jitter: bool = attrs.field(default=False, kw_only=True)
    pause_all: bool = attrs.field(default=False, kw_only=True)
    renew: bool = attrs.field(default=False, kw_only=True)


# The decisions that carry nothing of their own are made once: the success path allocates none.
SUCCEED = Decision(Trigger.SUCCEED)
INVALID = Decision(Trigger.INVALID)
RENEW = Decision(Trigger.RESOURCE_LOST, renew=True)
BUDGET_SPENT = Decision(Trigger.EXHAUST, "budget spent")
DEADLINE_PASSED = Decision(Trigger.EXHAUST, "deadline passed")
NOTHING_TO_REPAIR = Decision(Trigger.SKIP, "nothing left to repair")
#: The run has stopped: the item sends nothing more and ends ``cancelled``.
STOPPED = Decision(None)


EXPEDITE = Decision(Trigger.EXPEDITE)


def before_request(
    state: ItemState, plan: Plan, now: float, index: int | None = None
) -> Decision | None:
    """End the item if its budget or its deadline is spent; expedite it if the deadline nears.

    *now* is the runner's clock, read only when the plan has a deadline; *index* is
    the item's stage in the plan (default: found by its name).
    """
    if state.prompts >= plan.max_prompts:
        return BUDGET_SPENT
    deadline = plan.deadline
    if deadline is not None:
        ends = state.started + deadline
        if now >= ends:
            return DEADLINE_PASSED
        stage = plan.stages[index] if index is not None else plan.stage(state.state)
        expedite = stage.expedite
        if expedite is not None and ends - now <= expedite.within:
            return EXPEDITE
    return None


def skipped(kind: str, stage: str, partial: bool) -> Decision:
    """A stage kind's ``build()`` sent nothing: the item moves on to the next stage.

    The reason (read only if that ends the item) names the kind, unless it is
    the built-in ``partial``, whose only reason to skip is that nothing is left
    to repair.
    """
    if partial:
        return NOTHING_TO_REPAIR
    return Decision(
        Trigger.SKIP, f"stage {stage!r} (kind {kind!r}) skipped: its build() sent no request"
    )


def build_failed(kind: str, error: BaseException) -> Decision:
    """A stage kind could not build its request: its item fails, never the whole run."""
    return Decision(
        Trigger.FATAL, f"stage kind {kind!r} failed to build a request: {describe(error)}"
    )


def count(state: ItemState, index: int, outcome: Outcome) -> bool:
    """Add one attempt at stage *index* to the item's counters; return whether it spent a prompt.

    A prompt is spent by every attempt that may have been billed.  ``max_attempts``
    caps the requests a stage sent, so refusals (rate limits, lost resources),
    which are not billed, have caps of their own.
    """
    kind = outcome.kind
    counted = kind.spends_prompt and outcome.sent
    if counted:
        state.prompts += 1
        state.attempts_at[index] += 1
    if kind is OutcomeKind.RESOURCE_LOST:
        state.lost_in_row += 1
    elif counted:
        # Only a request the provider served shows the renewed resource works: a refusal
        # in between (a 429) proves nothing, so alternating 429s and losses cannot renew
        # the resource without end.
        state.lost_in_row = 0
    if kind is OutcomeKind.RATE_LIMITED or kind is OutcomeKind.SHED:
        state.rate_limit_waits += 1
    return counted


def decide(state: ItemState, index: int, plan: Plan, outcome: Outcome) -> Decision:
    """What follows *outcome* at stage *index*, given the item's counters after :func:`count`."""
    kind = outcome.kind
    if kind is OutcomeKind.SUCCEEDED:
        return SUCCEED
    if kind is OutcomeKind.INVALID:
        return INVALID
    if kind is OutcomeKind.FATAL:
        return Decision(Trigger.FATAL, outcome.message)
    if kind is OutcomeKind.STOP_RUN:
        return Decision(None, outcome.message or "a failure of the run, not of the item")
    if kind is OutcomeKind.TRANSIENT:
        return _transient(state, index, plan, outcome.retry_after)
    if kind is OutcomeKind.RATE_LIMITED:
        waits = state.rate_limit_waits
        if waits > plan.max_rate_limit_waits:
            return Decision(Trigger.ABORT, f"rate limited {waits} times")
        backoff = plan.rate_limit_backoff
        if outcome.retry_after is None:
            return Decision(
                Trigger.RATE_LIMITED, wait=backoff.ceiling(waits), jitter=True, pause_all=True
            )
        # A server's advice is honoured, up to the plan's ceiling on waits.
        wait = min(outcome.retry_after, backoff.maximum)
        return Decision(Trigger.RATE_LIMITED, wait=wait, pause_all=True)
    if kind is OutcomeKind.SHED:
        return _shed(state, index, plan, outcome.retry_after)
    lost = state.lost_in_row
    if lost > plan.max_resource_lost:
        return Decision(Trigger.ABORT, f"resource lost {lost} times in a row")
    return RENEW


_SHED = Decision(Trigger.SHED)


def _shed(state: ItemState, index: int, plan: Plan, retry_after: float | None) -> Decision:
    # Under the refusal cap shared with 429s: a cycle of fallbacks that all shed sends
    # nothing billed, so only this cap ends it.
    waits = state.rate_limit_waits
    if waits > plan.max_rate_limit_waits:
        return Decision(Trigger.ABORT, f"shed {waits} times")
    stage = plan.stages[index]
    target = stage.on_shed
    if target != RETRY and resolve_target(plan.stages, index, target) != stage.name:
        return _SHED  # a fallback: the other stage is tried at once
    # Retried on its stage as a 429 is; a shed is this request's, not every worker's,
    # so none pause.
    backoff = plan.rate_limit_backoff
    if retry_after is None:
        return Decision(Trigger.SHED, wait=backoff.ceiling(waits), jitter=True)
    return Decision(Trigger.SHED, wait=min(retry_after, backoff.maximum))


def _transient(state: ItemState, index: int, plan: Plan, retry_after: float | None) -> Decision:
    stage = plan.stages[index]
    sent = state.attempts_at[index]
    if stage.max_attempts is not None and sent >= stage.max_attempts:
        trigger, target = Trigger.GIVE_UP, stage.give_up_target
    else:
        trigger, target = Trigger.TRANSIENT, stage.on_transient
    if target != RETRY and resolve_target(plan.stages, index, target) != stage.name:
        # Moving to another stage is not a retry: nothing to back off from.
        return Decision(trigger)
    if retry_after is not None:
        # A 503 that says when to come back is honoured as a 429's advice is, under the
        # same cap (the plan's one bound on a server's delay), but for this item only:
        # it is not a refusal of every request.
        return Decision(trigger, wait=min(retry_after, plan.rate_limit_backoff.maximum))
    backoff = stage.backoff or plan.backoff
    return Decision(trigger, wait=backoff.ceiling(sent), jitter=True)
