"""Stage kinds: how a stage builds its request and reads the answer.

``full`` asks the item's prompt.  ``partial`` re-asks only the fields that
failed, keeps the valid ones, merges the answer by path and re-validates the
whole.  Users add their own kinds by implementing :class:`StageKind`.

An answer the provider flags as truncated (``ResponseMeta.truncated``) is read
for what it holds complete: both kinds keep its complete, valid fields and
fail the one that was cut and the ones never reached, so a partial stage can
ask for only those.

Paths are :data:`~stagedretry.FieldPath` tuples from end to end; they are
rendered (as JSON Pointers) only in the prompt.  Keys a schema forbids are
dropped here, without a request (see :func:`validate`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import CoroutineType
from typing import Any, NoReturn, Protocol

import attrs

from ._limits import TooDeep, check_json_depth, loads
from ._outcomes import FieldError, FieldErrorKind, FieldPath, ValidationFailed, json_pointer
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


def _too_deep(text: str) -> str | None:
    """Why *text* is refused before any validator reads it, or ``None``.

    An answer nested deeper than :data:`~stagedretry._limits.MAX_DEPTH` is
    invalid as unparseable JSON is: every later walk over it (merging, the
    journal, the output) is then bounded, whatever validator reads it.
    """
    try:
        check_json_depth(text)
    except TooDeep as exc:
        return f"not valid JSON: {exc}"
    return None


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
        complete = from_json(text[:end], allow_partial=True, allow_inf_nan=False)
        # Every key the parser reached, a cut string's too: the one past the complete
        # members was cut (and its value is never kept).
        reached = from_json(text, allow_partial="trailing-strings", allow_inf_nan=False)
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
    fields: tuple[FieldPath, ...] | None = None,
    members: tuple[dict[str, Any], tuple[str, ...]] | None = None,
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
    if members is None:  # not read by the caller already
        members = complete_members(text)
    if members is None:
        # Nothing readable as an object: the validator says what it can of the text.
        try:
            return validator(text)
        except ValidationFailed as exc:
            raise ValidationFailed([FieldError("", why), *exc.errors], None, text=text) from None
    complete, cut = members
    if fields is None:
        fields = tuple((key,) for key in complete)
    else:
        # A partial request: only the paths asked for are taken, and only their cut heads fail.
        cut = tuple(k for k in cut if any(f and f[0] == k for f in fields))
    candidate = merge(kept or {}, complete, fields)
    try:
        output = validator(json.dumps(candidate, ensure_ascii=False))
    except ValidationFailed as exc:
        _truncated_failure(exc.errors, exc.partial, candidate, cut, why, text)
    if type(output) is CoroutineType:
        # An async validator: its verdict on the complete part is known once awaited.
        return _truncated_later(output, candidate, cut, why, text)
    if cut:
        _truncated_failure((), candidate, candidate, cut, why, text)
    return output


async def _truncated_later(
    pending: Awaitable[Any],
    candidate: dict[str, Any],
    cut: tuple[str, ...],
    why: str,
    text: str,
) -> Any:
    try:
        output = await pending
    except ValidationFailed as exc:
        _truncated_failure(exc.errors, exc.partial, candidate, cut, why, text)
    if cut:
        _truncated_failure((), candidate, candidate, cut, why, text)
    return output


def _truncated_failure(
    failed: Iterable[FieldError],
    partial: Mapping[str, Any] | None,
    candidate: dict[str, Any],
    cut: tuple[str, ...],
    why: str,
    text: str,
) -> NoReturn:
    """Raise what a truncated answer lacks: the cut members and what the validator refused."""
    errors = [FieldError((key,), why) for key in cut]
    for error in failed:
        heads = repairable_fields((error,))
        if {h[0] for h in heads if h} & set(cut):
            continue  # the validator named a cut field (as missing): one error for it is enough
        if heads and value_at(candidate, heads[0]) is _MISSING:
            # Missing because the answer stopped before it, which the error should say.
            message = f"{error.message}, as the answer was {why} before it"
            errors.append(FieldError(error.path, message))
        else:
            errors.append(error)
    kept = None if partial is None else {k: v for k, v in partial.items() if k not in cut}
    raise ValidationFailed(errors, kept, text=text)


class FullStage:
    """Send the item's own prompt and validate the whole answer."""

    __slots__ = ()

    def build(self, item: WorkItem, state: ItemState, stage: Stage) -> Request:
        return Request(item.id, stage, item.prompt)

    def parse(self, response: Response, state: ItemState, validator: Validator[Any]) -> Any:
        if response.text is None:
            raise _no_text(response)
        too_deep = _too_deep(response.text)
        if too_deep is not None:
            raise ValidationFailed([FieldError("", too_deep)], None, text=response.text)
        if response.meta is not None and response.meta.truncated:
            return from_truncated(response, validator)
        return validate(validator, response.text, state)

    def __repr__(self) -> str:
        return "FullStage()"


