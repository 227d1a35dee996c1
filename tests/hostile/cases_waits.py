"""Waits without end, and signals: every duration bounded, every stop bounded and documented.

Issue 10, sections 2 and 6.  Durations out of range (huge, NaN, infinite,
negative) in every section are one sentence naming the key, exit 2.  Signals
come at different moments (before the first item, during items in flight,
twice, SIGHUP, SIGTERM, Ctrl-C, during an emulator hang) and each ends the run
within seconds with its summary and the code of the first signal; a resume
after SIGHUP pays for nothing twice.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter

from stagedretry.cli._exit import ExitCode

from ._corpus import INPUT, PLAN, Case, Ran, base_env, gemini_pipeline, run_args, sim_pipeline

SCHEMA = json.dumps(
    {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}
)
STARTED = r"\] item_start\s"
DRAINING = r"interrupted: taking no new items"
ENDLESS = "seed = 3\ninvalid_rate = 0.0\nlatency = 3600"
LOGGED = 'concurrency = 2\nrequest_log = "out/requests.jsonl"'


def _emulator_pipeline(emulator: str = "seed = 3", *, plan: str = PLAN, extra: str = "") -> str:
    """A pipeline on the in-process emulator backend (no key), with an output schema."""
    return (
        f'name = "hostile-emulator"\n{plan}\n[backend]\nkind = "emulator"\n\n'
        f"[backend.emulator]\n{emulator}\n\n"
        '[input]\npath = "input.jsonl"\ntemplate = "Describe {title}."\n\n'
        '[output]\npath = "out/results.jsonl"\nschema = "book.json"\n\n'
        '[journal]\npath = "out/journal.sqlite"\n\n[run]\nconcurrency = 2\n\n'
        f"{extra}\n"
    )


def _summary(ran: Ran) -> dict[str, object]:
    summary: dict[str, object] = json.loads(ran.out)
    return summary


def _stopped_with_items_left(code: ExitCode) -> object:
    def check(ran: Ran) -> None:
        summary = _summary(ran)
        assert summary["exit_code"] == code
        assert summary["stopped_by"] == code.name.lower()
        items = summary["items"]
        assert isinstance(items, dict)
        assert items["pending"] + items["cancelled"] > 0

    return check


def _drained(code: ExitCode) -> object:
    """One signal: the items in flight finished and were committed; none was cancelled."""

    def check(ran: Ran) -> None:
        _stopped_with_items_left(code)(ran)  # type: ignore[operator]
        items = _summary(ran)["items"]
        assert isinstance(items, dict)
        assert items["cancelled"] == 0

    return check


def _cancelled(code: ExitCode) -> object:
    """Two signals: the items in flight were cancelled, within seconds of an endless wait."""

    def check(ran: Ran) -> None:
        _stopped_with_items_left(code)(ran)  # type: ignore[operator]
        this_run = _summary(ran)["this_run"]
        assert isinstance(this_run, dict)
        assert this_run["cancelled"] > 0
        assert ran.seconds < 20

    return check


def _resume_pays_nothing_twice(ran: Ran) -> None:
    """After a SIGHUP, the same command finishes the job and no item is sent twice."""
    _drained(ExitCode.HANGUP)(ran)  # type: ignore[operator]
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "stagedretry.cli",
            *run_args("--json", "--set", "backend.sim.latency=0"),
        ],
        cwd=ran.folder,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert resumed.returncode == ExitCode.OK, resumed.stderr
    log = (ran.folder / "out/requests.jsonl").read_text("utf-8").splitlines()
    paid = Counter(json.loads(line)["item"] for line in log)
    assert len(paid) == 5
    assert set(paid.values()) == {1}


def _nothing_started(ran: Ran) -> None:
    summary = _summary(ran)
    assert summary["exit_code"] == ExitCode.TERMINATED
    items = summary["items"]
    assert isinstance(items, dict)
    # Usually none started; if the signal lost the race with the first items, those (1 s
    # each) finished and the rest never started.  tests/cli/test_signals.py pins the moment.
    assert items["pending"] >= 3
    assert items["cancelled"] == 0
    assert ran.seconds < 20


def _config(name: str, pipeline: str, key: str, *, check_only: bool = True) -> Case:
    return Case(
        f"waits-{name}",
        ("plan", "check", "pipeline.toml") if check_only else run_args(),
        ExitCode.USAGE,
        files={
            "pipeline.toml": pipeline,
            "input.jsonl": INPUT,
            "book.json": SCHEMA,
            "rules.md": "Be precise.\n",
        },
        stderr=key.replace(".", r"\.").replace("[", r"\[").replace("]", r"\]") + ": ",
        timeout=30,
    )


CASES = [
    # -- durations out of range, in every section -------------------------------------------------
    _config(
        "sim-latency-1e308", sim_pipeline(sim="seed = 3\nlatency = 1e308"), "backend.sim.latency"
    ),
    _config(
        "sim-retry-after-nan",
        sim_pipeline(sim="seed = 3\nretry_after = nan"),
        "backend.sim.retry_after",
        check_only=False,
    ),
    _config(
        "plan-timeout-inf",
        sim_pipeline().replace("max_prompts = 4", "max_prompts = 4\ntimeout = inf"),
        "plan.timeout",
        check_only=False,
    ),
    _config(
        "plan-timeout-none-string",
        sim_pipeline().replace("max_prompts = 4", 'max_prompts = 4\ntimeout = "none"'),
        "plan.timeout",
    ),
    _config(
        "plan-deadline-negative",
        sim_pipeline().replace("max_prompts = 4", "max_prompts = 4\ndeadline = -5"),
        "plan.deadline",
    ),
    _config(
        "plan-backoff-max-huge",
        sim_pipeline().replace("max = 0.01", "max = 1e9"),
        "plan.backoff.max",
    ),
    _config(
        "plan-backoff-multiplier-1e308",
        sim_pipeline().replace("max = 0.01 }", "max = 0.01, multiplier = 1e308 }"),
        "plan.backoff.multiplier",
    ),
    _config(
        "plan-rate-limit-backoff-nan",
        sim_pipeline().replace(
            "max_prompts = 4", "max_prompts = 4\nrate_limit_backoff = { initial = nan, max = 5 }"
        ),
        "plan.rate_limit_backoff.initial",
    ),
    _config(
        "stage-timeout-huge",
        sim_pipeline().replace('name = "full_t0"', 'name = "full_t0"\ntimeout = 1e300'),
        "plan.stages[0].timeout",
        check_only=False,
    ),
    _config("run-deadline-inf", sim_pipeline(run="deadline = inf"), "run.deadline"),
    _config(
        "run-deadline-1e12",
        sim_pipeline(run="deadline = 1e12"),
        "run.deadline",
        check_only=False,
    ),
    _config(
        "emulator-latency-nan", _emulator_pipeline("latency = nan"), "backend.emulator.latency"
    ),
    _config(
        "emulator-fault-delay-huge",
        _emulator_pipeline('[[backend.emulator.faults]]\nkind = "slow"\ndelay = 1e308'),
        "backend.emulator.faults[0].delay",
        check_only=False,
    ),
    _config(
        "emulator-fault-retry-delay-negative",
        _emulator_pipeline('[[backend.emulator.faults]]\nkind = "rate_limit"\nretry_delay = -1'),
        "backend.emulator.faults[0].retry_delay",
    ),
    Case(
        "waits-cache-ttl-1e308",
        ("plan", "check", "pipeline.toml"),
        ExitCode.USAGE,
        files={
            "pipeline.toml": gemini_pipeline(
                extra='[cache]\nsystem_instruction = "rules.md"\nttl = 1e308\n'
            ).replace(
                'path = "out/results.jsonl"', 'path = "out/results.jsonl"\nschema = "b.json"'
            ),
            "input.jsonl": INPUT,
            "rules.md": "Be precise.\n",
            "b.json": SCHEMA,
        },
        stderr=r"cache\.ttl: ",
        timeout=30,
    ),
    _config(
        "cache-renew-margin-inf",
        _emulator_pipeline(extra='[cache]\nsystem_instruction = "rules.md"\nrenew_margin = inf'),
        "cache.renew_margin",
    ),
    # -- signals ----------------------------------------------------------------------------------
    Case(
        "waits-sigterm-before-any-item",
        run_args("--json", "--log-level", "debug"),
        ExitCode.TERMINATED,
        files={
            "pipeline.toml": sim_pipeline(
                sim="seed = 3\ninvalid_rate = 0.0\nlatency = 1", run=LOGGED
            ),
            "input.jsonl": INPUT,
        },
        # run_start is logged before the backend is built and the first item taken.
        signals=((r"\] run_start\s", signal.SIGTERM),),
        timeout=30,
        check=_nothing_started,
    ),
    Case(
        "waits-sigterm-once-drains",
        run_args("--json", "--log-level", "debug"),
        ExitCode.TERMINATED,
        files={
            "pipeline.toml": sim_pipeline(
                sim="seed = 3\ninvalid_rate = 0.0\nlatency = 0.5", run=LOGGED
            ),
            "input.jsonl": INPUT,
        },
        signals=((STARTED, signal.SIGTERM),),
        timeout=30,
        check=_drained(ExitCode.TERMINATED),
    ),
    Case(
        "waits-sighup-once-drains-and-resume-pays-nothing-twice",
        run_args("--json", "--log-level", "debug"),
        ExitCode.HANGUP,
        files={
            "pipeline.toml": sim_pipeline(
                sim="seed = 3\ninvalid_rate = 0.0\nlatency = 0.5", run=LOGGED
            ),
            "input.jsonl": INPUT,
        },
        signals=((STARTED, signal.SIGHUP),),
        timeout=60,
        check=_resume_pays_nothing_twice,
    ),
    Case(
        "waits-sigint-once-drains",
        run_args("--json", "--log-level", "debug"),
        ExitCode.INTERRUPTED,
        files={
            "pipeline.toml": sim_pipeline(
                sim="seed = 3\ninvalid_rate = 0.0\nlatency = 0.5", run=LOGGED
            ),
            "input.jsonl": INPUT,
        },
        signals=((STARTED, signal.SIGINT),),
        timeout=30,
        check=_drained(ExitCode.INTERRUPTED),
    ),
    Case(
        "waits-sigterm-twice-ends-endless-requests",
        run_args("--json", "--log-level", "debug"),
        ExitCode.TERMINATED,
        files={"pipeline.toml": sim_pipeline(sim=ENDLESS, run=LOGGED), "input.jsonl": INPUT},
        signals=((STARTED, signal.SIGTERM), (DRAINING, signal.SIGTERM)),
        timeout=30,
        check=_cancelled(ExitCode.TERMINATED),
    ),
    Case(
        "waits-sigint-twice-ends-endless-requests",
        run_args("--json", "--log-level", "debug"),
        ExitCode.INTERRUPTED,
        files={"pipeline.toml": sim_pipeline(sim=ENDLESS, run=LOGGED), "input.jsonl": INPUT},
        signals=((STARTED, signal.SIGINT), (DRAINING, signal.SIGINT)),
        timeout=30,
        check=_cancelled(ExitCode.INTERRUPTED),
    ),
    Case(
        "waits-sighup-twice-ends-endless-requests",
        run_args("--json", "--log-level", "debug"),
        ExitCode.HANGUP,
        files={"pipeline.toml": sim_pipeline(sim=ENDLESS, run=LOGGED), "input.jsonl": INPUT},
        signals=((STARTED, signal.SIGHUP), (DRAINING, signal.SIGHUP)),
        timeout=30,
        check=_cancelled(ExitCode.HANGUP),
    ),
    Case(
        "waits-sighup-then-sigterm-keeps-the-first-signals-code",
        run_args("--json", "--log-level", "debug"),
        ExitCode.HANGUP,
        files={"pipeline.toml": sim_pipeline(sim=ENDLESS, run=LOGGED), "input.jsonl": INPUT},
        signals=((STARTED, signal.SIGHUP), (DRAINING, signal.SIGTERM)),
        timeout=30,
        check=_cancelled(ExitCode.HANGUP),
    ),
    Case(
        "waits-emulator-hang-ctrl-c-twice",
        run_args("--json", "--log-level", "debug"),
        ExitCode.INTERRUPTED,
        files={
            # No plan.timeout: the default (600 s) bounds the hang; Ctrl-C ends it sooner.
            "pipeline.toml": _emulator_pipeline(
                'seed = 3\n[[backend.emulator.faults]]\nkind = "hang"\nrate = 1.0'
            ),
            "input.jsonl": INPUT,
            "book.json": SCHEMA,
        },
        signals=((STARTED, signal.SIGINT), (DRAINING, signal.SIGINT)),
        timeout=30,
        check=_cancelled(ExitCode.INTERRUPTED),
    ),
    Case(
        "waits-emulator-hang-sigterm-twice",
        run_args("--json", "--log-level", "debug"),
        ExitCode.TERMINATED,
        files={
            "pipeline.toml": _emulator_pipeline(
                'seed = 3\n[[backend.emulator.faults]]\nkind = "hang"\nrate = 1.0'
            ),
            "input.jsonl": INPUT,
            "book.json": SCHEMA,
        },
        signals=((STARTED, signal.SIGTERM), (DRAINING, signal.SIGTERM)),
        timeout=30,
        check=_cancelled(ExitCode.TERMINATED),
    ),
    Case(
        "waits-emulator-hang-ends-by-a-plan-timeout",
        run_args("--json"),
        ExitCode.SOME_FAILED,
        files={
            "pipeline.toml": _emulator_pipeline(
                'seed = 3\n[[backend.emulator.faults]]\nkind = "hang"\nrate = 1.0',
                plan=PLAN.replace("max_prompts = 4", "max_prompts = 2\ntimeout = 0.3"),
            ),
            "input.jsonl": INPUT,
            "book.json": SCHEMA,
        },
        timeout=30,
    ),
    # -- run.deadline -----------------------------------------------------------------------------
    Case(
        "waits-run-deadline-passes-with-items-left",
        run_args("--json"),
        ExitCode.DEADLINE,
        files={
            "pipeline.toml": sim_pipeline(
                sim="seed = 3\ninvalid_rate = 0.0\nlatency = 0.4",
                run="concurrency = 1\ndeadline = 0.5",
            ),
            "input.jsonl": INPUT,
        },
        timeout=30,
        check=_drained(ExitCode.DEADLINE),
    ),
    Case(
        "waits-run-deadline-not-reached-exits-0",
        run_args("--json"),
        ExitCode.OK,
        files={
            "pipeline.toml": sim_pipeline(
                sim="seed = 3\ninvalid_rate = 0.0", run="concurrency = 2\ndeadline = 120"
            ),
            "input.jsonl": INPUT,
        },
        timeout=30,
    ),
]
