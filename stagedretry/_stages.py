"""Stage kinds: how a stage builds its request and reads the answer.

``full`` asks the item's prompt.  ``partial`` re-asks only the fields that
failed, keeps the valid ones, merges the answer by path and re-validates the
whole.  Users add their own kinds by implementing :class:`StageKind`.

An answer the provider flags as truncated (``ResponseMeta.truncated``) is read
for what it holds complete: both kinds keep its complete, valid fields and
fail the one that was cut and the ones never reached, so a partial stage can
ask for only those.
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
    elif meta is not None and meta.truncated:
        why += f" ({_cut_off(response)})"
    elif meta is not None and meta.finish_reason:
        why += f" (finish reason {meta.finish_reason})"
    return ValidationFailed([FieldError("", why)], None, text=None)


def _cut_off(response: Response) -> str:
    """Why a truncated answer's fields failed, in words an attempt's error can carry."""
    meta = response.meta
    reason = f" (finish reason {meta.finish_reason})" if meta and meta.finish_reason else ""
    return f"cut off by the output token limit{reason}"


def _complete_end(text: str) -> int | None:
    """Where the complete members of the JSON object opening *text* end.

    That is the offset of the last comma between its members, or just past
    its closing brace when it closed; ``None`` when *text* opens no object.
    A partial parser cannot tell a cut number or array (``"year": 19``,
    ``"tags": ["a"``) from a whole one, but a member followed by a comma is
    whole, so this scans for the commas at the object's own depth.
    """
    start = len(text) - len(text.lstrip())
    if not text.startswith("{", start):
        return None
    end = start + 1
    depth = 0
    in_string = escaped = False
    for index in range(start, len(text)):
        char = text[index]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return index + 1
        elif char == "," and depth == 1:
            end = index
    return end


def complete_members(text: str) -> tuple[dict[str, Any], tuple[str, ...]] | None:
    """The members of a cut-off JSON object that are complete, and the keys of those cut.

    ``None`` when no object can be read from *text* (or pydantic_core, whose
    partial JSON parser reads it, is not installed).
    """
    end = _complete_end(text)
    if end is None:
        return None
    try:
        from pydantic_core import from_json
    except ImportError:
        return None
    try:
        complete = from_json(text[:end], allow_partial=True)
        # Every key the parser reached, a cut string's too: the one past the complete
        # members was cut (and its value is never kept).
        reached = from_json(text, allow_partial="trailing-strings")
    except ValueError:
        return None
    if not isinstance(complete, dict) or not isinstance(reached, dict):
        return None
    return complete, tuple(k for k in reached if k not in complete)


def from_truncated(
    response: Response,
    validator: Validator[Any],
    *,
    kept: Mapping[str, Any] | None = None,
    fields: tuple[str, ...] | None = None,
) -> Any:
    """Validate what a truncated answer holds complete; the cut and missing fields fail.

    The complete members (only *fields* of them, when a partial request asked
    for those) are merged into *kept* and validated.  The member that was cut
    is never kept: it fails with a message saying so, as do the required
    fields the answer never reached (the validator names those).  Returns the
    validator's output when nothing was cut and the rest validates; otherwise
    raises :class:`ValidationFailed` with the valid part as ``partial``.
    """
    text = response.text
    assert text is not None
    why = _cut_off(response)
    members = complete_members(text)
    if members is None:
        # Nothing readable as an object: the validator says what it can of the text.
        try:
            return validator(text)
        except ValidationFailed as exc:
            raise ValidationFailed([FieldError("", why), *exc.errors], None, text=text) from None
    complete, cut = members
    if fields is not None:
        complete = {k: v for k, v in complete.items() if k in fields}
        cut = tuple(k for k in cut if k in fields)
    candidate = merge(kept or {}, complete)
    try:
        output = validator(json.dumps(candidate, ensure_ascii=False))
    except ValidationFailed as exc:
        failed, partial = exc.errors, exc.partial
    else:
        if not cut:
            return output
        failed, partial = (), candidate
    errors = [FieldError(key, why) for key in cut]
    for error in failed:
        heads = repairable_fields((error,))
        if set(heads) & set(cut):
            continue  # the validator named a cut field (as missing): one error for it is enough
        if heads and heads[0] not in candidate:
            # Missing because the answer stopped before it, which the error should say.
            message = f"{error.message}, as the answer was {why} before it"
            errors.append(FieldError(error.path, message))
        else:
            errors.append(error)
    if partial is not None:
        partial = {k: v for k, v in partial.items() if k not in cut}
    raise ValidationFailed(errors, partial, text=text)


class FullStage:
    """Send the item's own prompt and validate the whole answer."""

    __slots__ = ()

    def build(self, item: WorkItem, state: ItemState, stage: Stage) -> Request:
        return Request(item.id, stage, item.prompt)

    def parse(self, response: Response, state: ItemState, validator: Validator[Any]) -> Any:
        if response.text is None:
            raise _no_text(response)
        if response.meta is not None and response.meta.truncated:
            return from_truncated(response, validator)
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
        fields = repairable_fields(state.errors)
        if response.meta is not None and response.meta.truncated:
            if complete_members(response.text) is None:
                raise _unreadable_repair(state, _cut_off(response), response.text)
            return from_truncated(response, validator, kept=state.partial, fields=fields)
        try:
            answer = json.loads(response.text)
        except ValueError as exc:
            raise _unreadable_repair(state, f"not JSON: {exc}", response.text) from None
        if not isinstance(answer, dict):
            raise _unreadable_repair(state, "not a JSON object", response.text)
        # Only the fields asked for are taken: the model may not rewrite what was valid.
        asked = {k: v for k, v in answer.items() if k in fields}
        return validator(json.dumps(merge(state.partial or {}, asked), ensure_ascii=False))

    def __repr__(self) -> str:
        return "PartialStage()"


def builtin_kinds() -> dict[str, StageKind]:
    """A fresh mapping of the built-in stage kinds, to extend with your own."""
    return {"full": FullStage(), "partial": PartialStage()}
