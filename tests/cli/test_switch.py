"""The documented switch from the emulator to Gemini: the demo pipeline, switched as its comment
says, runs against Gemini's API (an emulator on loopback, through the real SDK over HTTP).

A table of another backend (``[backend.emulator]`` under ``kind = "gemini"``) is left unread,
named once in a warning, and out of the fingerprint; a key that no backend knows is still
refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path

import pytest

from stagedretry.cli.pipeline import load_pipeline
from strategies.gemini.emulator import GeminiEmulator

from .conftest import Invocation, Job, command

ROOT = Path(__file__).resolve().parents[2]
DUMMY_KEY = "AIzaSyDummy-0123456789-switchswitchswit"
EMULATOR_SECTIONS = "backend.emulator: settings for the emulator backend, ignored because kind is "


@pytest.fixture(scope="module")
def emulator() -> Iterator[GeminiEmulator]:
    # Answers as often wrong as the demo's own emulator's (a field in 50 at temperature 0).
    with GeminiEmulator(seed=11, invalid_rate=0.02, api_key=DUMMY_KEY) as emu:
        yield emu


def _demo_copy(folder: Path) -> Path:
    """The demo's pipeline, records and instruction copied into *folder*, as step 1 says."""
    folder.mkdir(parents=True)
    demo = resources.files("stagedretry.demo")
    for name in ("pipeline.toml", "books.jsonl", "instructions.md"):
        with resources.as_file(demo.joinpath(name)) as source:
            shutil.copyfile(source, folder / name)
    return folder / "pipeline.toml"


def _switched(pipeline: Path, base_url: str) -> Path:
    """Step 2 of the demo's comment, plus the ``base_url`` of the emulator standing for Gemini."""
    text = pipeline.read_text("utf-8")
    line = '\nkind = "emulator"\n'
    assert text.count(line) == 1
    pipeline.write_text(
        text.replace(line, f'\nkind = "gemini"\nbase_url = "{base_url}"\n'), "utf-8"
    )
    return pipeline


