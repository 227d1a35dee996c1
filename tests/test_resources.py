"""Shared resources: prepared once, renewed once for all, injected, closed by their policy."""

from __future__ import annotations

import asyncio
from typing import Any

import attrs
import pytest

import stagedretry as sr
from stagedretry import RenewReason
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable


@attrs.define(eq=False)  # a stateful fake: compared by identity
class FakeCache:
    """A provider-side context cache with a TTL kept by its "server", and a close policy.

    ``server`` maps each live handle to its expiry (Unix time, as the server
    says); ``policy`` is ``"keep"`` (leave it for the next process) or
    ``"release"`` (delete it on close).
    """

    name: str = "cache"
    ttl: float = attrs.field(default=3_600.0, kw_only=True)
    margin: float = attrs.field(default=10.0, kw_only=True)
    policy: str = attrs.field(default="release", kw_only=True)
    prepare_delay: float = attrs.field(default=1.0, kw_only=True)
    renew_delay: float = attrs.field(default=0.5, kw_only=True)
    fail_prepare: int = attrs.field(default=0, kw_only=True)
    fail_renew: bool = attrs.field(default=False, kw_only=True)
    server: dict[str, float] = attrs.field(factory=dict, init=False)
    # Every handle ever made, for the test's checks.
    expiry: dict[str, float] = attrs.field(factory=dict, init=False)
    prepares: int = attrs.field(default=0, init=False)
    renewals: list[RenewReason] = attrs.field(factory=list, init=False)
    closed: list[str] = attrs.field(factory=list, init=False)

    def _create(self, clock: sr.Clock) -> str:
        handle = f"{self.name}/{len(self.expiry) + 1}"
        self.server[handle] = self.expiry[handle] = clock.time() + self.ttl
        return handle

    async def prepare(self, clock: sr.Clock) -> str:
        self.prepares += 1
        await clock.sleep(self.prepare_delay)
        if self.prepares <= self.fail_prepare:
            raise PermissionError("403 caller lacks permission")
        return self._create(clock)

    def needs_renewal(self, handle: str, clock: sr.Clock) -> bool:
        # The server's own expiry, read against the injected clock's "now".
        return clock.time() >= self.server.get(handle, 0.0) - self.margin

    async def renew(self, handle: str, reason: RenewReason, clock: sr.Clock) -> str:
        self.renewals.append(reason)
        await clock.sleep(self.renew_delay)
        if self.fail_renew:
            raise ConnectionError("cannot reach the cache service")
        self.server.pop(handle, None)
        return self._create(clock)

    async def close(self, handle: str) -> None:
        self.closed.append(handle)
        if self.policy == "release":
            del self.server[handle]


@attrs.frozen
class Use:
    item: str
    handle: str
    time: float


@attrs.define(kw_only=True, eq=False)
class UsesCache:
    """A strategy that records the handle each request got; optionally reports it lost."""

    name: str = "cache"
    latency: float = 1.0
    lost_on: set[str] = attrs.field(factory=set)
    latency_of: dict[str, float] = attrs.field(factory=dict)
    uses: list[Use] = attrs.field(factory=list, init=False)

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        handle = ctx.resources[self.name]
        self.uses.append(Use(request.item_id, handle, ctx.clock.time()))
        await ctx.clock.sleep(self.latency_of.get(request.item_id, self.latency))
        if handle in self.lost_on:
            raise sr.ResourceLost(f"{handle} expired", resource=self.name)
        return sr.Response("ok", sr.Usage(100, 5, 90))

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None


def items(n: int) -> list[tuple[str, str]]:
    return [(str(i), "p") for i in range(n)]


def test_fake_cache_is_a_shared_resource() -> None:
    assert isinstance(FakeCache(), sr.SharedResource)


async def test_prepared_once_for_200_concurrent_items(virtual_clock: VirtualClock) -> None:
    cache = FakeCache(prepare_delay=5.0)
    strategy = UsesCache()
    runner = sr.Runner(
        sr.Plan.ladder(), strategy, resources=[cache], concurrency=200, clock=virtual_clock
    )

    batch = await runner.run(items(200))

    assert batch.succeeded == 200
    assert cache.prepares == 1
    assert cache.renewals == []
    assert {u.handle for u in strategy.uses} == {"cache/1"}
    # Every item waited for the one preparation, then all went at once.
    assert {u.time - virtual_clock.time() for u in strategy.uses} == {-1.0}
    assert batch.total_cached_tokens == 200 * 90


