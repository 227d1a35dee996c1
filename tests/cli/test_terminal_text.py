"""Text from outside reaches the terminal as text: never as markup, never as control characters.

A server's cache names and models, a config file's keys, a ``--set`` key: each
may hold ``[/bold]`` (rich markup, which raised ``MarkupError`` in the caches
table) or an escape sequence that would clear the screen or retitle the
window.  The command shows them escaped (``\\x1b``), on the line they belong to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagedretry.cli._app import _shown
from strategies.gemini.emulator import GeminiEmulator, make_client

from .conftest import Invocation, Job

KEY = "AIzaSyTerm-0123456789-abcdefghijklmnop"
HOSTILE = "[/bold]\x1b[2J\x1b]0;pwned\x07[red]x"


@pytest.fixture
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(seed=4, api_key=KEY, min_cache_tokens=1) as emu:
        yield emu


def test_cache_names_and_models_from_the_server_are_shown_as_text(
    cli: Callable[..., Invocation], emulator: GeminiEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(emulator.base_url, api_key=KEY)
    client.caches.create(
        model=f"gemini-2.5-flash{HOSTILE}",
        config={"display_name": f"stagedretry:{HOSTILE}", "system_instruction": "rules " * 50},
    )
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    listed = cli("caches", "list", "--base-url", emulator.base_url, width=400)
    assert listed.code == 0, listed.err
    assert "\x1b" not in listed.out
    assert "\x07" not in listed.out
    assert listed.out.count("[/bold]\\x1b[2J\\x1b]0;pwned\\x07[red]x") == 2, listed.out


def test_a_config_key_with_escapes_is_named_escaped(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = make_job(items=1)
    text = job.pipeline.read_text("utf-8").replace("[run]\n", '[run]\n"\\u001b[2Jx\\u0007" = 1\n')
    job.pipeline.write_text(text, "utf-8")
    checked = cli("plan", "check", str(job.pipeline))
    assert checked.code == 2
    assert "run.\\x1b[2Jx\\x07: unknown key" in checked.err
    assert "\x1b" not in checked.err

    clean = make_job(items=1)
    set_key = cli("plan", "check", str(clean.pipeline), "--set", "run.\x1b]0;t\x07=1")
    assert set_key.code == 2
    assert "run.\\x1b]0;t\\x07: unknown key" in set_key.err
    assert "\x1b" not in set_key.err


@given(st.text())
def test_shown_text_has_no_control_character_and_keeps_the_rest(text: str) -> None:
    shown = _shown(text)
    assert not any(0 <= ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)
    if not any(0 <= ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text):
        assert shown == text
