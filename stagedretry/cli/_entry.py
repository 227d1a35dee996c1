"""The process's entry: Ctrl-C handled from the first moment, then the command line loaded.

Loading the command (click, rich, the engine) takes a while; a ``KeyboardInterrupt``
raised during an import would print a Python traceback.  So the entry installs its
own SIGINT handler before importing anything heavy: an interrupt before a command
takes the signals over ends the process with one line and exit code 130, as an
interrupted run does.  ``run`` and ``demo`` put Python's own handling back while
their event loop runs (they drain, then cancel, on Ctrl-C: see ``_job``).

Only Python's own start-up and ``import stagedretry`` (a few milliseconds: its names
load lazily) come before the handler.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import types
from typing import Final

INTERRUPTED: Final = 128 + signal.SIGINT
"""Exit code of a process stopped by Ctrl-C (130), as ``_exit.ExitCode.INTERRUPTED``."""


def _interrupted(signum: int, frame: types.FrameType | None) -> None:
    # SystemExit, not os._exit: files a command opened are closed by their `with` blocks.
    try:
        sys.stderr.write("interrupted\n")
        sys.stderr.flush()
    finally:
        raise SystemExit(INTERRUPTED)


def install() -> None:
    """Make SIGINT end the process with one line and code 130 (in the main thread only)."""
    with contextlib.suppress(ValueError):  # not the main thread: leave Python's handling alone
        signal.signal(signal.SIGINT, _interrupted)


def main() -> None:
    """The ``stagedretry`` console command."""
    install()
    from ._app import main as command

    command()
