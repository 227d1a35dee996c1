"""Running the user's validator: its own ways of saying "invalid", and async validators.

A validator says an answer is invalid the way its library does: pydantic's
``ValidationError`` (``Book.model_validate_json``), jsonschema's
``ValidationError`` (``jsonschema.validate``), a plain ``ValueError`` (which
``json.JSONDecodeError`` is), or the engine's own :class:`ValidationFailed`;
a ``RecursionError`` (a parser of the validator's own meeting an answer too deep
to read) counts as unreadable JSON.  All of them advance the plan: they become
:class:`ValidationFailed`, with the failing fields by path where the error
names them.  Anything else a validator
raises is a bug in it and fails the item, naming the validator.

A validator may be ``async`` (it may need I/O, a lookup say); its awaitable is
awaited by the runner and never becomes an output.  Neither pydantic nor
jsonschema is imported here: an error of theirs can only exist once its
library is loaded, so ``sys.modules`` is asked.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Awaitable, Callable
from typing import Any

import jsonschema

from ._outcomes import (
    FatalError,
    FieldError,
    FieldErrorKind,
    FieldPath,
    StagedRetryError,
    ValidationFailed,
    describe,
)
from ._schema import field_errors, parse_json_object
from ._stages import kept_part

__all__ = ["CheckedValidator", "validator_name"]


def validator_name(validator: object) -> str:
    """The validator's qualified name, as a message shows it (``module.qualname``)."""
    qualname = getattr(validator, "__qualname__", None)
    if not isinstance(qualname, str):
        # A callable instance: its class says what it is (a validators.* adapter, say).
        qualname = type(validator).__qualname__
        module = type(validator).__module__
    else:
        module = getattr(validator, "__module__", None) or "?"
    return f"{module}.{qualname}"


def _loaded(module: str, name: str) -> type[BaseException] | None:
    found = sys.modules.get(module)
    cls = getattr(found, name, None) if found is not None else None
    return cls if isinstance(cls, type) and issubclass(cls, BaseException) else None


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        return parse_json_object(text)
    except ValidationFailed:
        return None


def _kept(data: dict[str, Any] | None, errors: list[FieldError]) -> dict[str, object] | None:
    """The part of the answer that did not fail (``None``: nothing could be kept)."""
    return None if data is None else kept_part(data, errors)


def pydantic_path(data: object, loc: tuple[str | int, ...]) -> FieldPath:
    """The part of pydantic's *loc* that names a place in the answer.

    Validated by alias (the default), *loc* holds the keys the answer's JSON
    used.  A union adds its member's tag (``("price", "int")``,
    ``("pet", "Cat", "name")``), which is no key of the answer: the path stops
    where the answer does, except for the last key, which may be a missing field.
    """
    path: list[str | int] = []
    node = data
    for i, key in enumerate(loc):
        if isinstance(node, dict) and isinstance(key, str):
            if key not in node and i < len(loc) - 1:
                break  # a union's tag, not a missing field (pydantic's missing key ends the loc)
            path.append(key)
            node = node.get(key)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            path.append(key)
            node = node[key]
        else:
            break
    return tuple(path)


def pydantic_errors(exc: Any, data: object) -> list[FieldError]:
    """Pydantic's errors as field errors by path; a forbidden extra key is marked so."""
    return [
        FieldError(
            pydantic_path(data, tuple(error.get("loc", ()))),
            str(error.get("msg", "")),
            kind=FieldErrorKind.FORBIDDEN
            if error.get("type") == "extra_forbidden"
            else FieldErrorKind.INVALID,
        )
        for error in exc.errors(include_url=False)
    ]


def _pydantic_failed(exc: Any, text: str) -> ValidationFailed:
    data = _json_object(text)
    errors = pydantic_errors(exc, data)
    if not errors:  # pydantic never raises an empty one, but an empty list would read as valid
        errors.append(FieldError("", str(exc)))
    return ValidationFailed(errors, _kept(data, errors), text=text)


