"""Issue 10, section 5 and 7: a full disk, files that cannot be written, two runs on one output.

A full disk is made real for the child process with ``RLIMIT_FSIZE``: a write
past the limit fails in the operating system with ``EFBIG`` (Python ignores
``SIGXFSZ``), as a write to a full disk fails with ``ENOSPC``.  For the exact
moment of the issue ("the output fits once but not twice") the child lowers its
own limit when it opens the output's temporary file for the second time, so the
final rebuild is the write that fails and nothing before it.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from stagedretry.cli._exit import ExitCode

from .conftest import Job, command, records

ROOT = str(Path(__file__).resolve().parents[2])

# Lowers the file size limit to half the finished output when the rebuild at the end of the
# run opens its temporary file: the first copy of the output fits, the second does not.
FULL_AT_THE_SECOND_COPY = """
import os, resource, runpy, sys
opened = []

def hook(event, args):
    if event == "open" and str(args[0]).endswith("results.jsonl.tmp") and "w" in str(args[1]):
        opened.append(args[0])
        if len(opened) == 2:
            size = os.path.getsize(str(args[0])[: -len(".tmp")])
            _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
            resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, hard))

sys.addaudithook(hook)
sys.argv = ["stagedretry", *sys.argv[1:]]
runpy.run_module("stagedretry.cli", run_name="__main__")
"""

# Lowers the file size limit just past the output's size when the run opens it to append:
# the first line appended (and every write after it) fails.
FULL_AT_THE_FIRST_APPEND = """
import os, resource, runpy, sys

def hook(event, args):
    if event == "open" and str(args[0]).endswith("results.jsonl") and str(args[1]) == "a":
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(str(args[0])) + 1, hard))

