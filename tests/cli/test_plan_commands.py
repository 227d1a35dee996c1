"""``plan show`` (table, Mermaid, JSON) and ``plan check``; ``--version`` and ``--help``."""

from __future__ import annotations

import json
from collections.abc import Callable

from stagedretry import Plan
from stagedretry.cli._app import demo_pipeline_path

from .conftest import Invocation, Job


def test_plan_show_prints_the_stages_and_their_targets(cli: Callable[..., Invocation]) -> None:
    with demo_pipeline_path() as path:
        shown = cli("plan", "show", str(path), width=80)
    assert shown.code == 0
    rows = [line.split() for line in shown.out.splitlines()]
    assert ["full_t0", "full", "temperature=0.0", "partial_t0", "retry"] in rows
    assert ["partial_t25", "partial", "temperature=0.25", "exhausted", "retry"] in rows
    assert "budget: max_prompts 8, max_rate_limit_waits 20, max_resource_lost 2" in shown.out


def test_plan_show_mermaid_is_the_plans_own_diagram(cli: Callable[..., Invocation]) -> None:
    with demo_pipeline_path() as path:
        shown = cli("plan", "show", str(path), "--format", "mermaid")
        as_json = cli("plan", "show", str(path), "--format", "json")
    plan = Plan.from_dict(json.loads(as_json.out))
    assert shown.out == plan.to_mermaid()
    assert shown.out.startswith("stateDiagram-v2\n    [*] --> full_t0\n")


def test_plan_show_names_limits_and_custom_targets(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job()
    text = job.pipeline.read_text("utf-8").replace(
        'name = "full_t0"\n',
        'name = "full_t0"\nmax_attempts = 3\ntimeout = 20\non = { transient = "full_t25" }\n',
    )
    job.pipeline.write_text(text, "utf-8")
    shown = cli("plan", "show", str(job.pipeline))
    line = next(line for line in shown.out.splitlines() if line.strip().startswith("full_t0"))
    assert line.split() == [
        "full_t0",
        "full",
        "temperature=0.0",
        "partial_t0",
        "full_t25",
        "3",
        "tries,",
        "20",
        "s",
    ]


def test_plan_check_says_ok_and_notes_what_run_will_need(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=7)
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == 0
    assert "ok: pipeline.toml: 4 stages, max 5 prompts per item; backend sim" in checked.out
    assert "7 items in input.jsonl" in checked.out
    assert "no price" not in checked.out  # genai-prices knows the model's price
    unknown = cli("plan", "check", str(job.pipeline), "--set", "backend.model=my-own-model")
    assert "no price for 'my-own-model' in [prices]" in unknown.out
    assert not job.journal.exists()  # checking opens nothing


def test_version_and_help(cli: Callable[..., Invocation]) -> None:
    assert "stagedretry, version" in cli("--version").out
    helped = cli("--help")
    for command in ("run", "demo", "plan", "caches"):
        assert command in helped.out
    assert "--set KEY=VALUE" in cli("run", "--help").out
