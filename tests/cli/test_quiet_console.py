"""What the terminal shows when a run is interrupted or fails: each thing said once, in words.

Without ``--log-level``, the raw log events the command also tells in its own words
(``run_draining``, ``run_stopped``...) stay off the console; with it, they are shown.  An
error's text never quotes an object's repr (``ssl:<ssl.SSLContext object at 0x7f...>``).
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

from .conftest import SLOW_SIM, command, sim_pipeline

RUN = 'concurrency = 4\nrequest_log = "out/requests.jsonl"'


def _interrupt_once(pipeline: Path, log: Path, env: dict[str, str], *extra: str) -> str:
    """Run *pipeline*, press Ctrl-C once a request was sent; what the run printed on stderr."""
    child = subprocess.Popen(
        command("run", str(pipeline), "--json", "--no-progress", *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and log.read_text().strip()):
            assert time.monotonic() < deadline, "no request was sent within a minute"
            assert child.poll() is None, child.communicate()
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130, err
    assert json.loads(out)["interrupted"] is True
    return err


def test_ctrl_c_shows_the_sentence_and_no_raw_log_line(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    job = sim_pipeline(tmp_path / "job", items=200, sim=SLOW_SIM, run=RUN)
    err = _interrupt_once(job.pipeline, job.folder / "out/requests.jsonl", subprocess_env)
    assert err.count("interrupted: taking no new items") == 1
    assert "run_draining" not in err
    assert "[warning" not in err


def test_ctrl_c_with_a_log_level_shows_the_log_line_too(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    job = sim_pipeline(tmp_path / "job", items=200, sim=SLOW_SIM, run=RUN)
    err = _interrupt_once(
        job.pipeline, job.folder / "out/requests.jsonl", subprocess_env, "--log-level", "warning"
    )
    assert "interrupted: taking no new items" in err
    assert "run_draining" in err


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: a connection is refused


def _gemini_job(tmp_path: Path, base_url: str, *, cache: bool) -> Path:
    job = sim_pipeline(tmp_path / "job", items=3)
    (job.folder / "schema.json").write_text(
        json.dumps({"type": "object", "properties": {"title": {"type": "string"}}}), "utf-8"
    )
    (job.folder / "rules.md").write_text("Answer with the title. " * 200, "utf-8")
    text = job.pipeline.read_text("utf-8")
    text = text.replace("max_prompts = 5", "max_prompts = 2")
    text = text.replace("[backend.sim]\nseed = 3\ninvalid_rate = 0.2", "")
    text = text.replace('kind = "sim"', f'kind = "gemini"\nbase_url = "{base_url}"')
    text = text.replace(
        'path = "out/results.jsonl"', 'path = "out/results.jsonl"\nschema = "schema.json"'
    )
    if cache:
        text += '\n[cache]\nsystem_instruction = "rules.md"\n'
    job.pipeline.write_text(text, "utf-8")
    return job.pipeline


def _run(pipeline: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {**env, "GEMINI_API_KEY": "AIzaSy" + "k" * 33}
    return subprocess.run(
        command("run", str(pipeline), "--no-progress"),
        capture_output=True,
        env=env,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_run_stopped_by_a_dead_https_endpoint_says_so_once_without_object_reprs(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    pipeline = _gemini_job(tmp_path, f"https://127.0.0.1:{_dead_port()}", cache=True)
    done = _run(pipeline, subprocess_env)
    assert done.returncode == 3, done.stderr  # RUN_STOPPED: the cache could not be made
    printed = done.stdout + done.stderr
    assert printed.count("Cannot connect to host") == 1, printed
    assert "ssl:SSLContext" in printed
    assert " at 0x" not in printed
    assert "[error" not in printed


def test_attempt_errors_in_the_output_and_journal_hold_no_object_reprs(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    pipeline = _gemini_job(tmp_path, f"https://127.0.0.1:{_dead_port()}", cache=False)
    done = _run(pipeline, subprocess_env)
    assert done.returncode == 1, done.stderr
    printed = done.stdout + done.stderr
    assert " at 0x" not in printed
    # The summary says why: the connection failures, grouped into one reason.
    assert "Cannot connect to host" in printed
    db = sqlite3.connect(pipeline.parent / "out/journal.sqlite")
    try:
        rows = [json.loads(r) for (r,) in db.execute("SELECT result FROM results")]
    finally:
        db.close()
    errors = [a["error"] for row in rows for a in row["attempts"]]
    assert errors
    assert all("ssl:SSLContext" in e and " at 0x" not in e for e in errors), errors
