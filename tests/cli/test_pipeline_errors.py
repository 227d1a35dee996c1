"""Malformed pipeline files: each mistake named by file, path and what was expected, exit 2.

Every case is checked twice: by ``plan check`` and by ``run``, which must stop
before sending anything (the request log stays absent).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Invocation, Job

REQUEST_LOG = 'request_log = "out/requests.jsonl"'


def _edit(job: Job, old: str, new: str) -> None:
    text = job.pipeline.read_text("utf-8")
    assert old in text, old
    job.pipeline.write_text(text.replace(old, new, 1), "utf-8")


def _append(job: Job, text: str) -> None:
    job.pipeline.write_text(job.pipeline.read_text("utf-8") + "\n" + text + "\n", "utf-8")


def _schema(job: Job, schema: object) -> None:
    (job.folder / "schema.json").write_text(json.dumps(schema), "utf-8")
    _append(job, "")
    _edit(
        job,
        '[output]\npath = "out/results.jsonl"',
        '[output]\npath = "out/results.jsonl"\nschema = "schema.json"',
    )


def _cache(job: Job, settings: str) -> None:
    (job.folder / "rules.md").write_text("Be precise.", "utf-8")
    _append(job, f'[cache]\nsystem_instruction = "rules.md"\n{settings}')


Mutation = Callable[[Job], None]

CASES: list[tuple[str, Mutation, str]] = [
    (
        "not TOML",
        lambda j: _append(j, "this is = = not toml"),
        "pipeline.toml: not valid TOML",
    ),
    (
        "unknown section",
        lambda j: _append(j, "[outptu]\npath = 'x'"),
        "pipeline.toml: outptu: unknown key (did you mean 'output'? known: name, plan, backend",
    ),
    (
        "no plan",
        lambda j: _edit(j, "[plan]\nmax_prompts = 5", "[planning]\nmax_prompts = 5"),
        "pipeline.toml: planning: unknown key",
    ),
    (
        "unknown stage kind",
        lambda j: _edit(
            j, 'name = "partial_t0"\nkind = "partial"', 'name = "partial_t0"\nkind = "partal"'
        ),
        "pipeline.toml: plan.stages[1].kind: unknown stage kind 'partal' (known: full, partial)",
    ),
    (
        "stage target that does not exist",
        lambda j: _edit(j, 'name = "full_t0"\n', 'name = "full_t0"\non = { invalid = "repair" }\n'),
        "pipeline.toml: plan.stages[0].on.invalid: unknown stage 'repair'",
    ),
    (
        "budget of zero",
        lambda j: _edit(j, "max_prompts = 5", "max_prompts = 0"),
        "pipeline.toml: plan.max_prompts: must be at least 1, got 0",
    ),
    (
        "unknown backend",
        lambda j: _edit(j, 'kind = "sim"', 'kind = "gpt"'),
        "pipeline.toml: backend.kind: unknown backend 'gpt' "
        "(expected one of gemini, vertex, emulator, sim)",
    ),
    # Another backend's table is ignored with a warning: tests/cli/test_switch.py.
    (
        "rate above one",
        lambda j: _edit(j, "invalid_rate = 0.2", "invalid_rate = 1.5"),
        "pipeline.toml: backend.sim.invalid_rate: expected a number in [0, 1], got the number 1.5",
    ),
    (
        "concurrency as text",
        lambda j: _edit(j, "concurrency = 4", 'concurrency = "eight"'),
        "pipeline.toml: run.concurrency: expected a whole number in [1, 1024], "
        "got the string 'eight'",
    ),
    (
        "input file missing",
        lambda j: _edit(j, 'path = "input.jsonl"', 'path = "nope.jsonl"'),
        "pipeline.toml: input.path: ",
    ),
    (
        "template with an open brace",
        lambda j: _edit(j, "Describe {title} by {author}.", "Describe {title by {author}."),
        "pipeline.toml: input.template: unbalanced '{' at character 10 "
        "(write {{ or }} for a literal brace)",
    ),
    (
        "template with no field",
        lambda j: _edit(j, "Describe {title} by {author}.", "Describe a book."),
        "pipeline.toml: input.template: the template uses no {field} of the record",
    ),
    (
        "output model that does not import",
        lambda j: _edit(
            j,
            '[output]\npath = "out/results.jsonl"',
            '[output]\npath = "out/results.jsonl"\nmodel = "no_such_module:Book"',
        ),
        "pipeline.toml: output.model: cannot import module 'no_such_module'",
    ),
    (
        "output model without a class",
        lambda j: _edit(
            j,
            '[output]\npath = "out/results.jsonl"',
            '[output]\npath = "out/results.jsonl"\nmodel = "Book"',
        ),
        "pipeline.toml: output.model: expected 'module:Class', got 'Book'",
    ),
    (
        "output model that is not pydantic",
        lambda j: _edit(
            j,
            '[output]\npath = "out/results.jsonl"',
            '[output]\npath = "out/results.jsonl"\nmodel = "json:dumps"',
        ),
        "pipeline.toml: output.model: 'json:dumps' is not a pydantic model class",
    ),
    (
        "schema its draft refuses",
        lambda j: _schema(j, {"type": "object", "properties": {"a": {"type": "text"}}}),
        "pipeline.toml: output.schema: schema.json: #/properties/a/type: 'text' is not valid",
    ),
    (
        "instruction file missing",
        lambda j: _append(j, '[cache]\nsystem_instruction = "missing.md"'),
        "pipeline.toml: cache.system_instruction: cannot read",
    ),
    (
        "renewal margin longer than the ttl",
        lambda j: _cache(j, "ttl = 60\nrenew_margin = 300"),
        "pipeline.toml: cache.renew_margin: must be smaller than the ttl (60 s), got 300",
    ),
    (
        "cache tag with a colon",
        lambda j: _cache(j, 'tag = "team:books"'),
        "pipeline.toml: cache.tag: must not hold ':' or a line break, got 'team:books'",
    ),
    (
        "price without the cached price",
        lambda j: _append(j, '[prices."gemini-2.5-flash"]\ninput = 0.3\noutput = 2.5'),
        'pipeline.toml: prices."gemini-2.5-flash".cached_input: missing',
    ),
    (
        "output over the input",
        lambda j: _edit(j, 'path = "out/results.jsonl"', 'path = "input.jsonl"'),
        "pipeline.toml: output.path: must differ from input.path",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_malformed_pipeline_is_named_and_exits_2_before_any_request(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    mutate: Mutation,
    message: str,
) -> None:
    job = make_job(run=f"concurrency = 4\n{REQUEST_LOG}")
    mutate(job)
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == 2
    assert message in checked.err
    ran = cli("run", str(job.pipeline))
    assert ran.code == 2
    assert message in ran.err
    assert not (job.folder / "out/requests.jsonl").exists()
    assert not job.output.exists()


def test_yaml_pipelines_are_read_and_their_mistakes_named(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=3)
    yaml_file = job.folder / "pipeline.yaml"
    yaml_file.write_text(
        "plan:\n  stages:\n    - name: only\n      kind: full\n"
        "backend: sim\ninput:\n  path: input.jsonl\n  template: 'Describe {title}.'\n"
        "output:\n  path: out/yaml.jsonl\n",
        "utf-8",
    )
    assert cli("plan", "check", str(yaml_file)).code == 0
    yaml_file.write_text("plan: [unclosed\n", "utf-8")
    broken = cli("plan", "check", str(yaml_file))
    assert broken.code == 2
    assert "pipeline.yaml: not valid YAML" in broken.err


def test_a_missing_pipeline_file_exits_2(tmp_path: Path, cli: Callable[..., Invocation]) -> None:
    gone = cli("run", str(tmp_path / "absent.toml"))
    assert gone.code == 2
    assert "absent.toml: no such pipeline file" in gone.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "run.concurrency=0"],
            "pipeline.toml: run.concurrency: expected a whole number in [1, 1024], "
            "got the number 0 (set on the command line)",
        ),
        (["--set", "novalue"], "--set novalue: expected key.path=value"),
        (
            ["--set", "plan.stages[9].name=x"],
            "--set plan.stages[9].name: there is no element [9] to set",
        ),
        (["--set", "backend.kind=gpt"], "backend.kind: unknown backend 'gpt'"),
        (
            ["--model", ""],
            "pipeline.toml: backend.model: expected a non-empty string (set on the command line)",
        ),
    ],
)
def test_mistakes_in_overrides_are_named_too(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], args: list[str], message: str
) -> None:
    job = make_job(items=2)
    done = cli("run", str(job.pipeline), *args)
    assert done.code == 2
    assert message in done.err
