"""generateContent through the real SDK: caches, usage, schemas, determinism."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from typing import Literal

import httpx2
import pydantic
import pytest
from google import genai
from google.genai import errors, types

from strategies.gemini.emulator import GeminiEmulator, count_tokens
from strategies.gemini.emulator._tokens import MEDIA_PART_TOKENS

from .conftest import MODEL, doc


class Genre(enum.Enum):
    NOVEL = "novel"
    POETRY = "poetry"


class Author(pydantic.BaseModel):
    name: str
    born: int | None = None


class Book(pydantic.BaseModel):
    title: str
    year: int = pydantic.Field(ge=1900, le=2100)
    rating: float = pydantic.Field(ge=0, le=5)
    in_print: bool
    tags: list[str] = pydantic.Field(min_length=1, max_length=3)
    genre: Genre
    size: Literal["S", "M", "L"]
    isbn: str = pydantic.Field(min_length=10, max_length=13)
    author: Author
    subtitle: str | None = None


class TitleOnly(pydantic.BaseModel):
    title: str
    year: int


def json_config(schema: object, temperature: float = 0.0) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=schema, temperature=temperature
    )


async def test_generate_with_cache_usage(
    aio: genai.client.AsyncClient, emulator: GeminiEmulator
) -> None:
    cache = await aio.caches.create(
        model=MODEL,
        config=types.CreateCachedContentConfig(contents=doc(1500), system_instruction="Be terse."),
    )
    assert cache.usage_metadata is not None
    cached = cache.usage_metadata.total_token_count
    assert cached == 1500 + 3
    answer = await aio.models.generate_content(
        model=MODEL,
        contents="What is the title?",
        config=types.GenerateContentConfig(cached_content=cache.name, temperature=0.0),
    )
    usage = answer.usage_metadata
    assert usage is not None
    assert usage.cached_content_token_count == cached
    assert usage.prompt_token_count == cached + count_tokens("What is the title?")
    assert answer.text is not None
    assert usage.candidates_token_count == count_tokens(answer.text)
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.thoughts_token_count is None
    assert usage.cache_tokens_details is not None
    assert usage.cache_tokens_details[0].token_count == cached
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details[0].modality == types.MediaModality.TEXT
    candidate = answer.candidates[0] if answer.candidates else None
    assert candidate is not None
    assert candidate.finish_reason == types.FinishReason.STOP
    assert candidate.safety_ratings is not None
    assert len(candidate.safety_ratings) == 4
    assert {r.probability for r in candidate.safety_ratings} == {types.HarmProbability.NEGLIGIBLE}
    assert answer.model_version == MODEL
    assert answer.response_id
    assert answer.prompt_feedback is None
    assert emulator.ledger.requests[-1].cached_content == cache.name


async def test_usage_details_break_the_counts_down_by_modality(
    aio: genai.client.AsyncClient,
) -> None:
    parts = [
        types.Part(text="Describe these."),
        types.Part.from_bytes(data=b"\x89PNG\r\n\x1a\n", mime_type="image/png"),
        types.Part.from_bytes(data=b"%PDF-1.7", mime_type="application/pdf"),
    ]
    answer = await aio.models.generate_content(
        model=MODEL, contents=[types.UserContent(parts=parts)]
    )
    usage = answer.usage_metadata
    assert usage is not None
    details = {d.modality: d.token_count for d in usage.prompt_tokens_details or ()}
    assert details == {
        types.MediaModality.TEXT: count_tokens("Describe these."),
        types.MediaModality.IMAGE: MEDIA_PART_TOKENS,
        types.MediaModality.DOCUMENT: MEDIA_PART_TOKENS,
    }
    assert sum(details.values()) == usage.prompt_token_count


async def test_plain_answer_without_cache_omits_cached_count(
    aio: genai.client.AsyncClient,
) -> None:
    answer = await aio.models.generate_content(model=MODEL, contents="hello there")
    assert answer.text
    assert answer.text.endswith(".")
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.cached_content_token_count is None
    assert answer.usage_metadata.prompt_token_count == 2
    as_json = await aio.models.generate_content(
        model=MODEL,
        contents="hello there",
        config=types.GenerateContentConfig(response_mime_type="application/json"),
    )
    assert as_json.text is not None
    assert set(json.loads(as_json.text)) == {"text"}


async def test_cache_with_system_instruction_is_rejected(aio: genai.client.AsyncClient) -> None:
    cache = await aio.caches.create(
        model=MODEL, config=types.CreateCachedContentConfig(contents=doc(1100))
    )
    with pytest.raises(errors.ClientError) as caught:
        await aio.models.generate_content(
            model=MODEL,
            contents="q",
            config=types.GenerateContentConfig(
                cached_content=cache.name, system_instruction="be brief"
            ),
        )
    assert caught.value.code == 400
    assert caught.value.message is not None
    assert caught.value.message.startswith(
        "CachedContent can not be used with GenerateContent request setting system_instruction"
    )
    with pytest.raises(errors.ClientError, match="has to be the same"):
        await aio.models.generate_content(
            model="gemini-2.5-pro",
            contents="q",
            config=types.GenerateContentConfig(cached_content=cache.name),
        )


async def test_pydantic_schema_answers_validate(aio: genai.client.AsyncClient) -> None:
    for number in range(25):
        answer = await aio.models.generate_content(
            model=MODEL, contents=f"Describe book {number}", config=json_config(Book)
        )
        assert isinstance(answer.parsed, Book), answer.text
        assert answer.text is not None
        assert list(json.loads(answer.text)) == list(Book.model_fields)
        author = json.loads(answer.text)["author"]
        assert isinstance(author, dict)
        assert "name" in author


async def test_list_schema_and_json_schema_validate(aio: genai.client.AsyncClient) -> None:
    listed = await aio.models.generate_content(
        model=MODEL, contents="authors", config=json_config(list[Author])
    )
    assert listed.text is not None
    pydantic.TypeAdapter(list[Author]).validate_json(listed.text)
    for number in range(10):
        by_json_schema = await aio.models.generate_content(
            model=MODEL,
            contents=f"book {number}",
            config=types.GenerateContentConfig(
                response_mime_type="application/json",
                response_json_schema=Book.model_json_schema(),
            ),
        )
        assert by_json_schema.text is not None
        Book.model_validate_json(by_json_schema.text)


async def test_every_field_invalid_at_rate_one(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    emulator = start_emulator(invalid_rate=1.0)
    aio = connect(emulator).aio
    for number in range(5):
        answer = await aio.models.generate_content(
            model=MODEL, contents=f"book {number}", config=json_config(Book)
        )
        assert answer.parsed is None  # the SDK swallows the validation error
        assert answer.text is not None
        with pytest.raises(pydantic.ValidationError) as caught:
            Book.model_validate_json(answer.text)
        failed = {str(error["loc"][0]) for error in caught.value.errors()}
        assert failed == set(Book.model_fields)


async def test_invalid_rate_grows_with_temperature(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    emulator = start_emulator(invalid_rate=0.0, invalid_rate_slope=0.5)
    aio = connect(emulator).aio

    async def failures(temperature: float) -> int:
        count = 0
        for number in range(20):
            answer = await aio.models.generate_content(
                model=MODEL, contents=f"t{number}", config=json_config(TitleOnly, temperature)
            )
            count += answer.parsed is None
        return count

    assert await failures(0.0) == 0
    assert await failures(2.0) == 20
    assert 0 < await failures(1.0) < 20


async def test_partial_schema_answers_only_those_fields(aio: genai.client.AsyncClient) -> None:
    answer = await aio.models.generate_content(
        model=MODEL, contents="just the title", config=json_config(TitleOnly)
    )
    assert answer.text is not None
    assert list(json.loads(answer.text)) == ["title", "year"]
    assert isinstance(answer.parsed, TitleOnly)


async def test_determinism(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    texts = []
    for _ in range(2):
        emulator = start_emulator(seed=3)
        aio = connect(emulator).aio
        run = []
        for contents, temperature in [("a", 0.0), ("a", 0.0), ("b", 0.0), ("a", 0.7)]:
            answer = await aio.models.generate_content(
                model=MODEL, contents=contents, config=json_config(Book, temperature)
            )
            run.append((answer.text, answer.response_id))
        texts.append(run)
    assert texts[0] == texts[1]
    first = texts[0]
    assert first[0][0] == first[1][0] != first[2][0]
    assert first[0][0] != first[3][0]
    other = start_emulator(seed=4)
    answer = await connect(other).aio.models.generate_content(
        model=MODEL, contents="a", config=json_config(Book, 0.0)
    )
    assert answer.text != first[0][0]


async def test_max_output_tokens_truncates(aio: genai.client.AsyncClient) -> None:
    answer = await aio.models.generate_content(
        model=MODEL,
        contents="long",
        config=types.GenerateContentConfig(
            response_mime_type="application/json",
            response_schema=Book,
            max_output_tokens=12,
        ),
    )
    assert answer.candidates is not None
    assert answer.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert answer.text is not None
    assert count_tokens(answer.text) == 12
    assert answer.parsed is None
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer.text)


async def test_thinking_spends_the_output_budget(aio: genai.client.AsyncClient) -> None:
    answer = await aio.models.generate_content(
        model=MODEL,
        contents="think",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_budget=1000), max_output_tokens=5
        ),
    )
    usage = answer.usage_metadata
    assert usage is not None
    assert usage.thoughts_token_count is not None
    assert usage.thoughts_token_count >= 16
    assert answer.text is None  # the thoughts ate the whole budget
    assert usage.total_token_count == (usage.prompt_token_count or 0) + usage.thoughts_token_count


def test_snake_case_and_enum_mime_on_the_wire(
    http: httpx2.Client, emulator: GeminiEmulator
) -> None:
    body = {
        "contents": [{"role": "user", "parts": [{"text": "pick"}]}],
        "generation_config": {
            "response_mime_type": "application/json",
            "max_output_tokens": 500,
            "response_schema": {
                "type": "object",
                "property_ordering": ["b", "a"],
                "properties": {
                    "a": {"type": "array", "items": {"type": "INTEGER"}, "min_items": 4,
                          "max_items": 4},
                    "b": {"type": "STRING", "min_length": 30, "max_length": 30},
                },
            },
            "thinking_config": {"thinking_budget": 0, "include_thoughts": False},
        },
    }  # fmt: skip
    url = f"{emulator.base_url}/v1alpha/models/{MODEL}:generateContent"
    answer = http.post(url, json=body)
    assert answer.status_code == 200, answer.text
    value = json.loads(answer.json()["candidates"][0]["content"]["parts"][0]["text"])
    assert list(value) == ["b", "a"]
    assert len(value["a"]) == 4
    assert len(value["b"]) == 30
    enum_body = {
        "contents": [{"parts": [{"text": "pick"}]}],
        "generationConfig": {
            "responseMimeType": "text/x.enum",
            "responseSchema": {"type": "STRING", "enum": ["novel", "poetry"]},
        },
    }
    answer = http.post(url, json=enum_body)
    assert answer.json()["candidates"][0]["content"]["parts"][0]["text"] in ("novel", "poetry")


async def test_enum_schema_through_sdk(aio: genai.client.AsyncClient) -> None:
    answer = await aio.models.generate_content(
        model=MODEL,
        contents="genre?",
        config=types.GenerateContentConfig(response_mime_type="text/x.enum", response_schema=Genre),
    )
    assert isinstance(answer.parsed, Genre)


async def test_implicit_caching(
    start_emulator: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> None:
    emulator = start_emulator(implicit_caching=True)
    aio = connect(emulator).aio
    prefix = types.Content(role="user", parts=[types.Part(text=doc(1200))])
    one = types.Content(role="user", parts=[types.Part(text="question one")])
    two = types.Content(role="user", parts=[types.Part(text="question two")])
    first = await aio.models.generate_content(model=MODEL, contents=[prefix, one])
    second = await aio.models.generate_content(model=MODEL, contents=[prefix, two])
    assert first.usage_metadata is not None
    assert second.usage_metadata is not None
    assert first.usage_metadata.cached_content_token_count is None
    assert second.usage_metadata.cached_content_token_count == 1200
    assert second.usage_metadata.prompt_token_count == 1202


def test_sync_client_generate(sync_client: genai.Client) -> None:
    answer = sync_client.models.generate_content(
        model=f"models/{MODEL}", contents="sync", config=json_config(TitleOnly)
    )
    assert isinstance(answer.parsed, TitleOnly)


def test_request_validation(http: httpx2.Client, emulator: GeminiEmulator) -> None:
    url = f"{emulator.base_url}/v1beta/models/{MODEL}:generateContent"
    cases = [
        {},
        {"contents": []},
        {"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": 3}},
        {"contents": [{"parts": [{"text": "x"}]}], "cachedContent": "batchPredictionJobs/1"},
        {
            "contents": [{"parts": [{"text": "x"}]}],
            "generationConfig": {"responseSchema": {"type": "STRING"}},
        },
    ]
    for body in cases:
        answer = http.post(url, json=body)
        assert answer.status_code == 400, body
        assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"
    broken = http.post(url, content=b"{not json")
    assert broken.status_code == 400