sys.addaudithook(hook)
sys.argv = ["stagedretry", *sys.argv[1:]]
runpy.run_module("stagedretry.cli", run_name="__main__")
"""

LIMITED = """
import os, resource, sys
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), hard))
os.execv(sys.executable, sys.argv[2:])
"""


def _env(subprocess_env: dict[str, str]) -> dict[str, str]:
    env = dict(subprocess_env)
    env["PYTHONPATH"] = ROOT
    env["COLUMNS"] = "120"
    return env


def _run(argv: list[str], job: Job, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=job.folder, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _tmp_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.tmp"))


def _committed(job: Job) -> set[str]:
    db = sqlite3.connect(job.journal)
    try:
        return {row[0] for row in db.execute("SELECT item_id FROM results")}
    finally:
        db.close()


def test_the_output_fits_once_but_not_twice(
    make_job: Callable[..., Job], subprocess_env: dict[str, str]
) -> None:
    job = make_job(items=20, sim="seed = 3\ninvalid_rate = 0.0")
    env = _env(subprocess_env)
    done = _run(
        [sys.executable, "-c", FULL_AT_THE_SECOND_COPY, "run", str(job.pipeline), "--no-progress"],
        job,
        env,
    )
    # Every item is done and the summary is printed, then the error, with both paths.
    assert done.returncode == ExitCode.IO_ERROR, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(r"succeeded +20 +20", done.stdout), done.stdout
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: cannot write the output file {str(job.output)!r}: File too large; every "
        f"finished result is in the journal {str(job.journal)!r}: free some space and run the "
        "same command again"
    )
    assert _tmp_files(job.folder) == []
    assert len(_committed(job)) == 20
    # The appended copy is untouched by the failed rebuild.
    assert len(job.lines()) == 20

    again = _run(command("run", str(job.pipeline), "--no-progress"), job, env)
    assert again.returncode == ExitCode.OK, again.stderr
    assert "nothing to do" in again.stdout
    assert [row["id"] for row in job.lines()] == [r["id"] for r in records(20)]
    assert _tmp_files(job.folder) == []


def test_an_append_that_fails_stops_the_run_and_loses_nothing(
    make_job: Callable[..., Job], subprocess_env: dict[str, str]
) -> None:
    job = make_job(items=30, sim="seed = 3\ninvalid_rate = 0.0", run="concurrency = 2")
    env = _env(subprocess_env)
    done = _run(
        [sys.executable, "-c", FULL_AT_THE_FIRST_APPEND, "run", str(job.pipeline), "--no-progress"],
        job,
        env,
    )
    assert done.returncode == ExitCode.IO_ERROR, done.stderr
    assert "Traceback" not in done.stderr
    assert "Items" in done.stdout  # the summary, then the error
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: cannot write the output file {str(job.output)!r}: File too large; every "
        f"finished result is in the journal {str(job.journal)!r}: free some space and run the "
        "same command again"
    ]
    # It stopped taking items at the first failure: not all 30 were run.
    assert len(_committed(job)) < 30
    assert _tmp_files(job.folder) == []

    again = _run(command("run", str(job.pipeline), "--no-progress"), job, env)
    assert again.returncode == ExitCode.OK, again.stderr
    assert [row["id"] for row in job.lines()] == [r["id"] for r in records(30)]


def test_the_json_summary_of_a_run_whose_file_failed_says_4_as_the_process_does(
    make_job: Callable[..., Job], subprocess_env: dict[str, str]
) -> None:
    job = make_job(items=30, sim="seed = 3\ninvalid_rate = 0.0", run="concurrency = 2")
    argv = [sys.executable, "-c", FULL_AT_THE_FIRST_APPEND, "run", str(job.pipeline), "--json"]
    done = _run([*argv, "--no-progress"], job, _env(subprocess_env))
    assert done.returncode == ExitCode.IO_ERROR, done.stderr
    summary = json.loads(done.stdout)
    assert summary["exit_code"] == done.returncode
    # The first failure (the file size limit may catch the journal's last write too).
    assert summary["file_errors"][0] == (
        f"cannot write the output file {str(job.output)!r}: File too large; every "
        f"finished result is in the journal {str(job.journal)!r}: free some space and run the "
        "same command again"
    )


def test_a_full_journal_loses_no_item(
    make_job: Callable[..., Job], subprocess_env: dict[str, str]
) -> None:
    rows = [dict(r, title=f"{r['title']} {'x' * 60}") for r in records(200)]
    job = make_job(
        rows=rows, sim="seed = 3\ninvalid_rate = 0.0", run='request_log = "out/requests.jsonl"'
    )
    env = _env(subprocess_env)
    argv = command("run", str(job.pipeline), "--no-progress")
    full = _run([sys.executable, "-c", LIMITED, "60000", *argv], job, env)
    assert full.returncode == ExitCode.IO_ERROR, full.stderr
    assert "Traceback" not in full.stderr
    assert f"error: cannot record a result in the journal {str(job.journal)!r}: " in full.stderr
    assert "every result recorded before is kept there" in full.stderr
    committed = _committed(job)
    assert 0 < len(committed) < 200
    # What the output shows is exactly what the journal holds: the item whose commit
    # failed is not reported as done.
    assert {row["id"] for row in job.lines()} == committed
    assert _tmp_files(job.folder) == []

    sent_before = len((job.folder / "out/requests.jsonl").read_text().splitlines())
    again = _run(argv, job, env)
    assert again.returncode == ExitCode.OK, again.stderr
    assert [row["id"] for row in job.lines()] == [r["id"] for r in rows]
    sent = [
        json.loads(line)["item"]
        for line in (job.folder / "out/requests.jsonl").read_text().splitlines()[sent_before:]
    ]
    # Nothing committed is sent again; everything else is.
    assert sorted(sent) == sorted(r["id"] for r in rows if r["id"] not in committed)


def test_a_second_run_on_the_same_output_is_refused_and_does_nothing(
    make_job: Callable[..., Job], subprocess_env: dict[str, str]
) -> None:
    job = make_job(items=4, sim="seed = 3\ninvalid_rate = 0.0\nlatency = 3", run="concurrency = 1")
    env = _env(subprocess_env)
    first = subprocess.Popen(
        command("run", str(job.pipeline), "--no-progress", "--log-level", "info"),
        cwd=job.folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert first.stderr is not None
        for line in first.stderr:  # bounded: the run logs run_start or ends
            if "run_start" in line:
                break
        second = _run(
            command("run", str(job.pipeline), "--no-progress", "--journal", "other/journal.sqlite"),
            job,
            env,
        )
        assert second.returncode == ExitCode.USAGE
        assert second.stderr.strip() == (
            f"error: another stagedretry run is writing the output file {str(job.output)!r}: "
            "wait for it to end, or give this run another output path"
        )
        assert not (job.folder / "other").exists()
        # The first run was not disturbed; stop it now (it finishes its item in flight).
        assert first.poll() is None
        first.send_signal(signal.SIGINT)
        # 130 once an interrupted run has its own code; 1 ("not all succeeded") before.
        assert first.wait(timeout=30) in (ExitCode.INTERRUPTED, ExitCode.SOME_FAILED)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if first.stderr is not None:
            first.stderr.close()
    assert {row["id"] for row in job.lines()} == _committed(job)
    assert len(_committed(job)) >= 1


def test_a_stale_tmp_file_is_replaced(
    make_job: Callable[..., Job], subprocess_env: dict[str, str]
) -> None:
    job = make_job(items=3, sim="seed = 3\ninvalid_rate = 0.0")
    job.output.parent.mkdir(parents=True)
    tmp = job.output.with_name("results.jsonl.tmp")
    tmp.write_text("half a line from a crash", encoding="utf-8")
    done = _run(command("run", str(job.pipeline), "--no-progress"), job, _env(subprocess_env))
    assert done.returncode == ExitCode.OK, done.stderr
    assert not tmp.exists()
    assert len(job.lines()) == 3


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("output", "error: cannot write the output file"),
        ("journal", "error: cannot create the folder of the journal"),
    ],
)
def test_a_path_in_a_file_is_exit_4_and_named(
    make_job: Callable[..., Job], subprocess_env: dict[str, str], where: str, expected: str
) -> None:
    job = make_job(items=2)
    (job.folder / "blocker").write_text("a file, not a folder", encoding="utf-8")
    target = job.folder / "blocker" / ("results.jsonl" if where == "output" else "j.sqlite")
    done = _run(
        command("run", str(job.pipeline), "--no-progress", f"--{where}", str(target)),
        job,
        _env(subprocess_env),
    )
    assert done.returncode == ExitCode.IO_ERROR
    assert f"{expected} {str(target)!r}: " in done.stderr
    assert f"{str(job.folder / 'blocker')!r} is a file, not a folder" in done.stderr
    assert "Traceback" not in done.stderr
