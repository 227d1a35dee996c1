"""The crash-safe journal: nothing lost, nothing paid twice.

One SQLite file in WAL mode holds one row per item id per fingerprint (a hash
of what decides results: the plan, the strategy and the validator, or a CLI
pipeline).  A terminal :class:`ItemResult` is committed here *before*
anything else (the output file, the progress bar) learns of it, so after a
crash, a Ctrl-C or ``kill -9`` a new run knows exactly which items are done and
never sends them again.  Rows are plain JSON: no pickles, and secrets given to
the journal (or to the run writing it) are masked in the text of each row (its
reason, error messages, answers and output strings) before anything is written;
ids, statuses, stage names, field names and numbers are structure and are
written as they are, so a row always loads back.

Durability: ``synchronous=NORMAL`` in WAL mode survives the death of the
process (the case that matters: Ctrl-C, ``kill -9``, an OOM kill).  A power
cut may lose the last few commits; those items are then simply run again,
never duplicated, since the output is rebuilt from the journal.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from ._fs import LockFile, os_reason
from ._limits import MAX_DEPTH, loads, utf8_json
from ._outcomes import FieldError, FieldErrorKind, FieldPath, OutcomeKind, StagedRetryError
from ._redact import Secrets, mask_result
from ._results import Attempt, ItemResult, ItemStatus, ResponseMeta, Usage

ROW_MAX_DEPTH: Final = 2 * MAX_DEPTH
"""How deep a row read back may nest: an output (at most ``MAX_DEPTH`` from a JSON answer)
inside the row's own structure, with room to spare."""
SCHEMA_VERSION: Final = 2
"""2: field paths are JSON lists of keys and indexes (1 wrote dotted strings); attempts
may list ``mended`` errors.  Rows of either version load: see :func:`result_from_json`."""
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    fingerprint TEXT NOT NULL,
    item_id TEXT NOT NULL,
    status TEXT NOT NULL,
    line INTEGER,
    digest TEXT NOT NULL,
    result TEXT NOT NULL,
    run INTEGER NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, item_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    fingerprint TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    stats TEXT
);
CREATE TABLE IF NOT EXISTS history (
    fingerprint TEXT NOT NULL,
    item_id TEXT NOT NULL,
    status TEXT NOT NULL,
    line INTEGER,
    digest TEXT NOT NULL,
    result TEXT NOT NULL,
    run INTEGER NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS retries (
    fingerprint TEXT NOT NULL,
    item_id TEXT NOT NULL,
    statuses TEXT NOT NULL,
    done INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, item_id)
) WITHOUT ROWID;
"""
BATCH_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS batch_jobs (
    fingerprint TEXT NOT NULL,
    name TEXT NOT NULL,
    stage TEXT NOT NULL,
    model TEXT,
    submitted_at REAL NOT NULL,
    consumed INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS batch_entries (
    fingerprint TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    item_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    stage TEXT NOT NULL,
    attempt INTEGER NOT NULL
);
"""
"""The batch jobs of a batch-mode run (see ``_batch_journal``): created by the first such run
only, so a journal of synchronous runs stays as small as before."""
_SOURCES: Final = "retry_sources:"
"""The ``meta`` key (with a fingerprint after it) of the fingerprints a retry under it read."""
_INSERT_RESULT: Final = (
    "INSERT OR REPLACE INTO results "
    "(fingerprint, item_id, status, line, digest, result, run, recorded_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SUPERSEDE: Final = (
    "INSERT INTO history (fingerprint, item_id, status, line, digest, result, run, recorded_at) "
    "SELECT fingerprint, item_id, status, line, digest, result, run, recorded_at FROM results "
    "WHERE fingerprint = ? AND item_id = ? AND run IS NOT ?"
)
_HISTORY: Final = (
    "SELECT result, line, digest, run, fingerprint FROM ("
    "SELECT result, line, digest, run, fingerprint, recorded_at FROM results WHERE item_id = ? "
    "UNION ALL "
    "SELECT result, line, digest, run, fingerprint, recorded_at FROM history WHERE item_id = ?"
    ") ORDER BY run, recorded_at"
)


_PAID: Final = (
    "SELECT result, line, digest, run, item_id, recorded_at FROM results WHERE fingerprint = ? "
    "UNION ALL "
    "SELECT result, line, digest, run, item_id, recorded_at FROM history WHERE fingerprint = ?"
)


