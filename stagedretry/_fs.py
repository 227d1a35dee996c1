"""Files on disk: a lock on a sidecar file, and the operating system's reason in words.

An exclusive advisory lock on a sidecar file is held while one process works from a file.

The journal locks ``<journal>.lock`` and the command line locks ``<output>.lock``
with it, so two runs never work from one journal, nor write one output file, at
once.  The operating system drops the lock when its process dies, ``kill -9``
included, so a crash never leaves a file locked.  The sidecar file itself is
left in place: removing it could let a third process lock a file nobody holds.
"""

from __future__ import annotations

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
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (closing the file drops it); a no-op when not held."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
