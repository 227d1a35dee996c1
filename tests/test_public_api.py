"""The public surface: pinned names, importable, typed, and light to import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
import typing
from pathlib import Path

import pytest

import stagedretry
import strategies

ROOT = Path(__file__).parent.parent

STAGEDRETRY = [
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
    "RateLimited",
    "RenewReason",
    "Request",
    "ResourceError",
    "ResourceLost",
    "Response",
    "ResponseMeta",
    "ResultStream",
    "Rule",
    "Runner",
    "RunStopped",
    "RunnerState",
    "Scratch",
    "Secrets",
    "Shed",
    "SharedResource",
    "Stage",
    "StageContext",
    "StageKind",
    "StageScoped",
    "StagedRetryError",
    "StopRun",
    "SubmitsBatchJobs",
    "Strategy",
    "SystemClock",
    "TransientError",
    "Usage",
    "UsesResources",
    "PlansResources",
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


def test_stagedretry_all_is_pinned() -> None:
    assert sorted(stagedretry.__all__) == sorted(STAGEDRETRY)
    assert len(set(stagedretry.__all__)) == len(stagedretry.__all__)


@pytest.mark.parametrize("name", STAGEDRETRY)
def test_every_name_is_importable(name: str) -> None:
    value = getattr(stagedretry, name)

    assert value is not None
    if typing.get_origin(value) is not None:
        return  # a type alias such as Rule or Validator
    # Defined in a private module (or the public submodule), not in the package root.
    module = getattr(value, "__module__", None) or value.__name__
    assert module.startswith("stagedretry.")


def test_nothing_public_is_left_out() -> None:
    public = {
        name
        for name, value in vars(stagedretry).items()
        if not name.startswith("_") and not isinstance(value, type(sys))
    }

    assert public <= set(stagedretry.__all__)


def test_validators_all_is_pinned() -> None:
    assert sorted(stagedretry.validators.__all__) == ["json_object", "json_schema", "pydantic"]
    for name in stagedretry.validators.__all__:
        assert callable(getattr(stagedretry.validators, name))


def test_strategies_exports_the_engine_types() -> None:
    assert sorted(strategies.__all__) == [
        "Request",
        "Response",
        "ResponseMeta",
        "SamplingParams",
        "StageContext",
        "Strategy",
        "Usage",
    ]
    for name in set(strategies.__all__) - {"SamplingParams"}:
        assert getattr(strategies, name) is getattr(stagedretry, name)


def test_exception_hierarchy() -> None:
    sr = stagedretry
    assert issubclass(sr.PlanError, sr.StagedRetryError)
    assert issubclass(sr.PlanError, ValueError)
    assert issubclass(sr.ResourceError, sr.RunStopped)
    assert issubclass(sr.ItemError, sr.RunStopped)
    assert issubclass(sr.RunStopped, sr.StagedRetryError)
    assert issubclass(sr.ValidationFailed, sr.StagedRetryError)
    assert issubclass(sr.JournalError, sr.StagedRetryError)
    assert issubclass(sr.JournalIOError, sr.JournalError)
    for error in (sr.TransientError, sr.RateLimited, sr.ResourceLost, sr.StopRun, sr.FatalError):
        assert issubclass(error, sr.AttemptError)
    assert issubclass(sr.AttemptError, sr.StagedRetryError)
    assert sr.RateLimited("429", retry_after=2.5).outcome() == sr.Outcome(
        sr.OutcomeKind.RATE_LIMITED, "429", retry_after=2.5
    )
    assert sr.ResourceLost(resource="cache").outcome().resource == "cache"
    assert sr.StopRun("key rejected").outcome() == sr.Outcome(
        sr.OutcomeKind.STOP_RUN, "key rejected"
    )
    assert not sr.OutcomeKind.STOP_RUN.spends_prompt
    assert sr.Shed("flex shed", retry_after=1.0).outcome() == sr.Outcome(
        sr.OutcomeKind.SHED, "flex shed", retry_after=1.0
    )


def test_outcome_kinds_are_closed() -> None:
    kinds = {k.value: k.spends_prompt for k in stagedretry.OutcomeKind}

    assert kinds == {
        "succeeded": True,
        "invalid": True,
        "transient": True,
        "rate_limited": False,
        "resource_lost": False,
        "fatal": True,
        "shed": False,
        "stop_run": False,
    }
    assert [s.value for s in stagedretry.ItemStatus] == [
        "succeeded",
        "failed",
        "exhausted",
        "cancelled",
    ]


@pytest.mark.parametrize("package", ["stagedretry", "strategies"])
def test_packages_are_typed(package: str) -> None:
    assert (ROOT / package / "py.typed").is_file()


def test_wheel_top_level_names() -> None:
    # `strategies` is a generic name: the wheel must ship exactly these two packages.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())

    assert config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"] == [
        "stagedretry",
        "strategies",
    ]


def test_import_is_light() -> None:
    script = textwrap.dedent(
        """
        import sys
        import stagedretry
        import stagedretry.validators
        import strategies
        import strategies.callable
        import strategies.sim
        heavy = ("hypothesis", "google.genai", "pydantic", "yaml", "strategies.gemini")
        print(sorted(m for m in sys.modules if m.startswith(heavy)))
        """
    )

    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )

    assert out.stdout.strip() == "[]"


def test_mypy_checks_the_typed_api_file() -> None:
    # tests/typing/api.py proves the documented types (Runner[Book] -> output: Book | None);
    # it only does so while mypy's configuration includes it.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())

    assert "tests/typing/api.py" in config["tool"]["mypy"]["files"]
    assert (ROOT / "tests" / "typing" / "api.py").is_file()
