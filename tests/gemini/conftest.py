"""Fixtures for the Gemini emulator tests: a scrubbed SDK environment, emulators, clients."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pydantic
import pytest
from google import genai
from google.genai import types

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache, GeminiStrategy
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


class Book(pydantic.BaseModel):
    """The record most strategy tests ask the emulator for."""

    title: str
    author: str
    year: int
    pages: int


def items(n: int, prefix: str = "book") -> list[tuple[str, str]]:
    """``n`` batch items ``(id, prompt)`` with ids ``{prefix}-0 ...``."""
    return [(f"{prefix}-{i}", f"Catalogue book number {i}.") for i in range(n)]


def ladder_runner(
    strategy: GeminiStrategy,
    clock: VirtualClock,
    *,
    model: type[pydantic.BaseModel] = Book,
    cache: GeminiContextCache | None = None,
    plan: sr.Plan | None = None,
    concurrency: int = 4,
) -> sr.Runner:
    """A runner of *plan* (the default ladder) validating answers against *model*."""
    return sr.Runner(
        plan or sr.Plan.ladder(),
        strategy,
        validator=sr.validators.pydantic(model),
        resources=[cache] if cache is not None else [],
        clock=clock,
        concurrency=concurrency,
    )


def cached_runner(
    client: genai.Client,
    cache: GeminiContextCache,
    clock: VirtualClock,
    *,
    model: type[pydantic.BaseModel] = Book,
    concurrency: int = 8,
) -> sr.Runner:
    """A ladder runner whose strategy reads, and whose run holds, the shared *cache*."""
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=model)
    return ladder_runner(strategy, clock, model=model, cache=cache, concurrency=concurrency)


def usage_of(batch: sr.BatchResult) -> tuple[int, int, int, int]:
    """The batch's token totals, in the order :func:`billed` gives the ledger's."""
    u = batch.usage
    return (u.input_tokens, u.cached_tokens, u.output_tokens, u.thinking_tokens)


def billed(emulator: GeminiEmulator) -> tuple[int, int, int, int]:
    """What the emulator billed: prompt, cached, candidates and thoughts tokens."""
    led = emulator.ledger
    return (led.prompt_tokens, led.cached_tokens, led.candidates_tokens, led.thoughts_tokens)


class Recorder(httpx2.AsyncHTTPTransport):
    """A real httpx2 transport that also keeps the path and JSON body of every generateContent."""

    def __init__(self) -> None:
        super().__init__()
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith(":generateContent"):
            self.paths.append(request.url.path)
            self.bodies.append(json.loads(request.content))
        return await super().handle_async_request(request)


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
def start_on_clock(
    start_emulator: Callable[..., GeminiEmulator], virtual_clock: VirtualClock
) -> Callable[..., GeminiEmulator]:
    """Start emulators on the test's virtual clock; their model answers validly unless told."""

    def start(
        seed: int, *, invalid_rate: float = 0.0, invalid_rate_slope: float = 0.0, **options: Any
    ) -> GeminiEmulator:
        return start_emulator(
            seed=seed,
            clock=virtual_clock.time,
            invalid_rate=invalid_rate,
            invalid_rate_slope=invalid_rate_slope,
            **options,
        )

    return start


@pytest.fixture
async def recording_client() -> AsyncIterator[Callable[..., tuple[genai.Client, Recorder]]]:
    """Build httpx2 SDK clients without SDK retries that record each request; closed at teardown."""
    clients: list[genai.Client] = []

    def build(emulator: GeminiEmulator, api_key: str = "test-key") -> tuple[genai.Client, Recorder]:
        recorder = Recorder()
        client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=emulator.base_url,
                api_version="v1beta",
                retry_options=types.HttpRetryOptions(attempts=1),
                async_client_args={"transport": recorder},
            ),
        )
        clients.append(client)
        return client, recorder

    yield build
    for client in clients:
        await client.aio.aclose()
        client.close()


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
