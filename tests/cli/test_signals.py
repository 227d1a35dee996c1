"""SIGTERM, SIGHUP and Ctrl-C: bounded, with a summary, a code per cause, and nothing paid twice.

Issue 10, sections 2 and 6.  The subprocess tests send the first signal when
the child logs its first ``item_start`` (its handlers are installed by then)
and the second once it has printed that it is draining.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stagedretry import Outcome, Request, Response, StageContext, Strategy
from stagedretry.cli import _job
from stagedretry.cli._exit import ExitCode
from stagedretry.cli._job import CANCEL_GRACE, StopNow, _Interrupts, run_job
from stagedretry.cli._loop import Ended, run_bounded
from stagedretry.cli._summary import PENDING, STATUS_ORDER, Summary
from stagedretry.cli.pipeline import load_pipeline
from strategies.backend import Built

from .conftest import (
    ENDLESS_SIM,
    SLOW_SIM,
    Job,
    command,
    recording_console,
    records,
    resume,
    sim_pipeline,
    write_jsonl,
)

RUN = 'concurrency = 4\nrequest_log = "out/requests.jsonl"'


class _Quiet:
    """An event logger that keeps the names of the events it was given."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def bind(self, **values: Any) -> _Quiet:
        return self

    def _event(self, event: str, **values: Any) -> None:
        self.events.append(event)

    debug = info = warning = error = _event


@attrs.frozen
class Stopped:
    code: int
    summary: dict[str, Any]
    err: str
    seconds: float


def _signalled(job: Job, env: dict[str, str], *signals: signal.Signals) -> Stopped:
    """Run *job*, send *signals* one by one once items are in flight; how it ended."""
    started = time.monotonic()
    child = subprocess.Popen(
        command("run", str(job.pipeline), "--json", "--no-progress", "--log-level", "debug"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    err = []
    sent = 0
    for line in child.stderr:
        err.append(line)
        # One at a time: signals sent together may be delivered as one.
        if (sent == 0 and "] item_start" in line) or (sent > 0 and "interrupted:" in line):
            child.send_signal(signals[sent])
            sent += 1
            if sent == len(signals):
                break
    out, rest = child.communicate(timeout=60)
    return Stopped(
        child.returncode, json.loads(out), "".join(err) + rest, time.monotonic() - started
    )


def _requests(job: Job) -> Counter[str]:
    """How many requests each item cost over every run (the request log is appended to)."""
    log = job.folder / "out/requests.jsonl"
    return Counter(json.loads(line)["item"] for line in log.read_text("utf-8").splitlines())


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGTERM, ExitCode.TERMINATED), (signal.SIGHUP, ExitCode.HANGUP)],
    ids=["SIGTERM", "SIGHUP"],
)
def test_one_signal_drains_prints_the_summary_and_the_resume_pays_nothing_twice(
    tmp_path: Path, subprocess_env: dict[str, str], sig: signal.Signals, code: ExitCode
) -> None:
    job = sim_pipeline(tmp_path / "job", items=200, sim=SLOW_SIM, run=RUN)
    stopped = _signalled(job, subprocess_env, sig)
    assert stopped.code == code
    assert "Traceback" not in stopped.err
    assert "interrupted: taking no new items" in stopped.err
    items = stopped.summary["items"]
    assert stopped.summary["interrupted"] is True
    assert stopped.summary["stopped_by"] == code.name.lower()
    assert stopped.summary["exit_code"] == code
    assert items["pending"] > 0
    assert items["cancelled"] == 0  # the items in flight finished and were journaled
    sent = _requests(job)
    assert items["succeeded"] == len(sent)

    final = resume(job, subprocess_env)
    assert final["items"]["pending"] == 0
    assert final["items"]["from_journal"] == len(sent)
    # Every item was sent exactly once over both runs: nothing in flight was paid twice.
    paid = _requests(job)
    assert len(paid) == 200
    assert set(paid.values()) == {1}


