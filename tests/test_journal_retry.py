"""Retrying failures from Python: ``runner.run(items, journal=..., retry=...)``.

A retry runs again only the items whose latest result in the journal has one of
the statuses given, with another strategy or plan if you like; the journal keeps
every earlier result (``Journal.history``) and both runs, and ``journal.results()``
gives one latest result per item.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stagedretry as sr
from stagedretry.testing import VirtualClock
from strategies.callable import from_callable

FAILED, EXHAUSTED, SUCCEEDED = (
    sr.ItemStatus.FAILED,
    sr.ItemStatus.EXHAUSTED,
    sr.ItemStatus.SUCCEEDED,
)
ONE_SHOT = sr.Plan([sr.Stage("only", "full")], max_prompts=1)
WARMER = sr.Plan([sr.Stage("only", "full", {"temperature": 0.5})], max_prompts=1)
"""Another plan: a runner with it has another fingerprint."""


class Model:
    """A strategy function: items whose number is in *broken* fail (fatal), in *wrong* answer
    with no JSON (exhausted after one prompt); the rest answer.  Counts what it was sent."""

    def __init__(self, *, broken: set[int] = frozenset(), wrong: set[int] = frozenset()) -> None:
        self.broken = set(broken)
        self.wrong = set(wrong)
        self.sent: Counter[str] = Counter()

    async def __call__(self, request: sr.Request, ctx: sr.StageContext) -> str:
        self.sent[request.item_id] += 1
        number = int(request.item_id.split("-")[1])
        if number in self.broken:
            raise RuntimeError("the weak model broke")
        if number in self.wrong:
            return "no JSON here"
        return json.dumps({"n": number})


def runner(model: Model, plan: sr.Plan = ONE_SHOT) -> sr.Runner:
    strategy = from_callable(model)
    return sr.Runner(plan, strategy, validator=sr.validators.json_object(), clock=VirtualClock())


def items(n: int) -> list[sr.WorkItem]:
    return [sr.WorkItem(f"item-{i}", f"prompt {i}") for i in range(n)]


async def test_a_retry_with_a_stronger_model_runs_only_the_failures(tmp_path: Path) -> None:
    weak = Model(broken={0, 3}, wrong={1, 4, 7})
    journal = sr.Journal(tmp_path / "j.sqlite")
    first = await runner(weak).run(items(9), journal=journal)
    assert (first.counts[FAILED], first.counts[EXHAUSTED], first.counts[SUCCEEDED]) == (2, 3, 4)

    strong = Model()
    second = await runner(strong, WARMER).run(items(9), journal=journal, retry={FAILED, EXHAUSTED})
    assert set(strong.sent) == {"item-0", "item-1", "item-3", "item-4", "item-7"}
    assert second.counts[SUCCEEDED] == 5
    assert second.resumed == 4  # kept their latest result
    with journal:
        every = list(journal.results())
        assert [r.id for r in every] == [i.id for i in items(9)]
        assert all(r.status is SUCCEEDED for r in every)
        runs = journal.runs()
        assert [r.stats["items"] for r in runs] == [9, 5]
        history = journal.history("item-0")
        assert [h.result.status for h in history] == [FAILED, SUCCEEDED]
        assert [h.run for h in history] == [runs[0].id, runs[1].id]
        assert history[0].fingerprint != history[1].fingerprint
        assert journal.history("item-2")[-1].run == runs[0].id  # kept, not run again

    # Nothing left to retry: nothing sent.
    third = await runner(strong, WARMER).run(items(9), journal=journal, retry=[FAILED, EXHAUSTED])
    assert third.items == 0
    assert sum(strong.sent.values()) == 5


async def test_a_retry_of_one_status_leaves_the_others(tmp_path: Path) -> None:
    weak = Model(broken={0}, wrong={1})
    journal = sr.Journal(tmp_path / "j.sqlite")
    await runner(weak).run(items(3), journal=journal)
    strong = Model()
    await runner(strong).run(items(3), journal=journal, retry=sr.ItemStatus.EXHAUSTED)
    assert set(strong.sent) == {"item-1"}
    with journal:
        assert [r.status for r in journal.results()] == [FAILED, SUCCEEDED, SUCCEEDED]


async def test_the_same_runner_retrying_keeps_the_earlier_result_in_the_history(
    tmp_path: Path,
) -> None:
    model = Model(wrong={2})
    journal = sr.Journal(tmp_path / "j.sqlite")
    same = runner(model)
    await same.run(items(4), journal=journal)
    model.wrong.clear()  # the model got better; its fingerprint did not change (data is read once)
    batch = await same.run(items(4), journal=journal, retry={EXHAUSTED})
    assert batch.items == 1
    assert model.sent["item-2"] == 2
    with journal:
        assert journal.count() == 4
        assert [h.result.status for h in journal.history("item-2")] == [EXHAUSTED, SUCCEEDED]
        assert len(journal.runs()) == 2


async def test_a_stopped_retry_goes_on_without_paying_twice(tmp_path: Path) -> None:
    weak = Model(wrong=set(range(10)))
    journal = sr.Journal(tmp_path / "j.sqlite")
    await runner(weak).run(items(10), journal=journal)
    # The retry model is wrong on the odd ones too: they end exhausted again.
    retry_model = Model(wrong={1, 3, 5, 7, 9})
    retrying = runner(retry_model)
    seen: list[sr.ItemResult] = []
    async with retrying.stream(items(10), journal=journal, retry={EXHAUSTED}) as stream:
        async for result in stream:
            seen.append(result)
            if len(seen) == 4:
                break  # stopped: the items in flight are cancelled
    ended = {r.id for r in seen if r.status is not sr.ItemStatus.CANCELLED}
    assert any(r.status is EXHAUSTED for r in seen)
    sent_before = Counter(retry_model.sent)
    await runner(retry_model).run(items(10), journal=journal, retry={EXHAUSTED})
    again = retry_model.sent - sent_before
    assert not set(again) & ended  # none that ended in the stopped run was sent again
    assert set(retry_model.sent) == {f"item-{i}" for i in range(10)}
    # That round is over: the same call chooses afresh, the odd ones (exhausted again).
    before_third = Counter(retry_model.sent)
    await runner(retry_model).run(items(10), journal=journal, retry={EXHAUSTED})
    assert set(retry_model.sent - before_third) == {f"item-{i}" for i in (1, 3, 5, 7, 9)}


async def test_retry_needs_a_journal_and_statuses(tmp_path: Path) -> None:
    run = runner(Model())
    with pytest.raises(ValueError, match="retry= needs a journal="):
        await run.run(items(1), retry={FAILED})
    journal = sr.Journal(tmp_path / "j.sqlite")
    with pytest.raises(ValueError, match="at least one status"):
        await run.run(items(1), journal=journal, retry=[])
    with pytest.raises(TypeError, match="not 'failed'"):
        await run.run(items(1), journal=journal, retry="failed")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="got 'failed'"):
        run.stream(items(1), journal=journal, retry=["failed"])  # type: ignore[list-item]
    assert run.state is sr.RunnerState.IDLE  # refused before the run began


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rounds=st.lists(
        st.tuples(
            st.sets(st.integers(0, 5)),  # wrong in this round
            st.sets(st.sampled_from([FAILED, EXHAUSTED, SUCCEEDED]), min_size=1),
        ),
        min_size=1,
        max_size=4,
    )
)
async def test_results_are_always_the_latest_result_of_each_item(
    tmp_path_factory: pytest.TempPathFactory,
    rounds: list[tuple[set[int], set[sr.ItemStatus]]],
) -> None:
    journal = sr.Journal(tmp_path_factory.mktemp("p") / "j.sqlite")
    model = Model(wrong={0, 2})
    await runner(model).run(items(6), journal=journal)
    latest = {i.id: (EXHAUSTED if n in (0, 2) else SUCCEEDED) for n, i in enumerate(items(6))}
    for wrong, statuses in rounds:
        model = Model(wrong=wrong)
        await runner(model).run(items(6), journal=journal, retry=statuses)
        chosen = {i for i, s in latest.items() if s in statuses}
        assert set(model.sent) == chosen  # exactly the latest of those statuses, once each
        for item in chosen:
            latest[item] = EXHAUSTED if int(item.split("-")[1]) in wrong else SUCCEEDED
        with journal:
            assert {r.id: r.status for r in journal.results()} == latest
            for item, status in latest.items():
                assert journal.history(item)[-1].result.status is status


async def test_the_job_keeps_both_runs_when_every_item_was_retried(tmp_path: Path) -> None:
    journal = sr.Journal(tmp_path / "j.sqlite")
    await runner(Model(wrong=set(range(4)))).run(items(4), journal=journal)
    strong = runner(Model(), WARMER)
    await strong.run(items(4), journal=journal, retry={EXHAUSTED})
    with journal:
        assert journal.fingerprint == strong.fingerprint
        runs = journal.runs()
        assert [run.stats["items"] for run in runs] == [4, 4]
        assert {e.run for e in journal.entries()} == {runs[1].id}
        assert all(len(journal.history(i.id)) == 2 for i in items(4))
    # --fresh's way: forgetting this job forgets where it came from too.
    with sr.Journal(tmp_path / "j.sqlite", strong.fingerprint) as again:
        assert again.discard() == 4
        assert again.runs() == []
