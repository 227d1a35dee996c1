"""The output JSONL: one line per item, rebuilt from the journal so it can never be torn.

The journal is the source of truth; the output file is a view of it.  At the
start of a run the file is rebuilt from the journal (which drops a line torn by
a crash and anything a crashed run wrote twice), during the run each result is
appended only after its journal commit, and at the end the file is rebuilt
again, in input order.  Every rebuild writes a temporary file, syncs it and
renames it over the old one, so a reader sees the old file or the new one,
never half of one.  Secrets are masked in the text of every line (reason, error
messages, output strings), as in the journal.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import attrs

from .._journal import jsonable
from .._outcomes import StagedRetryError
from .._redact import Secrets, mask_result
from .._results import ItemResult


class OutputError(StagedRetryError):
    """The output file cannot be written where the pipeline says."""


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
    """Writes the output file for one run: rebuild, append, rebuild; *secrets* never reach it."""

    def __init__(self, path: Path, *, secrets: Secrets | None = None) -> None:
        self.path = path
        self._secrets = secrets or Secrets()
        self._append: IO[str] | None = None

    def _dumps(self, result: ItemResult, line: int | None) -> str:
        if self._secrets:
            result = mask_result(
                attrs.evolve(result, output=jsonable(result.output)), self._secrets
            )
        data = output_line(result, line)
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n"

    def rebuild(self, rows: Iterable[tuple[ItemResult, int | None]]) -> int:
        """Atomically replace the file with *rows* (already in order); return the line count."""
        self.close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        count = 0
        with tmp.open("w", encoding="utf-8") as file:
            for result, line in rows:
                file.write(self._dumps(result, line))
                count += 1
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)
        _sync_dir(self.path.parent)
        return count

    def append(self, result: ItemResult, line: int | None) -> None:
        """Add one line; call only after the result is committed to the journal."""
        if self._append is None:
            self._append = self.path.open("a", encoding="utf-8")
        self._append.write(self._dumps(result, line))
        self._append.flush()

    def close(self) -> None:
        """Close the file opened for appending, if any."""
        if self._append is not None:
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
