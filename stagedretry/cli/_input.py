"""Reading the JSONL input: one work item per line, bad lines turned into failed items.

A line that cannot become a prompt (not JSON, not an object, no usable id, a
template field missing) is not a reason to stop the job: it becomes an item
whose result is ``failed`` with reason ``input_error`` and its line number.
Duplicate ids are the one input mistake found before the run, since the
journal could not tell the two items apart.

Outside data is held to limits before anything walks it: a line longer than
:data:`MAX_LINE_BYTES` or a record nested deeper than
:data:`stagedretry._limits.MAX_DEPTH` is one failed item, as is ``NaN`` or
``Infinity`` (not JSON).  A UTF-8 byte order mark at the start of a line (of
the file, or of each file joined into it) is skipped; a UTF-16 or UTF-32 one
at the start of the file stops the job (the input must be UTF-8).

A line with no usable id is named ``line:N`` after its line number.  That
name is a stand-in, not the user's: it never counts as a duplicate, and if a
record really has that id the stand-in takes a suffix (``line:N#1``) instead.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Final

import attrs

from .._describe import describe
from .._fs import os_reason
from .._limits import TooDeep, loads
from .._outcomes import StagedRetryError
from ._files import FileIOError
from .pipeline import InputConfig, MissingField

INPUT_ERROR = "input_error"
MAX_LINE_BYTES: Final = 8 * 1024 * 1024
"""The longest input line read as a record, in bytes (8 MiB: far past any model's context)."""
_UTF8_BOM: Final = b"\xef\xbb\xbf"
_WIDE_BOMS: Final = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


class InputError(StagedRetryError):
    """The input cannot be used at all (unreadable, or ids repeated)."""


@attrs.frozen
class InputRecord:
    """One non-blank line: its item id, the rendered prompt or why there is none."""

    line: int
    id: str
    digest: str
    prompt: str | None = attrs.field(default=None, repr=False)
    error: str | None = None

    @property
    def reason(self) -> str:
        """The ``input_error`` reason for a bad line."""
        return f"{INPUT_ERROR}: line {self.line}: {self.error}"


_ID_BITS: Final = 64
"""The most bits of an integer id (a longer one is refused, as by the library)."""


def _record_id(data: dict[str, Any], id_field: str) -> str | None:
    value = data.get(id_field)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        # As the library's rule: a longer integer is a mistake, not an id.
        return str(value) if value.bit_length() <= _ID_BITS else None
    if isinstance(value, str) and value.strip():
        return value
    return None


def read_input(config: InputConfig) -> list[InputRecord]:
    """Read every line of the input; raise :class:`InputError` if the run cannot start.

    A missing input file is an :class:`InputError` (exit 2); one the system
    refuses to read (no permission, an I/O error) is a ``FileIOError`` (exit 4).
    """
    path: Path = config.path
    try:
        raw = path.read_bytes()
    except OSError as exc:
        message = f"cannot read the input file {str(path)!r}: {os_reason(exc, path)}"
        if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError):
            # The configuration names no file: a usage mistake (exit 2).
            raise InputError(message) from None
        # The file is there but the system refuses it (permissions, an I/O error): exit 4.
        raise FileIOError(message, errno=exc.errno) from None
    for bom, encoding in _WIDE_BOMS:
        if raw.startswith(bom):
            raise InputError(
                f"the input file {str(path)!r} is {encoding} text; save it as UTF-8 (JSON Lines)"
            )
    records: list[InputRecord] = []
    # Positions in *records* of the lines without a usable id: named once every real id is known.
    nameless: list[int] = []
    id_field = config.id_field
    for number, line in enumerate(raw.splitlines(), start=1):
        # Editors on Windows start UTF-8 files with a byte order mark, and files joined with
        # cat keep theirs: it is not part of the record.
        stripped = line.strip().removeprefix(_UTF8_BOM).strip()
        if not stripped:
            continue
        digest = hashlib.sha256(stripped).hexdigest()[:16]
        data, problem = _parse_line(stripped)
        if problem is None:
            problem = _id_problem(data, id_field)
        if problem is not None:
            nameless.append(len(records))
            records.append(InputRecord(number, "", digest, error=problem))
            continue
        assert isinstance(data, dict)
        item_id = _record_id(data, id_field)
        assert item_id is not None
        try:
            prompt = config.template.render(data)
        except MissingField as exc:
            records.append(InputRecord(number, item_id, digest, error=str(exc)))
            continue
        records.append(InputRecord(number, item_id, digest, prompt=prompt))
    skip = set(nameless)
    named = [r for i, r in enumerate(records) if i not in skip]
    _reject_duplicates(named, path)
    taken = {r.id for r in named}
    for i in nameless:
        records[i] = attrs.evolve(records[i], id=_stand_in(records[i].line, taken))
    return records


def _parse_line(line: bytes) -> tuple[object, str | None]:
    """The record on *line*, or why there is none (never an exception: every line is one item)."""
    if len(line) > MAX_LINE_BYTES:
        return None, (
            f"the line is {len(line)} bytes long, more than the limit of {MAX_LINE_BYTES} bytes"
        )
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte {exc.start + 1} of the line)"
    try:
        return loads(text), None
    except TooDeep as exc:
        return None, f"the record is {exc}"
    except ValueError as exc:
        return None, f"not valid JSON ({exc})"


def _id_problem(data: object, id_field: str) -> str | None:
    """Why a parsed line has no usable id, or ``None`` when it has one."""
    if not isinstance(data, dict):
        return f"expected a JSON object, got {describe(data)}"
    if id_field not in data:
        return f"the record has no {id_field!r} field"
    if _record_id(data, id_field) is None:
        return (
            f"the {id_field!r} field must be a non-empty string or an integer, "
            f"got {describe(data[id_field])}"
        )
    return None


def _stand_in(line: int, taken: set[str]) -> str:
    """``line:N`` for a line without an id, unless a record really uses that id."""
    name = f"line:{line}"
    suffix = 0
    while name in taken:
        suffix += 1
        name = f"line:{line}#{suffix}"
    return name


def _reject_duplicates(records: list[InputRecord], path: Path) -> None:
    lines: defaultdict[str, list[int]] = defaultdict(list)
    for record in records:
        lines[record.id].append(record.line)
    repeated = [(item_id, where) for item_id, where in lines.items() if len(where) > 1]
    if not repeated:
        return
    shown = "; ".join(
        f"{item_id!r} on lines {', '.join(str(n) for n in where)}"
        for item_id, where in repeated[:5]
    )
    more = f" (and {len(repeated) - 5} more)" if len(repeated) > 5 else ""
    raise InputError(f"{path.name} repeats item ids, each id must be unique: {shown}{more}")
