"""The Gemini provider's warnings go to stderr, never to stdout where results may be piped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import structlog
from google import genai

from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache
from strategies.gemini.emulator import GeminiEmulator

from .conftest import MODEL, cached_runner, items


@pytest.fixture
def unconfigured() -> Iterator[None]:
    """structlog as a program that never configured it finds it."""
    was = structlog.is_configured()
    saved = structlog.get_config()
    structlog.reset_defaults()
    try:
        yield
    finally:
        if was:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


@pytest.mark.usefixtures("unconfigured")
async def test_a_cache_too_small_is_reported_on_stderr(
    emulator: GeminiEmulator,
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction="You are a terse librarian.")

    batch = await cached_runner(client, cache, virtual_clock).run(items(3))

    out, err = capsys.readouterr()
    assert batch.items == 3
    assert cache.stats.inline_fallbacks == 1
    assert out == ""
    assert "gemini_cache_too_small" in err
