"""A journal file damaged or made by something else: opening it, reading it and resuming from
it either work or raise :class:`JournalError` naming the file; never a raw ``sqlite3`` error."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

import stagedretry as sr
from stagedretry.testing import ScriptedStrategy, VirtualClock

ITEMS = [(f"i{k}", "prompt") for k in range(6)]


def _runner() -> sr.Runner[object]:
    strategy = ScriptedStrategy()
    return sr.Runner(
        sr.Plan.ladder(), strategy, validator=strategy.validator(), clock=VirtualClock()
    )


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    path = tmp_path_factory.mktemp("good") / "journal.sqlite"
    asyncio.run(_runner().run(ITEMS, journal=sr.Journal(path)))
    with sr.Journal(path):
        pass  # closed cleanly: the WAL is folded into the file
    return path


def _sql(*statements: str) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        db = sqlite3.connect(path)
        for statement in statements:
            db.execute(statement)
        db.commit()
        db.close()

    return change


def _truncate(size: int) -> Callable[[Path], None]:
    def change(path: Path) -> None:
        with path.open("r+b") as file:
            file.truncate(size)

    return change


DAMAGE: dict[str, Callable[[Path], None]] = {
    "results_of_other_columns": _sql("DROP TABLE results", "CREATE TABLE results (a, b)"),
    "runs_of_other_columns": _sql("DROP TABLE runs", "CREATE TABLE runs (id INTEGER PRIMARY KEY)"),
    "meta_of_other_columns": _sql("DROP TABLE meta", "CREATE TABLE meta (k, v, w)"),
    "results_a_view": _sql("DROP TABLE results", "CREATE VIEW results AS SELECT 1 AS a"),
    "truncated": _truncate(1000),
    "row_not_json": _sql("UPDATE results SET result = '{oops' WHERE item_id = 'i1'"),
    "row_blob": _sql("UPDATE results SET result = x'00ff' WHERE item_id = 'i2'"),
    "schema_not_a_number": _sql("UPDATE meta SET value = 'x' WHERE key = 'schema'"),
    "stats_not_json": _sql("UPDATE runs SET stats = '{oops'"),
}


@pytest.mark.parametrize("name", sorted(DAMAGE))
async def test_a_damaged_journal_works_or_is_one_journal_error(
    name: str, journal: Path, tmp_path: Path
) -> None:
    path = tmp_path / "journal.sqlite"
    shutil.copy(journal, path)
    DAMAGE[name](path)

    def read() -> None:
        with sr.Journal(path) as opened:
            opened.done()
            list(opened.results())
            opened.runs()

    messages: list[str] = []
    try:
        read()
    except sr.JournalError as error:
        messages.append(str(error))
    try:
        await _runner().run(ITEMS, journal=sr.Journal(path))
    except sr.JournalError as error:
        messages.append(str(error))
    assert all(str(path) in message for message in messages)


def test_tables_made_by_something_else_are_not_a_journal(journal: Path, tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    shutil.copy(journal, path)
    DAMAGE["results_of_other_columns"](path)
    with pytest.raises(
        sr.JournalError, match=r"is not a stagedretry journal \(its table 'results'"
    ):
        sr.Journal(path).open()


def test_a_failed_read_is_a_journal_error_naming_the_journal(tmp_path: Path) -> None:
    # SQLite's own failure on a read (here: a table gone under an open journal) is never
    # a raw sqlite3 error to the caller.
    path = tmp_path / "journal.sqlite"
    with sr.Journal(path, "fp") as journal:
        other = sqlite3.connect(path)
        other.execute("DROP TABLE results")
        other.commit()
        other.close()
        for read in (journal.done, journal.count, journal.foreign, lambda: list(journal.results())):
            with pytest.raises(sr.JournalError, match=r"cannot read the journal .*journal\.sqlite"):
                read()
