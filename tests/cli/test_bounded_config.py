"""Every duration a pipeline file can set has an upper bound; NaN and infinity are refused.

The issue's example: ``[backend.sim] latency = 1e308`` passed ``plan check`` and
the run never ended.  Now ``plan check`` exits 2 and names the key, for every
duration in every section.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from stagedretry._settings import _fields
from stagedretry.cli._registry import backend_names, backend_spec
from stagedretry.cli.pipeline._model import RunConfig
from strategies.backend import CacheOptions

from .conftest import LADDER_TOML, Invocation, records, write_jsonl

BACKENDS = {
    "sim": '[backend]\nkind = "sim"\n\n[backend.sim]\n{sim}\n',
    "emulator": '[backend]\nkind = "emulator"\n\n[backend.emulator]\n{emulator}\n',
}

SCHEMA = '{"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}'

# (where the line goes, the line with {} for the value, the dotted key plan check must name)
DURATIONS = [
    ("sim", "latency = {}", "backend.sim.latency"),
    ("sim", "retry_after = {}", "backend.sim.retry_after"),
    ("emulator", "latency = {}", "backend.emulator.latency"),
    ("emulator", 'faults = [{{ kind = "slow", delay = {} }}]', "backend.emulator.faults[0].delay"),
    (
        "emulator",
        'faults = [{{ kind = "rate_limit", retry_delay = {} }}]',
        "backend.emulator.faults[0].retry_delay",
    ),
    ("cache", "ttl = {}", "cache.ttl"),
    ("cache", "renew_margin = {}", "cache.renew_margin"),
    ("run", "deadline = {}", "run.deadline"),
    ("plan", "timeout = {}", "plan.timeout"),
    ("plan", "deadline = {}", "plan.deadline"),
    ("plan", "rate_limit_backoff = {{ initial = 1, max = {} }}", "plan.rate_limit_backoff.max"),
]


def _pipeline(folder: Path, where: str, line: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "input.jsonl", records(2))
    (folder / "rules.md").write_text("Be precise.\n", "utf-8")
    (folder / "book.json").write_text(SCHEMA, "utf-8")
    sections = {"sim": "", "emulator": "", "cache": "", "run": "concurrency = 2", "plan": ""}
    sections[where] = line
    backend = "emulator" if where in ("emulator", "cache") else "sim"
    # The plan's own keys go under [plan], ahead of its stages.
    ladder = LADDER_TOML.replace("[plan]\n", f"[plan]\n{sections['plan']}\n", 1)
    cache = (
        f'[cache]\nsystem_instruction = "rules.md"\n{sections["cache"]}\n'
        if backend == "emulator"
        else ""
    )
    text = (
        f'name = "bounded"\n{ladder}\n'
        + BACKENDS[backend].format(sim=sections["sim"], emulator=sections["emulator"])
        + f"\n{cache}\n"
        + '[input]\npath = "input.jsonl"\ntemplate = "Describe {title}."\n\n'
        + '[output]\npath = "out/results.jsonl"\nschema = "book.json"\n\n'
        + f"[run]\n{sections['run']}\n"
    )
    path = folder / "pipeline.toml"
    path.write_text(text, "utf-8")
    return path


def test_the_issues_example_is_refused_by_plan_check(
    tmp_path: Path, cli: Callable[..., Invocation]
) -> None:
    checked = cli("plan", "check", str(_pipeline(tmp_path, "sim", "latency = 1e308")))
    assert checked.code == 2
    expected = (
        "backend.sim.latency: expected a number of seconds in [0, 3600], got the number 1e+308"
    )
    assert expected in checked.err
    assert "Traceback" not in checked.err


@pytest.mark.parametrize(("where", "line", "key"), DURATIONS, ids=[d[2] for d in DURATIONS])
@pytest.mark.parametrize("value", ["1e308", "nan", "inf", "-inf", "-1"])
def test_every_duration_refuses_huge_nan_infinite_and_negative_values(
    tmp_path: Path,
    cli: Callable[..., Invocation],
    where: str,
    line: str,
    key: str,
    value: str,
) -> None:
    checked = cli("plan", "check", str(_pipeline(tmp_path, where, line.format(value))))
    assert checked.code == 2, checked.out
    assert f"{key}: " in checked.err
    assert "Traceback" not in checked.err
    assert checked.err.count("error:") == 1


@pytest.mark.parametrize(("where", "line", "key"), DURATIONS, ids=[d[2] for d in DURATIONS])
def test_every_duration_takes_a_sane_value(
    tmp_path: Path, cli: Callable[..., Invocation], where: str, line: str, key: str
) -> None:
    checked = cli("plan", "check", str(_pipeline(tmp_path, where, line.format("900"))))
    assert checked.code == 0, checked.err


def _settings_classes() -> Iterator[type[Any]]:
    roots: list[type[Any]] = [RunConfig, CacheOptions]
    for name in backend_names():
        spec = backend_spec(name)
        roots += [spec.section_type, spec.params_type]
    seen: set[type[Any]] = set()
    while roots:
        cls = roots.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        for field in _fields(cls).values():
            for arg in (field.kind, *typing.get_args(field.kind)):
                for inner in (arg, *typing.get_args(arg)):
                    if isinstance(inner, type) and attrs.has(inner):
                        roots.append(inner)


def test_every_setting_in_seconds_has_a_finite_upper_bound() -> None:
    """The kind, not the examples: a duration added later without a bound fails here."""
    durations = []
    for cls in _settings_classes():
        for name, field in _fields(cls).items():
            if field.spec.unit == "seconds" and field.spec.settable:
                durations.append(f"{cls.__name__}.{name}")
                assert field.spec.maximum is not None, f"{cls.__name__}.{name} has no maximum"
                assert math.isfinite(field.spec.maximum)
    # The ones the issue names are among them.
    assert {"SimSettings.latency", "EmulatorSettings.latency", "FaultSettings.delay"} <= set(
        durations
    )
    assert {"RunConfig.deadline", "CacheOptions.ttl", "CacheOptions.renew_margin"} <= set(durations)
