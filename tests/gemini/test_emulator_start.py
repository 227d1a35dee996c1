"""A start that fails or times out leaves nothing running, and the next start() works.

The failures are made by subclasses whose ``_serve`` (the coroutine that binds
the port) fails once, or waits for the test to open a gate.
"""

from __future__ import annotations

import asyncio
import threading

import httpx2
import pytest
from aiohttp import web

from strategies.gemini.emulator import GeminiEmulator, _server


def _emulator_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "gemini-emulator"]


def _answers(url: str) -> bool:
    with httpx2.Client(timeout=10) as http:
        return http.get(f"{url}/v1beta/nothing").status_code == 404


class _FailsOnce(GeminiEmulator):
    def __init__(self) -> None:
        super().__init__()
        self.failures = 1

    async def _serve(self) -> tuple[web.AppRunner, str, asyncio.Event]:
        if self.failures:
            self.failures -= 1
            raise OSError("address already in use")
        return await super()._serve()


class _Gated(GeminiEmulator):
    """Its server comes up only once ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    async def _serve(self) -> tuple[web.AppRunner, str, asyncio.Event]:
        await asyncio.to_thread(self.gate.wait)
        return await super()._serve()


def test_a_failed_start_can_be_retried() -> None:
    before = set(_emulator_threads())
    emulator = _FailsOnce()
    with pytest.raises(RuntimeError, match="failed to start") as caught:
        emulator.start()
    assert isinstance(caught.value.__cause__, OSError)
    assert set(_emulator_threads()) == before  # the failed thread is gone
    with pytest.raises(RuntimeError, match="not running"):
        _ = emulator.base_url
    url = emulator.start()
    try:
        assert _answers(url)
    finally:
        emulator.stop()
    assert set(_emulator_threads()) == before


def test_a_start_that_timed_out_is_taken_down_when_it_comes_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = set(_emulator_threads())
    emulator = _Gated()
    monkeypatch.setattr(_server, "_STARTUP_TIMEOUT", 0.0)
    with pytest.raises(RuntimeError, match="did not start in time"):
        emulator.start()
    (late,) = set(_emulator_threads()) - before
    emulator.gate.set()  # the abandoned server comes up now, and must go away by itself
    late.join(timeout=10)
    assert not late.is_alive()
    with pytest.raises(RuntimeError, match="not running"):
        _ = emulator.base_url  # nothing of the abandoned server was published
    monkeypatch.setattr(_server, "_STARTUP_TIMEOUT", 10.0)
    url = emulator.start()
    try:
        assert _answers(url)
    finally:
        emulator.stop()
    assert set(_emulator_threads()) == before
