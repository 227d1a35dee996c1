"""Service tiers misused: a tier the service does not name (or not in its spelling), the
emulator's ``flex`` table out of range or mistyped, a tier price below zero.  Each ends with
exit 2 and one sentence naming the key, before any request is sent."""

from __future__ import annotations

from stagedretry.cli._exit import ExitCode

from ._corpus import Case, run_args
from .cases_stops import emulator, files


def _tiered(tier: str, *, flex: str = "", extra: str = "") -> dict[str, str | bytes]:
    """The stops corpus's pipeline on the emulator, its first stage on *tier*."""
    found = files(emulator() + (f"flex = {flex}\n" if flex else ""))
    text = found["pipeline.toml"]
    assert isinstance(text, str)
    found["pipeline.toml"] = (
        text.replace(
            "params = { temperature = 0.0 }",
            f"params = {{ temperature = 0.0, service_tier = {tier} }}",
            1,
        )
        + extra
    )
    return found


_PARAM = r"plan\.stages\[0\]\.params\.service_tier"

CASES = [
    Case(
        "flex-tier-upper-case",
        run_args(),
        ExitCode.USAGE,
        files=_tiered('"FLEX"'),
        stderr=_PARAM + r": expected one of flex, standard, priority, got 'FLEX'",
        timeout=30,
    ),
    Case(
        "flex-tier-batch-is-a-mode-not-a-tier",
        run_args(),
        ExitCode.USAGE,
        files=_tiered('"batch"'),
        stderr=_PARAM + r": expected one of flex, standard, priority",
        timeout=30,
    ),
    Case(
        "flex-tier-a-number",
        run_args(),
        ExitCode.USAGE,
        files=_tiered("1"),
        stderr=_PARAM,
        timeout=30,
    ),
    Case(
        "flex-shed-rate-above-one",
        run_args(),
        ExitCode.USAGE,
        files=_tiered('"flex"', flex="{ shed_rate = 1.5 }"),
        stderr=r"backend\.emulator\.flex\.shed_rate: expected a number in \[0, 1\]",
        timeout=30,
    ),
    Case(
        "flex-latency-unbounded",
        run_args(),
        ExitCode.USAGE,
        files=_tiered('"flex"', flex="{ latency = 1e9 }"),
        stderr=r"backend\.emulator\.flex\.latency",
        timeout=30,
    ),
    Case(
        "flex-table-typo",
        run_args(),
        ExitCode.USAGE,
        files=_tiered('"flex"', flex="{ shed = 0.1 }"),
        stderr=r"backend\.emulator\.flex\.shed: unknown key",
        timeout=30,
    ),
    Case(
        "flex-negative-tier-price",
        run_args(),
        ExitCode.USAGE,
        files=_tiered(
            '"flex"',
            extra=(
                '\n[prices."gemini-2.5-flash"]\ninput = 0.3\ncached_input = 0.03\noutput = 2.5\n'
                "flex = { output = -1 }\n"
            ),
        ),
        stderr=r'prices\."gemini-2\.5-flash"\.flex\.output',
        timeout=30,
    ),
]
