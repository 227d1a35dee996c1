"""Validators: turn an answer's text into the output or raise ``ValidationFailed``.

A validator is any ``Callable[[str], T]``, or an ``async`` one (awaited by the
runner).  Besides ``ValidationFailed``, pydantic's and jsonschema's
``ValidationError`` and ``ValueError`` raised by any validator mean "invalid";
anything else it raises is a bug that fails the item.  These adapters build one
from a function over parsed JSON, from a pydantic model (pydantic is optional) or
from a JSON Schema (checked by the ``jsonschema`` package).

Every adapter names the bad fields by :data:`~stagedretry.FieldPath`: a tuple of
object keys (``str``) and array indexes (``int``), such as ``("price.usd",)`` or
``("authors", 2, "name")``.  A key is never split, so keys holding ``.``, ``/``,
``~``, ``[0]``, spaces, digits only or non-ASCII letters all work; a path is
shown as a JSON Pointer (``/price.usd``) only in messages, prompts and logs.
A key the schema forbids is reported as :attr:`~stagedretry.FieldErrorKind.FORBIDDEN`,
which the engine drops itself instead of re-asking it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from ._outcomes import ValidationFailed
from ._resume import fingerprint_part
from ._schema import SchemaValidator, parse_json_object
from ._stages import Validator, kept_part
from ._validating import pydantic_errors

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
    Text that is not strict JSON (``NaN``, ``Infinity``) or nests more than 64
    levels deep is invalid before *check* sees it.
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
            errors = pydantic_errors(exc, data)
            # Everything that did not fail is kept for a partial stage.
            kept = kept_part(data, errors)
            raise ValidationFailed(errors, kept, text=text) from None

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
    """A validator for a JSON Schema, checked by the ``jsonschema`` package.

    The draft is the schema's own ``$schema``, else Draft 2020-12; ``"nullable":
    true`` (OpenAPI's spelling, used by model response schemas) also lets
    ``null`` through.  Every bad field is reported by path: the missing key of
    ``required``, each forbidden key of ``additionalProperties: false``, and
    inside ``anyOf``/``oneOf`` the leaves of the one branch whose type fits.
    An invalid schema, a local ``$ref`` that resolves to nothing, or a schema
    nested more than 64 levels deep raises ``ValueError`` here rather than at
    the first answer.  An answer that is not strict JSON (``NaN``, ``Infinity``)
    or nests more than 64 levels deep is invalid.
    """
    return SchemaValidator(schema)
