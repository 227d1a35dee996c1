"""Masking secrets: any case, any piece, the echoed forms; text only, never structure.

The properties hold the rule to its promise for random keys and random server
bodies: no run of ``min_length`` characters of any form of the key survives,
and masking plain data never changes a key, a number or the data's shape.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry._journal import Journal
from stagedretry._redact import MIN_FRAGMENT, REDACTED, Secrets, fold, mask_result
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable

KEY = "AIzaSyD-test-0123456789_abcdefghijklm"  # the shape of a Gemini key: 39 characters

# -- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "echoed",
    [
        KEY,
        KEY.upper(),
        KEY.lower(),
        KEY.swapcase(),
        "".join(c.upper() if i % 3 else c for i, c in enumerate(KEY.lower())),
        KEY[10:18],  # any piece of 8
        KEY[3:30].upper(),
        KEY[::-1],  # reversed
        quote("prefix/" + KEY, safe=""),  # percent-encoded, inside a longer value
        json.dumps({"k": KEY})[7:-1],
        base64.b64encode(f"user:{KEY}".encode()).decode(),  # basic auth
        base64.urlsafe_b64encode(f"xy{KEY}".encode()).decode(),
    ],
)
def test_every_form_of_the_key_is_masked(echoed: str) -> None:
    secrets = Secrets([KEY])
    masked = secrets.text(f"error: caller {echoed} refused")
    assert REDACTED in masked
    assert masked.startswith("error: caller ")
    assert masked.endswith(" refused")
    assert not secrets.found(masked)


def test_the_public_prefix_and_short_pieces_are_left_alone() -> None:
    secrets = Secrets([KEY])
    # Every Gemini key starts with AIzaSy: that alone (6) or with one more character is no key.
    text = f"keys look like AIzaSy..., AIZASYD, and {KEY[10:17]}"
    assert secrets.text(text) == text


def test_a_secret_shorter_than_the_minimum_is_not_searched_for() -> None:
    secrets = Secrets(["k", "status", None, ""])
    assert not secrets
    assert secrets.skipped == (1, 6)
    text = '{"blocked": true, "status": "ok"}'
    assert secrets.text(text) == text
    assert list(secrets) == []


@pytest.mark.parametrize("key", ["a+b*c?(d)[e]{f}|g^h$i.j\\k", "(.*)(.*)(.*)", "[redacted]-key"])
def test_keys_with_regex_metacharacters_or_the_marker_itself(key: str) -> None:
    secrets = Secrets([key])
    masked = secrets.text(f"x {key.upper()} y {key} z")
    assert not secrets.found(masked)
    assert masked.startswith("x ")
    assert masked.endswith(" z")
    assert fold(key) not in fold(masked)


def test_masking_is_idempotent_and_a_marker_never_meets_a_fragment() -> None:
    secrets = Secrets([KEY])
    once = secrets.text(f"{KEY}{KEY[:12]}...{KEY[20:].upper()}")
    assert once == f"{REDACTED}...{REDACTED}"
    assert secrets.text(once) == once


def test_the_secrets_never_show_in_their_repr_or_str() -> None:
    secrets = Secrets([KEY, "pw7"])
    for shown in (repr(secrets), str(secrets)):
        assert KEY not in shown
        assert "pw7" not in shown
    assert repr(secrets) == "Secrets(1 hidden, 1 too short)"


def test_the_environment_gives_the_default_keys() -> None:
    environ = {"GEMINI_API_KEY": f"  {KEY}\n", "GOOGLE_API_KEY": "x", "OTHER": "AIzaSyOther-012345"}
    secrets = Secrets.from_environment(["given-secret-1"], environ=environ)
    assert sorted(secrets) == sorted([KEY, "given-secret-1"])
    assert secrets.skipped == (1,)
    assert secrets.union(["another-secret"]).skipped == (1,)


def test_min_length_is_a_setting_with_a_floor() -> None:
    assert Secrets(["abcdef"], min_length=6).text("..ABCDEF..") == f"..{REDACTED}.."
    with pytest.raises(ValueError, match="at least 4"):
        Secrets([KEY], min_length=3)


def test_a_long_text_is_scanned_in_linear_time() -> None:
    secrets = Secrets([KEY])
    small = ("lorem ipsum " * 1_000 + KEY.upper()) * 2
    big = small * 50
    started = time.perf_counter()
    secrets.text(small)
    first = time.perf_counter() - started
    started = time.perf_counter()
    masked = secrets.text(big)
    second = time.perf_counter() - started
    assert masked.count(REDACTED) == 100
    # 50 times the text: far less than 50**2 times the work (generous for a busy machine).
    assert second < max(first, 1e-4) * 500


# -- leaves: text only, never structure --------------------------------------------------------


def test_leaves_keep_keys_numbers_and_shape() -> None:
    secrets = Secrets(["blocked-key", "finish_reason"])
    data = {
        "blocked-key": True,
        "finish_reason": "FINISH_REASON was finish_reason",
        "n": [1, 2.5, None, ("BLOCKED-KEY",)],
    }
    assert secrets.leaves(data) == {
        "blocked-key": True,
        "finish_reason": f"{REDACTED} was {REDACTED}",
        "n": [1, 2.5, None, (REDACTED,)],
    }


def test_leaves_go_deeper_than_the_interpreter_stack() -> None:
    secrets = Secrets([KEY])
    deep: Any = KEY
    for _ in range(50_000):
        deep = [deep]
    masked = secrets.leaves(deep)
    for _ in range(50_000):
        masked = masked[0]
    assert masked == REDACTED


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=15), inner, max_size=4)
    ),
    max_leaves=25,
)


def _keys_of(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(k for v in value.values() for k in _keys_of(v))]
    if isinstance(value, list):
        return [k for v in value for k in _keys_of(v)]
    return []


def _same_shape(before: Any, after: Any, secrets: Secrets) -> None:
    if isinstance(before, dict):
        assert isinstance(after, dict)
        assert list(before) == list(after)
        for key in before:
            _same_shape(before[key], after[key], secrets)
    elif isinstance(before, list):
        assert isinstance(after, list)
        assert len(after) == len(before)
        for b, a in zip(before, after, strict=True):
            _same_shape(b, a, secrets)
    elif isinstance(before, str):
        assert after == secrets.text(before)
    else:
        assert after == before
        assert type(after) is type(before)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), value=_json)
def test_masking_never_changes_the_structure_of_json_data(data: st.DataObject, value: Any) -> None:
    # The secret is often one of the data's own keys, or a piece of them.
    keys = [k for k in _keys_of(value) if len(k) >= MIN_FRAGMENT]
    secret = data.draw(
        st.sampled_from(keys) | st.text(min_size=MIN_FRAGMENT, max_size=20)
        if keys
        else st.text(min_size=MIN_FRAGMENT, max_size=20)
    )
    secrets = Secrets([secret])
    masked = secrets.leaves(value)
    _same_shape(value, masked, secrets)
    assert json.loads(json.dumps(masked)) == masked


# -- the property: no piece of the key survives ------------------------------------------------

_KEY_CHARS = st.characters(codec="ascii", categories=("L", "N", "P", "S"))


def _random_case(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.swapcase() if flip else c for c, flip in zip(text, flips, strict=True))


FORMS = ("as is", "upper", "lower", "random", "reversed", "url", "json")


@st.composite
def key_and_body(draw: st.DrawFn) -> tuple[str, str]:
    """A random key, and a server body carrying transformed pieces of it among random text."""
    key = draw(st.text(_KEY_CHARS, min_size=MIN_FRAGMENT, max_size=48))
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(key) - MIN_FRAGMENT))
        piece = key[start : draw(st.integers(start + MIN_FRAGMENT, len(key)))]
        form = draw(st.sampled_from(FORMS))
        if form == "upper":
            piece = piece.upper()
        elif form == "lower":
            piece = piece.lower()
        elif form == "random":
            piece = _random_case(draw, piece)
        elif form == "reversed":
            piece = piece[::-1]
        elif form == "url":
            piece = quote(piece, safe="")
        elif form == "json":
            piece = json.dumps(piece)[1:-1]
        parts += [draw(st.text(max_size=12)), piece]
    parts.append(draw(st.text(max_size=12)))
    return key, "".join(parts)


def _strings(value: Any) -> list[str]:
    """Every string value in plain data (mapping keys left out)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _survivors(key: str, text: str) -> list[str]:
    """Pieces of *key* (any case, as is, reversed, URL- or JSON-escaped) found in *text*."""
    low = fold(text)
    found = []
    for shown in (key, key[::-1], quote(key, safe=""), json.dumps(key)[1:-1]):
        form = fold(shown)
        found += [
            form[i : i + MIN_FRAGMENT]
            for i in range(len(form) - MIN_FRAGMENT + 1)
            if form[i : i + MIN_FRAGMENT] in low
        ]
    return found