@pytest.mark.parametrize(
    ("sig", "code"),
    [
        (signal.SIGTERM, ExitCode.TERMINATED),
        (signal.SIGINT, ExitCode.INTERRUPTED),
        (signal.SIGHUP, ExitCode.HANGUP),
    ],
    ids=["SIGTERM", "SIGINT", "SIGHUP"],
)
def test_a_second_signal_ends_endless_requests_within_seconds_with_the_summary(
    tmp_path: Path, subprocess_env: dict[str, str], sig: signal.Signals, code: ExitCode
) -> None:
    job = sim_pipeline(tmp_path / "job", items=20, sim=ENDLESS_SIM, run=RUN)
    stopped = _signalled(job, subprocess_env, sig, sig)
    assert stopped.code == code
    assert "Traceback" not in stopped.err
    assert stopped.seconds < 15  # the requests would take an hour each
    this_run = stopped.summary["this_run"]
    assert this_run["cancelled"] > 0
    assert sum(this_run.values()) == this_run["cancelled"]


def _emulator_job(folder: Path, faults: str) -> Job:
    folder.mkdir(parents=True)
    write_jsonl(folder / "input.jsonl", records(6))
    (folder / "book.json").write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"title": {"type": "string"}},
                "required": ["title"],
            }
        ),
        "utf-8",
    )
    pipeline = folder / "pipeline.toml"
    # No plan.timeout: the default bounds each request, and the signals end the run sooner.
    pipeline.write_text(
        'name = "hang"\n[plan]\nmax_prompts = 2\n\n[[plan.stages]]\nname = "full"\n\n'
        '[backend]\nkind = "emulator"\n\n[backend.emulator]\n'
        f"{faults}\n\n"
        '[input]\npath = "input.jsonl"\ntemplate = "Describe {title}."\n\n'
        '[output]\npath = "out/results.jsonl"\nschema = "book.json"\n\n'
        "[run]\nconcurrency = 2\n",
        "utf-8",
    )
    return Job(
        folder, pipeline, folder / "input.jsonl", folder / "out/results.jsonl", folder / "out"
    )


