"""The public API types as documented: mypy --strict checks this file (see pyproject's [tool.mypy]).

It is never run; each ``assert_type`` is a claim about what a user's type checker sees.
"""

from __future__ import annotations

from typing import Any, assert_type

import pydantic

import stagedretry as sr
import stagedretry.testing as sr_testing
from strategies import SamplingParams
from strategies.callable import from_callable


class Book(pydantic.BaseModel):
    title: str
    year: int


async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
    return '{"title": "Dune", "year": 1965}'


PLAN = sr.Plan.ladder()
STRATEGY = from_callable(answer)


async def a_pydantic_validator_types_the_output() -> None:
    validator = sr.validators.pydantic(Book)
    assert_type(validator, sr.Validator[Book])
    runner = sr.Runner(PLAN, STRATEGY, validator=validator)
    assert_type(runner, sr.Runner[Book])

    batch = await runner.run([("dune", "Catalogue Dune.")])
    assert_type(batch, sr.BatchResult[Book])
    for result in batch.results:
        assert_type(result, sr.ItemResult[Book])
        assert_type(result.output, Book | None)
        if result.ok and result.output is not None:
            assert_type(result.output.year, int)

    async with runner.stream([("dune", "Catalogue Dune.")]) as stream:
        assert_type(stream, sr.ResultStream[Book])
        async for item in stream:
            assert_type(item.output, Book | None)
    assert_type(stream.batch, sr.BatchResult[Book] | None)


async def without_a_validator_the_output_is_the_text() -> None:
    runner = sr.Runner(PLAN, STRATEGY)
    assert_type(runner, sr.Runner[str])
    batch = await runner.run([("a", "p")])
    assert_type(batch.results[0].output, str | None)


async def json_validators() -> None:
    assert_type(sr.validators.json_object(), sr.Validator[dict[str, Any]])
    assert_type(sr.validators.json_schema({"type": "object"}), sr.Validator[dict[str, Any]])

    def year(data: dict[str, Any]) -> int:
        return int(data["year"])

    checked = sr.validators.json_object(year)
    assert_type(checked, sr.Validator[int])
    runner = sr.Runner(PLAN, STRATEGY, validator=checked)
    assert_type((await runner.run([])).results, tuple[sr.ItemResult[int], ...])


def a_plain_function_is_a_validator(text: str) -> float:
    return float(text)


def any_callable_works() -> None:
    assert_type(
        sr.Runner(PLAN, STRATEGY, validator=a_plain_function_is_a_validator), sr.Runner[float]
    )


async def lookup_book(text: str) -> Book:
    return Book.model_validate_json(text)


async def an_async_validator_types_the_output() -> None:
    runner = sr.Runner(PLAN, STRATEGY, validator=lookup_book)
    assert_type(runner, sr.Runner[Book])
    batch = await runner.run([("dune", "Catalogue Dune.")])
    assert_type(batch.results[0].output, Book | None)
    # Named as a value, an async validator has a type of its own.
    validator: sr.AsyncValidator[Book] = lookup_book
    assert_type(sr.Runner(PLAN, STRATEGY, validator=validator), sr.Runner[Book])


def validators_of_either_kind(sync: sr.Validator[Book], not_sync: sr.AsyncValidator[Book]) -> None:
    assert_type(sr.Runner(PLAN, STRATEGY, validator=sync), sr.Runner[Book])
    assert_type(sr.Runner(PLAN, STRATEGY, validator=not_sync), sr.Runner[Book])


def bare_names_mean_any_output(result: sr.ItemResult, runner: sr.Runner) -> None:
    assert_type(result.output, Any | None)
    assert_type(runner, sr.Runner[Any])


def the_lifecycle_is_an_enum(runner: sr.Runner[Book]) -> None:
    assert_type(runner.state, sr.RunnerState)


async def _reads_typed_params(request: sr.Request, ctx: sr.StageContext) -> str:
    # ctx.params is the strategy's declared params type: annotate it and mypy checks its fields.
    params: SamplingParams = ctx.params
    assert_type(params.temperature, float | None)
    return "{}"


def secrets_mask_text_and_plain_data() -> None:
    secrets = sr.Secrets(["AIzaSyExample-0123456789"], min_length=8)
    assert_type(secrets.text("x"), str)
    assert_type(secrets.leaves({"a": ["b"]}), dict[str, list[str]])
    assert_type(secrets.skipped, tuple[int, ...])
    assert_type(sr.Secrets.from_environment(), sr.Secrets)
    assert_type(sr.Runner(PLAN, STRATEGY, secrets=secrets).secrets, sr.Secrets)
    sr.Runner(PLAN, STRATEGY, secrets=["a key", None])
    sr.Journal("j.sqlite", secrets=secrets)


class KeyHolder:
    def secrets(self) -> tuple[str, ...]:
        return ("AIzaSyExample-0123456789",)


def a_class_with_secrets_holds_secrets() -> None:
    holder: sr.HoldsSecrets = KeyHolder()
    assert_type(list(holder.secrets()), list[str])


async def a_run_that_stops_keeps_its_results(runner: sr.Runner[Book]) -> None:
    try:
        await runner.run([("dune", "Catalogue Dune.")])
    except sr.RunStopped as stopped:
        assert_type(str(stopped), str)
        assert_type(stopped.batch, sr.BatchResult[Any] | None)
    assert_type(sr.StopRun("the key is rejected").outcome().kind, sr.OutcomeKind)
    assert_type(runner.stop("the spend cap is reached"), None)


