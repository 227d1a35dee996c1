"""The hostile-input corpus: each case is a real ``stagedretry`` process given bad things.

A case writes its files into a fresh folder, runs the command there (with
``--no-progress`` where it runs a job), optionally sends signals when stderr
shows a line, and is then held to three rules that hold for every case: no
traceback reaches the user, the exit code is the one the case expects (and one
of the documented codes), and the process ends within the case's time bound.
A case may add its own check of what was written.

Every module ``cases_*.py`` in this folder holds a list ``CASES``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

# The placeholders a case may use in its arguments and file texts.
#   {dir}       the case's folder
#   {emulator}  the base URL of a loopback Gemini emulator that wants the key KEY
KEY = "AIzaSyCorpus-0123456789-abcdefghijklmn"


@attrs.frozen
class Ran:
    """How one case's process ended."""

    folder: Path
    code: int | None
    out: str
    err: str
    seconds: float
    timed_out: bool


@attrs.frozen
class Case:
    """One hostile thing done to the command, and what it must lead to.

    *signals* are ``(pattern, signal)`` pairs sent in order: each once a line of
    stderr matches *pattern* (a regex), after the previous one was sent.
    """

    name: str
    args: tuple[str, ...]
    code: int
    files: Mapping[str, str | bytes] = attrs.field(factory=dict)
    env: Mapping[str, str] = attrs.field(factory=dict)
    stderr: str | None = None
    """A regex that stderr must match (re.search, DOTALL)."""
    signals: tuple[tuple[str, int], ...] = ()
    timeout: float = 60.0
    check: Callable[[Ran], None] | None = None
    before: Callable[[Path], None] | None = None
    """Runs after the files are written and before the command (e.g. to fill a disk)."""
    file_size_limit: int | None = None
    """``RLIMIT_FSIZE`` of the command in bytes: no file it writes may grow past it, and a
    write that would fails with ``EFBIG``, as on a full disk (Python ignores ``SIGXFSZ``)."""


_LIMIT_FILE_SIZE = """
import os, resource, sys
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), hard))
os.execv(sys.executable, sys.argv[2:])
"""


def fill(text: str, folder: Path, emulator: str) -> str:
    return text.replace("{dir}", str(folder)).replace("{emulator}", emulator)


def base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY") and not k.startswith("GOOGLE_GENAI_")
    }
    env["NO_PROXY"] = "127.0.0.1"
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "100"
    # The children import this checkout, whatever the folder they run in; or the one named by
    # STAGEDRETRY_CORPUS_CHECKOUT, to hold another version to the same cases (before and after).
    root = os.environ.get("STAGEDRETRY_CORPUS_CHECKOUT") or str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def run_case(case: Case, folder: Path, emulator: str) -> Ran:
    """Write the case's files into *folder*, run it, send its signals; how it ended."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(fill(content, folder, emulator), encoding="utf-8")
    if case.before is not None:
        case.before(folder)
    env = base_env()
    env.update({k: fill(v, folder, emulator) for k, v in case.env.items()})
    argv = [
        sys.executable,
        "-m",
        "stagedretry.cli",
        *(fill(a, folder, emulator) for a in case.args),
    ]
    if case.file_size_limit is not None:
        # Set in a tiny parent that then becomes the command (exec keeps the pid): no
        # preexec_fn, which is unsafe while the corpus's other threads start processes.
        argv = [sys.executable, "-c", _LIMIT_FILE_SIZE, str(case.file_size_limit), *argv]
    started = time.monotonic()
    child = subprocess.Popen(
        argv,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
    )
    out: list[str] = []
    err: list[str] = []
    pending = list(case.signals)

    def read_out() -> None:
        assert child.stdout is not None
        out.extend(child.stdout)

    def read_err() -> None:
        assert child.stderr is not None
        for line in child.stderr:
            err.append(line)
            if pending and re.search(pending[0][0], line):
                _, sig = pending.pop(0)
                # Let the handler of the previous signal run before the next arrives.
                time.sleep(0.05)
                child.send_signal(sig)

    readers = [threading.Thread(target=read_out), threading.Thread(target=read_err)]
    for reader in readers:
        reader.start()
    timed_out = False
    try:
        child.wait(timeout=case.timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        child.send_signal(signal.SIGKILL)
        child.wait()
    for reader in readers:
        reader.join(timeout=10)
    for stream in (child.stdout, child.stderr):
        if stream is not None:
            stream.close()
    return Ran(
        folder=folder,
        code=None if timed_out else child.returncode,
        out="".join(out),
        err="".join(err),
        seconds=time.monotonic() - started,
        timed_out=timed_out,
    )


# -- small builders shared by the case modules ---------------------------------------------------

PLAN = """
[plan]
max_prompts = 4
backoff = { initial = 0.001, max = 0.01 }

[[plan.stages]]
name = "full_t0"

[[plan.stages]]
name = "partial_t0"
kind = "partial"
"""

INPUT = "".join(f'{{"id": "item-{n}", "title": "Title {n}"}}\n' for n in range(1, 6))


def sim_pipeline(*, sim: str = "seed = 3", run: str = "concurrency = 2", extra: str = "") -> str:
    """A small sim-backed pipeline reading ``input.jsonl`` and writing under ``out/``."""
    return (
        f'name = "hostile"\n{PLAN}\n[backend]\nkind = "sim"\n\n[backend.sim]\n{sim}\n\n'
        '[input]\npath = "input.jsonl"\ntemplate = "Describe {title}."\n\n'
        '[output]\npath = "out/results.jsonl"\n\n[journal]\npath = "out/journal.sqlite"\n\n'
        f"[run]\n{run}\n\n{extra}\n"
    )


def gemini_pipeline(*, run: str = "concurrency = 2", extra: str = "") -> str:
    """A pipeline on the gemini backend, pointed at the corpus's emulator."""
    return (
        f'name = "hostile-gemini"\n{PLAN}\n[backend]\nkind = "gemini"\n'
        'model = "gemini-2.5-flash"\nbase_url = "{emulator}"\n\n'
        '[input]\npath = "input.jsonl"\ntemplate = "Describe {title}."\n\n'
        '[output]\npath = "out/results.jsonl"\n\n[journal]\npath = "out/journal.sqlite"\n\n'
        f"[run]\n{run}\n\n{extra}\n"
    )


def run_args(*extra: str) -> tuple[str, ...]:
    return ("run", "pipeline.toml", "--no-progress", *extra)