def test_the_issues_example_a_second_ctrl_c_ends_an_emulator_hang(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    job = _emulator_job(tmp_path / "job", 'faults = [{ kind = "hang", rate = 1.0 }]')
    stopped = _signalled(job, subprocess_env, signal.SIGINT, signal.SIGINT)
    assert stopped.code == ExitCode.INTERRUPTED
    assert stopped.seconds < 15
    assert "Traceback" not in stopped.err
    assert stopped.summary["this_run"]["cancelled"] == 2  # the two in flight
    assert stopped.summary["items"]["pending"] == 4


def test_exit_codes_are_in_the_run_summary_json_and_match_the_process(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    job = sim_pipeline(tmp_path / "job", items=3, sim="seed = 1\ninvalid_rate = 0.0")
    done = subprocess.run(
        command("run", str(job.pipeline), "--json", "--no-progress"),
        capture_output=True,
        env=subprocess_env,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == json.loads(done.stdout)["exit_code"] == ExitCode.OK


# -- in-process: a signal before the first item, a strategy that will not stop ----------------


class _Stubborn:
    """Wraps a strategy; its first request sends two Ctrl-Cs, then ignores its cancellation."""

    def __init__(self, inner: Strategy, release: asyncio.Event) -> None:
        self._inner = inner
        self._release = release
        self.calls = 0

    @property
    def params_type(self) -> Any:
        return getattr(self._inner, "params_type", None)

    async def generate(self, request: Request, ctx: StageContext) -> Response:
        self.calls += 1
        if self.calls == 1:
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
        while not self._release.is_set():
            try:
                await self._release.wait()
            except asyncio.CancelledError:
                continue  # the bug this guards against: a strategy that swallows cancellation
        return await self._inner.generate(request, ctx)

    def classify(self, exc: BaseException) -> Outcome | None:
        return self._inner.classify(exc)


async def test_a_strategy_that_ignores_cancellation_is_given_up_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = sim_pipeline(tmp_path / "job", items=4, sim="seed = 1\ninvalid_rate = 0.0")
    pipeline = load_pipeline(job.pipeline)
    release = asyncio.Event()
    real_build = _job.build_backend

    async def build(pipeline: Any, *, api_key: str | None, **options: Any) -> Built:
        built = await real_build(pipeline, api_key=api_key, **options)
        return attrs.evolve(built, strategy=_Stubborn(built.strategy, release))

    monkeypatch.setattr(_job, "build_backend", build)
    console = recording_console()
    began = time.monotonic()
    summary = await run_job(pipeline, console=console, log=_Quiet(), progress=False)
    took = time.monotonic() - began
    release.set()
    await asyncio.sleep(0.05)  # let the stubborn workers end before the loop closes
    assert CANCEL_GRACE <= took < CANCEL_GRACE + 5
    assert summary.given_up
    assert summary.exit_code == ExitCode.INTERRUPTED
    assert "did not end 5 s after they were cancelled" in console.export_text()


async def test_a_signal_before_the_first_item_starts_no_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = sim_pipeline(tmp_path / "job", items=5, sim="seed = 1\ninvalid_rate = 0.0", run=RUN)
    pipeline = load_pipeline(job.pipeline)
    real_build = _job.build_backend

    async def build(pipeline: Any, *, api_key: str | None, **options: Any) -> Built:
        # SIGTERM while the backend starts (a server starting, a client connecting).
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.05)
        return await real_build(pipeline, api_key=api_key, **options)

    monkeypatch.setattr(_job, "build_backend", build)
    console = recording_console()
    summary = await run_job(pipeline, console=console, log=_Quiet(), progress=False)
    assert summary.exit_code == ExitCode.TERMINATED
    assert summary.counts[PENDING] == 5
    assert sum(summary.this_run.values()) == 0
    assert not (job.folder / "out/requests.jsonl").read_text("utf-8")
    assert "interrupted before the first item: no item was started" in console.export_text()


def test_run_bounded_leaves_a_task_that_ignores_cancellation_instead_of_waiting() -> None:
    release = asyncio.Event()
    finished: list[bool] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if release.is_set():
                    finished.append(True)
                    return

    async def main() -> int:
        asyncio.get_running_loop().create_task(stubborn())
        await asyncio.sleep(0)
        return 7

    ended = Ended()
    began = time.monotonic()
    assert run_bounded(main(), ended, grace=0.3) == 7
    assert time.monotonic() - began < 3
    assert ended.left_running == 1
    assert not finished
    release.set()
    ended.close(grace=5)
    assert finished == [True]


def test_run_bounded_ends_like_asyncio_run_when_nothing_is_stuck() -> None:
    async def main() -> str:
        asyncio.get_running_loop().create_task(asyncio.sleep(3600))
        return "done"

    ended = Ended()
    assert run_bounded(main(), ended, grace=5) == "done"
    assert ended.left_running == 0


async def test_the_third_signal_stops_at_once_with_the_first_signals_code() -> None:
    interrupts = _Interrupts(recording_console(), _Quiet())
    interrupts.interrupt(signal.SIGHUP)
    interrupts.interrupt(signal.SIGINT)
    with pytest.raises(StopNow) as caught:
        interrupts.interrupt(signal.SIGTERM)
    assert caught.value.code == ExitCode.HANGUP
    assert isinstance(caught.value, KeyboardInterrupt)


# -- the exit code of a summary ----------------------------------------------------------------

STOPS = [None, ExitCode.DEADLINE, ExitCode.HANGUP, ExitCode.INTERRUPTED, ExitCode.TERMINATED]


@given(
    counts=st.fixed_dictionaries({s: st.integers(0, 5) for s in STATUS_ORDER}),
    stopped=st.sampled_from(STOPS),
)
def test_the_exit_code_follows_the_documented_rule(
    counts: dict[str, int], stopped: ExitCode | None
) -> None:
    summary = _summary(counts, stopped)
    left = counts[PENDING] + counts["cancelled"]
    if stopped is not None and left:
        assert summary.exit_code == stopped  # rerun to finish
    elif counts["succeeded"] == sum(counts.values()):
        assert summary.exit_code == ExitCode.OK
    else:
        assert summary.exit_code == ExitCode.SOME_FAILED
    assert summary.exit_code in set(ExitCode)


def _summary(counts: dict[str, int], stopped: ExitCode | None) -> Summary:
    from stagedretry import Usage

    return Summary(
        pipeline="p",
        fingerprint="f",
        backend="sim",
        model="m",
        total=sum(counts.values()),
        counts=counts,
        this_run={},
        from_journal=0,
        input_errors=0,
        interrupted=stopped is not None,
        prompts=0,
        attempts=0,
        usage=Usage(),
        stages=(),
        cache=None,
        cost=None,
        wall_time=1.0,
        output_path=Path("out.jsonl"),
        journal_path=Path("journal.sqlite"),
        stopped=stopped,
    )
