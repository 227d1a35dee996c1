"""Files the run cannot write (or read): one sentence naming the file, exit 4, nothing stranded.

A full disk is a real one as far as the command can tell: the corpus gives the
process an ``RLIMIT_FSIZE``, so a write past it fails with ``EFBIG`` inside the
operating system, or points the rebuild's temporary file at ``/dev/full``
(``ENOSPC``).  A folder nobody may write to is one under ``/sys``, which refuses
even root.  Two runs on one output or one journal are two real processes.
After each failure the same command, run again without the fault, must finish
the job and write the whole output.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stagedretry.cli._exit import ExitCode

from ._corpus import Case, Ran, base_env, run_args, sim_pipeline

CLEAN = "seed = 3\ninvalid_rate = 0.0"
ITEMS = 200
# Long titles make the output large enough that a size limit can sit between the files
# SQLite needs at open (its 32 KiB shared-memory file) and the output.
BIG_INPUT = "".join(
    f'{{"id": "item-{n}", "title": "Title {n} {"x" * 60}"}}\n' for n in range(1, ITEMS + 1)
)
SMALL_INPUT = "".join(f'{{"id": "item-{n}", "title": "Title {n}"}}\n' for n in range(1, 6))
READ_ONLY = "/sys/stagedretry-corpus"
"""A folder that cannot be created nor written, whoever runs the corpus (sysfs refuses root)."""


def _cli(folder: Path, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stagedretry.cli", *args],
        cwd=folder,
        env=base_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _no_tmp(folder: Path) -> None:
    stranded = sorted(str(p) for p in folder.rglob("*.tmp"))
    assert not stranded, stranded


def _rerun_completes(items: int, *extra: str) -> Callable[[Ran], None]:
    """The check: no temporary file left; the same command, with no fault, writes every line."""

    def check(ran: Ran) -> None:
        _no_tmp(ran.folder)
        again = _cli(ran.folder, *run_args(*extra))
        assert again.returncode == ExitCode.OK, again.stdout + again.stderr
        assert "Traceback" not in again.stderr
        lines = _lines(ran.folder / "out/results.jsonl")
        assert sorted(str(row["id"]) for row in lines) == sorted(
            f"item-{n}" for n in range(1, items + 1)
        )
        assert {row["status"] for row in lines} == {"succeeded"}
        _no_tmp(ran.folder)

    return check


def _completed_once(folder: Path) -> None:
    """Run the job once, without any fault: its journal holds every item, its output all."""
    done = _cli(folder, *run_args())
    assert done.returncode == ExitCode.OK, done.stdout + done.stderr


def _dev_full_tmp(folder: Path) -> None:
    _completed_once(folder)
    (folder / "out/results.jsonl").unlink()
    # Every write to the rebuild's temporary file now fails as on a full disk (ENOSPC).
    (folder / "out/results.jsonl.tmp").symlink_to("/dev/full")


def _big_file(name: str, size: int) -> Callable[[Path], None]:
    def before(folder: Path) -> None:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#" * (size - 1) + "\n", encoding="utf-8")

    return before


# -- a second run while a slow first one holds the output or the journal -------------------------

_HOLDERS: dict[Path, subprocess.Popen[str]] = {}


def _slow_first_run(*extra: str, holds: str) -> Callable[[Path], None]:
    """Start a slow run of the same pipeline; return once it holds its lock (*holds* exists)."""

    def before(folder: Path) -> None:
        holder = subprocess.Popen(
            [sys.executable, "-m", "stagedretry.cli", *run_args(*extra)],
            cwd=folder,
            env=base_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        _HOLDERS[folder] = holder
        # The journal's file is made after both locks are taken: it existing means held.
        give_up = time.monotonic() + 30
        while not (folder / holds).exists():
            assert holder.poll() is None, f"the first run ended early: exit {holder.returncode}"
            assert time.monotonic() < give_up, "the first run never took its locks"
            time.sleep(0.02)

    return before


def _first_run_goes_on(output: str, *, refused_wrote: str) -> Callable[[Ran], None]:
    def check(ran: Ran) -> None:
        holder = _HOLDERS.pop(ran.folder)
        # Still running, untouched by the refused run; stopped now so the case stays short.
        assert holder.poll() is None
        # Twice: the first drains (its requests would take an hour), the second cancels.
        holder.send_signal(signal.SIGINT)
        time.sleep(0.5)
        holder.send_signal(signal.SIGINT)
        assert holder.wait(timeout=30) == ExitCode.INTERRUPTED
        assert all(row["status"] == "cancelled" for row in _lines(ran.folder / output))
        # The refused run did no work at all.
        assert not (ran.folder / refused_wrote).exists()

    return check


# Slow enough that the first run outlives the second on a busy machine.
SLOW = "seed = 3\ninvalid_rate = 0.0\nlatency = 3600"

CASES = [
    Case(
        "io-output-folder-is-a-file",
        run_args("--journal", "j/journal.sqlite"),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": SMALL_INPUT, "out": "x"},
        stderr=r"cannot write the output file '[^']*out/results\.jsonl': '[^']*out' is a file",
        check=lambda ran: _no_tmp(ran.folder),
    ),
    Case(
        "io-output-path-is-a-folder",
        run_args(),
        ExitCode.IO_ERROR,
        files={
            "pipeline.toml": sim_pipeline(sim=CLEAN),
            "input.jsonl": SMALL_INPUT,
            "out/results.jsonl/keep": "",
        },
        stderr=r"cannot write the output file '[^']*out/results\.jsonl': Is a directory",
        check=lambda ran: _no_tmp(ran.folder),
    ),
    Case(
        "io-output-folder-read-only",
        run_args("--output", f"{READ_ONLY}/results.jsonl"),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": SMALL_INPUT},
        stderr=rf"cannot write the output file '{READ_ONLY}/results\.jsonl': "
        r"(Operation not permitted|Permission denied)",
        # Refused before the journal is opened: nothing was done.
        check=lambda ran: _assert_absent(ran.folder / "out/journal.sqlite"),
    ),
    Case(
        "io-journal-folder-read-only",
        run_args("--journal", f"{READ_ONLY}/journal.sqlite"),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": SMALL_INPUT},
        stderr=rf"journal '{READ_ONLY}/journal\.sqlite': (Operation not permitted|Permission "
        r"denied)",
    ),
    Case(
        "io-journal-folder-is-a-file",
        run_args("--journal", "j/journal.sqlite"),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": SMALL_INPUT, "j": "x"},
        stderr=r"journal '[^']*j/journal\.sqlite': '[^']*j' is a file",
    ),
    Case(
        "io-journal-in-a-missing-folder",
        run_args("--journal", "deep/er/journal.sqlite"),
        ExitCode.OK,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": SMALL_INPUT},
        check=lambda ran: _assert_lines(ran.folder / "out/results.jsonl", 5),
    ),
    Case(
        # The journal's file may not grow past 60 kB: SQLite's write fails part way through.
        "io-disk-full-at-the-journal",
        run_args(),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": BIG_INPUT},
        file_size_limit=60_000,
        stderr=r"error: cannot record a result in the journal '[^']*out/journal\.sqlite'"
        r": (disk I/O error|database or disk is full); every result recorded before is kept",
        check=lambda ran: (_committed_equals_output(ran), _rerun_completes(ITEMS)(ran))[1],
    ),
    Case(
        # Not even the journal's first page fits: SQLite cannot create it.
        "io-disk-full-at-journal-creation",
        run_args(),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": SMALL_INPUT},
        file_size_limit=2_000,
        stderr=r"error: cannot open the journal '[^']*out/journal\.sqlite': (disk I/O error|"
        r"database or disk is full); free some space",
        check=_rerun_completes(5),
    ),
    Case(
        # A rerun after a complete run, its output lost, with room for the journal but not
        # for the output: the rebuild fails, leaves no temporary file, and names both files.
        "io-disk-full-at-the-output-rebuild",
        run_args(),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": BIG_INPUT},
        before=lambda folder: (_completed_once(folder), _truncate(folder))[1],
        file_size_limit=40_000,
        stderr=r"cannot write the output file '[^']*out/results\.jsonl': File too large; "
        r"every finished result is in the journal '[^']*out/journal\.sqlite': free some space",
        check=_rerun_completes(ITEMS),
    ),
    Case(
        "io-no-space-at-the-output-rebuild",
        run_args(),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": SMALL_INPUT},
        before=_dev_full_tmp,
        stderr=r"cannot write the output file '[^']*out/results\.jsonl': No space left on "
        r"device; every finished result is in the journal '[^']*journal\.sqlite': free some "
        r"space and run the same command again",
        check=_rerun_completes(5),
    ),
    Case(
        "io-stale-tmp-from-a-crash",
        run_args(),
        ExitCode.OK,
        files={
            "pipeline.toml": sim_pipeline(sim=CLEAN),
            "input.jsonl": SMALL_INPUT,
            "out/results.jsonl.tmp": '{"id": "item-1", "status": "half a li',
        },
        check=_rerun_completes(5),
    ),
    Case(
        "io-log-file-in-a-file",
        run_args("--log-file", "logs/run.jsonl"),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": SMALL_INPUT, "logs": "x"},
        stderr=r"cannot open the log file 'logs/run\.jsonl': '?logs'? is a file, not a folder",
        check=lambda ran: _assert_absent(ran.folder / "out/journal.sqlite"),
    ),
    Case(
        "io-log-file-read-only",
        run_args("--log-file", f"{READ_ONLY}/run.jsonl"),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": SMALL_INPUT},
        stderr=rf"cannot open the log file '{READ_ONLY}/run\.jsonl': "
        r"(Operation not permitted|Permission denied)",
    ),
    Case(
        # The log file is one line short of the limit: its first event cannot be written.
        "io-log-file-full",
        run_args("--log-file", "log/run.jsonl"),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN), "input.jsonl": SMALL_INPUT},
        before=_big_file("log/run.jsonl", 59_990),
        file_size_limit=60_000,
        stderr=r"error: cannot write the log file '[^']*log/run\.jsonl': File too large",
        check=_rerun_completes(5, "--log-file", "log/run.jsonl"),
    ),
    Case(
        "io-request-log-is-a-folder",
        run_args(),
        ExitCode.IO_ERROR,
        files={
            "pipeline.toml": sim_pipeline(sim=CLEAN, run='request_log = "requests"'),
            "input.jsonl": SMALL_INPUT,
            "requests/keep": "",
        },
        stderr=r"cannot open the request log '[^']*requests': Is a directory",
    ),
    Case(
        "io-request-log-full",
        run_args(),
        ExitCode.IO_ERROR,
        files={
            "pipeline.toml": sim_pipeline(
                sim=CLEAN, run='concurrency = 1\nrequest_log = "log/requests.jsonl"'
            ),
            "input.jsonl": SMALL_INPUT,
        },
        before=_big_file("log/requests.jsonl", 59_990),
        file_size_limit=60_000,
        stderr=r"error: cannot write the request log '[^']*log/requests\.jsonl': "
        r"File too large",
        check=_rerun_completes(5),
    ),
    Case(
        "io-input-unreadable",
        run_args("--input", "/proc/self/mem"),
        ExitCode.IO_ERROR,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN)},
        stderr=r"cannot read the input file '/proc/self/mem': Input/output error",
    ),
    Case(
        "io-input-missing",
        run_args(),
        ExitCode.USAGE,
        files={"pipeline.toml": sim_pipeline(sim=CLEAN)},
        stderr=r"input\.path: '[^']*input\.jsonl' is not a readable file",
    ),
    Case(
        "io-output-held-by-another-run",
        run_args(),
        ExitCode.USAGE,
        files={
            "pipeline.toml": sim_pipeline(sim=SLOW, run="concurrency = 1"),
            "input.jsonl": SMALL_INPUT,
        },
        before=_slow_first_run("--journal", "first/journal.sqlite", holds="first/journal.sqlite"),
        stderr=r"another stagedretry run is writing the output file '[^']*out/results\.jsonl'",
        timeout=30,
        check=_first_run_goes_on("out/results.jsonl", refused_wrote="out/journal.sqlite"),
    ),
    Case(
        "io-journal-held-by-another-run",
        run_args(),
        ExitCode.USAGE,
        files={
            "pipeline.toml": sim_pipeline(sim=SLOW, run="concurrency = 1"),
            "input.jsonl": SMALL_INPUT,
        },
        before=_slow_first_run("--output", "first/results.jsonl", holds="out/journal.sqlite"),
        stderr=r"another stagedretry run is using the journal '[^']*out/journal\.sqlite'",
        timeout=30,
        check=_first_run_goes_on("first/results.jsonl", refused_wrote="out/results.jsonl"),
    ),
]


def _assert_absent(path: Path) -> None:
    assert not path.exists(), path


def _assert_lines(path: Path, count: int) -> None:
    assert len(_lines(path)) == count


def _truncate(folder: Path) -> None:
    (folder / "out/results.jsonl").write_text("", encoding="utf-8")


def _committed_equals_output(ran: Ran) -> None:
    """Every line written is a committed result, and every committed result is written."""
    import sqlite3

    db = sqlite3.connect(ran.folder / "out/journal.sqlite")
    try:
        committed = {row[0] for row in db.execute("SELECT item_id FROM results")}
    finally:
        db.close()
    written = {str(row["id"]) for row in _lines(ran.folder / "out/results.jsonl")}
    assert 0 < len(committed) < ITEMS
    assert written == committed
