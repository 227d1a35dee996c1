"""Hostile things for every parser of outside data: input lines, pipeline and schema files,
model answers and journal rows, each past a limit (depth, size, encoding, duplicate keys).

An input line becomes one failed item (exit 1, the others run); a config file is one sentence
(exit 2); an answer is invalid (the item goes on to its next stage); a journal row is one sentence
naming the journal.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import yaml

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, Case, Ran, base_env, run_args, sim_pipeline

DEEP = "[" * 100_000 + "]" * 100_000
CLEAN_SIM = "seed = 3\ninvalid_rate = 0.0"
TITLE_SCHEMA = json.dumps(
    {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
)
GOOD = [json.dumps({"id": f"item-{n}", "title": f"Title {n}"}) for n in (1, 2)]


def around(bad: str | bytes) -> bytes:
    """A good record, *bad* as line 2, another good record."""
    middle = bad if isinstance(bad, bytes) else bad.encode()
    return GOOD[0].encode() + b"\n" + middle + b"\n" + GOOD[1].encode() + b"\n"


def line_2_failed(reason: str) -> Callable[[Ran], None]:
    """A check: line 2 failed with an input_error *reason* (a regex), lines 1 and 3 succeeded."""

    def check(ran: Ran) -> None:
        rows = {
            row["line"]: row
            for row in map(json.loads, (ran.folder / "out/results.jsonl").read_text().splitlines())
        }
        assert rows[2]["status"] == "failed", rows[2]
        assert re.fullmatch(f"input_error: line 2: {reason}", rows[2]["reason"]), rows[2]
        assert rows[1]["status"] == rows[3]["status"] == "succeeded", rows

    return check


def input_case(name: str, bad: str | bytes, reason: str) -> Case:
    return Case(
        f"parsers-input-{name}",
        run_args(),
        ExitCode.SOME_FAILED,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN_SIM), "input.jsonl": around(bad)},
        check=line_2_failed(reason),
    )


def yaml_pipeline(extra: str = "") -> str:
    """The corpus's sim pipeline as YAML text."""
    return yaml.safe_dump(tomllib.loads(sim_pipeline(sim=CLEAN_SIM)), sort_keys=False) + extra


def with_schema(schema: str | bytes) -> dict[str, str | bytes]:
    return {
        "pipeline.toml": sim_pipeline(sim=CLEAN_SIM).replace(
            "[output]\n", '[output]\nschema = "schema.json"\n'
        ),
        "input.jsonl": INPUT,
        "schema.json": schema,
    }


def emulator_pipeline(fault: str) -> str:
    """A pipeline on the in-process emulator backend, injecting *fault* into request 1.

    A third stage (a full request again) follows the corpus's two, so that an invalid first
    answer, with nothing to repair, still has a stage to go to.
    """
    return (
        sim_pipeline(sim=CLEAN_SIM)
        .replace('kind = "sim"', 'kind = "emulator"')
        .replace(
            "[backend.sim]\n" + CLEAN_SIM,
            "[backend.emulator]\ninvalid_rate = 0.0\ninvalid_rate_slope = 0.0",
        )
        .replace("[output]\n", '[output]\nschema = "schema.json"\n')
        + '\n[[plan.stages]]\nname = "full_t1"\n'
        + f'\n[[backend.emulator.faults]]\nkind = "{fault}"\nat = [1]\n'
    )


def one_item_invalid_then_fine(ran: Ran) -> None:
    rows = [json.loads(r) for r in (ran.folder / "out/results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["succeeded"] * 5, rows
    retried = [r for r in rows if r["attempts"] > 1]
    assert len(retried) == 1, rows
    assert retried[0]["stage"] == "full_t1", retried


def damage_the_journal(sql: str, value: object) -> Callable[[Path], None]:
    """Before the case: run the job once, then change one row of its journal with *sql*."""

    def before(folder: Path) -> None:
        subprocess.run(
            [sys.executable, "-m", "stagedretry.cli", *run_args()],
            cwd=folder,
            env=base_env(),
            capture_output=True,
            timeout=60,
            check=True,
        )
        db = sqlite3.connect(folder / "out/journal.sqlite")
        with db:
            db.execute(sql, (value,))
        db.close()

    return before


def journal_case(name: str, sql: str, value: object, why: str) -> Case:
    return Case(
        f"parsers-journal-{name}",
        run_args(),
        ExitCode.USAGE,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN_SIM), "input.jsonl": INPUT},
        before=damage_the_journal(sql, value),
        stderr=r"the journal '.*journal\.sqlite' holds " + why,
    )


