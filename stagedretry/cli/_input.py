"""Reading the JSONL input: one work item per line, bad lines turned into failed items.

A line that cannot become a prompt (not JSON, not an object, no usable id, a
template field missing) is not a reason to stop the job: it becomes an item
whose result is ``failed`` with reason ``input_error`` and its line number.
Duplicate ids are the one input mistake found before the run, since the
journal could not tell the two items apart.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import attrs

from .._outcomes import StagedRetryError
from .._pipeline import InputConfig, MissingField

INPUT_ERROR = "input_error"


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


def _describe(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return type(value).__name__


def _record_id(data: dict[str, Any], id_field: str) -> str | None:
    value = data.get(id_field)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value
    return None


def read_input(config: InputConfig) -> list[InputRecord]:
    """Read every line of the input; raise :class:`InputError` if the run cannot start."""
    path: Path = config.path
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read the input file {str(path)!r}: {exc.strerror or exc}"
        ) from None
    records: list[InputRecord] = []
    id_field = config.id_field
    for number, line in enumerate(raw.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            continue
        digest = hashlib.sha256(stripped).hexdigest()[:16]
        fallback = f"line:{number}"
        try:
            text = stripped.decode("utf-8")
        except UnicodeDecodeError:
            records.append(InputRecord(number, fallback, digest, error="not UTF-8 text"))
            continue
        try:
            data = json.loads(text)
        except ValueError as exc:
            records.append(InputRecord(number, fallback, digest, error=f"not valid JSON ({exc})"))
            continue
        if not isinstance(data, dict):
            records.append(
                InputRecord(
                    number, fallback, digest, error=f"expected a JSON object, got {_describe(data)}"
                )
            )
            continue
        if id_field not in data:
            records.append(
                InputRecord(number, fallback, digest, error=f"the record has no {id_field!r} field")
            )
            continue
        item_id = _record_id(data, id_field)
        if item_id is None:
            records.append(
                InputRecord(
                    number,
                    fallback,
                    digest,
                    error=(
                        f"the {id_field!r} field must be a non-empty string or an integer, "
                        f"got {_describe(data[id_field])}"
                    ),
                )
            )
            continue
        try:
            prompt = config.template.render(data)
        except MissingField as exc:
            records.append(InputRecord(number, item_id, digest, error=str(exc)))
            continue
        records.append(InputRecord(number, item_id, digest, prompt=prompt))
    _reject_duplicates(records, path)
    return records


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
