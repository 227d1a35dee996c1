"""The server's clock from the answers' own times and ``Date`` headers; the winner rule.

Pure functions, so properties: the estimate never puts the server's now earlier than it
is (a renewal may come early, never late), and every process picks the same cache.
"""

from __future__ import annotations

import email.utils
import math

from hypothesis import given
from hypothesis import strategies as st

from strategies.gemini._converge import Candidate, winner
from strategies.gemini._server_clock import (
    DATE_RESOLUTION,
    Reading,
    ServerClock,
    from_date,
    from_time,
    header,
)

offsets = st.floats(min_value=-86_400.0, max_value=86_400.0)
locals_ = st.floats(min_value=1.6e9, max_value=2.1e9)
trips = st.floats(min_value=0.0, max_value=5.0)
fractions = st.floats(min_value=0.0, max_value=1.0)


def date_headers(server_time: float, key: str = "Date") -> dict[str, str]:
    return {key: email.utils.formatdate(server_time, usegmt=True)}


@given(offset=offsets, sent=locals_, trip=trips, at=fractions)
def test_a_date_reading_holds_the_true_offset_within_a_second_and_the_trip(
    offset: float, sent: float, trip: float, at: float
) -> None:
    received = sent + trip
    stamped = sent + at * trip  # when, on our clock, the server dated its answer
    reading = from_date(date_headers(stamped + offset), sent=sent, received=received)
    assert reading is not None
    # Float rounding of epoch seconds near 2e9 is about a microsecond.
    assert reading.low - 1e-5 <= offset <= reading.high + 1e-5
    assert reading.high - offset <= DATE_RESOLUTION + trip + 1e-5


@given(offset=offsets, sent=locals_, trip=trips, at=fractions)
def test_a_time_the_server_set_bounds_the_offset_by_the_trip(
    offset: float, sent: float, trip: float, at: float
) -> None:
    stamped = sent + at * trip
    reading = from_time(stamped + offset, sent=sent, received=sent + trip)
    assert reading is not None
    assert reading.low - 1e-5 <= offset <= reading.high + 1e-5
    assert reading.high - reading.low <= trip + 1e-5


@given(offset=offsets, sent=locals_, trips_=st.lists(trips, min_size=1, max_size=6), at=fractions)
def test_readings_that_agree_narrow_and_still_hold_the_truth(
    offset: float, sent: float, trips_: list[float], at: float
) -> None:
    clock = ServerClock()
    widths = []
    for n, trip in enumerate(trips_):
        start = sent + 10.0 * n
        stamped = start + at * trip
        clock.observe(from_date(date_headers(stamped + offset), sent=start, received=start + trip))
        assert clock.bounds is not None
        widths.append(clock.bounds.high - clock.bounds.low)
        assert clock.bounds.low - 1e-5 <= offset <= clock.bounds.high + 1e-5
        assert clock.offset >= offset - 1e-5  # never later than the truth: never a late renewal
    assert widths == sorted(widths, reverse=True)
    assert clock.readings == len(trips_)


def test_a_reading_that_disagrees_replaces_the_bounds() -> None:
    clock = ServerClock()
    assert clock.offset == 0.0  # nothing known: the clocks are taken to agree
    clock.observe(Reading(low=2399.5, high=2400.5))
    clock.observe(Reading(low=-10.0, high=-9.0))  # the server's clock was corrected
    assert clock.bounds == Reading(low=-10.0, high=-9.0)
    assert clock.now(1000.0) == 991.0


def test_a_missing_or_garbled_date_is_no_reading() -> None:
    assert from_date(None, sent=0.0, received=0.0) is None
    assert from_date({"Server": "x"}, sent=0.0, received=0.0) is None
    assert from_date({"Date": "tomorrow-ish"}, sent=0.0, received=0.0) is None
    assert from_date({"Date": "Sun, 06 Nov 1994 08:49:37 -0000"}, sent=0.0, received=0.0) is None
    assert from_time(None, sent=0.0, received=0.0) is None
    clock = ServerClock()
    clock.observe(None)
    assert (clock.bounds, clock.readings) == (None, 0)


def test_the_date_header_is_found_in_any_case() -> None:
    moment = 1_800_000_000.0
    for key in ("Date", "date", "DATE"):
        assert header(date_headers(moment, key), "date") is not None
        reading = from_date(date_headers(moment, key), sent=moment, received=moment)
        assert reading == Reading(low=0.0, high=1.0)


# -- the winner --------------------------------------------------------------------------------

candidates = st.lists(
    st.builds(
        Candidate,
        name=st.sampled_from([f"cachedContents/{c}" for c in "abcdefgh"]),
        create_time=st.one_of(st.none(), st.integers(0, 5).map(float)),
        expire_time=st.one_of(st.none(), st.integers(0, 10).map(float)),
        item=st.none(),
    ),
    max_size=8,
    unique_by=lambda c: c.name,
)


@given(seen=candidates, order=st.randoms(use_true_random=False), now=st.integers(0, 10))
def test_every_process_picks_the_same_winner_whatever_the_order_it_sees(
    seen: list[Candidate[None]], order: object, now: int
) -> None:
    shuffled = list(seen)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    first, second = winner(seen, server_now=now), winner(shuffled, server_now=now)
    assert (first.name if first else None) == (second.name if second else None)
    live = [c for c in seen if c.expire_time is None or c.expire_time > now]
    if not live:
        assert first is None
        return
    assert first is not None
    key = first.create_time if first.create_time is not None else math.inf
    for other in live:
        other_key = other.create_time if other.create_time is not None else math.inf
        assert (key, first.name) <= (other_key, other.name)


def test_the_oldest_wins_then_the_name_and_the_dead_never() -> None:
    def c(name: str, created: float | None, expires: float | None = 100.0) -> Candidate[None]:
        return Candidate(name=name, create_time=created, expire_time=expires, item=None)

    def pick(*seen: Candidate[None], now: float = 0.0) -> str | None:
        chosen = winner(seen, server_now=now)
        return chosen.name if chosen is not None else None

    assert pick(c("b", 5.0), c("a", 6.0)) == "b"
    assert pick(c("b", 5.0), c("a", 5.0)) == "a"
    assert pick(c("b", None), c("a", 9.0)) == "a"
    assert pick(c("old", 1.0, expires=50.0), c("new", 9.0), now=50.0) == "new"
    assert pick() is None
