"""Where a report's numbers come from: the journal, found from an output file or given.

The output file says which items the job holds now (one line each); the journal
holds their attempts, the runs and, in each finished run's statistics, what the
report needs to draw the plan and price it (:func:`run_record`).  A run killed
before its end recorded none: the plan and the prices then come from
``--pipeline``, or the stages are drawn as the attempts show them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from ..._journal import Journal, JournalEntry, RunRecord
from ..._outcomes import PlanError, StagedRetryError
from ..._plan import Plan
from ..._results import Attempt
from ..pipeline import Pipeline, Price
from ..pipeline._prices import PARTS, TIERS

RECORD_KEY: Final = "report"
"""The key of a run's statistics that holds :func:`run_record`."""
SQLITE_HEADER: Final = b"SQLite format 3\x00"
_JOURNAL_SUFFIX: Final = ".journal.sqlite"
_MAX_LINE: Final = 64 * 1024 * 1024
"""Bytes one output line may hold (the output of a big answer); a longer one is no output."""


class ReportError(StagedRetryError):
    """The report cannot be made from what was given: one sentence naming the file (exit 2)."""


def run_record(pipeline: Pipeline) -> dict[str, Any]:
    """What a run keeps in its statistics for a later report: the pipeline's name, backend,
    model, plan, price and output path, and the clock's two readings at the run's end (so the
    attempts' monotonic times can be placed on the wall clock)."""
    price = pipeline.price
    prices, stage_models = _stage_prices(pipeline)
    return {
        RECORD_KEY: {
            "prices": {model: dict(by_tier) for model, by_tier in prices.items()},
            "stage_models": stage_models,
            "pipeline": pipeline.name,
            "backend": pipeline.backend.kind,
            "model": pipeline.backend.model,
            "plan": pipeline.plan.to_dict(),
            "price": attrs.asdict(price) if price is not None else None,
            "output": str(pipeline.output.path),
            "clock": {"wall": time.time(), "monotonic": time.monotonic()},
        }
    }


def _stage_prices(
    pipeline: Pipeline,
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, str]]:
    """Each model's price on each tier (plain data; a model with no price is left out), and
    each stage's model."""
    prices: dict[str, dict[str, dict[str, float]]] = {}
    for model in pipeline.models:
        choice = pipeline.price_for(model)
        if choice is not None:
            prices[model] = {
                tier: {part: getattr(choice.tier(tier), part) or 0.0 for part in PARTS}
                for tier in TIERS
            }
    return prices, {s.name: pipeline.stage_model(s.name) for s in pipeline.plan.stages}


@attrs.frozen
class Recorded:
    """What the runs recorded (or ``--pipeline`` says) about the job; ``None``: unknown."""

    pipeline: str | None = None
    backend: str | None = None
    model: str | None = None
    plan: Plan | None = None
    price: Price | None = None
    output: Path | None = None
    prices: Mapping[tuple[str, str], Price] = attrs.field(factory=dict)
    """(model, tier) -> price; empty in records made before each stage's model was priced."""
    stage_models: Mapping[str, str] = attrs.field(factory=dict)
    """Each stage's model (a stage missing here is on :attr:`model`)."""

    def price_of(self, attempt: Attempt) -> Price | None:
        """The price *attempt* was billed at: its stage's model on its billed tier (``None``:
        unknown; the backend's price for a record that holds no table)."""
        if not self.prices:
            return self.price
        model = self.stage_models.get(attempt.stage, self.model or "")
        tier = (attempt.meta.service_tier if attempt.meta is not None else None) or "standard"
        return self.prices.get((model, tier), self.prices.get((model, "standard")))


@attrs.frozen
class Source:
    """The results to report on, with the runs that made them and what they recorded.

    *anchors* maps a run's number to ``(wall, monotonic)``: two readings of the clock
    taken together, for placing that run's attempt times on the wall clock.
    """

    journal: Path
    output: Path | None
    fingerprint: str
    entries: tuple[JournalEntry, ...]
    runs: tuple[RunRecord, ...]
    recorded: Recorded
    anchors: Mapping[int, tuple[float, float]]
    notes: tuple[str, ...] = ()


