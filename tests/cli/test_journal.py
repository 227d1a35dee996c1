"""The journal on its own: what counts as done, replacement, redaction, the lock, the JSON form."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from stagedretry import (
    Attempt,
    FieldError,
    ItemResult,
    ItemStatus,
    OutcomeKind,
    ResponseMeta,
    Usage,
)
from stagedretry._journal import Journal, JournalError, result_from_json, result_to_json


def _result(item: str, status: ItemStatus = ItemStatus.SUCCEEDED, **extra: object) -> ItemResult:
    attempt = Attempt(
        "full_t0",
        OutcomeKind.SUCCEEDED if status is ItemStatus.SUCCEEDED else OutcomeKind.INVALID,
        1,
        True,
        Usage(input_tokens=120, output_tokens=30, cached_tokens=100, thinking_tokens=5),
        ResponseMeta(
            finish_reason="STOP",
            safety_ratings={"HARM_CATEGORY_HARASSMENT": "NEGLIGIBLE"},
            raw=object(),
        ),
        None,
        (("title",), ("price.usd",), ("meta", "x/y")),
        12.5,
        0.25,
    )
    fields: dict[str, object] = {
        "output": {"title": "T"},
        "final_stage": "full_t0",
        "prompts": 1,
        "attempts": (attempt,),
        **extra,
    }
    return ItemResult(item, status, **fields)  # type: ignore[arg-type]


def test_a_result_survives_the_json_round_trip() -> None:
    original = _result(
        "a",
        ItemStatus.EXHAUSTED,
        reason="budget spent",
        errors=(FieldError("year", "expected int"),),
        last_invalid='{"year": "x"}',
    )
    data = result_to_json(original)
    json.dumps(data)  # plain JSON
    again = result_from_json(json.loads(json.dumps(data)))
    assert again == original
    assert again.attempts[0].meta is not None
    assert again.attempts[0].meta.raw is None  # the provider's raw object is never stored


def test_done_excludes_cancelled_and_a_later_result_replaces_the_row(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite", "fp") as journal:
        run = journal.begin_run()
        journal.record(_result("a"), line=1, digest="d1", run=run)
        journal.record(_result("b", ItemStatus.CANCELLED), line=2, digest="d2", run=run)
        assert journal.done() == {"a": "d1"}
        journal.record(_result("b"), line=2, digest="d2", run=run)
        assert journal.done() == {"a": "d1", "b": "d2"}
        assert journal.count() == 2
        assert [e.result.id for e in journal.entries()] == ["a", "b"]


def test_pipelines_are_kept_apart_by_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path, "one") as journal:
        journal.record(_result("a"), line=1, digest="d", run=journal.begin_run())
    with Journal(path, "two") as journal:
        assert journal.done() == {}
        assert journal.foreign() == 1
        journal.record(_result("a"), line=1, digest="d", run=journal.begin_run())
        assert journal.discard() == 1
        assert journal.runs() == []
    with Journal(path, "one") as journal:
        assert journal.done() == {"a": "d"}
        assert len(journal.runs()) == 1


def test_runs_keep_their_statistics(tmp_path: Path) -> None:
    with Journal(tmp_path / "j.sqlite", "fp") as journal:
        run = journal.begin_run()
        journal.end_run(run, {"wall_time": 1.5, "cache": {"created": 1}})
        (record,) = journal.runs()
    assert record.id == run
    assert record.finished_at is not None
    assert record.finished_at >= record.started_at
    assert record.stats == {"wall_time": 1.5, "cache": {"created": 1}}


def test_secrets_are_redacted_from_everything_written(tmp_path: Path) -> None:
    secret = "AIzaSySecretValue-1234567890"
    path = tmp_path / "j.sqlite"
    with Journal(path, "fp", secrets=[secret]) as journal:
        run = journal.begin_run()
        journal.record(
            _result("a", ItemStatus.FAILED, reason=f"403 for key {secret}"),
            line=1,
            digest="d",
            run=run,
        )
        journal.end_run(run, {"error": f"key={secret}"})
        (entry,) = journal.entries()
    assert entry.result.reason == "403 for key [redacted]"
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert secret.encode() not in raw


def test_one_run_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with (
        Journal(path, "fp"),
        pytest.raises(JournalError, match="another stagedretry run is using the journal"),
    ):
        Journal(path, "fp").open()
    with Journal(path, "fp") as again:  # released on close
        assert again.count() == 0


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal(path, "fp").open().close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="written by a newer stagedretry"):
        Journal(path, "fp").open()
