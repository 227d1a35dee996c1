"""The files a run writes, and what happens when the operating system refuses one.

Every file a run writes (the output, the journal, the ``--log-file``, the
request log) fails the same way: one sentence naming the file and the
operating system's reason, what is kept, and what to do; exit code 4
(:attr:`ExitCode.IO_ERROR <stagedretry.cli._exit.ExitCode.IO_ERROR>`).  A failure
before any work (a folder that cannot be made, a file that cannot be opened)
stops the command at once.  A failure during the run stops the run the way a
first Ctrl-C does: no new items, those in flight finish and are committed, the
summary is printed, then the error.  The journal is the source of truth, so
nothing committed is lost, and the same command run again once the cause is
fixed finishes the job and rewrites the whole output.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, TypeVar

from .._fs import os_reason
from .._journal import JournalError
from .._outcomes import StagedRetryError

_NO_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_NO_WRITE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})
_AGAIN = "run the same command again"


class FileIOError(StagedRetryError):
    """A file the command reads or writes was refused by the operating system (exit 4).

    *errno* is the operating system's error number, when there is one.
    """

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def remedy(exc: BaseException) -> str:
    """What to do, for the cause of *exc*: free space, make a file writable, or fix it."""
    code = exc.errno if isinstance(exc, OSError | FileIOError) else None
    text = str(exc).lower()
    if code in _NO_SPACE or "disk is full" in text or "no space" in text:
        return f"free some space and {_AGAIN}"
    if "disk i/o error" in text:  # SQLite's word for any failed read or write
        return f"free some space or check the disk, then {_AGAIN}"
    if code in _NO_WRITE or "readonly" in text or "permission" in text:
        return f"make it writable and {_AGAIN}"
    return f"fix the cause and {_AGAIN}"


E = TypeVar("E", bound=FileIOError)


def cannot_write(what: str, path: Path, exc: OSError, kind: type[E]) -> E:
    """``cannot write the <what> '<path>': <reason>`` as a *kind* (a :class:`FileIOError`)."""
    return kind(f"cannot write the {what} {str(path)!r}: {os_reason(exc, path)}", errno=exc.errno)


class IOFailures:
    """The I/O failures of one command, in order; the first one stops the run.

    *stop* is called once, at the first failure (the job sets it to drain its
    runner).  Writers that fail stop writing and report here instead of
    raising, so one full disk never turns into a traceback half way through a
    worker or a log call.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.stop: Callable[[], None] | None = None

    def add(self, message: str) -> bool:
        """Record one failure (a sentence); ``False`` if it was known already.

        The first one calls :attr:`stop`.
        """
        if message in self.messages:  # the items in flight all fail the same way
            return False
        self.messages.append(message)
        if len(self.messages) == 1 and self.stop is not None:
            self.stop()
        return True

    def __bool__(self) -> bool:
        return bool(self.messages)


def with_journal_hint(error: FileIOError | JournalError, journal: Path) -> str:
    """*error*'s sentence with where the finished results are and what to do next."""
    if isinstance(error, JournalError):
        kept = "every result recorded before is kept there"
    else:
        kept = f"every finished result is in the journal {str(journal)!r}"
    return f"{error}; {kept}: {remedy(error)}"


def advised(error: FileIOError | JournalError) -> str:
    """*error*'s sentence and what to do about it, unless it says so already."""
    text = str(error)
    return text if text.endswith(_AGAIN) else f"{text}; {remedy(error)}"


def open_log(what: str, path: Path) -> IO[str]:
    """Open the *what* (a log) at *path* to append lines, creating its folder.

    Raises :class:`FileIOError` ``cannot open the <what> '<path>': <reason>``.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open_append(path)
    except OSError as exc:
        raise FileIOError(
            f"cannot open the {what} {str(path)!r}: {os_reason(exc, path)}", errno=exc.errno
        ) from None


def log_write_failed(
    what: str, path: Path, exc: OSError, failures: IOFailures | None, *, lost: str
) -> None:
    """Report that a line of the *what* (a log) at *path* could not be written.

    The *lost* (``"events"``, ``"requests"``) after it are not logged; the
    failure goes to *failures*, or is raised as :class:`FileIOError` without it.
    Call it only once the log is written no more: reporting may log.
    """
    error = cannot_write(what, path, exc, FileIOError)
    if failures is None:
        raise error from None
    failures.add(f"{error}; the {lost} after it are not logged: {remedy(error)}")


def open_append(path: Path) -> IO[str]:
    """Open the log *path* to append text, never waiting: a FIFO that nobody reads fails at once
    (``ENXIO``, "No such device or address") instead of blocking the command for ever; one with
    a reader, a pipe (``--log-file >(jq .)``) or a regular file opens as usual.

    Raises ``OSError``.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK, 0o666)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise OSError(exc.errno, "it is a FIFO that no process reads", str(path)) from None
        raise
    os.set_blocking(fd, True)  # the writes themselves may wait for a slow reader
    return open(fd, "a", encoding="utf-8")
