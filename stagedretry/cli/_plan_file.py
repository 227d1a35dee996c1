"""What ``plan show`` and ``plan check`` read: a pipeline file, or a bare plan file.

A bare plan is what :meth:`stagedretry.Plan.load` reads: the plan's keys at the
top level (``max_prompts``, ``[[stages]]``...), or a ``[plan]`` table alone.  A
file with any other section of a pipeline (``[input]``, ``[backend]``...) is a
pipeline, read by :func:`~.pipeline.load_pipeline`.  A file that mixes the two
(a plan's keys at the top level beside a pipeline's sections) is refused with
one sentence saying to put the plan under ``[plan]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from .._documents import load_document
from .._outcomes import PlanError
from .._plan import PLAN_KEYS, Plan, plan_from_document
from .pipeline import SECTIONS, Pipeline, load_pipeline
from .pipeline._overrides import apply_override

_PIPELINE_ONLY = tuple(s for s in SECTIONS if s != "plan")


@attrs.frozen
class PlanFile:
    """A plan read from *source*, with the pipeline around it (``None`` for a bare plan).

    *name* is the pipeline's name, or the bare plan file's name.
    """

    source: Path
    name: str
    plan: Plan
    pipeline: Pipeline | None = None


def load_plan_file(path: Path, overrides: Sequence[tuple[str, Any]] = ()) -> PlanFile:
    """Read *path* as a pipeline or as a bare plan, whichever it is; apply *overrides*.

    For a bare plan, an override's key is relative to the plan (``max_prompts=3``,
    or ``plan.max_prompts=3`` as in a pipeline).  Raises :class:`PlanError`
    naming the file and the place of the first mistake.
    """
    if not path.exists():
        raise PlanError(str(path), "no such pipeline or plan file")
    data = load_document(path)
    sections = [key for key in data if key in _PIPELINE_ONLY]
    if not sections:
        return PlanFile(path, path.name, _bare_plan(data, path.name, overrides))
    stray = [key for key in data if key in PLAN_KEYS]
    if stray:
        raise PlanError(
            f"{path.name}: {stray[0]}",
            "a plan's key at the top level of a pipeline file: put the plan's keys under [plan]",
        )
    pipeline = load_pipeline(path, overrides=overrides)
    return PlanFile(pipeline.source, pipeline.name, pipeline.plan, pipeline)


def _bare_plan(data: dict[str, Any], name: str, overrides: Sequence[tuple[str, Any]]) -> Plan:
    if overrides:
        nested = "plan" in data
        table = data["plan"] if nested and isinstance(data["plan"], dict) else data
        for key, value in overrides:
            relative = key.removeprefix("plan.") if key.startswith("plan.") else key
            apply_override(table, relative, value)
    return plan_from_document(data, name)
