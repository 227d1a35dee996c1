"""Quota admission (``strategies.quota``) and the runner's ``Admits`` hook.

The settings read from a pipeline with path-precise errors; the arithmetic of
:func:`time_under` and of the Pacific-time day; the admission's refusals that no wait
can mend (a request larger than the TPM, a spent RPD), its concurrency slots, its
correction by the real usage; and the runner giving up an admission wait when the run
stops or the item's deadline passes.  The windows themselves are the ``limits``
library's; their pace against a server is tested through the SDK in
``tests/gemini/test_quota.py``.
"""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from strategies.quota import (
    ModelQuota,
    Quota,
    QuotaAdmission,
    describe_reset,
    next_pacific_midnight,
    time_under,
)


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> float:
    return datetime.datetime(
        year, month, day, hour, minute, second, tzinfo=datetime.UTC
    ).timestamp()


# -- settings ---------------------------------------------------------------------------


def test_a_quota_table_with_overrides_per_model_is_read_and_merged() -> None:
    quota = sr.parse_settings(
        Quota,
        {
            "rpm": 600,
            "tpm": 200_000,
            "concurrent": 8,
            "models": {"gemini-2.5-pro": {"rpm": 150}, "models/gemini-2.0-flash": {"rpd": 10}},
        },
        "backend.quota",
    )
    assert quota.for_model("gemini-2.5-flash") == ModelQuota(600, 200_000, None, 8)
    # An override replaces what it sets and keeps the rest.
    assert quota.for_model("gemini-2.5-pro") == ModelQuota(150, 200_000, None, 8)
    assert quota.for_model("models/gemini-2.5-pro") == ModelQuota(150, 200_000, None, 8)
    assert quota.for_model("gemini-2.0-flash") == ModelQuota(600, 200_000, 10, 8)
    assert quota.limited
    assert not Quota().limited


@pytest.mark.parametrize(
    ("data", "path", "problem"),
    [
        ({"rpm": 0}, "backend.quota.rpm", "expected a whole number"),
        ({"tpm": 1.5}, "backend.quota.tpm", "expected a whole number"),
        ({"rdp": 5}, "backend.quota.rdp", "unknown key (did you mean"),
        (
            {"models": {"gemini-2.5-pro": {"rpm": -1}}},
            'backend.quota.models."gemini-2.5-pro".rpm',
            "expected a whole number",
        ),
        ({"models": {"gemini-2.5-pro": {"tmp": 1}}}, "backend.quota.models", "did you mean"),
        ({"models": ["gemini-2.5-pro"]}, "backend.quota.models", "expected a table"),
        ({"models": {"gemini-2.5-pro": 5}}, "backend.quota.models", "expected a table"),
    ],
)
def test_a_wrong_quota_is_refused_by_its_path(
    data: dict[str, Any], path: str, problem: str
) -> None:
    with pytest.raises(sr.PlanError) as caught:
        sr.parse_settings(Quota, data, "backend.quota")
    assert caught.value.path.startswith(path), caught.value.path
    assert problem in caught.value.problem


def test_time_under_is_the_pace_of_the_binding_limit() -> None:
    quota = ModelQuota(rpm=600, tpm=200_000)
    assert time_under(quota, 2000, 500_000) == pytest.approx(200.0)  # RPM binds: 3.33 min
    assert time_under(quota, 100, 1_000_000) == pytest.approx(300.0)  # TPM binds: 5 min
    assert time_under(ModelQuota(), 10**6, 10**9) == 0.0
    assert time_under(quota, 600, 0, minute=6) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="negative"):
        time_under(quota, -1, 0)


@given(
    st.integers(1, 10**6),
    st.integers(1, 10**9),
    st.integers(0, 10**6),
    st.integers(0, 10**9),
)
def test_time_under_never_beats_either_limit(
    rpm: int, tpm: int, requests: int, tokens: int
) -> None:
    seconds = time_under(ModelQuota(rpm=rpm, tpm=tpm), requests, tokens)
    assert seconds >= requests / rpm * 60 - 1e-6
    assert seconds >= tokens / tpm * 60 - 1e-6
    assert seconds == pytest.approx(max(requests / rpm, tokens / tpm) * 60)


