"""Hostile pipeline files: each mistake is one sentence naming its place, exit 2."""

from __future__ import annotations

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, Case, run_args, sim_pipeline

CASES = [
    Case(
        "config-missing-file",
        ("plan", "check", "nowhere.toml"),
        ExitCode.USAGE,
        stderr=r"nowhere\.toml",
    ),
    Case(
        "config-not-toml",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files={"pipeline.toml": "[plan\nmax_prompts = ", "input.jsonl": INPUT},
        stderr=r"pipeline\.toml",
    ),
    Case(
        "config-unknown-stage-target",
        run_args(),
        ExitCode.USAGE,
        files={
            "pipeline.toml": sim_pipeline().replace(
                'name = "partial_t0"', 'name = "partial_t0"\non.invalid = "nowhere"'
            ),
            "input.jsonl": INPUT,
        },
        stderr=r"plan\.stages\[1\]\.on\.invalid",
    ),
    Case(
        "config-negative-concurrency",
        run_args(),
        ExitCode.USAGE,
        files={"pipeline.toml": sim_pipeline(run="concurrency = -3"), "input.jsonl": INPUT},
        stderr=r"run\.concurrency",
    ),
    Case(
        "run-clean",
        run_args(),
        ExitCode.OK,
        files={
            "pipeline.toml": sim_pipeline(sim="seed = 3\ninvalid_rate = 0.0"),
            "input.jsonl": INPUT,
        },
    ),
]
