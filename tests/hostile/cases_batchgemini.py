"""The emulator's batch knobs misused: ``[backend.emulator]`` batch keys and batch fault routes.

A negative or endless completion time, an inline limit of zero, a fault route misspelled or a
batch fault kind given as a string of the wrong type: each is refused before any request, with
its documented code and one sentence naming the key.
"""

from __future__ import annotations

from stagedretry.cli._exit import ExitCode

from ._corpus import Case, run_args
from .cases_stops import files

PACE = 'kind = "emulator"\nmodel = "gemini-2.5-flash"\n\n[backend.emulator]\ninvalid_rate = 0.0\n'


def paced(lines: str) -> dict[str, str | bytes]:
    """The stops corpus's pipeline on the in-process emulator, *lines* added to its table."""
    return files(PACE + lines)


CASES = [
    Case(
        "batchgemini-completion-negative",
        run_args(),
        ExitCode.USAGE,
        files=paced("batch_completion = -1\n"),
        stderr=r"backend\.emulator\.batch_completion",
        timeout=30,
    ),
    Case(
        "batchgemini-completion-endless",
        run_args(),
        ExitCode.USAGE,
        files=paced("batch_completion = 1e300\n"),
        stderr=r"backend\.emulator\.batch_completion",
        timeout=30,
    ),
    Case(
        "batchgemini-inline-limit-zero",
        run_args(),
        ExitCode.USAGE,
        files=paced("batch_inline_limit = 0\n"),
        stderr=r"backend\.emulator\.batch_inline_limit",
        timeout=30,
    ),
    Case(
        "batchgemini-implicit-caching-not-a-bool",
        run_args(),
        ExitCode.USAGE,
        files=paced('implicit_caching = "yes"\n'),
        stderr=r"backend\.emulator\.implicit_caching",
        timeout=30,
    ),
    Case(
        "batchgemini-fault-route-typo",
        run_args(),
        ExitCode.USAGE,
        files=paced('\n[[backend.emulator.faults]]\nkind = "batch_failed"\nroute = "batch"\n'),
        stderr=r"backend\.emulator\.faults\[0\]\.route",
        timeout=30,
    ),
]
