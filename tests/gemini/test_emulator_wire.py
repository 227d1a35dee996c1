"""Wire details: routing, timestamps, durations, the tokenizer, the public surface."""

from __future__ import annotations

import datetime as dt

import httpx2
import pytest

import strategies.gemini.emulator as emulator_package
from strategies.gemini.emulator import GeminiEmulator, count_tokens
from strategies.gemini.emulator._tokens import truncate_tokens
from strategies.gemini.emulator._wire import (
    ApiError,
    format_duration,
    format_timestamp,
    parse_duration,
    parse_timestamp,
)


def test_public_surface() -> None:
    assert sorted(emulator_package.__all__) == [
        "Api",
        "BACKEND",
        "BatchRecord",
        "EmulatorQuota",
        "EmulatorSection",
        "EmulatorSettings",
        "ExpiryStyle",
        "Fault",
        "FaultKind",
        "FaultSettings",
        "FlexSettings",
        "GeminiEmulator",
        "Ledger",
        "QuotaStats",
        "RequestRecord",
        "TierTotals",
        "Usage",
        "count_tokens",
        "credentials_info",
        "make_client",
        "make_vertex_client",
    ]


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1beta/nothing", "GET"),
        ("/v2/cachedContents", "GET"),
        ("/v1beta/cachedContents/abc", "POST"),
        ("/v1beta/models/gemini-2.5-flash:streamGenerateContent", "POST"),
    ],
)
def test_unknown_routes_are_json_404(
    path: str, method: str, emulator: GeminiEmulator, http: httpx2.Client
) -> None:
    answer = http.request(method, emulator.base_url + path)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json; charset=UTF-8"
    assert answer.json() == {
        "error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND"}
    }


def test_all_versions_are_served(emulator: GeminiEmulator, http: httpx2.Client) -> None:
    for version in ("v1", "v1beta", "v1alpha"):
        assert http.get(f"{emulator.base_url}/{version}/cachedContents").status_code == 200


def test_timestamps() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert format_timestamp(1.5) == "1970-01-01T00:00:01.500000Z"
    moment = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC).timestamp()
    for text in (
        "2030-01-02T03:04:05.678901Z",
        "2030-01-02T03:04:05.678901000Z",
        "2030-01-02T03:04:05.678901+00:00",
        "2030-01-02T05:04:05.678901+02:00",
        "2030-01-01T22:04:05.678901-05:00",
    ):
        assert parse_timestamp(text, "t") == pytest.approx(moment, abs=1e-6)
    assert parse_timestamp("2030-01-02T03:04:05Z", "t") == pytest.approx(moment - 0.678901)
    for bad in ("2030-01-02T03:04:05", "2030-13-02T03:04:05Z", "yesterday", 5):
        with pytest.raises(ApiError):
            parse_timestamp(bad, "t")


def test_durations() -> None:
    assert parse_duration("3600s", "ttl") == 3600
    assert parse_duration("3.5s", "ttl") == 3.5
    assert parse_duration("0.000000001s", "ttl") == pytest.approx(1e-9)
    for bad in ("-1s", "10", "1.5m", "s", 10):
        with pytest.raises(ApiError):
            parse_duration(bad, "ttl")
    assert format_duration(2) == "2s"
    assert format_duration(1.5) == "1.5s"
    assert format_duration(53.016342224) == "53.016342224s"


def test_tokenizer() -> None:
    assert count_tokens("") == 0
    assert count_tokens('{"a": 1}') == 7
    assert count_tokens("Hello, world!") == 4
    assert truncate_tokens("one two, three", 3) == "one two,"
    assert truncate_tokens("one two", 5) == "one two"
    assert truncate_tokens("one", 0) == ""


def test_lifecycle() -> None:
    emulator = GeminiEmulator()
    with pytest.raises(RuntimeError):
        _ = emulator.base_url
    url = emulator.start()
    assert url.startswith("http://127.0.0.1:")
    assert emulator.start() == url
    emulator.stop()
    emulator.stop()
    with pytest.raises(RuntimeError):
        emulator.start()
    with pytest.raises(ValueError, match="invalid_rate"):
        GeminiEmulator(invalid_rate=2)
