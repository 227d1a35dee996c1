"""ScriptedStrategy: scripted outcomes through the real Runner, and what it records."""

from __future__ import annotations

import json

import pytest

import stagedretry as sr
from stagedretry import OutcomeKind
from stagedretry.testing import (
    DEFAULT_ANSWER,
    RecordedRequest,
    ScriptedStrategy,
    ScriptStep,
    Step,
    VirtualClock,
    expected_path,
)
from stagedretry.testing._scripted import SCRIPTED_USAGE, UNREADABLE_ANSWER, wrong_fields

LADDER = sr.Plan.ladder()


async def run(
    strategy: ScriptedStrategy,
    ids: list[str],
    plan: sr.Plan = LADDER,
    clock: VirtualClock | None = None,
) -> dict[str, sr.ItemResult]:
    runner = sr.Runner(
        plan, strategy, validator=strategy.validator(), clock=clock or VirtualClock(), seed=3
    )
    batch = await runner.run([sr.WorkItem(i, f"prompt {i}") for i in ids])
    return {r.id: r for r in batch.results}


async def test_each_item_plays_its_own_script() -> None:
    strategy = ScriptedStrategy(
        {
            "a": [OutcomeKind.TRANSIENT, OutcomeKind.SUCCEEDED],
            "b": [ScriptStep(OutcomeKind.INVALID, fields=["year"])],
            "c": [OutcomeKind.FATAL],
        }
    )
    results = await run(strategy, ["a", "b", "c", "d"])
    assert [a.outcome for a in results["a"].attempts] == [
        OutcomeKind.TRANSIENT,
        OutcomeKind.SUCCEEDED,
    ]
    assert [a.stage for a in results["b"].attempts] == ["full_t0", "partial_t0"]
    assert results["c"].status is sr.ItemStatus.FAILED
    assert results["d"].prompts == 1  # no script: the default step
    assert strategy.played("a") == 2
    assert strategy.played("nobody") == 0


async def test_a_sequence_is_every_items_script() -> None:
    strategy = ScriptedStrategy([OutcomeKind.TRANSIENT])
    results = await run(strategy, ["a", "b"])
    for result in results.values():
        assert [a.outcome for a in result.attempts] == [
            OutcomeKind.TRANSIENT,
            OutcomeKind.SUCCEEDED,
        ]


async def test_every_request_is_recorded() -> None:
    strategy = ScriptedStrategy({"a": [ScriptStep(OutcomeKind.INVALID, fields=["year", "pages"])]})
    await run(strategy, ["a"])
    first, second = strategy.requests_for("a")
    assert first == RecordedRequest(
        "a",
        "full_t0",
        {"temperature": 0.0},
        None,
        1,
        ScriptStep(OutcomeKind.INVALID, fields=["year", "pages"]),
        "prompt a",
    )
    assert (second.stage, second.attempt) == ("partial_t0", 2)
    assert second.fields == (("year",), ("pages",))
    assert second.kept == {"title": "Dune", "author": "Frank Herbert"}
    assert "year" in second.prompt
    assert second.step == ScriptStep(OutcomeKind.SUCCEEDED)


async def test_a_partial_stage_gets_only_the_fields_it_asked_for_and_the_merge_validates() -> None:
    strategy = ScriptedStrategy({"a": [ScriptStep(OutcomeKind.INVALID, fields=["year"])]})
    result = (await run(strategy, ["a"]))["a"]
    assert result.ok
    assert result.output == dict(DEFAULT_ANSWER)


async def test_invalid_steps_raise_validation_failed_with_the_valid_part() -> None:
    strategy = ScriptedStrategy(
        {"a": [ScriptStep(OutcomeKind.INVALID, fields=["year", "author.name"])]}
    )
    request = sr.Request("a", LADDER.stages[0], "p")
    with pytest.raises(sr.ValidationFailed) as caught:
        strategy.act(
            ScriptStep(OutcomeKind.INVALID, fields=["year", "author.name"]), _recorded(request)
        )
    # A scripted field is one key, never split on its dot.
    assert [e.path for e in caught.value.errors] == [("year",), ("author.name",)]
    assert caught.value.partial == {"title": "Dune", "author": "Frank Herbert", "pages": 412}
    assert json.loads(caught.value.text or "")["year"] is None
    with pytest.raises(sr.ValidationFailed) as unreadable:
        strategy.act(ScriptStep(OutcomeKind.INVALID), _recorded(request))
    assert unreadable.value.partial is None
    assert [e.path for e in unreadable.value.errors] == [()]


