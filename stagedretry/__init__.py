"""Run batches of LLM work items through declared, staged retries.

The names below are loaded when first used, so that ``import stagedretry`` (and a
command line built on it) starts in a few milliseconds: each name's module is
imported on first access, then kept.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from . import validators
    from ._batch_jobs import BatchEntry, BatchJobLost, BatchJobState, SubmitsBatchJobs
    from ._batching import BatchMode, BatchStats
    from ._clock import Clock, SystemClock
    from ._http import retry_after
    from ._journal import Journal, JournalError, JournalIOError
    from ._outcomes import (
        AttemptError,
        FatalError,
        FieldError,
        FieldErrorKind,
        FieldPath,
        Outcome,
        OutcomeKind,
        PlanError,
        RateLimited,
        ResourceLost,
        Rule,
        Shed,
        StagedRetryError,
        StopRun,
        TransientError,
        ValidationFailed,
        json_pointer,
    )
    from ._plan import Backoff, Expedite, Plan, Stage
    from ._redact import HoldsSecrets, Secrets
    from ._resources import RenewReason, SharedResource, StageScoped
    from ._results import (
        Attempt,
        BatchResult,
        ItemResult,
        ItemStatus,
        ResponseMeta,
        Usage,
        WorkItem,
    )
    from ._resume import Fingerprinted
    from ._runner import ResultStream, Runner, RunnerState
    from ._settings import parse_settings, settable_keys, setting, stage_params
    from ._stages import (
        AsyncValidator,
        FullStage,
        PartialStage,
        StageKind,
        Validator,
        builtin_kinds,
    )
    from ._state import ItemState, Scratch
    from ._stop import ItemError, ResourceError, RunStopped
    from ._strategy import (
        Admits,
        DeclaresParams,
        PlansResources,
        Request,
        Response,
        StageContext,
        Strategy,
        UsesResources,
    )

__all__ = [
    "Admits",
    "AsyncValidator",
    "Attempt",
    "AttemptError",
    "Backoff",
    "BatchEntry",
    "BatchJobLost",
    "BatchJobState",
    "BatchMode",
    "BatchResult",
    "BatchStats",
    "Clock",
    "DeclaresParams",
    "Expedite",
    "FatalError",
    "FieldError",
    "FieldErrorKind",
    "FieldPath",
    "Fingerprinted",
    "FullStage",
    "HoldsSecrets",
    "ItemError",
    "ItemResult",
    "ItemState",
    "ItemStatus",
    "Journal",
    "JournalError",
    "JournalIOError",
    "Outcome",
    "OutcomeKind",
    "PartialStage",
    "Plan",
    "PlanError",
    "PlansResources",
    "RateLimited",
    "RenewReason",
    "Request",
    "ResourceError",
    "ResourceLost",
    "Response",
    "ResponseMeta",
    "ResultStream",
    "Rule",
    "RunStopped",
    "Runner",
    "RunnerState",
    "Scratch",
    "Secrets",
    "SharedResource",
    "Shed",
    "Stage",
    "StageContext",
    "StageKind",
    "StageScoped",
    "StagedRetryError",
    "StopRun",
    "Strategy",
    "SubmitsBatchJobs",
    "SystemClock",
    "TransientError",
    "Usage",
    "UsesResources",
    "ValidationFailed",
    "Validator",
    "WorkItem",
    "builtin_kinds",
    "json_pointer",
    "parse_settings",
    "retry_after",
    "settable_keys",
    "setting",
    "stage_params",
    "validators",
]

# Each public name and the module that defines it (``validators`` is the submodule itself).
_MODULES = {
    "Admits": "._strategy",
    "AsyncValidator": "._stages",
    "Attempt": "._results",
    "AttemptError": "._outcomes",
    "Backoff": "._plan",
    "BatchEntry": "._batch_jobs",
    "BatchJobLost": "._batch_jobs",
    "BatchJobState": "._batch_jobs",
    "BatchMode": "._batching",
    "BatchResult": "._results",
    "BatchStats": "._batching",
    "Clock": "._clock",
    "DeclaresParams": "._strategy",
    "Expedite": "._plan",
    "FatalError": "._outcomes",
    "FieldError": "._outcomes",
    "FieldErrorKind": "._outcomes",
    "FieldPath": "._outcomes",
    "Fingerprinted": "._resume",
    "FullStage": "._stages",
    "HoldsSecrets": "._redact",
    "ItemError": "._stop",
    "ItemResult": "._results",
    "ItemState": "._state",
    "ItemStatus": "._results",
    "Journal": "._journal",
    "JournalError": "._journal",
    "JournalIOError": "._journal",
    "Outcome": "._outcomes",
    "OutcomeKind": "._outcomes",
    "PartialStage": "._stages",
    "Plan": "._plan",
    "PlanError": "._outcomes",
    "PlansResources": "._strategy",
    "RateLimited": "._outcomes",
    "RenewReason": "._resources",
    "Request": "._strategy",
    "ResourceError": "._stop",
    "ResourceLost": "._outcomes",
    "Response": "._strategy",
    "ResponseMeta": "._results",
    "ResultStream": "._runner",
    "Rule": "._outcomes",
    "RunStopped": "._stop",
    "Runner": "._runner",
    "RunnerState": "._runner",
    "Scratch": "._state",
    "Secrets": "._redact",
    "SharedResource": "._resources",
    "StageScoped": "._resources",
    "Shed": "._outcomes",
    "Stage": "._plan",
    "StageContext": "._strategy",
    "StageKind": "._stages",
    "StagedRetryError": "._outcomes",
    "StopRun": "._outcomes",
    "Strategy": "._strategy",
    "SubmitsBatchJobs": "._batch_jobs",
    "SystemClock": "._clock",
    "TransientError": "._outcomes",
    "Usage": "._results",
    "UsesResources": "._strategy",
    "ValidationFailed": "._outcomes",
    "Validator": "._stages",
    "WorkItem": "._results",
    "builtin_kinds": "._stages",
    "json_pointer": "._outcomes",
    "parse_settings": "._settings",
    "retry_after": "._http",
    "settable_keys": "._settings",
    "setting": "._settings",
    "stage_params": "._settings",
    "validators": ".validators",
}


def __getattr__(name: str) -> _typing.Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    loaded = _importlib.import_module(module, __name__)
    value = loaded if module == f".{name}" else getattr(loaded, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
