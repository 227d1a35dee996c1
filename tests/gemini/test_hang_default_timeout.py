"""The issue's example: an emulator ``hang`` with no ``plan.timeout`` ends by the default timeout.

The real SDK talks HTTP to the emulator, which never answers the first request.
The default is a guard in real seconds (600, shortened here), so it fires even
under a virtual clock that nothing moves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from google import genai

import stagedretry as sr
from stagedretry import _plan
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiStrategy
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import MODEL, Book


async def test_a_hang_without_a_plan_timeout_ends_by_the_default(
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_plan, "DEFAULT_TIMEOUT", 0.5)
    emulator = start_emulator(seed=3, invalid_rate=0.0, invalid_rate_slope=0.0)
    emulator.inject(Fault(kind=FaultKind.HANG, times=1))
    clock = VirtualClock()
    plan = sr.Plan.from_dict({"max_prompts": 2, "stages": [{"name": "full"}]})
    assert plan.timeout is None  # nothing declared
    runner = sr.Runner(
        plan,
        GeminiStrategy(connect(emulator), MODEL, response_schema=Book),
        validator=sr.validators.pydantic(Book),
        clock=clock,
    )
    async with asyncio.timeout(20):  # without the guard: a failure here, not a hang
        batch = await runner.run([("book-0", "Catalogue book number 0.")])
    result = batch.results[0]
    hung, answered = result.attempts
    assert hung.outcome is sr.OutcomeKind.TRANSIENT
    assert answered.outcome is sr.OutcomeKind.SUCCEEDED
    assert result.status is sr.ItemStatus.SUCCEEDED
    assert emulator.ledger.requests[0].fault is FaultKind.HANG