@settings(max_examples=300, deadline=None)
@given(key_and_body())
def test_no_piece_of_the_key_survives_in_any_form(case: tuple[str, str]) -> None:
    key, body = case
    secrets = Secrets([key])
    masked = secrets.text(body)
    assert _survivors(key, masked) == []
    assert not secrets.found(masked)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key_and_body(), st.sampled_from(["reason", "error", "output", "message", "invalid"]))
def test_no_piece_of_the_key_survives_a_journal_write_and_read(
    case: tuple[str, str], where: str
) -> None:
    key, body = case
    meta = sr.ResponseMeta(finish_reason="STOP", blocked=False, model_version=body)
    result = sr.ItemResult(
        "item-1",
        sr.ItemStatus.FAILED,
        output={"answer": [body]} if where == "output" else None,
        final_stage="full",
        prompts=1,
        attempts=(sr.Attempt("full", sr.OutcomeKind.FATAL, 1, True, meta=meta, error=body),),
        reason=body if where == "reason" else "failed",
        errors=(sr.FieldError(("title",), body),) if where == "message" else (),
        last_invalid=body if where == "invalid" else None,
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "journal.sqlite"
        with Journal(path, "fp", secrets=[key]) as journal:
            run = journal.begin_run()
            journal.record(result, line=1, digest="d", run=run)
            journal.end_run(run, {"note": body})
            (entry,) = journal.entries()
        db = sqlite3.connect(path)
        try:
            rows = [r[0] for r in db.execute("SELECT result FROM results")]
            rows += [r[0] for r in db.execute("SELECT stats FROM runs")]
        finally:
            db.close()
    for row in rows:
        # The text of the row, not its field names: a key may be a piece of "model_version".
        for text in _strings(json.loads(row)):
            assert _survivors(key, text) == [], row
    assert entry.result.id == "item-1"
    assert entry.result.status is sr.ItemStatus.FAILED
    assert entry.result.attempts[0].meta is not None
    assert entry.result.attempts[0].meta.finish_reason == "STOP"


# -- a result, field by field ------------------------------------------------------------------


@pytest.mark.parametrize("key", ["finish_reason", "safety_ratings", "succeeded", "attempts"])
def test_a_key_equal_to_a_field_name_or_status_leaves_the_row_loadable(
    tmp_path: Path, key: str
) -> None:
    meta = sr.ResponseMeta(finish_reason="SAFETY", safety_ratings={"HARM": "LOW"}, blocked=True)
    result = sr.ItemResult(
        "a",
        sr.ItemStatus.SUCCEEDED,
        output={key: f"says {key}"},
        final_stage="full",
        prompts=1,
        attempts=(sr.Attempt("full", sr.OutcomeKind.SUCCEEDED, 1, True, meta=meta),),
    )
    with Journal(tmp_path / "j.sqlite", "fp", secrets=[key]) as journal:
        journal.record(result, line=1, digest="d", run=journal.begin_run())
        (back,) = journal.results()
    assert back.status is sr.ItemStatus.SUCCEEDED
    assert back.output == {key: f"says {REDACTED}"}
    assert back.attempts[0].outcome is sr.OutcomeKind.SUCCEEDED
    assert back.attempts[0].meta == meta


def test_mask_result_masks_text_and_keeps_structure() -> None:
    secrets = Secrets([KEY])
    result = sr.ItemResult(
        KEY,  # an id is structure: the caller's own, kept
        sr.ItemStatus.FAILED,
        output=f"echo {KEY.lower()}",
        reason=f"400: {KEY.upper()}",
        errors=(sr.FieldError((KEY,), f"bad {KEY}"),),
        last_invalid={"text": KEY},
        attempts=(sr.Attempt("full", sr.OutcomeKind.FATAL, 1, True, error=KEY[5:25]),),
    )
    masked = mask_result(result, secrets)
    assert masked.id == KEY
    assert masked.errors[0].path == (KEY,)
    assert masked.output == f"echo {REDACTED}"
    assert masked.reason == f"400: {REDACTED}"
    assert masked.errors[0].message == f"bad {REDACTED}"
    assert masked.last_invalid == {"text": REDACTED}
    assert masked.attempts[0].error == REDACTED


# -- the runner: one rule for errors, reasons, logs and resources ------------------------------

PLAN = sr.Plan(stages=[sr.Stage("full")], max_prompts=2)


class Refusing:
    """A strategy whose server quotes the key back, upper-cased, and that says which key."""

    params_type = None

    def __init__(self, key: str, *, holds: bool) -> None:
        self._key = key
        self._holds = holds

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        raise sr.FatalError(f"403 caller {self._key.upper()} is not allowed")

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None

    def secrets(self) -> tuple[str, ...]:
        return (self._key,) if self._holds else ()


async def _run(runner: sr.Runner[Any]) -> tuple[sr.ItemResult, list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as events:
        batch = await runner.run([("a", "prompt")])
    (result,) = batch.results
    return result, events


def _no_key(key: str, *texts: object) -> None:
    for text in texts:
        assert _survivors(key, str(text)) == [], text


async def test_the_runner_masks_errors_reasons_and_log_events(virtual_clock: VirtualClock) -> None:
    logger = structlog.get_logger("test")
    runner = sr.Runner(
        PLAN, Refusing(KEY, holds=False), secrets=[KEY], clock=virtual_clock, logger=logger
    )
    result, events = await _run(runner)
    assert result.status is sr.ItemStatus.FAILED
    assert result.reason == f"403 caller {REDACTED} is not allowed"
    assert result.attempts[0].error == result.reason
    assert any(e["event"] == "attempt" for e in events)
    _no_key(KEY, result, events)


async def test_the_runner_takes_the_environment_keys_and_what_the_strategy_holds(
    monkeypatch: pytest.MonkeyPatch, virtual_clock: VirtualClock
) -> None:
    from_env = "AIzaSyFromTheEnvironment-0123456789ab"
    monkeypatch.setenv("GEMINI_API_KEY", from_env)
    result, _ = await _run(sr.Runner(PLAN, Refusing(from_env, holds=False), clock=virtual_clock))
    _no_key(from_env, result)
    monkeypatch.delenv("GEMINI_API_KEY")
    runner = sr.Runner(PLAN, Refusing(KEY, holds=True), clock=virtual_clock)
    assert sorted(runner.secrets) == [KEY]
    result, _ = await _run(runner)
    _no_key(KEY, result)
    # secrets=() turns off the environment's keys, not what the strategy holds.
    monkeypatch.setenv("GEMINI_API_KEY", from_env)
    assert list(sr.Runner(PLAN, Refusing(KEY, holds=True), secrets=()).secrets) == [KEY]


async def test_a_short_secret_warns_once_and_masks_nothing(
    monkeypatch: pytest.MonkeyPatch, virtual_clock: VirtualClock
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    with structlog.testing.capture_logs() as built:
        runner = sr.Runner(PLAN, from_callable(lambda r, c: _answer("kkk")), clock=virtual_clock)
    assert [e["event"] for e in built] == ["secret_too_short"]
    assert built[0]["log_level"] == "warning"
    assert "k" not in str(built[0]["secrets"])
    result, events = await _run(runner)
    assert result.output == "kkk"
    assert not any(e["event"] == "secret_too_short" for e in events)
    # Given as a Secrets the caller made, it was the caller's to warn about.
    with structlog.testing.capture_logs() as again:
        sr.Runner(PLAN, from_callable(lambda r, c: _answer("x")), secrets=Secrets(["k"]))
    assert again == []


async def _answer(text: str) -> str:
    return text


class LeakyResource:
    """A shared resource whose server echoes the key when asked to prepare (or renew) it."""

    name = "cache"

    def __init__(self, *, on: str = "prepare") -> None:
        self.on = on

    async def prepare(self, clock: sr.Clock) -> str:
        if self.on == "prepare":
            raise PermissionError(f"could not create: credential {KEY.lower()} rejected")
        return "cache/1"

    def needs_renewal(self, handle: Any, clock: sr.Clock) -> bool:
        return self.on == "renew"

    async def renew(self, handle: Any, reason: sr.RenewReason, clock: sr.Clock) -> Any:
        raise PermissionError(f"could not extend: credential {KEY[4:20].upper()} rejected")

    async def close(self, handle: Any) -> None:
        return None


async def test_a_resource_error_is_masked_and_hides_its_cause(virtual_clock: VirtualClock) -> None:
    runner = sr.Runner(
        PLAN,
        from_callable(lambda r, c: _answer("x")),
        resources=[LeakyResource()],
        secrets=[KEY],
        clock=virtual_clock,
    )
    with pytest.raises(sr.ResourceError) as raised:
        await runner.run([("a", "p")])
    error = raised.value
    assert str(error) == (
        f"could not prepare resource 'cache': could not create: credential {REDACTED} rejected"
    )
    assert error.__cause__ is None
    assert error.__suppress_context__
    shown = "".join(traceback.format_exception(error))
    assert "PermissionError it came from is not shown" in shown
    _no_key(KEY, shown)


async def test_a_renewal_error_is_masked_too(virtual_clock: VirtualClock) -> None:
    runner = sr.Runner(
        PLAN,
        from_callable(lambda r, c: _answer("x")),
        resources=[LeakyResource(on="renew")],
        secrets=[KEY],
        clock=virtual_clock,
        concurrency=1,
    )
    with pytest.raises(sr.ResourceError) as raised:
        # The first item prepares the resource, the second finds it due for renewal.
        await runner.run([("a", "p"), ("b", "p")])
    assert str(raised.value) == (
        f"could not renew resource 'cache': could not extend: credential {REDACTED} rejected"
    )
    _no_key(KEY, "".join(traceback.format_exception(raised.value)))
