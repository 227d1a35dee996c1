"""A key hidden anywhere in what a shared resource raises (its cause, its context, a note, a
group's member, a changed letter case) never shows in the error the caller gets, nor in its
traceback: a :class:`ResourceError` drops a cause that would show it."""

from __future__ import annotations

import string
import traceback
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry.testing import ScriptedStrategy, VirtualClock

keys = st.text(string.ascii_letters + string.digits + "-_", min_size=12, max_size=48)
PLACES = ("cause", "context", "note", "group", "deep_cause", "cause_upper")


def _raise(place: str, key: str) -> None:
    if place == "cause":
        raise RuntimeError("the cache was refused") from ValueError(f"body: {key}")
    if place == "cause_upper":
        raise RuntimeError("the cache was refused") from ValueError(f"BODY: {key.upper()}")
    if place == "deep_cause":
        inner = OSError(f"GET /v1beta/cachedContents?key={key}")
        middle = ConnectionError("reset")
        middle.__cause__ = inner
        raise RuntimeError("the cache was refused") from middle
    if place == "context":
        try:
            raise ValueError(f'{{"error": {{"message": "key {key} is bad"}}}}')
        except ValueError:
            raise RuntimeError("the cache was refused")  # noqa: B904 - the context is the point
    if place == "note":
        error = RuntimeError("the cache was refused")
        error.add_note(f"while calling https://example.com/?key={key}")
        raise error
    raise ExceptionGroup("the cache was refused", [RuntimeError(f"key={key}")])


class Failing:
    """A resource whose *when* (prepare or close) raises with the key at *place*."""

    name = "cache"

    def __init__(self, when: str, place: str, key: str) -> None:
        self.when, self.place, self.key = when, place, key

    def secrets(self) -> tuple[str, ...]:
        return (self.key,)

    async def prepare(self, clock: sr.Clock) -> Any:
        if self.when == "prepare":
            _raise(self.place, self.key)
        return "handle"

    def needs_renewal(self, handle: Any, clock: sr.Clock) -> bool:
        return False

    async def renew(self, handle: Any, reason: sr.RenewReason, clock: sr.Clock) -> Any:
        return handle

    async def close(self, handle: Any) -> None:
        if self.when == "close":
            _raise(self.place, self.key)


def _shown(error: BaseException) -> str:
    return repr(error) + "".join(traceback.format_exception(error))


async def _caught(key: str, place: str, when: str) -> str:
    """What the caller is shown of the error a resource raised with *key* at *place*."""
    strategy = ScriptedStrategy()
    runner = sr.Runner(
        sr.Plan.ladder(),
        strategy,
        validator=strategy.validator(),
        clock=VirtualClock(),
        resources=[Failing(when, place, key)],
        secrets=(),
    )
    caught: BaseException | None = None
    try:
        async with runner:
            await runner.run([("a", "prompt")])
    except (sr.ResourceError, ExceptionGroup) as error:
        caught = error
    assert caught is not None
    return _shown(caught)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=keys, place=st.sampled_from(PLACES), when=st.sampled_from(["prepare", "close"]))
async def test_no_piece_of_the_key_reaches_the_caller_through_a_resource_error(
    key: str, place: str, when: str
) -> None:
    # A key that shares a fragment with what is shown anyway (file paths hold "stagedretry":
    # a key "000GEDRETRY0" would) says nothing about a leak.
    assume(not sr.Secrets([key]).found(await _caught("~" * 12, place, when)))
    assert not sr.Secrets([key]).found(await _caught(key, place, when))


async def test_a_cause_without_the_key_is_kept() -> None:
    class Plain(Failing):
        async def prepare(self, clock: sr.Clock) -> Any:
            raise RuntimeError("refused") from ValueError("quota")

    strategy = ScriptedStrategy()
    runner = sr.Runner(
        sr.Plan.ladder(),
        strategy,
        validator=strategy.validator(),
        clock=VirtualClock(),
        resources=[Plain("prepare", "cause", "k" * 20)],
    )
    with pytest.raises(sr.ResourceError) as stopped:
        await runner.run([("a", "prompt")])
    assert isinstance(stopped.value.__cause__, RuntimeError)
