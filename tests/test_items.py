"""What a run's items may be, ids unique, and the order of a collected run's results.

Items are WorkItems, ``(id, prompt[, context])`` tuples or mappings with ``id`` and
``prompt`` keys.  A collection with a bad item or a repeated id is refused before
anything is sent; a stream is checked item by item, the bad one stopping the run.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry.testing import VirtualClock

CSV = "id,prompt,shelf\nb-1,Catalogue Dune,A3\nb-2,Catalogue Emma,B7\n"


class Echo:
    """Answers each prompt with itself after a latency set per id; keeps every request."""

    def __init__(self, latency: dict[str, float] | None = None) -> None:
        self.latency = latency or {}
        self.sent: list[str] = []

    async def generate(self, request: sr.Request, ctx: sr.StageContext) -> sr.Response:
        self.sent.append(request.item_id)
        await ctx.clock.sleep(self.latency.get(request.item_id, 1.0))
        return sr.Response(request.prompt, sr.Usage(1, 1))

    def classify(self, exc: BaseException) -> sr.Outcome | None:
        return None


def make(strategy: Echo, clock: VirtualClock, **kwargs: Any) -> sr.Runner[str]:
    return sr.Runner(sr.Plan.ladder(), strategy, clock=clock, **kwargs)


# -- mappings -----------------------------------------------------------------------------------


async def test_dicts_are_items_with_their_own_id_and_themselves_as_context(
    virtual_clock: VirtualClock,
) -> None:
    rows = [{"id": "x", "prompt": "px", "extra": 1}, {"id": 7, "prompt": "p7"}]

    batch = await make(Echo(), virtual_clock).run(rows)

    assert [(r.id, r.output, r.context) for r in batch.results] == [
        ("x", "px", rows[0]),
        ("7", "p7", rows[1]),
    ]


async def test_an_int_id_is_its_text(virtual_clock: VirtualClock) -> None:
    items = [sr.WorkItem(7, "p7"), (8, "p8"), {"id": 9, "prompt": "p9"}]  # type: ignore[arg-type]

    batch = await make(Echo(), virtual_clock).run(items)

    assert [r.id for r in batch.results] == ["7", "8", "9"]


@pytest.mark.parametrize(
    "item",
    [
        (" ", "p"),
        {"id": "\t\n", "prompt": "p"},
        sr.WorkItem("  ", "p"),
        (2**64, "p"),
        {"id": -(2**70), "prompt": "p"},
    ],
)
async def test_a_blank_or_overlong_id_is_refused_as_the_cli_refuses_it(
    virtual_clock: VirtualClock, item: object
) -> None:
    # The same rule as the input file of `stagedretry run`: neither is an id to key by.
    strategy = Echo()
    with pytest.raises(sr.ItemError) as raised:
        await make(strategy, virtual_clock).run([("a", "p"), item])  # type: ignore[list-item]
    assert str(raised.value).startswith(
        "item #2: its id must be a non-empty string or an integer, got"
    )
    assert strategy.sent == []


async def test_the_widest_int_id_is_its_text(virtual_clock: VirtualClock) -> None:
    batch = await make(Echo(), virtual_clock).run([(2**64 - 1, "p"), (-(2**63), "q")])
    assert [r.id for r in batch.results] == [str(2**64 - 1), str(-(2**63))]


async def test_csv_rows_are_items(virtual_clock: VirtualClock) -> None:
    batch = await make(Echo(), virtual_clock).run(csv.DictReader(io.StringIO(CSV)))

    assert [r.id for r in batch.results] == ["b-1", "b-2"]
    assert [r.output for r in batch.results] == ["Catalogue Dune", "Catalogue Emma"]
    assert batch.results[1].context["shelf"] == "B7"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {"sku": "x", "prompt": "p"},
            "item #2: a mapping needs 'id' and 'prompt' keys; it lacks 'id' (its keys: 'sku', "
            "'prompt')",
        ),
        (
            {"id": "x", "title": "t"},
            "item #2: a mapping needs 'id' and 'prompt' keys; it lacks 'prompt' (its keys: "
            "'id', 'title')",
        ),
        (
            {"id": None, "prompt": "p"},
            "item #2: its id must be a non-empty string or an integer, got null",
        ),
        (
            {"id": True, "prompt": "p"},
            "item #2: its id must be a non-empty string or an integer, got the boolean true",
        ),
        ({"id": "x", "prompt": 3}, "item #2: its prompt must be a string, got the number 3"),
        (
            ("x", "p", "c", "d"),
            "item #2: expected a WorkItem, an (id, prompt[, context]) "
            "tuple or a mapping with 'id' and 'prompt' keys, got a tuple of 4 values",
        ),
        (
            sr.WorkItem("", "p"),
            "item #2: its id must be a non-empty string or an integer, got the string ''",
        ),
        (sr.WorkItem("x", None), "item #2: its prompt must be a string, got null"),  # type: ignore[arg-type]
        ((None, "p"), "item #2: its id must be a non-empty string or an integer, got null"),
        (
            (10**5000, "p"),
            "item #2: its id must be a non-empty string or an integer, got the number 1e5000 or so",
        ),
        (
            42,
            "item #2: expected a WorkItem, an (id, prompt[, context]) tuple or a mapping "
            "with 'id' and 'prompt' keys, got the number 42",
        ),
    ],
)
async def test_a_list_with_a_bad_item_is_refused_whole_before_anything_is_sent(
    virtual_clock: VirtualClock, bad: object, message: str
) -> None:
    strategy = Echo()
    runner = make(strategy, virtual_clock)

    with pytest.raises(sr.ItemError) as raised:
        await runner.run([("a", "p"), bad, ("c", "p")])

    assert str(raised.value) == message
    assert raised.value.position == 2
    assert strategy.sent == []
    assert runner.state is sr.RunnerState.IDLE
    with pytest.raises(sr.ItemError):
        runner.stream([("a", "p"), bad])  # a stream of a list is refused when it is made
    assert runner.state is sr.RunnerState.IDLE


_SHAPES = (
    "items must be an iterable or async iterable of items (a WorkItem, an (id, prompt[, "
    "context]) tuple or a mapping with 'id' and 'prompt' keys), got "
)


@pytest.mark.parametrize(
    ("items", "got"),
    [
        ({"id": "a", "prompt": "p"}, "one mapping, whose keys are no items"),
        ({"a": "prompt a", "b": "prompt b"}, "one mapping, whose keys are no items"),
        ("ab", "the string 'ab', whose characters are no items"),
        (b"ab", "bytes, whose characters are no items"),
        (sr.WorkItem("a", "p"), "one WorkItem: give a list of them ([item] for one)"),
        (("a", "p"), "one (id, prompt) tuple: give a list of them ([item] for one)"),
        ((7, "p", {"k": 1}), "one (id, prompt) tuple: give a list of them ([item] for one)"),
        (5, "the number 5"),
        (None, "null"),
    ],
)
async def test_one_item_or_text_given_as_the_items_is_refused_whole(
    virtual_clock: VirtualClock, items: Any, got: str
) -> None:
    # Iterated, these would hand out their keys, characters or fields as items.
    strategy = Echo()
    runner = make(strategy, virtual_clock)

    with pytest.raises(TypeError) as raised:
        await runner.run(items)
    assert str(raised.value).startswith(_SHAPES + got)
    with pytest.raises(TypeError) as raised:
        runner.stream(items)
    assert str(raised.value).startswith(_SHAPES + got)
    assert strategy.sent == []
    assert runner.state is sr.RunnerState.IDLE
    # A dict of id -> prompt is items through .items(), as the message says.
    batch = await runner.run({"a": "prompt a"}.items())
    assert [(r.id, r.output) for r in batch.results] == [("a", "prompt a")]


# -- repeated ids -------------------------------------------------------------------------------


async def test_a_repeated_id_in_a_list_is_refused_before_anything_is_paid(
    virtual_clock: VirtualClock, tmp_path: Path
) -> None:
    strategy = Echo()
    items = [("a", "p"), ("b", "p"), {"id": "a", "prompt": "again"}]

    with pytest.raises(sr.ItemError) as raised:
        await make(strategy, virtual_clock).run(items, journal=sr.Journal(tmp_path / "j.sqlite"))

    assert str(raised.value) == (
        "item #3 repeats the id 'a' of item #1: ids must be unique in a run (results, a "
        "journal and an output file are keyed by id)"
    )
    assert strategy.sent == []


async def test_an_int_id_and_its_text_are_the_same_id(virtual_clock: VirtualClock) -> None:
    with pytest.raises(sr.ItemError, match="item #2 repeats the id '1' of item #1"):
        await make(Echo(), virtual_clock).run([(1, "p"), ("1", "p")])


async def test_a_stream_stops_at_a_repeated_id_and_never_sends_it(
    virtual_clock: VirtualClock,
) -> None:
    def items() -> Iterator[tuple[str, str]]:
        yield from [("a", "p"), ("b", "p"), ("a", "p"), ("c", "p")]

    strategy = Echo()

    with pytest.raises(sr.ItemError) as raised:
        await make(strategy, virtual_clock, concurrency=2).run(items())

    assert str(raised.value).startswith("item #3 repeats the id 'a' of item #1")
    assert strategy.sent.count("a") == 1  # the first 'a' paid once, the second never
    assert "c" not in strategy.sent  # nothing after the bad item is taken
    batch = raised.value.batch
    assert batch is not None
    assert [r.id for r in batch.results] == ["a", "b"]  # those out when it came, finished
    assert all(r.ok for r in batch.results)


async def test_an_async_stream_stops_at_its_first_bad_item(virtual_clock: VirtualClock) -> None:
    async def items() -> AsyncIterator[object]:
        yield ("a", "p")
        yield {"id": "b", "prompt": "p"}
        yield ["c", "p"]
        yield ("d", "p")

    strategy = Echo()
    results: list[str] = []

    async def read() -> None:
        async with make(strategy, virtual_clock, concurrency=1).stream(items()) as stream:
            async for result in stream:
                results.append(result.id)

    with pytest.raises(sr.ItemError) as raised:
        await read()

    assert str(raised.value).startswith("item #3: expected a WorkItem")
    assert raised.value.position == 3
    assert results == ["a", "b"]
    assert strategy.sent == ["a", "b"]


@given(ids=st.lists(st.sampled_from("abcdef"), max_size=8), as_stream=st.booleans())
def test_a_run_is_refused_exactly_when_an_id_repeats(ids: list[str], as_stream: bool) -> None:
    """Property: with any ids, the run raises ItemError iff one repeats, naming its first
    repetition; each id is sent at most once, and never after that repetition."""
    clock = VirtualClock()
    strategy = Echo()
    items = [(item_id, "p") for item_id in ids]
    first_repeat = next((n for n, i in enumerate(ids, 1) if i in ids[: n - 1]), None)

    async def main() -> sr.BatchResult[str]:
        return await make(strategy, clock, concurrency=3).run(iter(items) if as_stream else items)

    if first_repeat is None:
        batch = asyncio.run(main())
        assert [r.id for r in batch.results] == ids
        assert sorted(strategy.sent) == sorted(ids)
        return
    with pytest.raises(sr.ItemError) as raised:
        asyncio.run(main())
    earlier = ids.index(ids[first_repeat - 1]) + 1
    assert str(raised.value).startswith(
        f"item #{first_repeat} repeats the id {ids[first_repeat - 1]!r} of item #{earlier}"
    )
    assert len(strategy.sent) == len(set(strategy.sent))
    assert set(strategy.sent) <= set(ids[: first_repeat - 1])
    if not as_stream:
        assert strategy.sent == []


# -- order --------------------------------------------------------------------------------------


@given(latencies=st.permutations([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
def test_a_collected_run_returns_results_in_input_order(latencies: list[float]) -> None:
    """Property: whatever order the items end in, run() returns them as given, so that
    zipping results with inputs pairs each record with its own result."""
    ids = ["zeta", "alpha", "mu", "beta", "omega", "delta"]  # not sorted: input order only
    strategy = Echo(dict(zip(ids, latencies, strict=True)))
    clock = VirtualClock()

    async def main() -> tuple[sr.BatchResult[str], list[str]]:
        runner = make(strategy, clock, concurrency=6)
        batch = await runner.run([(i, f"prompt of {i}") for i in ids])
        streamed = [r.id async for r in runner.stream([(i, "p") for i in ids])]
        return batch, streamed

    batch, streamed = asyncio.run(main())

    assert [r.id for r in batch.results] == ids
    assert [r.output for r in batch.results] == [f"prompt of {i}" for i in ids]
    # stream() stays in completion order: the fastest first.
    assert streamed == [i for _, i in sorted(zip(latencies, ids, strict=True))]


async def test_a_stopped_run_holds_its_results_in_input_order(
    virtual_clock: VirtualClock,
) -> None:
    strategy = Echo({"a": 3.0, "b": 1.0, "c": 2.0})
    runner = make(strategy, virtual_clock, concurrency=3)

    async def stop_soon() -> None:
        await virtual_clock.sleep(2.5)
        runner.cancel()

    stopper = asyncio.create_task(stop_soon())
    batch = await runner.run([("a", "p"), ("b", "p"), ("c", "p")])
    await stopper

    assert [(r.id, r.status.value) for r in batch.results] == [
        ("a", "cancelled"),
        ("b", "succeeded"),
        ("c", "succeeded"),
    ]


# -- a run cut short keeps its results ------------------------------------------------------------


async def test_results_survive_a_cancelled_run_in_the_journal_and_on_result(
    virtual_clock: VirtualClock, tmp_path: Path
) -> None:
    """What `asyncio.wait_for(runner.run(items), t)` does at its timeout: cancel the run.
    The run's return value is lost, the results that ended are not."""
    seen: list[sr.ItemResult[str]] = []
    three = asyncio.Event()

    def on_result(result: sr.ItemResult[str]) -> None:
        seen.append(result)
        if len(seen) == 3:
            three.set()

    strategy = Echo({f"i{n}": float(n) for n in range(10)})
    runner = make(strategy, virtual_clock, concurrency=10, on_result=on_result)
    path = tmp_path / "j.sqlite"
    items = [(f"i{n}", "p") for n in range(10)]
    task = asyncio.create_task(runner.run(items, journal=sr.Journal(path)))
    await three.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    done = [r.id for r in seen if r.ok]
    assert done == ["i0", "i1", "i2"]
    with sr.Journal(path, runner.fingerprint) as journal:
        kept = {r.id: r.status for r in journal.results()}
    assert {i for i, s in kept.items() if s is sr.ItemStatus.SUCCEEDED} == set(done)
    again = await runner.run(items, journal=sr.Journal(path))
    assert again.resumed == 3  # not paid for twice
    assert strategy.sent.count("i0") == 1