def _jsonschema_failed(exc: Any, text: str) -> ValidationFailed:
    # Read as the json_schema adapter reads its own errors: a missing key of `required` is
    # that key, a key `additionalProperties` refuses is FORBIDDEN and mended locally.
    errors = field_errors([exc]) or [FieldError(tuple(exc.absolute_path), str(exc.message))]
    return ValidationFailed(errors, _kept(_json_object(text), errors), text=text)


def as_validation_failure(exc: Exception, text: str) -> ValidationFailed | None:
    """*exc* from a validator as :class:`ValidationFailed`, or ``None`` if it is not one.

    Pydantic is checked before ``ValueError``: its ``ValidationError`` is one, but
    carries field paths.
    """
    pydantic_error = _loaded("pydantic_core", "ValidationError")
    if pydantic_error is not None and isinstance(exc, pydantic_error):
        return _pydantic_failed(exc, text)
    if isinstance(exc, jsonschema.ValidationError):  # a dependency of the engine: always there
        return _jsonschema_failed(exc, text)
    if isinstance(exc, ValueError):
        # No field paths (json.JSONDecodeError is one): nothing a partial stage can repair.
        return ValidationFailed([FieldError("", describe(exc))], None, text=text)
    if isinstance(exc, RecursionError):
        # A validator's own parser (json.loads in a ```json block, say) met an answer too deep
        # to read: the answer is unreadable, as invalid JSON is, not a bug of the validator.
        return ValidationFailed(
            [FieldError("", "the answer is nested too deeply to read (RecursionError)")],
            None,
            text=text,
        )
    return None


def is_awaitable(value: object) -> bool:
    """Whether *value* can be awaited, as ``inspect.isawaitable`` says, but cheaply.

    Called on every answer: a lookup on the type's own ``__await__`` (coroutines,
    futures, awaitable classes) costs far less than the ABC check inside
    ``inspect.isawaitable``; a generator-based coroutine is the one other case.
    """
    kind = type(value)
    if hasattr(kind, "__await__"):
        return True
    return kind is types.GeneratorType and bool(
        value.gi_code.co_flags & inspect.CO_ITERABLE_COROUTINE  # type: ignore[attr-defined]
    )


class CheckedValidator:
    """The user's validator as the engine calls it: every "invalid" is a ValidationFailed.

    Returns the output, or for an async validator an awaitable of it, which
    the runner awaits.
    """

    __slots__ = ("_name", "_validate")

    def __init__(self, validate: Callable[[str], Any]) -> None:
        self._validate = validate
        self._name: str | None = None

    def __call__(self, text: str) -> Any:
        try:
            output = self._validate(text)
        except Exception as exc:
            raise self._failure(exc, text) from _cause(exc)
        if is_awaitable(output):
            return self._finish(output, text)
        return output

    async def _finish(self, pending: Awaitable[Any], text: str) -> Any:
        try:
            output = await pending
        except Exception as exc:
            raise self._failure(exc, text) from _cause(exc)
        if is_awaitable(output):
            # An awaitable of an awaitable: a mistake, and never an output.
            if inspect.iscoroutine(output):
                output.close()
            raise FatalError(f"the validator {self.name} returned an awaitable of an awaitable")
        return output

    @property
    def name(self) -> str:
        """The wrapped validator's qualified name."""
        if self._name is None:
            self._name = validator_name(self._validate)
        return self._name

    def _failure(self, exc: Exception, text: str) -> Exception:
        if isinstance(exc, ValidationFailed):
            if exc.text is None:
                exc.text = text
            return exc
        if isinstance(exc, StagedRetryError):
            return exc  # the engine's own exceptions say what they mean
        failed = as_validation_failure(exc, text)
        if failed is not None:
            return failed
        return FatalError(f"the validator {self.name} raised {describe(exc)}")

    def __repr__(self) -> str:
        return f"CheckedValidator({self._validate!r})"


def _cause(exc: Exception) -> Exception | None:
    # An exception re-raised as itself must not be its own cause.
    return None if isinstance(exc, StagedRetryError) else exc