@pytest.mark.parametrize(
    ("now", "midnight", "words"),
    [
        # 14:00 PST (UTC-8): midnight is 08:00 UTC the next day.
        (utc(2026, 11, 30, 22, 0), utc(2026, 12, 1, 8, 0), "(08:00 UTC), in 10 h 00 min"),
        # 05:00 PDT (UTC-7): midnight is 07:00 UTC.
        (utc(2026, 7, 1, 12, 0), utc(2026, 7, 2, 7, 0), "(07:00 UTC), in 19 h 00 min"),
        # One second before midnight Pacific.
        (utc(2026, 12, 1, 7, 59, 59), utc(2026, 12, 1, 8, 0), "in 0 h 00 min"),
    ],
)
def test_the_day_ends_at_midnight_pacific_time(now: float, midnight: float, words: str) -> None:
    assert next_pacific_midnight(now) == midnight
    assert describe_reset(now).startswith("at midnight Pacific time (")
    assert words in describe_reset(now)


# -- the admission object -----------------------------------------------------------------


async def test_a_request_larger_than_the_tpm_fails_at_once_without_waiting() -> None:
    admission = QuotaAdmission(Quota(tpm=1000))
    with pytest.raises(sr.FatalError) as caught:
        await asyncio.wait_for(admission.admit("gemini-2.5-flash", 1001), 1.0)
    assert caught.value.sent is False
    message = str(caught.value)
    assert "1,001 estimated input tokens exceed gemini-2.5-flash's whole quota of 1,000" in message
    assert "no wait can admit it" in message


async def test_a_spent_day_quota_stops_the_run_and_says_when_it_resets() -> None:
    now = utc(2026, 11, 30, 22, 0)
    admission = QuotaAdmission(Quota(rpd=2), now=lambda: now)
    for _ in range(2):
        (await admission.admit("gemini-2.5-pro", 10))(None)
    with pytest.raises(sr.StopRun) as caught:
        await admission.admit("gemini-2.5-pro", 10)
    assert str(caught.value) == (
        "the requests-per-day quota of gemini-2.5-pro (2 requests, quota rpd) is spent; "
        "it resets at midnight Pacific time (08:00 UTC), in 10 h 00 min"
    )
    # Another model has its own day.
    (await admission.admit("gemini-2.5-flash", 10))(None)


async def test_concurrent_slots_are_held_until_the_request_is_settled() -> None:
    admission = QuotaAdmission(Quota(concurrent=2))
    first = await admission.admit("m", 1)
    second = await admission.admit("m", 1)
    third = asyncio.ensure_future(admission.admit("m", 1))
    await asyncio.sleep(0.05)
    assert not third.done()
    # Another model has its own slots.
    (await asyncio.wait_for(admission.admit("other", 1), 1.0))(None)
    first(None)
    first(None)  # settling twice frees one slot, once
    permit = await asyncio.wait_for(third, 1.0)
    fourth = asyncio.ensure_future(admission.admit("m", 1))
    await asyncio.sleep(0.05)
    assert not fourth.done()
    fourth.cancel()
    with pytest.raises(asyncio.CancelledError):
        await fourth
    second(None)
    permit(None)
    # A cancelled wait took no slot: two are free again.
    a, b = await admission.admit("m", 1), await asyncio.wait_for(admission.admit("m", 1), 1.0)
    a(None)
    b(None)


async def test_the_real_usage_corrects_later_estimates() -> None:
    admission = QuotaAdmission(Quota(tpm=10_000))
    permit = await admission.admit("m", 100)
    assert permit.charged == 100
    permit(sr.Usage(input_tokens=300))  # the local estimate was a third of the truth
    # The ratio moves a fifth of the way (1 -> 1.4), and the 200 uncounted tokens are owed.
    second = await admission.admit("m", 100)
    assert second.charged == 140
    second(sr.Usage(input_tokens=140))
    third = await admission.admit("m", 100)
    assert third.charged == 140  # (1.4 + 0.2 * (1.4 - 1.4))
    third(None)


