"""Validators: turn an answer's text into the output or raise ``ValidationFailed``.

A validator is any ``Callable[[str], T]``, or an ``async`` one (awaited by the
runner).  Besides ``ValidationFailed``, pydantic's and jsonschema's
``ValidationError`` and ``ValueError`` raised by any validator mean "invalid";
anything else it raises is a bug that fails the item.  These adapters build one
from a function over parsed JSON or from a pydantic model (pydantic is optional).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from ._outcomes import FieldError, ValidationFailed
from ._resume import fingerprint_part
from ._schema import SchemaValidator, parse_json_object
from ._stages import Validator

T = TypeVar("T")

__all__ = ["json_object", "json_schema", "pydantic"]


class _JsonObjectValidator:
    __slots__ = ("_check",)

    def __init__(self, check: Callable[[dict[str, Any]], Any]) -> None:
        self._check = check

    def __call__(self, text: str) -> Any:
        data = parse_json_object(text)
        try:
            return self._check(data)
        except ValidationFailed as exc:
            if exc.text is None:
                exc.text = text
            raise

    def fingerprint_data(self) -> Mapping[str, object]:
        """The check's own description if it has one, else its qualified name."""
        return {"check": fingerprint_part(self._check)}

    def __repr__(self) -> str:
        return f"json_object({self._check!r})"


def _as_is(data: dict[str, Any]) -> dict[str, Any]:
    return data


@overload
def json_object() -> Validator[dict[str, Any]]: ...
@overload
def json_object(check: Callable[[dict[str, Any]], T]) -> Validator[T]: ...
def json_object(check: Callable[[dict[str, Any]], Any] | None = None) -> Validator[Any]:
    """A validator that parses a JSON object and hands it to *check* (if given).

    *check* returns the output or raises ``ValidationFailed`` naming the fields.
    """
    return _JsonObjectValidator(check or _as_is)


class _PydanticValidator:
    __slots__ = ("_adapter", "_model")

    def __init__(self, model: type[Any]) -> None:
        try:
            from pydantic import TypeAdapter
        except ImportError:
            raise ImportError(
                "validators.pydantic needs pydantic: pip install 'stagedretry[pydantic]'"
            ) from None
        self._model = model
        self._adapter = TypeAdapter(model)

    def __call__(self, text: str) -> Any:
        from pydantic import ValidationError

        data = parse_json_object(text)
        try:
            return self._adapter.validate_python(data)
        except ValidationError as exc:
            errors = []
            failed: set[str] = set()
            for e in exc.errors(include_url=False):
                path = ".".join(str(p) for p in e["loc"])
                errors.append(FieldError(path, e["msg"]))
                failed.add(str(e["loc"][0]) if e["loc"] else "")
            # Everything at the top level that did not fail is kept for a partial stage.
            partial = None if "" in failed else {k: v for k, v in data.items() if k not in failed}
            raise ValidationFailed(errors, partial, text=text) from None

    def fingerprint_data(self) -> Mapping[str, object]:
        """The model's JSON schema: an edited model is a new one."""
        schema: Mapping[str, object] = self._adapter.json_schema()
        return {"schema": schema}

    def __repr__(self) -> str:
        return f"pydantic({self._model.__name__})"


def pydantic(model: type[T]) -> Validator[T]:
    """A validator that parses JSON into *model* (a pydantic model or any type pydantic knows)."""
    return _PydanticValidator(model)


def json_schema(schema: Mapping[str, Any]) -> Validator[dict[str, Any]]:
    """A validator for a JSON Schema: the subset a model's response schema uses.

    Every bad field is reported by dotted path; a keyword it cannot check is
    refused here with ``ValueError`` rather than silently ignored.
    """
    return SchemaValidator(schema)
