"""The issue's example: an emulator ``hang`` with no ``plan.timeout`` ends by the default timeout.

The real SDK talks HTTP to the emulator, which never answers the first request;
the runner's clock is virtual, so the 600 s default passes as soon as the loop
has been quiet for a moment of real time.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google import genai

import stagedretry as sr
from stagedretry._plan import DEFAULT_TIMEOUT
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiStrategy
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import MODEL, Book


async def test_a_hang_without_a_plan_timeout_ends_by_the_default(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    emulator = start_emulator(seed=3, invalid_rate=0.0, invalid_rate_slope=0.0)
    emulator.inject(Fault(kind=FaultKind.HANG, times=1))
    clock = VirtualClock(real_idle=0.2)
    plan = sr.Plan.from_dict({"max_prompts": 2, "stages": [{"name": "full"}]})
    assert plan.timeout == DEFAULT_TIMEOUT  # nothing declared
    runner = sr.Runner(
        plan,
        GeminiStrategy(connect(emulator), MODEL, response_schema=Book),
        validator=sr.validators.pydantic(Book),
        clock=clock,
    )
    batch = await runner.run([("book-0", "Catalogue book number 0.")])
    result = batch.results[0]
    hung, answered = result.attempts
    assert hung.outcome is sr.OutcomeKind.TRANSIENT
    assert hung.duration == pytest.approx(DEFAULT_TIMEOUT)
    assert answered.outcome is sr.OutcomeKind.SUCCEEDED
    assert result.status is sr.ItemStatus.SUCCEEDED
    assert emulator.ledger.requests[0].fault is FaultKind.HANG
