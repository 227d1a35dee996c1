"""The command's structlog set-up: standard keys, redaction, and the global config restored."""

from __future__ import annotations

import json
from pathlib import Path

import structlog

from stagedretry.cli._logging import Redact, command_logging, standard_keys

from .conftest import recording_console


def test_every_event_gets_the_four_standard_keys() -> None:
    transition = standard_keys(
        None, "debug", {"event": "transition", "item": "a", "source": "s1", "trigger": "invalid"}
    )
    assert (transition["stage"], transition["outcome"], transition["attempt"]) == (
        "s1",
        "invalid",
        None,
    )
    ended = standard_keys(
        None, "info", {"event": "item_end", "item": "a", "status": "failed", "stage": "s2"}
    )
    assert ended["outcome"] == "failed"
    plain = standard_keys(None, "info", {"event": "run_start"})
    assert {k: plain[k] for k in ("item", "stage", "attempt", "outcome")} == dict.fromkeys(
        ("item", "stage", "attempt", "outcome")
    )


def test_secrets_are_masked_in_every_value() -> None:
    redact = Redact(["s3cret-key"])
    event = redact(
        None,
        "info",
        {"event": "x", "error": "bad key s3cret-key", "n": 3, "obj": ValueError("s3cret-key")},
    )
    assert event == {"event": "x", "error": "bad key [redacted]", "n": 3, "obj": "[redacted]"}


def test_console_and_file_levels_and_the_config_is_restored(tmp_path: Path) -> None:
    before = structlog.get_config()
    console = recording_console()
    log_file = tmp_path / "events.jsonl"
    with command_logging(
        console, level=None, log_file=log_file, secrets=["k3y-long-enough"]
    ) as log:
        log.info(
            "attempt",
            item="a",
            stage="s",
            attempt=1,
            outcome="succeeded",
            note="uses k3y-long-enough",
        )
        log.warning("run_draining", reason="interrupt")
        log.debug("transition", item="a")
        structlog.get_logger("another.module").warning("library_event", detail="k3y-long-enough")
    assert structlog.get_config() == before
    events = [json.loads(line) for line in log_file.read_text("utf-8").splitlines()]
    assert [e["event"] for e in events] == ["attempt", "run_draining", "library_event"]
    assert events[0]["note"] == "uses [redacted]"
    text = console.export_text()
    assert "run_draining" in text
    assert "library_event" in text
    assert "attempt" not in text.split("run_draining")[0]  # info is below the console's default
    assert "k3y" not in text + log_file.read_text("utf-8")
