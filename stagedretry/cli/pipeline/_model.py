"""The pipeline, typed: one frozen object per section, and the fingerprint of what decides results.

A backend's own settings are held as the object its spec parsed them into
(an instance of ``spec.section_type``): this model never names a provider's
types, so a new backend needs no change here.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import attrs

from stagedretry import Plan, settable_keys, setting
from strategies.backend import BackendSpec, CacheOptions

from ._prices import Price, PriceChoice, choose_price, default_price
from ._template import Template

DEFAULT_MODEL: Final = "gemini-2.5-flash"
DEFAULT_BACKEND: Final = "emulator"
MAX_CONCURRENCY: Final = 1024
"""The largest ``run.concurrency``: far past any provider's rate limit."""
MAX_RUN_DEADLINE: Final = 30 * 86400.0
"""The longest ``run.deadline`` in seconds (30 days): longer is a typo, and a run without one
has none."""


@attrs.frozen
class BackendConfig:
    """Which backend answers, with which model, and its section of ``[backend]``.

    *section* is an instance of ``spec.section_type``, read from ``[backend]``
    minus ``kind`` and ``model``.
    """

    spec: BackendSpec[Any] = attrs.field(repr=False)
    model: str
    section: object
    ignored: tuple[str, ...] = ()
    """The tables of other backends found in ``[backend]`` (``"backend.emulator"``), left
    unread: a pipeline switched from one backend to another keeps the old one's settings."""

    @property
    def kind(self) -> str:
        """The backend's name, as ``[backend] kind`` gives it."""
        return self.spec.name

    def ignored_warning(self, file: str) -> str | None:
        """One sentence naming the ignored tables of other backends, or ``None``.

        ``"pipeline.toml: backend.emulator: settings for the emulator backend, ignored because
        kind is 'gemini'"``.
        """
        if not self.ignored:
            return None
        backends = [name.removeprefix("backend.") for name in self.ignored]
        which = (
            f"the {backends[0]} backend"
            if len(backends) == 1
            else f"the {', '.join(backends[:-1])} and {backends[-1]} backends"
        )
        return (
            f"{file}: {', '.join(self.ignored)}: settings for {which}, "
            f"ignored because kind is {self.kind!r}"
        )


@attrs.frozen
class CacheConfig:
    """The shared system instruction, read from its file, and the ``[cache]`` options."""

    system_instruction: str = attrs.field(repr=False)
    instruction_path: Path
    options: CacheOptions = CacheOptions()


@attrs.frozen
class InputConfig:
    """The JSONL input, the field holding each record's id and the prompt template."""

    path: Path
    template: Template
    id_field: str = "id"


@attrs.frozen
class OutputConfig:
    """Where results go and what a valid answer is.

    ``model`` is a ``module:Class`` pydantic import path; ``schema`` a JSON
    Schema loaded from ``schema_path``.  Neither: any JSON object is valid.
    ``digest`` is a hash of the shape a valid answer has (the model's JSON
    schema, or the schema file's content): editing either changes it.
    """

    path: Path
    model: str | None = None
    model_class: type[Any] | None = attrs.field(default=None, eq=False, repr=False)
    schema_path: Path | None = None
    schema: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)
    digest: str | None = None

    @property
    def shape(self) -> Mapping[str, Any] | None:
        """The JSON Schema of a valid answer (the model's own), or ``None``: any object."""
        if self.model_class is not None:
            shape: Mapping[str, Any] = self.model_class.model_json_schema()
            return shape
        return self.schema


@attrs.frozen
class JournalConfig:
    """Where the crash-safe journal lives."""

    path: Path


class RunMode(enum.Enum):
    """How a run delivers its requests: one by one, or in batch jobs (``run.mode``)."""

    SYNC = "sync"
    BATCH = "batch"


@attrs.frozen
class RunConfig:
    """Limits of one run: parallel items, a deadline for the whole run, an audit log.

    ``request_log`` is a path, so it is read by hand (relative to the file).
    """

    concurrency: int = setting(16, minimum=1, maximum=MAX_CONCURRENCY)
    """Items in flight at once, 1 to 1024: the run starts one worker per unit, so a typo of
    many digits would spend minutes starting workers it can never use."""
    deadline: float | None = setting(None, above=0.0, maximum=MAX_RUN_DEADLINE, unit="seconds")
    """Seconds for the whole run, at most 30 days; then no new items are taken."""
    seed: int | None = setting(None, minimum=0)
    """Seeds the backoff jitter, for a run whose waits repeat; ``None``: random."""
    max_cost_usd: float | None = setting(None, above=0.0, unit="USD")
    """The job's cost ceiling in USD, from the price table, cache creation and storage
    included, counted over every run of the job; reached: the run stops (exit 3).
    ``None``: no ceiling."""
    max_tokens: int | None = setting(None, minimum=1, unit="tokens")
    """The job's token ceiling: input (cached included), output and thinking tokens of every
    attempt, over every run of the job; reached: the run stops (exit 3).  ``None``: none."""
    request_log: Path | None = setting(None, settable=False)
    """A JSON-lines file with one line per request sent (an audit log); ``None``: none."""
    mode: RunMode = setting(RunMode.SYNC)
    """``sync``: each request is sent on its own; ``batch``: requests go out in rounds of
    batch jobs (half the price, results within 24 hours), with the same stages, budget and
    results, and a killed run re-attaches to its jobs.  A context cache is not used in batch
    mode.  The backend must support batch jobs."""