CASES = [
    # -- input lines ---------------------------------------------------------------------------
    input_case(
        "deep-100000",
        '{"id": "d", "card": ' + DEEP + "}",
        r"the record is nested more than 64 levels deep",
    ),
    input_case(
        "deep-65",
        '{"id": "d", "card": ' + "[" * 64 + "]" * 64 + "}",
        r"the record is nested more than 64 levels deep",
    ),
    input_case(
        "huge-line",
        json.dumps({"id": "huge", "title": "x" * (8 * 1024 * 1024)}),
        r"the line is \d+ bytes long, more than the limit of 8388608 bytes",
    ),
    input_case("invalid-utf8", b'{"id": "u", "title": "caf\xe9"}', r"not UTF-8 text \(byte 26.*"),
    input_case("nan", '{"id": "n", "title": NaN}', r"not valid JSON \(NaN is not a JSON number\)"),
    input_case("infinity", '{"id": "i", "n": -Infinity}', r"not valid JSON \(-Infinity is .*"),
    input_case("bigint", '{"id": "b", "n": 1' + "0" * 5000 + "}", r"not valid JSON \(Exceeds.*"),
    input_case("bad-json", '{"id": "x", "title": ', r"not valid JSON \(Expecting value.*"),
    Case(
        "parsers-input-utf8-bom",
        run_args(),
        ExitCode.OK,
        files={
            "pipeline.toml": sim_pipeline(sim=CLEAN_SIM),
            "input.jsonl": b"\xef\xbb\xbf" + INPUT.encode(),
        },
    ),
    Case(
        "parsers-input-utf16",
        run_args(),
        ExitCode.USAGE,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN_SIM), "input.jsonl": INPUT.encode("utf-16")},
        stderr=r"input\.jsonl' is UTF-16 text; save it as UTF-8",
    ),
    # -- pipeline files ------------------------------------------------------------------------
    Case(
        "parsers-yaml-deep-5000",
        ("plan", "check", "pipeline.yaml"),
        ExitCode.USAGE,
        files={
            "pipeline.yaml": yaml_pipeline("deep: " + "[" * 5000 + "]" * 5000 + "\n"),
            "input.jsonl": INPUT,
        },
        # One sentence, and nothing else.
        stderr=(
            r"^error: pipeline\.yaml: the document is nested more than 64 levels deep"
            r" \(line \d+\)\n$"
        ),
    ),
    Case(
        "parsers-yaml-block-deep",
        ("plan", "check", "pipeline.yaml"),
        ExitCode.USAGE,
        files={
            "pipeline.yaml": "".join(" " * i + f"k{i}:\n" for i in range(1000))
            + " " * 1000
            + "x: 1\n",
        },
        stderr=r"pipeline\.yaml: the document is nested more than 64 levels deep \(line 65\)",
    ),
    Case(
        "parsers-yaml-duplicate-key",
        ("plan", "check", "pipeline.yaml"),
        ExitCode.USAGE,
        files={
            "pipeline.yaml": yaml_pipeline().replace(
                "- name: partial_t0\n", "- name: partial_t0\n    name: partial_t1\n"
            ),
            "input.jsonl": INPUT,
        },
        stderr=(
            r"pipeline\.yaml: plan\.stages\[1\]: duplicate key 'name'"
            r" \(line \d+, first given on line \d+\)"
        ),
    ),
    Case(
        "parsers-yaml-alias-loop",
        ("plan", "check", "pipeline.yaml"),
        ExitCode.USAGE,
        files={"pipeline.yaml": "plan: &p\n  stages: [*p]\n", "input.jsonl": INPUT},
        stderr=r"pipeline\.yaml: the document is nested more than 64 levels deep, aliases followed",
    ),
    Case(
        "parsers-yaml-billion-laughs",
        ("plan", "check", "pipeline.yaml"),
        ExitCode.USAGE,
        files={
            "pipeline.yaml": "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n"
                for p, c in zip("abcdefghi", "bcdefghij", strict=True)
            ),
        },
        stderr=r"pipeline\.yaml: the document is too large",
    ),
    Case(
        "parsers-yaml-bad-date",
        ("plan", "check", "pipeline.yaml"),
        ExitCode.USAGE,
        files={"pipeline.yaml": "plan:\n  max_prompts: 2001-13-45\n"},
        stderr=r"pipeline\.yaml: not valid YAML: month must be in 1\.\.12 \(line 2, column 16\)",
    ),
    Case(
        "parsers-toml-deep",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files={
            "pipeline.toml": sim_pipeline(extra="[prices]\ndeep = " + "[" * 5000 + "]" * 5000),
            "input.jsonl": INPUT,
        },
        stderr=r"pipeline\.toml: the document is nested more than 64 levels deep",
    ),
    Case(
        "parsers-toml-bigint",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files={
            "pipeline.toml": sim_pipeline(run="concurrency = 1" + "0" * 5000),
            "input.jsonl": INPUT,
        },
        stderr=r"pipeline\.toml: not valid TOML: Exceeds the limit",
    ),
    Case(
        "parsers-toml-bom",
        ("plan", "check", "pipeline.toml"),
        ExitCode.OK,
        files={"pipeline.toml": b"\xef\xbb\xbf" + sim_pipeline().encode(), "input.jsonl": INPUT},
    ),
    Case(
        "parsers-pipeline-huge",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files={
            "pipeline.toml": "# " + "x" * (2 * 1024 * 1024) + "\n" + sim_pipeline(),
            "input.jsonl": INPUT,
        },
        stderr=r"pipeline\.toml: the file is larger than the limit of 1048576 bytes",
    ),
    # -- schema files --------------------------------------------------------------------------
    Case(
        "parsers-schema-deep",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files=with_schema('{"type": "object", "properties": {"a": ' + DEEP + "}}"),
        stderr=r"output\.schema: schema\.json is nested more than 64 levels deep",
    ),
    Case(
        "parsers-schema-nan",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files=with_schema('{"type": "object", "maxProperties": NaN}'),
        stderr=r"output\.schema: schema\.json is not valid JSON: NaN is not a JSON number",
    ),
    Case(
        "parsers-schema-bom",
        run_args(),
        ExitCode.OK,
        files=with_schema(
            b"\xef\xbb\xbf"
            + json.dumps(
                {
                    "type": "object",
                    "properties": {"title": {"type": "string"}},
                    "required": ["title"],
                }
            ).encode()
        ),
    ),
    # -- answers -------------------------------------------------------------------------------
    Case(
        "parsers-answer-deep",
        run_args(),
        ExitCode.OK,
        files={
            "pipeline.toml": emulator_pipeline("deep_answer"),
            "input.jsonl": INPUT,
            "schema.json": TITLE_SCHEMA,
        },
        check=one_item_invalid_then_fine,
    ),
    Case(
        "parsers-answer-deep-body",
        run_args(),
        ExitCode.OK,
        files={
            "pipeline.toml": emulator_pipeline("deep_json"),
            "input.jsonl": INPUT,
            "schema.json": TITLE_SCHEMA,
        },
        check=one_item_invalid_then_fine,
    ),
    # -- journal rows --------------------------------------------------------------------------
    journal_case(
        "not-json", "UPDATE results SET result = ?", '{"id": ', "a result that cannot be read"
    ),
    journal_case(
        "deep-row",
        "UPDATE results SET result = ?",
        '{"id": "item-1", "status": "succeeded", "output": ' + DEEP + "}",
        r"a result that cannot be read \(nested more than 128 levels deep\)",
    ),
    journal_case(
        "not-a-result",
        "UPDATE results SET result = ?",
        "{}",
        r"a result that cannot be read \(KeyError",
    ),
    journal_case(
        "bytes", "UPDATE results SET result = ?", b"\xff\xfe", "a result that cannot be read"
    ),
    journal_case(
        "stats",
        "UPDATE runs SET stats = ?",
        '{"items": "many"}',
        "a run's statistics that cannot be read",
    ),
]