_RESULT_COLUMNS: Final = (
    "fingerprint",
    "item_id",
    "status",
    "line",
    "digest",
    "result",
    "run",
    "recorded_at",
)
"""A result's row: the latest in ``results``, the ones it replaced in ``history``."""

_COLUMNS: Final = {
    "meta": ("key", "value"),
    "results": _RESULT_COLUMNS,
    "runs": ("id", "fingerprint", "started_at", "finished_at", "stats"),
    "history": _RESULT_COLUMNS,
    "retries": ("fingerprint", "item_id", "statuses", "done"),
    "batch_jobs": ("fingerprint", "name", "stage", "model", "submitted_at", "consumed"),
    "batch_entries": ("fingerprint", "name", "key", "item_id", "digest", "stage", "attempt"),
}
"""The columns each table of :data:`_SCHEMA` has: a file whose tables lack one is not a journal."""


def _check_tables(db: sqlite3.Connection) -> None:
    """Raise ``sqlite3.DatabaseError`` if the file is another program's SQLite database: it has
    tables but no ``meta``, or a table of the journal's name lacks one of its columns."""
    kinds = dict(db.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')"))
    tables = {name for name, kind in kinds.items() if kind == "table"}
    if tables and "meta" not in tables:
        raise sqlite3.DatabaseError(f"it holds other tables: {', '.join(sorted(tables)[:3])}")
    for table, wanted in _COLUMNS.items():
        if kinds.get(table, "table") != "table":
            raise sqlite3.DatabaseError(f"its {table!r} is a {kinds[table]}, not a table")
        if table not in tables:
            continue
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        missing = [column for column in wanted if column not in have]
        if missing:
            raise sqlite3.DatabaseError(f"its table {table!r} has no column {missing[0]!r}")


class JournalError(StagedRetryError):
    """The journal cannot be opened or used (locked by another run, not a journal, too new)."""


class JournalIOError(JournalError):
    """The journal's files cannot be read or written: a full disk, an I/O error, no permission.

    What was committed before stays committed; the write that failed left no trace.
    """


# SQLite's primary result codes that mean the file system refused, not that the file is wrong.
_IO_CODES: Final = frozenset({3, 8, 10, 13, 14, 22})  # PERM READONLY IOERR FULL CANTOPEN NOLFS


def _is_io(exc: Exception) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _IO_CODES


@attrs.frozen
class JournalEntry:
    """One committed result with where its item came from.

    *run* is the number of the run that produced it; *fingerprint* the
    fingerprint it is kept under (``None`` where the reader gave none).
    """

    result: ItemResult
    line: int | None
    digest: str
    run: int
    fingerprint: str | None = None


@attrs.frozen
class _Latest:
    """Where an item's latest result is: its fingerprint, status, input digest, run and time."""

    fingerprint: str
    status: str
    digest: str
    run: int
    recorded_at: float


@attrs.frozen
class RunRecord:
    """One run of a pipeline against this journal."""

    id: int
    started_at: float
    finished_at: float | None
    stats: Mapping[str, Any] = attrs.field(factory=dict)


# -- JSON form of a result ---------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """Plain JSON data for *value*: pydantic models, attrs classes, mappings, sequences."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if attrs.has(type(value)):
        return jsonable(attrs.asdict(value, recurse=False))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    return str(value)


def usage_json(usage: Usage) -> dict[str, int]:
    """The JSON form of *usage*, as the journal stores it."""
    return {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "cached": usage.cached_tokens,
        "thinking": usage.thinking_tokens,
    }


def _meta_json(meta: ResponseMeta | None) -> dict[str, Any] | None:
    if meta is None:
        return None
    return {
        "finish_reason": meta.finish_reason,
        "safety_ratings": dict(meta.safety_ratings),
        "blocked": meta.blocked,
        "block_reason": meta.block_reason,
        "model_version": meta.model_version,
        "response_id": meta.response_id,
        "truncated": meta.truncated,
        "service_tier": meta.service_tier,
    }


def _error_json(error: FieldError) -> dict[str, Any]:
    row: dict[str, Any] = {"path": list(error.path), "message": error.message}
    if error.kind is not FieldErrorKind.INVALID:
        row["kind"] = error.kind.value
    return row


def _path_from_json(path: str | list[str | int]) -> FieldPath:
    if isinstance(path, str):
        # Schema 1 joined paths with "." and cannot say whether a key held one, nor
        # whether "0" was an index: split as it was joined, keep every part a key.
        return tuple(path.split(".")) if path else ()
    return tuple(path)


def _error_from_json(row: Mapping[str, Any]) -> FieldError:
    return FieldError(
        _path_from_json(row["path"]),
        row["message"],
        kind=FieldErrorKind(row.get("kind", FieldErrorKind.INVALID.value)),
    )


def _fields_from_json(fields: list[str | list[str | int]] | None) -> tuple[FieldPath, ...] | None:
    if fields is None:
        return None
    # Schema 1 listed top-level names, one key each (never dotted): a str is one key.
    return tuple((f,) if isinstance(f, str) else tuple(f) for f in fields)


def result_to_json(result: ItemResult) -> dict[str, Any]:
    """The JSON form of *result* (the provider's raw response and the context are left out)."""
    return {
        "id": result.id,
        "status": result.status.value,
        "output": jsonable(result.output),
        "final_stage": result.final_stage,
        "prompts": result.prompts,
        "reason": result.reason,
        "errors": [_error_json(e) for e in result.errors],
        "last_invalid": jsonable(result.last_invalid),
        "attempts": [
            {
                "stage": a.stage,
                "outcome": a.outcome.value,
                "number": a.number,
                "counted": a.counted,
                "usage": usage_json(a.usage),
                "meta": _meta_json(a.meta),
                "error": a.error,
                "fields": [list(p) for p in a.fields] if a.fields is not None else None,
                "started": a.started,
                "duration": a.duration,
                "mended": [_error_json(e) for e in a.mended],
            }
            for a in result.attempts
        ],
    }


def result_from_json(data: Mapping[str, Any]) -> ItemResult:
    """Rebuild an :class:`ItemResult` from :func:`result_to_json` (``output`` stays plain data).

    Rows of schema 1 still load: a path written as a dotted string is split on
    ``.`` as it was joined (every part a key), and a partial request's fields,
    then top-level names, are one key each.
    """
    attempts = []
    for a in data.get("attempts", ()):
        u = a.get("usage") or {}
        m = a.get("meta")
        attempts.append(
            Attempt(
                stage=a["stage"],
                outcome=OutcomeKind(a["outcome"]),
                number=a["number"],
                counted=a["counted"],
                usage=Usage(
                    u.get("input", 0), u.get("output", 0), u.get("cached", 0), u.get("thinking", 0)
                ),
                meta=ResponseMeta(**m) if m is not None else None,
                error=a.get("error"),
                fields=_fields_from_json(a.get("fields")),
                started=a.get("started", 0.0),
                duration=a.get("duration", 0.0),
                mended=tuple(_error_from_json(e) for e in a.get("mended", ())),
            )
        )
    return ItemResult(
        id=data["id"],
        status=ItemStatus(data["status"]),
        output=data.get("output"),
        final_stage=data.get("final_stage"),
        prompts=data.get("prompts", 0),
        attempts=tuple(attempts),
        reason=data.get("reason"),
        errors=tuple(_error_from_json(e) for e in data.get("errors", ())),
        last_invalid=data.get("last_invalid"),
    )


# -- the journal -------------------------------------------------------------------------------


class _Lock:
    """The journal's sidecar lock, so two runs never work from one journal at once."""

    def __init__(self, path: Path) -> None:
        self._file = LockFile(path)

    def acquire(self) -> None:
        try:
            held = self._file.acquire()
        except OSError as exc:
            raise JournalIOError(
                f"cannot open the journal's lock file {str(self._file.path)!r}: "
                f"{os_reason(exc, self._file.path)}"
            ) from None
        if not held:
            raise JournalError(
                f"another stagedretry run is using the journal "
                f"{str(self._file.path.with_suffix(''))!r}"
            )

    def release(self) -> None:
        self._file.release()


class Journal:
    """The results of one plan, strategy and validator (by *fingerprint*) in a SQLite file.

    Pass it to ``runner.run(items, journal=...)`` or ``runner.stream(items, journal=...)``
    and a run killed at any moment can be resumed: each item's terminal result
    is committed the moment the item ends, and the next run skips the items the
    journal holds.  *path* is the SQLite file (created, with its folder, on
    :meth:`open`); a sidecar ``<path>.lock`` holds an exclusive lock while it is
    open (and is removed when it closes), so two processes never work from one journal
    at once.

    *fingerprint* keys the rows.  ``None`` (the default) lets each runner key it
    with its own :attr:`Runner.fingerprint <stagedretry.Runner.fingerprint>` when a
    run starts; a journal created with a fingerprint keeps it (the command line
    passes its pipeline's).  *secrets* (strings or a :class:`~stagedretry.Secrets`)
    are masked in the text of everything written, as are a run's own
    (:attr:`Runner.secrets <stagedretry.Runner.secrets>`) while it writes.

    Open it as a context manager; a runner given a closed journal opens it for
    the run and closes it afterwards.  Raises :class:`JournalError` when the file
    cannot be opened, is locked by another open journal, is not a journal, was
    written by a newer stagedretry, or a write fails, and when a row read back
    is damaged (not JSON, not a result, nested deeper than :data:`ROW_MAX_DEPTH`);
    its subclass :class:`JournalIOError` when the file system refused (a full
    disk, an I/O error, no permission), in which case a failed write left no trace.
    """

    def __init__(
        self,
        path: str | Path,
        fingerprint: str | None = None,
        *,
        secrets: Secrets | Iterable[str | None] = (),
    ) -> None:
        self.path = Path(path)
        self._fingerprint = fingerprint
        self._explicit = fingerprint is not None
        self._own = secrets if isinstance(secrets, Secrets) else Secrets(secrets)
        self._secrets = self._own
        self._lock = _Lock(self.path.with_name(self.path.name + ".lock"))
        self._db: sqlite3.Connection | None = None
        self._in_run = False
        # Where each item's latest result is, read by begin_retry for adopt().
        self._latest: dict[str, _Latest] | None = None
        # Whether this fingerprint has a retry round open (None: not read yet), so that a
        # result is marked in it only when there is one.
        self._round: bool | None = None

    @property
    def fingerprint(self) -> str:
        """The fingerprint that keys the rows read and written.

        Raises :class:`JournalError` while a journal created without one has not
        been keyed by a run yet.
        """
        if self._fingerprint is None:
            raise JournalError(
                f"the journal {str(self.path)!r} has no fingerprint yet: give one, or pass "
                "the journal to a runner's run() or stream(), which keys it"
            )
        return self._fingerprint

    def bind(self, fingerprint: str) -> str:
        """Key the journal by *fingerprint* unless it was created with one; return the key used.

        A runner calls this as a run starts, so one journal passed to runners of
        different plans keeps their results apart.
        """
        if not self._explicit:
            self._fingerprint = fingerprint
            self._round = None
        return self.fingerprint

    def claim(self, secrets: Secrets | None = None) -> None:
        """Mark the journal as used by a run; raise :class:`JournalError` if a run already does.

        One journal object serves one run at a time: a second run sharing it would
        be keyed, read and closed under the first one's feet.  The run's *secrets*
        are masked too in what is written until :meth:`release`.
        """
        if self._in_run:
            raise JournalError(
                f"the journal {str(self.path)!r} is in use by another run of this process; "
                "give each concurrent run a journal of its own"
            )
        self._in_run = True
        if secrets:
            self._secrets = self._own.union(secrets)

    def release(self) -> None:
        """The run that claimed the journal has ended."""
        self._in_run = False
        self._secrets = self._own

    @property
    def is_open(self) -> bool:
        """Whether :meth:`open` was called and :meth:`close` not yet."""
        return self._db is not None

    # -- lifecycle -----------------------------------------------------------------------------

    def open(self) -> Journal:
        """Create or open the file, take the lock, check the schema."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JournalIOError(
                f"cannot create the folder of the journal {str(self.path)!r}: "
                f"{os_reason(exc, self.path)}"
            ) from None
        self._lock.acquire()
        try:
            db = sqlite3.connect(self.path, timeout=10.0)
        except sqlite3.Error as exc:
            self._lock.release()
            raise JournalIOError(f"cannot open the journal {str(self.path)!r}: {exc}") from None
        try:
            _check_tables(db)  # before anything is written to another program's file
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # Creates only what is missing, with our columns; in one transaction, so that each
            # page is written to the WAL once (a new journal is 7 pages, not 16 frames).
            db.executescript(f"BEGIN;\n{_SCHEMA}COMMIT;")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                db.commit()
            elif int(row[0]) > SCHEMA_VERSION:
                raise JournalError(
                    f"the journal {str(self.path)!r} was written by a newer stagedretry "
                    f"(schema {row[0]})"
                )
            elif int(row[0]) < SCHEMA_VERSION:
                # Older rows still load (see result_from_json); the rows written from now on
                # do not load in the older version, which this marks so it refuses the file.
                db.execute("UPDATE meta SET value = ? WHERE key = 'schema'", (str(SCHEMA_VERSION),))
                db.commit()
        except (sqlite3.DatabaseError, ValueError) as exc:  # ValueError: a schema that is no number
            db.close()
            self._lock.release()
            if _is_io(exc):
                raise JournalIOError(f"cannot open the journal {str(self.path)!r}: {exc}") from None
            raise JournalError(f"{str(self.path)!r} is not a stagedretry journal ({exc})") from None
        except BaseException:
            db.close()
            self._lock.release()
            raise
        self._db = db
        return self

    def close(self) -> None:
        """Close the file and release the lock."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        self._latest = None
        self._round = None
        self._lock.release()

    def __enter__(self) -> Journal:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise JournalError("the journal is not open")
        return self._db

    # -- reading -------------------------------------------------------------------------------

    def _read(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """One query; SQLite's failure is a JournalIOError (the file system's) or a JournalError."""
        try:
            return self._conn.execute(sql, params)
        except sqlite3.Error as exc:
            kind = JournalIOError if _is_io(exc) else JournalError
            raise kind(
                f"cannot read the journal {str(self.path)!r}: {self._secrets.text(str(exc))}"
            ) from None

    def done(self) -> dict[str, str]:
        """Item id -> input digest, for every item that needs no further work.

        ``cancelled`` items are not done: a later run picks them up again.  An
        item is skipped only while its input's digest is unchanged.
        """
        rows = self._read(
            "SELECT item_id, digest FROM results WHERE fingerprint = ? AND status != ?",
            (self.fingerprint, ItemStatus.CANCELLED.value),
        )
        return dict(rows)

    def unread_batch_items(self) -> dict[str, int]:
        """Item id -> how many of this fingerprint's batch jobs hold a request of it that no
        run has read the answers of (submitted by a batch-mode run that was then stopped or
        killed).  The service bills those requests whether or not they are read: only a
        batch-mode run re-attaches to them; a synchronous one would pay for them again.
        Empty when no batch-mode run used the journal."""
        tables = {row[0] for row in self._read("SELECT name FROM sqlite_master", ())}
        if "batch_jobs" not in tables:
            return {}
        rows = self._read(
            "SELECT e.item_id, COUNT(DISTINCT e.name) FROM batch_entries e JOIN batch_jobs j "
            "ON j.fingerprint = e.fingerprint AND j.name = e.name "
            "WHERE e.fingerprint = ? AND j.consumed = 0 GROUP BY e.item_id",
            (self.fingerprint,),
        )
        return {str(item): int(count) for item, count in self._rows(rows)}

    def entries(self) -> Iterator[JournalEntry]:
        """Every committed result of this fingerprint with its line and digest, in input order."""
        rows = self._read(
            "SELECT result, line, digest, run FROM results WHERE fingerprint = ? "
            "ORDER BY line, item_id",
            (self.fingerprint,),
        )
        for text, line, digest, run in self._rows(rows):
            yield JournalEntry(self._result(text), line, digest, run, self.fingerprint)

    def history(self, item_id: str) -> list[JournalEntry]:
        """Every result the journal holds for *item_id*, oldest first, under any fingerprint.

        The latest is last.  A result a later run replaced (a retried item's
        earlier result, a cancelled one, one of a changed input) stays here, so
        an item's history keeps every attempt paid for.
        """
        rows = self._read(_HISTORY, (item_id, item_id))
        return [
            JournalEntry(self._result(text), line, digest, run, fingerprint)
            for text, line, digest, run, fingerprint in self._rows(rows)
        ]

    def paid(self) -> Iterator[JournalEntry]:
        """Every result the job paid for, each once: this fingerprint's latest results and
        those they replaced (a retried, cancelled or changed item's earlier ones), and the
        same of the fingerprints a retry under it read from (see :meth:`runs`).

        A result kept under two fingerprints (see :meth:`adopt`) comes once.  What a
        spend ceiling counts: a retry run pays again for what the earlier run paid.
        """
        seen: set[tuple[str, int, float]] = set()
        for fingerprint in (self.fingerprint, *self._sources()):
            rows = self._read(_PAID, (fingerprint, fingerprint))
            for text, line, digest, run, item_id, at in self._rows(rows):
                if (item_id, run, at) in seen:  # an adopted copy keeps its run and time
                    continue
                seen.add((item_id, run, at))
                yield JournalEntry(self._result(text), line, digest, run, fingerprint)

    def results(self) -> Iterator[ItemResult]:
        """Every committed result of this fingerprint, in input order, ``cancelled`` ones included.

        A result read back holds plain JSON data: its ``output`` is what the
        validator returned, dumped (a pydantic model comes back as a dict), its
        ``context`` is ``None`` and its attempts' ``meta.raw`` is gone.
        """
        for entry in self.entries():
            yield entry.result

    def count(self) -> int:
        """How many results this fingerprint has in the journal, ``cancelled`` ones included."""
        row = self._read(
            "SELECT COUNT(*) FROM results WHERE fingerprint = ?", (self.fingerprint,)
        ).fetchone()
        return int(row[0])

    def foreign(self) -> int:
        """How many results belong to other fingerprints (another plan, strategy or validator)."""
        row = self._read(
            "SELECT COUNT(*) FROM results WHERE fingerprint != ?", (self.fingerprint,)
        ).fetchone()
        return int(row[0])

    def runs(self) -> list[RunRecord]:
        """The runs of this job, oldest first; times are Unix seconds.

        Those recorded under this fingerprint, and those of the fingerprints a
        retry under it read from (another model or plan, see :meth:`begin_retry`):
        both the run that failed and the one that retried it.
        """
        found: dict[int, RunRecord] = {}
        for fingerprint in (self.fingerprint, *self._sources()):
            rows = self._read(
                "SELECT id, started_at, finished_at, stats FROM runs WHERE fingerprint = ?",
                (fingerprint,),
            )
            for i, s, f, t in self._rows(rows):
                found[i] = RunRecord(i, s, f, self._row(t, "a run's statistics") if t else {})
        return [found[i] for i in sorted(found)]

    def _sources(self) -> list[str]:
        """The fingerprints a retry under this one read results from (kept in ``meta``)."""
        row = self._read(
            "SELECT value FROM meta WHERE key = ?", (_SOURCES + self.fingerprint,)
        ).fetchone()
        if row is None:
            return []
        sources = self._row(row[0], "a retry's sources").get("fingerprints", [])
        if not isinstance(sources, list) or not all(isinstance(f, str) for f in sources):
            raise self._corrupt("a retry's sources", ValueError("expected a list of strings"))
        return sources

    def _add_sources(self, db: sqlite3.Connection, fingerprints: Iterable[str]) -> None:
        """Note that this fingerprint's job holds results of *fingerprints* (in the transaction)."""
        known = set(self._sources())
        new = sorted(set(fingerprints) - known - {self.fingerprint})
        if new:
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                (_SOURCES + self.fingerprint, self._text({"fingerprints": [*sorted(known), *new]})),
            )

    def fingerprints(self) -> list[str]:
        """Every fingerprint the file holds results or runs of, the latest run's first.

        Needs no fingerprint of its own: a reader that has only the file (``stagedretry
        report``) picks one here, then keys the journal with :meth:`bind`.
        """
        rows = self._read(
            "SELECT fingerprint, MAX(last) FROM ("
            "SELECT fingerprint, MAX(id) AS last FROM runs GROUP BY fingerprint "
            "UNION ALL SELECT DISTINCT fingerprint, 0 FROM results"
            ") GROUP BY fingerprint ORDER BY MAX(last) DESC, fingerprint",
            (),
        )
        return [str(fingerprint) for fingerprint, _ in self._rows(rows)]

    def _rows(self, rows: Iterable[tuple[Any, ...]]) -> Iterator[tuple[Any, ...]]:
        """*rows*, with a row SQLite cannot hand over (text that is no UTF-8) a JournalError."""
        # Not ``yield from``: closing this generator would close the cursor, maybe after the
        # connection, and that error is no corrupt row.
        iterator = iter(rows)
        while True:
            try:
                row = next(iterator)
            except StopIteration:
                return
            except (sqlite3.Error, ValueError) as exc:
                raise self._corrupt("a row", exc) from None
            yield row

    def _result(self, text: object) -> ItemResult:
        data = self._row(text, "a result")
        try:
            return result_from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._corrupt("a result", exc) from None

    def _row(self, text: object, what: str) -> Any:
        """The JSON of one row, held to :data:`ROW_MAX_DEPTH`; a JournalError if it is not JSON."""
        try:
            if not isinstance(text, str):
                raise ValueError(f"expected text, got {type(text).__name__}")
            # The constants json.dumps writes for an output's inf or nan (a validator's
            # float("inf")) are ours: a paid result must not make the journal unreadable.
            data = loads(text, ROW_MAX_DEPTH, own=True)
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        except ValueError as exc:
            raise self._corrupt(what, exc) from None
        return data

    def _corrupt(self, what: str, exc: BaseException) -> JournalError:
        why = f"{type(exc).__name__}: {exc}" if isinstance(exc, LookupError) else str(exc)
        return JournalError(
            f"the journal {str(self.path)!r} holds {what} that cannot be read ({why[:200]}); "
            "the file was damaged or changed outside stagedretry: move it away to start afresh"
        )

    # -- writing -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[sqlite3.Connection]:
        """One transaction: committed on leaving, rolled back and reported on failure."""
        try:
            with self._conn as db:
                yield db
        except sqlite3.Error as exc:
            # The transaction is rolled back: what was committed before stays, this write is gone.
            kind = JournalIOError if _is_io(exc) else JournalError
            raise kind(
                f"cannot {what} in the journal {str(self.path)!r}: {self._secrets.text(str(exc))}"
            ) from None

    def discard(self) -> int:
        """Forget this fingerprint's results, their history, its runs, its batch jobs and any
        retry round (``--fresh``); return how many results."""
        with self._writing("forget earlier results") as db:
            cursor = db.execute("DELETE FROM results WHERE fingerprint = ?", (self.fingerprint,))
            db.execute("DELETE FROM runs WHERE fingerprint = ?", (self.fingerprint,))
            db.execute("DELETE FROM history WHERE fingerprint = ?", (self.fingerprint,))
            db.execute("DELETE FROM retries WHERE fingerprint = ?", (self.fingerprint,))
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            if "batch_jobs" in tables:  # made by the first batch-mode run (BATCH_SCHEMA)
                db.execute("DELETE FROM batch_jobs WHERE fingerprint = ?", (self.fingerprint,))
                db.execute("DELETE FROM batch_entries WHERE fingerprint = ?", (self.fingerprint,))
            db.execute("DELETE FROM meta WHERE key = ?", (_SOURCES + self.fingerprint,))
        self._round = False
        return cursor.rowcount

    # -- retrying ------------------------------------------------------------------------------

    def begin_retry(self, statuses: Iterable[ItemStatus]) -> dict[str, ItemStatus]:
        """Start or go on with a retry round under this fingerprint: the ids to run again, each
        with the status of its latest result.

        A round chooses the items whose latest result, under any fingerprint
        (another plan or model too), has one of *statuses*.  Until a run serving
        it has taken every item (:meth:`finish_retry`), the round goes on: the
        same *statuses* again return only its items that have no new result yet,
        so a retry run stopped or killed and started again pays for nothing twice.
        Other *statuses* start a new round.  Call it before :meth:`begin_run`.
        """
        wanted = frozenset(ItemStatus(s) for s in statuses)
        key = ",".join(sorted(s.value for s in wanted))
        latest = self._latest_rows()
        with self._writing("start a retry") as db:
            rows = db.execute(
                "SELECT item_id, statuses, done FROM retries WHERE fingerprint = ?",
                (self.fingerprint,),
            ).fetchall()
            if rows and all(row[1] == key for row in rows):
                chosen = sorted(item for item, _, done in rows if not done)
            else:
                db.execute("DELETE FROM retries WHERE fingerprint = ?", (self.fingerprint,))
                values = {s.value for s in wanted}
                chosen = sorted(item for item, row in latest.items() if row.status in values)
                db.executemany(
                    "INSERT INTO retries VALUES (?, ?, ?, 0)",
                    [(self.fingerprint, item, key) for item in chosen],
                )
                self._add_sources(db, (latest[item].fingerprint for item in chosen))
        self._round = None  # read again at the next result
        return {item: ItemStatus(latest[item].status) for item in chosen if item in latest}

    def finish_retry(self) -> None:
        """The retry round under this fingerprint is over: a run serving it took every item."""
        with self._writing("end a retry") as db:
            db.execute("DELETE FROM retries WHERE fingerprint = ?", (self.fingerprint,))
        self._round = False

    def _latest_rows(self) -> dict[str, _Latest]:
        """Where each item's latest result is, under any fingerprint (one pass, no result text)."""
        latest: dict[str, _Latest] = {}
        for item, fingerprint, status, digest, run, at in self._rows(
            self._read(
                "SELECT item_id, fingerprint, status, digest, run, recorded_at FROM results", ()
            )
        ):
            if item not in latest or (run, at) > (latest[item].run, latest[item].recorded_at):
                latest[item] = _Latest(fingerprint, status, digest, run, at)
        self._latest = latest
        return latest

    def adopt(self, item_id: str, digest: str, *, line: int | None = None) -> bool:
        """Keep under this fingerprint the latest result of *item_id* from another one.

        For a retry run with another plan or model: an item it does not run again
        keeps its latest result, whatever fingerprint wrote it, so this
        fingerprint's :meth:`entries` hold the whole job.  Only a result for the
        same input (*digest*) that is not ``cancelled`` is kept; *line* is the
        item's place in the input now.  Returns whether a result was kept.  Where
        the latest results are is read once, by :meth:`begin_retry` (or the first
        call).
        """
        latest = self._latest if self._latest is not None else self._latest_rows()
        found = latest.get(item_id)
        if (
            found is None
            or found.fingerprint == self.fingerprint
            or found.digest != digest
            or found.status == ItemStatus.CANCELLED.value
        ):
            return False
        with self._writing("keep an earlier result") as db:
            row = db.execute(
                "SELECT result FROM results WHERE fingerprint = ? AND item_id = ?",
                (found.fingerprint, item_id),
            ).fetchone()
            if row is None:
                return False
            self._supersede(db, item_id, run=None)
            self._add_sources(db, (found.fingerprint,))
            db.execute(
                _INSERT_RESULT,
                (
                    self.fingerprint,
                    item_id,
                    found.status,
                    line,
                    digest,
                    row[0],
                    found.run,
                    found.recorded_at,
                ),
            )
        return True

    def _in_round(self, db: sqlite3.Connection) -> bool:
        if self._round is None:
            found = db.execute(
                "SELECT 1 FROM retries WHERE fingerprint = ? LIMIT 1", (self.fingerprint,)
            ).fetchone()
            self._round = found is not None
        return self._round

    def _supersede(self, db: sqlite3.Connection, item_id: str, *, run: int | None) -> None:
        """Move this fingerprint's row of *item_id* (if written by a run other than *run*) to the
        history, before a new one replaces it."""
        db.execute(_SUPERSEDE, (self.fingerprint, item_id, run))

    def begin_run(self) -> int:
        """Record the start of a run (now, in Unix seconds) and return its number."""
        with self._writing("record the start of a run") as db:
            cursor = db.execute(
                "INSERT INTO runs (fingerprint, started_at) VALUES (?, ?)",
                (self.fingerprint, time.time()),
            )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def end_run(self, run: int, stats: Mapping[str, Any]) -> None:
        """Record the end of run *run* (now) with its statistics, a mapping of plain JSON data."""
        with self._writing("record the end of a run") as db:
            db.execute(
                "UPDATE runs SET finished_at = ?, stats = ? WHERE id = ?",
                (time.time(), self._text(self._secrets.leaves(stats)), run),
            )

    def record(self, result: ItemResult, *, line: int | None, digest: str, run: int) -> None:
        """Commit *result*, replacing the row of the same item id an earlier run wrote (which
        moves to the item's :meth:`history`).

        *line* orders :meth:`entries` (the item's place in the input, ``None``
        first); *digest* identifies the item's input, so a changed input runs
        again; *run* is the number :meth:`begin_run` returned.
        """
        with self._writing("record a result") as db:
            self._supersede(db, result.id, run=run)
            if result.status is not ItemStatus.CANCELLED and self._in_round(db):
                db.execute(
                    "UPDATE retries SET done = 1 WHERE fingerprint = ? AND item_id = ?",
                    (self.fingerprint, result.id),
                )
            db.execute(
                _INSERT_RESULT,
                (
                    self.fingerprint,
                    result.id,
                    result.status.value,
                    line,
                    digest,
                    self._text(result_to_json(self._masked(result))),
                    run,
                    time.time(),
                ),
            )

    def _masked(self, result: ItemResult) -> ItemResult:
        # The text is masked before encoding (JSON escapes could hide a secret from a
        # search of the encoded row), and only the text: field names, ids and statuses
        # are the row's structure.
        secrets = self._secrets
        if not secrets:
            return result
        return mask_result(attrs.evolve(result, output=jsonable(result.output)), secrets)

    @staticmethod
    def _text(data: object) -> str:
        return utf8_json(data, default=str)

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, fingerprint={self._fingerprint!r})"
