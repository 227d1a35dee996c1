"""Pipeline files and the files they name, past the limits: exit 2 and one sentence."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable

import pytest
import yaml

from stagedretry._documents import MAX_DOCUMENT_BYTES
from stagedretry._limits import MAX_DEPTH
from stagedretry.cli.pipeline import load_pipeline

from .conftest import Invocation, Job

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
    "required": ["title", "year"],
}


def as_yaml(job: Job) -> str:
    """The job's pipeline as YAML text, beside the TOML one."""
    data = tomllib.loads(job.pipeline.read_text("utf-8"))
    return yaml.safe_dump(data, sort_keys=False)


def one_sentence(done: Invocation) -> str:
    assert done.code == 2, done.out + done.err
    assert done.err.count("\n") == 1, done.err
    assert "Traceback" not in done.err
    return done.err.strip()


def test_a_pipeline_yaml_nested_5000_deep_fails_plan_check_in_one_sentence(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2)
    path = job.folder / "pipeline.yaml"
    path.write_text(as_yaml(job) + "deep: " + "[" * 5000 + "]" * 5000 + "\n", "utf-8")
    err = one_sentence(cli("plan", "check", str(path)))
    line = len(as_yaml(job).splitlines()) + 1
    assert err.endswith(
        f"pipeline.yaml: the document is nested more than {MAX_DEPTH} levels deep (line {line})"
    )


def test_a_duplicate_key_in_a_pipeline_yaml_is_refused_with_its_path(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2)
    text = as_yaml(job)
    lines = text.splitlines()
    # The second stage's params gain a second "temperature".
    at = [i for i, line in enumerate(lines) if line.strip() == "temperature: 0.0"][1]
    lines.insert(at + 1, lines[at].replace("0.0", "0.7"))
    path = job.folder / "pipeline.yaml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    err = one_sentence(cli("run", str(path)))
    assert err.endswith(
        f"pipeline.yaml: plan.stages[1].params: duplicate key 'temperature' "
        f"(line {at + 2}, first given on line {at + 1})"
    )


def test_byte_order_marks_in_the_pipeline_schema_and_template_are_skipped(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=3, sim="seed = 1\ninvalid_rate = 0.0")
    bom = b"\xef\xbb\xbf"
    (job.folder / "schema.json").write_bytes(bom + json.dumps(SCHEMA).encode())
    (job.folder / "prompt.txt").write_bytes(bom + b"Describe {title} by {author}.")
    text = job.pipeline.read_text("utf-8")
    text = text.replace(
        'template = "Describe {title} by {author}."', 'template_file = "prompt.txt"'
    )
    text = text.replace("[output]\n", '[output]\nschema = "schema.json"\n')
    job.pipeline.write_bytes(bom + text.encode())
    pipeline = load_pipeline(job.pipeline)
    assert pipeline.input.template.text == "Describe {title} by {author}."
    assert pipeline.output.schema == SCHEMA
    done = cli("run", str(job.pipeline))
    assert done.code == 0, done.err
    assert [row["status"] for row in job.lines()] == ["succeeded"] * 3


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            json.dumps({"type": "object", "properties": {"a": json.loads("[" * 70 + "]" * 70)}}),
            f"output.schema: schema.json is nested more than {MAX_DEPTH} levels deep",
        ),
        (
            '{"type": "object", "properties": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}",
            f"output.schema: schema.json is nested more than {MAX_DEPTH} levels deep",
        ),
        (
            '{"type": "object", "maxProperties": NaN}',
            "output.schema: schema.json is not valid JSON: NaN is not a JSON number",
        ),
        (
            " " * (MAX_DOCUMENT_BYTES + 1) + "{}",
            f"is larger than the limit of {MAX_DOCUMENT_BYTES} bytes",
        ),
    ],
    ids=["deep", "deeper-than-python", "nan", "huge"],
)
def test_a_schema_file_past_the_limits_fails_plan_check_in_one_sentence(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], content: str, expected: str
) -> None:
    job = make_job(items=2)
    (job.folder / "schema.json").write_text(content, "utf-8")
    text = job.pipeline.read_text("utf-8").replace(
        "[output]\n", '[output]\nschema = "schema.json"\n'
    )
    job.pipeline.write_text(text, "utf-8")
    err = one_sentence(cli("plan", "check", str(job.pipeline)))
    assert expected in err


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("prices.x=" + "[" * 3000 + "]" * 3000, "--set prices.x: the key and value are nested"),
        ("prices.x=" + "[" * 70 + "]" * 70, "--set prices.x: the key and value are nested"),
        (".".join(["prices"] * 70) + "=1", "the key is nested more than 64 levels deep"),
    ],
    ids=["deeper-than-python", "deep", "deep-key"],
)
def test_a_set_value_past_the_depth_limit_is_one_sentence(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], override: str, expected: str
) -> None:
    job = make_job(items=2)
    err = one_sentence(cli("plan", "check", str(job.pipeline), "--set", override))
    assert expected in err


def test_a_set_integer_too_long_to_convert_is_a_string(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=2)
    err = one_sentence(
        cli("plan", "check", str(job.pipeline), "--set", "run.concurrency=1" + "0" * 5000)
    )
    assert "run.concurrency: expected a whole number in [1, 1024], got the string" in err
