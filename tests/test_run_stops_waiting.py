"""A stop that arrives while other items wait (a backoff, a rate-limit cooldown) ends the run
at once, and :meth:`Runner.stop` keeps its promises from any place and at any time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry.testing import VirtualClock

KEY = "AIzaSyD-Ab3_xYz9QwErTy1234567890abcdEFG"

# Backoffs and cooldowns far longer than the moment of the stop.
LONG = {"initial": 3000.0, "max": 3000.0}


def _plan(max_prompts: int = 5) -> sr.Plan:
    return sr.Plan.from_dict(
        {
            "stages": [{"name": "s", "kind": "full"}],
            "max_prompts": max_prompts,
            "backoff": LONG,
            "rate_limit_backoff": LONG,
        }
    )


class Waiting:
    """Items named ``t*`` fail transiently, ``r*`` are rate limited for 3000 s, ``ok*``
    succeed; ``stop`` takes *stop_after* seconds, then the key is rejected."""

    def __init__(self, stop_after: float) -> None:
        self.stop_after = stop_after
        self.sent: list[str] = []

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        name = ctx.item.id
        self.sent.append(name)
        if name == "stop":
            await ctx.clock.sleep(self.stop_after)
            raise sr.StopRun(f"API key not valid: {KEY}")
        await ctx.clock.sleep(0.25)
        if name.startswith("t"):
            raise sr.TransientError("503 the model is overloaded")
        if name.startswith("r"):
            raise sr.RateLimited("429 slow down", retry_after=3000.0)
        return sr.Response("fine")

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None


@settings(max_examples=40, deadline=None)
@given(
    waiting=st.lists(st.sampled_from(["t", "r", "ok"]), min_size=1, max_size=8),
    concurrency=st.integers(2, 9),
    stop_after=st.floats(0.5, 20.0),
)
async def test_a_stop_wakes_every_item_asleep_in_a_backoff_or_cooldown(
    waiting: list[str],
    concurrency: int,
    stop_after: float,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    clock = VirtualClock()
    ids = [f"{w}{k}" for k, w in enumerate(waiting)]
    strategy = Waiting(stop_after)
    run = sr.Runner(_plan(), strategy, clock=clock, concurrency=concurrency, secrets=[KEY])
    path = tmp_path_factory.mktemp("j") / "journal.sqlite"
    items = [(i, "p") for i in ["stop", *ids]]
    started = clock.monotonic()

    with pytest.raises(sr.RunStopped) as stopped:
        await run.run(items, journal=sr.Journal(path))

    # Ended when the stop came, not after a backoff or cooldown of 3000 s.
    assert clock.monotonic() - started <= stop_after + 0.25
    assert "[redacted]" in str(stopped.value)
    assert KEY not in repr(stopped.value)
    batch = stopped.value.batch
    assert batch is not None
    for result in batch.results:
        assert result.status in (sr.ItemStatus.SUCCEEDED, sr.ItemStatus.CANCELLED)
        assert result.ok or (result.reason or "").startswith("run stopped: API key not valid")
    redo = {r.id for r in batch.results if not r.ok} | {i for i, _ in items} - {
        r.id for r in batch.results
    }

    # The key fixed, the same run again: exactly the items the stop caught (or never took).
    again = Waiting(stop_after)
    resumed = sr.Runner(_plan(), again, clock=clock, concurrency=concurrency, secrets=[KEY])

    async def fixed(request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        again.sent.append(ctx.item.id)
        return sr.Response("fine")

    again.generate = fixed  # type: ignore[method-assign]
    second = await resumed.run(items, journal=sr.Journal(path))
    assert set(again.sent) == redo
    assert second.succeeded == len(redo)
    assert second.resumed == len(items) - len(redo)


async def test_runner_stop_from_on_result_masks_its_reason_and_the_first_wins(
    virtual_clock: VirtualClock,
) -> None:
    calls: list[str] = []

    def on_result(result: sr.ItemResult[str]) -> None:
        calls.append(result.id)
        run.stop(f"spend cap reached while {KEY.upper()} was in use")
        run.stop("a second reason")

    class Quick:
        async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
            await ctx.clock.sleep(1.0)
            return sr.Response("fine")

        def classify(self, exc: BaseException) -> sr.Outcome | None:
            return None

    run = sr.Runner(
        _plan(), Quick(), clock=virtual_clock, concurrency=3, secrets=[KEY], on_result=on_result
    )
    with pytest.raises(sr.RunStopped) as stopped:
        await run.run([(f"i{k}", "p") for k in range(20)])

    assert str(stopped.value) == "spend cap reached while [redacted] was in use"
    batch = stopped.value.batch
    assert batch is not None
    assert batch.items == len(calls) <= 3  # the three in flight finish; nothing new is taken
    assert run.state is sr.RunnerState.IDLE
    run.stop("after the end")  # does nothing
    assert run.state is sr.RunnerState.IDLE


def test_a_stopped_journal_resume_takes_exactly_the_caught_items(tmp_path: Path) -> None:
    # The property above, with its journal read back: nothing final for the stop's cause.
    clock = VirtualClock()
    path = tmp_path / "journal.sqlite"
    strategy = Waiting(5.0)
    run = sr.Runner(_plan(), strategy, clock=clock, concurrency=4, secrets=[KEY])
    items = [(i, "p") for i in ["t0", "r1", "ok2", "stop", "ok4", "t5"]]

    async def go() -> None:
        with pytest.raises(sr.RunStopped):
            await run.run(items, journal=sr.Journal(path))

    asyncio.run(go())
    with sr.Journal(path, run.fingerprint) as journal:
        done = set(journal.done())
        rows = list(journal.results())
    assert done <= {"ok2", "ok4"}
    assert all(r.status is not sr.ItemStatus.FAILED for r in rows)
    assert not any(KEY.lower() in repr(r).lower() for r in rows)
