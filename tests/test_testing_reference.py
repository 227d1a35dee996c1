"""The reference model (``expected_path``) on hand-worked examples of the documented rules.

These pin the model to the design's outcome table on its own, so that the
property tests comparing it with the engine compare against something known.
"""

from __future__ import annotations

import pytest

import stagedretry as sr
from stagedretry import ItemStatus, OutcomeKind
from stagedretry.testing import ExpectedPath, ReferenceItem, ScriptStep, expected_path

S = OutcomeKind.SUCCEEDED
I = OutcomeKind.INVALID  # noqa: E741
T = OutcomeKind.TRANSIENT
R = OutcomeKind.RATE_LIMITED
L = OutcomeKind.RESOURCE_LOST
F = OutcomeKind.FATAL
LADDER = sr.Plan.ladder()


def invalid(*fields: str) -> ScriptStep:
    return ScriptStep(I, fields=fields)


def test_a_first_success_ends_at_once() -> None:
    path = expected_path(LADDER, [])
    assert path == ExpectedPath(
        ("full_t0",), (S,), (True,), (None,), 1, ItemStatus.SUCCEEDED, (), 1
    )


def test_invalid_fields_go_to_the_partial_stage_which_asks_only_for_them() -> None:
    path = expected_path(LADDER, [invalid("year", "title.sub", "year")])
    assert path.stages == ("full_t0", "partial_t0")
    # Each scripted field is one key: "title.sub" is not split into "title".
    assert path.fields == (None, (("year",), ("title.sub",)))
    assert path.status is ItemStatus.SUCCEEDED
    assert path.prompts == 2


def test_an_unreadable_answer_skips_the_partial_stage_without_a_prompt() -> None:
    path = expected_path(LADDER, [invalid(), invalid()])
    assert path.stages == ("full_t0", "full_t25")
    assert path.skipped == ("partial_t0", "partial_t25")
    assert path.status is ItemStatus.EXHAUSTED
    assert path.prompts == 2


def test_invalid_past_the_last_stage_exhausts() -> None:
    path = expected_path(LADDER, [invalid("year")] * 4)
    assert path.stages == ("full_t0", "partial_t0", "full_t25", "partial_t25")
    assert path.status is ItemStatus.EXHAUSTED


def test_transient_stays_and_spends_the_budget() -> None:
    path = expected_path(LADDER, [T] * 10)
    assert path.stages == ("full_t0",) * 5
    assert path.counted == (True,) * 5
    assert path.status is ItemStatus.EXHAUSTED
    assert path.steps_used == 5


def test_the_budget_is_checked_before_each_request() -> None:
    plan = sr.Plan.ladder(max_prompts=2)
    path = expected_path(plan, [invalid("year"), invalid("year")])
    assert path.stages == ("full_t0", "partial_t0")
    assert path.status is ItemStatus.EXHAUSTED
    assert path.prompts == 2


def test_rate_limits_spend_no_prompt_and_have_their_own_cap() -> None:
    ok = expected_path(LADDER, [R] * 20)
    assert ok.status is ItemStatus.SUCCEEDED
    assert ok.prompts == 1
    assert ok.counted == (False,) * 20 + (True,)
    capped = expected_path(LADDER, [R] * 21)
    assert capped.status is ItemStatus.FAILED
    assert capped.prompts == 0
    assert len(capped.stages) == 21


def test_resource_lost_is_capped_in_a_row_only() -> None:
    assert expected_path(LADDER, [L, L]).status is ItemStatus.SUCCEEDED
    assert expected_path(LADDER, [L, L, L]).status is ItemStatus.FAILED
    # A served request breaks the row ...
    interrupted = expected_path(LADDER, [L, L, T, L, L])
    assert interrupted.status is ItemStatus.SUCCEEDED
    assert interrupted.prompts == 2
    # ... a rate-limit refusal does not.
    refused = expected_path(LADDER, [L, L, R, L])
    assert refused.status is ItemStatus.FAILED
    assert refused.prompts == 0


def test_a_rate_limit_between_losses_does_not_reset_the_row() -> None:
    # The example: two full stages, two losses allowed in a row.
    plan = sr.Plan(stages=[sr.Stage("f"), sr.Stage("g")], max_resource_lost=2)
    path = expected_path(plan, [L, L, R, L])
    assert path.status is ItemStatus.FAILED
    assert path.stages == ("f",) * 4
    assert path.prompts == 0


def test_fatal_fails_at_once_and_counts() -> None:
    path = expected_path(LADDER, [invalid("year"), F])
    assert path.stages == ("full_t0", "partial_t0")
    assert path.status is ItemStatus.FAILED
    assert path.prompts == 2


