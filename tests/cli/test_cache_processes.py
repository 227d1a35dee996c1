"""Four ``stagedretry run`` processes started together share one context cache.

Each process runs a shard of one job (its own input, journal and output; the same
instructions and tag, so the same cache fingerprint) against ONE emulator served by this
test process.  The emulator holds each of the first eight cache requests a second before
answering (the four first lists and the four creations), so every process that starts
within that second of the first one lists, finds nothing, and creates: the race of a
cron job or a sharded job.  Creation converges: one cache is left, and every
``generateContent`` names it.

The bound on requests that named another cache is 0: each process settles its cache
before its first request (the runner prepares the resource before any attempt), its
second look starts after its own creation was answered so it sees every older cache,
and every process picks the oldest of what it sees, which its creator never deletes.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from strategies.gemini.emulator import Fault, FaultKind, GeminiEmulator

from .conftest import Job, command, records

MODEL = "gemini-2.5-flash"
PROCESSES = 4
ITEMS = 5
HOLD = 1.0
"""Seconds each of the first eight cache requests waits: the window within which
processes starting later still find nothing (a start spread wider only means fewer
processes create, and the test still holds)."""
SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "author": {"type": "string"}},
    "required": ["title", "author"],
}
RULES = "Answer as a careful librarian would, with the book's title and author. " * 120


@pytest.fixture
def emulator() -> Iterator[GeminiEmulator]:
    with GeminiEmulator(seed=6, invalid_rate=0.0) as emu:
        emu.inject(
            Fault(kind=FaultKind.SLOW, route="cachedContents", delay=HOLD, times=2 * PROCESSES)
        )
        yield emu


def shard(make_job: Callable[..., Job], emulator: GeminiEmulator, number: int) -> Job:
    """One shard's pipeline: its own items, the job's shared instructions and tag."""
    job = make_job(rows=records(ITEMS, start=1 + number * ITEMS), sim="", run="concurrency = 2")
    (job.folder / "rules.md").write_text(RULES, "utf-8")
    (job.folder / "book.schema.json").write_text(json.dumps(SCHEMA), "utf-8")
    text = (
        job.pipeline.read_text("utf-8")
        .replace(
            'kind = "sim"\n\n[backend.sim]\n',
            f'kind = "gemini"\nmodel = "{MODEL}"\nbase_url = "{emulator.base_url}"\n',
        )
        .replace(
            '[output]\npath = "out/results.jsonl"',
            '[output]\npath = "out/results.jsonl"\nschema = "book.schema.json"',
        )
    )
    text += '\n[cache]\nsystem_instruction = "rules.md"\ntag = "shards"\n'
    job.pipeline.write_text(text, "utf-8")
    return job


def test_four_processes_started_together_end_with_one_cache(
    make_job: Callable[..., Job],
    emulator: GeminiEmulator,
    subprocess_env: dict[str, str],
) -> None:
    jobs = [shard(make_job, emulator, n) for n in range(PROCESSES)]
    env = {**subprocess_env, "GEMINI_API_KEY": "dummy-key-for-the-emulator"}
    root = Path(__file__).resolve().parents[2]
    children = [
        subprocess.Popen(
            command("run", str(job.pipeline), "--json", "--no-progress"),
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    ]
    summaries = []
    try:
        for child in children:
            out, err = child.communicate(timeout=90)
            assert child.returncode == 0, err
            summaries.append(json.loads(out))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()

    ledger = emulator.ledger
    (kept,) = emulator.cache_names()
    assert sum(s["items"]["succeeded"] for s in summaries) == PROCESSES * ITEMS
    # Every creation but the kept one was deleted, each by the process that made it.
    created = sum(s["cache"]["created"] for s in summaries)
    assert ledger.caches_created == created >= 1
    assert ledger.caches_deleted == created - 1
    assert sum(s["cache"]["duplicates_deleted"] for s in summaries) == created - 1
    assert sum(s["cache"]["deleted"] for s in summaries) == 0  # on_close keeps the winner
    deleted = [r.cached_content for r in ledger.requests if r.method == "DELETE"]
    assert kept not in deleted
    generates = [r for r in ledger.requests if r.path.endswith(":generateContent")]
    assert len(generates) == ledger.generate_calls >= PROCESSES * ITEMS
    assert [r for r in generates if r.cached_content != kept] == []  # the bound: 0
