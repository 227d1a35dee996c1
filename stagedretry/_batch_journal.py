"""The batch jobs of a run in its journal: what was submitted, so a resumed run never pays twice.

Each job is written after the service accepted it and before it is polled:
its name, stage and model, and for each entry the item id, the item's input
digest, the stage and the attempt number its key stands for.  A resumed run
that reaches the same (item, input, stage, attempt) polls the recorded job
again instead of sending the request in a new one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import attrs

from ._journal import BATCH_SCHEMA, Journal

__all__ = ["BatchJobRecord", "BatchLedger", "EntryIdent"]

EntryIdent = tuple[str, str, str, int]
"""What a batch entry stands for: (item id, input digest, stage name, attempt number)."""


@attrs.frozen
class BatchJobRecord:
    """One batch job as the journal holds it (``submitted_at`` in Unix seconds)."""

    name: str
    stage: str
    model: str | None
    entries: int
    submitted_at: float
    consumed: bool


class BatchLedger:
    """The batch jobs recorded under one journal's fingerprint."""

    __slots__ = ("_journal",)

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        with journal._writing("add the batch jobs' tables") as db:
            for statement in BATCH_SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def known(self) -> dict[EntryIdent, list[str]]:
        """Each entry's identity -> the names of the jobs it was sent in, oldest first."""
        journal = self._journal
        rows = journal._read(
            "SELECT item_id, digest, stage, attempt, name FROM batch_entries "
            "WHERE fingerprint = ? ORDER BY rowid",
            (journal.fingerprint,),
        )
        known: dict[EntryIdent, list[str]] = {}
        for item, digest, stage, attempt, name in journal._rows(rows):
            known.setdefault((str(item), str(digest), str(stage), int(attempt)), []).append(
                str(name)
            )
        return known

    def record(
        self,
        name: str,
        stage: str,
        model: str | None,
        entries: Iterable[tuple[str, EntryIdent]],
    ) -> None:
        """Write job *name* and its entries (key, identity) in one transaction."""
        journal = self._journal
        fingerprint = journal.fingerprint
        with journal._writing("record a batch job") as db:
            db.execute(
                "INSERT OR REPLACE INTO batch_jobs VALUES (?, ?, ?, ?, ?, 0)",
                (fingerprint, name, stage, model, time.time()),
            )
            db.executemany(
                "INSERT INTO batch_entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (fingerprint, name, key, item, digest, entry_stage, attempt)
                    for key, (item, digest, entry_stage, attempt) in entries
                ],
            )

    def consume(self, name: str) -> None:
        """Mark job *name* consumed: its answers were fed to their items."""
        journal = self._journal
        with journal._writing("mark a batch job consumed") as db:
            db.execute(
                "UPDATE batch_jobs SET consumed = 1 WHERE fingerprint = ? AND name = ?",
                (journal.fingerprint, name),
            )

    def jobs(self) -> list[BatchJobRecord]:
        """Every job recorded under this fingerprint, in the order submitted."""
        journal = self._journal
        counts: Mapping[str, int] = dict(
            journal._rows(
                journal._read(
                    "SELECT name, COUNT(*) FROM batch_entries WHERE fingerprint = ? GROUP BY name",
                    (journal.fingerprint,),
                )
            )
        )
        rows = journal._read(
            "SELECT name, stage, model, submitted_at, consumed FROM batch_jobs "
            "WHERE fingerprint = ? ORDER BY submitted_at, name",
            (journal.fingerprint,),
        )
        return [
            BatchJobRecord(str(n), str(s), m, int(counts.get(n, 0)), float(t), bool(c))
            for n, s, m, t, c in journal._rows(rows)
        ]
