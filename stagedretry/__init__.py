"""Run batches of LLM work items through declared, staged retries."""

from . import validators
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
    StagedRetryError,
    StopRun,
    TransientError,
    ValidationFailed,
    json_pointer,
)
from ._plan import Backoff, Plan, Stage
from ._redact import HoldsSecrets, Secrets
from ._resources import RenewReason, SharedResource
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
    DeclaresParams,
    Request,
    Response,
    StageContext,
    Strategy,
    UsesResources,
)

__all__ = [
    "AsyncValidator",
    "Attempt",
    "AttemptError",
    "Backoff",
    "BatchResult",
    "Clock",
    "DeclaresParams",
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
    "Stage",
    "StageContext",
    "StageKind",
    "StagedRetryError",
    "StopRun",
    "Strategy",
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
