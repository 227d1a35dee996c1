"""Quotas from the command line, as an adversary tries them.

A 429 that waiting cannot fix stops the run with one sentence: the cause says which quota
(and when it resets) or which money limit; the server's own quota message is not repeated
after it (its ``Please retry in Ns.`` is what the stop says not to do), and the sentence is
never cut short.  A Ctrl-C while requests wait for room under ``[backend.quota]`` ends the
command at once (before: the waits ran on, up to a minute per request still to admit).
"""

from __future__ import annotations

import signal

from stagedretry.cli._exit import ExitCode

from ._corpus import Case, Ran, run_args
from .cases_stops import emulator, files, nothing_final


def _one_sentence(ran: Ran) -> None:
    (line,) = [line for line in ran.err.splitlines() if line.startswith("error: the run stopped")]
    assert "Please retry" not in line, line
    assert "..." not in line, line
    assert ", . " not in line, line
    assert "(429 RESOURCE_EXHAUSTED). Fix it and run the same command again" in line, line


def _stopped(ran: Ran) -> None:
    nothing_final(ran)
    _one_sentence(ran)


CASES = [
    Case(
        f"adv11b-{kind.replace('_', '-')}-one-sentence",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(emulator(f'kind = "{kind}"\nat = [3, 4, 5, 6, 7, 8]')),
        stderr=stderr,
        check=_stopped,
        timeout=30,
    )
    for kind, stderr in (
        ("daily_quota", r"GenerateRequestsPerDayPerProjectPerModel-FreeTier, 250\) is spent"),
        ("spend_cap", r"monthly spending cap is reached"),
        ("prepay_depleted", r"prepaid credits are spent"),
    )
] + [
    Case(
        "adv11b-server-day-quota-one-sentence",
        run_args(),
        ExitCode.RUN_STOPPED,
        files=files(
            emulator() + "\n[backend.emulator.quota]\nrpd = 2\n",
        ),
        stderr=r"GenerateRequestsPerDayPerProjectPerModel, 2\) is spent; it resets at midnight",
        check=_stopped,
        timeout=30,
    ),
]

CASES += [
    Case(
        "adv11b-ctrl-c-while-waiting-for-quota-admission",
        run_args("--log-level", "debug"),
        ExitCode.INTERRUPTED,
        files=files(emulator() + "\n[backend.quota]\nrpm = 1\n"),
        # item-3 starts once item-1 is answered: item-2 (and then item-3) wait for a minute.
        signals=((r"item_start\s.*item=item-3\s", signal.SIGINT),),
        check=nothing_final,
        timeout=20,
    ),
]
