"""What a valid answer is: a pydantic model imported by ``module:Class``, or a JSON Schema file.

A model module beside the pipeline file comes first, and is imported without
touching ``sys.path``.  Every mistake is a :class:`~stagedretry.PlanError` at
``output.model`` or ``output.schema``.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from stagedretry import PlanError, validators
from stagedretry._limits import TooDeep, loads

from ._model import canonical, sha


def import_model(spec: str, base: Path) -> type[Any]:
    """The pydantic model class *spec* (``module:Class``) names, looked for beside *base* first."""
    module_name, sep, qualname = spec.partition(":")
    if not sep or not module_name or not qualname:
        raise PlanError("output.model", f"expected 'module:Class', got {spec!r}")
    try:
        module = _import_beside(module_name, base) or importlib.import_module(module_name)
    except ImportError as exc:
        raise PlanError("output.model", f"cannot import module {module_name!r} ({exc})") from None
    except Exception as exc:
        raise PlanError(
            "output.model", f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    target: Any = module
    for part in qualname.split("."):
        if not hasattr(target, part):
            raise PlanError("output.model", f"module {module_name!r} has no {qualname!r}")
        target = getattr(target, part)
    try:
        from pydantic import BaseModel
    except ImportError:
        raise PlanError(
            "output.model", "a model needs pydantic: pip install 'stagedretry[pydantic]'"
        ) from None
    if not (isinstance(target, type) and issubclass(target, BaseModel)):
        raise PlanError("output.model", f"{spec!r} is not a pydantic model class")
    return target


def model_digest(model: type[Any], spec: str) -> str:
    """A hash of *model*'s JSON schema: editing the model changes it."""
    try:
        shape = model.model_json_schema()
    except Exception as exc:
        raise PlanError(
            "output.model", f"{spec!r} has no JSON schema: {type(exc).__name__}: {exc}"
        ) from None
    return sha(canonical(shape))


def parse_schema(text: str, name: str) -> Mapping[str, Any]:
    """The JSON Schema in *text* (the file *name*), checked for the subset the validators know."""
    try:
        schema = loads(text)
    except TooDeep as exc:
        raise PlanError("output.schema", f"{name} is {exc}") from None
    except ValueError as exc:
        raise PlanError("output.schema", f"{name} is not valid JSON: {exc}") from None
    if not isinstance(schema, dict) or schema.get("type") != "object":
        raise PlanError("output.schema", f'{name} must be a JSON Schema with "type": "object"')
    try:
        validators.json_schema(schema)
    except ValueError as exc:  # a keyword the validator cannot check
        raise PlanError("output.schema", f"{name}: {exc}") from None
    return schema


def schema_digest(schema: Mapping[str, Any]) -> str:
    """A hash of *schema*: editing the file's content (not its spacing) changes it."""
    return sha(canonical(schema))


def _import_beside(module_name: str, base: Path) -> ModuleType | None:
    """Import *module_name* from the pipeline's folder, or ``None`` if it is not there.

    The module (or package) is found with the import system's own finder,
    searching *base* alone, so ``sys.path`` is never touched.  It is loaded
    afresh under a private name tied to its folder, so an edited model is read
    again, and two pipelines with a ``model.py`` each never share one.
    """
    top, _, rest = module_name.partition(".")
    spec = importlib.machinery.PathFinder.find_spec(top, [str(base)])
    if spec is None:
        return None
    alias = f"_stagedretry_model_{sha(str(base.resolve()))[:12]}_{top}"
    for name in [n for n in sys.modules if n == alias or n.startswith(alias + ".")]:
        del sys.modules[name]  # an earlier load of the same folder: read the files again
    folders = list(spec.submodule_search_locations or ())
    fresh: importlib.machinery.ModuleSpec | None
    if spec.origin is None:  # a folder without __init__.py: a namespace package
        fresh = importlib.machinery.ModuleSpec(alias, None, is_package=True)
        fresh.submodule_search_locations = folders
    else:
        fresh = importlib.util.spec_from_file_location(
            alias, spec.origin, submodule_search_locations=folders or None
        )
    assert fresh is not None
    module = importlib.util.module_from_spec(fresh)
    # Registered while it runs, as an import would: pydantic and dataclasses look it up.
    sys.modules[alias] = module
    try:
        if fresh.loader is not None:
            fresh.loader.exec_module(module)
    except BaseException:
        del sys.modules[alias]
        raise
    if not rest:
        return module
    return importlib.import_module(f"{alias}.{rest}")