def _run(
    args: list[str], env: dict[str, str], cwd: Path, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    # The child imports this checkout, whatever folder it runs in.
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        command(*args),
        capture_output=True,
        cwd=cwd,
        env={**env, "PYTHONPATH": path},
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_demo_pipeline_switched_as_its_comment_says_runs_against_gemini(
    tmp_path: Path, subprocess_env: dict[str, str], emulator: GeminiEmulator
) -> None:
    comment = _demo_copy(tmp_path / "unused").read_text("utf-8").split("\nname =")[0]
    # The comment names what a user does: the kind, the key's variables, the prices.
    for words in ('kind = "gemini"', "GEMINI_API_KEY", "GOOGLE_API_KEY", "[prices]", "--backend"):
        assert words in comment
    pipeline = _switched(_demo_copy(tmp_path / "books"), emulator.base_url)
    before = emulator.ledger.generate_calls
    done = _run(
        ["run", str(pipeline), "--json", "--no-progress"],
        {**subprocess_env, "GEMINI_API_KEY": DUMMY_KEY},
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("warning:") == 1, done.stderr
    assert f"pipeline.toml: {EMULATOR_SECTIONS}'gemini'" in done.stderr
    summary = json.loads(done.stdout)
    assert summary["items"] == {**summary["items"], "total": 300, "succeeded": 300}
    assert summary["backend"].startswith("gemini ")
    assert summary["cache"]["created"] == 1
    # Every attempt went to the emulator, through the SDK over HTTP.
    assert emulator.ledger.generate_calls - before == summary["attempts"]
    assert DUMMY_KEY not in done.stdout + done.stderr
    assert len((tmp_path / "books" / "books.out.jsonl").read_text("utf-8").splitlines()) == 300


def test_backend_gemini_on_the_unedited_demo_pipeline(
    tmp_path: Path, subprocess_env: dict[str, str], emulator: GeminiEmulator
) -> None:
    pipeline = _demo_copy(tmp_path / "books")
    no_key = _run(["run", str(pipeline), "--backend", "gemini"], subprocess_env, tmp_path)
    assert no_key.returncode == 2
    assert "settings for the emulator backend" not in no_key.stderr.split("error:")[1]
    assert "the gemini backend needs an API key in the GEMINI_API_KEY environment variable" in (
        no_key.stderr
    )
    done = _run(
        [
            "run",
            str(pipeline),
            "--backend",
            "gemini",
            "--set",
            f"backend.base_url={emulator.base_url}",
            "--set",
            "input.path=head.jsonl",
            "--json",
            "--no-progress",
        ],
        # The SDK's other variable works too.
        {**subprocess_env, "GOOGLE_API_KEY": DUMMY_KEY},
        _head(pipeline.parent, 40),
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count(EMULATOR_SECTIONS) == 1, done.stderr
    assert json.loads(done.stdout)["items"]["succeeded"] == 40


def _head(folder: Path, count: int) -> Path:
    """The first *count* records of the demo as ``head.jsonl`` in *folder*; the folder."""
    lines = (folder / "books.jsonl").read_text("utf-8").splitlines(keepends=True)
    (folder / "head.jsonl").write_text("".join(lines[:count]), "utf-8")
    return folder


def test_an_ignored_table_is_not_read_and_not_in_the_fingerprint(tmp_path: Path) -> None:
    pipeline = _switched(_demo_copy(tmp_path / "books"), "http://127.0.0.1:9")
    switched = load_pipeline(pipeline)
    assert switched.backend.kind == "gemini"
    assert switched.backend.ignored == ("backend.emulator",)
    # The same pipeline without the emulator's tables: the same job, the same fingerprint.
    text = pipeline.read_text("utf-8")
    start = text.index("\n[backend.emulator]\n")
    end = text.index("\n[cache]\n")
    bare = tmp_path / "books" / "bare.toml"
    bare.write_text(text[:start] + text[end:], "utf-8")
    without = load_pipeline(bare)
    assert without.backend.ignored == ()
    assert without.backend.ignored_warning("bare.toml") is None
    assert switched.fingerprint == without.fingerprint
    # Unread: values the emulator would refuse change nothing either.
    odd = tmp_path / "books" / "odd.toml"
    odd.write_text(
        text.replace("seed = 7", 'seed = "seven"\nno_such_knob = 1').replace(
            'kind = "rate_limit"', 'kind = "meteor"'
        ),
        "utf-8",
    )
    assert load_pipeline(odd).fingerprint == switched.fingerprint


@pytest.mark.parametrize(
    ("kind", "tables", "ignored"),
    [
        ("sim", "[backend.emulator]\nseed = 2\n", "backend.emulator"),
        ("emulator", "[backend.sim]\nseed = 2\n", "backend.sim"),
        ("gemini", "[backend.sim]\nseed = 2\n", "backend.sim"),
        (
            "gemini",
            "[backend.sim]\nseed = 2\n[backend.emulator]\nseed = 2\n",
            "backend.sim, backend.emulator",
        ),
    ],
)
def test_any_other_backends_table_is_ignored_with_one_warning(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    kind: str,
    tables: str,
    ignored: str,
) -> None:
    job = make_job(items=1)
    text = job.pipeline.read_text("utf-8")
    backend = f'kind = "{kind}"\n'
    if kind == "gemini":
        backend += 'base_url = "http://127.0.0.1:9"\n'
    if kind != "sim":
        text = text.replace("[backend.sim]\nseed = 3\ninvalid_rate = 0.2\n", "")
    job.pipeline.write_text(
        text.replace('kind = "sim"\n', backend + tables + "\n", 1)
        + '[cache]\nsystem_instruction = "input.jsonl"\n',
        "utf-8",
    )
    (job.folder / "schema.json").write_text('{"type": "object"}', "utf-8")
    schema = job.folder / "schema.json"
    checked = cli("plan", "check", str(job.pipeline), "--set", f"output.schema={schema}")
    assert checked.code == 0, checked.err
    assert checked.err.count("warning:") == 1, checked.err
    assert f"pipeline.toml: {ignored}: settings for the " in checked.err
    assert f"ignored because kind is '{kind}'" in checked.err


@pytest.mark.parametrize(
    ("addition", "where"),
    [
        ("[backend.vertexx]\nproject = 1\n", "backend.vertexx"),
        ("no_such_key = 1\n", "backend.no_such_key"),
    ],
)
def test_a_key_no_backend_knows_is_still_refused(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], addition: str, where: str
) -> None:
    job = make_job(items=1)
    text = job.pipeline.read_text("utf-8").replace('kind = "sim"\n', 'kind = "sim"\n' + addition)
    job.pipeline.write_text(text, "utf-8")
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == 2
    assert f"pipeline.toml: {where}: unknown key" in checked.err
    assert "warning:" not in checked.err


@pytest.mark.parametrize(
    "url", ["127.0.0.1:9", "http://", "ftp://127.0.0.1:9", "http://127.0.0.1:99999"]
)
def test_a_base_url_that_is_not_an_http_url_is_refused_where_it_is_written(
    make_job: Callable[..., Job], cli: Callable[..., Invocation], url: str
) -> None:
    job = make_job(items=1, sim="")
    text = job.pipeline.read_text("utf-8").replace(
        'kind = "sim"\n\n[backend.sim]\n', f'kind = "gemini"\nbase_url = "{url}"\n'
    )
    job.pipeline.write_text(text, "utf-8")
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == 2
    assert f"pipeline.toml: backend.base_url: expected an http(s) URL, got {url!r}" in checked.err
