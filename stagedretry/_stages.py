"""Stage kinds: how a stage builds its request and reads the answer.

``full`` asks the item's prompt.  ``partial`` re-asks only the fields that
failed, keeps the valid ones, merges the answer by path and re-validates the
whole.  Users add their own kinds by implementing :class:`StageKind`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from ._outcomes import FieldError, ValidationFailed
from ._plan import Stage
from ._results import T, WorkItem
from ._state import ItemState
from ._strategy import Request, Response

Validator = Callable[[str], T]
"""Turns an answer's text into the output (of type ``T``), or raises :class:`ValidationFailed`.

pydantic's and jsonschema's ``ValidationError`` and ``ValueError`` mean "invalid"
too.  A bare ``Validator`` is ``Validator[Any]``."""

AsyncValidator = Callable[[str], Awaitable[T]]
"""An ``async`` validator (``async def validate(text: str) -> Book``): the runner awaits it.

``Runner(..., validator=validate)`` types as ``Runner[Book]`` for either kind."""


class StageKind(Protocol):
    """How one kind of stage talks to the model."""

    def build(self, item: WorkItem, state: ItemState, stage: Stage) -> Request | None:
        """The request to send, or ``None`` to skip the stage without spending a prompt."""

    def parse(self, response: Response, state: ItemState, validator: Validator[Any]) -> Any:
        """The validated output, or raise :class:`ValidationFailed`."""


def _no_text(response: Response) -> ValidationFailed:
    meta = response.meta
    why = "no text in the response"
    if meta is not None and meta.blocked:
        why += f" (prompt blocked: {meta.block_reason})"
    elif meta is not None and meta.finish_reason:
        why += f" (finish reason {meta.finish_reason})"
    return ValidationFailed([FieldError("", why)], None, text=None)


class FullStage:
    """Send the item's own prompt and validate the whole answer."""

    __slots__ = ()

    def build(self, item: WorkItem, state: ItemState, stage: Stage) -> Request:
        return Request(item.id, stage, item.prompt)

    def parse(self, response: Response, state: ItemState, validator: Validator[Any]) -> Any:
        if response.text is None:
            raise _no_text(response)
        return validator(response.text)

    def __repr__(self) -> str:
        return "FullStage()"


def repairable_fields(errors: tuple[FieldError, ...]) -> tuple[str, ...]:
    """The top-level fields to re-ask for, or ``()`` when an error covers the whole answer."""
    fields: list[str] = []
    for error in errors:
        head = error.path.split(".", 1)[0]
        if not head:
            return ()
        if head not in fields:
            fields.append(head)
    return tuple(fields)


def merge(kept: Mapping[str, Any], answer: Mapping[str, Any]) -> dict[str, Any]:
    """Merge *answer* into *kept* by path: nested objects merge, everything else replaces."""
    merged = dict(kept)
    for key, value in answer.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = merge(old, value)
        else:
            merged[key] = value
    return merged


def repair_prompt(
    prompt: str, errors: tuple[FieldError, ...], kept: Mapping[str, Any], fields: tuple[str, ...]
) -> str:
    """The text of a partial request: what failed, what is already right, what to answer."""
    failed = "\n".join(f"- {e.path}: {e.message}" for e in errors)
    return (
        f"{prompt}\n\n"
        "A previous answer had invalid fields:\n"
        f"{failed}\n"
        "These fields are already valid and are kept:\n"
        f"{json.dumps(kept, sort_keys=True, ensure_ascii=False, default=str)}\n"
        f"Answer with a JSON object holding only these fields: {', '.join(fields)}."
    )


_UNREADABLE = " (the last repair was unreadable: "


def _unreadable_repair(state: ItemState, why: str, text: str | None) -> ValidationFailed:
    """A repair that could not be read changes nothing: the same fields still fail.

    The errors and the kept part stay as they were (with *why* noted), so a
    later partial stage can still repair instead of being skipped.
    """
    errors = [
        FieldError(e.path, f"{e.message.split(_UNREADABLE, 1)[0]}{_UNREADABLE}{why})")
        for e in state.errors
    ]
    return ValidationFailed(errors, dict(state.partial or {}), text=text)


class PartialStage:
    """Re-ask only the fields that failed; merge the answer into the valid part."""

    __slots__ = ()

    def build(self, item: WorkItem, state: ItemState, stage: Stage) -> Request | None:
        if state.partial is None or not state.errors:
            return None
        fields = repairable_fields(state.errors)
        if not fields:
            return None
        kept = {k: v for k, v in state.partial.items() if k not in fields}
        return Request(
            item.id,
            stage,
            repair_prompt(item.prompt, state.errors, kept, fields),
            fields=fields,
            kept=kept,
        )

    def parse(self, response: Response, state: ItemState, validator: Validator[Any]) -> Any:
        if response.text is None:
            raise _unreadable_repair(state, _no_text(response).errors[0].message, None)
        try:
            answer = json.loads(response.text)
        except ValueError as exc:
            raise _unreadable_repair(state, f"not JSON: {exc}", response.text) from None
        if not isinstance(answer, dict):
            raise _unreadable_repair(state, "not a JSON object", response.text)
        fields = repairable_fields(state.errors)
        # Only the fields asked for are taken: the model may not rewrite what was valid.
        asked = {k: v for k, v in answer.items() if k in fields}
        return validator(json.dumps(merge(state.partial or {}, asked), ensure_ascii=False))

    def __repr__(self) -> str:
        return "PartialStage()"


def builtin_kinds() -> dict[str, StageKind]:
    """A fresh mapping of the built-in stage kinds, to extend with your own."""
    return {"full": FullStage(), "partial": PartialStage()}
