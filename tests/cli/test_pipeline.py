"""Reading a good pipeline: typed sections, defaults, relative paths, overrides, the template."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stagedretry import PlanError
from stagedretry._pipeline import (
    BackendKind,
    CacheClose,
    MissingField,
    Template,
    load_pipeline,
    parse_override,
    split_key,
)
from stagedretry.cli._app import demo_pipeline_path

from .conftest import Job


def test_the_demo_pipeline_parses_into_typed_sections() -> None:
    with demo_pipeline_path() as path:
        pipeline = load_pipeline(path)
    assert pipeline.name == "books-demo"
    assert [s.name for s in pipeline.plan.stages] == [
        "full_t0",
        "partial_t0",
        "full_t25",
        "partial_t25",
    ]
    assert pipeline.backend.kind is BackendKind.EMULATOR
    assert [f.kind for f in pipeline.backend.emulator.faults] == [
        "rate_limit",
        "unavailable",
        "internal",
    ]
    assert pipeline.cache is not None
    assert pipeline.cache.on_close is CacheClose.DELETE
    assert pipeline.cache.system_instruction.startswith("# Cataloguing instructions")
    assert pipeline.input.path.name == "books.jsonl"
    assert pipeline.input.path.is_absolute()
    assert pipeline.output.model_class is not None
    assert pipeline.output.model_class.__name__ == "Book"
    assert pipeline.price is not None
    assert pipeline.price.cached_input == pytest.approx(0.03)
    assert pipeline.input.template.fields == (
        "id", "title_statement", "creator", "imprint", "extent", "language_note", "notes",
    )  # fmt: skip


def test_defaults_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "jobs"
    folder.mkdir()
    (folder / "in.jsonl").write_text('{"id": 1, "t": "x"}\n', "utf-8")
    (folder / "p.toml").write_text(
        '[plan]\nstages = [{ name = "only" }]\n[input]\npath = "in.jsonl"\ntemplate = "{t}"\n'
        '[output]\nschema = "s.json"\n',
        "utf-8",
    )
    (folder / "s.json").write_text('{"type": "object"}', "utf-8")
    pipeline = load_pipeline(folder / "p.toml", cwd=tmp_path)
    assert pipeline.name == "p"
    assert pipeline.backend.kind is BackendKind.EMULATOR
    assert pipeline.output.path == folder / "in.out.jsonl"
    assert pipeline.journal.path == folder / "in.out.journal.sqlite"
    assert pipeline.run.concurrency == 16
    assert pipeline.cache is None
    assert pipeline.price is None


def test_the_fingerprint_follows_what_decides_results(make_job: Callable[..., Job]) -> None:
    job = make_job()
    base = load_pipeline(job.pipeline)
    same = [
        ("run.concurrency", 2),
        ("output.path", "x.jsonl"),
        ("prices.m", {"input": 1, "cached_input": 1, "output": 1}),
    ]
    for key, value in same:
        assert (
            load_pipeline(job.pipeline, overrides=[(key, value)]).fingerprint == base.fingerprint
        ), key
    changed = [
        ("plan.max_prompts", 4),
        ("backend.model", "gemini-2.5-pro"),
        ("backend.sim.seed", 9),
        ("input.template", "Only {title}."),
        ("input.id_field", "title"),
    ]
    for key, value in changed:
        assert (
            load_pipeline(job.pipeline, overrides=[(key, value)]).fingerprint != base.fingerprint
        ), key


def test_overrides_reach_lists_and_create_tables(make_job: Callable[..., Job]) -> None:
    job = make_job()
    pipeline = load_pipeline(
        job.pipeline,
        overrides=[
            parse_override("plan.stages[0].params.temperature=0.5"),
            parse_override('prices."gemini-2.5-flash".input=1.25'),
            parse_override('prices."gemini-2.5-flash".cached_input=0.1'),
            parse_override('prices."gemini-2.5-flash".output=5'),
            parse_override("backend.sim.latency=0.01"),
        ],
    )
    assert pipeline.plan.stages[0].params["temperature"] == 0.5
    assert pipeline.price is not None
    assert pipeline.price.input == 1.25
    assert pipeline.backend.sim.latency == 0.01


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("run.concurrency=8", ("run.concurrency", 8)),
        ("backend.model=gemini-2.5-pro", ("backend.model", "gemini-2.5-pro")),
        ('input.template="Title: {title}"', ("input.template", "Title: {title}")),
        ("cache.enabled=false", ("cache.enabled", False)),
        ("plan.stages[1].params.temperature = 0.3", ("plan.stages[1].params.temperature", 0.3)),
        ("run.deadline=1.5e2", ("run.deadline", 150.0)),
    ],
)
def test_override_values_are_toml_or_plain_words(text: str, expected: tuple[str, object]) -> None:
    assert parse_override(text) == expected


def test_keys_split_on_dots_and_indices_with_quoted_segments() -> None:
    assert split_key('prices."gemini-2.5-flash".input') == ("prices", "gemini-2.5-flash", "input")
    assert split_key("plan.stages[12].name") == ("plan", "stages", 12, "name")
    for bad in ("[0]", "a..b", "a.", "a[x]"):
        with pytest.raises(PlanError):
            split_key(bad)


def test_the_template_reads_fields_and_nested_fields_only() -> None:
    template = Template.parse("{{literal}} {title} by {meta.author}: {tags}")
    assert template.fields == ("title", "meta.author", "tags")
    record = {"title": "T", "meta": {"author": "A"}, "tags": ["x", "y"]}
    assert template.render(record) == '{literal} T by A: ["x", "y"]'
    with pytest.raises(MissingField, match=r"'meta\.author'"):
        template.render({"title": "T", "meta": {}, "tags": []})
    for bad in ("{0}", "{a!r}", "{a:>10}", "{ }", "{a[0]}"):
        with pytest.raises(PlanError, match="is not a field placeholder"):
            Template.parse(bad)
    # Only mappings are walked: a dunder is just a key the record does not have.
    with pytest.raises(MissingField):
        Template.parse("{title.__class__}").render(record)
