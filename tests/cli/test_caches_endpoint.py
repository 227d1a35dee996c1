"""``caches list`` / ``caches delete`` against an emulator: ``--base-url`` (an http(s) URL), no
key needed on loopback, and every cache name shown whole in an 80-column terminal."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stagedretry.cli._endpoint import LOOPBACK_KEY, is_loopback
from strategies.backend import http_url_problem
from strategies.gemini.emulator import GeminiEmulator, make_client

from .conftest import Invocation, Job, command, on_gemini

ROOT = Path(__file__).resolve().parents[2]
KEY = "AIzaSyCache-0123456789-endpointendpoin"
SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}}


@pytest.fixture
def open_emulator() -> Iterator[GeminiEmulator]:
    """An emulator that wants no key, holding two caches with long display names."""
    with GeminiEmulator(seed=6, min_cache_tokens=1) as emu:
        client = make_client(emu.base_url)
        try:
            for tag in ("books", "a-tag-as-long-as-a-cache-tag-may-be-xyz"):
                client.caches.create(
                    model="gemini-2.5-flash",
                    config={
                        "display_name": f"stagedretry:{tag}:{'0123456789abcdef' * 2}",
                        "system_instruction": "rules " * 50,
                        "ttl": "600s",
                    },
                )
        finally:
            client.close()
        yield emu


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return subprocess.run(
        command(*args),
        capture_output=True,
        cwd=cwd,
        env={**env, "PYTHONPATH": path, "COLUMNS": "80"},
        text=True,
        timeout=60,
        check=False,
    )


def test_list_and_delete_on_an_emulator_with_no_key_show_whole_names_at_80_columns(
    open_emulator: GeminiEmulator, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    names = open_emulator.cache_names()
    assert len(names) == 2
    listed = _run("caches", "list", "--base-url", open_emulator.base_url, env=subprocess_env,
                  cwd=tmp_path)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    for name in names:
        assert name in lines, listed.stdout  # whole, on a line of its own
    assert "…" not in listed.stdout
    assert "stagedretry:a-tag-as-long-as-a-cache-tag-may-be-xyz:" in listed.stdout
    assert LOOPBACK_KEY not in listed.stdout + listed.stderr
    deleted = _run("caches", "delete", names[0], "--base-url", open_emulator.base_url,
                   env=subprocess_env, cwd=tmp_path)  # fmt: skip
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout.strip() == f"deleted {names[0]}"
    assert open_emulator.cache_names() == names[1:]
    # A key was sent all the same (the SDK needs one): the placeholder.
    assert all("x-goog-api-key" in r.headers for r in open_emulator.ledger.requests[-2:])


def test_a_pipelines_loopback_base_url_needs_no_key_either(
    open_emulator: GeminiEmulator,
    make_job: Callable[..., Job],
    cli: Callable[..., Invocation],
) -> None:
    job = on_gemini(make_job(items=1, sim=""), open_emulator.base_url, schema=SCHEMA)
    (job.folder / "rules.md").write_text("rules " * 50, "utf-8")
    with job.pipeline.open("a", encoding="utf-8") as file:
        file.write('\n[cache]\nsystem_instruction = "rules.md"\n')
    listed = cli("caches", "list", "--pipeline", str(job.pipeline), "--json")
    assert listed.code == 0, listed.err
    assert len(listed.json()) == 2


def test_googles_endpoint_still_needs_a_key(cli: Callable[..., Invocation]) -> None:
    for args in ((), ("--base-url", "https://generativelanguage.googleapis.com")):
        refused = cli("caches", "list", *args)
        assert refused.code == 2
        assert "needs an API key in the GEMINI_API_KEY environment variable" in refused.err
        assert "an endpoint on loopback, such as an emulator's --base-url" in refused.err
    refused = cli("caches", "delete", "abc")
    assert refused.code == 2


def test_an_emulator_that_wants_a_key_says_none_was_set(
    cli: Callable[..., Invocation],
) -> None:
    with GeminiEmulator(seed=1, api_key=KEY) as locked:
        listed = cli("caches", "list", "--base-url", locked.base_url)
    assert listed.code == 3
    assert "the API key was rejected" in listed.err
    assert "no key was set: put the key this endpoint wants in GEMINI_API_KEY" in listed.err
    assert LOOPBACK_KEY not in listed.err


@pytest.mark.parametrize(
    "url",
    ["127.0.0.1:9", "ftp://127.0.0.1:9", "http://", "http://127.0.0.1:99999", "file:///tmp/x"],
)
@pytest.mark.parametrize("command", [("list",), ("delete", "abc")])
def test_a_base_url_that_is_not_an_http_url_is_a_usage_error(
    cli: Callable[..., Invocation], url: str, command: tuple[str, ...]
) -> None:
    refused = cli("caches", *command, "--base-url", url)
    assert refused.code == 2
    assert "Invalid value for '--base-url': expected an http(s) URL" in refused.err
    assert repr(url) in refused.err


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://127.3.2.1", True),
        ("http://[::1]:8080/gemini", True),
        ("https://localhost:1", True),
        ("http://LOCALHOST.:1", True),
        ("http://10.0.0.1:8080", False),
        ("https://generativelanguage.googleapis.com", False),
        ("http://localhost.example.com", False),
        ("http://[::2]:1", False),
        (None, False),
    ],
)
def test_loopback_is_this_machine_only(url: str | None, loopback: bool) -> None:
    assert is_loopback(url) is loopback
    if url is not None:
        assert http_url_problem(url) is None