async def test_ctx_resources_carries_every_handle(virtual_clock: VirtualClock) -> None:
    seen: list[dict[str, Any]] = []

    async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
        seen.append(dict(ctx.resources))
        return "ok"

    resources = [FakeCache("cache"), FakeCache("tools")]
    runner = sr.Runner(
        sr.Plan.ladder(), from_callable(answer), resources=resources, clock=virtual_clock
    )

    await runner.run(items(3))

    assert seen == [{"cache": "cache/1", "tools": "tools/1"}] * 3


async def test_without_resources_ctx_resources_is_empty(virtual_clock: VirtualClock) -> None:
    seen: list[int] = []

    async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
        seen.append(len(ctx.resources))
        return "ok"

    await sr.Runner(sr.Plan.ladder(), from_callable(answer), clock=virtual_clock).run(items(2))

    assert seen == [0, 0]


async def test_lost_storm_from_50_workers_renews_once(virtual_clock: VirtualClock) -> None:
    cache = FakeCache(renew_delay=0.5)
    # Every first request reports the cache lost, staggered over 1..3.5 s: some reports
    # arrive while the renewal runs, some after it is done. None may renew again.
    latency_of = {str(i): 1.0 + (i % 6) * 0.5 for i in range(50)}
    strategy = UsesCache(lost_on={"cache/1"}, latency_of=latency_of)
    runner = sr.Runner(
        sr.Plan.ladder(), strategy, resources=[cache], concurrency=50, clock=virtual_clock
    )

    batch = await runner.run(items(50))

    assert batch.succeeded == 50
    assert cache.prepares == 1
    assert cache.renewals == [RenewReason.LOST]
    assert runner.resource_renewals == {"cache": 1}
    for result in batch.results:
        assert [a.outcome for a in result.attempts] == [
            sr.OutcomeKind.RESOURCE_LOST,
            sr.OutcomeKind.SUCCEEDED,
        ]
        assert result.prompts == 1
    assert sorted({u.handle for u in strategy.uses}) == ["cache/1", "cache/2"]
    assert batch.transitions["resource_lost"] == 50


async def test_lost_names_which_resource_to_renew(virtual_clock: VirtualClock) -> None:
    cache, tools = FakeCache("cache"), FakeCache("tools")
    strategy = UsesCache(name="tools", lost_on={"tools/1"})
    runner = sr.Runner(sr.Plan.ladder(), strategy, resources=[cache, tools], clock=virtual_clock)

    await runner.run(items(1))

    assert tools.renewals == [RenewReason.LOST]
    assert cache.renewals == []
    assert runner.resource_renewals == {"cache": 0, "tools": 1}


async def test_lost_without_a_name_renews_every_resource(virtual_clock: VirtualClock) -> None:
    cache, tools = FakeCache("cache"), FakeCache("tools")
    script = [sr.ResourceLost("something expired")]

    async def answer(request: sr.Request, ctx: sr.StageContext) -> str:
        if script:
            raise script.pop()
        return "ok"

    runner = sr.Runner(
        sr.Plan.ladder(), from_callable(answer), resources=[cache, tools], clock=virtual_clock
    )

    batch = await runner.run(items(1))

    assert batch.succeeded == 1
    assert cache.renewals == tools.renewals == [RenewReason.LOST]


async def test_expiring_resource_is_renewed_once_before_use(virtual_clock: VirtualClock) -> None:
    # TTL 100 s, renewed 10 s ahead; waves of 50 requests of 30 s each at t = 0, 30, 60, 90.
    # The fourth wave finds the cache about to expire: one renewal, before any use.
    cache = FakeCache(ttl=100.0, margin=10.0, prepare_delay=0.0)
    strategy = UsesCache(latency=30.0)
    runner = sr.Runner(
        sr.Plan.ladder(), strategy, resources=[cache], concurrency=50, clock=virtual_clock
    )
    start = virtual_clock.time()

    batch = await runner.run(items(200))

    assert batch.succeeded == 200
    assert cache.prepares == 1
    assert cache.renewals == [RenewReason.EXPIRING]
    by_handle = {
        h: sorted(u.time - start for u in strategy.uses if u.handle == h)
        for h in ("cache/1", "cache/2")
    }
    assert len(by_handle["cache/1"]) == 150
    assert len(by_handle["cache/2"]) == 50
    assert min(by_handle["cache/2"]) == pytest.approx(90.5)  # after the 0.5 s renewal
    # No request was sent with a handle past (or within the margin of) its expiry.
    for use in strategy.uses:
        assert use.time < cache.expiry[use.handle] - cache.margin


