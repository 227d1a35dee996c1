"""Hostile tier fallbacks in a pipeline file: ``on.shed``, ``on.give_up`` and ``expedite``
misused; each is one sentence naming its place, exit 2, before anything is sent."""

from __future__ import annotations

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, Case, Ran, run_args, sim_pipeline


def first_stage(extra: str, *, plan: str = "", sim: str = "seed = 3") -> dict[str, str]:
    """The corpus's sim pipeline with *extra* lines in its first stage (and *plan* lines)."""
    text = sim_pipeline(sim=sim).replace('name = "full_t0"', f'name = "full_t0"\n{extra}')
    if plan:
        text = text.replace("[plan]\n", f"[plan]\n{plan}\n", 1)
    return {"pipeline.toml": text, "input.jsonl": INPUT}


def nothing_sent(ran: Ran) -> None:
    assert not (ran.folder / "out" / "results.jsonl").exists()


CASES = [
    Case(
        "tiers-shed-unknown-stage",
        run_args(),
        ExitCode.USAGE,
        files=first_stage('on = { shed = "full_std" }'),
        stderr=r"plan\.stages\[0\]\.on\.shed: unknown stage 'full_std' \(known: full_t0, "
        r"partial_t0; or retry, next, fail, exhaust\)",
        check=nothing_sent,
    ),
    Case(
        "tiers-shed-not-a-string",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files=first_stage("on = { shed = true }"),
        stderr=r"plan\.stages\[0\]\.on\.shed: expected a string",
    ),
    Case(
        "tiers-give-up-without-max-attempts",
        run_args(),
        ExitCode.USAGE,
        files=first_stage('on = { give_up = "partial_t0" }'),
        stderr=r"plan\.stages\[0\]\.on\.give_up: needs the stage's max_attempts",
        check=nothing_sent,
    ),
    Case(
        "tiers-give-up-to-itself",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files=first_stage('max_attempts = 2\non = { give_up = "full_t0" }'),
        stderr=r"plan\.stages\[0\]\.on\.give_up: 'full_t0' is the stage itself",
    ),
    Case(
        "tiers-expedite-without-deadline",
        run_args(),
        ExitCode.USAGE,
        files=first_stage('expedite = { within = 60, to = "partial_t0" }'),
        stderr=r"plan\.stages\[0\]\.expedite: needs the plan's deadline",
        check=nothing_sent,
    ),
    Case(
        "tiers-expedite-past-the-deadline",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files=first_stage('expedite = { within = 1e308, to = "partial_t0" }', plan="deadline = 60"),
        stderr=r"plan\.stages\[0\]\.expedite\.within: must be at most",
    ),
    Case(
        "tiers-expedite-negative",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files=first_stage('expedite = { within = -5, to = "partial_t0" }', plan="deadline = 60"),
        stderr=r"plan\.stages\[0\]\.expedite\.within: must be a positive number of seconds",
    ),
    Case(
        "tiers-expedite-nan",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files=first_stage('expedite = { within = nan, to = "partial_t0" }', plan="deadline = 60"),
        stderr=r"plan\.stages\[0\]\.expedite\.within",
    ),
    Case(
        "tiers-expedite-to-itself",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files=first_stage('expedite = { within = 30, to = "full_t0" }', plan="deadline = 60"),
        stderr=r"plan\.stages\[0\]\.expedite\.to: 'full_t0' is the stage itself",
    ),
    Case(
        "tiers-expedite-a-string",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files=first_stage('expedite = "partial_t0"', plan="deadline = 60"),
        stderr=r"plan\.stages\[0\]\.expedite: expected a table",
    ),
    Case(
        "tiers-expedite-cycle",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files={
            "pipeline.toml": sim_pipeline()
            .replace("[plan]\n", "[plan]\ndeadline = 60\n", 1)
            .replace(
                'name = "full_t0"',
                'name = "full_t0"\nexpedite = { within = 30, to = "partial_t0" }',
            )
            .replace(
                'kind = "partial"',
                'kind = "partial"\nexpedite = { within = 30, to = "full_t0" }',
            ),
            "input.jsonl": INPUT,
        },
        stderr=r"expedite moves form a cycle \(full_t0 -> partial_t0 -> full_t0\)",
    ),
    Case(
        # All three declared, and a clean run: the sim never sheds, nothing falls back.
        "tiers-fallbacks-run",
        run_args(),
        ExitCode.OK,
        files=first_stage(
            'max_attempts = 2\non = { shed = "partial_t0", give_up = "partial_t0" }\n'
            'expedite = { within = 30, to = "partial_t0" }',
            plan="deadline = 600",
            sim="seed = 3\ninvalid_rate = 0.0",
        ),
    ),
]
