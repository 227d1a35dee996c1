"""``[backend] kind = "vertex"``: a run with Application Default Credentials, against the
emulator's Vertex mode in the test process.

The credentials are found as the SDK finds them, through ``GOOGLE_APPLICATION_CREDENTIALS``;
the file names the emulator's ``/token`` as its token endpoint, so no request leaves
loopback.  No API key is ever sent, and neither the key nor a bearer token shows in
anything the command prints or writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from strategies.gemini.emulator import Api, Fault, FaultKind, GeminiEmulator, credentials_info

from .conftest import Invocation, Job
from .test_gemini_backend import _everything_written, _schema

KEY = "AIzaSyTest-0123456789-abcdefghijklmnop"
MODEL = "gemini-2.5-flash"


@pytest.fixture
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(seed=4, invalid_rate=0.05, api=Api.VERTEX) as emu:
        yield emu


@pytest.fixture
def credentials(emulator: GeminiEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Application Default Credentials for the emulator, named as Google's tools name them."""
    path = tmp_path / "application_default_credentials.json"
    path.write_text(json.dumps(credentials_info(emulator.base_url)), "utf-8")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return path


def _vertex_job(
    make_job: Callable[..., Job], emulator: GeminiEmulator, *, items: int = 12, extra: str = ""
) -> Job:
    job = make_job(items=items, sim="", run="concurrency = 4")
    (job.folder / "rules.md").write_text("Answer as a careful librarian would. " * 200, "utf-8")
    _schema(job)
    text = job.pipeline.read_text("utf-8").replace(
        'kind = "sim"\n\n[backend.sim]\n',
        f'kind = "vertex"\nmodel = "{MODEL}"\nproject = "books-project"\n'
        f'location = "us-central1"\nbase_url = "{emulator.base_url}"\n{extra}',
    )
    text += '\n[cache]\nsystem_instruction = "rules.md"\ntag = "vertex-tests"\n'
    job.pipeline.write_text(text, "utf-8")
    return job


def test_a_vertex_run_uses_adc_and_never_an_api_key(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    credentials: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # A Gemini key in the environment is neither needed nor sent.
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setenv("GOOGLE_API_KEY", KEY)
    job = _vertex_job(make_job, emulator)
    log = tmp_path / "run.log"
    done = cli("run", str(job.pipeline), "--json", "--log-level", "debug", "--log-file", str(log))
    assert done.code == 0, done.err
    summary = done.json()
    assert summary["items"]["succeeded"] == 12
    assert summary["cache"]["created"] == 1
    ledger = emulator.ledger
    assert ledger.caches_created == 1
    assert ledger.generate_calls == summary["attempts"]
    assert summary["tokens"]["cached"] == ledger.cached_tokens
    assert emulator.tokens_issued == 1
    assert not any("x-goog-api-key" in r.headers for r in ledger.requests)
    assert all(
        r.path.startswith("/v1beta1/projects/books-project/locations/us-central1/")
        for r in ledger.requests
        if r.path != "/token"
    )
    written = done.out + done.err + _everything_written(job, log)
    assert KEY not in written
    assert "emulator-access-token" not in written


def test_a_vertex_run_survives_a_cache_deleted_on_the_server(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    credentials: Path,
) -> None:
    # The 6th generateContent finds its cache gone: 404 "Not found: cached content metadata
    # for N.", which used to fail the item for good (FATAL).
    emulator.inject(Fault(kind=FaultKind.CACHE_DROPPED, at=frozenset({6})))
    job = _vertex_job(make_job, emulator)
    done = cli("run", str(job.pipeline), "--json")
    assert done.code == 0, done.err
    summary = done.json()
    assert summary["items"]["succeeded"] == 12
    assert summary["cache"]["lost"] == 1
    assert summary["cache"]["created"] == 2


def test_a_vertex_run_without_credentials_says_what_to_do(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    job = _vertex_job(make_job, emulator, items=2)
    done = cli("run", str(job.pipeline))
    assert done.code == 2  # a setup failure, as a missing API key is for gemini
    assert "found no usable Google Cloud credentials" in done.err
    assert "missing.json was not found" in done.err
    assert "Traceback" not in done.err
    assert emulator.ledger.requests == ()


def test_an_api_key_in_a_vertex_pipeline_is_refused(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    credentials: Path,
) -> None:
    job = _vertex_job(make_job, emulator, items=2, extra=f'api_key = "{KEY}"\n')
    done = cli("plan", "check", str(job.pipeline))
    assert done.code == 2
    assert "backend.api_key: the vertex backend never sends an API key" in done.err
    assert KEY not in done.out + done.err


def test_caches_list_and_delete_a_vertex_pipeline_s_caches(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    credentials: Path,
) -> None:
    job = _vertex_job(make_job, emulator, items=2)
    assert cli("run", str(job.pipeline)).code == 0
    (name,) = emulator.cache_names()
    listed = cli("caches", "list", "--pipeline", str(job.pipeline), "--json")
    assert listed.code == 0, listed.err
    rows = listed.json()
    assert [row["name"] for row in rows] == [name]
    assert name.startswith("projects/123456789012/locations/us-central1/cachedContents/")
    deleted = cli("caches", "delete", "--all-matching", str(job.pipeline))
    assert deleted.code == 0, deleted.err
    assert emulator.cache_names() == ()
    assert not any("x-goog-api-key" in r.headers for r in emulator.ledger.requests)
