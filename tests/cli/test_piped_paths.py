"""Piped output never breaks a path across lines, however narrow the terminal it claims."""

from __future__ import annotations

import subprocess
from pathlib import Path

from .conftest import command, sim_pipeline


def _long_folder(tmp_path: Path) -> Path:
    # Far wider than any console: 3 x 60 characters of folder names.
    return tmp_path / ("a" * 60) / ("b" * 60) / ("c" * 60)


def test_the_summary_prints_each_path_on_one_line_in_a_pipe(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    job = sim_pipeline(_long_folder(tmp_path), items=3)
    env = {**subprocess_env, "COLUMNS": "60"}
    done = subprocess.run(
        command("run", str(job.pipeline), "--no-progress"),
        capture_output=True,
        env=env,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    lines = done.stdout.splitlines()
    assert f"output:  {job.output}" in lines
    assert any(line.startswith(f"journal: {job.journal} (pipeline ") for line in lines), lines


def test_an_error_naming_a_long_path_is_one_line_in_a_pipe(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    job = sim_pipeline(_long_folder(tmp_path), items=3)
    job.input.unlink()
    env = {**subprocess_env, "COLUMNS": "60"}
    done = subprocess.run(
        command("plan", "check", str(job.pipeline)),
        capture_output=True,
        env=env,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert str(job.input) in line
