"""The command's exit codes, one table for the code, its help text and the docs.

A script that runs ``stagedretry run`` can tell from the code alone whether to
look at failed items (1), fix its configuration (2), fix the account or the
key (3), free disk space (4), or simply run the same command again to finish
(124, 129, 130, 143).
"""

from __future__ import annotations

import enum
import signal


class ExitCode(enum.IntEnum):
    """What ``stagedretry`` returns to the shell."""

    OK = 0
    """Every item succeeded, or the command did what it was asked."""
    SOME_FAILED = 1
    """The run ended and some items ended ``failed`` or ``exhausted``; or ``plan check``
    found input records that would fail with ``input_error`` (more than ``--max-bad-records``)."""
    USAGE = 2
    """A usage or configuration error, always found before any request is sent."""
    RUN_STOPPED = 3
    """A failure of the run, not of an item (the key rejected, billing disabled, the model
    not found, a quota that waiting cannot fix): fix it, then run the same command again."""
    IO_ERROR = 4
    """A file could not be read or written (the output, the journal, the log; a full disk)."""
    DEADLINE = 124
    """``run.deadline`` passed with items left: run the same command again to finish."""
    HANGUP = 128 + signal.SIGHUP
    """Stopped by SIGHUP (129) with items left: run the same command again to finish."""
    INTERRUPTED = 128 + signal.SIGINT
    """Stopped by Ctrl-C (130) with items left: run the same command again to finish."""
    TERMINATED = 128 + signal.SIGTERM
    """Stopped by SIGTERM (143) with items left: run the same command again to finish."""


def for_signal(signum: int) -> ExitCode:
    """The code of a run stopped early by signal *signum* (128 + its number)."""
    return ExitCode(128 + signum)
