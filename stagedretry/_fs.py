"""Files on disk: a lock on a sidecar file, and the operating system's reason in words.

An exclusive advisory lock on a sidecar file is held while one process works from a file.

The journal locks ``<journal>.lock`` and the command line locks ``<output>.lock``
with it, so two runs never work from one journal, nor write one output file, at
once.  The operating system drops the lock when its process dies, ``kill -9``
included, so a crash never leaves a file locked.  The sidecar file is removed
when the lock is released (a crash leaves it behind, unlocked and harmless).
Removing it is safe because it is removed while still locked, and a lock taken
counts only when the path still names the file that was locked: a process that
opened the file before it was removed, and locked it after, sees that and tries
again on the new file.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path


def os_reason(exc: OSError, path: Path | None = None) -> str:
    """The operating system's reason, in words (``No space left on device``).

    With *path* (the file that was to be written), a folder on its way that is
    a file is named, since ``File exists`` alone would not say which one.
    """
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and path is not None:
        for folder in path.parents:
            if folder.exists() and not folder.is_dir():
                return f"{str(folder)!r} is a file, not a folder"
    return exc.strerror or str(exc)


class LockFile:
    """A non-blocking ``flock`` on *path* (created with mode 0600 if needed).

    Where the platform has no advisory locks (Windows), :meth:`acquire` always
    succeeds and the lock guards nothing.
    """

    __slots__ = ("_fd", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock; ``False`` when another process holds it.

        Raises ``OSError`` when the sidecar file cannot be opened or created
        (a missing folder, no permission, a full disk).
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        # Bounded: each round means another process removed the file between our open and
        # our lock, which takes a release by a run that held it.
        for _ in range(_MAX_ROUNDS):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if _names(self.path, fd):
                    self._fd = fd
                    return True
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # we locked a file its holder removed on release: try the new one
        return False

    def release(self) -> None:
        """Remove the sidecar file and drop the lock; a no-op when not held.

        The file is removed before the lock is dropped (closing the file drops it), so no
        other process can hold a lock on a file this one is about to remove.
        """
        if self._fd is not None:
            with contextlib.suppress(OSError):  # already gone, or a read-only folder: harmless
                if _names(self.path, self._fd):
                    self.path.unlink()
            os.close(self._fd)
            self._fd = None


_MAX_ROUNDS = 100
"""Tries at locking a sidecar file that other runs keep removing before it counts as busy."""


def _names(path: Path, fd: int) -> bool:
    """Whether *path* still names the open file *fd* (not removed, nor replaced)."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (held.st_dev, held.st_ino)
