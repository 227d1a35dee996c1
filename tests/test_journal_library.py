"""The journal as a library feature: skip what is done, commit before handing on, fingerprints."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pydantic
import pytest

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable
from strategies.sim import SimStrategy


class Counting:
    """A strategy function that answers the prompt back as JSON and counts requests per item."""

    def __init__(self, *, wait: float = 0.0) -> None:
        self.sent: Counter[str] = Counter()
        self.wait = wait

    async def __call__(self, request: sr.Request, ctx: sr.StageContext) -> str:
        self.sent[request.item_id] += 1
        if self.wait:
            # item-0 ends first, item-1 next, and so on: no two end at one virtual instant.
            await ctx.clock.sleep(self.wait * (1 + int(request.item_id.split("-")[1])))
        return json.dumps({"echo": request.prompt})


def runner_for(fn: Counting, **kwargs: Any) -> sr.Runner:
    kwargs.setdefault("clock", VirtualClock())
    return sr.Runner(
        sr.Plan.ladder(), from_callable(fn), validator=sr.validators.json_object(), **kwargs
    )


def items(n: int, prompt: str = "prompt {i}") -> list[sr.WorkItem]:
    return [sr.WorkItem(f"item-{i}", prompt.format(i=i)) for i in range(n)]


def rows(path: Path) -> dict[str, str]:
    """Item id -> status, read straight from the file."""
    db = sqlite3.connect(path)
    try:
        return dict(db.execute("SELECT item_id, status FROM results").fetchall())
    finally:
        db.close()


async def test_a_second_run_skips_every_done_item(tmp_path: Path) -> None:
    fn = Counting()
    with sr.Journal(tmp_path / "j.sqlite") as journal:
        first = await runner_for(fn).run(items(5), journal=journal)
        second = await runner_for(fn).run(items(5), journal=journal)

        assert (first.items, first.resumed) == (5, 0)
        assert (second.items, second.resumed, second.results) == (0, 5, ())
        assert fn.sent == {f"item-{i}": 1 for i in range(5)}
        assert sorted(r.id for r in journal.results()) == [f"item-{i}" for i in range(5)]
        assert next(journal.results()).output == {"echo": "prompt 0"}
        assert [run.stats["resumed"] for run in journal.runs()] == [0, 5]
        assert [run.stats["items"] for run in journal.runs()] == [5, 0]
    assert "resumed" in second.summary()


async def test_stream_yields_only_what_it_runs(tmp_path: Path) -> None:
    fn = Counting()
    with sr.Journal(tmp_path / "j.sqlite") as journal:
        await runner_for(fn).run(items(3), journal=journal)
        stream = runner_for(fn).stream(items(5), journal=journal)
        async with stream:
            got = sorted([r.id async for r in stream])

    assert got == ["item-3", "item-4"]
    assert stream.batch is not None
    assert (stream.batch.items, stream.batch.resumed) == (2, 3)
    assert sum(fn.sent.values()) == 5


async def test_an_async_source_is_filtered_and_closed_when_the_run_stops(tmp_path: Path) -> None:
    closed = False

    async def source() -> AsyncIterator[sr.WorkItem]:
        nonlocal closed
        try:
            for item in items(50):
                yield item
        finally:
            closed = True

    fn = Counting()
    with sr.Journal(tmp_path / "j.sqlite") as journal:
        await runner_for(fn).run(items(2), journal=journal)
        async with runner_for(fn, concurrency=2).stream(source(), journal=journal) as stream:
            first = await anext(stream)

    assert first.id not in {"item-0", "item-1"}
    assert closed
    assert fn.sent["item-0"] == fn.sent["item-1"] == 1


async def test_a_changed_prompt_runs_again(tmp_path: Path) -> None:
    fn = Counting()
    with sr.Journal(tmp_path / "j.sqlite") as journal:
        await runner_for(fn).run(items(3), journal=journal)
        changed = [*items(2), sr.WorkItem("item-2", "a new prompt")]
        batch = await runner_for(fn).run(changed, journal=journal)
        outputs = {r.id: r.output for r in journal.results()}

    assert [r.id for r in batch.results] == ["item-2"]
    assert batch.resumed == 2
    assert outputs["item-2"] == {"echo": "a new prompt"}
    assert len(outputs) == 3


async def test_cancelled_items_are_recorded_and_run_again(tmp_path: Path) -> None:
    fn = Counting(wait=1.0)
    path = tmp_path / "j.sqlite"
    with sr.Journal(path) as journal:
        runner = runner_for(fn, concurrency=4)
        async with runner.stream(items(8), journal=journal) as stream:
            first = await anext(stream)
        # Leaving the block cancelled the items in flight, each committed as cancelled.
        statuses = rows(path)
        assert statuses.pop(first.id) == "succeeded"
        assert len(statuses) >= 3
        assert set(statuses.values()) == {"cancelled"}

        batch = await runner_for(fn, concurrency=4).run(items(8), journal=journal)

        assert batch.resumed == 1
        assert batch.counts[sr.ItemStatus.SUCCEEDED] == 7
        assert set(rows(path).values()) == {"succeeded"}
        assert fn.sent[first.id] == 1
        assert all(fn.sent[item] == 2 for item, s in statuses.items() if s == "cancelled")


async def test_run_commits_before_on_result_sees_the_result(tmp_path: Path) -> None:
    journal = sr.Journal(tmp_path / "j.sqlite")
    seen: list[tuple[str, bool]] = []

    def on_result(result: sr.ItemResult) -> None:
        seen.append((result.id, result.id in journal.done()))

    with journal:
        await runner_for(Counting(), on_result=on_result).run(items(4), journal=journal)

    assert sorted(seen) == [(f"item-{i}", True) for i in range(4)]


async def test_stream_commits_before_yielding(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with sr.Journal(path) as journal:
        async with runner_for(Counting(), concurrency=2).stream(
            items(6), journal=journal
        ) as stream:
            async for result in stream:
                # Read by another connection: the row is committed, not only written.
                assert rows(path)[result.id] == "succeeded"


async def test_a_closed_journal_is_opened_for_the_run_and_closed_after(tmp_path: Path) -> None:
    journal = sr.Journal(tmp_path / "j.sqlite")

    batch = await runner_for(Counting()).run(items(2), journal=journal)

    assert batch.items == 2
    assert not journal.is_open
    with journal:
        assert journal.count() == 2


async def test_a_locked_journal_raises_before_any_request(tmp_path: Path) -> None:
    fn = Counting()
    path = tmp_path / "j.sqlite"
    with sr.Journal(path, "someone-else"):
        with pytest.raises(sr.JournalError, match="another stagedretry run"):
            await runner_for(fn).run(items(2), journal=sr.Journal(path))
        stream = runner_for(fn).stream(items(2), journal=sr.Journal(path))
        with pytest.raises(sr.JournalError, match="another stagedretry run"):
            async with stream:
                await anext(stream)

    assert not fn.sent


async def test_one_journal_shared_by_two_concurrent_runs_is_refused_at_the_start(
    tmp_path: Path,
) -> None:
    """The second run must not start: it would lose its paid results when the first closes."""
    fn = Counting(wait=1.0)
    journal = sr.Journal(tmp_path / "j.sqlite")
    first = runner_for(fn, concurrency=2).run(items(4), journal=journal)
    second = runner_for(fn, concurrency=2).run(items(3, "other {i}"), journal=journal)
    done = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(done[0], sr.BatchResult)
    assert done[0].succeeded == 4
    assert isinstance(done[1], sr.JournalError)
    assert "in use by another run" in str(done[1])
    assert sum(fn.sent.values()) == 4  # the refused run sent nothing
    # Free again once the first run has ended.
    again = await runner_for(fn).run(items(3, "other {i}"), journal=journal)
    assert again.succeeded == 3


async def test_a_journal_whose_lock_cannot_be_made_is_a_journal_error(tmp_path: Path) -> None:
    """A lock file that cannot be created (here: a folder stands in its place)."""
    path = tmp_path / "j.sqlite"
    (tmp_path / "j.sqlite.lock").mkdir()
    fn = Counting()
    with pytest.raises(sr.JournalError, match="cannot open the journal's lock file"):
        await runner_for(fn).run(items(2), journal=sr.Journal(path))
    assert not fn.sent


async def test_runners_of_different_plans_keep_their_results_apart(tmp_path: Path) -> None:
    fn = Counting()
    one = runner_for(fn)
    other = sr.Runner(
        sr.Plan.ladder(max_prompts=2),
        from_callable(fn),
        validator=sr.validators.json_object(),
        clock=VirtualClock(),
    )
    with sr.Journal(tmp_path / "j.sqlite") as journal:
        await one.run(items(3), journal=journal)
        batch = await other.run(items(3), journal=journal)

        assert (batch.items, batch.resumed) == (3, 0)
        assert journal.fingerprint == other.fingerprint
        assert journal.foreign() == 3


async def test_an_explicit_fingerprint_is_kept(tmp_path: Path) -> None:
    runner = runner_for(Counting())
    with sr.Journal(tmp_path / "j.sqlite", "pipeline-1") as journal:
        await runner.run(items(2), journal=journal)

        assert journal.fingerprint == "pipeline-1"
        assert journal.count() == 2


def test_an_unkeyed_journal_has_no_fingerprint_to_read(tmp_path: Path) -> None:
    with sr.Journal(tmp_path / "j.sqlite") as journal, pytest.raises(sr.JournalError):
        journal.done()


async def test_a_malformed_item_in_a_list_refuses_the_run_before_the_journal_is_touched(
    tmp_path: Path,
) -> None:
    raw: list[Any] = [("a", "prompt a"), 42, ("b", "prompt b")]
    fn = Counting()
    with pytest.raises(sr.ItemError, match="item #2: expected a WorkItem"):
        await runner_for(fn).run(raw, journal=sr.Journal(tmp_path / "j.sqlite"))

    assert not (tmp_path / "j.sqlite").exists()
    assert sum(fn.sent.values()) == 0


async def test_a_malformed_item_in_a_stream_keeps_what_ended_before_it(tmp_path: Path) -> None:
    def raw() -> Iterator[Any]:
        yield from [("a", "prompt a"), ("b", "prompt b"), 42, ("c", "prompt c")]

    fn = Counting()
    with pytest.raises(sr.ItemError, match="item #3: expected a WorkItem"):
        await runner_for(fn, concurrency=1).run(raw(), journal=sr.Journal(tmp_path / "j.sqlite"))
    assert rows(tmp_path / "j.sqlite") == {"a": "succeeded", "b": "succeeded"}

    fixed = [("a", "prompt a"), ("b", "prompt b"), ("c", "prompt c")]
    again = await runner_for(fn).run(fixed, journal=sr.Journal(tmp_path / "j.sqlite"))

    assert again.resumed == 2
    assert [r.id for r in again.results] == ["c"]
    assert fn.sent == {"a": 1, "b": 1, "c": 1}


async def test_secrets_are_redacted_from_the_journal(tmp_path: Path) -> None:
    secret = "sk-live-0123456789"

    async def leaky(request: sr.Request, ctx: sr.StageContext) -> str:
        return json.dumps({"note": f"key {secret}"})

    runner = sr.Runner(
        sr.Plan.ladder(),
        from_callable(leaky),
        validator=sr.validators.json_object(),
        clock=VirtualClock(),
    )
    path = tmp_path / "j.sqlite"
    with sr.Journal(path, secrets=[secret]) as journal:
        await runner.run(items(1), journal=journal)

    assert secret.encode() not in path.read_bytes()
    assert b"[redacted]" in path.read_bytes()


# -- the fingerprint ---------------------------------------------------------------------------


class Book(pydantic.BaseModel):
    title: str


class LongBook(pydantic.BaseModel):
    title: str
    pages: int


async def echo(request: sr.Request, ctx: sr.StageContext) -> str:
    return request.prompt


async def other_echo(request: sr.Request, ctx: sr.StageContext) -> str:
    return request.prompt


def fingerprint(
    plan: sr.Plan | None = None,
    strategy: sr.Strategy | None = None,
    validator: sr.Validator | None = None,
    **kwargs: Any,
) -> str:
    return sr.Runner(
        plan or sr.Plan.ladder(),
        strategy or SimStrategy(seed=1),
        validator=validator,
        **kwargs,
    ).fingerprint


def test_the_fingerprint_is_short_hex_and_stable() -> None:
    value = fingerprint()

    assert len(value) == 16
    int(value, 16)
    assert fingerprint() == value


@pytest.mark.parametrize("seed", ["0", "1", "4242"])
def test_the_fingerprint_is_the_same_in_another_process(seed: str) -> None:
    """A resumed run is a new process: no address, no set order may reach the hash."""
    code = (
        "import pydantic, stagedretry as sr\n"
        "from strategies.sim import SimStrategy\n"
        "class Book(pydantic.BaseModel):\n"
        "    title: str\n"
        "    tags: frozenset[str] = frozenset()\n"
        "runner = sr.Runner(sr.Plan.ladder(), SimStrategy(seed=1),"
        " validator=sr.validators.pydantic(Book))\n"
        "print(runner.fingerprint)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": seed}
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )

    class Book(pydantic.BaseModel):
        title: str
        tags: frozenset[str] = frozenset()

    here = fingerprint(validator=sr.validators.pydantic(Book))
    assert done.stdout.strip() == here


def test_the_fingerprint_follows_the_plan() -> None:
    assert fingerprint(sr.Plan.ladder(max_prompts=3)) != fingerprint(sr.Plan.ladder())


def test_the_fingerprint_follows_the_validator_schema() -> None:
    pydantic_book = fingerprint(validator=sr.validators.pydantic(Book))

    assert pydantic_book == fingerprint(validator=sr.validators.pydantic(Book))
    assert pydantic_book != fingerprint(validator=sr.validators.pydantic(LongBook))
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    longer = {**schema, "required": ["title"]}
    assert fingerprint(validator=sr.validators.json_schema(schema)) != fingerprint(
        validator=sr.validators.json_schema(longer)
    )
    assert fingerprint(validator=json.loads) != fingerprint(validator=str.upper)
    assert fingerprint(validator=None) != fingerprint(validator=json.loads)


def test_the_fingerprint_follows_the_strategy_knobs_but_not_its_latency() -> None:
    assert fingerprint(strategy=SimStrategy(seed=1)) != fingerprint(strategy=SimStrategy(seed=2))
    assert fingerprint(strategy=SimStrategy(seed=1, invalid_rate=0.5)) != fingerprint()
    assert fingerprint(strategy=SimStrategy(seed=1, latency=0.5)) == fingerprint()
    assert fingerprint(strategy=from_callable(echo)) != fingerprint(
        strategy=from_callable(other_echo)
    )
    assert fingerprint(strategy=from_callable(echo)) == fingerprint(strategy=from_callable(echo))


def test_the_fingerprint_ignores_concurrency_the_clock_and_the_seed() -> None:
    assert fingerprint(concurrency=64, clock=VirtualClock(), seed=7) == fingerprint()


def test_a_strategy_without_fingerprint_data_is_known_by_its_class() -> None:
    class Plain:
        async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
            return sr.Response("{}")

        def classify(self, exc: BaseException) -> sr.Outcome | None:
            return None

    assert not isinstance(Plain(), sr.Fingerprinted)
    assert isinstance(SimStrategy(), sr.Fingerprinted)
    assert fingerprint(strategy=Plain()) == fingerprint(strategy=Plain())
    assert fingerprint(strategy=Plain()) != fingerprint()
