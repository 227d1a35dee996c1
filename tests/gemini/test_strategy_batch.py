"""GeminiStrategy's batch jobs end to end: the real SDK over HTTP against the emulator."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from google import genai
from google.genai import errors

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache, GeminiStrategy
from strategies.gemini._batch import INLINE_LIMIT, read_line
from strategies.gemini.emulator import Api, Fault, FaultKind, GeminiEmulator, make_vertex_client

from .conftest import MODEL, Book, Recorder

PLAN = sr.Plan.ladder()


def entries(
    prompts: Sequence[str],
    *,
    stage: int = 0,
    attempt: int = 1,
    clock: VirtualClock | None = None,
    plan: sr.Plan = PLAN,
    fields: tuple[Any, ...] | None = None,
) -> list[sr.BatchEntry]:
    """One entry per prompt, at *stage* of *plan*, keyed by its item's id."""
    chosen = plan.stages[stage]
    made = []
    for i, prompt in enumerate(prompts):
        item = sr.WorkItem(f"item-{i}", prompt)
        state = sr.ItemState(item, chosen.name, len(plan.stages), 0.0)
        ctx = sr.StageContext(item, state, chosen, plan, {}, clock or VirtualClock(), attempt)
        request = sr.Request(item.id, chosen, prompt, fields)
        made.append(sr.BatchEntry(key=item.id, request=request, ctx=ctx))
    return made


