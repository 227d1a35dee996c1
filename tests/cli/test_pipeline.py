"""Reading a good pipeline: typed sections, defaults, relative paths, overrides, the template."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from stagedretry import PlanError
from stagedretry.cli._app import demo_pipeline_path
from stagedretry.cli.pipeline import (
    MissingField,
    Template,
    load_pipeline,
    parse_override,
    split_key,
)
from strategies.backend import CacheClose
from strategies.gemini.emulator import EmulatorSection, ExpiryStyle, FaultKind
from strategies.sim import SimModel, SimSection

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
    assert pipeline.backend.kind == "emulator"
    section = pipeline.backend.section
    assert isinstance(section, EmulatorSection)
    assert [f.kind for f in section.emulator.faults] == [
        FaultKind.RATE_LIMIT,
        FaultKind.UNAVAILABLE,
        FaultKind.INTERNAL,
    ]
    assert section.emulator.expiry_style is None  # the emulator's own default
    assert pipeline.cache is not None
    assert pipeline.cache.options.on_close is CacheClose.DELETE
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
    assert pipeline.backend.kind == "emulator"
    assert pipeline.output.path == folder / "in.out.jsonl"
    assert pipeline.journal.path == folder / "in.out.journal.sqlite"
    assert pipeline.run.concurrency == 16
    assert pipeline.cache is None
    # No [prices] table: the model's price comes from genai-prices' data.
    assert pipeline.prices == {}
    assert pipeline.priced is not None
    assert pipeline.priced.sources["input"].startswith("genai-prices ")


def test_the_fingerprint_follows_what_decides_results(make_job: Callable[..., Job]) -> None:
    job = make_job()
    base = load_pipeline(job.pipeline)
    same = [
        ("run.concurrency", 2),
        ("backend.sim.latency", 0.5),  # a delay, never a different answer
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
    assert isinstance(pipeline.backend.section, SimSection)
    assert pipeline.backend.section.sim.latency == 0.01


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


MODEL_V1 = """
import sys

from pydantic import BaseModel

SEEN_PATH = list(sys.path)


class Card(BaseModel):
    title: str
