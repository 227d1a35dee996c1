"""docs/reference/pipeline.md lists every key the pipeline loader accepts, and no other.

The key set is derived here from what the loader itself reads: the plan parser's key lists,
:func:`stagedretry.settable_keys` of each settings class it parses (every registered
backend's section and stage params included) and its lists of keys read by hand.  A key
added to any of them and missing from the page fails here; so does a page that differs
from what ``stagedretry.cli.pipeline._reference`` generates.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest

from stagedretry import settable_keys, setting
from stagedretry._plan import _BACKOFF_KEYS, _ON_KEYS, _STAGE_KEYS, PLAN_KEYS
from stagedretry.cli._app import demo
from stagedretry.cli._registry import backend_names, backend_spec
from stagedretry.cli.pipeline import SECTIONS, Price, RunConfig, _reading, _reference, load_pipeline
from strategies.backend import CacheOptions

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "reference" / "pipeline.md"


def _element(kind: Any) -> tuple[Any, bool]:
    """The settings class under ``X | None`` / ``tuple[X, ...]``, and whether it is a list."""
    many = False
    while typing.get_origin(kind) is not None:
        many |= typing.get_origin(kind) is tuple
        kind = next(a for a in typing.get_args(kind) if a not in (type(None), Ellipsis))
    return kind, many


def _settings_keys(cls: type[Any], prefix: str) -> set[str]:
    """Every dotted key :func:`stagedretry.parse_settings` reads into *cls*, tables followed."""
    attrs.resolve_types(cls)
    fields = {f.name: f for f in attrs.fields(cls)}
    keys = set()
    for name in settable_keys(cls):
        kind, many = _element(fields[name].type)
        if isinstance(kind, type) and attrs.has(kind):
            keys |= _settings_keys(kind, f"{prefix}{name}{'[]' if many else ''}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def accepted_keys() -> set[str]:
    """The dotted keys the loader accepts, from its own lists and classes."""
    keys = {"name"}
    keys |= {f"plan.{k}" for k in PLAN_KEYS}
    for key in _STAGE_KEYS:
        keys |= (
            {f"plan.stages[].on.{o}" for o in _ON_KEYS} if key == "on" else {f"plan.stages[].{key}"}
        )
    keys |= {f"plan.backoff.{k}" for k in _BACKOFF_KEYS}
    keys |= {f"backend.{k}" for k in _reading.APP_BACKEND_KEYS}
    for name in backend_names():
        spec = backend_spec(name)
        keys |= _settings_keys(spec.section_type, "backend.")
        keys |= _settings_keys(spec.params_type, "plan.stages[].params.")
    keys |= {f"cache.{k}" for k in _reading.CACHE_FILE_KEYS}
    keys |= _settings_keys(CacheOptions, "cache.")
    keys |= {f"input.{k}" for k in _reading.INPUT_KEYS}
    keys |= {f"output.{k}" for k in _reading.OUTPUT_KEYS}
    keys |= {f"journal.{k}" for k in _reading.JOURNAL_KEYS}
    keys |= _settings_keys(RunConfig, "run.") | {f"run.{k}" for k in _reading.RUN_FILE_KEYS}
    keys |= _settings_keys(Price, "prices.<model>.")
    return keys


def documented_keys(text: str) -> set[str]:
    """The keys of the page's tables: the first cell of each row."""
    return set(re.findall(r"^\| `([^`]+)` \|", text, re.MULTILINE))


def test_the_page_is_what_the_code_generates() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert _reference.regenerate(text) == text, (
        "docs/reference/pipeline.md is stale: run "
        "python -m stagedretry.cli.pipeline._reference docs/reference/pipeline.md"
    )


def test_every_key_the_loader_accepts_is_on_the_page_and_no_other() -> None:
    documented = documented_keys(PAGE.read_text(encoding="utf-8"))
    accepted = accepted_keys()
    assert sorted(accepted - documented) == [], "undocumented keys"
    assert sorted(documented - accepted) == [], "documented keys the loader refuses"
    # Every section the loader knows has its table (name is a key of the top level).
    for section in SECTIONS:
        assert any(k == section or k.startswith(f"{section}.") for k in documented), section


def test_the_key_check_would_see_a_new_setting() -> None:
    @attrs.frozen
    class Widened(RunConfig):
        brand_new: int = setting(1)
        """A setting nobody documented."""

    documented = documented_keys(PAGE.read_text(encoding="utf-8"))
    assert _settings_keys(Widened, "run.") - documented == {"run.brand_new"}


def test_every_row_has_a_description_type_and_example() -> None:
    for table in _reference.tables():
        for row in table.rows:
            assert row.text.strip(), row.key
            assert row.type.strip(), row.key
            assert re.fullmatch(r"\[\[[\w.]+\]\]|[\w]+ = .+", row.example), row.example


