"""Failures of the run, not of an item: each real wire error, through the real SDK, stops the run.

The emulator answers each kind as the Gemini API does (docs/reference/gemini.md lists the
bodies and their sources); the run stops at the first one, sends at most what was already
in flight, and journals no item as final.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from google import genai
from google.genai import errors

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.gemini import GeminiContextCache, GeminiStrategy, classify, run_failure
from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import MODEL, Book, items, ladder_runner

KEY = "AIzaSyRight-key-0123456789-abcdefghijk"
WRONG = "AIzaSyWrong-key-0123456789-abcdefghijk"
SYSTEM = "You catalogue books. " * 400

# Each account fault, and what the stop says (the cause, then the server's own words).
ACCOUNT_FAULTS = [
    (FaultKind.KEY_BLOCKED, r"no permission \(API_KEY_SERVICE_BLOCKED\): 403 PERMISSION_DENIED"),
    (FaultKind.BILLING_DISABLED, r"billing is not enabled .*\(BILLING_DISABLED\): 403"),
    (FaultKind.NO_BILLING_ACCOUNT, r"billing is not enabled .*400 FAILED_PRECONDITION"),
    (FaultKind.UNAUTHENTICATED, r"credentials were not accepted .*401 UNAUTHENTICATED"),
    (
        FaultKind.DAILY_QUOTA,
        r"waiting cannot refill .*GenerateRequestsPerDayPerProjectPerModel-FreeTier.*429",
    ),
]


def generate_requests(emulator: GeminiEmulator) -> int:
    return sum(1 for r in emulator.ledger.requests if r.path.endswith(":generateContent"))


def assert_stopped(stopped: sr.RunStopped, total: int) -> sr.BatchResult:
    """Nothing is final for the run's failure: every result the stop caught is cancelled."""
    batch = stopped.batch
    assert batch is not None
    assert batch.counts[sr.ItemStatus.FAILED] == 0
    assert batch.counts[sr.ItemStatus.EXHAUSTED] == 0
    assert batch.items <= total
    for result in batch.results:
        assert result.status is sr.ItemStatus.CANCELLED
        assert (result.reason or "").startswith("run stopped: ")
        assert result.prompts == 0  # a refusal of the run spends no item's budget
    return batch


async def test_a_wrong_key_stops_at_the_first_answer_and_the_right_key_finishes(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
    tmp_path: Path,
) -> None:
    emulator = start_on_clock(3, api_key=KEY)
    journal_path = tmp_path / "journal.sqlite"
    wrong = GeminiStrategy(connect(emulator, api_key=WRONG), MODEL, response_schema=Book)

    runner = ladder_runner(wrong, virtual_clock, concurrency=8)
    with pytest.raises(sr.RunStopped) as stopped:
        await runner.run(items(200), journal=sr.Journal(journal_path))

    assert "the API key was rejected (API_KEY_INVALID)" in str(stopped.value)
    assert "API key not valid. Please pass a valid API key." in str(stopped.value)
    assert_stopped(stopped.value, 200)
    # The first refusal stops the run: only the requests already in flight were sent.
    assert 1 <= generate_requests(emulator) <= 8
    with sr.Journal(journal_path, runner.fingerprint) as journal:
        assert journal.done() == {}  # nothing final: the same run resumes all 200
        rows = journal.results()
        assert rows
        assert all(r.status is sr.ItemStatus.CANCELLED for r in rows)

    right = GeminiStrategy(connect(emulator, api_key=KEY), MODEL, response_schema=Book)
    batch = await ladder_runner(right, virtual_clock, concurrency=8).run(
        items(200), journal=sr.Journal(journal_path)
    )
    assert batch.succeeded == 200
    assert batch.resumed == 0


@pytest.mark.parametrize(("kind", "says"), ACCOUNT_FAULTS, ids=[k.value for k, _ in ACCOUNT_FAULTS])
async def test_each_failure_of_the_account_stops_the_run(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
    kind: FaultKind,
    says: str,
) -> None:
    emulator = start_on_clock(4)
    # The 21st request on meets it: the first twenty items end as they should.
    emulator.inject(Fault(kind=kind, at=range(21, 1000)))
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book)
    seen: list[sr.ItemResult] = []
    runner = sr.Runner(
        sr.Plan.ladder(),
        strategy,
        validator=sr.validators.pydantic(Book),
        clock=virtual_clock,
        concurrency=4,
        on_result=seen.append,
    )

    with pytest.raises(sr.RunStopped, match=says) as stopped:
        await runner.run(items(100))

    batch = stopped.value.batch
    assert batch is not None
    assert batch.succeeded == 20  # finished results are kept, not lost with the stop
    # The same results; the batch's in input order, on_result's as they ended.
    order = {item_id: n for n, (item_id, _) in enumerate(items(100))}
    assert [r for r in batch.results if r.ok] == sorted(
        (r for r in seen if r.ok), key=lambda r: order[r.id]
    )
    assert all(r.status is sr.ItemStatus.CANCELLED for r in batch.results if not r.ok)
    assert 1 <= generate_requests(emulator) - 20 <= 4
    assert batch.counts[sr.ItemStatus.FAILED] == 0