def test_bad_admission_options_are_refused() -> None:
    with pytest.raises(ValueError, match="minute"):
        QuotaAdmission(Quota(rpm=1), minute=0)
    with pytest.raises(ValueError, match="margin"):
        QuotaAdmission(Quota(rpm=1), minute=2, margin=2.0)
    with pytest.raises(ValueError, match="strategy"):
        QuotaAdmission(Quota(rpm=1), strategy="fixed")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Quota"):
        QuotaAdmission({"rpm": 1})  # type: ignore[arg-type]


# -- the runner's Admits hook ------------------------------------------------------------


class Paced:
    """A strategy whose admission waits on an event per item, recording what it saw."""

    def __init__(self, block: set[str], stop_on: str | None = None) -> None:
        self.block = block
        self.stop_on = stop_on
        self.sent: list[str] = []
        self.settled: list[tuple[str, sr.Usage | None]] = []
        self.waiting = asyncio.Event()

    async def admit(self, request: sr.Request, ctx: sr.StageContext) -> Any:
        if request.item_id in self.block:
            self.waiting.set()
            await asyncio.Event().wait()  # never admitted

        def settle(usage: sr.Usage | None) -> None:
            self.settled.append((request.item_id, usage))

        return settle

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        if request.item_id == self.stop_on:
            await self.waiting.wait()  # the other item is waiting for admission by now
            raise sr.StopRun("the key was rejected")
        self.sent.append(request.item_id)
        return sr.Response('{"ok": true}', sr.Usage(input_tokens=7))

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None


async def test_a_stop_abandons_the_admission_wait_and_sends_nothing_more() -> None:
    strategy = Paced(block={"b"}, stop_on="a")
    runner = sr.Runner(sr.Plan.ladder(), strategy, concurrency=2)
    with pytest.raises(sr.RunStopped) as caught:
        await asyncio.wait_for(runner.run([("a", "x"), ("b", "y"), ("c", "z")]), 5.0)
    batch = caught.value.batch
    assert batch is not None
    by_id = {r.id: r for r in batch.results}
    assert by_id["b"].status is sr.ItemStatus.CANCELLED
    assert by_id["b"].attempts == ()  # its wait was given up: no attempt, nothing sent
    assert "c" not in by_id
    assert strategy.sent == []
    # Settled once, with no answer: the stop answered nothing.
    assert strategy.settled == [("a", None)]


async def test_a_deadline_passing_in_the_admission_wait_ends_the_item() -> None:
    strategy = Paced(block={"slow"})
    runner = sr.Runner(attrs.evolve(sr.Plan.ladder(), deadline=0.2), strategy, concurrency=2)
    batch = await asyncio.wait_for(runner.run([("slow", "x"), ("fast", "y")]), 5.0)
    by_id = {r.id: r for r in batch.results}
    assert by_id["slow"].status is sr.ItemStatus.EXHAUSTED
    assert by_id["slow"].reason == "deadline passed"
    assert by_id["slow"].prompts == 0
    assert by_id["fast"].ok
    assert strategy.sent == ["fast"]
    assert strategy.settled == [("fast", sr.Usage(input_tokens=7))]


async def test_an_admission_that_refuses_fails_the_item_without_spending_a_prompt() -> None:
    class Oversized(Paced):
        async def admit(self, request: sr.Request, ctx: sr.StageContext) -> Any:
            raise sr.FatalError("too large for the quota", sent=False)

    strategy = Oversized(block=set())
    runner = sr.Runner(sr.Plan.ladder(), strategy)
    batch = await runner.run([("a", "x")])
    (result,) = batch.results
    assert result.status is sr.ItemStatus.FAILED
    assert result.prompts == 0
    assert result.attempts[0].error == "too large for the quota"
    assert strategy.sent == []