"""


def _with_model(job: Job, source: str) -> None:
    (job.folder / "card_model.py").write_text(source, "utf-8")
    text = job.pipeline.read_text("utf-8")
    if "card_model:Card" not in text:
        text = text.replace(
            '[output]\npath = "out/results.jsonl"',
            '[output]\npath = "out/results.jsonl"\nmodel = "card_model:Card"',
        )
        job.pipeline.write_text(text, "utf-8")


def test_a_model_beside_the_pipeline_is_imported_without_touching_sys_path(
    make_job: Callable[..., Job],
) -> None:
    job = make_job(items=2)
    _with_model(job, MODEL_V1)
    before = list(sys.path)
    pipeline = load_pipeline(job.pipeline)
    assert sys.path == before
    model = pipeline.output.model_class
    assert model is not None
    assert model.__name__ == "Card"
    assert str(job.folder) not in sys.modules[model.__module__].SEEN_PATH
    # Another pipeline's card_model.py is its own module, not the first one's.
    other = make_job(items=2)
    _with_model(other, MODEL_V1.replace("title: str", "title: str\n    year: int"))
    second = load_pipeline(other.pipeline).output.model_class
    assert second is not None
    assert set(second.model_fields) == {"title", "year"}
    assert set(model.model_fields) == {"title"}


def test_editing_the_output_model_changes_the_fingerprint(make_job: Callable[..., Job]) -> None:
    job = make_job(items=2)
    _with_model(job, MODEL_V1)
    first = load_pipeline(job.pipeline)
    assert load_pipeline(job.pipeline).fingerprint == first.fingerprint
    _with_model(
        job,
        MODEL_V1.replace("import BaseModel", "import BaseModel, Field").replace(
            "title: str", "title: str = Field(max_length=40)"
        ),
    )
    edited = load_pipeline(job.pipeline)
    assert edited.output.model_class is not None
    assert edited.output.model_class.model_json_schema()["properties"]["title"]["maxLength"] == 40
    assert edited.fingerprint != first.fingerprint


def test_editing_the_schema_file_changes_the_fingerprint(make_job: Callable[..., Job]) -> None:
    job = make_job(items=2)
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    (job.folder / "s.json").write_text(json.dumps(schema), "utf-8")
    overrides = [("output.schema", str(job.folder / "s.json"))]
    first = load_pipeline(job.pipeline, overrides=overrides)
    schema["properties"]["title"]["maxLength"] = 40  # type: ignore[index]
    (job.folder / "s.json").write_text(json.dumps(schema), "utf-8")
    assert load_pipeline(job.pipeline, overrides=overrides).fingerprint != first.fingerprint


def test_the_sim_table_is_read_into_the_sim_model_s_knobs(make_job: Callable[..., Job]) -> None:
    job = make_job(sim="seed = 4\ninvalid_rate = 0.5\nretry_after = 2\nlatency = 0.25")
    section = load_pipeline(job.pipeline).backend.section
    assert isinstance(section, SimSection)
    sim = section.sim
    assert (sim.seed, sim.invalid_rate, sim.retry_after, sim.latency) == (4, 0.5, 2.0, 0.25)
    assert sim.temperature_slope == SimModel().temperature_slope  # the model's own default
    with pytest.raises(PlanError, match=r"backend\.sim\.fields: unknown key \(known: seed, "):
        load_pipeline(job.pipeline, overrides=[("backend.sim.fields", "x")])
    with pytest.raises(
        PlanError,
        match=r"backend\.sim\.seed: expected a whole number of at least 0, got the number",
    ):
        load_pipeline(job.pipeline, overrides=[("backend.sim.seed", 1.5)])


def test_emulator_settings_are_the_emulator_s_own_enums(make_job: Callable[..., Job]) -> None:
    job = make_job(sim="")
    job.pipeline.write_text(
        job.pipeline.read_text("utf-8").replace(
            'kind = "sim"\n\n[backend.sim]\n',
            'kind = "emulator"\n\n[backend.emulator]\nexpiry_style = "vertex"\n'
            '[[backend.emulator.faults]]\nkind = "hang"\nat = [1]\n',
        ),
        "utf-8",
    )
    section = load_pipeline(job.pipeline).backend.section
    assert isinstance(section, EmulatorSection)
    emulator = section.emulator
    assert emulator.expiry_style is ExpiryStyle.VERTEX
    assert [f.kind for f in emulator.faults] == [FaultKind.HANG]
    with pytest.raises(
        PlanError,
        match=r"backend\.emulator\.faults\[0\]\.kind: expected one of rate_limit, internal, .*, "
        r"got the string 'explode'",
    ):
        load_pipeline(job.pipeline, overrides=[("backend.emulator.faults[0].kind", "explode")])
    with pytest.raises(
        PlanError, match=r"backend\.emulator\.expiry_style: expected one of gemini, vertex"
    ):
        load_pipeline(job.pipeline, overrides=[("backend.emulator.expiry_style", "azure")])


@pytest.mark.parametrize("init", [True, False], ids=["package", "namespace-package"])
def test_a_model_in_a_folder_beside_the_pipeline(make_job: Callable[..., Job], init: bool) -> None:
    job = make_job(items=2)
    folder = job.folder / "models"
    folder.mkdir()
    if init:
        (folder / "__init__.py").write_text("", "utf-8")
    (folder / "base.py").write_text(
        "from pydantic import BaseModel\n\nclass Base(BaseModel):\n    title: str\n", "utf-8"
    )
    (folder / "card.py").write_text(
        "from .base import Base\n\nclass Card(Base):\n    year: int\n", "utf-8"
    )
    pipeline = load_pipeline(job.pipeline, overrides=[("output.model", "models.card:Card")])
    model = pipeline.output.model_class
    assert model is not None
    assert set(model.model_fields) == {"title", "year"}


def test_a_sim_pipeline_keeps_the_fingerprint_of_earlier_versions(
    make_job: Callable[..., Job],
) -> None:
    """The value stagedretry 0.1.0 computed for this file: existing journals must still resume.

    (Measured by loading the same file with 0.1.0's pipeline reader.)
    """
    job = make_job(items=3)
    assert load_pipeline(job.pipeline).fingerprint == "db9fe35f8dcf0bd6"