class TypedFeedbackStage:
    """A user's stage kind, declared for the harness's reference model."""

    reading = sr_testing.KindReading(
        asks=sr_testing.Asks.ANSWER, skips=sr_testing.Skips.UNTIL_INVALID
    )

    def build(self, item: sr.WorkItem, state: sr.ItemState, stage: sr.Stage) -> sr.Request | None:
        return sr.Request(item.id, stage, item.prompt) if state.errors else None

    def parse(self, response: sr.Response, state: sr.ItemState, validator: sr.Validator) -> Any:
        return validator(response.text or "")


class Throttled(Exception):
    pass


def the_harness_takes_the_users_kinds_and_classification(strategy: sr.Strategy) -> None:
    kinds: dict[str, sr.StageKind] = {**sr.builtin_kinds(), "feedback": TypedFeedbackStage()}
    by_kind = {sr.OutcomeKind.RATE_LIMITED: [Throttled("429")]}
    by_name = {"transient": TimeoutError("slow")}
    assert_type(sr_testing.check_classification(strategy, by_kind), None)
    assert_type(sr_testing.check_classification(strategy, by_name, rules=[strategy.classify]), None)
    sr_testing.check_plan(
        PLAN,
        stage_kinds=kinds,
        outcomes=["succeeded", sr.OutcomeKind.INVALID],
        errors=by_kind,
        classifier=strategy,
    )
    assert_type(sr_testing.ScriptStep("invalid", fields=["year"]).kind, sr.OutcomeKind)


async def a_retry_run_is_a_run(runner: sr.Runner[Book], journal: sr.Journal) -> None:
    retry = {sr.ItemStatus.FAILED, sr.ItemStatus.EXHAUSTED}
    batch = await runner.run([("dune", "Catalogue Dune.")], journal=journal, retry=retry)
    assert_type(batch, sr.BatchResult[Book])
    runner.stream([("dune", "Catalogue Dune.")], journal=journal, retry=sr.ItemStatus.FAILED)
    for entry in journal.history("dune"):
        assert_type(entry.run, int)
        assert_type(entry.fingerprint, str | None)
        assert_type(entry.result.status, sr.ItemStatus)
    spent = sum((a.usage for e in journal.paid() for a in e.result.attempts), sr.Usage())
    assert_type(spent, sr.Usage)


async def items_may_be_mappings_and_the_logger_a_standard_one() -> None:
    import csv
    import io
    import logging

    runner = sr.Runner(PLAN, STRATEGY, logger=logging.getLogger("books"))
    assert_type(runner, sr.Runner[str])
    rows = csv.DictReader(io.StringIO("id,prompt\nb-1,Catalogue Dune.\n"))
    assert_type(await runner.run(rows), sr.BatchResult[str])
    await runner.run([{"id": "b-2", "prompt": "Catalogue Emma."}])
    try:
        await runner.run([("a", "p"), ("a", "p")])
    except sr.ItemError as error:
        assert_type(error.position, int)


def a_gemini_strategy_paces_to_a_quota(client: Any) -> None:
    from strategies.gemini import GeminiStrategy
    from strategies.quota import Quota, QuotaAdmission, time_under

    quota = Quota(rpm=600, tpm=200_000, models={"gemini-2.5-pro": {"rpm": 150}})
    strategy = GeminiStrategy(client, "gemini-2.5-flash", quota=quota)
    paced: sr.Admits = strategy
    shared = QuotaAdmission(quota, storage="async+memory://", minute=60)
    GeminiStrategy(client, "gemini-2.5-pro", quota=shared)
    seconds: float = time_under(quota.for_model("gemini-2.5-pro"), 2000, 500_000)
    del paced, seconds


def a_flex_first_plan_is_typed() -> None:
    flex = sr.Stage(
        "full_flex",
        params={"service_tier": "flex"},
        max_attempts=2,
        on_shed="full_std",
        on_give_up="full_std",
        expedite=sr.Expedite(within=120.0, to="full_std"),
    )
    assert_type(flex.expedite, sr.Expedite | None)
    assert_type(flex.on_give_up, str | None)
    assert_type(flex.give_up_target, str)
    plan = sr.Plan([flex, sr.Stage("full_std")], deadline=900.0)
    assert_type(plan.stages[0].on_shed, str)
    path = sr_testing.expected_path(plan, ["shed"], elapsed=lambda played: 60.0 * played)
    assert_type(path.expedited, tuple[str, ...])


def a_gemini_strategy_keeps_a_cache_per_model(client: Any) -> None:
    from strategies.backend import CacheChoice, CachePrice
    from strategies.gemini import GeminiContextCache, GeminiStrategy

    cache = GeminiContextCache(client, "gemini-2.5-flash", system_instruction="Be exact.")
    strategy = GeminiStrategy(
        client,
        "gemini-2.5-flash",
        cache=cache,
        cache_prices={"gemini-2.5-pro": CachePrice(input=1.25, cached_input=0.125, storage=4.5)},
        expected_items=300,
    )
    planned: sr.PlansResources = strategy
    scoped: sr.StageScoped = cache
    choices: tuple[CacheChoice, ...] = strategy.cache_choices()
    reason: str | None = choices[0].reason if choices else None
    del planned, scoped, reason
