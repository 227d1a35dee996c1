"""The prompt template: ``{field}`` placeholders over a record, and nothing else."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

from stagedretry import PlanError


class MissingField(KeyError):
    """A template field is not in the record."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field

    def __str__(self) -> str:
        return f"the record has no field {self.field!r} used by the prompt template"


_PLACEHOLDER: Final = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_FIELD_PATH: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*$")


@attrs.frozen
class Template:
    """A prompt template: ``{field}`` or ``{field.sub}`` over a record; ``{{``/``}}`` are braces.

    Deliberately not ``str.format``: a record can only be read, never have its
    attributes walked.
    """

    text: str
    parts: tuple[str | tuple[str, ...], ...] = attrs.field(repr=False, eq=False)

    @classmethod
    def parse(cls, text: str, where: str = "template") -> Template:
        """Parse *text*, or raise :class:`PlanError` naming the bad placeholder."""
        parts: list[str | tuple[str, ...]] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(text):
            parts.append(text[pos : match.start()])
            token = match.group(0)
            if token in ("{{", "}}"):
                parts.append(token[0])
            elif token in ("{", "}"):
                raise PlanError(
                    where,
                    f"unbalanced {token!r} at character {match.start() + 1} "
                    "(write {{ or }} for a literal brace)",
                )
            else:
                name = match.group(1).strip()
                if not _FIELD_PATH.match(name):
                    raise PlanError(
                        where,
                        f"{token!r} is not a field placeholder "
                        "(expected {field} or {field.sub})",
                    )
                parts.append(tuple(name.split(".")))
            pos = match.end()
        parts.append(text[pos:])
        fields = [p for p in parts if isinstance(p, tuple)]
        if not fields:
            raise PlanError(where, "the template uses no {field} of the record")
        return cls(text, tuple(p for p in parts if p != ""))

    @property
    def fields(self) -> tuple[str, ...]:
        """The dotted field paths the template reads, in order of first use."""
        seen: dict[str, None] = {}
        for part in self.parts:
            if isinstance(part, tuple):
                seen.setdefault(".".join(part), None)
        return tuple(seen)

    def render(self, record: Mapping[str, Any]) -> str:
        """The prompt for *record*; raise :class:`MissingField` for an absent field."""
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value: Any = record
            for key in part:
                if not isinstance(value, Mapping) or key not in value:
                    raise MissingField(".".join(part))
                value = value[key]
            if value is None:
                raise MissingField(".".join(part))
            out.append(_as_text(value))
        return "".join(out)


def _as_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
