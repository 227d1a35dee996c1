"""Text a JSON answer or a caller may carry but UTF-8 cannot (a lone surrogate, from the
valid JSON escape ``"\\ud800"``) and numbers strict JSON cannot (an output's ``inf``): the run
goes on, nothing paid for is lost, and the journal reads back what it wrote."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry._limits import utf8_json
from stagedretry.testing import VirtualClock

# Any code point, lone surrogates included.
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
data = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | texts,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=10,
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return bool(a == b)


@given(data)
def test_utf8_json_always_encodes_and_reads_back(value: Any) -> None:
    text = utf8_json(value)
    text.encode("utf-8")  # never UnicodeEncodeError
    assert _same(json.loads(text), value)


class Answer:
    def __init__(self, text: str) -> None:
        self.text = text

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        return sr.Response(self.text)

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None


async def test_an_answer_with_a_lone_surrogate_is_invalid_and_the_run_goes_on(
    tmp_path: Path,
) -> None:
    # A lone surrogate is not text: the answer is unreadable, as any malformed JSON is.
    path = tmp_path / "journal.sqlite"
    runner = sr.Runner(
        sr.Plan.ladder(max_prompts=1),
        Answer('{"title": "\\ud800 half a pair"}'),
        validator=sr.validators.json_object(),
        clock=VirtualClock(),
    )
    batch = await runner.run([("a", "prompt \udfff"), ("b", "prompt")], journal=sr.Journal(path))
    assert [r.status for r in batch.results] == [sr.ItemStatus.EXHAUSTED] * 2
    assert all("lone surrogate" in r.attempts[0].error for r in batch.results)
    with sr.Journal(path, runner.fingerprint) as journal:
        assert {r.id for r in journal.results()} == {"a", "b"}


async def test_an_output_with_a_lone_surrogate_is_journaled_and_read_back(tmp_path: Path) -> None:
    # A validator of the caller's may keep one (here: the answer text as is).
    path = tmp_path / "journal.sqlite"
    runner = sr.Runner(
        sr.Plan.ladder(max_prompts=1),
        Answer("\ud800 half a pair"),
        validator=lambda text: {"title": text},
        clock=VirtualClock(),
    )
    batch = await runner.run([("a", "prompt \udfff"), ("b", "prompt")], journal=sr.Journal(path))
    assert [r.status for r in batch.results] == [sr.ItemStatus.SUCCEEDED] * 2
    with sr.Journal(path, runner.fingerprint) as journal:
        back = {r.id: r.output for r in journal.results()}
    assert back["a"] == {"title": "\ud800 half a pair"}
    again = await runner.run([("a", "prompt \udfff"), ("b", "prompt")], journal=sr.Journal(path))
    assert again.resumed == 2  # the prompt's digest is stable too


async def test_an_id_with_a_lone_surrogate_is_refused_before_the_run(tmp_path: Path) -> None:
    runner = sr.Runner(sr.Plan.ladder(), Answer("fine"), clock=VirtualClock())
    with pytest.raises(sr.ItemError) as raised:
        await runner.run(
            [("ok", "prompt"), ("\ud800", "prompt")], journal=sr.Journal(tmp_path / "j.sqlite")
        )
    assert str(raised.value) == "item #2: its id '\\ud800' holds a lone surrogate"
    assert raised.value.batch is not None
    assert raised.value.batch.items == 0
    assert not (tmp_path / "j.sqlite").exists()  # refused before the journal was opened


class Measure(pydantic.BaseModel):
    value: float


async def test_an_infinite_output_does_not_make_the_journal_unreadable(tmp_path: Path) -> None:
    # pydantic reads the string "inf" into a float field as inf; json.dumps writes Infinity.
    path = tmp_path / "journal.sqlite"
    runner = sr.Runner(
        sr.Plan.ladder(),
        Answer('{"value": "inf"}'),
        validator=sr.validators.pydantic(Measure),
        clock=VirtualClock(),
    )
    batch = await runner.run([("a", "prompt")], journal=sr.Journal(path))
    assert batch.succeeded == 1
    with sr.Journal(path, runner.fingerprint) as journal:
        (back,) = journal.results()
    assert back.output == {"value": math.inf}
    assert (await runner.run([("a", "prompt")], journal=sr.Journal(path))).resumed == 1
