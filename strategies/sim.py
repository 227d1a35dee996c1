"""A deterministic offline model, for examples, tests and benchmarks.

Answers a flat JSON object whose fields are declared by name and type.  Each
field is invalid with a probability that falls as the temperature is lowered;
requests can also fail with transient errors or rate limits, after a latency
slept on the engine's clock.  Everything is decided by a seeded hash of the
request, so a run is reproducible.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import attrs

from stagedretry import (
    FieldError,
    Outcome,
    RateLimited,
    Request,
    Response,
    StageContext,
    TransientError,
    Usage,
    ValidationFailed,
    parse_settings,
    validators,
)

from ._sampling import SamplingParams
from ._tokens import count_tokens

BOOK_FIELDS: Mapping[str, type] = {"title": str, "author": str, "year": int, "pages": int}


def _unit(*parts: object) -> float:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@attrs.frozen
class SimModel:
    """The knobs of the simulated model.

    ``invalid_rate`` is the chance of one field being invalid at temperature 0;
    ``temperature_slope`` is added per unit of temperature.
    """

    fields: Mapping[str, type] = BOOK_FIELDS
    seed: int = 0
    invalid_rate: float = 0.2
    temperature_slope: float = 0.4
    transient_rate: float = 0.0
    rate_limit_rate: float = 0.0
    retry_after: float = 1.0
    latency: float = 0.0
    instructions_tokens: int = 0


class SimStrategy:
    """The strategy over a :class:`SimModel`; its stage params are :class:`SamplingParams`.

    Only ``temperature`` changes its answers; the other sampling params are
    accepted (so a plan written for Gemini runs here unchanged) and ignored.
    """

    __slots__ = ("model",)
    params_type = SamplingParams

    def __init__(self, model: SimModel | None = None, **knobs: Any) -> None:
        self.model = model or SimModel(**knobs)

    def invalid_probability(self, temperature: float) -> float:
        m = self.model
        return min(1.0, max(0.0, m.invalid_rate + m.temperature_slope * temperature))

    async def generate(self, request: Request, ctx: StageContext) -> Response:
        m = self.model
        if m.latency:
            await ctx.clock.sleep(m.latency)
        params = ctx.params
        if not isinstance(params, SamplingParams):  # a context built by hand, not by a runner
            params = parse_settings(SamplingParams, params, f"{request.stage.name}.params")
        temperature = params.temperature or 0.0
        key = (m.seed, request.item_id, request.stage.name, ctx.attempt)
        if m.rate_limit_rate and _unit(*key, "429") < m.rate_limit_rate:
            raise RateLimited("simulated 429", retry_after=m.retry_after)
        prompt_tokens = count_tokens(request.prompt) + m.instructions_tokens
        if m.transient_rate and _unit(*key, "503") < m.transient_rate:
            raise TransientError("simulated 503 overloaded")
        p = self.invalid_probability(temperature)
        wanted = request.fields if request.fields is not None else tuple(m.fields)
        answer: dict[str, Any] = {}
        for name in wanted:
            typ = m.fields.get(name, str)
            bad = _unit(*key, name) < p
            answer[name] = _value(typ, bad, request.item_id, name)
        text = json.dumps(answer)
        usage = Usage(
            input_tokens=prompt_tokens,
            output_tokens=count_tokens(text),
            cached_tokens=m.instructions_tokens,
        )
        return Response(text, usage)

    def classify(self, exc: BaseException) -> Outcome | None:
        return None

    def fingerprint_data(self) -> Mapping[str, object]:
        """The model's knobs but its latency, which only delays an answer (for a journal)."""
        knobs = attrs.asdict(self.model, recurse=False)
        del knobs["latency"]
        knobs["fields"] = {name: typ.__name__ for name, typ in self.model.fields.items()}
        return knobs

    def validator(self) -> Any:
        """A validator for this model's fields, reporting each bad field by name."""
        return validators.json_object(_FieldsCheck(self.model.fields))

    def __repr__(self) -> str:
        return f"SimStrategy({self.model!r})"


def _value(typ: type, bad: bool, item_id: str, name: str) -> Any:
    if typ is int:
        return "unknown" if bad else 1 + int(_unit(item_id, name) * 999)
    if typ is float:
        return "n/a" if bad else round(_unit(item_id, name) * 100, 2)
    if typ is bool:
        return "maybe" if bad else _unit(item_id, name) < 0.5
    return None if bad else f"{name} of {item_id}"


class _FieldsCheck:
    __slots__ = ("_fields",)

    def __init__(self, fields: Mapping[str, type]) -> None:
        self._fields = fields

    def __call__(self, data: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for name, typ in self._fields.items():
            value = data.get(name)
            if name not in data:
                errors.append(FieldError(name, "missing"))
            elif not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
                errors.append(FieldError(name, f"expected {typ.__name__}, got {value!r}"))
        if errors:
            failed = {e.path for e in errors}
            raise ValidationFailed(errors, {k: v for k, v in data.items() if k not in failed})
        return data
