"""``backend = "gemini"`` with a key, against a loopback emulator; and ``caches list/delete``.

The emulator runs in the test process and demands the key, so these runs take
the same path as a run against Gemini, minus the network.  The key never shows
in anything the command prints or writes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stagedretry.cli._backends import RecordingStrategy, build_backend
from stagedretry.cli.pipeline import load_pipeline
from strategies.backend import close_all
from strategies.gemini import GeminiParams
from strategies.gemini.emulator import GeminiEmulator, make_client

from .conftest import Invocation, Job

KEY = "AIzaSyTest-0123456789-abcdefghijklmnop"
MODEL = "gemini-2.5-flash"


@pytest.fixture
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(seed=4, invalid_rate=0.05, api_key=KEY) as emu:
        yield emu


def _gemini_job(
    make_job: Callable[..., Job], emulator: GeminiEmulator, *, items: int = 12, tag: str = "tests"
) -> Job:
    job = make_job(items=items, sim="", run="concurrency = 4")
    (job.folder / "rules.md").write_text("Answer as a careful librarian would. " * 200, "utf-8")
    _schema(job)
    text = job.pipeline.read_text("utf-8").replace(
        'kind = "sim"\n\n[backend.sim]\n',
        f'kind = "gemini"\nmodel = "{MODEL}"\nbase_url = "{emulator.base_url}"\n',
    )
    text += f'\n[cache]\nsystem_instruction = "rules.md"\ntag = "{tag}"\n'
    job.pipeline.write_text(text, "utf-8")
    return job


SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 80},
        "author": {"type": "string"},
        "year": {"type": "integer", "minimum": 1800, "maximum": 2025},
        "genre": {"type": "string", "enum": ["fiction", "history", "poetry"]},
    },
    "required": ["title", "author", "year", "genre"],
}


def _schema(job: Job) -> None:
    (job.folder / "book.schema.json").write_text(json.dumps(SCHEMA), "utf-8")
    text = job.pipeline.read_text("utf-8").replace(
        '[output]\npath = "out/results.jsonl"',
        '[output]\npath = "out/results.jsonl"\nschema = "book.schema.json"',
    )
    job.pipeline.write_text(text, "utf-8")


def _everything_written(job: Job, *extra: Path) -> str:
    texts = []
    for path in [*job.folder.rglob("*"), *extra]:
        if path.is_file():
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(texts)


def test_a_gemini_run_never_shows_or_writes_the_key(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    job = _gemini_job(make_job, emulator)
    log = tmp_path / "run.log"
    done = cli("run", str(job.pipeline), "--json", "--log-level", "debug", "--log-file", str(log))
    assert done.code == 0, done.err
    summary = done.json()
    assert summary["items"]["succeeded"] == 12
    assert summary["cache"]["created"] == 1
    assert summary["cached_share"] > 0.7
    ledger = emulator.ledger
    assert ledger.caches_created == 1
    assert ledger.generate_calls == summary["attempts"]
    assert summary["tokens"]["input"] == ledger.prompt_tokens
    assert summary["tokens"]["cached"] == ledger.cached_tokens
    assert KEY not in done.out + done.err
    assert KEY not in _everything_written(job, log)


def test_a_wrong_key_fails_the_run_without_printing_it(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = "AIzaSyWrong-9999999999-zyxwvutsrqponmlkji"
    monkeypatch.setenv("GEMINI_API_KEY", wrong)
    job = _gemini_job(make_job, emulator, items=3)
    done = cli("run", str(job.pipeline))
    assert done.code == 3
    assert (
        "the run stopped: could not prepare resource 'gemini_cache': the API key was rejected"
        in done.err
    )
    assert wrong not in done.out + done.err
    assert wrong not in _everything_written(job)


def test_caches_list_and_delete_find_this_librarys_caches_by_fingerprint(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    job = _gemini_job(make_job, emulator, items=2)
    other = _gemini_job(make_job, emulator, items=2, tag="other")
    assert cli("run", str(job.pipeline)).code == 0
    assert cli("run", str(other.pipeline)).code == 0
    # A cache somebody else made, with no stagedretry display name.
    client = make_client(emulator.base_url, api_key=KEY)
    try:
        foreign = client.caches.create(
            model=MODEL,
            config={
                "display_name": "hand-made",
                "system_instruction": "word " * 2000,
                "ttl": "600s",
            },
        )
    finally:
        client.close()

    listed = cli("caches", "list", "--pipeline", str(job.pipeline), "--json")
    assert listed.code == 0, listed.err
    rows = listed.json()
    assert len(rows) == 2
    assert all(row["display_name"].startswith("stagedretry:") for row in rows)
    assert [row["display_name"].split(":")[1] for row in rows if row["matches_pipeline"]] == [
        "tests"
    ]
    assert all(0 < row["expires_in"] <= 3600 for row in rows)
    everything = cli("caches", "list", "--all", "--base-url", emulator.base_url, "--json").json()
    assert {row["display_name"] for row in everything} >= {"hand-made"}
    table = cli("caches", "list", "--base-url", emulator.base_url)
    assert "stagedretry:tests:" in table.out

    deleted = cli("caches", "delete", "--all-matching", str(job.pipeline))
    assert deleted.code == 0
    assert deleted.out.count("deleted cachedContents/") == 1
    left = cli("caches", "list", "--pipeline", str(job.pipeline), "--json").json()
    assert [row["display_name"].split(":")[1] for row in left] == ["other"]

    assert foreign.name is not None
    by_name = cli(
        "caches",
        "delete",
        foreign.name.removeprefix("cachedContents/"),
        "--base-url",
        emulator.base_url,
    )
    assert by_name.code == 0
    assert foreign.name not in emulator.cache_names()
    missing = cli("caches", "delete", "cachedContents/nope", "--base-url", emulator.base_url)
    assert missing.code == 1
    assert "could not delete cachedContents/nope" in missing.err
    assert KEY not in "".join(x.out + x.err for x in (listed, table, deleted, by_name, missing))


def test_caches_commands_need_a_key_and_a_gemini_pipeline(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Google's endpoint (a loopback one needs none: tests/cli/test_caches_endpoint.py).
    no_key = cli("caches", "list")
    assert no_key.code == 2
    assert "needs an API key in the GEMINI_API_KEY environment variable" in no_key.err
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    sim = make_job(items=1)
    wrong_backend = cli("caches", "delete", "--all-matching", str(sim.pipeline))
    assert wrong_backend.code == 2
    assert "uses the sim backend" in wrong_backend.err
    both = cli("caches", "delete", "x", "--all-matching", str(sim.pipeline))
    assert both.code == 2


def test_the_emulator_backend_runs_in_process(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=6, sim="", run="concurrency = 3")
    (job.folder / "rules.md").write_text("Be terse. " * 600, "utf-8")
    _schema(job)
    text = job.pipeline.read_text("utf-8").replace(
        'kind = "sim"\n\n[backend.sim]\n',
        'kind = "emulator"\n\n[backend.emulator]\nseed = 3\ninvalid_rate = 0.0\n'
        '[[backend.emulator.faults]]\nkind = "unavailable"\nat = [2, 5]\n',
    )
    text += '\n[cache]\nsystem_instruction = "rules.md"\n'
    text += '[prices."gemini-2.5-flash"]\ninput = 1.0\ncached_input = 0.1\noutput = 2.0\n'
    job.pipeline.write_text(text + "cache_storage = 4.0\n", "utf-8")
    done = cli("run", str(job.pipeline), "--json")
    assert done.code == 0, done.err
    summary = done.json()
    assert summary["cache"]["created"] == 1
    assert summary["stages"][0]["outcomes"]["transient"] == 2
    assert json.loads(job.output.read_text("utf-8").splitlines()[0])["status"] == "succeeded"
    cost = summary["cost"]
    assert cost["parts"]["cache_creation"] == pytest.approx(summary["tokens"]["cached"] / 6 / 1e6)
    assert cost["parts"]["cache_storage"] > 0  # kept: one more TTL is paid for
    # --fresh forgets the earlier run: its cache is not counted twice.
    again = cli("run", str(job.pipeline), "--fresh", "--json").json()["cost"]
    assert again["parts"]["cache_creation"] == cost["parts"]["cache_creation"]
    assert again["with_cache"] == pytest.approx(cost["with_cache"], rel=0.01)


async def test_the_request_log_keeps_the_strategys_shared_cache_visible(
    make_job: Callable[..., Job], emulator: GeminiEmulator
) -> None:
    job = _gemini_job(make_job, emulator, items=2)
    job.pipeline.write_text(
        job.pipeline.read_text("utf-8").replace(
            "concurrency = 4", 'concurrency = 4\nrequest_log = "out/requests.jsonl"'
        ),
        "utf-8",
    )
    backend = await build_backend(load_pipeline(job.pipeline), api_key=KEY)
    try:
        assert isinstance(backend.strategy, RecordingStrategy)
        assert len(backend.resources) == 1  # the shared context cache
        assert list(backend.strategy.shared_resources()) == list(backend.resources)
        assert backend.strategy.params_type is GeminiParams  # the plan is checked as without it
    finally:
        await close_all(backend.closers)


def test_caches_list_gives_up_on_a_server_that_never_answers(
    cli: Callable[..., Invocation], monkeypatch: pytest.MonkeyPatch
) -> None:
    import stagedretry.cli._app as app_module
    from strategies.gemini.emulator import Fault, FaultKind

    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.setattr(app_module, "CACHES_TIMEOUT_MS", 500)  # the documented minute, shortened
    with GeminiEmulator(seed=1, api_key=KEY) as hanging:
        hanging.inject(Fault(kind=FaultKind.HANG, route="*"))
        listed = cli("caches", "list", "--base-url", hanging.base_url)
    assert listed.code == 1
    assert "listing the caches failed" in listed.err
    assert KEY not in listed.err
