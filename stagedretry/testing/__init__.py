"""Public helpers for testing code built on stagedretry.

``VirtualClock`` runs backoffs and cooldowns in virtual time;
``ScriptedStrategy`` replays scripted outcomes and records every request;
``expected_path`` is the pure reference model of a plan, which reads your own
stage kinds by their ``KindReading``; ``check_classification`` checks your
strategy's verdict on your client's exceptions.  The hypothesis-based
helpers (``plans``, ``outcomes``, ``outcome_scripts``, ``near_misses``,
``plan_state_machine``, ``check_plan``) need the ``stagedretry[testing]`` extra
and are imported on first use, so this package works without hypothesis.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._classification import check_classification
from ._clock import VirtualClock
from ._kinds import Asks, KindReading, Skips
from ._reference import ExpectedPath, ReferenceItem, expected_path
from ._scripted import (
    DEFAULT_ANSWER,
    JobEnd,
    JobStep,
    RecordedRequest,
    ScriptedJob,
    ScriptedStrategy,
    ScriptStep,
    Step,
)

if TYPE_CHECKING:
    from ._answers import NearMiss, NearMissKind, near_misses
    from ._generators import backoffs, outcome_scripts, outcomes, plans
    from ._reach import PlanCheckResult
    from ._stateful import PlanCheckFailed, check_plan, plan_state_machine

__all__ = [
    "DEFAULT_ANSWER",
    "Asks",
    "ExpectedPath",
    "JobEnd",
    "JobStep",
    "KindReading",
    "NearMiss",
    "NearMissKind",
    "PlanCheckFailed",
    "PlanCheckResult",
    "RecordedRequest",
    "ReferenceItem",
    "ScriptStep",
    "ScriptedJob",
    "ScriptedStrategy",
    "Skips",
    "Step",
    "VirtualClock",
    "backoffs",
    "check_classification",
    "check_plan",
    "expected_path",
    "near_misses",
    "outcome_scripts",
    "outcomes",
    "plan_state_machine",
    "plans",
]

# Names whose modules import hypothesis: loaded when first asked for.
_LAZY = {
    "NearMiss": "._answers",
    "NearMissKind": "._answers",
    "near_misses": "._answers",
    "backoffs": "._generators",
    "outcome_scripts": "._generators",
    "outcomes": "._generators",
    "plans": "._generators",
    "PlanCheckFailed": "._stateful",
    "PlanCheckResult": "._reach",
    "check_plan": "._stateful",
    "plan_state_machine": "._stateful",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
