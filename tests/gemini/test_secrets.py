"""The key, in any form, never leaves the library: errors, reasons, logs, reprs.

The emulator's ``echo_key`` fault quotes the request's key back as a careless
gateway would: upper-cased in the message, a lower-cased piece and the
percent-encoded key in a ``DebugInfo`` detail.  The real SDK reads that body;
the engine masks it wherever it goes.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from urllib.parse import quote

import pytest
import structlog
from google import genai

import stagedretry as sr
from stagedretry._redact import fold
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache, GeminiStrategy
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import MODEL, Book, doc, items, ladder_runner

KEY = "AIzaSyLibrary-0123456789-abcdefghijklm"
SYSTEM = "You are a careful librarian. " + doc(1500, "shelf")


def forms_in(text: str) -> list[str]:
    """The forms of KEY the echo_key fault sends that *text* still holds (any case)."""
    low = fold(text)
    forms = {"upper": KEY.upper(), "piece": KEY[6:-2].lower(), "url": quote(KEY, safe="")}
    found = [name for name, form in forms.items() if fold(form) in low]
    # And any piece of 8 characters.
    found += [KEY[i : i + 8] for i in range(len(KEY) - 7) if fold(KEY[i : i + 8]) in low]
    return found


@pytest.fixture
def echoing(
    start_on_clock: Callable[..., GeminiEmulator], connect: Callable[..., genai.Client]
) -> Callable[[Fault], genai.Client]:
    """A client with KEY of an emulator wanting KEY, with one fault injected."""

    def make(fault: Fault) -> genai.Client:
        emulator = start_on_clock(seed=3, api_key=KEY)
        emulator.inject(fault)
        return connect(emulator, api_key=KEY)

    return make


async def test_a_failed_cache_create_raises_a_masked_resource_error(
    echoing: Callable[[Fault], genai.Client], virtual_clock: VirtualClock
) -> None:
    client = echoing(Fault(kind=FaultKind.ECHO_KEY, route="cachedContents", at={2}))
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, api_key=KEY)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book, api_key=KEY)
    runner = ladder_runner(strategy, virtual_clock, cache=cache)
    with pytest.raises(sr.ResourceError) as raised:
        await runner.run(items(3))
    error = raised.value
    message = str(error)
    assert message.startswith("could not prepare resource 'gemini_cache': 400 INVALID_ARGUMENT")
    assert "the gateway could not route caller [redacted]" in message
    assert forms_in(message) == []
    shown = "".join(traceback.format_exception(error))
    assert "ClientError it came from is not shown" in shown
    assert forms_in(shown) == []
    assert forms_in(repr(error)) == []


async def test_the_environment_key_is_masked_without_naming_it(
    echoing: Callable[[Fault], genai.Client],
    virtual_clock: VirtualClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A client built from GEMINI_API_KEY (as genai.Client() would) needs no api_key= here.
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    client = echoing(Fault(kind=FaultKind.ECHO_KEY, route="cachedContents", at={2}))
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    with pytest.raises(sr.ResourceError) as raised:
        await ladder_runner(strategy, virtual_clock, cache=cache).run(items(2))
    assert "[redacted]" in str(raised.value)
    assert forms_in("".join(traceback.format_exception(raised.value))) == []


async def test_an_echoing_answer_is_masked_in_attempts_reasons_and_log_events(
    echoing: Callable[[Fault], genai.Client], virtual_clock: VirtualClock
) -> None:
    client = echoing(Fault(kind=FaultKind.ECHO_KEY, at={1, 2}))
    # The strategy is told the key (HoldsSecrets): the runner masks it with no secrets= of its own.
    strategy = GeminiStrategy(client, MODEL, response_schema=Book, api_key=KEY)
    runner = sr.Runner(
        sr.Plan.ladder(),
        strategy,
        validator=sr.validators.pydantic(Book),
        clock=virtual_clock,
        concurrency=1,
        secrets=(),
        logger=structlog.get_logger("test"),
    )
    assert list(runner.secrets) == [KEY]
    with structlog.testing.capture_logs() as events:
        batch = await runner.run(items(3))
    failed = [r for r in batch.results if r.status is sr.ItemStatus.FAILED]
    assert len(failed) == 2
    for result in failed:
        assert result.reason is not None
        assert "could not route caller [redacted]" in result.reason
        assert forms_in(str(result)) == []
        assert forms_in(str(result.attempts)) == []
    assert [e for e in events if e["event"] == "attempt" and "[redacted]" in str(e["error"])]
    assert forms_in(str(events)) == []


async def test_the_cache_masks_its_own_log_events(
    echoing: Callable[[Fault], genai.Client], virtual_clock: VirtualClock
) -> None:
    # list (1), create (2), the second look for a duplicate (3) and the delete on close (4)
    # echo the key.
    client = echoing(Fault(kind=FaultKind.ECHO_KEY, route="cachedContents", at={3, 4}))
    cache = GeminiContextCache(
        client, MODEL, system_instruction=SYSTEM, on_close="delete", api_key=KEY
    )
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book, api_key=KEY)
    with structlog.testing.capture_logs() as events:
        batch = await ladder_runner(strategy, virtual_clock, cache=cache).run(items(2))
    assert batch.succeeded == 2
    (failed,) = [e for e in events if e["event"] == "gemini_cache_delete_failed"]
    assert "[redacted]" in failed["error"]
    (second_look,) = [e for e in events if e["event"] == "gemini_cache_converge_failed"]
    assert "[redacted]" in second_look["error"]
    assert forms_in(str(events)) == []


def test_reprs_never_show_the_key(
    emulator: GeminiEmulator, connect: Callable[..., genai.Client]
) -> None:
    client = connect(emulator, api_key=KEY)
    cache = GeminiContextCache(client, MODEL, system_instruction="x", api_key=KEY)
    strategy = GeminiStrategy(client, MODEL, cache=cache, api_key=KEY)
    runner = sr.Runner(sr.Plan.ladder(), strategy, secrets=[KEY])
    for shown in (repr(cache), repr(strategy), repr(runner.secrets), repr(runner)):
        assert forms_in(shown) == [], shown
    assert strategy.secrets() == (KEY,)
    assert cache.secrets() == (KEY,)


def test_the_echo_key_fault_quotes_the_key_in_three_forms(
    start_emulator: Callable[..., GeminiEmulator],
) -> None:
    from google.genai import errors

    from strategies.gemini.emulator import make_client

    emulator = start_emulator(seed=1, api_key=KEY)
    emulator.inject(Fault(kind=FaultKind.ECHO_KEY, times=1))
    client = make_client(emulator.base_url, api_key=KEY)
    try:
        with pytest.raises(errors.ClientError) as raised:
            client.models.generate_content(model=MODEL, contents="Describe Dune.")
        answer = client.models.generate_content(model=MODEL, contents="Describe Dune.")
    finally:
        client.close()
    error = raised.value
    assert (error.code, error.status) == (400, "INVALID_ARGUMENT")
    assert isinstance(error.message, str)
    assert KEY.upper() in error.message
    assert KEY[6:-2].lower() in str(error)
    assert quote(KEY, safe="") in str(error)
    assert answer.text is not None  # times=1: the next request is served
    assert emulator.ledger.requests[0].fault is FaultKind.ECHO_KEY
    assert KEY not in str(emulator.ledger.requests)
