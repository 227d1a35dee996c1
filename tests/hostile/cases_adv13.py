"""Adversarial checks of issue 13's commands: what a user can point them at by mistake.

A bare plan file (what ``Plan.load`` and ``plan show`` read) given to ``run`` or to
``report --pipeline``: one sentence saying it is a bare plan, exit 2.

``report -o`` naming a file of the run it reads (its output, its journal and the journal's
side files), another file that is no report (the input), or a device: refused with one
sentence, exit 2, and nothing replaced.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, PLAN, Case, Ran, run_args, sim_pipeline
from .cases_report import OUTPUT_LINE, _journal

_INPUT = '{"id": "item-1", "title": "A"}\n'
_FILES = {"results.jsonl": OUTPUT_LINE, "input.jsonl": _INPUT}


def _job(folder: Path) -> None:
    _journal(folder)


def _untouched(ran: Ran) -> None:
    """The run's files are as they were, and no report was written."""
    assert (ran.folder / "results.jsonl").read_text("utf-8") == OUTPUT_LINE
    assert (ran.folder / "input.jsonl").read_text("utf-8") == _INPUT
    assert (ran.folder / "j.journal.sqlite").read_bytes().startswith(b"SQLite format 3\x00")
    assert not list(ran.folder.glob("*.html")), "a report was written"
    assert not list(ran.folder.glob("*.mmd")), "a diagram was written"


def _device_kept(ran: Ran) -> None:
    _untouched(ran)
    assert stat.S_ISCHR(Path("/dev/null").stat().st_mode), "/dev/null was replaced"


def _replaced(ran: Ran) -> None:
    """An earlier report is replaced by the new one."""
    page = (ran.folder / "again.html").read_text("utf-8")
    assert "report: old" not in page
    assert "Content-Security-Policy" in page


def _refused(name: str, source: str, target: str, stderr: str) -> Case:
    return Case(
        f"adv13-report-onto-{name}",
        ("report", source, "-o", target),
        ExitCode.USAGE,
        files=_FILES,
        before=_job,
        stderr=stderr,
        check=_untouched,
    )


CASES = [
    _refused(
        "its-journal",
        "results.jsonl",
        "j.journal.sqlite",
        r"^error: the report would replace 'j\.journal\.sqlite', the journal the report reads",
    ),
    _refused(
        "its-journal-by-another-spelling",
        "results.jsonl",
        "./sub/../j.journal.sqlite",
        r"the journal the report reads",
    ),
    _refused(
        "its-journal-wal",
        "j.journal.sqlite",
        "j.journal.sqlite-wal",
        r"a file of the journal the report reads",
    ),
    _refused(
        "its-output",
        "results.jsonl",
        "results.jsonl",
        r"^error: the report would replace 'results\.jsonl', the run's output",
    ),
    _refused(
        "the-output-given-the-journal",
        "j.journal.sqlite",
        "results.jsonl",
        r"^error: the report would replace 'results\.jsonl', which is no earlier report",
    ),
    _refused(
        "the-input",
        "results.jsonl",
        "input.jsonl",
        r"'input\.jsonl', which is no earlier report: give -o another path",
    ),
    Case(
        "adv13-report-onto-a-device",
        ("report", "results.jsonl", "-o", "/dev/null"),
        ExitCode.USAGE,
        files=_FILES,
        before=_job,
        stderr=r"^error: cannot write the report '/dev/null': it is not a regular file",
        check=_device_kept,
    ),
    Case(
        "adv13-report-twice-to-one-path",
        ("report", "results.jsonl", "-o", "again.html"),
        ExitCode.OK,
        files={**_FILES, "again.html": "<!DOCTYPE html>\n<title>stagedretry report: old</title>\n"},
        before=_job,
        check=_replaced,
    ),
]

_BARE_TOML = PLAN.replace("[plan]\n", "").replace("[[plan.stages]]", "[[stages]]")
_BARE_YAML = "max_prompts: 4\nstages:\n  - name: full_t0\n  - name: partial_t0\n    kind: partial\n"
_BARE = r"max_prompts: a plan's key at the top level: this is a bare plan file"


def _bare(name: str, args: tuple[str, ...], plan_file: str, text: str) -> Case:
    return Case(
        f"adv13-bare-plan-{name}",
        args,
        ExitCode.USAGE,
        files={plan_file: text, "input.jsonl": INPUT},
        stderr=rf"^error: {plan_file.replace('.', '[.]')}: {_BARE}.*adds an \[input\]",
    )


CASES += [
    _bare("run-toml", ("run", "plan.toml", "--no-progress"), "plan.toml", _BARE_TOML),
    _bare("run-yaml", ("run", "plan.yaml", "--no-progress"), "plan.yaml", _BARE_YAML),
    _bare("report-pipeline", ("report", "--pipeline", "plan.toml"), "plan.toml", _BARE_TOML),
    Case(
        "adv13-plan-keys-beside-pipeline-sections-run",
        run_args(),
        ExitCode.USAGE,
        files={
            "pipeline.toml": "max_prompts = 3\n"
            + PLAN
            + '[input]\npath = "input.jsonl"\ntemplate = "{title}"\n',
            "input.jsonl": INPUT,
        },
        stderr=r"^error: pipeline[.]toml: max_prompts: a plan's key at the top level of a "
        r"pipeline file: put the plan's keys under \[plan\]\n$",
    ),
    Case(
        "adv13-plan-check-one-stage-one-prompt",
        ("plan", "check", "plan.toml"),
        ExitCode.OK,
        files={"plan.toml": 'max_prompts = 1\n[[stages]]\nname = "only"\n'},
        check=lambda ran: _says(ran, "ok: plan.toml: a bare plan, 1 stage, max 1 prompt per item"),
    ),
]


def _says(ran: Ran, text: str) -> None:
    assert ran.out.startswith(text), ran.out


def _says_nothing_ran(ran: Ran) -> None:
    assert not (ran.folder / "out").exists()


def _empty_status(name: str, text: str) -> Case:
    return Case(
        f"adv13-retry-empty-status-{name}",
        run_args("--retry", text),
        ExitCode.USAGE,
        files={"pipeline.toml": sim_pipeline(), "input.jsonl": INPUT},
        stderr=r"^error: --retry: an empty status in '[a-z,]*' \(expected a comma-separated "
        r"list of: succeeded, failed, exhausted, cancelled, e\.g\. failed,exhausted\)\n$",
        check=_says_nothing_ran,
    )


CASES += [
    _empty_status("trailing-comma", "failed,"),
    _empty_status("leading-comma", ",exhausted"),
    _empty_status("double-comma", "failed,,exhausted"),
]


# Ids the library refuses are refused by the command too (and the other way round).
_ODD_IDS = "".join(
    json.dumps({"id": value, "title": "T"}) + "\n"
    for value in ("ok-1", " ", "\t", 2**64, 2**64 - 1, -(2**64))
)

CASES += [
    Case(
        "adv13-plan-check-blank-and-overlong-ids",
        ("plan", "check", "pipeline.toml"),
        ExitCode.SOME_FAILED,
        files={"pipeline.toml": sim_pipeline(), "input.jsonl": _ODD_IDS},
        stderr=r"error: 4 of 6 records would fail with input_error",
        check=lambda ran: _says(ran, "pipeline.toml: 2 stages, max 4 prompts per item"),
    ),
]