def camel(value: Any) -> Any:
    """*value* with every key in lowerCamelCase: proto3 JSON reads either spelling, and the
    SDK sends some nested keys (``thinking_budget``, a schema dict's own) as given."""
    if isinstance(value, dict):
        return {
            re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


PROMPTS = [f"Catalogue book number {i}." for i in range(4)]


@pytest.fixture
def emu(start_on_clock: Callable[..., GeminiEmulator]) -> GeminiEmulator:
    return start_on_clock(11, batch_completion=60.0)


@pytest.fixture
def client(connect: Callable[..., genai.Client], emu: GeminiEmulator) -> genai.Client:
    return connect(emu)


def strategy_of(client: genai.Client, **options: Any) -> GeminiStrategy:
    return GeminiStrategy(client, MODEL, response_schema=Book, **options)


async def finish(strategy: GeminiStrategy, name: str, clock: VirtualClock) -> sr.BatchJobState:
    first = await strategy.poll_batch(name)
    assert not first.done
    assert first.state == "JOB_STATE_PENDING"
    assert not first.answers
    clock.advance(60.0)
    return await strategy.poll_batch(name)


async def test_the_strategy_submits_batch_jobs(client: genai.Client) -> None:
    assert isinstance(strategy_of(client), sr.SubmitsBatchJobs)


async def test_inline_job_answers_each_entry_as_generate_would(
    client: genai.Client,
    emu: GeminiEmulator,
    virtual_clock: VirtualClock,
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
) -> None:
    strategy = strategy_of(client)
    batch = entries(PROMPTS)
    name = await strategy.submit_batch(batch)
    assert [r.source for r in emu.ledger.batch_jobs] == ["inline"]
    state = await finish(strategy, name, virtual_clock)
    assert state.done
    assert state.state == "JOB_STATE_SUCCEEDED"
    assert state.name == name
    assert set(state.answers) == {e.key for e in batch}
    # The same requests sent one by one: the same bodies, the same answers.
    recorded, recorder = recording_client(emu)
    direct = strategy_of(recorded)
    for entry in batch:
        answer = state.answers[entry.key]
        assert isinstance(answer, sr.Response)
        assert answer.meta is not None
        assert answer.meta.service_tier == "batch"
        alone = await direct.generate(entry.request, entry.ctx)
        assert (answer.text, answer.usage) == (alone.text, alone.usage)
        Book.model_validate_json(answer.text or "")
    sent = [{k: v for k, v in r.items() if k != "model"} for r in emu.batch_requests(name)]
    assert sent == recorder.bodies
    assert emu.ledger.batch_calls == len(batch)


async def test_over_the_inline_limit_the_requests_go_as_a_jsonl_file(
    connect: Callable[..., genai.Client], emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    inline = strategy_of(connect(emu), batch_lookback=0)
    by_file = strategy_of(connect(emu), batch_inline_limit=1)
    batch = entries(PROMPTS)
    first = await inline.submit_batch(batch)
    second = await by_file.submit_batch(entries(PROMPTS, attempt=2))
    assert [r.source for r in emu.ledger.batch_jobs] == ["inline", "file"]
    assert emu.ledger.files_uploaded == 1
    # The JSONL lines are the requests the SDK sends inlined (less the model it adds).
    inlined = [{k: v for k, v in r.items() if k != "model"} for r in emu.batch_requests(first)]
    assert list(emu.batch_requests(second)) == inlined
    virtual_clock.advance(60.0)
    one, two = await inline.poll_batch(first), await by_file.poll_batch(second)
    assert set(two.answers) == {e.key for e in batch}
    for key, answer in two.answers.items():
        other = one.answers[key]
        assert isinstance(answer, sr.Response)
        assert isinstance(other, sr.Response)
        assert (answer.text, answer.usage) == (other.text, other.usage)
        assert answer.meta is not None
        assert answer.meta.service_tier == "batch"


RICH = sr.Plan(
    stages=(
        sr.Stage(
            "rich",
            "full",
            {
                "temperature": 0.3,
                "top_p": 0.9,
                "top_k": 20,
                "max_output_tokens": 900,
                "seed": 5,
                "stop_sequences": ["END"],
                "presence_penalty": 0.5,
                "frequency_penalty": -0.5,
                "thinking_budget": 128,
            },
        ),
    )
)
GEMINI_SCHEMA = {
    "type": "OBJECT",
    "properties": {"title": {"type": "STRING"}, "year": {"type": "INTEGER"}},
    "required": ["title", "year"],
    "property_ordering": ["title", "year"],
}


@pytest.mark.parametrize("schema", [Book, GEMINI_SCHEMA], ids=["json-schema", "gemini-schema"])
async def test_jsonl_lines_are_the_sdks_inlined_requests_for_every_param(
    connect: Callable[..., genai.Client],
    emu: GeminiEmulator,
    schema: Any,
) -> None:
    """The JSONL line is written here, not by the SDK: it must say what the SDK would."""
    options: dict[str, Any] = {
        "response_schema": schema,
        "system_instruction": "Catalogue.",
        "safety_settings": [
            {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}
        ],
    }
    inline = GeminiStrategy(connect(emu), MODEL, batch_lookback=0, **options)
    by_file = GeminiStrategy(connect(emu), MODEL, batch_inline_limit=1, **options)
    first = await inline.submit_batch(entries(PROMPTS[:2], plan=RICH))
    second = await by_file.submit_batch(entries(PROMPTS[:2], plan=RICH, attempt=2))
    inlined = [
        camel({k: v for k, v in r.items() if k != "model"}) for r in emu.batch_requests(first)
    ]
    assert [camel(r) for r in emu.batch_requests(second)] == inlined
    assert inlined[0]["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 128}
    assert inlined[0]["safetySettings"][0]["threshold"] == "BLOCK_ONLY_HIGH"


async def test_a_cache_goes_inline_and_first(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    cache = GeminiContextCache(
        client, MODEL, system_instruction="You catalogue books.", contents=["Shelf A holds 9."]
    )
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    name = await strategy.submit_batch(entries(PROMPTS[:1]))
    (request,) = emu.batch_requests(name)
    assert "cachedContent" not in request
    assert request["systemInstruction"]["parts"] == [{"text": "You catalogue books."}]
    texts = [c["parts"][0]["text"] for c in request["contents"]]
    assert texts == ["Shelf A holds 9.", PROMPTS[0]]
    assert emu.ledger.caches_created == 0


async def test_implicit_cache_hits_are_reported_as_the_server_counts_them(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emu = start_on_clock(5, implicit_caching=True, min_cache_tokens=64, batch_completion=0.0)
    client = connect(emu)
    strategy = GeminiStrategy(
        client, MODEL, response_schema=Book, system_instruction=" ".join(["rules"] * 300)
    )
    state = await strategy.poll_batch(await strategy.submit_batch(entries(PROMPTS)))
    cached = [a.usage.cached_tokens for a in state.answers.values() if isinstance(a, sr.Response)]
    assert len(cached) == len(PROMPTS)
    assert sorted(cached)[0] == 0
    assert min(cached[1:]) >= 300
    assert sum(cached) == emu.ledger.batch_cached_tokens


async def test_per_request_errors_raise_what_generate_raises(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    strategy = strategy_of(client)
    emu.inject(Fault(kind=FaultKind.RATE_LIMIT, at={2}, retry_delay=None))
    emu.inject(Fault(kind=FaultKind.UNAVAILABLE, at={3}))
    emu.inject(Fault(kind=FaultKind.SAFETY_STOP, at={4}))
    batch = entries(PROMPTS)
    state = await finish(strategy, await strategy.submit_batch(batch), virtual_clock)
    answers = [state.answers[e.key] for e in batch]
    assert isinstance(answers[0], sr.Response)
    assert answers[0].text
    limited, unavailable, stopped = answers[1], answers[2], answers[3]
    assert isinstance(limited, errors.ClientError)
    assert limited.code == 429
    assert limited.status == "RESOURCE_EXHAUSTED"
    assert isinstance(unavailable, errors.ServerError)
    assert unavailable.code == 503
    assert isinstance(stopped, sr.Response)
    assert stopped.text is None
    # Classified as generate's own exceptions for the same statuses are.
    kinds = [strategy.classify(e) for e in (limited, unavailable)]
    assert [k.kind if k else None for k in kinds] == [
        sr.OutcomeKind.RATE_LIMITED,
        sr.OutcomeKind.TRANSIENT,
    ]
    emu.clear_faults()
    emu.inject(Fault(kind=FaultKind.RATE_LIMIT, retry_delay=None, times=1))
    with pytest.raises(errors.ClientError) as direct:
        await strategy.generate(batch[1].request, batch[1].ctx)
    outcome = strategy.classify(direct.value)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.RATE_LIMITED


@pytest.mark.parametrize("kind", [FaultKind.BATCH_FAILED, FaultKind.BATCH_EXPIRED])
async def test_a_failed_or_expired_job_gives_the_answers_it_has(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock, kind: FaultKind
) -> None:
    strategy = strategy_of(client)
    emu.inject(Fault(kind=kind, route="batchGenerateContent", times=1))
    batch = entries(PROMPTS)
    state = await finish(strategy, await strategy.submit_batch(batch), virtual_clock)
    assert state.done
    assert state.state == (
        "JOB_STATE_FAILED" if kind is FaultKind.BATCH_FAILED else "JOB_STATE_EXPIRED"
    )
    assert sorted(state.answers) == ["item-0", "item-1"]
    # Sent again, the unanswered entries make a new job, never the failed one.
    again = await strategy.submit_batch(batch[2:])
    assert again != state.name
    assert len(emu.ledger.batch_jobs) == 2
    # Even the very same entries: a failed job is not re-attached to.
    third = await strategy.submit_batch(batch)
    assert third not in (state.name, again)
    assert len(emu.ledger.batch_jobs) == 3


async def test_a_lost_job_or_a_lost_responses_file(
    connect: Callable[..., genai.Client], emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    client = connect(emu)
    strategy = strategy_of(client)
    name = await strategy.submit_batch(entries(PROMPTS))
    assert emu.drop_batch(name)
    with pytest.raises(sr.BatchJobLost, match=name):
        await strategy.poll_batch(name)
    by_file = strategy_of(client, batch_inline_limit=1)
    name = await by_file.submit_batch(entries(PROMPTS, attempt=2))
    virtual_clock.advance(60.0)
    job = await client.aio.batches.get(name=name)
    assert job.dest is not None
    assert job.dest.file_name
    await client.aio.files.delete(name=job.dest.file_name)
    with pytest.raises(sr.BatchJobLost, match="responses file"):
        await by_file.poll_batch(name)


async def test_submitting_the_same_attempts_again_finds_the_job(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    """A run restarted after it created a job, before it recorded it, pays once."""
    strategy = strategy_of(client)
    batch = entries(PROMPTS)
    first = await strategy.submit_batch(batch)
    assert await strategy.submit_batch(entries(PROMPTS)) == first
    virtual_clock.advance(60.0)
    assert await strategy.submit_batch(entries(PROMPTS)) == first  # succeeded: answers kept
    assert len(emu.ledger.batch_jobs) == 1
    assert emu.ledger.batches_listed == 3  # one list look per submission
    # A later attempt of the same request is a new job, even word for word.
    assert await strategy.submit_batch(entries(PROMPTS, attempt=2)) != first
    assert len(emu.ledger.batch_jobs) == 2
    no_look = strategy_of(client, batch_lookback=0)
    assert await no_look.submit_batch(batch) != first
    assert emu.ledger.batches_listed == 4


async def test_partial_entries_ask_for_their_fields(
    client: genai.Client, emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    strategy = strategy_of(client)
    name = await strategy.submit_batch(entries(PROMPTS[:1], stage=1, fields=(("year",),)))
    (request,) = emu.batch_requests(name)
    schema = request["generationConfig"]["responseJsonSchema"]
    assert set(schema["properties"]) == {"year"}
    assert request["generationConfig"]["temperature"] == 0.0


async def test_bad_groups_are_refused(client: genai.Client) -> None:
    strategy = strategy_of(client)
    with pytest.raises(ValueError, match="at least one"):
        await strategy.submit_batch([])
    plan = sr.Plan(
        stages=(
            sr.Stage("flash", "full", {"model": MODEL}),
            sr.Stage("pro", "full", {"model": "gemini-2.5-pro"}),
        )
    )
    mixed = entries(PROMPTS[:1], plan=plan) + entries(PROMPTS[:1], plan=plan, stage=1)
    with pytest.raises(ValueError, match="one model"):
        await strategy.submit_batch(mixed)
    with pytest.raises(ValueError, match="batch_inline_limit"):
        strategy_of(client, batch_inline_limit=0)


async def test_vertex_refuses_batch_mode_in_one_sentence(
    start_emulator: Callable[..., GeminiEmulator],
) -> None:
    emulator = start_emulator(seed=1, api=Api.VERTEX)
    client = make_vertex_client(emulator.base_url)
    try:
        strategy = GeminiStrategy(client, MODEL)
        with pytest.raises(sr.StopRun, match="Gemini Developer API") as refused:
            await strategy.submit_batch(entries(PROMPTS[:1]))
        assert "\n" not in str(refused.value)
        assert str(refused.value).count(". ") == 0
        assert emulator.ledger.requests == ()
    finally:
        await client.aio.aclose()
        client.close()


@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
async def test_http_timeout_bounds_every_batch_call(
    connect: Callable[..., genai.Client], emu: GeminiEmulator, virtual_clock: VirtualClock
) -> None:
    """The strategy's http_timeout goes to create, upload, list, get and download alike."""
    client = connect(emu)
    for limit in (INLINE_LIMIT, 1):
        strategy = strategy_of(client, http_timeout=5.0, batch_inline_limit=limit)
        name = await strategy.submit_batch(entries(PROMPTS, attempt=limit))
        virtual_clock.advance(60.0)
        state = await strategy.poll_batch(name)
        assert set(state.answers) == {f"item-{i}" for i in range(len(PROMPTS))}
    emu.inject(Fault(kind=FaultKind.HANG, route="batches", times=1))
    strategy = strategy_of(client, http_timeout=0.2)
    with pytest.raises(Exception) as hung:
        await strategy.poll_batch(name)
    outcome = strategy.classify(hung.value)
    assert outcome is not None
    assert outcome.kind is sr.OutcomeKind.TRANSIENT


def test_a_key_in_a_per_request_error_is_masked() -> None:
    key = "AIzaSyD-batch-secret-key-0123456789ab"
    line = json.dumps({"key": "k", "error": {"code": 3, "message": f"bad key {key} here"}})
    found, answer = read_line(line, sr.Secrets([key]))
    assert found == "k"
    assert isinstance(answer, errors.ClientError)
    assert answer.code == 400
    assert key not in str(answer)
    assert key not in (answer.message or "")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not an object"),
        ('{"key": "k", "response": {"candidates": "nope"}}', "unreadable batch answer"),
    ],
)
def test_an_unreadable_line_is_transient(line: str, words: str) -> None:
    _, answer = read_line(line)
    assert isinstance(answer, sr.TransientError)
    assert words in str(answer)


def test_a_line_separator_inside_an_answer_does_not_cut_its_line() -> None:
    """JSON may carry U+2028 and U+0085 raw; only a newline ends a JSONL line."""
    text = "one\u2028two\u0085three"
    body = {"candidates": [{"content": {"parts": [{"text": text}], "role": "model"}}]}
    line = json.dumps({"key": "k", "response": body}, ensure_ascii=False)
    (piece,) = line.split("\n")
    key, answer = read_line(piece)
    assert key == "k"
    assert isinstance(answer, sr.Response)
    assert answer.text == text
