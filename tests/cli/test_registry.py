"""The backend registry and the specs it finds: names, sections, params types, neutral keys."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from stagedretry import parse_settings, settable_keys
from stagedretry.cli._registry import backend_names, backend_spec
from stagedretry.cli.pipeline._model import answer_settings
from strategies import SamplingParams
from strategies.backend import CacheOptions, JobInputs, close_all
from strategies.gemini import GeminiParams
from strategies.gemini.emulator import Fault, FaultSettings, credentials_info
from strategies.sim import SimModel, SimSection, SimSettings


def test_every_registered_backend_has_a_spec_of_that_name() -> None:
    assert backend_names() == ("gemini", "vertex", "emulator", "sim")
    for name in backend_names():
        spec = backend_spec(name)
        assert spec.name == name
        # An empty section is a valid one: every setting has a default.
        section = parse_settings(spec.section_type, {}, "backend")
        assert isinstance(section, spec.section_type)
        neutral = set(spec.neutral)
        assert neutral, name  # each says what never changes an answer
        assert all(_settable(spec.section_type, key) for key in neutral), neutral


def _settable(cls: type, dotted: str) -> bool:
    head, _, rest = dotted.partition(".")
    if head not in settable_keys(cls):
        return False
    if not rest:
        return True
    inner = attrs.fields_dict(cls)[head].type
    return isinstance(inner, type) and _settable(inner, rest)


@pytest.mark.parametrize(
    ("name", "params_type"),
    [
        ("gemini", GeminiParams),
        ("vertex", GeminiParams),
        ("emulator", GeminiParams),
        ("sim", SamplingParams),
    ],
)
async def test_each_backend_builds_a_strategy_of_its_declared_params(
    name: str, params_type: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pipeline checks stage params against the spec; the runner, against the strategy."""
    spec = backend_spec(name)
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    nowhere = "http://127.0.0.1:9"
    if name == "vertex":
        # Credentials as Google's tools leave them (building sends nothing with them).
        adc = tmp_path / "adc.json"
        adc.write_text(json.dumps(credentials_info(nowhere)), encoding="utf-8")
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    section = parse_settings(
        spec.section_type, {"base_url": nowhere} if name in ("gemini", "vertex") else {}, "b"
    )
    job = JobInputs("gemini-2.5-flash", None, None, output_schema=schema, api_key="test-key")
    built = await spec.build(section, job)
    try:
        assert spec.params_type is params_type
        assert built.strategy.params_type is spec.params_type  # type: ignore[attr-defined]
    finally:
        await close_all(built.closers)


def test_the_sim_settings_are_the_sim_model_s_knobs_with_its_defaults() -> None:
    derived = {"fields", "instructions_tokens"}  # set per run, from the output and the cache
    knobs = {f.name for f in attrs.fields(SimModel)} - derived
    assert set(settable_keys(SimSettings)) == knobs
    assert SimModel(**attrs.asdict(SimSettings())) == SimModel()


def test_the_fault_settings_are_the_fault_s_fields_with_its_defaults() -> None:
    assert settable_keys(FaultSettings) == tuple(f.name for f in attrs.fields(Fault))
    for kind in ("hang", "rate_limit"):
        settings = parse_settings(FaultSettings, {"kind": kind}, "fault")
        assert settings.fault() == Fault(kind=settings.kind)


def test_neutral_settings_stay_out_of_the_fingerprint_data() -> None:
    section = parse_settings(SimSection, {"sim": {"seed": 4, "latency": 2.0}}, "backend")
    data = answer_settings(section, backend_spec("sim").neutral)
    assert data["sim"]["seed"] == 4
    assert "latency" not in data["sim"]
    emulator = backend_spec("emulator")
    section = parse_settings(
        emulator.section_type,
        {"api_version": "v1", "emulator": {"latency": 1, "faults": [{"kind": "hang"}]}},
        "backend",
    )
    data = answer_settings(section, emulator.neutral)
    assert "api_version" not in data
    assert "latency" not in data["emulator"]
    assert data["emulator"]["faults"][0]["kind"] == "hang"  # enums as their values


async def test_the_sim_backend_counts_the_cached_instruction_only_when_caching() -> None:
    spec = backend_spec("sim")
    section = spec.section_type()
    rules = "Answer as a librarian. " * 10
    cached = await spec.build(section, JobInputs("m", rules, CacheOptions()))
    inline = await spec.build(section, JobInputs("m", rules, CacheOptions(enabled=False)))
    assert cached.strategy.model.instructions_tokens > 0  # type: ignore[attr-defined]
    assert inline.strategy.model.instructions_tokens == 0  # type: ignore[attr-defined]
    assert cached.closers == ()
    assert cached.label == "sim (seed 0)"
