"""The emulator's quota counters: what it serves never breaks a quota, and it refuses only
what would, with a ``RetryInfo`` after which the refused request is served.

Pure arithmetic on an injected clock (no HTTP): the emulator is the judge the admission
tests are measured against, so its own invariants are checked by themselves.
"""

from __future__ import annotations

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from strategies.gemini._errors import parse_duration
from strategies.gemini.emulator import EmulatorQuota
from strategies.gemini.emulator._quota import QuotaBook

START = datetime.datetime(2026, 11, 30, 22, 0, tzinfo=datetime.UTC).timestamp()

steps = st.lists(
    st.tuples(st.floats(0.0, 3.0, allow_nan=False), st.integers(0, 60), st.sampled_from("ab")),
    min_size=1,
    max_size=120,
)


def retry_delay(error: object) -> float:
    details = error.details  # type: ignore[attr-defined]
    (delay,) = [d["retryDelay"] for d in details if d["@type"].endswith("RetryInfo")]
    seconds = parse_duration(delay)
    assert seconds is not None
    return seconds


@settings(max_examples=150, deadline=None)
@given(
    steps,
    st.integers(1, 8),
    st.integers(60, 200),
    st.integers(1, 5),
)
def test_served_requests_never_break_a_quota_and_refusals_are_needed(
    sequence: list[tuple[float, int, str]], rpm: int, tpm: int, minute: int
) -> None:
    book = QuotaBook(EmulatorQuota(rpm=rpm, tpm=tpm, minute=minute))
    now = START
    served: dict[str, list[tuple[float, int]]] = {"a": [], "b": []}
    for gap, tokens, model in sequence:
        now += gap
        window = [(t, n) for t, n in served[model] if t > now - minute]
        error = book.admit(model, tokens, now)
        if error is None:
            served[model].append((now, tokens))
            window.append((now, tokens))
            assert len(window) <= rpm
            assert sum(n for _, n in window) <= tpm
            continue
        # Refused: serving it would have broken the RPM or the TPM.
        assert len(window) >= rpm or sum(n for _, n in window) + tokens > tpm
        delay = retry_delay(error)
        assert 0 < delay <= minute + 0.001
        # Asked again once the advised wait is over (and nothing else came), it is served.
        now += delay
        assert book.admit(model, tokens, now) is None
        served[model].append((now, tokens))
    stats = book.stats()
    assert len(stats.served) == sum(len(v) for v in served.values())


def test_the_day_counter_resets_at_midnight_pacific_time() -> None:
    book = QuotaBook(EmulatorQuota(rpd=1))
    before = datetime.datetime(2026, 12, 1, 7, 59, tzinfo=datetime.UTC).timestamp()
    assert book.admit("m", 1, before) is None
    refused = book.admit("m", 1, before + 30)
    assert refused is not None
    assert "GenerateRequestsPerDayPerProjectPerModel" in str(refused.details)
    # 08:00 UTC is midnight PST: a new day.
    assert book.admit("m", 1, before + 60) is None
    assert book.stats().refused == {"GenerateRequestsPerDayPerProjectPerModel": 1}


def test_achieved_counts_requests_per_window_as_the_quota_does() -> None:
    book = QuotaBook(EmulatorQuota(rpm=10, minute=10))
    # Ten at once, then ten more as soon as the window has room, then ten more.
    for start in (0.0, 10.0, 20.0):
        for i in range(10):
            assert book.admit("m", 3, START + start + i * 0.01) is None
    requests, tokens = book.stats().achieved(10)
    assert abs(requests - 10) < 1e-9
    assert abs(tokens - 30) < 1e-9
    # A run shorter than one window has no full window to measure.
    assert QuotaBook(EmulatorQuota(rpm=5)).stats().achieved(10) == (0.0, 0.0)