def repair_unit(path: FieldPath) -> FieldPath:
    """What a partial request re-asks for a failure at *path*: the path up to its first index.

    Objects are repaired down to the failing leaf; an array is re-asked whole,
    because a partial answer cannot address one element of it.
    """
    for i, part in enumerate(path):
        if isinstance(part, int):
            return path[:i]
    return path


def repairable_fields(errors: tuple[FieldError, ...]) -> tuple[FieldPath, ...]:
    """The paths to re-ask, or ``()`` when an error covers the whole answer.

    Each failing path is cut at its first array index (see :func:`repair_unit`);
    a path inside another one asked for is covered by it; a key the schema
    forbids (:attr:`FieldErrorKind.FORBIDDEN`) is never asked for.
    """
    units: list[FieldPath] = []
    for error in errors:
        if error.kind is FieldErrorKind.FORBIDDEN:
            continue
        unit = repair_unit(error.path)
        if not unit:
            return ()
        if unit not in units:
            units.append(unit)
    return tuple(u for u in units if not any(_inside(u, other) for other in units))


def _inside(path: FieldPath, other: FieldPath) -> bool:
    return len(other) < len(path) and path[: len(other)] == other


def without(data: Mapping[str, Any], paths: Iterable[FieldPath]) -> dict[str, Any] | None:
    """A copy of *data* without the values at *paths*, each cut at its first array index.

    ``None`` when a path is the whole answer: then nothing can be kept.  Only
    the objects along a path are copied; *data* itself is never changed.
    """
    out = dict(data)
    for path in paths:
        unit = repair_unit(path)
        if not unit:
            return None
        node: dict[str, Any] | None = out
        for key in unit[:-1]:
            child = node.get(str(key)) if node is not None else None
            if not isinstance(child, dict) or node is None:
                node = None
                break
            node[str(key)] = node = dict(child)
        if node is not None:
            node.pop(str(unit[-1]), None)
    return out


def kept_part(data: Mapping[str, Any], errors: Iterable[FieldError]) -> dict[str, Any] | None:
    """The part of *data* a partial stage may keep: without the failed paths or forbidden keys.

    A failed value is cut at its first array index (the array is re-asked whole);
    a forbidden key is dropped exactly where it is, even inside an array element,
    since it is never re-asked.  ``None`` when an error covers the whole answer.
    """
    errors = tuple(errors)
    kept = without(data, (e.path for e in errors if e.kind is not FieldErrorKind.FORBIDDEN))
    if kept is None:
        return None
    for error in errors:
        if error.kind is FieldErrorKind.FORBIDDEN:
            kept = _dropped(kept, error.path)
    return kept


_MISSING: Any = object()


def value_at(data: object, path: FieldPath) -> Any:
    """The value at *path* in *data*, or a private sentinel when there is none."""
    node = data
    for key in path:
        in_object = isinstance(key, str) and isinstance(node, Mapping) and key in node
        in_array = isinstance(key, int) and isinstance(node, list) and 0 <= key < len(node)
        if not (in_object or in_array):
            return _MISSING
        node = node[key]  # type: ignore[index]
    return node


def _put(data: dict[str, Any], path: FieldPath, value: Any) -> None:
    # Objects along the path are copied (or made), so the kept part is never mutated.
    node = data
    for key in path[:-1]:
        child = node.get(str(key))
        node[str(key)] = node = dict(child) if isinstance(child, Mapping) else {}
    node[str(path[-1])] = value


def merge(
    kept: Mapping[str, Any], answer: Mapping[str, Any], fields: Iterable[FieldPath]
) -> dict[str, Any]:
    """*kept* with the values of *answer* at *fields* put in: nothing else is taken.

    The model may not rewrite what was valid, so a value it sends outside the
    paths it was asked for is ignored, and a path it leaves out stays missing
    (the whole is validated again and names it).
    """
    merged = dict(kept)
    # In the answer's own order, so a validator reports the repaired fields as the model wrote them.
    order: dict[str | int, int] = {key: i for i, key in enumerate(answer)}
    for path in sorted(fields, key=lambda p: order.get(p[0], len(order)) if p else -1):
        value = value_at(answer, path)
        if value is not _MISSING and path:
            _put(merged, path, value)
    return merged


def _skeleton(fields: tuple[FieldPath, ...]) -> dict[str, Any]:
    shape: dict[str, Any] = {}
    for path in fields:
        _put(shape, path, "...")
    return shape


