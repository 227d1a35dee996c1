"""Response schemas: the subset a partial stage sends, in either schema dialect."""

from __future__ import annotations

from collections.abc import Callable

import pydantic
import pytest
from google import genai

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiStrategy, subset_schema
from strategies.gemini._schema import ResponseSchema
from strategies.gemini.emulator import GeminiEmulator

from .conftest import MODEL, Recorder


class Author(pydantic.BaseModel):
    name: str
    born: int


class Publisher(pydantic.BaseModel):
    name: str
    city: str


class Book(pydantic.BaseModel):
    title: str
    author: Author
    publisher: Publisher | None = None
    tags: list[str]


def test_a_subset_keeps_only_the_asked_fields_and_the_definitions_they_use() -> None:
    full = Book.model_json_schema()
    assert set(full["$defs"]) == {"Author", "Publisher"}
    part = subset_schema(full, [("author",), ("tags",)])
    assert list(part["properties"]) == ["author", "tags"]
    assert part["required"] == ["author", "tags"]
    assert set(part["$defs"]) == {"Author"}
    assert part["title"] == "Book"
    only_title = subset_schema(full, [("title",)])
    assert "$defs" not in only_title
    assert full == Book.model_json_schema()  # the source is never modified


def test_a_subset_follows_the_asked_order_and_ignores_unknown_fields() -> None:
    schema = {
        "type": "OBJECT",
        "properties": {"a": {"type": "STRING"}, "b": {"type": "INTEGER"}, "c": {"type": "STRING"}},
        "required": ["a", "b", "c"],
        "propertyOrdering": ["a", "b", "c"],
    }
    part = subset_schema(schema, [("c",), ("a",), ("zzz",), ("c",)])
    assert list(part["properties"]) == ["c", "a"]
    assert part["required"] == ["a", "c"]
    assert part["propertyOrdering"] == ["a", "c"]
    # Nothing known asked for: the whole schema, never an empty object.
    assert subset_schema(schema, [("zzz",)]) == schema


def test_a_root_reference_is_followed() -> None:
    schema = {
        "$ref": "#/$defs/Book",
        "$defs": {
            "Book": {
                "type": "object",
                "properties": {"x": {"$ref": "#/$defs/X"}, "y": {}},
                "required": ["x", "y"],
            },
            "X": {"type": "string"},
        },
    }
    part = subset_schema(schema, [("x",)])
    assert part["properties"] == {"x": {"$ref": "#/$defs/X"}}
    assert part["required"] == ["x"]
    assert set(part["$defs"]) == {"X"}


def test_schemas_are_read_once_and_subsets_remembered() -> None:
    read = ResponseSchema.of(Book)
    assert read is not None
    assert read.json_schema
    assert read.for_fields(None) is read.schema
    assert read.for_fields((("tags",),)) is read.for_fields((("tags",),))
    gemini = ResponseSchema.of({"type": "OBJECT", "properties": {"a": {"type": "STRING"}}})
    assert gemini is not None
    assert not gemini.json_schema
    assert ResponseSchema.of(None) is None


@pytest.mark.parametrize("dialect", ["json", "gemini"])
async def test_a_dict_schema_goes_out_in_its_own_dialect(
    start_on_clock: Callable[..., GeminiEmulator],
    recording_client: Callable[..., tuple[genai.Client, Recorder]],
    virtual_clock: VirtualClock,
    dialect: str,
) -> None:
    client, recorder = recording_client(start_on_clock(seed=4), api_key="k")

    def kind(name: str) -> str:
        return name.upper() if dialect == "gemini" else name

    schema = {
        "type": kind("object"),
        "properties": {"title": {"type": kind("string")}, "year": {"type": kind("integer")}},
        "required": ["title", "year"],
    }
    strategy = GeminiStrategy(client, MODEL, response_schema=schema)
    runner = sr.Runner(
        sr.Plan(stages=[sr.Stage("s", "full")], max_prompts=1),
        strategy,
        validator=sr.validators.json_object(),
        clock=virtual_clock,
    )
    batch = await runner.run([("a", "A book.")])
    assert batch.succeeded == 1
    assert set(batch.results[0].output) == {"title", "year"}
    config = recorder.bodies[0]["generationConfig"]
    key = "responseSchema" if dialect == "gemini" else "responseJsonSchema"
    other = "responseJsonSchema" if dialect == "gemini" else "responseSchema"
    assert set(config[key]["properties"]) == {"title", "year"}
    assert other not in config
