"""``stagedretry report`` given the wrong things: one sentence naming the file, exit 2 (or 4).

A missing file, a folder, an empty file, text or JSON lines that are no output,
another program's SQLite file, an output with no journal beside it, a journal
with no results or a damaged row, a report that cannot be written.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import stagedretry as sr
from stagedretry.cli._exit import ExitCode

from ._corpus import Case, Ran

OUTPUT_LINE = (
    '{"id": "item-1", "status": "succeeded", "output": {}, "stage": "full_t0", '
    '"prompts": 1, "attempts": 1, "reason": null, "errors": [], "line": 1}\n'
)


def _journal(folder: Path, *, results: bool = True) -> Path:
    path = folder / "j.journal.sqlite"
    attempt = sr.Attempt("full_t0", sr.OutcomeKind.SUCCEEDED, 1, True, started=1.0, duration=0.5)
    with sr.Journal(path, "0123456789abcdef") as journal:
        run = journal.begin_run()
        if results:
            journal.record(
                sr.ItemResult("item-1", sr.ItemStatus.SUCCEEDED, prompts=1, attempts=(attempt,)),
                line=1,
                digest="d",
                run=run,
            )
        journal.end_run(run, {})
    return path


def _damaged(folder: Path) -> None:
    path = _journal(folder)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE results SET result = '{not json'")


def _foreign(folder: Path) -> None:
    with sqlite3.connect(folder / "other.sqlite") as db:
        db.execute("CREATE TABLE songs (title TEXT)")


def _nothing_written(ran: Ran) -> None:
    assert not list(ran.folder.rglob("*.report.*")), "a report was written"


CASES = [
    Case(
        "report-missing-file",
        ("report", "nowhere.jsonl"),
        ExitCode.USAGE,
        stderr=r"'nowhere\.jsonl' does not exist",
    ),
    Case(
        "report-no-argument",
        ("report",),
        ExitCode.USAGE,
        stderr=r"give an output file or a journal",
    ),
    Case(
        "report-a-folder",
        ("report", "out"),
        ExitCode.USAGE,
        files={"out/results.jsonl": OUTPUT_LINE},
        stderr=r"'out' is a folder",
        check=_nothing_written,
    ),
    Case(
        "report-empty-output",
        ("report", "results.jsonl"),
        ExitCode.USAGE,
        files={"results.jsonl": ""},
        stderr=r"'results\.jsonl' is empty",
        check=_nothing_written,
    ),
    Case(
        "report-blank-lines-only",
        ("report", "results.jsonl"),
        ExitCode.USAGE,
        files={"results.jsonl": "\n\n  \n"},
        stderr=r"holds no results",
    ),
    Case(
        "report-text-is-no-output",
        ("report", "notes.txt"),
        ExitCode.USAGE,
        files={"notes.txt": "these are my notes\n"},
        stderr=r"'notes\.txt' line 1 is not a line of a stagedretry output",
    ),
    Case(
        "report-input-is-no-output",
        ("report", "input.jsonl"),
        ExitCode.USAGE,
        files={"input.jsonl": '{"id": "item-1", "title": "Title"}\n'},
        stderr=r"line 1 is not a line of a stagedretry output",
    ),
    Case(
        "report-binary-garbage",
        ("report", "blob.bin"),
        ExitCode.USAGE,
        files={"blob.bin": b"\x00\xff\xfe garbage \x1b[2J\n" * 10},
        stderr=r"'blob\.bin' line 1 is not",
    ),
    Case(
        "report-another-program-s-sqlite",
        ("report", "other.sqlite"),
        ExitCode.USAGE,
        before=_foreign,
        stderr=r"is not a stagedretry journal",
    ),
    Case(
        "report-output-without-journal",
        ("report", "results.jsonl"),
        ExitCode.USAGE,
        files={"results.jsonl": OUTPUT_LINE},
        stderr=r"found no results\.journal\.sqlite nor other \*journal\*\.sqlite beside the "
        r"output 'results\.jsonl'.*--pipeline",
        check=_nothing_written,
    ),
    Case(
        "report-journal-without-results",
        ("report", "j.journal.sqlite"),
        ExitCode.USAGE,
        before=lambda folder: _journal(folder, results=False),
        stderr=r"the journal 'j\.journal\.sqlite' holds no results: nothing to report",
    ),
    Case(
        "report-journal-damaged-row",
        ("report", "j.journal.sqlite"),
        ExitCode.USAGE,
        before=_damaged,
        stderr=r"holds a result that cannot be read",
    ),
    Case(
        "report-missing-pipeline",
        ("report", "--pipeline", "nowhere.toml"),
        ExitCode.USAGE,
        stderr=r"nowhere\.toml",
    ),
    Case(
        "report-unwritable-destination",
        ("report", "j.journal.sqlite", "-o", "/sys/stagedretry-corpus/r.html"),
        ExitCode.IO_ERROR,
        before=_journal,
        stderr=r"cannot write the report's diagram '/sys/stagedretry-corpus/r\.mmd'",
    ),
    Case(
        "report-destination-is-a-folder",
        ("report", "j.journal.sqlite", "-o", "here"),
        ExitCode.IO_ERROR,
        files={"here/keep": ""},
        before=_journal,
        stderr=r"cannot write the report 'here': it is a folder",
    ),
]
