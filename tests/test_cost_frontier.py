"""``benchmarks/cost_frontier.py`` still builds its four modes, and its last line is right.

The benchmark itself (300 items, minutes) is not part of the suite; this checks that
each mode's pipeline is one the command line accepts, with what the mode promises,
and runs the two quick synchronous ones through it on a few items.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from stagedretry.cli.pipeline import RunMode, load_pipeline

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "cost_frontier", ROOT / "benchmarks" / "cost_frontier.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cost_frontier", module)
    spec.loader.exec_module(module)
    return module


frontier = _load()


def _built(tmp_path: Path, mode: str) -> Any:
    path = frontier.build(tmp_path / "m", mode, items=10, shed_rate=0.1, flex_latency=0.0)
    assert len((tmp_path / "m" / "books.jsonl").read_text("utf-8").splitlines()) == 10
    return load_pipeline(path)


def test_the_standard_mode_is_the_demo_as_it_is(tmp_path: Path) -> None:
    pipeline = _built(tmp_path, "standard+cache+partial")
    assert [s.name for s in pipeline.plan.stages] == [
        "full_t0",
        "partial_t0",
        "full_t25",
        "partial_t25",
    ]
    assert pipeline.cache is not None
    assert pipeline.cache.options.enabled
    assert pipeline.run.mode is RunMode.SYNC


def test_the_flex_mode_puts_each_stage_on_flex_with_a_standard_twin(tmp_path: Path) -> None:
    plan = _built(tmp_path, "flex->standard").plan
    flex = [s for s in plan.stages if s.params.get("service_tier") == "flex"]
    standard = [s for s in plan.stages if "service_tier" not in s.params]
    assert len(flex) == len(standard) == 4
    for stage, twin in zip(flex, standard, strict=True):
        assert stage.name.removesuffix("_flex") == twin.name.removesuffix("_std")
        assert (stage.on_shed, stage.on_give_up) == (twin.name, twin.name)
        assert stage.max_attempts is not None
        # Both lead where the demo's stage led: on to the next Flex stage.
        assert stage.on_invalid == twin.on_invalid
        assert {k: v for k, v in stage.params.items() if k != "service_tier"} == twin.params


def test_the_batch_mode_runs_the_demo_in_batch_jobs(tmp_path: Path) -> None:
    pipeline = _built(tmp_path, "batch")
    assert pipeline.run.mode is RunMode.BATCH
    assert pipeline.backend.section.emulator.implicit_caching is True
    assert len(pipeline.plan.stages) == 4


def test_the_naive_mode_resends_the_full_prompt_without_a_cache(tmp_path: Path) -> None:
    pipeline = _built(tmp_path, "naive")
    [stage] = pipeline.plan.stages
    assert (stage.kind, stage.params, stage.on_invalid) == ("full", {"temperature": 0.0}, "full_t0")
    assert pipeline.plan.max_prompts == 8
    # Its instructions go inline, in full, with every request.
    assert pipeline.cache is not None
    assert not pipeline.cache.options.enabled


def _row(mode: str, successes: int, usd: float) -> dict[str, Any]:
    return {"mode": mode, "successes": successes, "usd": usd}


@pytest.mark.parametrize(
    ("rows", "line"),
    [
        (
            [_row("a", 300, 0.08), _row("b", 300, 0.05), _row("naive", 229, 0.80)],
            "cheapest=b saving=0.938 successes=300 naive_successes=229",
        ),
        # A cheaper mode with fewer successes than naive does not count.
        (
            [_row("a", 300, 0.09), _row("b", 200, 0.01), _row("naive", 229, 0.80)],
            "cheapest=a saving=0.887 successes=300 naive_successes=229",
        ),
    ],
)
def test_the_last_line_names_the_cheapest_mode_with_naives_successes(
    rows: list[dict[str, Any]], line: str
) -> None:
    assert frontier.last_line(rows) == line


def test_the_quick_modes_run_through_the_command_line(tmp_path: Path) -> None:
    lines: list[str] = []
    frontier.main(
        ["--items", "4", "--modes", "flex->standard", "--flex-latency", "0"], lines.append
    )
    assert [line.split()[0] for line in lines[1:3]] == ["mode", "flex->standard"]
    assert lines[3].split()[0] == "naive"
    assert lines[-1].startswith("cheapest=")
    assert lines[-1].endswith(" naive_successes=" + lines[3].split()[1])