def _recorded(request: sr.Request) -> RecordedRequest:
    return RecordedRequest(
        request.item_id,
        request.stage.name,
        {},
        request.fields,
        1,
        ScriptStep(OutcomeKind.SUCCEEDED),
        request.prompt,
    )


@pytest.mark.parametrize(
    ("step", "error"),
    [
        (ScriptStep(OutcomeKind.TRANSIENT), sr.TransientError),
        (ScriptStep(OutcomeKind.RATE_LIMITED, retry_after=7.0), sr.RateLimited),
        (ScriptStep(OutcomeKind.RESOURCE_LOST, resource="cache"), sr.ResourceLost),
        (ScriptStep(OutcomeKind.FATAL), sr.FatalError),
    ],
)
def test_failures_raise_the_engines_own_exceptions(
    step: ScriptStep, error: type[Exception]
) -> None:
    strategy = ScriptedStrategy()
    with pytest.raises(error) as caught:
        strategy.act(step, _recorded(sr.Request("a", LADDER.stages[0], "p")))
    assert isinstance(caught.value, sr.AttemptError)
    assert caught.value.outcome().kind is step.kind
    assert strategy.classify(caught.value) is None


async def test_a_rate_limit_waits_the_advised_delay_on_the_clock() -> None:
    clock = VirtualClock()
    strategy = ScriptedStrategy({"a": [ScriptStep(OutcomeKind.RATE_LIMITED, retry_after=90.0)]})
    result = (await run(strategy, ["a"], clock=clock))["a"]
    assert result.ok
    assert result.prompts == 1
    assert clock.monotonic() == 90.0


async def test_usage_is_reported_per_answer() -> None:
    fixed = ScriptedStrategy({"a": [OutcomeKind.TRANSIENT]}, usage=sr.Usage(100, 20, 50))
    results = await run(fixed, ["a", "b"])
    assert results["a"].usage == sr.Usage(100, 20, 50)  # the transient attempt had no answer
    assert results["b"].usage == sr.Usage(100, 20, 50)

    def by_stage(request: RecordedRequest) -> sr.Usage:
        return sr.Usage(input_tokens=len(request.stage))

    computed = ScriptedStrategy(
        {"a": [ScriptStep(OutcomeKind.INVALID, fields=["year"])]}, usage=by_stage
    )
    result = (await run(computed, ["a"]))["a"]
    assert result.usage == sr.Usage(input_tokens=len("partial_t0"))


async def test_default_and_feed() -> None:
    strategy = ScriptedStrategy(default=OutcomeKind.FATAL)
    strategy.feed("a", OutcomeKind.TRANSIENT, OutcomeKind.SUCCEEDED)
    strategy.feed("a", OutcomeKind.FATAL)
    assert strategy.script("a") == (
        ScriptStep(OutcomeKind.TRANSIENT),
        ScriptStep(OutcomeKind.SUCCEEDED),
        ScriptStep(OutcomeKind.FATAL),
    )
    results = await run(strategy, ["a", "b"])
    assert results["a"].ok
    assert results["b"].status is sr.ItemStatus.FAILED


def test_the_validator_accepts_exactly_the_answer() -> None:
    strategy = ScriptedStrategy(answer={"x": 1, "y": "two"})
    validate = strategy.validator()
    assert validate('{"x": 1, "y": "two", "extra": 3}') == {"x": 1, "y": "two", "extra": 3}
    with pytest.raises(sr.ValidationFailed) as wrong:
        validate('{"x": 2}')
    assert [e.path for e in wrong.value.errors] == [("x",), ("y",)]
    for text in ("nope", "[1]"):
        with pytest.raises(sr.ValidationFailed) as unreadable:
            validate(text)
        assert unreadable.value.partial is None


