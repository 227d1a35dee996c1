"""Start-up: commands that send nothing load no provider SDK, and Ctrl-C during start-up
ends the process with one line and exit code 130, never a traceback."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stagedretry.cli._exit import ExitCode

from .conftest import command, sim_pipeline

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "stagedretry" / "demo"
HEAVY = ("google.genai", "aiohttp")


def demo_pipeline(folder: Path, *, kind: str) -> Path:
    """The demo's pipeline and data in *folder*, its backend *kind* (``emulator`` or ``gemini``)."""
    text = (DEMO / "pipeline.toml").read_text("utf-8")
    if kind == "gemini":
        # The emulator's own tables belong to it alone: the gemini backend refuses them.
        text = re.sub(r"\n\[backend\.emulator\].*?(?=\n\[cache\])", "\n", text, flags=re.S)
        text = text.replace('kind = "emulator"', 'kind = "gemini"', 1)
    for name in ("books.jsonl", "instructions.md"):
        (folder / name).write_bytes((DEMO / name).read_bytes())
    path = folder / f"{kind}.toml"
    path.write_text(text, "utf-8")
    return path


def imported(args: list[str], env: dict[str, str]) -> set[str]:
    """The modules a command imports (``-X importtime`` lists each one once, on stderr)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *command(*args)[1:]],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.rpartition("|")[2].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }


@pytest.mark.parametrize(
    "case",
    ["--help", "plan show sim", "plan check sim", "plan check emulator", "plan check gemini"],
)
def test_commands_that_send_nothing_import_no_provider_sdk(
    case: str, tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    if case == "--help":
        args = ["--help"]
    else:
        verb, kind = case.rsplit(" ", 1)
        pipeline = (
            sim_pipeline(tmp_path).pipeline if kind == "sim" else demo_pipeline(tmp_path, kind=kind)
        )
        args = [*verb.split(), str(pipeline)]

    modules = imported(args, subprocess_env)

    assert "stagedretry.cli._app" in modules  # the command really ran
    assert sorted(m for m in modules if m.startswith(HEAVY)) == []


def test_a_run_still_imports_its_provider(tmp_path: Path, subprocess_env: dict[str, str]) -> None:
    """The other side: the lazy names do load when a command sends requests."""
    pipeline = demo_pipeline(tmp_path, kind="emulator")
    first = (tmp_path / "books.jsonl").read_text("utf-8").splitlines()[0]
    (tmp_path / "one.jsonl").write_text(first + "\n", "utf-8")
    args = ["run", str(pipeline), "--json", "--no-progress", "--input", str(tmp_path / "one.jsonl")]

    modules = imported(args, subprocess_env)

    assert {"google.genai", "aiohttp", "strategies.gemini._strategy"} <= modules


# -- Ctrl-C during start-up -----------------------------------------------------------------------

# Run the command as `python -m stagedretry.cli` does, with a finder that, when the module
# named in argv[1] is first imported, says "ready" and waits there for the test's signal.
CHILD = """
import runpy, sys, time

class Pause:
    def find_spec(self, name, path=None, target=None):
        if name == TARGET:
            sys.meta_path.remove(self)
            print("ready", flush=True)
            time.sleep(30)
        return None

TARGET = sys.argv[1]
sys.argv = ["stagedretry", *sys.argv[2:]]
sys.meta_path.insert(0, Pause())
runpy.run_module("stagedretry.cli", run_name="__main__", alter_sys=True)
"""

MOMENTS = [
    # While the command line itself loads, before click has parsed anything.
    ("stagedretry.cli._app", ["--help"]),
    ("click", ["--help"]),
    ("rich.console", ["plan", "check", "{pipeline}"]),
    ("stagedretry._runner", ["plan", "check", "{pipeline}"]),
    # While a command loads what the pipeline names: its provider, its output model.
    ("strategies.gemini._backend", ["plan", "check", "{pipeline}"]),
    ("stagedretry.demo.model", ["plan", "show", "{pipeline}"]),
]


@pytest.mark.parametrize(("module", "args"), MOMENTS, ids=[m for m, _ in MOMENTS])
def test_ctrl_c_during_start_up_is_one_line_and_130(
    module: str, args: list[str], tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    pipeline = demo_pipeline(tmp_path, kind="emulator")
    argv = [a.format(pipeline=pipeline) for a in args]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, module, *argv],
        cwd=ROOT,
        env=subprocess_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()

    assert "Traceback" not in err
    assert err == "interrupted\n"
    assert out == ""
    assert child.returncode == ExitCode.INTERRUPTED
