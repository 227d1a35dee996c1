"""The API key never reaches the output file, the journal or the log, whatever field carries it.

Every writer goes through the one ``Secrets`` rule; these tests put the key
where a careless writer would copy it: a failure reason, an error message, an
output value, a traceback.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from stagedretry import FieldError, ItemResult, ItemStatus
from stagedretry._journal import Journal, result_from_json
from stagedretry._redact import REDACTED, Secrets, fold
from stagedretry.cli._logging import command_logging
from stagedretry.cli._output import OutputWriter
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import Invocation, Job, on_gemini, recording_console

# A key that is also a valid template field name, so a failure reason can quote it.
KEY = "AIzaSyTest_0123456789_abcdefghijklmn"
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}


@pytest.fixture
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(seed=2, invalid_rate=0.0, api_key=KEY) as emu:
        yield emu


def _job_quoting_the_key(make_job: Callable[..., Job], base_url: str) -> Job:
    # Half the records lack the template field named like the key: their input_error
    # reason names the field, hence the key.
    rows: list[dict[str, object] | str] = [
        {"id": f"item-{n}", "title": f"Title {n}", **({KEY: "x"} if n % 2 else {})}
        for n in range(1, 7)
    ]
    job = make_job(
        rows=rows,
        sim="",
        template=f"Describe {{title}} ({{{KEY}}}).",
        run='concurrency = 4\nrequest_log = "out/requests.jsonl"',
    )
    return on_gemini(job, base_url, schema=SCHEMA)


def test_the_key_in_failure_reasons_is_redacted_everywhere_the_run_writes(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    job = _job_quoting_the_key(make_job, emulator.base_url)
    log = tmp_path / "run.jsonl"
    done = cli("run", str(job.pipeline), "--json", "--log-file", str(log))
    assert done.code == 1, done.err
    summary = done.json()
    assert summary["items"]["succeeded"] == 3
    assert summary["items"]["input_errors"] == 3
    failed = [row for row in job.lines() if row["status"] == "failed"]
    assert len(failed) == 3
    for row in failed:
        assert f"the record has no field '{REDACTED}' used by the prompt template" in row["reason"]
    db = sqlite3.connect(job.journal)
    try:
        journal_text = "\n".join(r[0] for r in db.execute("SELECT result FROM results"))
    finally:
        db.close()
    assert REDACTED in journal_text
    assert REDACTED in log.read_text("utf-8")
    requests = job.folder / "out/requests.jsonl"
    assert len(requests.read_text("utf-8").splitlines()) == 3
    for path in (job.output, job.journal, log, requests):
        assert KEY.encode() not in path.read_bytes(), path.name
    assert KEY not in done.out + done.err


def test_the_output_file_scrubs_reason_errors_and_output(tmp_path: Path) -> None:
    result = ItemResult(
        "a",
        ItemStatus.FAILED,
        output={"echo": [f"the key is {KEY}"]},
        reason=f"403 for {KEY}",
        errors=(FieldError("title", f"bad value {KEY!r}"),),
    )
    writer = OutputWriter(tmp_path / "out.jsonl", secrets=Secrets([KEY]))
    writer.append(result, 1)
    writer.close()
    appended = (tmp_path / "out.jsonl").read_text("utf-8")
    writer.rebuild([(result, 1)])
    rebuilt = (tmp_path / "out.jsonl").read_text("utf-8")
    for text in (appended, rebuilt):
        assert KEY not in text
        row = json.loads(text)
        assert row["output"] == {"echo": [f"the key is {REDACTED}"]}
        assert row["reason"] == f"403 for {REDACTED}"
        assert row["errors"] == [{"path": ["title"], "message": f"bad value '{REDACTED}'"}]


def test_a_traceback_in_the_log_is_scrubbed_and_nested_values_keep_their_shape(
    tmp_path: Path,
) -> None:
    console = recording_console()
    log_file = tmp_path / "events.jsonl"
    with command_logging(console, level="info", log_file=log_file, secrets=[KEY]) as log:
        try:
            raise PermissionError(f"API key {KEY} was refused")
        except PermissionError:
            log.exception("request_failed", headers={"x-goog-api-key": KEY, "n": [1, KEY]})
    (event,) = [json.loads(line) for line in log_file.read_text("utf-8").splitlines()]
    assert "Traceback (most recent call last)" in event["exception"]
    assert f"PermissionError: API key {REDACTED} was refused" in event["exception"]
    assert event["headers"] == {"x-goog-api-key": REDACTED, "n": [1, REDACTED]}
    shown = console.export_text()
    assert "PermissionError" in shown
    assert KEY not in shown
    assert KEY not in log_file.read_text("utf-8")


def test_the_journal_scrubs_a_key_hidden_by_json_escaping(tmp_path: Path) -> None:
    key = 'se"cret\\key'
    with Journal(tmp_path / "j.sqlite", "fp", secrets=[key]) as journal:
        run = journal.begin_run()
        journal.record(
            ItemResult("a", ItemStatus.FAILED, reason=f"refused {key}"), line=1, digest="d", run=run
        )
        (entry,) = journal.entries()
    assert entry.result.reason == f"refused {REDACTED}"


def test_secrets_never_show_in_their_own_repr() -> None:
    secrets = Secrets([KEY, None, ""])
    assert KEY not in repr(secrets)
    assert list(secrets) == [KEY]
    assert not Secrets([None])


# -- the key in any form (issue 10, section 3) -------------------------------------------------


def _gemini_job(make_job: Callable[..., Job], base_url: str, *, items: int = 4) -> Job:
    return on_gemini(make_job(items=items, sim="", run="concurrency = 1"), base_url, schema=SCHEMA)


def _forms_left(text: str) -> list[str]:
    """Pieces of KEY (8 characters, any case, as is or percent-encoded) still in *text*."""
    low = fold(text)
    found = []
    for form in (KEY, quote(KEY, safe="")):
        found += [form[i : i + 8] for i in range(len(form) - 7) if fold(form[i : i + 8]) in low]
    return found


def _journal_text(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        rows = [r[0] for r in db.execute("SELECT result FROM results")]
        rows += [r[0] or "" for r in db.execute("SELECT stats FROM runs")]
    finally:
        db.close()
    # Decoded too: a JSON escape must not hide a form of the key from the search.
    return "\n".join(rows + [json.dumps(json.loads(r), ensure_ascii=False) for r in rows if r])


def test_the_key_echoed_upper_cased_reaches_no_file_and_no_stream(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    emulator.inject(Fault(kind=FaultKind.ECHO_KEY, at={1, 2}))
    job = _gemini_job(make_job, emulator.base_url)
    log = tmp_path / "run.jsonl"
    done = cli("run", str(job.pipeline), "--log-file", str(log), "--log-level", "debug")
    assert done.code == 1, done.err
    failed = [row for row in job.lines() if row["status"] == "failed"]
    assert len(failed) == 2
    for row in failed:
        # The echo reached the run, and was masked: the rest of the server's sentence is kept.
        assert "the gateway could not route caller [redacted]" in row["reason"]
    assert "[redacted]" in log.read_text("utf-8")
    assert "[redacted]" in done.err  # the attempt events, on the console at debug level
    for name, text in {
        "output": job.output.read_text("utf-8"),
        "journal": _journal_text(job.journal),
        "log file": log.read_text("utf-8"),
        "stdout": done.out,
        "stderr": done.err,
    }.items():
        assert _forms_left(text) == [], name
    # The journal still loads, row by row.
    db = sqlite3.connect(job.journal)
    try:
        rows = db.execute("SELECT result FROM results").fetchall()
        loaded = [result_from_json(json.loads(r[0])) for r in rows]
    finally:
        db.close()
    assert sorted(r.status.value for r in loaded) == ["failed", "failed", "succeeded", "succeeded"]


def test_a_dummy_key_too_short_to_mask_runs_to_the_end_with_one_warning(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # An emulator that takes any key, as people run them, and a one-letter dummy key.
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    log = tmp_path / "run.jsonl"
    with GeminiEmulator(seed=4, invalid_rate=0.0) as emulator:
        job = _gemini_job(make_job, emulator.base_url, items=6)
        done = cli("run", str(job.pipeline), "--json", "--log-file", str(log))
    assert done.code == 0, done.err
    assert done.json()["items"]["succeeded"] == 6
    rows = job.lines()
    assert [row["status"] for row in rows] == ["succeeded"] * 6
    assert "[redacted]" not in job.output.read_text("utf-8")
    with Journal(job.journal, done.json()["fingerprint"]) as journal:
        entries = list(journal.entries())
    assert len(entries) == 6
    for entry in entries:
        assert entry.result.status is ItemStatus.SUCCEEDED
        for attempt in entry.result.attempts:
            assert attempt.meta is not None
            assert attempt.meta.blocked is False
    warnings = [line for line in done.err.splitlines() if "too short" in line]
    assert warnings == [
        "warning: GEMINI_API_KEY holds 1 character(s), too short to be an API key: it is not "
        "masked in what the run writes (keys of 8 or more characters are)"
    ]
    events = [json.loads(line) for line in log.read_text("utf-8").splitlines()]
    short = [e for e in events if e["event"] == "secret_too_short"]
    assert len(short) == 1
    assert short[0]["variable"] == "GEMINI_API_KEY"
    assert short[0]["level"] == "warning"


def test_a_cache_create_echoing_the_key_stops_the_run_with_a_masked_sentence(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    emulator: GeminiEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    # The cache's list is request 1 of its route, its create request 2.
    emulator.inject(Fault(kind=FaultKind.ECHO_KEY, route="cachedContents", at={2}))
    job = _gemini_job(make_job, emulator.base_url)
    (job.folder / "rules.md").write_text("Answer as a careful librarian would. " * 200, "utf-8")
    with job.pipeline.open("a", encoding="utf-8") as file:
        file.write('\n[cache]\nsystem_instruction = "rules.md"\n')
    log = tmp_path / "run.jsonl"
    done = cli("run", str(job.pipeline), "--log-file", str(log))
    assert done.code != 0
    assert "could not prepare resource 'gemini_cache'" in done.err
    assert "could not route caller [redacted]" in done.err
    for name, text in {
        "stderr": done.err,
        "stdout": done.out,
        "log": log.read_text("utf-8"),
    }.items():
        assert _forms_left(text) == [], name


@pytest.mark.parametrize("key", ["succeeded", "finish_reason", "safety_ratings", "status", "id"])
def test_a_key_equal_to_a_status_or_field_name_never_corrupts_a_row(
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
) -> None:
    # Before: every "succeeded" or "finish_reason" in the journal's JSON was rewritten, and
    # reading the rows back failed ('[redacted]' is not a valid OutcomeKind).
    monkeypatch.setenv("GEMINI_API_KEY", key)
    with GeminiEmulator(seed=4, invalid_rate=0.0) as emulator:
        job = _gemini_job(make_job, emulator.base_url, items=3)
        done = cli("run", str(job.pipeline), "--json")
    assert done.code == 0, done.err
    assert [row["status"] for row in job.lines()] == ["succeeded"] * 3
    with Journal(job.journal, done.json()["fingerprint"]) as journal:
        statuses = [e.result.status for e in journal.entries()]
    assert statuses == [ItemStatus.SUCCEEDED] * 3
    assert ("too short" in done.err) == (len(key) < 8)