def is_sqlite(path: Path) -> bool:
    """Whether *path* starts like an SQLite database (``OSError`` if it cannot be read)."""
    with path.open("rb") as file:
        return file.read(len(SQLITE_HEADER)) == SQLITE_HEADER


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise ReportError(f"{what} {str(path)!r} does not exist")
    if path.is_dir():
        raise ReportError(
            f"{what} {str(path)!r} is a folder: give an output file (.jsonl) or a journal"
        )


def output_ids(path: Path) -> list[str]:
    """The ids of an output file's lines, in order; :class:`ReportError` naming the line that
    is no output line, or the file when it holds none."""
    ids: list[str] = []
    with path.open("rb") as file:
        for number, raw in enumerate(_lines(file, path), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                row = None
            if not (
                isinstance(row, dict)
                and isinstance(row.get("id"), str)
                and isinstance(row.get("status"), str)
            ):
                raise ReportError(
                    f"{str(path)!r} line {number} is not a line of a stagedretry output "
                    "(a JSON object with an id and a status): give the output file of a run, "
                    "or its journal"
                )
            ids.append(row["id"])
    if not ids:
        raise ReportError(f"the output {str(path)!r} holds no results: there is nothing to report")
    return ids


def _lines(file: Any, path: Path) -> Iterator[bytes]:
    while True:
        raw = file.readline(_MAX_LINE + 1)
        if not raw:
            return
        if len(raw) > _MAX_LINE:
            raise ReportError(f"{str(path)!r} holds a line longer than 64 MiB: it is no output")
        yield raw


def journal_beside(output: Path) -> Path:
    """The journal of *output*: the default ``<stem>.journal.sqlite`` beside it, else the one
    ``*journal*.sqlite`` file beside it; :class:`ReportError` when there is none."""
    default = output.with_name(output.stem + _JOURNAL_SUFFIX)
    if default.is_file():
        return default
    found = sorted(
        p for p in output.parent.glob("*journal*.sqlite") if p.is_file() and is_sqlite(p)
    )
    if len(found) == 1:
        return found[0]
    looked = f"no {default.name} nor other *journal*.sqlite" if not found else "several journals"
    raise ReportError(
        f"found {looked} beside the output {str(output)!r}: give the journal itself "
        "(the pipeline's journal.path), or --pipeline PIPELINE"
    )


def load_source(path: Path | None, pipeline: Pipeline | None = None) -> Source:
    """Read the results *path* (an output file or a journal) stands for, or *pipeline*'s.

    Raises :class:`ReportError` (a sentence naming the file) when the file is missing, a
    folder, empty, neither an output nor a journal, or holds no results;
    :class:`~stagedretry.JournalError` when the journal cannot be opened (another run holds it)
    or read, and ``OSError`` when a file cannot be read.
    """
    if path is None:
        if pipeline is None:
            raise ReportError("give an output file or a journal, or --pipeline PIPELINE")
        journal = pipeline.journal.path
        _check_file(journal, "the journal")
        output = pipeline.output.path if pipeline.output.path.is_file() else None
        return _read(journal, output, output_ids(output) if output else None, pipeline)
    _check_file(path, "the file")
    if path.stat().st_size == 0:
        raise ReportError(f"{str(path)!r} is empty: there is nothing to report")
    if is_sqlite(path):
        return _read(path, None, None, pipeline)
    wanted = output_ids(path)
    journal = pipeline.journal.path if pipeline is not None else journal_beside(path)
    return _read(journal, path, wanted, pipeline)


def _read(
    path: Path, output: Path | None, wanted: Sequence[str] | None, pipeline: Pipeline | None
) -> Source:
    notes: list[str] = []
    with Journal(path) as journal:
        fingerprints = journal.fingerprints()
        if pipeline is not None:
            fingerprints = [pipeline.fingerprint]
        if not fingerprints:
            raise ReportError(f"the journal {str(path)!r} holds no results: nothing to report")
        chosen = fingerprints[0]
        entries: dict[str, JournalEntry] = {}
        runs: list[RunRecord] = []
        for fingerprint in fingerprints:
            journal.bind(fingerprint)
            found = [e for e in journal.entries() if wanted is None or e.result.id in wanted]
            if found or fingerprint == chosen:
                runs += journal.runs()
            for entry in found:
                entries.setdefault(entry.result.id, entry)
            if wanted is None or len(entries) == len(set(wanted)):
                break
    if not entries:
        if output is None:
            raise ReportError(f"the journal {str(path)!r} holds no results: nothing to report")
        raise ReportError(f"the journal {str(path)!r} holds none of the results of {str(output)!r}")
    if wanted is not None:
        missing = len(set(wanted)) - len(entries)
        if missing:
            notes.append(f"{missing} items of the output are not in the journal")
        ordered = [entries[i] for i in dict.fromkeys(wanted) if i in entries]
    else:
        ordered = list(entries.values())
    recorded = _recorded(runs) if pipeline is None else _from_pipeline(pipeline)
    if recorded.output is not None and output is None:
        output = recorded.output
    return Source(
        journal=path,
        output=output,
        fingerprint=chosen,
        entries=tuple(ordered),
        runs=tuple(sorted(runs, key=lambda r: r.id)),
        recorded=recorded,
        anchors=_anchors(runs),
        notes=tuple(notes),
    )


def _from_pipeline(pipeline: Pipeline) -> Recorded:
    prices, stage_models = _stage_prices(pipeline)
    return Recorded(
        pipeline=pipeline.name,
        backend=pipeline.backend.kind,
        model=pipeline.backend.model,
        plan=pipeline.plan,
        price=pipeline.price,
        output=pipeline.output.path,
        prices={
            (model, tier): _price(parts) or Price(input=0.0, cached_input=0.0, output=0.0)
            for model, by_tier in prices.items()
            for tier, parts in by_tier.items()
        },
        stage_models=stage_models,
    )


def _record(run: RunRecord) -> Mapping[str, Any] | None:
    data = run.stats.get(RECORD_KEY) if isinstance(run.stats, Mapping) else None
    return data if isinstance(data, Mapping) else None


def _recorded(runs: Sequence[RunRecord]) -> Recorded:
    """What the latest run that recorded anything says; damaged parts are left unknown."""
    for run in sorted(runs, key=lambda r: r.id, reverse=True):
        data = _record(run)
        if data is None:
            continue
        return Recorded(
            pipeline=_text(data.get("pipeline")),
            backend=_text(data.get("backend")),
            model=_text(data.get("model")),
            plan=_plan(data.get("plan")),
            price=_price(data.get("price")),
            output=Path(data["output"]) if isinstance(data.get("output"), str) else None,
            prices=_prices(data.get("prices")),
            stage_models=_names(data.get("stage_models")),
        )
    return Recorded()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _plan(data: object) -> Plan | None:
    if not isinstance(data, Mapping):
        return None
    stages = data.get("stages")
    kinds = set()
    if isinstance(stages, list):
        kinds = {s.get("kind", "full") for s in stages if isinstance(s, Mapping)}
    try:
        return Plan.from_dict(data, kinds=[k for k in kinds if isinstance(k, str)] or ["full"])
    except PlanError:
        return None


def _prices(data: object) -> dict[tuple[str, str], Price]:
    """A recorded ``prices`` table; a damaged one is left out whole (the backend's price is
    then used, as for an older record)."""
    if not isinstance(data, Mapping):
        return {}
    found: dict[tuple[str, str], Price] = {}
    for model, by_tier in data.items():
        if not isinstance(model, str) or not isinstance(by_tier, Mapping):
            return {}
        for tier, parts in by_tier.items():
            price = _price(parts)
            if not isinstance(tier, str) or price is None:
                return {}
            found[(model, tier)] = price
    return found


def _names(data: object) -> dict[str, str]:
    if not isinstance(data, Mapping):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _price(data: object) -> Price | None:
    if not isinstance(data, Mapping):
        return None
    values = {}
    for key in ("input", "cached_input", "output", "cache_storage"):
        value = data.get(key, 0.0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        if not (math.isfinite(value) and value >= 0):
            return None
        values[key] = float(value)
    return Price(
        input=values["input"],
        cached_input=values["cached_input"],
        output=values["output"],
        cache_storage=values["cache_storage"],
    )


def _anchors(runs: Sequence[RunRecord]) -> dict[int, tuple[float, float]]:
    anchors = {}
    for run in runs:
        clock = (_record(run) or {}).get("clock")
        if isinstance(clock, Mapping):
            wall, mono = clock.get("wall"), clock.get("monotonic")
            if all(isinstance(v, int | float) and math.isfinite(v) for v in (wall, mono)):
                anchors[run.id] = (float(wall), float(mono))  # type: ignore[arg-type]
    return anchors