def _frozen_prices(value: Mapping[str, Price]) -> Mapping[str, Price]:
    return MappingProxyType(dict(value))


@attrs.frozen
class Pipeline:
    """A whole job, checked."""

    source: Path
    name: str
    plan: Plan
    backend: BackendConfig
    input: InputConfig
    output: OutputConfig
    journal: JournalConfig
    run: RunConfig = RunConfig()
    cache: CacheConfig | None = None
    prices: Mapping[str, Price] = attrs.field(factory=dict, converter=_frozen_prices)

    @property
    def priced(self) -> PriceChoice | None:
        """The backend's model's price and each part's source: the ``[prices]`` table's
        entry, else genai-prices' bundled data (see :mod:`._prices`); ``None``: unknown."""
        return choose_price(self.backend.model, self.prices)

    def stage_model(self, stage: str) -> str:
        """The model stage *stage* sends to: its ``model`` param, else the backend's (also for
        a stage the plan does not have)."""
        for s in self.plan.stages:
            if s.name == stage:
                model = s.params.get("model")
                if isinstance(model, str) and model:
                    return model.removeprefix("models/")
        return self.backend.model

    @property
    def models(self) -> tuple[str, ...]:
        """Every model the plan sends to: the backend's first, then the stages' in order."""
        return tuple(
            dict.fromkeys(
                [self.backend.model, *(self.stage_model(s.name) for s in self.plan.stages)]
            )
        )

    def price_for(self, model: str) -> PriceChoice | None:
        """*model*'s price, as :attr:`priced` gives the backend's; ``None``: unknown."""
        return choose_price(model, self.prices)

    def prices_warning(self, file: str) -> str | None:
        """One sentence when ``[prices]`` has entries but none for the backend's model (a typo,
        or a model switched with ``--model``), or ``None``: the table is then not used."""
        model = self.backend.model
        if not self.prices or model in self.prices:
            return None
        names = ", ".join(repr(name) for name in sorted(self.prices))
        then = (
            "so its prices come from genai-prices"
            if default_price(model) is not None
            else "and genai-prices has none: no cost report"
        )
        return f"{file}: prices: no entry for the model {model!r} (the table has {names}), {then}"

    @property
    def price(self) -> Price | None:
        """The price of the backend's model (:attr:`priced` without its sources)."""
        priced = self.priced
        return priced.price if priced is not None else None

    @property
    def fingerprint(self) -> str:
        """A hash of everything that decides an item's result.

        Paths, concurrency, prices, logging, the stages' ``service_tier`` params and the
        backend settings its spec calls neutral (a latency, an endpoint) are left out:
        changing them
        keeps the journal's results valid.  The plan, the model, the backend's
        other settings, the instruction, the template and the output model
        (its import path and its JSON schema) are in.
        """
        spec = self.backend.spec
        backend = {
            "kind": spec.name,
            "model": self.backend.model,
            **answer_settings(self.backend.section, spec.neutral),
        }
        cache = None
        if self.cache is not None:
            cache = {
                "instruction": sha(self.cache.system_instruction),
                "enabled": self.cache.options.enabled,
            }
        output = {"model": self.output.model, "shape": self.output.digest}
        plan = self.plan.to_dict()
        for stage in plan["stages"]:
            # The tier changes the price and the wait, not the answer (as batch mode does
            # not): a job resumed on another tier keeps the results it paid for.
            params = stage.get("params", {})
            params.pop("service_tier", None)
            if not params:
                stage.pop("params", None)
        data = {
            "plan": plan,
            "backend": backend,
            "cache": cache,
            "template": self.input.template.text,
            "id_field": self.input.id_field,
            "output": output,
        }
        return sha(json.dumps(data, sort_keys=True, default=str))[:16]


def answer_settings(section: object, neutral: frozenset[str], prefix: str = "") -> dict[str, Any]:
    """The settable values of a settings object as plain data, minus the *neutral* dotted keys.

    Enums become their values, nested settings tables and lists of them are
    followed (a list's elements share the list's key as their prefix).
    """
    if not attrs.has(type(section)):
        return {}
    return {
        name: _plain(getattr(section, name), neutral, f"{prefix}{name}")
        for name in settable_keys(type(section))
        if f"{prefix}{name}" not in neutral
    }


def _plain(value: object, neutral: frozenset[str], key: str) -> Any:
    if attrs.has(type(value)):
        return answer_settings(value, neutral, f"{key}.")
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v, neutral, key) for v in value]
    return value


def sha(text: str) -> str:
    """The SHA-256 of *text*, in hex."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical(data: object) -> str:
    """*data* as JSON with sorted keys and no spaces: equal data, equal text."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
