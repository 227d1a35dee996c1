"""Edge cases of the runner found in review: closing, losses, metadata, draining, hooks."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable

GOOD = '{"title": "Dune"}'


class Counted:
    """A shared resource that counts its lifecycle calls; *close_error* makes close fail."""

    def __init__(self, name: str, close_error: Exception | None = None) -> None:
        self._name = name
        self.close_error = close_error
        self.prepared = self.renewed = self.closed = 0

    @property
    def name(self) -> str:
        return self._name

    async def prepare(self, clock: sr.Clock) -> str:
        self.prepared += 1
        return f"{self._name}-1"

    def needs_renewal(self, handle: Any, clock: sr.Clock) -> bool:
        return False

    async def renew(self, handle: Any, reason: sr.RenewReason, clock: sr.Clock) -> str:
        self.renewed += 1
        return f"{self._name}-{self.renewed + 1}"

    async def close(self, handle: Any) -> None:
        self.closed += 1
        if self.close_error is not None:
            raise self.close_error


async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
    return GOOD


async def test_a_failing_close_keeps_the_results_and_closes_the_others() -> None:
    """A resource that fails to close neither loses the paid results nor keeps others open."""
    bad, good = Counted("a", RuntimeError("close failed")), Counted("b")
    runner = sr.Runner(sr.Plan.ladder(), from_callable(answer), resources=[bad, good])

    with pytest.warns(RuntimeWarning, match="close failed"):
        batch = await runner.run([("1", "p"), ("2", "p")])

    assert batch.succeeded == 2
    assert (bad.closed, good.closed) == (1, 1)


async def test_an_explicit_close_raises_every_failure_together() -> None:
    """``async with`` a runner raises the close failures as one group, after closing all."""
    bad, good = Counted("a", RuntimeError("close failed")), Counted("b")
    with pytest.raises(ExceptionGroup) as caught:
        async with sr.Runner(sr.Plan.ladder(), from_callable(answer), resources=[bad, good]) as r:
            await r.run([("1", "p")])
    assert [str(e) for e in caught.value.exceptions] == ["close failed"]
    assert good.closed == 1


async def test_a_loss_naming_an_unknown_resource_renews_them_all() -> None:
    """A strategy that names a resource wrongly still gets it renewed, once."""
    cache = Counted("cache")
    calls = 0

    async def lose_once(request: sr.Request, ctx: sr.StageContext) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sr.ResourceLost("gone", resource="the-cache")
        return GOOD

    runner = sr.Runner(sr.Plan.ladder(), from_callable(lose_once), resources=[cache])
    batch = await runner.run([("1", "p")])

    assert batch.succeeded == 1
    assert cache.renewed == 1


async def test_metadata_survives_a_validator_that_crashes() -> None:
    """A billed response keeps its metadata on the attempt when the validator has a bug."""
    meta = sr.ResponseMeta(finish_reason="STOP", safety_ratings={"HARASSMENT": "LOW"})

    async def respond(request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        return sr.Response(GOOD, sr.Usage(5, 2), meta)

    def broken(text: str) -> Any:
        raise ZeroDivisionError("bug")

    runner = sr.Runner(sr.Plan.ladder(), from_callable(respond), validator=broken)
    (result,) = (await runner.run([("1", "p")])).results

    assert result.status is sr.ItemStatus.FAILED
    assert result.attempts[0].meta == meta
    assert result.attempts[0].usage == sr.Usage(5, 2)


async def test_a_fatal_error_before_sending_spends_no_prompt() -> None:
    """``FatalError(sent=False)`` fails the item without counting a prompt."""

    async def refuse(request: sr.Request, ctx: sr.StageContext) -> str:
        raise sr.FatalError("bad request, not sent", sent=False)

    (result,) = (await sr.Runner(sr.Plan.ladder(), from_callable(refuse)).run([("1", "p")])).results
    assert result.status is sr.ItemStatus.FAILED
    assert result.prompts == 0
    assert result.attempts[0].counted is False


async def test_a_huge_server_delay_is_capped_by_the_plan(virtual_clock: VirtualClock) -> None:
    """A Retry-After of a day waits no longer than ``rate_limit_backoff.max``."""
    calls = 0

    async def limited(request: sr.Request, ctx: sr.StageContext) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise sr.RateLimited("429", retry_after=86_400.0)
        return GOOD

    plan = sr.Plan(stages=sr.Plan.ladder().stages, rate_limit_backoff=sr.Backoff(1.0, 120.0))
    runner = sr.Runner(plan, from_callable(limited), clock=virtual_clock)
    batch = await runner.run([("1", "p")])

    assert batch.succeeded == 1
    assert virtual_clock.monotonic() == pytest.approx(120.0)


async def test_a_drain_before_the_stream_starts_holds() -> None:
    """drain() between stream() and the first read takes no item at all."""
    runner = sr.Runner(sr.Plan.ladder(), from_callable(answer))
    stream = runner.stream([("1", "p"), ("2", "p")])
    runner.drain()
    got = [r async for r in stream]
    assert got == []
    assert stream.batch is not None
    assert stream.batch.items == 0


async def test_leaving_a_stream_block_early_stops_the_run() -> None:
    """Breaking out of ``async with runner.stream(...)`` cancels the rest of the run."""
    started: list[str] = []
    release = asyncio.Event()

    async def slow(request: sr.Request, ctx: sr.StageContext) -> str:
        started.append(request.item_id)
        if request.item_id != "0":
            await release.wait()
        return GOOD

    runner = sr.Runner(sr.Plan.ladder(), from_callable(slow), concurrency=3)
    before = len(asyncio.all_tasks())
    got: list[str] = []
    async with runner.stream((str(i), "p") for i in range(100)) as results:
        async for result in results:
            got.append(result.id)
            break
    await asyncio.sleep(0)
    assert got == ["0"]
    assert len(asyncio.all_tasks()) == before
    assert "0" in started
    assert len(started) < 10


async def test_on_result_sees_every_result_before_the_caller() -> None:
    """The on_result hook is called for each item before run() hands results back."""
    seen: list[str] = []
    runner = sr.Runner(
        sr.Plan.ladder(), from_callable(answer), on_result=lambda r: seen.append(r.id)
    )
    stream = runner.stream((str(i), "p") for i in range(20))
    async for result in stream:
        assert result.id in seen
    assert sorted(seen, key=int) == [str(i) for i in range(20)]


async def test_an_error_after_a_billed_answer_keeps_its_usage() -> None:
    """A strategy that turns a withheld answer into an error still reports what it cost."""
    cost = sr.Usage(120, 0, 100)

    async def withheld(request: sr.Request, ctx: sr.StageContext) -> str:
        raise sr.FatalError("prompt blocked: SAFETY", usage=cost)

    (result,) = (
        await sr.Runner(sr.Plan.ladder(), from_callable(withheld)).run([("1", "p")])
    ).results
    assert result.status is sr.ItemStatus.FAILED
    assert result.usage == cost


class _NeedsCache:
    """A strategy that declares the shared resource its requests use."""

    def __init__(self, resource: Counted) -> None:
        self.resource = resource

    def shared_resources(self) -> tuple[Counted, ...]:
        return (self.resource,)

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        return sr.Response(f'{{"handle": "{ctx.resources[self.resource.name]}"}}')

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None


async def test_a_strategys_own_resources_are_shared_without_being_passed() -> None:
    """The runner prepares a strategy's declared resource once, passed in or not."""
    cache = Counted("cache")
    for resources in ([], [cache]):
        cache.prepared = 0
        runner = sr.Runner(sr.Plan.ladder(), _NeedsCache(cache), resources=resources, concurrency=8)
        batch = await runner.run((str(i), "p") for i in range(50))
        assert batch.succeeded == 50
        assert {r.output for r in batch.results} == {'{"handle": "cache-1"}'}
        assert cache.prepared == 1