def test_steps_are_checked_and_print_evaluably() -> None:
    with pytest.raises(ValueError, match="only an INVALID step"):
        ScriptStep(OutcomeKind.TRANSIENT, fields=["x"])
    with pytest.raises(ValueError, match="retry_after"):
        ScriptStep(OutcomeKind.FATAL, retry_after=1.0)
    with pytest.raises(ValueError, match="names a resource"):
        ScriptStep(OutcomeKind.FATAL, resource="cache")
    step = ScriptStep(OutcomeKind.INVALID, fields=["a", "b"])
    assert repr(step) == "ScriptStep(OutcomeKind.INVALID, fields=('a', 'b'))"
    assert eval(repr(step), {"ScriptStep": ScriptStep, "OutcomeKind": OutcomeKind}) == step
    assert (
        str(ScriptStep(OutcomeKind.RATE_LIMITED, retry_after=2.0))
        == "RATE_LIMITED(retry_after=2.0)"
    )
    assert ScriptStep.of(OutcomeKind.FATAL) == ScriptStep(OutcomeKind.FATAL)


# -- text answers: the engine's real parse path (issue 9) ------------------------------------------

TWO_REPAIRS = sr.Plan(
    stages=[sr.Stage("ask"), sr.Stage("fix", "partial"), sr.Stage("fix_again", "partial")],
    max_prompts=6,
)
TEXT_SCRIPTS = [
    [ScriptStep(OutcomeKind.INVALID, fields=["year", "pages"]), ScriptStep(OutcomeKind.INVALID)],
    [ScriptStep(OutcomeKind.INVALID, fields=["year"]), ScriptStep(OutcomeKind.INVALID)],
    [ScriptStep(OutcomeKind.INVALID)],
    [
        ScriptStep(OutcomeKind.INVALID, fields=["pages", "year"]),
        ScriptStep(OutcomeKind.INVALID, fields=["title", "year"]),
        ScriptStep(OutcomeKind.INVALID, fields=["author"]),
    ],
    [ScriptStep(OutcomeKind.INVALID, fields=["author"]), OutcomeKind.TRANSIENT],
]


@pytest.mark.parametrize("text_answers", [True, False], ids=["text", "raised"])
@pytest.mark.parametrize("script", TEXT_SCRIPTS, ids=str)
async def test_the_engine_agrees_with_the_reference_on_text_and_raised_answers(
    script: list[Step], text_answers: bool
) -> None:
    strategy = ScriptedStrategy({"a": script}, text_answers=text_answers)
    runner = sr.Runner(
        TWO_REPAIRS, strategy, validator=strategy.validator(), clock=VirtualClock(), seed=0
    )

    result = (await runner.run([("a", "p")])).results[0]

    expected_path(TWO_REPAIRS, script).check(result)


async def test_text_answers_are_what_a_model_would_send() -> None:
    steps = [ScriptStep(OutcomeKind.INVALID, fields=["year"]), ScriptStep(OutcomeKind.INVALID)]
    strategy = ScriptedStrategy({"a": steps}, text_answers=True)
    runner = sr.Runner(TWO_REPAIRS, strategy, validator=strategy.validator(), clock=VirtualClock())

    result = (await runner.run([("a", "p")])).results[0]

    first, second, third = result.attempts
    assert first.usage == second.usage == SCRIPTED_USAGE  # an answer, billed
    assert "year" in (first.error or "")
    assert "not JSON" in (second.error or "")  # read by the partial stage itself
    assert third.fields == (("year",),)  # the earlier failed field, still to repair
    assert result.output == dict(DEFAULT_ANSWER)
    assert result.last_invalid == UNREADABLE_ANSWER  # the text the partial stage could not read


def test_wrong_fields() -> None:
    # A scripted field is one key, never split on its dots.
    assert wrong_fields(["year", "author.name", "year"], None) == ("year", "author.name")
    assert wrong_fields([], None) == ()
    assert wrong_fields([], (("year",),)) == ()
    assert wrong_fields(["title", "year"], (("year",), ("pages",))) == ("year",)
    assert wrong_fields(["title"], (("year",), ("pages",))) == ("year", "pages")
