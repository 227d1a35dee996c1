"""Hostile things done to a plan whose stages name another model than the job's cache's.

Each stage on another model may get that model's own cache (made when it pays); what a
user can get wrong there: a model name the service does not serve, a price table that
makes a cache never pay, instructions below a model's minimum, and the ``caches``
commands on such a pipeline.
"""

from __future__ import annotations

import json

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, KEY, Case, Ran, run_args

SCHEMA = json.dumps({"type": "object", "properties": {"title": {"type": "string"}}})
RULES = "Describe the book in one careful sentence. " * 200


def escalating(model: str, *, backend: str, cache: str = "", extra: str = "") -> str:
    """Two stages: the job's model, then *model*; every first answer invalid."""
    plan = (
        "[plan]\nmax_prompts = 2\nbackoff = { initial = 0.001, max = 0.01 }\n\n"
        '[[plan.stages]]\nname = "full_t0"\nparams = { temperature = 0.0 }\n\n'
        '[[plan.stages]]\nname = "full_other"\n'
        f"params = {{ temperature = 0.0, model = {json.dumps(model)} }}\n"
    )
    return (
        f'name = "hostile-models"\n{plan}\n[backend]\n{backend}\n\n'
        '[input]\npath = "input.jsonl"\ntemplate = "Describe {title}."\n\n'
        '[output]\npath = "out/results.jsonl"\nschema = "schema.json"\n\n'
        '[journal]\npath = "out/journal.sqlite"\n\n'
        "[run]\nconcurrency = 2\n\n"
        f'[cache]\nsystem_instruction = "rules.md"\n{cache}\n\n{extra}\n'
    )


EMULATOR = 'kind = "emulator"\n\n[backend.emulator]\nseed = 3\ninvalid_rate = 1.0'
SERVES_FLASH = EMULATOR + '\nmodels = ["gemini-2.5-flash"]'
GEMINI = 'kind = "gemini"\nmodel = "gemini-2.5-flash"\nbase_url = "{emulator}"'


def files(pipeline: str) -> dict[str, str]:
    return {
        "pipeline.toml": pipeline,
        "input.jsonl": INPUT,
        "schema.json": SCHEMA,
        "rules.md": RULES,
    }


def _summary(ran: Ran) -> dict[str, object]:
    text = ran.out
    summary = json.loads(text[text.index("{") :])
    assert isinstance(summary, dict)
    return summary


def _says_why_inline(ran: Ran) -> None:
    (row,) = _summary(ran)["uncached_stages"]  # type: ignore[misc]
    assert row["stage"] == "full_other"
    assert " inline vs $" in row["reason"]


def _too_small(ran: Ran) -> None:
    rows = _summary(ran)["uncached_stages"]
    assert isinstance(rows, list)
    assert {r["reason"] for r in rows} == {"below the model's minimum of 100000 tokens"}


CASES = [
    Case(
        # A price table in which a read from the cache costs more than sending: never pays.
        "caches-a-cached-read-dearer-than-a-send",
        run_args("--json"),
        ExitCode.SOME_FAILED,
        files=files(
            escalating(
                "gemini-2.5-pro",
                backend=EMULATOR,
                extra='[prices."gemini-2.5-pro"]\ninput = 1.0\ncached_input = 2.0\noutput = 1.0\n',
            )
        ),
        check=_says_why_inline,
    ),
    Case(
        "caches-every-model-below-its-minimum",
        run_args("--json"),
        ExitCode.SOME_FAILED,
        files=files(
            escalating(
                "gemini-2.5-pro",
                backend=EMULATOR + "\nmin_cache_tokens = 100000",
                cache='on_close = "delete"',
            )
        ),
        check=_too_small,
    ),
    Case(
        # The service answers 404 for a model it does not serve: the run stops, saying so.
        "caches-a-stage-on-a-model-the-service-does-not-serve",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(escalating("gemini-0-nonexistent", backend=SERVES_FLASH)),
        stderr="gemini-0-nonexistent",
    ),
    Case(
        "caches-a-stage-model-with-spaces-and-slashes",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(escalating("gemini 2.5/pro?", backend=SERVES_FLASH)),
    ),
    Case(
        "caches-list-of-a-pipeline-whose-stage-names-a-blank-model",
        ("caches", "list", "--pipeline", "pipeline.toml"),
        ExitCode.USAGE,
        files=files(escalating(" ", backend=GEMINI)),
        env={"GEMINI_API_KEY": KEY},
    ),
    Case(
        "caches-delete-all-matching-with-a-second-model",
        ("caches", "delete", "--all-matching", "pipeline.toml"),
        ExitCode.OK,
        files=files(escalating("gemini-2.5-pro", backend=GEMINI)),
        env={"GEMINI_API_KEY": KEY},
    ),
]
