"""The switched demo on an emulator needs no key, as the how-to says ("to try the switch
without a key or the network, point base_url at an emulator"), the same rule as the caches
commands: an endpoint on loopback gets a placeholder (never shown) when the environment holds
no key.  Before, ``run`` refused it with exit 2 ("needs an API key").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagedretry.cli._endpoint import LOOPBACK_KEY
from strategies.gemini.emulator import GeminiEmulator

from .test_switch import _demo_copy, _head, _run, _switched

WANTED_KEY = "AIzaSyWanted-0123456789-loopbackloopb"


@pytest.fixture(scope="module")
def open_emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(seed=12, invalid_rate=0.02) as emu:
        yield emu


def _no_key(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_switched_demo_runs_on_an_emulator_with_no_key(
    tmp_path: Path, subprocess_env: dict[str, str], open_emulator: GeminiEmulator, host: str
) -> None:
    url = open_emulator.base_url.replace("127.0.0.1", host)
    pipeline = _switched(_demo_copy(tmp_path / "books"), url)
    env = _no_key(subprocess_env)
    checked = _run(["plan", "check", str(pipeline)], env, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "will need GEMINI_API_KEY" not in checked.stdout + checked.stderr
    done = _run(
        ["run", str(pipeline), "--set", "input.path=head.jsonl", "--json", "--no-progress"],
        env,
        _head(pipeline.parent, 20),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["items"]["succeeded"] == 20
    assert LOOPBACK_KEY not in done.stdout + done.stderr


def test_off_loopback_the_key_is_still_needed(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    pipeline = _switched(_demo_copy(tmp_path / "books"), "http://192.0.2.1:8080")
    env = _no_key(subprocess_env)
    checked = _run(["plan", "check", str(pipeline)], env, tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert "`run` will need GEMINI_API_KEY" in checked.stdout
    refused = _run(["run", str(pipeline), "--no-progress"], env, tmp_path)
    assert refused.returncode == 2
    assert "the gemini backend needs an API key in the GEMINI_API_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_an_emulator_that_wants_a_key_stops_the_run_and_never_shows_the_placeholder(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    with GeminiEmulator(seed=13, api_key=WANTED_KEY) as emu:
        pipeline = _switched(_demo_copy(tmp_path / "books"), emu.base_url)
        done = _run(
            ["run", str(pipeline), "--set", "input.path=head.jsonl", "--no-progress"],
            _no_key(subprocess_env),
            _head(pipeline.parent, 3),
        )
    assert done.returncode == 3, done.stderr
    assert "API key" in done.stderr
    assert "Traceback" not in done.stderr
    assert LOOPBACK_KEY not in done.stdout + done.stderr
    assert WANTED_KEY not in done.stdout + done.stderr
