"""One run's wiring: when results are committed, what is put away on failure, Ctrl-C thrice."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

from stagedretry import Plan, Runner
from stagedretry._journal import Journal
from stagedretry.cli._backends import build_backend
from stagedretry.cli._job import _Interrupts, _signals, run_job
from stagedretry.cli.pipeline import load_pipeline
from strategies.backend import BackendError
from strategies.sim import SimStrategy

from .conftest import Invocation, Job, recording_console

SCHEMA = '{"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}'


class _Probe:
    """An event logger that checks, at every event, that each item already ended is committed.

    The runner logs ``item_end`` as it builds an item's result; any later event
    comes after the worker handed the result on, by which time it must be in
    the journal (read here through a second, read-only connection).
    """

    def __init__(self, journal: Path) -> None:
        self._journal = journal
        self.ended: list[str] = []
        self.checks = 0
        self.uncommitted: set[str] = set()

    def bind(self, **values: Any) -> _Probe:
        return self

    def _event(self, event: str, **values: Any) -> None:
        if self.ended:
            db = sqlite3.connect(f"file:{self._journal}?mode=ro", uri=True)
            try:
                committed = {row[0] for row in db.execute("SELECT item_id FROM results")}
            finally:
                db.close()
            self.checks += 1
            self.uncommitted |= set(self.ended) - committed
        if event == "item_end":
            self.ended.append(values["item"])

    debug = info = warning = error = _event


async def test_a_result_is_committed_before_anything_else_happens(
    make_job: Callable[..., Job],
) -> None:
    # No latency: a worker runs item after item without waiting, so a result left for the
    # stream's consumer to commit would still be uncommitted at the worker's next event.
    job = make_job(items=24, sim="seed = 5\ninvalid_rate = 0.3", run="concurrency = 4")
    probe = _Probe(job.journal)
    summary = await run_job(
        load_pipeline(job.pipeline), console=recording_console(), log=probe, progress=False
    )
    assert summary.total == 24
    assert len(probe.ended) == 24
    assert probe.checks > 24
    assert probe.uncommitted == set()


def _emulator_job(make_job: Callable[..., Job], *, items: int = 4) -> Job:
    job = make_job(items=items, sim="")
    (job.folder / "title.schema.json").write_text(SCHEMA, "utf-8")
    text = job.pipeline.read_text("utf-8")
    text = text.replace('kind = "sim"\n\n[backend.sim]\n', 'kind = "emulator"\n')
    text = text.replace(
        '[output]\npath = "out/results.jsonl"',
        '[output]\npath = "out/results.jsonl"\nschema = "title.schema.json"',
    )
    job.pipeline.write_text(text, "utf-8")
    return job


def _emulator_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "gemini-emulator"}


def test_the_backend_is_put_away_when_the_journal_fails_after_it_started(
    make_job: Callable[..., Job], cli: Callable[..., Invocation]
) -> None:
    job = _emulator_job(make_job)
    pipeline = load_pipeline(job.pipeline)
    with Journal(job.journal, pipeline.fingerprint):
        pass  # create the file, then make every new run row fail, as a full disk would
    db = sqlite3.connect(job.journal)
    db.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    db.commit()
    db.close()
    before = _emulator_threads()
    done = cli("run", str(job.pipeline))
    assert done.code == 2
    assert "cannot record the start of a run in the journal" in done.err
    assert "disk full" in done.err
    assert _emulator_threads() == before  # the emulator the backend started was stopped


async def test_a_backend_that_fails_half_way_stops_what_it_started(
    make_job: Callable[..., Job],
) -> None:
    job = _emulator_job(make_job)
    (job.folder / "rules.md").write_text("Be precise. " * 50, "utf-8")
    job.pipeline.write_text(
        job.pipeline.read_text("utf-8") + '\n[cache]\nsystem_instruction = "rules.md"\n', "utf-8"
    )
    pipeline = load_pipeline(job.pipeline)
    assert pipeline.cache is not None
    # A tag the loader refuses, forced past its checks: the cache refuses it after the
    # emulator started.
    options = attrs.evolve(pipeline.cache.options)
    object.__setattr__(options, "tag", "a:b")
    bad = attrs.evolve(pipeline, cache=attrs.evolve(pipeline.cache, options=options))
    before = _emulator_threads()
    with pytest.raises(BackendError, match="the emulator backend cannot be set up: tag must be"):
        await build_backend(bad, api_key=None)
    assert _emulator_threads() == before


async def test_the_third_interrupt_gives_the_signals_back_and_stops_at_once() -> None:
    console = recording_console()
    interrupts = _Interrupts(console, _Probe(Path("unused")))
    runner = Runner(Plan.ladder(), SimStrategy())
    interrupts.runner = runner
    loop = asyncio.get_running_loop()
    with _signals(interrupts):
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        interrupts.interrupt()
        interrupts.interrupt()
        with pytest.raises(KeyboardInterrupt):
            interrupts.interrupt()
        # From now on Ctrl-C is Python's own: KeyboardInterrupt wherever the program is.
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        assert not loop.remove_signal_handler(signal.SIGINT)  # nothing of ours is left
    text = console.export_text()
    assert "taking no new items" in text
    assert "cancelling the items in flight" in text
    assert "interrupted a third time: stopping without waiting" in text