async def test_an_unknown_model_stops_the_run_with_the_apis_404(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(5, models=[MODEL])
    strategy = GeminiStrategy(connect(emulator), "gemini-pro", response_schema=Book)

    with pytest.raises(sr.RunStopped) as stopped:
        await ladder_runner(strategy, virtual_clock, concurrency=2).run(items(50))

    assert str(stopped.value).startswith(
        "the model was not found: 404 NOT_FOUND: models/gemini-pro"
    )
    assert "is not found for API version v1beta" in str(stopped.value)
    assert_stopped(stopped.value, 50)
    assert generate_requests(emulator) <= 2


async def test_a_stream_yields_what_ended_then_raises_the_stop(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(6)
    emulator.inject(Fault(kind=FaultKind.BILLING_DISABLED, at=range(6, 1000)))
    strategy = GeminiStrategy(connect(emulator), MODEL, response_schema=Book)
    got: list[sr.ItemResult] = []

    async def read(stream: sr.ResultStream[Book]) -> None:
        async for result in stream:
            got.append(result)

    async with ladder_runner(strategy, virtual_clock, concurrency=1).stream(items(30)) as stream:
        with pytest.raises(sr.RunStopped, match="billing") as stopped:
            await read(stream)

    assert [r.status for r in got] == [sr.ItemStatus.SUCCEEDED] * 5 + [sr.ItemStatus.CANCELLED]
    assert stream.batch is not None
    assert stream.batch is stopped.value.batch
    assert stream.batch.items == 6
    assert generate_requests(emulator) == 6


async def test_a_cache_that_a_wrong_key_cannot_make_stops_the_run(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    emulator = start_on_clock(7, api_key=KEY)
    client = connect(emulator, api_key=WRONG)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)

    with pytest.raises(sr.ResourceError) as stopped:
        await ladder_runner(strategy, virtual_clock, cache=cache, concurrency=4).run(items(40))

    assert isinstance(stopped.value, sr.RunStopped)
    assert "could not prepare resource 'gemini_cache': the API key was rejected" in str(
        stopped.value
    )
    assert isinstance(stopped.value.__cause__, sr.StopRun)
    assert_stopped(stopped.value, 40)
    assert generate_requests(emulator) == 0
    assert len(emulator.ledger.requests) == 1  # one cache lookup, not one per item


async def test_a_cache_gone_is_still_renewed_not_a_stop(
    start_on_clock: Callable[..., GeminiEmulator],
    connect: Callable[..., genai.Client],
    virtual_clock: VirtualClock,
) -> None:
    # The 403 of a missing cache reads like a permission error: it must stay RESOURCE_LOST.
    emulator = start_on_clock(8)
    client = connect(emulator)
    cache = GeminiContextCache(client, MODEL, system_instruction=SYSTEM)
    strategy = GeminiStrategy(client, MODEL, cache=cache, response_schema=Book)
    emulator.inject(Fault(kind=FaultKind.CACHE_DROPPED, at=3))

    batch = await ladder_runner(strategy, virtual_clock, cache=cache, concurrency=2).run(items(10))

    assert batch.succeeded == 10
    lost = [
        a for r in batch.results for a in r.attempts if a.outcome is sr.OutcomeKind.RESOURCE_LOST
    ]
    assert len(lost) >= 1


def _api_error(
    code: int, message: str, status: str, details: list[object] | None = None
) -> errors.APIError:
    error: dict[str, object] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return errors.APIError(code, {"error": error})


@pytest.mark.parametrize(
    ("code", "message", "status", "details", "stops"),
    [
        # A per-minute quota is waited out; a per-day one (or a quota of 0) is not.
        (
            429,
            "You exceeded your current quota",
            "RESOURCE_EXHAUSTED",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"}
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "15s"},
            ],
            False,
        ),
        (
            429,
            "You exceeded your current quota",
            "RESOURCE_EXHAUSTED",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"},
                        {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"},
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "47s"},
            ],
            True,
        ),
        (
            429,
            "Quota exceeded for metric: generate_content_free_tier_requests, limit: 0",
            "RESOURCE_EXHAUSTED",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {"quotaMetric": "m", "quotaId": "X-FreeTier", "quotaValue": "0"}
                    ],
                }
            ],
            True,
        ),
        (400, "API Key not found. Please pass a valid API key.", "INVALID_ARGUMENT", None, True),
        (
            403,
            "Your API key was reported as leaked. Please use another API key.",
            "PERMISSION_DENIED",
            None,
            True,
        ),
        (403, "CachedContent not found (or permission denied)", "PERMISSION_DENIED", None, False),
        (400, "Cache content 5025785736947826688 is expired.", "INVALID_ARGUMENT", None, False),
        (
            404,
            "models/gemini-1.0-pro is not found for API version v1, or is not supported for "
            "generateContent.",
            "NOT_FOUND",
            None,
            True,
        ),
        (404, "Requested entity was not found.", "NOT_FOUND", None, False),
        (400, "Invalid JSON payload received.", "INVALID_ARGUMENT", None, False),
    ],
)
def test_what_stops_the_run_and_what_does_not(
    code: int, message: str, status: str, details: list[object] | None, stops: bool
) -> None:
    exc = _api_error(code, message, status, details)
    found = classify(exc)
    assert found is not None
    assert (found.kind is sr.OutcomeKind.STOP_RUN) is stops
    assert (run_failure(exc) is not None) is stops
