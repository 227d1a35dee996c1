"""The output JSONL: one line per item, rebuilt from the journal so it can never be torn.

The journal is the source of truth; the output file is a view of it.  At the
start of a run the file is rebuilt from the journal (which drops a line torn by
a crash and anything a crashed run wrote twice), during the run each result is
appended only after its journal commit, and at the end the file is rebuilt
again, in input order.  Every rebuild writes a temporary file, syncs it and
renames it over the old one, so a reader sees the old file or the new one,
never half of one.  Secrets are masked in the text of every line (reason, error
messages, output strings), as in the journal.

A run holds an exclusive lock on ``<output>.lock`` from its start to its end,
so a second run writing the same file (with another journal) is refused before
it does any work.  A rebuild that fails (a full disk) removes its temporary
file and leaves the old output as it was; the journal still holds every result.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import attrs

from .._fs import LockFile
from .._journal import jsonable
from .._limits import utf8_json
from .._outcomes import StagedRetryError
from .._redact import Secrets, mask_result
from .._results import ItemResult
from ._files import FileIOError, cannot_write


class OutputError(FileIOError):
    """The output file cannot be written where the pipeline says (exit 4)."""


class OutputBusy(StagedRetryError):
    """Another run holds the lock of the output file (exit 2)."""


def output_line(result: ItemResult, line: int | None) -> dict[str, Any]:
    """The JSON object written for one item: no timings, so reruns compare equal."""
    return {
        "id": result.id,
        "status": result.status.value,
        "output": jsonable(result.output),
        "stage": result.final_stage,
        "prompts": result.prompts,
        "attempts": len(result.attempts),
        "reason": result.reason,
        "errors": [{"path": list(e.path), "message": e.message} for e in result.errors],
        "line": line,
    }


class OutputWriter:
    """Writes the output file for one run: lock, rebuild, append, rebuild; *secrets* never reach it.

    Every method raises :class:`OutputError` (naming the file and the operating
    system's reason) instead of ``OSError``.
    """

    def __init__(self, path: Path, *, secrets: Secrets | None = None) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        """Where a rebuild writes before renaming (removed again if the rebuild fails)."""
        self._secrets = secrets or Secrets()
        self._append: IO[str] | None = None
        self._lock = LockFile(path.with_name(path.name + ".lock"))

    def _dumps(self, result: ItemResult, line: int | None) -> str:
        if self._secrets:
            result = mask_result(
                attrs.evolve(result, output=jsonable(result.output)), self._secrets
            )
        data = output_line(result, line)
        return utf8_json(data) + "\n"

    def lock(self) -> None:
        """Take the output's lock (creating its folder); release it with :meth:`unlock`.

        Raises :class:`OutputBusy` when another run holds it.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            held = self._lock.acquire()
        except OSError as exc:
            raise cannot_write("output file", self.path, exc, OutputError) from None
        if not held:
            raise OutputBusy(
                f"another stagedretry run is writing the output file {str(self.path)!r}: "
                "wait for it to end, or give this run another output path"
            )

    def unlock(self) -> None:
        """Let another run write the output file."""
        self._lock.release()

    def rebuild(self, rows: Iterable[tuple[ItemResult, int | None]]) -> int:
        """Atomically replace the file with *rows* (already in order); return the line count.

        On failure the old file is left as it was and no temporary file remains.
        """
        self.close()
        count = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.tmp.open("w", encoding="utf-8") as file:
                for result, line in rows:
                    file.write(self._dumps(result, line))
                    count += 1
                file.flush()
                os.fsync(file.fileno())
            os.replace(self.tmp, self.path)
        except OSError as exc:
            # Half a copy is of no use to anyone, and it holds the space a rerun needs.
            with contextlib.suppress(OSError):
                self.tmp.unlink()
            raise cannot_write("output file", self.path, exc, OutputError) from None
        _sync_dir(self.path.parent)
        return count

    def append(self, result: ItemResult, line: int | None) -> None:
        """Add one line; call only after the result is committed to the journal."""
        text = self._dumps(result, line)
        try:
            if self._append is None:
                self._append = self.path.open("a", encoding="utf-8")
            self._append.write(text)
            self._append.flush()
        except OSError as exc:
            self.close()
            raise cannot_write("output file", self.path, exc, OutputError) from None

    def close(self) -> None:
        """Close the file opened for appending, if any (a failing close is not reported:
        the next rebuild rewrites every line)."""
        if self._append is not None:
            with contextlib.suppress(OSError):
                self._append.close()
            self._append = None


def _sync_dir(path: Path) -> None:
    # The rename itself is durable only once the folder is synced (POSIX).
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
