"""The runner: the budget, each outcome's policy, streaming, inputs, accounting and logs."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import attrs
import pytest
import structlog
from structlog.testing import capture_logs

import stagedretry as sr
from stagedretry import FieldError, OutcomeKind, ValidationFailed
from stagedretry.testing import DEFAULT_ANSWER, ScriptedStrategy, ScriptStep, VirtualClock
from strategies.callable import from_callable

GOOD = '{"title": "Dune", "year": 1965}'
USAGE = sr.Usage(10, 4, 3, 1)


def check_book(data: dict[str, Any]) -> dict[str, Any]:
    """Title must be a string and year an integer; the valid rest is kept."""
    errors = []
    if not isinstance(data.get("title"), str):
        errors.append(FieldError("title", "expected a string"))
    if not isinstance(data.get("year"), int):
        errors.append(FieldError("year", "expected an integer"))
    if errors:
        failed = {e.path for e in errors}
        raise ValidationFailed(errors, {k: v for k, v in data.items() if k not in failed})
    return data


BOOK = sr.validators.json_object(check_book)


@attrs.frozen
class Call:
    """One request as the strategy saw it."""

    item: str
    stage: str
    attempt: int
    at: float
    fields: tuple[str, ...] | None
    prompt: str = attrs.field(repr=False)
    kept: Any = attrs.field(repr=False)


Action = str | sr.Response | BaseException


class Script:
    """A strategy answering each item's requests from its list of actions, then *default*.

    An action is text to answer, a ``Response``, or an exception to raise.
    Every request is recorded in :attr:`calls` with the virtual time it was sent.
    """

    def __init__(
        self,
        scripts: dict[str, list[Action]] | None = None,
        *,
        default: Action = GOOD,
        latency: float | Callable[[str], float] = 0.0,
        usage: sr.Usage = USAGE,
        classify: Callable[[BaseException], sr.Outcome | None] = lambda exc: None,
    ) -> None:
        self.scripts = {k: list(v) for k, v in (scripts or {}).items()}
        self.default = default
        self.latency = latency
        self.usage = usage
        self._classify = classify
        self.calls: list[Call] = []

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        self.calls.append(
            Call(
                request.item_id,
                request.stage.name,
                ctx.attempt,
                ctx.clock.monotonic(),
                request.fields,
                request.prompt,
                request.kept,
            )
        )
        latency = self.latency(request.item_id) if callable(self.latency) else self.latency
        if latency:
            await ctx.clock.sleep(latency)
        script = self.scripts.get(request.item_id, [])
        action = script.pop(0) if script else self.default
        if isinstance(action, BaseException):
            raise action
        if isinstance(action, sr.Response):
            return action
        return sr.Response(action, self.usage)

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return self._classify(exc)

    def stages(self, item: str = "a") -> list[str]:
        return [c.stage for c in self.calls if c.item == item]


def runner(
    strategy: sr.Strategy,
    clock: VirtualClock,
    plan: sr.Plan | None = None,
    **kwargs: Any,
) -> sr.Runner:
    kwargs.setdefault("validator", BOOK)
    return sr.Runner(plan or sr.Plan.ladder(), strategy, clock=clock, seed=7, **kwargs)


async def one(
    strategy: sr.Strategy, clock: VirtualClock, plan: sr.Plan | None = None, **kwargs: Any
) -> sr.ItemResult:
    batch = await runner(strategy, clock, plan, **kwargs).run([("a", "Describe Dune.")])
    assert len(batch.results) == 1
    return batch.results[0]


def batch_of(stream: sr.ResultStream) -> sr.BatchResult | None:
    # A function, so the type checker does not pin ``batch`` to its first reading.
    return stream.batch


def outcomes(result: sr.ItemResult) -> list[tuple[str, str]]:
    return [(a.stage, a.outcome.value) for a in result.attempts]


class TestBudget:
    async def test_every_attempt_transient_spends_exactly_the_budget(
        self, virtual_clock: VirtualClock
    ) -> None:
        strategy = Script(default=sr.TransientError("503"))

        result = await one(strategy, virtual_clock)

        assert result.status is sr.ItemStatus.EXHAUSTED
        assert result.prompts == 5
        assert result.reason == "budget spent"
        assert len(strategy.calls) == 5
        # TRANSIENT never changes the stage.
        assert outcomes(result) == [("full_t0", "transient")] * 5
        assert all(a.counted for a in result.attempts)
        assert result.output is None

    async def test_backoff_between_transient_retries_is_bounded(
        self, virtual_clock: VirtualClock
    ) -> None:
        plan = sr.Plan([sr.Stage("ask")], max_prompts=6, backoff=sr.Backoff(1.0, 5.0, 2.0))
        strategy = Script(default=sr.TransientError("503"))

        await one(strategy, virtual_clock, plan)

        waits = [b.at - a.at for a, b in itertools.pairwise(strategy.calls)]
        assert len(waits) == 5
        for n, wait in enumerate(waits, start=1):
            assert 0 <= wait <= plan.backoff.ceiling(n)
        assert sum(waits) > 0  # the jitter is not always zero

    async def test_seed_makes_the_jitter_reproducible(self) -> None:
        async def times() -> list[float]:
            strategy = Script(default=sr.TransientError("503"))
            await one(strategy, VirtualClock())
            return [c.at for c in strategy.calls]

        first = await times()
        assert len(first) > 2  # retries happened ...
        assert first[-1] > 0  # ... after real waits
        assert await times() == first

    async def test_every_attempt_invalid_walks_the_ladder_then_exhausts(
        self, virtual_clock: VirtualClock
    ) -> None:
        strategy = Script(default='{"title": "Dune", "year": "soon"}')

        result = await one(strategy, virtual_clock)

        assert result.status is sr.ItemStatus.EXHAUSTED
        assert outcomes(result) == [
            ("full_t0", "invalid"),
            ("partial_t0", "invalid"),
            ("full_t25", "invalid"),
            ("partial_t25", "invalid"),
        ]
        assert result.prompts == 4
        assert result.reason == "no stage left"
        assert result.errors == (FieldError("year", "expected an integer"),)
        assert result.last_invalid is not None

    async def test_budget_below_the_ladder_stops_early(self, virtual_clock: VirtualClock) -> None:
        strategy = Script(default="not json")

        result = await one(strategy, virtual_clock, sr.Plan.ladder(max_prompts=1))

        assert result.status is sr.ItemStatus.EXHAUSTED
        assert result.prompts == 1
        assert result.reason == "budget spent"
        assert len(strategy.calls) == 1

    async def test_max_attempts_gives_up_the_stage(self, virtual_clock: VirtualClock) -> None:
        plan = sr.Plan([sr.Stage("first", max_attempts=2), sr.Stage("second")], max_prompts=5)
        strategy = Script({"a": [sr.TransientError("503")] * 2})

        result = await one(strategy, virtual_clock, plan)

        assert result.ok
        assert outcomes(result) == [
            ("first", "transient"),
            ("first", "transient"),
            ("second", "succeeded"),
        ]
        assert result.final_stage == "second"

    async def test_refusals_do_not_count_toward_max_attempts(
        self, virtual_clock: VirtualClock
    ) -> None:
        plan = sr.Plan([sr.Stage("first", max_attempts=2), sr.Stage("second")])
        strategy = Script(
            {
                "a": [
                    sr.RateLimited("429", retry_after=1.0),
                    sr.ResourceLost(),
                    sr.TransientError("503"),
                    sr.TransientError("503"),
                ]
            }
        )

        result = await one(strategy, virtual_clock, plan)

        assert [stage for stage, _ in outcomes(result)] == ["first"] * 4 + ["second"]

    async def test_transient_may_move_on_when_declared(self, virtual_clock: VirtualClock) -> None:
        plan = sr.Plan([sr.Stage("first", on_transient="next"), sr.Stage("second")])
        strategy = Script({"a": [sr.TransientError("503")]})

        result = await one(strategy, virtual_clock, plan)

        assert outcomes(result) == [("first", "transient"), ("second", "succeeded")]

    async def test_invalid_may_fail_when_declared(self, virtual_clock: VirtualClock) -> None:
        plan = sr.Plan([sr.Stage("only", on_invalid="fail")])

        result = await one(Script(default="{}"), virtual_clock, plan)

        assert result.status is sr.ItemStatus.FAILED
        assert result.prompts == 1

    async def test_mixed_refusals_do_not_spend_the_budget(
        self, virtual_clock: VirtualClock
    ) -> None:
        plan = sr.Plan([sr.Stage("ask", on_invalid="ask")], max_prompts=2)
        strategy = Script(
            {
                "a": [
                    sr.RateLimited("429", retry_after=1),
                    sr.ResourceLost("cache gone"),
                    "not json",
                    sr.RateLimited("429", retry_after=1),
                    GOOD,
                ]
            }
        )

        result = await one(strategy, virtual_clock, plan)

        assert result.ok
        assert result.prompts == 2
        assert [a.counted for a in result.attempts] == [False, False, True, False, True]
        assert [a.number for a in result.attempts] == [1, 2, 3, 4, 5]


class TestRateLimits:
    async def test_do_not_spend_the_budget(self, virtual_clock: VirtualClock) -> None:
        strategy = Script({"a": [sr.RateLimited("429", retry_after=1.0)] * 4})

        result = await one(strategy, virtual_clock, sr.Plan.ladder(max_prompts=1))

        assert result.ok
        assert result.prompts == 1
        assert outcomes(result) == [("full_t0", "rate_limited")] * 4 + [("full_t0", "succeeded")]

    async def test_capped_by_max_rate_limit_waits(self, virtual_clock: VirtualClock) -> None:
        plan = attrs.evolve(sr.Plan.ladder(), max_rate_limit_waits=3)
        strategy = Script(default=sr.RateLimited("429", retry_after=2.0))

        result = await one(strategy, virtual_clock, plan)

        assert result.status is sr.ItemStatus.FAILED
        assert result.prompts == 0
        assert len(result.attempts) == 4  # three waits, then the fourth refusal fails it
        assert result.reason == "rate limited 4 times"
        assert virtual_clock.monotonic() == pytest.approx(6.0)

    async def test_default_cap_is_twenty(self, virtual_clock: VirtualClock) -> None:
        strategy = Script(default=sr.RateLimited("429", retry_after=0.5))

        result = await one(strategy, virtual_clock)

        assert result.status is sr.ItemStatus.FAILED
        assert len(result.attempts) == 21

    async def test_retry_after_is_honoured(self, virtual_clock: VirtualClock) -> None:
        strategy = Script({"a": [sr.RateLimited("429", retry_after=7.5)]})

        result = await one(strategy, virtual_clock)

        assert result.ok
        first, second = strategy.calls
        assert second.at - first.at == pytest.approx(7.5)

    async def test_without_advice_the_rate_limit_backoff_is_used(
        self, virtual_clock: VirtualClock
    ) -> None:
        backoff = sr.Backoff(initial=4.0, maximum=60.0, multiplier=2.0)
        plan = attrs.evolve(sr.Plan.ladder(), rate_limit_backoff=backoff)
        strategy = Script({"a": [sr.RateLimited("429")] * 3})

        await one(strategy, virtual_clock, plan)

        times = [c.at for c in strategy.calls]
        waits = [b - a for a, b in itertools.pairwise(times)]
        assert len(waits) == 3
        for n, wait in enumerate(waits, start=1):
            assert 0 <= wait <= backoff.ceiling(n)

    async def test_cooldown_pauses_every_worker(self, virtual_clock: VirtualClock) -> None:
        # Item "r" is refused at t=0.5 with a 10 s advice; the others answer after 1 s.
        # Nobody may send a request in the window [0.5, 10.5).
        strategy = Script(
            {"r": [sr.RateLimited("429", retry_after=10.0)]},
            latency=lambda item: 0.5 if item == "r" else 1.0,
        )
        items = [("r", "p")] + [(f"i{n}", "p") for n in range(40)]

        batch = await runner(strategy, virtual_clock, concurrency=8).run(items)

        assert batch.succeeded == 41
        starts = sorted(c.at for c in strategy.calls)
        assert not [t for t in starts if 0.5 < t < 10.5]
        assert starts[:8] == [0.0] * 8
        assert starts[8] == pytest.approx(10.5)
        retried = [c.at for c in strategy.calls if c.item == "r"]
        assert retried[1] == pytest.approx(10.5)


class TestResourceLost:
    async def test_capped_in_a_row(self, virtual_clock: VirtualClock) -> None:
        strategy = Script(default=sr.ResourceLost("cache gone", resource="cache"))

        result = await one(strategy, virtual_clock)

        assert result.status is sr.ItemStatus.FAILED
        assert result.prompts == 0
        assert len(result.attempts) == 3
        assert result.reason == "resource lost 3 times in a row"

    async def test_counter_resets_after_another_outcome(self, virtual_clock: VirtualClock) -> None:
        lost = sr.ResourceLost("cache gone")
        plan = sr.Plan([sr.Stage("ask")], max_resource_lost=1)
        strategy = Script({"a": [lost, sr.TransientError("503"), lost, GOOD]})

        result = await one(strategy, virtual_clock, plan)

        assert result.ok
        assert result.prompts == 2

    async def test_a_rate_limit_between_losses_does_not_reset_the_row(
        self, virtual_clock: VirtualClock
    ) -> None:
        # Issue 9's example: lost, lost, 429, lost ends failed at the third loss, no prompt spent.
        lost = sr.ResourceLost("cache gone")
        plan = sr.Plan([sr.Stage("f"), sr.Stage("g")], max_resource_lost=2)
        strategy = Script({"a": [lost, lost, sr.RateLimited("429", retry_after=1.0), lost]})

        result = await one(strategy, virtual_clock, plan)

        assert result.status is sr.ItemStatus.FAILED
        assert result.reason == "resource lost 3 times in a row"
        assert result.prompts == 0
        assert [a.stage for a in result.attempts] == ["f"] * 4
        assert [a.outcome for a in result.attempts] == [
            OutcomeKind.RESOURCE_LOST,
            OutcomeKind.RESOURCE_LOST,
            OutcomeKind.RATE_LIMITED,
            OutcomeKind.RESOURCE_LOST,
        ]

    async def test_cap_of_zero_fails_at_the_first_loss(self, virtual_clock: VirtualClock) -> None:
        plan = sr.Plan([sr.Stage("ask")], max_resource_lost=0)

        result = await one(Script({"a": [sr.ResourceLost()]}), virtual_clock, plan)

        assert result.status is sr.ItemStatus.FAILED
        assert len(result.attempts) == 1


class TestFatalAndClassification:
    async def test_fatal_fails_at_once(self, virtual_clock: VirtualClock) -> None:
        strategy = Script(default=sr.FatalError("401 bad key"))

        result = await one(strategy, virtual_clock)

        assert result.status is sr.ItemStatus.FAILED
        assert len(strategy.calls) == 1
        assert result.prompts == 1
        assert result.reason == "401 bad key"
        assert outcomes(result) == [("full_t0", "fatal")]

    async def test_unknown_exception_is_fatal(self, virtual_clock: VirtualClock) -> None:
        result = await one(Script(default=KeyError("oops")), virtual_clock)

        assert result.status is sr.ItemStatus.FAILED
        assert result.reason == "KeyError: 'oops'"

    async def test_a_strategy_returning_no_response_fails_its_item(
        self, virtual_clock: VirtualClock
    ) -> None:
        class Sloppy:
            async def generate(self, request: sr.Request, ctx: sr.StageContext) -> Any:
                return "plain text" if request.item_id == "bad" else sr.Response(GOOD)

            def classify(self, exc: BaseException) -> sr.Outcome | None:
                return None

        batch = await runner(Sloppy(), virtual_clock).run([("bad", "p"), ("good", "p")])

        by_id = {r.id: r for r in batch.results}
        assert by_id["good"].ok
        assert by_id["bad"].status is sr.ItemStatus.FAILED
        assert by_id["bad"].reason == "TypeError: Sloppy.generate returned str, not a Response"

    async def test_timeouts_and_connection_errors_are_transient(
        self, virtual_clock: VirtualClock
    ) -> None:
        strategy = Script({"a": [TimeoutError(), ConnectionResetError("reset")]})

        result = await one(strategy, virtual_clock)

        assert result.ok
        assert outcomes(result) == [
            ("full_t0", "transient"),
            ("full_t0", "transient"),
            ("full_t0", "succeeded"),
        ]

    async def test_strategy_classifies_its_own_errors(self, virtual_clock: VirtualClock) -> None:
        def as_transient(exc: BaseException) -> sr.Outcome | None:
            return sr.Outcome(OutcomeKind.TRANSIENT) if isinstance(exc, ValueError) else None

        strategy = Script({"a": [ValueError("flaky")]}, classify=as_transient)

        result = await one(strategy, virtual_clock)

        assert outcomes(result) == [("full_t0", "transient"), ("full_t0", "succeeded")]

    async def test_user_rules_come_before_the_strategy(self, virtual_clock: VirtualClock) -> None:
        def strategy_rule(exc: BaseException) -> sr.Outcome | None:
            return sr.Outcome(OutcomeKind.TRANSIENT) if isinstance(exc, ValueError) else None

        def user_rule(exc: BaseException) -> sr.Outcome | None:
            if isinstance(exc, ValueError) and "quota" in str(exc):
                return sr.Outcome(OutcomeKind.RATE_LIMITED, "quota", retry_after=3.0)
            return None

        strategy = Script({"a": [ValueError("quota"), ValueError("flaky")]}, classify=strategy_rule)

        result = await one(strategy, virtual_clock, rules=[user_rule])

        assert outcomes(result) == [
            ("full_t0", "rate_limited"),
            ("full_t0", "transient"),
            ("full_t0", "succeeded"),
        ]
        assert strategy.calls[1].at == pytest.approx(3.0)

    async def test_rule_can_make_an_exception_invalid(self, virtual_clock: VirtualClock) -> None:
        def rule(exc: BaseException) -> sr.Outcome | None:
            return (
                sr.Outcome(OutcomeKind.INVALID, "truncated") if isinstance(exc, EOFError) else None
            )

        strategy = Script({"a": [EOFError("MAX_TOKENS")]})

        result = await one(strategy, virtual_clock, rules=[rule])

        # Nothing to repair: the partial stage is skipped.
        assert outcomes(result) == [("full_t0", "invalid"), ("full_t25", "succeeded")]

    async def test_error_meta_reaches_the_attempt(self, virtual_clock: VirtualClock) -> None:
        meta = sr.ResponseMeta(finish_reason="SAFETY", blocked=True, block_reason="SAFETY")
        strategy = Script({"a": [sr.FatalError("blocked", meta=meta)]})

        result = await one(strategy, virtual_clock)

        assert result.attempts[0].meta == meta


class TestStages:
    async def test_partial_stage_skipped_when_nothing_to_repair(
        self, virtual_clock: VirtualClock
    ) -> None:
        strategy = Script({"a": ["this is not JSON"]})
        r = runner(strategy, virtual_clock)

        batch = await r.run([("a", "p")])
        result = batch.results[0]

        assert result.ok
        assert outcomes(result) == [("full_t0", "invalid"), ("full_t25", "succeeded")]
        assert result.prompts == 2
        assert batch.transitions["skip"] == 1

    async def test_skipping_the_last_stage_exhausts(self, virtual_clock: VirtualClock) -> None:
        plan = sr.Plan([sr.Stage("ask"), sr.Stage("repair", "partial")])

        result = await one(Script(default="[]"), virtual_clock, plan)

        assert result.status is sr.ItemStatus.EXHAUSTED
        assert result.prompts == 1
        assert result.reason == "nothing left to repair"

    async def test_partial_asks_only_the_failed_fields(self, virtual_clock: VirtualClock) -> None:
        strategy = Script({"a": ['{"title": "Dune", "year": "soon"}', '{"year": 1965}']})

        result = await one(strategy, virtual_clock)

        assert result.ok
        assert result.output == {"title": "Dune", "year": 1965}
        assert result.final_stage == "partial_t0"
        assert result.errors == ()
        repair = strategy.calls[1]
        assert repair.stage == "partial_t0"
        assert repair.fields == (("year",),)
        assert dict(repair.kept) == {"title": "Dune"}
        assert "year: expected an integer" in repair.prompt
        assert '{"title": "Dune"}' in repair.prompt
        assert repair.prompt.startswith("Describe Dune.")
        assert result.attempts[1].fields == (("year",),)

    async def test_a_repair_cannot_rewrite_a_kept_field(self, virtual_clock: VirtualClock) -> None:
        # The repair fixes the year and also sends a bad title: only the year is taken.
        strategy = Script(
            {"a": ['{"title": "Dune", "year": "soon"}', '{"year": 1965, "title": 5}']}
        )

        result = await one(strategy, virtual_clock)

        assert outcomes(result) == [("full_t0", "invalid"), ("partial_t0", "succeeded")]
        assert result.output == {"title": "Dune", "year": 1965}

    async def test_merge_is_validated_as_a_whole(self, virtual_clock: VirtualClock) -> None:
        # The repaired year is still wrong: the whole merged answer is validated again.
        strategy = Script({"a": ['{"title": "Dune", "year": "soon"}', '{"year": "later"}']})

        result = await one(strategy, virtual_clock)

        assert outcomes(result)[:2] == [("full_t0", "invalid"), ("partial_t0", "invalid")]
        assert result.ok  # full_t25 answers the whole thing
        assert result.final_stage == "full_t25"

    async def test_partial_repair_that_is_not_json_keeps_the_valid_part(
        self, virtual_clock: VirtualClock
    ) -> None:
        plan = sr.Plan([sr.Stage("ask"), sr.Stage("fix1", "partial"), sr.Stage("fix2", "partial")])
        strategy = Script({"a": ['{"title": "Dune", "year": "soon"}', "oops", '{"year": 1965}']})

        result = await one(strategy, virtual_clock, plan)

        assert result.ok
        assert result.output == {"title": "Dune", "year": 1965}
        assert [c.stage for c in strategy.calls] == ["ask", "fix1", "fix2"]
        assert dict(strategy.calls[2].kept) == {"title": "Dune"}

    async def test_params_reach_the_strategy(self, virtual_clock: VirtualClock) -> None:
        seen: list[tuple[str, float]] = []

        async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
            seen.append((request.stage.name, request.params["temperature"]))
            return "nope"

        await one(from_callable(answer), virtual_clock)

        assert seen == [("full_t0", 0.0), ("full_t25", 0.25)]

    async def test_no_text_is_invalid_with_the_reason(self, virtual_clock: VirtualClock) -> None:
        blocked = sr.Response(
            None, sr.Usage(3, 0), sr.ResponseMeta(blocked=True, block_reason="SAFETY")
        )
        strategy = Script({"a": [blocked]})

        result = await one(strategy, virtual_clock)

        assert result.ok
        assert result.attempts[0].outcome is OutcomeKind.INVALID
        assert result.attempts[0].error is not None
        assert "prompt blocked: SAFETY" in result.attempts[0].error
        assert result.attempts[0].meta == blocked.meta
        assert result.attempts[0].usage == sr.Usage(3, 0)

    async def test_user_stage_kind(self, virtual_clock: VirtualClock) -> None:
        class Shout:
            def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request:
                state.scratch.put(len(state.attempts))
                return sr.Request(item.id, stage, item.prompt.upper())

            def parse(
                self, response: sr.Response, state: sr.ItemState, validator: sr.Validator
            ) -> Any:
                assert response.text is not None
                return ("shouted", state.scratch.get(int), validator(response.text))

        plan = sr.Plan.from_dict(
            {"stages": [{"name": "loud", "kind": "shout"}]}, kinds=["full", "partial", "shout"]
        )
        strategy = Script()
        kinds = {**sr.builtin_kinds(), "shout": Shout()}

        result = await one(strategy, virtual_clock, plan, kinds=kinds)

        assert result.output == ("shouted", 0, {"title": "Dune", "year": 1965})
        assert strategy.calls[0].prompt == "DESCRIBE DUNE."

    def test_unknown_kind_is_rejected_before_work(self, virtual_clock: VirtualClock) -> None:
        plan = sr.Plan.from_dict(
            {"stages": [{"name": "loud", "kind": "shout"}]}, kinds=["full", "shout"]
        )

        with pytest.raises(
            sr.PlanError, match=r"^plan\.stages\[0\]\.kind: unknown stage kind 'shout'"
        ):
            sr.Runner(plan, Script())

    def test_concurrency_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="concurrency must be at least 1"):
            sr.Runner(sr.Plan.ladder(), Script(), concurrency=0)


class TestInputs:
    async def test_tuples_work_items_and_context(self, virtual_clock: VirtualClock) -> None:
        context = {"row": 7}
        items: list[Any] = [
            ("a", "p"),
            sr.WorkItem("b", "p", context),
            (3, "p", ["ctx"]),
        ]

        batch = await runner(Script(), virtual_clock).run(items)

        by_id = {r.id: r for r in batch.results}
        assert set(by_id) == {"a", "b", "3"}
        assert all(r.ok for r in batch.results)
        assert by_id["b"].context is context
        assert by_id["3"].context == ["ctx"]
        assert by_id["a"].context is None

    async def test_generator(self, virtual_clock: VirtualClock) -> None:
        def items() -> Iterator[tuple[str, str]]:
            for n in range(30):
                yield str(n), "p"

        batch = await runner(Script(), virtual_clock, concurrency=4).run(items())

        assert sorted(int(r.id) for r in batch.results) == list(range(30))

    async def test_async_iterable(self, virtual_clock: VirtualClock) -> None:
        async def items() -> AsyncIterator[sr.WorkItem]:
            for n in range(30):
                await virtual_clock.sleep(0.1)
                yield sr.WorkItem(str(n), "p")

        batch = await runner(Script(), virtual_clock, concurrency=4).run(items())

        assert sorted(int(r.id) for r in batch.results) == list(range(30))
        assert batch.succeeded == 30

    async def test_a_bad_element_is_refused_before_anything_is_sent(
        self, virtual_clock: VirtualClock
    ) -> None:
        items: list[Any] = [("a", "p"), "just a string", ("b",), ("c", 42), ("d", "p")]
        strategy = Script()

        with pytest.raises(sr.ItemError) as raised:
            await runner(strategy, virtual_clock, concurrency=1).run(items)

        assert str(raised.value) == (
            "item #2: expected a WorkItem, an (id, prompt[, context]) tuple or a mapping "
            "with 'id' and 'prompt' keys, got the string 'just a string'"
        )
        assert raised.value.position == 2
        assert strategy.calls == []

    async def test_empty_input(self, virtual_clock: VirtualClock) -> None:
        batch = await runner(Script(), virtual_clock).run([])

        assert batch.items == 0
        assert batch.results == ()
        assert batch.prompts == 0


class TestStream:
    async def test_completion_order(self, virtual_clock: VirtualClock) -> None:
        delays = {"slow": 3.0, "mid": 2.0, "fast": 1.0}
        strategy = Script(latency=lambda item: delays[item])
        r = runner(strategy, virtual_clock, concurrency=3)

        seen = [
            (res.id, virtual_clock.monotonic())
            async for res in r.stream([("slow", "p"), ("mid", "p"), ("fast", "p")])
        ]

        assert seen == [("fast", 1.0), ("mid", 2.0), ("slow", 3.0)]

    async def test_memory_is_bounded_by_concurrency(self, virtual_clock: VirtualClock) -> None:
        taken = 0

        def items() -> Iterator[tuple[str, str]]:
            nonlocal taken
            for n in range(1_000):
                taken += 1
                yield str(n), "p"

        stream = runner(Script(), virtual_clock, concurrency=4).stream(items())
        first = await anext(stream)
        # The consumer stalls: the workers may only fill the bounded queue, then wait.
        for _ in range(200):
            await asyncio.sleep(0)

        assert first.ok
        # Consumed, queued, waiting to be queued, in flight: the workers ran ahead of the
        # stalled consumer (the queue filled and each worker holds a finished item), no further.
        assert 1 + 4 + 4 <= taken <= 1 + 4 + 4 + 4
        rest = [r async for r in stream]
        assert len(rest) == 999
        assert taken == 1_000

    async def test_batch_totals_after_the_end(self, virtual_clock: VirtualClock) -> None:
        strategy = Script({str(n): ["nope"] for n in range(0, 50, 5)})
        stream = runner(strategy, virtual_clock, concurrency=8).stream(
            (str(n), "p") for n in range(50)
        )

        assert batch_of(stream) is None
        results = [r async for r in stream]

        batch = batch_of(stream)
        assert batch is not None
        assert batch.results == ()  # streamed: the results were handed out, not kept
        assert batch.items == len(results) == 50
        assert batch.succeeded == 50
        assert batch.prompts == sum(r.prompts for r in results) == 60
        assert batch.usage == sum(r.usage for r in results)
        assert batch.successes_per_stage == {"full_t0": 40, "full_t25": 10}

    async def test_error_in_the_run_reaches_the_consumer(self, virtual_clock: VirtualClock) -> None:
        class Broken:
            name = "cache"

            async def prepare(self, clock: sr.Clock) -> Any:
                raise OSError("no quota")

            def needs_renewal(self, handle: Any, clock: sr.Clock) -> bool:
                return False

            async def renew(self, handle: Any, reason: sr.RenewReason, clock: sr.Clock) -> Any:
                return handle

            async def close(self, handle: Any) -> None:
                return None

        stream = runner(Script(), virtual_clock, resources=[Broken()]).stream([("a", "p")])

        with pytest.raises(sr.ResourceError, match="could not prepare resource 'cache'"):
            async for _ in stream:
                pass


class TestAccounting:
    def test_usage_adds_and_sums(self) -> None:
        a = sr.Usage(10, 5, 2, 1)
        b = sr.Usage(1, 2, 3, 4)

        assert a + b == sr.Usage(11, 7, 5, 5)
        assert sum([a, b, a]) == sr.Usage(21, 12, 7, 6)
        assert sum([], sr.Usage()) == sr.Usage()
        assert a.fresh_input_tokens == 8
        assert a.total_tokens == 16
        with pytest.raises(TypeError):
            a + 1

    async def test_batch_totals_equal_the_sum_over_attempts(
        self, virtual_clock: VirtualClock
    ) -> None:
        scripts: dict[str, list[Action]] = {}
        for n in range(60):
            if n % 4 == 1:
                scripts[str(n)] = [sr.TransientError("503")]
            elif n % 4 == 2:
                scripts[str(n)] = ['{"title": "Dune", "year": "x"}']
            elif n % 4 == 3:
                scripts[str(n)] = [sr.RateLimited("429", retry_after=0.5)]
        scripts["59"] = [sr.FatalError("400")]
        strategy = Script(scripts)

        batch = await runner(strategy, virtual_clock, concurrency=6).run(
            (str(n), "p") for n in range(60)
        )

        attempts = [a for r in batch.results for a in r.attempts]
        assert batch.usage == sum(a.usage for a in attempts)
        assert batch.total_input_tokens == sum(a.usage.input_tokens for a in attempts)
        assert batch.total_output_tokens == sum(a.usage.output_tokens for a in attempts)
        assert batch.total_cached_tokens == sum(a.usage.cached_tokens for a in attempts)
        assert batch.total_thinking_tokens == sum(a.usage.thinking_tokens for a in attempts)
        assert (
            batch.prompts
            == sum(r.prompts for r in batch.results)
            == sum(a.counted for a in attempts)
        )
        assert batch.attempts == len(attempts) == len(strategy.calls)
        assert batch.counts[sr.ItemStatus.SUCCEEDED] == 59
        assert batch.counts[sr.ItemStatus.FAILED] == 1
        assert batch.items == 60
        assert batch.successes_per_stage == {"full_t0": 44, "partial_t0": 15}
        assert batch.transitions["succeed"] == 59
        assert batch.transitions["fatal"] == 1
        assert batch.transitions["rate_limited"] == 14  # item 59 is the fatal one
        assert batch.transitions["invalid"] == 15
        assert batch.transitions["transient"] == 15
        assert batch.cached_share == pytest.approx(0.3)

    async def test_failed_attempts_are_accounted(self, virtual_clock: VirtualClock) -> None:
        costly = sr.Response('{"title": 1}', sr.Usage(100, 50, 20, 10))
        strategy = Script({"a": [costly]}, usage=sr.Usage(1, 1))

        result = await one(strategy, virtual_clock)

        assert result.ok
        assert result.usage == sr.Usage(101, 51, 20, 10)
        assert result.attempts[0].usage == sr.Usage(100, 50, 20, 10)

    async def test_attempt_timing(self, virtual_clock: VirtualClock) -> None:
        strategy = Script({"a": [sr.RateLimited("429", retry_after=5.0)]}, latency=2.0)

        result = await one(strategy, virtual_clock)

        first, second = result.attempts
        assert (first.started, first.duration) == (0.0, 2.0)
        assert (second.started, second.duration) == (7.0, 2.0)

    async def test_summary_renders(self, virtual_clock: VirtualClock) -> None:
        strategy = Script({"b": ["{}"] * 4, "c": [sr.FatalError("400")]})

        batch = await runner(strategy, virtual_clock).run([("a", "p"), ("b", "p"), ("c", "p")])
        text = batch.summary()

        assert text.splitlines()[0].startswith("items                 3")
        for line in (
            "  succeeded           1",
            "  failed              1",
            "  exhausted           1",
            "  cancelled           0",
            "prompts               6   (6 attempts)",
            "tokens in            50",
            "  cached             15   (30.0%)",
            "tokens out           20",
            "thinking              5",
            "successes per stage",
            "  full_t0             1",
            "transitions fired",
        ):
            assert line in text.splitlines()


class TestLogging:
    async def test_events_carry_item_stage_attempt_and_outcome(
        self, virtual_clock: VirtualClock
    ) -> None:
        strategy = Script({"a": [sr.TransientError("503"), "nope"]})
        with capture_logs() as logs:
            await one(strategy, virtual_clock, logger=structlog.get_logger())

        attempts = [e for e in logs if e["event"] == "attempt"]
        assert [(e["item"], e["stage"], e["attempt"], e["outcome"]) for e in attempts] == [
            ("a", "full_t0", 1, "transient"),
            ("a", "full_t0", 2, "invalid"),
            ("a", "full_t25", 3, "succeeded"),
        ]
        events = [e["event"] for e in logs]
        assert events[0] == "item_start"
        assert events[-1] == "item_end"
        assert "transition" in events
        assert all(e["item"] == "a" for e in logs)
        end = logs[-1]
        assert (end["status"], end["stage"], end["prompts"]) == ("succeeded", "full_t25", 3)
        moves = [(e["source"], e["dest"]) for e in logs if e["event"] == "transition"]
        assert moves == [
            ("full_t0", "partial_t0"),
            ("partial_t0", "full_t25"),
            ("full_t25", "succeeded"),
        ]

    async def test_silent_without_a_logger(
        self, virtual_clock: VirtualClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        strategy = Script({"a": [sr.TransientError("503"), "nope", sr.RateLimited()]})
        with capture_logs() as logs:
            result = await one(strategy, virtual_clock)

        assert result.ok
        assert logs == []
        assert caplog.records == []


class TestRepeatedRuns:
    async def test_a_runner_runs_twice(self, virtual_clock: VirtualClock) -> None:
        r = runner(Script(), virtual_clock)

        first = await r.run([("a", "p")])
        second = await r.run([("b", "p"), ("c", "p")])

        assert first.items == 1
        assert second.items == 2
        assert [x.id for x in first.results] == ["a"]

    async def test_two_runs_at_once_are_refused(self, virtual_clock: VirtualClock) -> None:
        r = runner(Script(latency=1.0), virtual_clock)
        first = asyncio.ensure_future(r.run([("a", "p"), ("b", "p")]))
        await asyncio.sleep(0)

        with pytest.raises(RuntimeError, match="this runner is already running"):
            await r.run([("c", "p")])
        with pytest.raises(RuntimeError, match="this runner is already running"):
            async for _ in r.stream([("d", "p")]):
                pass

        batch = await first
        assert batch.items == len(batch.results) == 2


def test_runner_result_is_frozen() -> None:
    result = sr.ItemResult("a", sr.ItemStatus.SUCCEEDED, output=json.loads(GOOD))

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.status = sr.ItemStatus.FAILED  # type: ignore[misc]
    assert result.ok
    assert result.usage == sr.Usage()


class TestWithScriptedStrategy:
    """The same rules, driven by the public ``stagedretry.testing.ScriptedStrategy``."""

    async def test_transient_forever_spends_exactly_the_budget(
        self, virtual_clock: VirtualClock
    ) -> None:
        strategy = ScriptedStrategy(default=OutcomeKind.TRANSIENT)
        r = sr.Runner(sr.Plan.ladder(max_prompts=7), strategy, clock=virtual_clock)

        (result,) = (await r.run([("a", "p")])).results

        assert result.status is sr.ItemStatus.EXHAUSTED
        assert result.prompts == 7
        assert [q.stage for q in strategy.requests_for("a")] == ["full_t0"] * 7

    async def test_partial_repair_of_one_field(self, virtual_clock: VirtualClock) -> None:
        strategy = ScriptedStrategy({"a": [ScriptStep(OutcomeKind.INVALID, fields=["year"])]})
        r = sr.Runner(
            sr.Plan.ladder(), strategy, validator=strategy.validator(), clock=virtual_clock
        )

        (result,) = (await r.run([("a", "p")])).results

        assert result.ok
        assert result.output == dict(DEFAULT_ANSWER)
        first, repair = strategy.requests_for("a")
        assert (first.stage, first.fields) == ("full_t0", None)
        assert (repair.stage, repair.fields) == ("partial_t0", (("year",),))
        assert repair.kept is not None
        assert "year" not in repair.kept
        assert repair.params == {"temperature": 0.0}

    async def test_refusals_then_an_unreadable_answer(self, virtual_clock: VirtualClock) -> None:
        strategy = ScriptedStrategy(
            {
                "a": [
                    ScriptStep(OutcomeKind.RATE_LIMITED, retry_after=2.0),
                    ScriptStep(OutcomeKind.RESOURCE_LOST, resource="cache"),
                    OutcomeKind.INVALID,  # no fields: nothing a partial stage could keep
                ]
            }
        )
        r = sr.Runner(
            sr.Plan.ladder(), strategy, validator=strategy.validator(), clock=virtual_clock
        )

        (result,) = (await r.run([("a", "p")])).results

        assert result.ok
        assert result.prompts == 2
        assert [q.stage for q in strategy.requests_for("a")] == [
            "full_t0",
            "full_t0",
            "full_t0",
            "full_t25",
        ]
        assert virtual_clock.monotonic() == pytest.approx(2.0)


class _BrokenKind:
    """A user stage kind whose build has a bug."""

    def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request | None:
        raise KeyError("missing template field")

    def parse(self, response: sr.Response, state: sr.ItemState, validator: sr.Validator) -> Any:
        raise AssertionError("never reached")


async def test_a_stage_kind_that_raises_fails_only_its_item() -> None:
    """A bug in a user's stage kind ends that item as failed with the reason, and sends nothing."""
    plan = sr.Plan(stages=[sr.Stage("only", "broken")])
    calls: list[str] = []

    async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
        calls.append(request.item_id)
        return GOOD

    kinds = {**sr.builtin_kinds(), "broken": _BrokenKind()}
    runner = sr.Runner(plan, from_callable(answer), kinds=kinds, concurrency=2)
    batch = await runner.run([("a", "p"), ("b", "p")])
    assert [r.status for r in batch.results] == [sr.ItemStatus.FAILED] * 2
    assert all("missing template field" in (r.reason or "") for r in batch.results)
    assert batch.prompts == 0
    assert calls == []
