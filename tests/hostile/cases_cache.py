"""Hostile ``[backend.emulator] clock_offset`` values, and a run on a skewed server clock."""

from __future__ import annotations

import json

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, Case, run_args, sim_pipeline

SCHEMA = json.dumps({"type": "object", "properties": {"title": {"type": "string"}}})


def emulator_pipeline(knobs: str, *, cache: bool = False) -> str:
    """A pipeline on the in-process emulator with these ``[backend.emulator]`` lines."""
    text = sim_pipeline().replace(
        '[backend]\nkind = "sim"\n\n[backend.sim]\nseed = 3\n',
        '[backend]\nkind = "emulator"\n\n[backend.emulator]\n'
        f"invalid_rate = 0.0\ninvalid_rate_slope = 0.0\n{knobs}\n",
    )
    text = text.replace(
        '[output]\npath = "out/results.jsonl"',
        '[output]\npath = "out/results.jsonl"\nschema = "schema.json"',
    )
    if cache:
        text += '\n[cache]\nsystem_instruction = "rules.md"\n'
    return text


def files(knobs: str, *, cache: bool = False) -> dict[str, str]:
    return {
        "pipeline.toml": emulator_pipeline(knobs, cache=cache),
        "input.jsonl": INPUT,
        "schema.json": SCHEMA,
        "rules.md": "Describe the book in one careful sentence. " * 200,
    }


CASES = [
    Case(
        "cache-clock-offset-not-a-number",
        run_args(),
        ExitCode.USAGE,
        files=files('clock_offset = "soon"'),
        stderr=r"backend\.emulator\.clock_offset",
    ),
    Case(
        "cache-clock-offset-beyond-a-day",
        run_args(),
        ExitCode.USAGE,
        files=files("clock_offset = 1e9"),
        stderr=r"backend\.emulator\.clock_offset",
    ),
    Case(
        "cache-clock-offset-nan",
        run_args(),
        ExitCode.USAGE,
        files=files("clock_offset = nan"),
        stderr=r"backend\.emulator\.clock_offset",
    ),
    Case(
        "cache-clock-offset-set-aside",
        run_args("--set", "backend.emulator.clock_offset=-inf"),
        ExitCode.USAGE,
        files=files("clock_offset = 0"),
        stderr=r"backend\.emulator\.clock_offset",
    ),
    Case(
        "cache-server-clock-40-minutes-behind",
        run_args(),
        ExitCode.OK,
        files=files("clock_offset = -2400", cache=True),
    ),
]
