"""GeminiStrategy over the real SDK and real HTTP: what goes on the wire, what comes back.

Request bodies are read off the wire by a recording httpx2 transport (the SDK's own
httpx2 path, forced the way ``make_client`` forces it); nothing inside the SDK is patched.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
from google import genai
from google.genai import types

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.backend import CachePrice
from strategies.gemini import (
    STAGE_PARAMS,
    CacheHandle,
    GeminiContextCache,
    GeminiStrategy,
    response_meta,
)
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator, make_client

from .conftest import MODEL, Book, Recorder, billed, doc, items, ladder_runner, usage_of

SYSTEM = "You are a meticulous librarian; answer with the book's record. " + doc(1200, "shelf")


BOOK_FIELDS = ["title", "author", "year", "pages"]


@pytest.fixture
def recorded(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
) -> tuple[GeminiEmulator, genai.Client, Recorder]:
    """An emulator on the virtual clock, and a client whose requests are recorded."""
    emulator = start_on_clock(seed=3)
    client, recorder = recording_client(emulator)
    return emulator, client, recorder


# -- what goes on the wire ----------------------------------------------------------------------


async def test_request_names_the_cache_and_carries_no_instructions(
    recorded: tuple[GeminiEmulator, genai.Client, Recorder], virtual_clock: VirtualClock
) -> None:
    emulator, client, recorder = recorded
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    batch = await ladder_runner(strategy, virtual_clock, cache=cache).run(items(3))
    assert batch.succeeded == 3
    (name,) = emulator.cache_names()
    assert len(recorder.bodies) == 3
    for body in recorder.bodies:
        assert body["cachedContent"] == name
        assert "systemInstruction" not in body
        assert "tools" not in body
        config = body["generationConfig"]
        assert config["temperature"] == 0.0
        assert config["responseMimeType"] == "application/json"
        assert list(config["responseJsonSchema"]["properties"]) == BOOK_FIELDS
    assert recorder.paths == [f"/v1beta/models/{MODEL}:generateContent"] * 3


async def test_stage_params_map_onto_generation_config(
    recorded: tuple[GeminiEmulator, genai.Client, Recorder], virtual_clock: VirtualClock
) -> None:
    _, client, recorder = recorded
    params = {
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 20,
        "max_output_tokens": 400,
        "seed": 11,
        "stop_sequences": ("END",),
        "presence_penalty": 0.25,
        "frequency_penalty": 0.5,
        "thinking_budget": 32,
    }
    plan = sr.Plan(stages=[sr.Stage("only", "full", params)], max_prompts=1)
    strategy = GeminiStrategy(client, MODEL, response_schema=Book, system_instruction="Be brief.")
    batch = await ladder_runner(strategy, virtual_clock, plan=plan).run(items(1))
    assert batch.items == 1
    (body,) = recorder.bodies
    config = body["generationConfig"]
    assert config["temperature"] == 0.5
    assert config["topP"] == 0.9
    assert config["topK"] == 20
    assert config["maxOutputTokens"] == 400
    assert config["seed"] == 11
    assert config["stopSequences"] == ["END"]
    assert config["presencePenalty"] == 0.25
    assert config["frequencyPenalty"] == 0.5
    thinking = config["thinkingConfig"]
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 32
    assert body["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert "cachedContent" not in body
    # The thinking tokens the emulator spent are the thinking tokens recorded.
    attempt = batch.results[0].attempts[0]
    assert attempt.usage.thinking_tokens > 0
    assert {"temperature", "model", "thinking_budget"} <= STAGE_PARAMS


async def test_a_stage_on_another_model_sends_the_instructions_inline_when_a_cache_does_not_pay(
    recorded: tuple[GeminiEmulator, genai.Client, Recorder], virtual_clock: VirtualClock
) -> None:
    emulator, client, recorder = recorded
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    plan = sr.Plan(
        stages=[sr.Stage("pro", "full", {"temperature": 0.0, "model": "gemini-2.5-pro"})],
        max_prompts=1,
    )
    # Two requests cannot pay for a pro cache kept an hour (break-even: about five).
    strategy = GeminiStrategy(
        client,
        MODEL,
        cache=cache,
        response_schema=Book,
        cache_prices={"gemini-2.5-pro": CachePrice(1.25, 0.125, 4.5)},
        expected_items=2,
    )
    batch = await ladder_runner(strategy, virtual_clock, cache=cache, plan=plan).run(items(2))
    assert batch.succeeded == 2
    assert recorder.paths[-2:] == ["/v1beta/models/gemini-2.5-pro:generateContent"] * 2
    for body in recorder.bodies:
        # The flash cache belongs to another model: naming it would be refused.
        assert "cachedContent" not in body
        assert body["systemInstruction"]["parts"][0]["text"] == SYSTEM
    assert batch.usage.cached_tokens == 0
    # The one cache made is the job's own (for flash); none for pro.
    listed = client.caches.list()
    assert [str(c.model) for c in listed] == [f"models/{MODEL}"]
    assert usage_of(batch) == billed(emulator)
    (choice,) = strategy.cache_choices()
    assert (choice.model, choice.stages, choice.cached) == ("gemini-2.5-pro", ("pro",), False)
    assert choice.reason is not None
    assert "inline vs" in choice.reason


async def test_cache_contents_go_inline_ahead_of_the_prompt_when_not_cached(
    recorded: tuple[GeminiEmulator, genai.Client, Recorder], virtual_clock: VirtualClock
) -> None:
    emulator, client, recorder = recorded
    document = doc(300, "chapter")
    cache = GeminiContextCache(
        client, MODEL, system_instruction="Answer from the document.", contents=[document]
    )
    plan = sr.Plan(stages=[sr.Stage("pro", "full", {"model": "gemini-2.5-pro"})], max_prompts=1)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    batch = await ladder_runner(strategy, virtual_clock, cache=cache, plan=plan).run(items(1))
    assert batch.items == 1
    (body,) = recorder.bodies
    texts = [part["text"] for content in body["contents"] for part in content["parts"]]
    assert texts == [document, "Catalogue book number 0."]
    assert emulator.ledger.caches_created == 0  # too small for the emulator's 1,024 minimum


# -- what comes back ----------------------------------------------------------------------------


async def test_every_attempt_keeps_typed_metadata_and_usage(
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_emulator(seed=5, clock=virtual_clock.time)
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    batch = await ladder_runner(strategy, virtual_clock, cache=cache).run(items(40))
    assert batch.items == 40
    invalid = 0
    for result in batch.results:
        for attempt in result.attempts:
            meta = attempt.meta
            assert meta is not None
            assert meta.finish_reason == "STOP"
            assert meta.model_version == MODEL
            assert meta.response_id
            assert meta.safety_ratings["HARM_CATEGORY_HARASSMENT"] == "NEGLIGIBLE"
            assert not meta.blocked
            assert isinstance(meta.raw, types.GenerateContentResponse)
            assert attempt.usage.cached_tokens > 0
            assert attempt.usage.input_tokens > attempt.usage.cached_tokens
            invalid += attempt.outcome is sr.OutcomeKind.INVALID
    assert invalid > 0  # failed attempts keep their metadata too
    assert usage_of(batch) == billed(emulator)


@pytest.mark.parametrize(
    ("kind", "finish", "category", "blocked"),
    [
        (FaultKind.BLOCKED_PROMPT, None, "HARM_CATEGORY_HARASSMENT", True),
        (FaultKind.SAFETY_STOP, "SAFETY", "HARM_CATEGORY_DANGEROUS_CONTENT", False),
    ],
)
async def test_a_safety_refusal_is_invalid_and_keeps_its_ratings(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
    kind: FaultKind,
    finish: str | None,
    category: str,
    blocked: bool,
) -> None:
    emulator = start_on_clock(seed=5)
    emulator.inject(Fault(kind=kind, at=1))
    client = connect(emulator)
    strategy = GeminiStrategy(client, MODEL, response_schema=Book, system_instruction=SYSTEM)
    batch = await ladder_runner(strategy, virtual_clock, concurrency=1).run(items(1))
    (result,) = batch.results
    assert result.ok
    first, second = result.attempts
    assert first.outcome is sr.OutcomeKind.INVALID
    assert first.counted
    meta = first.meta
    assert meta is not None
    assert meta.blocked is blocked
    assert meta.block_reason == ("SAFETY" if blocked else None)
    assert meta.finish_reason == finish
    assert meta.safety_ratings[category] == "HIGH"
    assert first.usage.input_tokens > 0  # the refusal was billed, and is counted
    assert second.outcome is sr.OutcomeKind.SUCCEEDED
    assert usage_of(batch) == billed(emulator)


async def test_max_tokens_truncation_fails_validation_with_its_finish_reason(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=5)
    client = connect(emulator)
    plan = sr.Plan(
        stages=[
            sr.Stage("tight", "full", {"max_output_tokens": 8}),
            sr.Stage("roomy", "full", {"max_output_tokens": 512}),
        ],
        max_prompts=2,
    )
    strategy = GeminiStrategy(client, MODEL, response_schema=Book, system_instruction=SYSTEM)
    batch = await ladder_runner(strategy, virtual_clock, plan=plan).run(items(3))
    assert batch.succeeded == 3
    for result in batch.results:
        cut, whole = result.attempts
        assert cut.outcome is sr.OutcomeKind.INVALID
        assert cut.meta is not None
        assert cut.meta.finish_reason == "MAX_TOKENS"
        assert cut.usage.output_tokens == 8
        assert whole.meta is not None
        assert whole.meta.finish_reason == "STOP"
    assert usage_of(batch) == billed(emulator)


def test_response_meta_reads_enum_names_and_prompt_feedback() -> None:
    response = types.GenerateContentResponse.model_validate(
        {
            "candidates": [
                {
                    "finish_reason": "RECITATION",
                    "safety_ratings": [
                        {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "LOW"}
                    ],
                }
            ],
            "prompt_feedback": {
                "safety_ratings": [
                    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
                    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "MEDIUM"},
                ]
            },
            "model_version": "m-1",
            "response_id": "r-1",
        }
    )
    meta = response_meta(response)
    assert meta.finish_reason == "RECITATION"
    # The answer's own rating wins over the prompt's for the same category.
    assert dict(meta.safety_ratings) == {
        "HARM_CATEGORY_HATE_SPEECH": "LOW",
        "HARM_CATEGORY_HARASSMENT": "MEDIUM",
    }
    assert not meta.blocked
    assert (meta.model_version, meta.response_id) == ("m-1", "r-1")


# -- construction and misuse --------------------------------------------------------------------


async def test_a_client_with_sdk_retries_is_warned_about(
    start_emulator: Callable[..., GeminiEmulator],
) -> None:
    emulator = start_emulator(seed=1)
    client = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url=emulator.base_url,
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=3),
        ),
    )
    try:
        with pytest.warns(UserWarning, match="retries on its own") as record:
            GeminiStrategy(client, MODEL)
        assert "attempts=1" in str(record[0].message)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per client: the cache adds none
            GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    finally:
        client.close()


async def test_a_system_instruction_beside_a_cache_is_refused(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    client = connect(start_emulator(seed=1))
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    with pytest.raises(ValueError, match="give the system instruction to the GeminiContextCache"):
        GeminiStrategy(client, MODEL, cache=cache, system_instruction="also this")
    with pytest.raises(ValueError, match="http_timeout"):
        GeminiStrategy(client, MODEL, http_timeout=0)
    with pytest.raises(TypeError, match="pydantic model class or a dict"):
        GeminiStrategy(client, MODEL, response_schema=Book(title="t", author="a", year=1, pages=2))


async def test_the_strategys_cache_is_shared_without_being_passed_to_the_runner(
    start_emulator: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_emulator(seed=1, clock=virtual_clock.time)
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    batch = await ladder_runner(strategy, virtual_clock).run(items(8))  # no resources=[cache]
    assert batch.counts[sr.ItemStatus.SUCCEEDED] + batch.counts[sr.ItemStatus.EXHAUSTED] == 8
    assert emulator.ledger.caches_created == 1
    assert all(a.usage.cached_tokens > 0 for r in batch.results for a in r.attempts)


async def test_unknown_and_bad_stage_params_fail_when_the_runner_is_built(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    """A typo or a bad value is a PlanError naming its path, before any request is sent."""
    emulator = start_on_clock(seed=1)
    client = connect(emulator)
    strategy = GeminiStrategy(client, MODEL, response_schema=Book)
    typo = sr.Plan(stages=[sr.Stage("s", "full", {"temprature": 0.3})], max_prompts=1)
    with pytest.raises(sr.PlanError) as caught:
        ladder_runner(strategy, virtual_clock, plan=typo)
    assert caught.value.path == "plan.stages[0].params.temprature"
    assert "did you mean 'temperature'?" in caught.value.problem

    hot = sr.Plan(stages=[sr.Stage("s", "full", {"temperature": "hot"})], max_prompts=1)
    with pytest.raises(sr.PlanError) as caught:
        ladder_runner(strategy, virtual_clock, plan=hot)
    assert str(caught.value) == (
        "plan.stages[0].params.temperature: expected a number in [0, 2], got the string 'hot'"
    )
    assert emulator.ledger.requests == ()


def test_cache_handle_is_inline_without_a_name() -> None:
    assert CacheHandle(name=None, model="models/m", display_name="d").inline
    assert not CacheHandle(name="cachedContents/x", model="models/m", display_name="d").inline


async def test_connect_builds_a_client_with_sdk_retries_off(
    start_emulator: Callable[..., GeminiEmulator],
) -> None:
    """``connect`` names the API version and leaves retrying to the engine: one 503, one request."""
    from google.genai import errors

    from strategies.gemini import connect, disconnect

    emulator = start_emulator(seed=1)
    emulator.inject(Fault(kind=FaultKind.UNAVAILABLE, at=frozenset({1})))
    client = connect("secret-key", base_url=emulator.base_url)
    try:
        with pytest.raises(errors.ServerError):
            await client.aio.models.generate_content(model=MODEL, contents="hi")
        assert [r.path for r in emulator.ledger.requests] == [
            f"/v1beta/models/{MODEL}:generateContent"
        ]
    finally:
        await disconnect(client)


def test_fingerprint_data_follows_model_schema_and_instructions() -> None:
    # The client is never called: building the strategy sends nothing.
    client = make_client("http://127.0.0.1:9")

    def fingerprint(model: str = MODEL, **options: Any) -> str:
        options.setdefault("response_schema", Book)
        strategy = GeminiStrategy(client, model, **options)
        return sr.Runner(sr.Plan.ladder(), strategy).fingerprint

    plain = fingerprint()
    assert fingerprint() == plain
    assert fingerprint(model="gemini-2.5-pro") != plain
    assert fingerprint(response_schema={"type": "OBJECT"}) != plain
    assert fingerprint(system_instruction="be brief") != plain
    assert fingerprint(system_instruction="be brief") != fingerprint(system_instruction="be long")
    assert fingerprint(http_timeout=30.0) == plain
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    other = GeminiContextCache(client, MODEL, system_instruction=SYSTEM + " Be brief.")
    assert fingerprint(cache=cache) == fingerprint(
        cache=GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    )
    assert fingerprint(cache=cache) != fingerprint(cache=other)
