"""The new tier keys set from the command line (``--set``) with bad values: each is one
sentence naming its place and saying it came from the command line, exit 2, nothing sent."""

from __future__ import annotations

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, Case, Ran, run_args, sim_pipeline


def _files() -> dict[str, str]:
    text = sim_pipeline(sim="seed = 3").replace(
        'name = "full_t0"',
        'name = "full_t0"\nmax_attempts = 2\non = { give_up = "partial_t0" }',
    )
    return {
        "pipeline.toml": text.replace("[plan]\n", "[plan]\ndeadline = 600\n", 1),
        "input.jsonl": INPUT,
    }


def nothing_sent(ran: Ran) -> None:
    assert not (ran.folder / "out" / "results.jsonl").exists()


_CLI = r".*\(set on the command line\)"

CASES = [
    Case(
        "adva-set-shed-empty",
        run_args("--set", "plan.stages[0].on.shed="),
        ExitCode.USAGE,
        files=_files(),
        stderr=r"plan\.stages\[0\]\.on\.shed: unknown stage ''" + _CLI,
        check=nothing_sent,
    ),
    Case(
        "adva-set-expedite-within-overflows",
        run_args(
            "--set",
            "plan.stages[0].expedite.within=1e999",
            "--set",
            "plan.stages[0].expedite.to=partial_t0",
        ),
        ExitCode.USAGE,
        files=_files(),
        stderr=r"plan\.stages\[0\]\.expedite\.within: must be a positive number of seconds, "
        r"got inf" + _CLI,
        check=nothing_sent,
    ),
    Case(
        "adva-set-give-up-to-itself",
        run_args("--set", "plan.stages[0].on.give_up=full_t0"),
        ExitCode.USAGE,
        files=_files(),
        stderr=r"plan\.stages\[0\]\.on\.give_up: 'full_t0' is the stage itself" + _CLI,
        check=nothing_sent,
    ),
    Case(
        "adva-set-max-attempts-nan",
        run_args("--set", "plan.stages[0].max_attempts=nan"),
        ExitCode.USAGE,
        files=_files(),
        stderr=r"plan\.stages\[0\]\.max_attempts: expected an integer" + _CLI,
        check=nothing_sent,
    ),
]
