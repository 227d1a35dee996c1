"""The sidecar ``*.lock`` files: exclusive while held, removed when released, safe to remove."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from stagedretry import Journal
from stagedretry._fs import LockFile

ROOT = Path(__file__).resolve().parent.parent


def test_a_released_lock_removes_its_file_and_the_lock_can_be_taken_again(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.lock"
    lock = LockFile(path)
    assert lock.acquire()
    assert path.exists()
    assert not LockFile(path).acquire()  # exclusive while held
    lock.release()
    assert not path.exists()
    again = LockFile(path)
    assert again.acquire()
    again.release()
    lock.release()  # a second release is a no-op
    assert not path.exists()


def test_a_lock_on_a_file_its_holder_removed_does_not_count(tmp_path: Path) -> None:
    # A process that opened the sidecar before its holder removed it, and locks it after,
    # holds a lock on a file nobody else can see: it must take the new file instead.
    path = tmp_path / "j.sqlite.lock"
    holder = LockFile(path)
    assert holder.acquire()
    stale = os.open(path, os.O_RDWR)
    try:
        holder.release()
        import fcntl

        fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the removed file: lockable
        late = LockFile(path)
        assert late.acquire()  # took a new file, not the removed one
        assert path.exists()
        assert not LockFile(path).acquire()  # and that one is exclusive
        late.release()
    finally:
        os.close(stale)


def test_a_journal_leaves_no_lock_file_once_closed(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    with Journal(path, "f" * 16):
        assert (tmp_path / "journal.sqlite.lock").exists()
    assert not (tmp_path / "journal.sqlite.lock").exists()
    assert path.exists()


def test_a_command_line_run_leaves_no_lock_files(tmp_path: Path) -> None:
    (tmp_path / "in.jsonl").write_text(
        "".join(f'{{"id": "r{i}", "title": "T{i}"}}\n' for i in range(5)), encoding="utf-8"
    )
    (tmp_path / "p.toml").write_text(
        '[plan]\n[[plan.stages]]\nname = "s0"\n\n[backend]\nkind = "sim"\n\n'
        '[input]\npath = "in.jsonl"\ntemplate = "Describe {title}."\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "stagedretry.cli", "run", "p.toml", "--no-progress"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode in (0, 1), done.stderr
    assert (tmp_path / "in.out.jsonl").exists()
    assert (tmp_path / "in.out.journal.sqlite").exists()
    assert sorted(p.name for p in tmp_path.glob("*.lock")) == []
