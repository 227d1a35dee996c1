"""Fixtures for the Gemini emulator tests: a scrubbed SDK environment, emulators, clients."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest
from google import genai

from strategies.gemini.emulator import GeminiEmulator, make_client

MODEL = "gemini-2.5-flash"
START = 1_790_000_000.0  # 2026-09-21, a fixed wall-clock origin for the fake clock


class FakeWallClock:
    """A wall clock the test moves by hand, so cache expiry needs no sleeping."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def doc(tokens: int, word: str = "lorem") -> str:
    """A text of exactly ``tokens`` emulator tokens."""
    return " ".join([word] * tokens)


# google-genai's aiohttp transport subclasses aiohttp.ClientSession, which aiohttp 3.14
# deprecates with a DeprecationWarning on every new session; it is the SDK's doing, not ours.
AIOHTTP_SUBCLASS_WARNING = (
    "ignore:Inheritance class AiohttpClientSession from ClientSession is discouraged"
    ":DeprecationWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tolerate the SDK's own aiohttp deprecation warning in this directory only."""
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.filterwarnings(AIOHTTP_SUBCLASS_WARNING))


@pytest.fixture(autouse=True)
def _scrub_sdk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's environment from steering the SDK (keys, Vertex, replay mode)."""
    for name in list(os.environ):
        if name in ("GOOGLE_API_KEY", "GEMINI_API_KEY") or name.startswith("GOOGLE_GENAI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture(scope="session")
def http() -> Iterator[httpx2.Client]:
    """A raw HTTP client carrying an API key, for wire-level assertions (built once: ~30 ms)."""
    with httpx2.Client(headers={"x-goog-api-key": "raw-key"}, timeout=5) as client:
        yield client


@pytest.fixture
def clock() -> FakeWallClock:
    return FakeWallClock()


@pytest.fixture
def start_emulator() -> Iterator[Callable[..., GeminiEmulator]]:
    """Start emulators with any options; all are stopped at teardown."""
    started: list[GeminiEmulator] = []

    def start(**options: Any) -> GeminiEmulator:
        emulator = GeminiEmulator(**options)
        emulator.start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(start_emulator: Callable[..., GeminiEmulator], clock: FakeWallClock) -> GeminiEmulator:
    return start_emulator(seed=7, clock=clock.time, invalid_rate=0.0, invalid_rate_slope=0.0)


@pytest.fixture(params=["aiohttp", "httpx2"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def connect(transport: str) -> AsyncIterator[Callable[..., genai.Client]]:
    """Build SDK clients on the parametrized async transport; closed at teardown."""
    clients: list[genai.Client] = []

    def build(emulator: GeminiEmulator, **options: Any) -> genai.Client:
        client = make_client(emulator.base_url, transport=transport, **options)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aio.aclose()
        client.close()


@pytest.fixture
async def aio(
    connect: Callable[..., genai.Client], emulator: GeminiEmulator
) -> genai.client.AsyncClient:
    """An async client of the default emulator."""
    return connect(emulator).aio


@pytest.fixture
def sync_client(emulator: GeminiEmulator) -> Iterator[genai.Client]:
    client = make_client(emulator.base_url)
    yield client
    client.close()
