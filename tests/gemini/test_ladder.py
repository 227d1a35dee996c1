"""The default four-stage ladder over the emulator: partial stages repair, and cost less.

With invalid fields injected by the simulated model, items climb
``full@0 -> partial@0 -> full@0.25 -> partial@0.25``; a partial request asks only for
the failed fields (its response schema holds nothing else) and costs a fraction of a
full request.  Request bodies are read off the wire by a recording httpx2 transport.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pydantic
import pytest
from google import genai

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache
from strategies.gemini.emulator import GeminiEmulator

from .conftest import MODEL, Recorder, cached_runner, doc

SYSTEM = "You catalogue books for a library; answer with the record. " + doc(1500, "shelf")

# Gemini 2.5 Flash list prices per million tokens: input, cached input, output.
PRICE_INPUT, PRICE_CACHED, PRICE_OUTPUT = 0.30, 0.03, 2.50


class Record(pydantic.BaseModel):
    title: str
    author: str
    year: int
    pages: int
    publisher: str
    language: str
    summary: str
    edition: int


FIELDS = list(Record.model_fields)


@pytest.fixture
def setup(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
) -> tuple[GeminiEmulator, genai.Client, Recorder]:
    # One field in ten is invalid at temperature 0, one in four at 0.25... enough to
    # send many items down the ladder, few enough for most to come back up.
    emulator = start_on_clock(seed=21, invalid_rate=0.1, invalid_rate_slope=0.2)
    client, recorder = recording_client(emulator)
    return emulator, client, recorder


def record_runner(client: genai.Client, clock: VirtualClock, *, concurrency: int) -> sr.Runner:
    """The default ladder asking for a :class:`Record`, every stage reading one shared cache."""
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    return cached_runner(client, cache, clock, model=Record, concurrency=concurrency)


def records(n: int) -> list[tuple[str, str]]:
    return [(f"r{i}", f"Catalogue record {i}.") for i in range(n)]


def cost(usage: sr.Usage) -> float:
    """Dollars per million such attempts, at list prices."""
    return (
        PRICE_INPUT * usage.fresh_input_tokens
        + PRICE_CACHED * usage.cached_tokens
        + PRICE_OUTPUT * (usage.output_tokens + usage.thinking_tokens)
    )


async def test_items_recover_through_partial_stages_that_ask_only_the_failed_fields(
    setup: tuple[GeminiEmulator, genai.Client, Recorder], virtual_clock: VirtualClock
) -> None:
    emulator, client, recorder = setup
    # One worker: attempts and recorded bodies then line up one to one.
    batch = await record_runner(client, virtual_clock, concurrency=1).run(records(150))

    assert batch.items == 150
    per_stage = batch.successes_per_stage
    assert per_stage.get("partial_t0", 0) > 20
    assert batch.succeeded >= 140
    for result in batch.results:
        if result.ok:
            assert isinstance(result.output, Record)

    attempts = [a for r in batch.results for a in r.attempts]
    assert len(attempts) == len(recorder.bodies) == emulator.ledger.generate_calls
    full: list[sr.Attempt] = []
    partial: list[sr.Attempt] = []
    for attempt, body in zip(attempts, recorder.bodies, strict=True):
        schema = body["generationConfig"]["responseJsonSchema"]
        assert body["cachedContent"]  # every stage reads the shared cache
        if attempt.fields is None:
            full.append(attempt)
            assert list(schema["properties"]) == FIELDS
            continue
        partial.append(attempt)
        # Only the failed fields are asked for, and only they come back.
        asked = [path for (path,) in attempt.fields]  # the fields are flat: one key each
        assert list(schema["properties"]) == asked
        assert set(schema["required"]) == set(asked)
        assert len(asked) < len(FIELDS)
        assert attempt.meta is not None
        answer = json.loads(attempt.meta.raw.text)
        assert set(answer) == set(asked)
    assert len(partial) > 20

    mean_full = sum(cost(a.usage) for a in full) / len(full)
    mean_partial = sum(cost(a.usage) for a in partial) / len(partial)
    out_full = sum(a.usage.output_tokens for a in full) / len(full)
    out_partial = sum(a.usage.output_tokens for a in partial) / len(partial)
    assert out_partial < 0.4 * out_full
    assert mean_partial < 0.75 * mean_full, (mean_partial, mean_full)

    u = batch.usage
    led = emulator.ledger
    assert (u.input_tokens, u.cached_tokens, u.output_tokens) == (
        led.prompt_tokens,
        led.cached_tokens,
        led.candidates_tokens,
    )


async def test_a_partial_stage_keeps_the_valid_fields_of_the_first_answer(
    setup: tuple[GeminiEmulator, genai.Client, Recorder], virtual_clock: VirtualClock
) -> None:
    _, client, _ = setup
    batch = await record_runner(client, virtual_clock, concurrency=8).run(records(80))
    repaired = [
        r for r in batch.results if r.ok and r.final_stage == "partial_t0" and len(r.attempts) == 2
    ]
    assert repaired
    for result in repaired:
        first, fix = result.attempts
        assert first.meta is not None
        assert fix.fields is not None
        original = json.loads(first.meta.raw.text)
        output = result.output.model_dump()
        for name in FIELDS:
            if (name,) not in fix.fields:
                assert output[name] == original[name]  # kept, not asked again
