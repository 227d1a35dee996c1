"""An honest ``plan check``: bad records counted per reason, exit 1 unless accepted; bare plans.

``plan show`` and ``plan check`` take a pipeline file or a bare plan file (what
``Plan.load`` reads: the plan at the top level or alone under ``[plan]``), in
TOML or YAML.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import yaml
from hypothesis import given
from hypothesis import strategies as st

from stagedretry import Plan
from stagedretry.cli._bad_records import bad_reasons
from stagedretry.cli._exit import ExitCode
from stagedretry.cli._input import InputRecord

from .conftest import Invocation, Job, records, write_jsonl

DOCS = Path(__file__).resolve().parents[2] / "docs"
_GROUP = re.compile(r"^  \d+ records?: ", re.MULTILINE)


def tutorial_plan() -> str:
    """The tutorial's own ``plan.toml``, as the page shows it."""
    page = (DOCS / "tutorial.md").read_text("utf-8")
    match = re.search(r'```toml title="plan\.toml"\n(.*?)```', page, re.DOTALL)
    assert match is not None
    return match.group(1)


def test_the_issue_example_a_field_missing_from_every_record_exits_1(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    # The template reads {title} and {author}; no record has an author.
    job = make_job(rows=[{"id": f"item-{n}", "title": f"T{n}"} for n in range(40)])
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == ExitCode.SOME_FAILED == 1
    assert "ok:" not in checked.out
    assert (
        "40 records: the record has no field 'author' used by the prompt template "
        "(lines 1, 2, 3, 4, 5 and 35 more)"
    ) in checked.out
    assert "40 of 40 records would fail with input_error" in checked.err
    assert "--max-bad-records 40" in checked.err
    assert checked.err.count("\n") == 1  # one sentence
    accepted = cli("plan", "check", str(job.pipeline), "--max-bad-records", "40")
    assert accepted.code == 0
    assert accepted.out.startswith("ok: ")
    assert "(accepted: --max-bad-records 40)" in accepted.out


def test_reasons_are_grouped_most_frequent_first_and_cut_after_ten(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    rows: list[dict[str, object] | str] = [*records(3)]
    rows += [{"id": f"no-author-{n}", "title": "T"} for n in range(5)]
    rows += ["[1]", "[2]"]  # two lists: one reason
    # Not JSON, each failing at another character: eleven reasons of one record each.
    rows += ['{"id": "' + "x" * (n + 1) + '"} trailing' for n in range(11)]
    job = make_job(rows=rows)
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == 1
    shown = [line.strip() for line in checked.out.splitlines() if _GROUP.match(line)]
    assert shown[0].startswith("5 records: the record has no field 'author'")
    assert shown[1] == "2 records: expected a JSON object, got a list (lines 9, 10)"
    assert len(shown) == 10
    # 13 reasons: 11 different JSON errors (their positions differ), so 3 are left out.
    assert "... and 3 more reasons (3 records)" in checked.out
    assert "18 of 21 records would fail with input_error" in checked.err


def test_a_clean_input_says_ok_and_exits_0(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=5)
    checked = cli("plan", "check", str(job.pipeline), "--max-bad-records", "3")
    assert checked.code == 0
    assert checked.out.startswith("ok: pipeline.toml")
    assert not _GROUP.search(checked.out)
    assert "will fail" not in checked.out


def test_a_negative_allowance_is_a_usage_error(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=1)
    assert cli("plan", "check", str(job.pipeline), "--max-bad-records", "-1").code == 2


def test_plan_check_help_documents_its_exit_codes(cli: Callable[..., Invocation]) -> None:
    helped = cli("plan", "check", "--help", width=200)
    assert helped.code == 0
    for code in (0, 1, 2, 4):
        assert re.search(rf"^\s+{code}\s+\S", helped.out, re.MULTILINE), code
    assert "--max-bad-records N" in helped.out
    page = (DOCS / "reference/exit-codes.md").read_text("utf-8")
    assert "`plan check`" in page
    assert "--max-bad-records" in page


@given(
    st.lists(
        st.one_of(st.none(), st.sampled_from(["no id", "not JSON", "a list", "no author"])),
        max_size=40,
    )
)
def test_grouping_keeps_every_bad_line_once_under_its_reason(errors: list[str | None]) -> None:
    input_records = [
        InputRecord(line, f"id-{line}", "d", error=error)
        for line, error in enumerate(errors, start=1)
    ]
    groups = bad_reasons(input_records)
    assert sum(g.count for g in groups) == sum(e is not None for e in errors)
    assert len({g.reason for g in groups}) == len(groups)
    for group in groups:
        assert list(group.lines) == [n for n, e in enumerate(errors, 1) if e == group.reason]
    counts = [g.count for g in groups]
    assert counts == sorted(counts, reverse=True)


# -- bare plan files ----------------------------------------------------------------------------


def test_plan_show_reads_the_tutorials_own_plan(
    tmp_path: Path, cli: Callable[..., Invocation]
) -> None:
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(tutorial_plan(), "utf-8")
    shown = cli("plan", "show", str(plan_file), width=100)
    assert shown.code == 0, shown.err
    assert "unknown key" not in shown.err
    rows = [line.split() for line in shown.out.splitlines()]
    assert ["full_t0", "full", "temperature=0.0", "partial_t0", "retry"] in rows
    assert ["partial_t25", "partial", "temperature=0.25", "exhausted", "retry"] in rows
    assert "budget: max_prompts 5," in shown.out
    as_json = cli("plan", "show", str(plan_file), "--format", "json")
    assert Plan.from_dict(json.loads(as_json.out)) == Plan.load(plan_file) == Plan.ladder()
    mermaid = cli("plan", "show", str(plan_file), "--format", "mermaid")
    assert mermaid.out == Plan.ladder().to_mermaid()


def test_plan_check_reads_the_tutorials_own_plan(
    tmp_path: Path, cli: Callable[..., Invocation]
) -> None:
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(tutorial_plan(), "utf-8")
    checked = cli("plan", "check", str(plan_file))
    assert checked.code == 0, checked.err
    assert checked.out.startswith("ok: plan.toml: a bare plan, 4 stages, max 5 prompts per item")


def test_bare_plans_in_yaml_and_under_a_plan_table(
    tmp_path: Path, cli: Callable[..., Invocation]
) -> None:
    ladder = Plan.ladder().to_dict()
    files = {
        "top.yaml": yaml.safe_dump(ladder),
        "nested.yml": yaml.safe_dump({"plan": ladder}),
        "nested.toml": "[plan]\n"
        + tutorial_plan()
        .replace("[[stages]]", "[[plan.stages]]")
        .replace("max_prompts", "max_prompts", 1),
    }
    for name, text in files.items():
        path = tmp_path / name
        path.write_text(text, "utf-8")
        assert Plan.load(path) == Plan.ladder(), name
        as_json = cli("plan", "show", str(path), "--format", "json")
        assert as_json.code == 0, (name, as_json.err)
        assert Plan.from_dict(as_json.json()) == Plan.ladder(), name
        assert cli("plan", "check", str(path)).code == 0, name


def test_set_applies_to_a_bare_plan(tmp_path: Path, cli: Callable[..., Invocation]) -> None:
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text(tutorial_plan(), "utf-8")
    for key in ("max_prompts", "plan.max_prompts"):
        shown = cli("plan", "show", str(plan_file), "--format", "json", "--set", f"{key}=3")
        assert shown.code == 0, shown.err
        assert shown.json()["max_prompts"] == 3
    bad = cli("plan", "check", str(plan_file), "--set", "max_prompts=0")
    assert bad.code == 2
    assert "plan.toml: plan.max_prompts" in bad.err


def test_a_bare_plans_mistake_names_the_file_and_the_key(
    tmp_path: Path, cli: Callable[..., Invocation]
) -> None:
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(
        yaml.safe_dump({"max_prompts": 2, "stages": [{"name": "a", "kind": "nope"}]})
    )
    checked = cli("plan", "check", str(plan_file))
    assert checked.code == 2
    assert "plan.yaml: plan.stages[0].kind: unknown stage kind 'nope'" in checked.err


def test_a_plan_at_the_top_of_a_pipeline_file_is_named(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=1)
    text = (
        job.pipeline.read_text("utf-8")
        .replace("[plan]\n", "")
        .replace("[[plan.stages]]", "[[stages]]")
    )
    job.pipeline.write_text(text, "utf-8")
    for args in (("plan", "check"), ("plan", "show")):
        checked = cli(*args, str(job.pipeline))
        assert checked.code == 2
        assert (
            "pipeline.toml: max_prompts: a plan's key at the top level of a pipeline file: "
            "put the plan's keys under [plan]"
        ) in checked.err


def test_a_pipeline_file_is_still_checked_as_a_pipeline(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2)
    write_jsonl(job.input, records(2))
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == 0
    assert "backend sim" in checked.out
