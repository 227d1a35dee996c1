"""Flex first, Standard after, end to end (issue 12): the real SDK over HTTP against the emulator.

One run of a plan whose first stage is on Flex meets each way off it: a shed request
(``on.shed``), a stage that has spent its ``max_attempts`` (``on.give_up``) and an
item whose deadline nears while it waits (``expedite``).  The emulator's ledger shows
the tier of every request, and the bill split by tier (as the cost report splits it)
adds up, tier by tier, to what the emulator billed at that tier.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import pytest
from google import genai

import stagedretry as sr
from stagedretry.cli._tiers import tier_costs, usage_by_tier
from stagedretry.cli.pipeline import default_price
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiStrategy
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import MODEL, Book, items, ladder_runner

K = sr.OutcomeKind
DEADLINE = 100.0
PLAN = sr.Plan(
    [
        sr.Stage(
            "full_flex",
            "full",
            {"temperature": 0.0, "service_tier": "flex"},
            max_attempts=1,
            on_shed="full_std",
            on_give_up="full_std",
            expedite=sr.Expedite(within=30.0, to="full_std"),
        ),
        sr.Stage("full_std", "full", {"temperature": 0.0}),
        sr.Stage("partial_std", "partial", {"temperature": 0.0}),
    ],
    max_prompts=4,
    deadline=DEADLINE,
)


async def test_flex_falls_back_to_standard_on_a_shed_a_give_up_and_a_near_deadline(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    # With a deadline in the plan, a request's wait has a timer: the clock must see the
    # loopback HTTP in flight as activity, or it would jump to that timer.
    clock = VirtualClock(real_idle=0.2)
    emulator = start_emulator(seed=3, invalid_rate=0.0, clock=clock.time)
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book)
    runner = ladder_runner(strategy, clock, plan=PLAN)
    # Each item meets one fault on its first request: book-0's is shed, book-1's fails (500)
    # on its only Flex attempt, book-2's is refused for 90 s, which leaves 10 s of its 100 s
    # deadline (within the 30 s window); book-3's is served.
    faults = [
        Fault(kind=FaultKind.UNAVAILABLE, times=1),
        Fault(kind=FaultKind.INTERNAL, times=1),
        Fault(kind=FaultKind.RATE_LIMIT, times=1, retry_delay=90.0),
        None,
    ]
    results: list[sr.ItemResult[Book]] = []
    transitions: Counter[str] = Counter()
    for item, fault in zip(items(4), faults, strict=True):
        emulator.clear_faults()
        if fault is not None:
            emulator.inject(fault)
        batch = await runner.run([item])
        results.extend(batch.results)
        transitions.update(batch.transitions)

    paths = {r.id: [(a.stage, a.outcome) for a in r.attempts] for r in results}
    assert paths == {
        "book-0": [("full_flex", K.SHED), ("full_std", K.SUCCEEDED)],
        "book-1": [("full_flex", K.TRANSIENT), ("full_std", K.SUCCEEDED)],
        "book-2": [("full_flex", K.RATE_LIMITED), ("full_std", K.SUCCEEDED)],
        "book-3": [("full_flex", K.SUCCEEDED)],
    }
    assert {r.status for r in results} == {sr.ItemStatus.SUCCEEDED}
    assert (transitions["shed"], transitions["give_up"]) == (1, 1)
    assert transitions["expedite"] == 1
    # The shed and the refusal spent no prompt; the 500 did (the service may have billed it).
    assert [r.prompts for r in results] == [1, 2, 1, 1]

    # The ledger: the tier each request asked for (None: none sent, so standard), and what
    # each Flex request met.
    sent = [r for r in emulator.ledger.requests if r.path.endswith(":generateContent")]
    assert [r.service_tier for r in sent] == ["flex", None, "flex", None, "flex", None, "flex"]
    assert [r.status for r in sent] == [503, 200, 500, 200, 429, 200, 200]

    # The bill split by tier, as the cost report splits it, is what the emulator billed
    # at each tier; Flex costs half of standard for the same tokens.
    by_tier = usage_by_tier(results)
    assert set(by_tier) == {"flex", "standard"}
    for tier, usage in by_tier.items():
        billed = emulator.ledger.tier(tier)
        assert (usage.input_tokens, usage.output_tokens) == (
            billed.prompt_tokens,
            billed.candidates_tokens,
        )
    choice = default_price(MODEL)
    assert choice is not None
    costs = {c.tier: c for c in tier_costs(by_tier, choice.tier, choice.price)}
    assert costs["standard"].usd == costs["standard"].at_standard > 0
    assert costs["flex"].usd == pytest.approx(costs["flex"].at_standard / 2)
