"""Adversarial checks of issue 13's commands: what a user can point them at by mistake.

``report -o`` naming a file of the run it reads (its output, its journal and the journal's
side files), another file that is no report (the input), or a device: refused with one
sentence, exit 2, and nothing replaced.
"""

from __future__ import annotations

import stat
from pathlib import Path

from stagedretry.cli._exit import ExitCode

from ._corpus import Case, Ran
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