def test_max_attempts_gives_up_along_on_invalid() -> None:
    plan = sr.Plan(stages=[sr.Stage("a", max_attempts=2, on_invalid="fail")], max_prompts=9)
    assert expected_path(plan, [T, T]).status is ItemStatus.FAILED
    # Refusals are not requests the stage sent: they do not use up its attempts.
    path = expected_path(plan, [R, L, T, S])
    assert path.status is ItemStatus.SUCCEEDED
    assert path.stages == ("a",) * 4


def test_a_declared_transient_target_is_followed() -> None:
    plan = sr.Plan(
        stages=[sr.Stage("a", on_transient="c"), sr.Stage("b", "partial"), sr.Stage("c")]
    )
    path = expected_path(plan, [T])
    assert path.stages == ("a", "c")
    assert path.status is ItemStatus.SUCCEEDED


def test_failed_fields_survive_other_outcomes_until_repaired() -> None:
    plan = sr.Plan(
        stages=[sr.Stage("a", on_transient="next"), sr.Stage("b", "partial")], max_prompts=9
    )
    path = expected_path(plan, [invalid("x"), T])
    # a -INVALID-> b, which repairs 'x'; a TRANSIENT there just retries it.
    assert path.stages == ("a", "b", "b")
    assert path.fields == (None, (("x",),), (("x",),))


def test_back_edges_loop_until_the_budget_ends_them() -> None:
    plan = sr.Plan(stages=[sr.Stage("a"), sr.Stage("b", "partial", on_invalid="a")], max_prompts=5)
    path = expected_path(plan, [invalid("x")] * 9)
    assert path.stages == ("a", "b", "a", "b", "a")
    assert path.status is ItemStatus.EXHAUSTED


def test_the_default_step_takes_over_after_the_script() -> None:
    path = expected_path(LADDER, [invalid("x")], default=T)
    assert path.outcomes == (I,) + (T,) * 4
    assert path.status is ItemStatus.EXHAUSTED


def test_differences_name_every_departure() -> None:
    path = expected_path(LADDER, [T])
    result = sr.ItemResult(
        "x",
        ItemStatus.FAILED,
        prompts=1,
        attempts=(sr.Attempt("full_t25", F, 1, True),),
    )
    wrong = path.differences(result)
    assert [w.split(":")[0] for w in wrong] == [
        "stages",
        "outcomes",
        "counted",
        "fields",
        "prompts",
        "status",
    ]
    with pytest.raises(AssertionError, match="left the expected path"):
        path.check(result)


def test_the_model_refuses_what_it_cannot_follow() -> None:
    plan = sr.Plan(stages=[sr.Stage("a", "mine")])
    with pytest.raises(ValueError, match="unknown stage kind 'mine'"):
        ReferenceItem(plan)
    item = ReferenceItem(LADDER)
    item.play(S)
    assert item.done
    with pytest.raises(RuntimeError, match="already ended"):
        item.play(S)
    unfinished = ReferenceItem(LADDER)
    with pytest.raises(RuntimeError, match="not ended"):
        unfinished.path()


TWO_REPAIRS = sr.Plan(
    stages=[sr.Stage("ask"), sr.Stage("fix", "partial"), sr.Stage("fix_again", "partial")],
    max_prompts=5,
)


def test_an_unreadable_repair_leaves_the_earlier_fields_to_repair() -> None:
    path = expected_path(TWO_REPAIRS, [invalid("year", "pages"), invalid()])
    assert path.stages == ("ask", "fix", "fix_again")
    assert path.fields == (None, (("year",), ("pages",)), (("year",), ("pages",)))
    assert path.status is ItemStatus.SUCCEEDED


def test_an_unreadable_full_answer_leaves_nothing_to_repair() -> None:
    path = expected_path(TWO_REPAIRS, [invalid()])
    assert path.skipped == ("fix", "fix_again")
    assert path.status is ItemStatus.EXHAUSTED


def test_a_partial_answer_gets_wrong_only_what_it_was_asked() -> None:
    # 'title' was not asked: of the named fields, only 'year' can be wrong.
    path = expected_path(TWO_REPAIRS, [invalid("year", "pages"), invalid("title", "year")])
    assert path.fields == (None, (("year",), ("pages",)), (("year",),))
    # Naming none of the asked fields, the partial answer gets all of them wrong.
    path = expected_path(TWO_REPAIRS, [invalid("year"), invalid("title")])
    assert path.fields == (None, (("year",),), (("year",),))
