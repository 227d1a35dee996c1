"""A client the user builds by hand, through the real SDK: warned about once when it would retry
on its own or call another API version than ``v1beta``, and never when built as documented.

The slow case itself (a bare ``genai.Client`` against a dead port: the aiohttp transport sleeps
1 to 10 s and reconnects before the engine sees the failure) is measured in the report, not sat
through here; the fast case is timed.
"""

from __future__ import annotations

import socket
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest
from google import genai
from google.genai import types
from google.oauth2.credentials import Credentials

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache, GeminiStrategy, connect
from strategies.gemini._client_check import client_problems
from strategies.gemini.emulator import GeminiEmulator

from .conftest import MODEL, Book, items, ladder_runner

SYSTEM = "You catalogue books. " * 100


@pytest.fixture(scope="module")
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(seed=3) as emu:
        yield emu


@pytest.fixture
def clients() -> Iterator[Callable[..., genai.Client]]:
    """Build clients by hand, as a user would; all are closed at teardown."""
    made: list[genai.Client] = []

    def build(base_url: str, **options: Any) -> genai.Client:
        client = genai.Client(
            api_key="AIzaSyHand-0123456789-builtbyhandbyhand",
            http_options=types.HttpOptions(base_url=base_url, **options),
        )
        made.append(client)
        return client

    yield build
    for client in made:
        client.close()


def _warnings_of(build: Callable[[], object]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build()
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def _dead_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_bare_client_is_warned_about_once_naming_both_problems_and_the_fix(
    emulator: GeminiEmulator, clients: Callable[..., genai.Client]
) -> None:
    client = clients(emulator.base_url)  # no api_version, no retry_options: the SDK's defaults

    def build() -> None:
        cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
        GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
        GeminiStrategy(client, MODEL)  # a second strategy on the same client: said already

    (message,) = _warnings_of(build)
    assert "retries on its own" in message
    assert "sleeps 1 to 10 s and reconnects" in message
    assert "calls API version 'v1'" in message
    assert "HttpOptions(api_version='v1beta', retry_options=HttpRetryOptions(attempts=1))" in (
        message
    )
    assert "strategies.gemini.connect" in message
    assert "AIzaSyHand" not in message
    # The warning points at the code that built the cache: this file.
    with pytest.warns(UserWarning, match="does not suit stagedretry") as record:
        GeminiStrategy(clients(emulator.base_url), MODEL)
    assert record[0].filename == __file__


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"api_version": "v1beta"}, ["sleeps 1 to 10 s"]),
        ({"retry_options": types.HttpRetryOptions(attempts=1)}, ["API version 'v1'"]),
        (
            {"api_version": "v1alpha", "retry_options": types.HttpRetryOptions(attempts=1)},
            ["API version 'v1alpha'"],
        ),
        (
            {"api_version": "v1beta", "retry_options": types.HttpRetryOptions(attempts=3)},
            ["attempts=3"],
        ),
        (
            {"api_version": "v1beta", "retry_options": types.HttpRetryOptions()},
            ["attempts unset: 5"],
        ),
        ({"api_version": "v1beta", "retry_options": types.HttpRetryOptions(attempts=1)}, []),
        # The httpx2 transport has no hidden reconnect: one attempt without retry_options.
        (
            {"api_version": "v1beta", "async_client_args": {"transport": "httpx2"}},
            [],
        ),
    ],
)
def test_each_setup_draws_what_it_should(
    emulator: GeminiEmulator,
    clients: Callable[..., genai.Client],
    options: dict[str, Any],
    said: list[str],
) -> None:
    if options.get("async_client_args"):
        options = {**options, "async_client_args": {"transport": httpx2.AsyncHTTPTransport()}}
    client = clients(emulator.base_url, **options)
    problems = client_problems(client)
    assert len(problems) == len(said)
    for problem, words in zip(problems, said, strict=True):
        assert words in problem
    shown = _warnings_of(lambda: GeminiContextCache(client, MODEL, system_instruction=SYSTEM))
    assert len(shown) == (1 if said else 0)


def test_the_documented_clients_draw_no_warning(emulator: GeminiEmulator) -> None:
    client = connect("AIzaSyConn-0123456789-connectconnectco", base_url=emulator.base_url)
    try:
        assert client_problems(client) == ()
        assert _warnings_of(lambda: GeminiStrategy(client, MODEL)) == []
    finally:
        client.close()


def test_a_vertex_client_is_not_held_to_the_developer_apis_version(
    clients: Callable[..., genai.Client],
) -> None:
    # Offline credentials the SDK accepts: a token that needs no refresh.
    client = genai.Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=Credentials(token="offline"),  # type: ignore[no-untyped-call]
        http_options=types.HttpOptions(
            base_url=f"http://127.0.0.1:{_dead_port()}",
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )
    try:
        assert client_problems(client) == ()
    finally:
        client.close()


def test_something_that_is_not_an_sdk_client_is_not_guessed_at() -> None:
    assert client_problems(object()) == ()


class TimedStrategy(GeminiStrategy):
    """Keeps the wall time of each attempt through the SDK, in seconds."""

    seconds: list[float]

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        started = time.perf_counter()
        try:
            return await super().generate(request, ctx)
        finally:
            self.seconds.append(time.perf_counter() - started)


async def test_the_recommended_client_fails_a_dead_port_fast(
    virtual_clock: VirtualClock,
) -> None:
    client = connect(
        "AIzaSyDead-0123456789-deaddeaddeaddead", base_url=f"http://127.0.0.1:{_dead_port()}"
    )
    try:
        strategy = TimedStrategy(client, MODEL, response_schema=Book)
        strategy.seconds = []
        plan = sr.Plan(stages=[sr.Stage("s", "full")], max_prompts=3)
        batch = await ladder_runner(strategy, virtual_clock, plan=plan).run(items(1))
    finally:
        await client.aio.aclose()
        client.close()
    (result,) = batch.results
    assert [a.outcome for a in result.attempts] == [sr.OutcomeKind.TRANSIENT] * 3
    # The SDK's hidden reconnect would first sleep 1 to 10 s (measured: 1.3 to 10.2 s).
    assert len(strategy.seconds) == 3
    assert max(strategy.seconds) < 0.5, strategy.seconds