def repair_prompt(
    prompt: str,
    errors: tuple[FieldError, ...],
    kept: Mapping[str, Any],
    fields: tuple[FieldPath, ...],
) -> str:
    """The text of a partial request: what failed, what is already right, what to answer.

    Paths are shown as JSON Pointers (``/price.usd``, ``/authors/2``), and the
    answer's shape as a JSON skeleton, so a key with a dot in it stays one key.
    """
    failed = "\n".join(
        f"- {e.pointer or '(the whole answer)'}: {e.message}"
        for e in errors
        if e.kind is FieldErrorKind.INVALID
    )
    shape = json.dumps(_skeleton(fields), ensure_ascii=False)
    return (
        f"{prompt}\n\n"
        "A previous answer had invalid fields (as JSON Pointers):\n"
        f"{failed}\n"
        "These fields are already valid and are kept:\n"
        f"{json.dumps(kept, sort_keys=True, ensure_ascii=False, default=str)}\n"
        "Answer with a JSON object holding only these fields: "
        f"{', '.join(json_pointer(f) for f in fields)}, shaped like {shape}."
    )


def _dropped(data: Any, path: FieldPath) -> Any:
    """A copy of *data* without the key at *path* (through objects and arrays)."""
    if not path:
        return data
    head, rest = path[0], path[1:]
    if isinstance(data, dict) and isinstance(head, str) and head in data:
        out = dict(data)
        if rest:
            out[head] = _dropped(data[head], rest)
        else:
            del out[head]
        return out
    if isinstance(data, list) and isinstance(head, int) and 0 <= head < len(data) and rest:
        items = list(data)
        items[head] = _dropped(items[head], rest)
        return items
    return data


def validate(validator: Validator[Any], text: str, state: ItemState) -> Any:
    """Run *validator* on *text*, first mending locally what needs no request.

    Keys the schema forbids are dropped and the rest validated again; the
    dropped keys are noted on *state* for the attempt's record.  Whatever
    still fails is raised as the second validation reports it.
    """
    try:
        output = validator(text)
    except ValidationFailed as exc:
        return _mend(validator, text, state, exc)
    if type(output) is CoroutineType:
        # An async validator fails only once awaited: the mending must wait for it too.
        return _mend_later(output, validator, text, state)
    return output


def _mend(validator: Validator[Any], text: str, state: ItemState, exc: ValidationFailed) -> Any:
    """Drop the forbidden keys *exc* names and validate again, or raise *exc* as it is."""
    forbidden = tuple(e for e in exc.errors if e.kind is FieldErrorKind.FORBIDDEN and e.path)
    if not forbidden:
        raise exc
    try:
        data = loads(text)
    except ValueError:
        raise exc from None
    for error in forbidden:
        data = _dropped(data, error.path)
    state.note_mended(forbidden)
    return validator(json.dumps(data, ensure_ascii=False))


async def _mend_later(
    pending: Awaitable[Any], validator: Validator[Any], text: str, state: ItemState
) -> Any:
    try:
        return await pending
    except ValidationFailed as exc:
        return await _settled(_mend(validator, text, state, exc))


async def _settled(value: Any) -> Any:
    """*value*, awaited first if an async validator returned it as a coroutine."""
    return await value if type(value) is CoroutineType else value


_UNREADABLE = " (the last repair was unreadable: "


def _unreadable_repair(state: ItemState, why: str, text: str | None) -> ValidationFailed:
    """A repair that could not be read changes nothing: the same fields still fail.

    The errors and the kept part stay as they were (with *why* noted), so a
    later partial stage can still repair instead of being skipped.
    """
    errors = [
        attrs.evolve(e, message=f"{e.message.split(_UNREADABLE, 1)[0]}{_UNREADABLE}{why})")
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
        kept = without(state.partial, fields) or {}
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
        too_deep = _too_deep(response.text)
        if too_deep is not None:
            raise _unreadable_repair(state, too_deep, response.text)
        fields = repairable_fields(state.errors)
        if response.meta is not None and response.meta.truncated:
            members = complete_members(response.text)
            if members is None:
                raise _unreadable_repair(state, _cut_off(response), response.text)
            return from_truncated(
                response, validator, kept=state.partial, fields=fields, members=members
            )
        try:
            answer = loads(response.text)
        except ValueError as exc:
            raise _unreadable_repair(state, f"not JSON: {exc}", response.text) from None
        if not isinstance(answer, dict):
            raise _unreadable_repair(state, "not a JSON object", response.text)
        # Only the paths asked for are taken: the model may not rewrite what was valid.
        merged = merge(state.partial or {}, answer, fields)
        return validate(validator, json.dumps(merged, ensure_ascii=False), state)

    def __repr__(self) -> str:
        return "PartialStage()"


def builtin_kinds() -> dict[str, StageKind]:
    """A fresh mapping of the built-in stage kinds, to extend with your own."""
    return {"full": FullStage(), "partial": PartialStage()}