async def test_prepare_failure_fails_the_run_fast(virtual_clock: VirtualClock) -> None:
    cache = FakeCache(fail_prepare=1, prepare_delay=2.0)
    strategy = UsesCache()
    runner = sr.Runner(
        sr.Plan.ladder(), strategy, resources=[cache], concurrency=50, clock=virtual_clock
    )

    with pytest.raises(sr.ResourceError) as caught:
        await runner.run(items(200))

    assert str(caught.value) == ("could not prepare resource 'cache': 403 caller lacks permission")
    assert isinstance(caught.value.__cause__, PermissionError)
    assert cache.prepares == 1  # not once per item or per waiting worker
    assert strategy.uses == []
    assert virtual_clock.monotonic() == pytest.approx(2.0)
    assert cache.closed == []  # nothing was prepared, so nothing to close


async def test_a_later_run_prepares_again(virtual_clock: VirtualClock) -> None:
    cache = FakeCache(fail_prepare=1)
    runner = sr.Runner(sr.Plan.ladder(), UsesCache(), resources=[cache], clock=virtual_clock)

    with pytest.raises(sr.ResourceError):
        await runner.run(items(5))
    batch = await runner.run(items(5))

    assert batch.succeeded == 5
    assert cache.prepares == 2


async def test_renew_failure_fails_the_run(virtual_clock: VirtualClock) -> None:
    cache = FakeCache(fail_renew=True)
    strategy = UsesCache(lost_on={"cache/1"})
    runner = sr.Runner(
        sr.Plan.ladder(), strategy, resources=[cache], concurrency=10, clock=virtual_clock
    )

    with pytest.raises(sr.ResourceError, match="could not renew resource 'cache'"):
        await runner.run(items(10))

    assert cache.renewals == [RenewReason.LOST]
    assert cache.closed == ["cache/1"]


@pytest.mark.parametrize(("policy", "left"), [("keep", {"cache/1"}), ("release", set())])
async def test_closed_once_by_its_policy(
    virtual_clock: VirtualClock, policy: str, left: set[str]
) -> None:
    cache = FakeCache(policy=policy)
    runner = sr.Runner(
        sr.Plan.ladder(), UsesCache(), resources=[cache], concurrency=20, clock=virtual_clock
    )

    await runner.run(items(100))

    assert cache.closed == ["cache/1"]
    assert set(cache.server) == left


async def test_close_gets_the_renewed_handle(virtual_clock: VirtualClock) -> None:
    cache = FakeCache(policy="release")
    runner = sr.Runner(
        sr.Plan.ladder(),
        UsesCache(lost_on={"cache/1"}),
        resources=[cache],
        concurrency=5,
        clock=virtual_clock,
    )

    await runner.run(items(5))

    assert cache.closed == ["cache/2"]
    assert cache.server == {}


async def test_runner_as_context_keeps_resources_across_runs(
    virtual_clock: VirtualClock,
) -> None:
    cache = FakeCache()
    strategy = UsesCache()

    async with sr.Runner(
        sr.Plan.ladder(), strategy, resources=[cache], clock=virtual_clock
    ) as runner:
        await runner.run(items(3))
        await runner.run(items(3))
        assert cache.closed == []

    assert cache.prepares == 1
    assert cache.closed == ["cache/1"]
    assert {u.handle for u in strategy.uses} == {"cache/1"}


async def test_without_context_each_run_prepares_and_closes(
    virtual_clock: VirtualClock,
) -> None:
    cache = FakeCache()
    runner = sr.Runner(sr.Plan.ladder(), UsesCache(), resources=[cache], clock=virtual_clock)

    await runner.run(items(3))
    await runner.run(items(3))

    assert cache.prepares == 2
    assert cache.closed == ["cache/1", "cache/2"]


async def test_closed_when_the_run_is_cancelled(virtual_clock: VirtualClock) -> None:
    cache = FakeCache()
    all_sent = asyncio.Event()
    sent = 0

    async def hang(request: sr.Request, ctx: sr.StageContext) -> str:
        nonlocal sent
        sent += 1
        if sent == 3:
            all_sent.set()
        await asyncio.Event().wait()  # never answers
        return "unreachable"

    runner = sr.Runner(
        sr.Plan.ladder(), from_callable(hang), resources=[cache], clock=virtual_clock
    )
    task = asyncio.ensure_future(runner.run(items(3)))
    await all_sent.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert cache.closed == ["cache/1"]


def test_resource_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="two shared resources are named 'cache'"):
        sr.Runner(sr.Plan.ladder(), UsesCache(), resources=[FakeCache(), FakeCache()])


async def test_unused_resource_is_never_prepared(virtual_clock: VirtualClock) -> None:
    cache = FakeCache()
    runner = sr.Runner(sr.Plan.ladder(), UsesCache(), resources=[cache], clock=virtual_clock)

    await runner.run([])

    assert cache.prepares == 0
    assert cache.closed == []
