"""The simulated model against randomly built pydantic models (no HTTP: it is pure)."""

from __future__ import annotations

import enum
import json
from typing import Any, Literal

import pydantic
from google import genai
from google.genai import _transformers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies.gemini.emulator._model import GenerationConfig, SimulatedModel

Colour = enum.Enum("Colour", {"RED": "red", "GREEN": "green"})


@st.composite
def field_specs(draw: st.DrawFn, depth: int = 0) -> tuple[Any, Any]:
    """A (type, FieldInfo) pair covering every constraint the emulator promises to honour."""
    kind = draw(
        st.sampled_from(["str", "int", "float", "bool", "enum", "literal", "list", "model"])
    )
    if kind == "model" and depth >= 2:
        kind = "str"
    if kind == "str":
        low = draw(st.integers(0, 20))
        high = draw(st.integers(low, low + 30))
        spec: tuple[Any, Any] = (str, pydantic.Field(min_length=low, max_length=high))
    elif kind == "int":
        low = draw(st.integers(-1000, 3000))
        spec = (int, pydantic.Field(ge=low, le=low + draw(st.integers(0, 500))))
    elif kind == "float":
        low_f = draw(st.floats(-1e4, 1e4, allow_nan=False))
        spec = (float, pydantic.Field(ge=low_f, le=low_f + draw(st.floats(0.01, 100))))
    elif kind == "bool":
        spec = (bool, pydantic.Field())
    elif kind == "enum":
        spec = (Colour, pydantic.Field())
    elif kind == "literal":
        spec = (Literal["x", "y", "z"], pydantic.Field())
    elif kind == "list":
        low = draw(st.integers(0, 3))
        spec = (list[str], pydantic.Field(min_length=low, max_length=low + draw(st.integers(0, 3))))
    else:
        spec = (draw(models(depth + 1)), pydantic.Field())
    if draw(st.booleans()) and kind != "model":
        return spec[0] | None, pydantic.Field(default=None)
    return spec


@st.composite
def models(draw: st.DrawFn, depth: int = 0) -> type[pydantic.BaseModel]:
    names = draw(st.lists(st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True), min_size=1,
                          max_size=5, unique=True))  # fmt: skip
    fields = {name: draw(field_specs(depth)) for name in names}
    return pydantic.create_model(f"M{depth}_{'_'.join(names)}", **fields)  # type: ignore[call-overload,no-any-return]


CLIENT = genai.Client(api_key="unused", http_options={"base_url": "http://127.0.0.1:9"})


def gemini_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    schema = _transformers.t_schema(CLIENT._api_client, model)
    assert schema is not None
    return schema.model_dump(mode="json", exclude_none=True)  # snake_case keys, as on the wire


def answer(schema: dict[str, Any], *, rate: float, prompt: str, json_schema: bool) -> str:
    key = "responseJsonSchema" if json_schema else "responseSchema"
    config = GenerationConfig.from_json(
        {"responseMimeType": "application/json", key: schema, "temperature": 0.0}
    )
    model = SimulatedModel(seed=1, invalid_rate=rate, invalid_rate_slope=0.0)
    return model.answer(model="m", prompt=prompt, config=config).text


PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(models(), st.text(max_size=10), st.booleans())
def test_valid_answers_validate(
    model: type[pydantic.BaseModel], prompt: str, json_schema: bool
) -> None:
    schema = model.model_json_schema() if json_schema else gemini_schema(model)
    text = answer(schema, rate=0.0, prompt=prompt, json_schema=json_schema)
    instance = model.model_validate_json(text)
    assert list(json.loads(text)) == list(model.model_fields)
    assert instance is not None


@PROPERTY
@given(models(), st.text(max_size=10), st.booleans())
def test_invalid_answers_fail_on_every_field(
    model: type[pydantic.BaseModel], prompt: str, json_schema: bool
) -> None:
    schema = model.model_json_schema() if json_schema else gemini_schema(model)
    text = answer(schema, rate=1.0, prompt=prompt, json_schema=json_schema)
    try:
        model.model_validate_json(text)
    except pydantic.ValidationError as error:
        failed = {str(e["loc"][0]) for e in error.errors()}
    else:
        failed = set()
    assert failed == set(model.model_fields), text
