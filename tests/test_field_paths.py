"""Field paths from the validator to the prompt, the merge, the results and the journal.

The named examples of issue 9 ("Field paths", "Errors the engine can repair
without a request") with their right values, and keys a joined string would break.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

import stagedretry as sr
from stagedretry import FieldError, FieldErrorKind, ValidationFailed, json_pointer, validators
from stagedretry._journal import result_from_json, result_to_json
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable
from strategies.gemini import subset_schema

LAMP = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price.usd": {"type": "number"}},
    "required": ["name", "price.usd"],
}
STRICT_LAMP = {**LAMP, "additionalProperties": False}


class Lamp(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    name: str
    price_usd: float = pydantic.Field(alias="price.usd")


class Answers:
    """A strategy answering from a list, recording what each request asked for."""

    def __init__(self, *answers: str) -> None:
        self._answers: Iterator[str] = iter(answers)
        self.requests: list[sr.Request] = []

    async def __call__(self, request: sr.Request, ctx: sr.StageContext) -> str:
        self.requests.append(request)
        return next(self._answers)


async def run_one(answers: Answers, validator: sr.Validator[Any], clock: VirtualClock) -> Any:
    runner = sr.Runner(
        sr.Plan.ladder(), from_callable(answers), validator=validator, clock=clock, seed=1
    )
    batch = await runner.run([("lamp", "Describe the lamp.")])
    return batch.results[0]


async def test_a_key_with_a_dot_is_repaired_in_two_prompts(virtual_clock: VirtualClock) -> None:
    # The example: the partial stage asks for "price.usd" (not "price") and merges 8.5.
    answers = Answers('{"name": "Lamp", "price.usd": "cheap"}', '{"price.usd": 8.5}')

    result = await run_one(answers, validators.json_schema(LAMP), virtual_clock)

    assert result.ok
    assert result.prompts == 2
    assert result.output == {"name": "Lamp", "price.usd": 8.5}
    assert answers.requests[1].fields == (("price.usd",),)
    assert answers.requests[1].kept == {"name": "Lamp"}
    assert "/price.usd" in answers.requests[1].prompt
    assert result.attempts[1].fields == (("price.usd",),)


def test_the_schema_validator_never_keeps_the_bad_value() -> None:
    with pytest.raises(ValidationFailed) as caught:
        validators.json_schema(LAMP)('{"name": "Lamp", "price.usd": "cheap"}')

    assert [e.path for e in caught.value.errors] == [("price.usd",)]
    assert caught.value.partial == {"name": "Lamp"}


async def _strict_lamp_async(text: str) -> dict[str, Any]:
    # An async validator fails only once awaited: the local repair must wait for it.
    return validators.json_schema(STRICT_LAMP)(text)


@pytest.mark.parametrize(
    "validator",
    [validators.json_schema(STRICT_LAMP), validators.pydantic(Lamp), _strict_lamp_async],
    ids=repr,
)
async def test_a_forbidden_key_is_dropped_without_a_request(
    validator: sr.Validator[Any], virtual_clock: VirtualClock
) -> None:
    answers = Answers('{"name": "Lamp", "price.usd": 8.5, "confidence": 0.9}')

    result = await run_one(answers, validator, virtual_clock)

    assert result.ok
    assert result.prompts == 1
    assert len(answers.requests) == 1
    (mended,) = result.attempts[0].mended
    assert (mended.path, mended.kind) == (("confidence",), FieldErrorKind.FORBIDDEN)
    output = (
        result.output
        if isinstance(result.output, dict)
        else result.output.model_dump(by_alias=True)
    )
    assert output == {"name": "Lamp", "price.usd": 8.5}


@pytest.mark.parametrize(
    "validator", [validators.json_schema(STRICT_LAMP), validators.pydantic(Lamp)], ids=repr
)
async def test_a_forbidden_key_never_becomes_a_partial_request(
    validator: sr.Validator[Any], virtual_clock: VirtualClock
) -> None:
    answers = Answers('{"name": 5, "price.usd": 8.5, "confidence": 0.9}', '{"name": "Lamp"}')

    result = await run_one(answers, validator, virtual_clock)

    assert result.ok
    assert result.prompts == 2
    assert answers.requests[1].fields == (("name",),)
    assert [e.path for e in result.attempts[0].mended] == [("confidence",)]
    assert result.attempts[1].mended == ()


ODD_KEYS = ["a.b", "a/b", "~", "[0]", "two words", "0", "ключ", "價格"]


class Odd(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    inner: Inner


class Inner(pydantic.BaseModel):
    a_dot: int = pydantic.Field(alias="a.b")
    a_slash: int = pydantic.Field(alias="a/b")
    tilde: int = pydantic.Field(alias="~")
    index: int = pydantic.Field(alias="[0]")
    spaced: int = pydantic.Field(alias="two words")
    digits: int = pydantic.Field(alias="0")
    cyrillic: int = pydantic.Field(alias="ключ")
    chinese: int = pydantic.Field(alias="價格")


Odd.model_rebuild()


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys_are_one_key_for_every_validator(key: str) -> None:
    good = dict.fromkeys(ODD_KEYS, 1)
    text = json.dumps({"inner": {**good, key: "x"}})
    schema = {
        "type": "object",
        "properties": {
            "inner": {
                "type": "object",
                "properties": {k: {"type": "integer"} for k in ODD_KEYS},
                "required": ODD_KEYS,
            }
        },
    }
    for validator in (validators.pydantic(Odd), validators.json_schema(schema)):
        with pytest.raises(ValidationFailed) as caught:
            validator(text)
        assert [e.path for e in caught.value.errors] == [("inner", key)]
        assert caught.value.partial == {"inner": {k: 1 for k in ODD_KEYS if k != key}}


def test_a_callable_validator_may_name_a_field_by_a_plain_string() -> None:
    # A str is ONE key, never split on dots; "" is the whole answer.
    assert FieldError("price.usd", "bad").path == ("price.usd",)
    assert FieldError("", "bad").path == ()
    assert FieldError(["authors", 2, "name"], "bad").path == ("authors", 2, "name")


@pytest.mark.parametrize(
    ("path", "pointer"),
    [
        ((), ""),
        (("price.usd",), "/price.usd"),
        (("a/b", "~c"), "/a~1b/~0c"),
        (("authors", 0, "name"), "/authors/0/name"),
        (("[0]", "ключ"), "/[0]/ключ"),
    ],
)
def test_paths_are_rendered_as_json_pointers(path: sr.FieldPath, pointer: str) -> None:
    assert json_pointer(path) == pointer


def test_the_journal_keeps_paths_as_lists_and_reads_old_dotted_rows() -> None:
    result = sr.ItemResult(
        "a",
        sr.ItemStatus.EXHAUSTED,
        errors=(FieldError(("price.usd",), "bad"), FieldError(("authors", 0), "bad")),
        attempts=(
            sr.Attempt(
                "fix",
                sr.OutcomeKind.INVALID,
                1,
                True,
                fields=(("price.usd",), ("meta", "x")),
                mended=(FieldError("confidence", "not allowed", kind=FieldErrorKind.FORBIDDEN),),
            ),
        ),
    )
    row = json.loads(json.dumps(result_to_json(result)))
    assert row["errors"][0]["path"] == ["price.usd"]
    assert row["attempts"][0]["fields"] == [["price.usd"], ["meta", "x"]]
    assert result_from_json(row) == result

    # Schema 1 wrote dotted strings (split as they were joined) and top-level field names.
    old = {
        **row,
        "errors": [{"path": "meta.pages", "message": "bad"}, {"path": "", "message": "bad"}],
        "attempts": [{**row["attempts"][0], "fields": ["year", "price.usd"]}],
    }
    del old["attempts"][0]["mended"]
    loaded = result_from_json(old)
    assert [e.path for e in loaded.errors] == [("meta", "pages"), ()]
    assert loaded.attempts[0].fields == (("year",), ("price.usd",))
    assert loaded.attempts[0].mended == ()


def test_the_partial_response_schema_narrows_nested_paths() -> None:
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "price.usd": {"type": "number"},
            "meta": {"$ref": "#/$defs/Meta"},
        },
        "required": ["name", "price.usd", "meta"],
        "$defs": {
            "Meta": {
                "type": "object",
                "properties": {"pages": {"type": "integer"}, "isbn": {"type": "string"}},
                "required": ["pages", "isbn"],
            }
        },
    }

    part = subset_schema(schema, [("price.usd",), ("meta", "pages")])

    assert part["properties"] == {
        "price.usd": {"type": "number"},
        "meta": {
            "type": "object",
            "properties": {"pages": {"type": "integer"}},
            "required": ["pages"],
        },
    }
    assert part["required"] == ["price.usd", "meta"]
    assert "$defs" not in part  # the inlined Meta left no reference behind