def _write(folder: Path, body: str, *, backend: str = 'kind = "sim"') -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "in.jsonl").write_text('{"id": "a", "title": "T"}\n', encoding="utf-8")
    (folder / "rules.md").write_text("Answer with the title.\n", encoding="utf-8")
    (folder / "shape.json").write_text(
        json.dumps({"type": "object", "properties": {"title": {"type": "string"}}}), "utf-8"
    )
    path = folder / "pipeline.toml"
    path.write_text(
        '[plan]\n[[plan.stages]]\nname = "s0"\n\n'
        f"[backend]\n{backend}\n\n"
        '[input]\npath = "in.jsonl"\ntemplate = "Describe {title}."\n\n' + body,
        encoding="utf-8",
    )
    return path


def _placed(key: str, example: str) -> tuple[str, str]:
    """``(backend lines, the rest of the file)`` with *example* in the table *key* is in."""
    if key.startswith("run."):
        return 'kind = "sim"', f"[run]\n{example}\n"
    if key.startswith("cache."):
        return 'kind = "sim"', f'[cache]\nsystem_instruction = "rules.md"\n{example}\n'
    if key.startswith("prices."):
        base = {"input": "input = 1", "cached_input": "cached_input = 1", "output": "output = 1"}
        base[key.rsplit(".", 1)[1]] = example
        return 'kind = "sim"', '[prices."m"]\n' + "\n".join(base.values()) + "\n"
    raise KeyError(key)


SETTINGS_TABLES = ("[run]", "[cache]", '[prices."<model>"]')


@pytest.mark.parametrize(
    "row",
    [
        row
        for table in _reference.tables()
        if any(name in table.heading for name in SETTINGS_TABLES)
        for row in table.rows
        if row.key != "cache.system_instruction" and row.key != "run.request_log"
    ],
    ids=lambda row: row.key,
)
def test_each_example_is_accepted_by_the_loader(row: _reference.Row, tmp_path: Path) -> None:
    backend, body = _placed(row.key, row.example)
    load_pipeline(_write(tmp_path, body, backend=backend))


def _backend_example(kind: str, row: _reference.Row) -> tuple[str, str]:
    key = row.key.removeprefix("backend.")
    if "." not in key:
        return f'kind = "{kind}"\n{row.example}', ""
    table, _, _ = key.rpartition(".")
    if table.endswith("[]"):
        head = f"[[backend.{table[:-2]}]]"
        required = "" if row.key.endswith(".kind") else 'kind = "internal"\n'
        return f'kind = "{kind}"', f"{head}\n{required}{row.example}\n"
    return f'kind = "{kind}"', f"[backend.{table}]\n{row.example}\n"


@pytest.mark.parametrize("kind", backend_names())
def test_each_backend_and_stage_param_example_is_accepted(kind: str, tmp_path: Path) -> None:
    spec = backend_spec(kind)
    output = '[output]\nschema = "shape.json"\n'
    rows = [
        *_reference.settings_rows(spec.section_type, "backend."),
        *(
            row
            for prefix, cls, _ in _reference.nested_tables(spec.section_type, "backend.")
            for row in _reference.settings_rows(cls, prefix)
        ),
    ]
    for i, row in enumerate(rows):
        backend, body = _backend_example(kind, row)
        load_pipeline(_write(tmp_path / f"b{i}", output + body, backend=backend))
    for i, row in enumerate(
        _reference.settings_rows(spec.params_type, "plan.stages[].params.", where="params.")
    ):
        path = _write(tmp_path / f"p{i}", output, backend=f'kind = "{kind}"')
        text = path.read_text(encoding="utf-8")
        path.write_text(
            text.replace('name = "s0"\n', f'name = "s0"\n[plan.stages.params]\n{row.example}\n'),
            encoding="utf-8",
        )
        load_pipeline(path)


def test_the_default_output_and_journal_paths_are_the_documented_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    (tmp_path / "in.jsonl").rename(tmp_path / "books.jsonl")
    path.write_text(path.read_text().replace("in.jsonl", "books.jsonl"), encoding="utf-8")
    pipeline = load_pipeline(path)
    assert pipeline.output.path == tmp_path / "books.out.jsonl"
    assert pipeline.journal.path == tmp_path / "books.out.journal.sqlite"
    text = PAGE.read_text(encoding="utf-8")
    assert "`books.jsonl` writes\n  `books.out.jsonl`" in text
    assert "`books.out.jsonl` keeps `books.out.journal.sqlite`" in text


def test_the_demo_folder_is_documented_and_ignored() -> None:
    (workdir,) = [p for p in demo.params if p.name == "workdir"]
    assert str(workdir.default) == "stagedretry-demo"
    assert "--dir" in workdir.opts
    text = PAGE.read_text(encoding="utf-8")
    assert f"`{workdir.default}/` in the current directory" in text
    assert "`--dir PATH`" in text
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert f"{workdir.default}/" in ignored
