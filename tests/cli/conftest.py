"""Fixtures for the command-line tests: pipelines on disk, a scrubbed environment, invoking."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from stagedretry.cli import main
from stagedretry.cli._app import App

LADDER_TOML = """
[plan]
max_prompts = 5
backoff = { initial = 0.001, max = 0.01 }

[[plan.stages]]
name = "full_t0"
params = { temperature = 0.0 }

[[plan.stages]]
name = "partial_t0"
kind = "partial"
params = { temperature = 0.0 }

[[plan.stages]]
name = "full_t25"
params = { temperature = 0.25 }

[[plan.stages]]
name = "partial_t25"
kind = "partial"
params = { temperature = 0.25 }
"""


def records(count: int, *, start: int = 1) -> list[dict[str, Any]]:
    """Simple input records ``{"id": "item-0001", "title": ..., "author": ...}``."""
    return [
        {"id": f"item-{n:04d}", "title": f"Title {n}", "author": f"Author {n % 7}"}
        for n in range(start, start + count)
    ]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any] | str]) -> Path:
    """Write *rows* (objects, or raw lines as given) as a JSONL file."""
    with path.open("w", encoding="utf-8") as file:
        for row in rows:
            file.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


@attrs.define
class Job:
    """A pipeline on disk: the file and the paths it names."""

    folder: Path
    pipeline: Path
    input: Path
    output: Path
    journal: Path

    def lines(self) -> list[dict[str, Any]]:
        """The output file, parsed (every line must be a JSON object)."""
        return [json.loads(line) for line in self.output.read_text("utf-8").splitlines()]


def sim_pipeline(
    folder: Path,
    *,
    items: int = 20,
    rows: Sequence[dict[str, Any] | str] | None = None,
    sim: str = "seed = 3\ninvalid_rate = 0.2",
    extra: str = "",
    run: str = "concurrency = 4",
    template: str = "Describe {title} by {author}.",
) -> Job:
    """Write a sim-backed pipeline with its input under *folder*."""
    folder.mkdir(parents=True, exist_ok=True)
    data = write_jsonl(folder / "input.jsonl", rows if rows is not None else records(items))
    text = (
        f'name = "test-job"\n{LADDER_TOML}\n'
        f'[backend]\nkind = "sim"\n\n[backend.sim]\n{sim}\n\n'
        f'[input]\npath = "input.jsonl"\ntemplate = "{template}"\n\n'
        f'[output]\npath = "out/results.jsonl"\n\n'
        f'[journal]\npath = "out/journal.sqlite"\n\n'
        f"[run]\n{run}\n\n{extra}\n"
    )
    pipeline = folder / "pipeline.toml"
    pipeline.write_text(text, encoding="utf-8")
    return Job(folder, pipeline, data, folder / "out/results.jsonl", folder / "out/journal.sqlite")


def on_gemini(job: Job, base_url: str, *, schema: dict[str, Any], model: str | None = None) -> Job:
    """Point *job* (a :func:`sim_pipeline`) at the Gemini API at *base_url* (an emulator),
    its answers checked against the JSON Schema *schema*; *model* replaces the default."""
    (job.folder / "output.schema.json").write_text(json.dumps(schema), "utf-8")
    backend = 'kind = "gemini"\n'
    if model is not None:
        backend += f'model = "{model}"\n'
    text = (
        job.pipeline.read_text("utf-8")
        .replace('kind = "sim"\n\n[backend.sim]\n', f'{backend}base_url = "{base_url}"\n')
        .replace(
            '[output]\npath = "out/results.jsonl"',
            '[output]\npath = "out/results.jsonl"\nschema = "output.schema.json"',
        )
    )
    job.pipeline.write_text(text, "utf-8")
    return job


@pytest.fixture
def make_job(tmp_path: Path) -> Callable[..., Job]:
    """Build a sim pipeline in a fresh folder of this test."""
    counter = iter(range(1000))

    def make(**kwargs: Any) -> Job:
        return sim_pipeline(tmp_path / f"job{next(counter)}", **kwargs)

    return make


@attrs.define
class Invocation:
    """What a command printed and how it exited."""

    result: Result
    out: str
    err: str

    @property
    def code(self) -> int:
        return self.result.exit_code

    def json(self) -> Any:
        return json.loads(self.out)


def recording_console(width: int = 120, *, terminal: bool = False) -> Console:
    """A console writing into memory that keeps what it printed."""
    return Console(
        file=io.StringIO(),
        width=width,
        force_terminal=terminal,
        color_system=None,
        record=True,
        highlight=False,
        legacy_windows=False,
    )


def invoke(args: Sequence[str], *, width: int = 160, terminal: bool = False) -> Invocation:
    """Run the command in-process; consoles record what it printed."""
    app = App(
        out=recording_console(width, terminal=terminal),
        err=recording_console(width, terminal=terminal),
    )
    result = CliRunner().invoke(main, list(args), obj=app, catch_exceptions=False)
    return Invocation(
        result,
        app.out.export_text() + result.stdout,
        app.err.export_text() + result.stderr,
    )


@pytest.fixture
def cli() -> Callable[..., Invocation]:
    """``cli("run", path, "--json")``: run the command in-process."""

    def run(*args: str, width: int = 160, terminal: bool = False) -> Invocation:
        return invoke(args, width=width, terminal=terminal)

    return run


def command(*args: str) -> list[str]:
    """The argv of the installed command run with this interpreter, for subprocess tests."""
    return [sys.executable, "-m", "stagedretry.cli", *args]


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """An environment for a child ``stagedretry`` process: no keys, loopback not proxied."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY") and not k.startswith("GOOGLE_GENAI_")
    }
    env["NO_PROXY"] = "127.0.0.1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


SLOW_SIM = "seed = 4\ninvalid_rate = 0.0\nlatency = 0.5"
"""A ``[backend.sim]`` whose requests take half a second: a signal lands with items in flight."""
ENDLESS_SIM = "seed = 4\ninvalid_rate = 0.0\nlatency = 3600"
"""A ``[backend.sim]`` whose requests take an hour: only a cancel ends them."""
NO_LATENCY = ("--set", "backend.sim.latency=0")
"""Resumes a slow sim job at once: latency only delays an answer, so the fingerprint is kept."""


def resume(job: Job, env: dict[str, str]) -> dict[str, Any]:
    """Run *job* again (a child process, no latency); it must exit 0; its ``--json`` summary."""
    done = subprocess.run(
        command("run", str(job.pipeline), "--json", "--no-progress", *NO_LATENCY),
        capture_output=True,
        env=env,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary
