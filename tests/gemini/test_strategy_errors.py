"""How the SDK's failures are classified, and that a bad answer never costs an item.

The end-to-end cases run the real SDK against the emulator on both async transports;
the rule-by-rule cases build the SDK's own error objects (public constructors, real
httpx2 responses) to reach shapes the emulator does not send.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import httpx2
import pytest
from google import genai
from google.genai import errors, types

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache, GeminiStrategy, classify, gemini_rules
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator, make_client

from .conftest import MODEL, Book, billed, doc, items, ladder_runner, usage_of

SYSTEM = "You are a meticulous librarian; answer with the book's record. " + doc(1200, "shelf")
SECRET = "AIzaSyD-not-a-real-key-0123456789abcdefXYZ"


def api_error(code: int, body: object, response: object = None) -> errors.APIError:
    cls = errors.ClientError if 400 <= code < 500 else errors.ServerError
    return cls(code, body, response)


def body(code: int, message: str, status: str, details: list[object] | None = None) -> object:
    error: dict[str, object] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def outcome(exc: BaseException) -> sr.Outcome:
    found = classify(exc)
    assert found is not None
    return found


# -- bad answers over the wire --------------------------------------------------------------------

BAD_ANSWERS = [
    (FaultKind.TRUNCATED_JSON, sr.OutcomeKind.TRANSIENT),
    (FaultKind.NOT_JSON, sr.OutcomeKind.TRANSIENT),
    (FaultKind.BAD_GATEWAY, sr.OutcomeKind.TRANSIENT),
    (FaultKind.INTERNAL, sr.OutcomeKind.TRANSIENT),
    (FaultKind.UNAVAILABLE, sr.OutcomeKind.TRANSIENT),
    (FaultKind.NO_CANDIDATES, sr.OutcomeKind.INVALID),
    # A body nested past the recursion limit cannot be read: invalid, as an unreadable answer.
    (FaultKind.DEEP_JSON, sr.OutcomeKind.INVALID),
    (FaultKind.RATE_LIMIT, sr.OutcomeKind.RATE_LIMITED),
]


@pytest.mark.parametrize(("kind", "expected"), BAD_ANSWERS, ids=[k.value for k, _ in BAD_ANSWERS])
async def test_a_bad_answer_is_classified_and_the_item_still_succeeds(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
    kind: FaultKind,
    expected: sr.OutcomeKind,
) -> None:
    emulator = start_on_clock(seed=2)
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    emulator.inject(Fault(kind=kind, at={2, 5, 9, 14, 20}, retry_delay=1.5))
    # One worker: each injected fault hits a different item, deterministically.
    batch = await ladder_runner(strategy, virtual_clock, cache=cache, concurrency=1).run(items(24))
    assert sorted(r.id for r in batch.results) == sorted(i for i, _ in items(24))
    assert batch.succeeded == 24
    seen = [
        a for r in batch.results for a in r.attempts if a.outcome is not sr.OutcomeKind.SUCCEEDED
    ]
    assert len(seen) == 5
    assert {a.outcome for a in seen} == {expected}
    if expected is sr.OutcomeKind.RATE_LIMITED:
        assert all(not a.counted for a in seen)  # refused, not billed: no prompt spent
        assert all("429" in (a.error or "") for a in seen)
    assert usage_of(batch) == billed(emulator)


async def unknown_enum_run(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    clock: VirtualClock,
    count: int,
) -> tuple[GeminiEmulator, sr.BatchResult]:
    """Run *count* items one at a time; the first answer carries an unknown finish reason."""
    emulator = start_on_clock(seed=2)
    emulator.inject(Fault(kind=FaultKind.UNKNOWN_ENUM, at=1))
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book)
    batch = await ladder_runner(strategy, clock, concurrency=1).run(items(count))
    return emulator, batch


@pytest.mark.filterwarnings("ignore:BRAND_NEW_REASON is not a valid FinishReason:UserWarning")
async def test_an_unknown_enum_value_is_kept_by_name(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator, batch = await unknown_enum_run(start_on_clock, connect, virtual_clock, 2)
    assert batch.succeeded == 2
    first = batch.results[0].attempts[0]
    assert first.meta is not None
    assert first.meta.finish_reason == "BRAND_NEW_REASON"
    assert usage_of(batch) == billed(emulator)


async def test_an_unknown_enum_under_warnings_as_errors_is_transient(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    # pytest runs with -W error here: the SDK's enum warning is raised mid-parse.
    _, batch = await unknown_enum_run(start_on_clock, connect, virtual_clock, 1)
    (result,) = batch.results
    assert result.ok
    first, second = result.attempts
    assert first.outcome is sr.OutcomeKind.TRANSIENT
    assert "unreadable response" in (first.error or "")
    assert second.outcome is sr.OutcomeKind.SUCCEEDED


async def test_a_known_field_of_the_wrong_type_is_transient(virtual_clock: VirtualClock) -> None:
    # A server the emulator cannot imitate: 200 with a usage count that is not a number.
    answers = iter(
        [
            {"candidates": [], "usageMetadata": {"promptTokenCount": "lots"}},
            {
                "candidates": [
                    {
                        "content": {
                            "role": "model",
                            "parts": [
                                {"text": '{"title": "T", "author": "A", "year": 1, "pages": 2}'}
                            ],
                        },
                        "finishReason": "STOP",
                    }
                ],
                "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 9},
            },
        ]
    )

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=next(answers))

    client = genai.Client(
        api_key=SECRET,
        http_options=types.HttpOptions(
            base_url="http://127.0.0.1:9",
            api_version="v1beta",
            retry_options=types.HttpRetryOptions(attempts=1),
            async_client_args={"transport": httpx2.MockTransport(handler)},
        ),
    )
    try:
        strategy = GeminiStrategy(client, MODEL, response_schema=Book)
        batch = await ladder_runner(strategy, virtual_clock, concurrency=1).run(items(1))
    finally:
        await client.aio.aclose()
        client.close()
    (result,) = batch.results
    assert result.ok
    first, second = result.attempts
    assert first.outcome is sr.OutcomeKind.TRANSIENT
    assert "unreadable response: ValidationError" in (first.error or "")
    assert second.usage == sr.Usage(input_tokens=5, output_tokens=9)


async def test_a_hung_request_times_out_on_the_sdk_side_and_is_retried(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(seed=2)
    emulator.inject(Fault(kind=FaultKind.HANG, at=1))
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book, http_timeout=0.3)
    batch = await ladder_runner(strategy, virtual_clock, concurrency=1).run(items(1))
    (result,) = batch.results
    assert result.ok
    assert [a.outcome for a in result.attempts] == [
        sr.OutcomeKind.TRANSIENT,
        sr.OutcomeKind.SUCCEEDED,
    ]
    assert usage_of(batch) == billed(emulator)


async def test_a_refused_connection_is_transient(
    transport: str, virtual_clock: VirtualClock
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(
        f"http://127.0.0.1:{port}",
        transport=transport,  # type: ignore[arg-type]
        api_key=SECRET,
    )
    try:
        strategy = GeminiStrategy(client, MODEL, response_schema=Book)
        plan = sr.Plan(stages=[sr.Stage("s", "full")], max_prompts=2)
        batch = await ladder_runner(strategy, virtual_clock, plan=plan).run(items(1))
    finally:
        await client.aio.aclose()
        client.close()
    (result,) = batch.results
    assert result.status is sr.ItemStatus.EXHAUSTED
    assert [a.outcome for a in result.attempts] == [sr.OutcomeKind.TRANSIENT] * 2
    assert SECRET not in repr(result)


async def test_the_api_key_never_reaches_results(
    start_emulator: Callable[..., GeminiEmulator],
    transport: str,
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_emulator(seed=2, clock=virtual_clock.time, api_key="the-right-key")
    client = make_client(
        emulator.base_url,
        transport=transport,  # type: ignore[arg-type]
        api_key=SECRET,
    )
    try:
        strategy = GeminiStrategy(client, MODEL, response_schema=Book)
        with pytest.raises(sr.RunStopped) as stopped:
            await ladder_runner(strategy, virtual_clock).run(items(2))
    finally:
        await client.aio.aclose()
        client.close()
    batch = stopped.value.batch
    assert batch is not None
    assert "API key not valid" in str(stopped.value)
    assert SECRET not in str(stopped.value)
    # A rejected key is the run's failure: no item is final for it.
    assert batch.counts[sr.ItemStatus.FAILED] == 0
    for result in batch.results:
        assert result.status is sr.ItemStatus.CANCELLED
        assert all(a.outcome is sr.OutcomeKind.STOP_RUN for a in result.attempts)
        assert "API key not valid" in (result.reason or "")
        assert SECRET not in repr(result)
        assert SECRET not in (result.reason or "")
    assert SECRET not in batch.summary()


# -- rule by rule ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "status"),
    [
        (400, "Cache content 5025785736947826688 is expired.", "INVALID_ARGUMENT"),
        (403, "CachedContent not found (or permission denied)", "PERMISSION_DENIED"),
    ],
)
def test_a_gone_cache_is_resource_lost(code: int, message: str, status: str) -> None:
    exc = api_error(code, body(code, message, status))
    assert outcome(exc).kind is sr.OutcomeKind.RESOURCE_LOST
    assert outcome(exc).resource is None
    found = classify(exc, resource="gemini_cache")
    assert found is not None
    assert found.resource == "gemini_cache"


def test_the_strategy_names_its_cache_when_lost(
    start_emulator: Callable[..., GeminiEmulator],
) -> None:
    client = make_client(start_emulator(seed=1).base_url)
    try:
        cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM, name="shared")
        strategy = GeminiStrategy(client, MODEL, cache=cache)
        exc = api_error(
            403, body(403, "CachedContent not found (or permission denied)", "PERMISSION_DENIED")
        )
        found = strategy.classify(exc)
        assert found is not None
        assert (found.kind, found.resource) == (sr.OutcomeKind.RESOURCE_LOST, "shared")
    finally:
        client.close()


def test_other_400s_and_404s_are_fatal() -> None:
    for code, message, status in [
        (
            400,
            "Cached content is too small. total_token_count=1, min_total_token_count=1024",
            "INVALID_ARGUMENT",
        ),
        (400, "* GenerateContentRequest.contents: contents is not specified", "INVALID_ARGUMENT"),
        (404, "Requested entity was not found.", "NOT_FOUND"),
        (501, "Not implemented", "UNIMPLEMENTED"),
    ]:
        assert outcome(api_error(code, body(code, message, status))).kind is sr.OutcomeKind.FATAL


@pytest.mark.parametrize("code", [408, 500, 502, 503, 504, 599])
def test_server_side_and_timeout_statuses_are_transient(code: int) -> None:
    exc = api_error(code, body(code, "try later", "UNAVAILABLE"))
    assert outcome(exc).kind is sr.OutcomeKind.TRANSIENT


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [("17s", 17.0), ("1.5s", 1.5), ("0.250s", 0.25), ("53.016342224s", 53.016342224)],
)
def test_a_429_waits_for_the_servers_retry_info(delay: str, seconds: float) -> None:
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    found = outcome(api_error(429, body(429, "quota", "RESOURCE_EXHAUSTED", details)))
    assert found.kind is sr.OutcomeKind.RATE_LIMITED
    assert found.retry_after == pytest.approx(seconds)


def test_a_429_falls_back_to_retry_after_then_to_the_message_then_to_none() -> None:
    response = httpx2.Response(429, headers={"Retry-After": "7"})
    exc = api_error(429, body(429, "quota", "RESOURCE_EXHAUSTED"), response)
    assert outcome(exc).retry_after == 7.0
    dated = httpx2.Response(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert outcome(api_error(429, body(429, "q", "RESOURCE_EXHAUSTED"), dated)).retry_after == 0.0
    worded = api_error(
        429, body(429, "Quota exceeded. Please retry in 53.5s.", "RESOURCE_EXHAUSTED")
    )
    assert outcome(worded).retry_after == 53.5
    bare = api_error(
        429,
        body(
            429,
            "daily quota",
            "RESOURCE_EXHAUSTED",
            [{"@type": "type.googleapis.com/google.rpc.Help"}],
        ),
    )
    found = outcome(bare)
    assert (found.kind, found.retry_after) == (sr.OutcomeKind.RATE_LIMITED, None)


def test_transport_failures_and_unreadable_bodies_are_transient() -> None:
    import aiohttp

    request = httpx2.Request("POST", "http://127.0.0.1:1/v1beta/models/m:generateContent")
    for exc in [
        httpx2.ConnectError("refused", request=request),
        httpx2.ReadTimeout("slow", request=request),
        httpx2.RemoteProtocolError("peer closed", request=request),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("cut"),
        TimeoutError(),
        ConnectionResetError(),
        json.JSONDecodeError("Expecting value", "<html>", 0),
    ]:
        assert outcome(exc).kind is sr.OutcomeKind.TRANSIENT, exc
    assert outcome(aiohttp.InvalidURL("nope")).kind is sr.OutcomeKind.FATAL
    assert classify(ValueError("a bug")) is None
    assert classify(KeyError("x")) is None


def test_messages_are_short_and_carry_no_key() -> None:
    huge = "<html>" + "x" * 5000 + "</html>"
    found = outcome(api_error(502, {"message": huge}))
    assert len(found.message) <= 300
    leaked = api_error(400, body(400, f"bad request for key={SECRET}&alt=json", "INVALID_ARGUMENT"))
    assert SECRET not in outcome(leaked).message
    assert "[redacted]" in outcome(leaked).message


def test_gemini_rules_are_both_a_sequence_of_rules_and_one_rule() -> None:
    # Usable wherever the engine takes rules: spread, or as one rule.
    whole: sr.Rule = gemini_rules
    rules: list[sr.Rule] = [*gemini_rules, whole]
    assert all(callable(r) for r in rules)
    exc = api_error(503, body(503, "overloaded", "UNAVAILABLE"))
    assert whole(exc) == classify(exc)
    assert next(r(exc) for r in gemini_rules if r(exc) is not None) == classify(exc)
    assert whole(ValueError("x")) is None
    assert len(gemini_rules) == 4


def test_user_rules_run_before_the_gemini_rules(
    start_emulator: Callable[..., GeminiEmulator],
) -> None:
    def overloaded_is_fatal(exc: BaseException) -> sr.Outcome | None:
        if isinstance(exc, errors.ServerError) and exc.code == 503:
            return sr.Outcome(sr.OutcomeKind.FATAL, "we give up on overload")
        return None

    client = make_client(start_emulator(seed=1).base_url)
    try:
        strategy = GeminiStrategy(client, MODEL, rules=[overloaded_is_fatal])
        overloaded = api_error(503, body(503, "overloaded", "UNAVAILABLE"))
        found = strategy.classify(overloaded)
        assert found is not None
        assert found.kind is sr.OutcomeKind.FATAL
        internal = strategy.classify(api_error(500, body(500, "oops", "INTERNAL")))
        assert internal is not None
        assert internal.kind is sr.OutcomeKind.TRANSIENT
    finally:
        client.close()


@pytest.mark.parametrize("schema", [None, Book], ids=["no-schema", "schema"])
async def test_an_answer_nested_too_deep_is_invalid_and_the_item_still_succeeds(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
    schema: type[Book] | None,
) -> None:
    # The answer's text nests 100,000 deep: past Python's recursion limit for any JSON parser.
    emulator = start_on_clock(seed=2)
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=schema)
    emulator.inject(Fault(kind=FaultKind.DEEP_ANSWER, at={2, 5}))
    if schema is not None:
        runner = ladder_runner(strategy, virtual_clock, concurrency=1)
    else:
        # Without a schema the emulator answers a sentence: any text is valid, the deep one not.
        runner = sr.Runner(sr.Plan.ladder(), strategy, validator=str, clock=virtual_clock)
    batch = await runner.run(items(6))
    assert batch.succeeded == 6
    bad = [
        a for r in batch.results for a in r.attempts if a.outcome is not sr.OutcomeKind.SUCCEEDED
    ]
    assert [a.outcome for a in bad] == [sr.OutcomeKind.INVALID] * 2
    assert all("nested" in (a.error or "") for a in bad)
    if schema is None:
        # The strategy got the text and the stage refused it: its tokens are counted.
        assert usage_of(batch) == billed(emulator)
