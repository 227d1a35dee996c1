"""``run --retry STATUSES``: run again only the items whose latest result has one of them.

The journal does the work (:meth:`~stagedretry.Journal.begin_retry` chooses the
items, :meth:`~stagedretry.Journal.adopt` keeps the latest result of every other
item under the run's fingerprint); this module reads the option and says, before
anything is sent, what the run will do.  A retry run with ``--set`` (another
model, another plan) has another fingerprint: the items it does not run keep
their latest result whatever fingerprint wrote it, so the job's output still has
one line per item.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import attrs

from .._journal import Journal
from .._outcomes import PlanError
from .._results import ItemStatus
from ._input import InputRecord

_NAMES = ", ".join(s.value for s in ItemStatus)


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def parse_statuses(text: str) -> frozenset[ItemStatus]:
    """``"failed,exhausted"`` -> the statuses; :class:`PlanError` (one sentence) otherwise."""
    names = [name.strip() for name in text.split(",")]
    if not any(names):
        raise PlanError(
            "--retry",
            f"expected a comma-separated list of statuses ({_NAMES}), e.g. failed,exhausted",
        )
    if not all(names):
        raise PlanError(
            "--retry",
            f"an empty status in {text!r} (expected a comma-separated list of: {_NAMES}, "
            "e.g. failed,exhausted)",
        )
    statuses = set()
    for name in names:
        try:
            statuses.add(ItemStatus(name.lower()))
        except ValueError:
            raise PlanError(
                "--retry", f"unknown status {name!r} (expected a comma-separated list of: {_NAMES})"
            ) from None
    return frozenset(statuses)


def option_text(statuses: frozenset[ItemStatus]) -> str:
    """The statuses as the option spells them, in the enum's order."""
    return ",".join(s.value for s in ItemStatus if s in statuses)


def check_journal(path: Path, statuses: frozenset[ItemStatus]) -> None:
    """Refuse a retry with no journal to retry from, before one would be created."""
    if not path.exists():
        raise PlanError(
            f"--retry {option_text(statuses)}",
            f"there is no journal at {str(path)!r}, so no earlier result to retry: "
            "run without --retry first (or give --journal)",
        )


@attrs.frozen
class RetryStart:
    """What a retry run is about to do: the ids it runs again, by their latest status."""

    targets: frozenset[str]
    by_status: Counter[str]
    kept: int
    unfinished: int
    """Items with no result to keep (a new or changed line, a cancelled one): they run too."""

    def notice(self, statuses: frozenset[ItemStatus]) -> str:
        """One line for the terminal, printed before anything runs."""
        option = f"--retry {option_text(statuses)}"
        unfinished = f"; {self.unfinished} with no result yet run too" if self.unfinished else ""
        if not self.targets:
            wanted = " or ".join(s.value for s in ItemStatus if s in statuses)
            return f"{option}: no item's latest result is {wanted}: nothing to retry{unfinished}"
        counts = ", ".join(f"{n} {status}" for status, n in sorted(self.by_status.items()))
        return (
            f"{option}: running {len(self.targets)} item{_s(len(self.targets))} again "
            f"({counts}); {self.kept} keep{'s' if self.kept == 1 else ''} "
            f"{'its' if self.kept == 1 else 'their'} latest result{unfinished}"
        )


def start_retry(
    journal: Journal, records: Sequence[InputRecord], statuses: frozenset[ItemStatus]
) -> RetryStart:
    """Choose the items of *records* to run again and keep the others' latest results.

    Raises :class:`PlanError` when the journal holds no result for any item of
    the input (another job's journal, or a run that never finished an item).
    """
    chosen = journal.begin_retry(statuses)
    targets = frozenset(r.id for r in records if r.id in chosen)
    done = journal.done()
    kept = 0
    unfinished = 0
    for record in records:
        if record.id in targets:
            continue
        if done.get(record.id) == record.digest or journal.adopt(
            record.id, record.digest, line=record.line
        ):
            kept += 1
        else:
            unfinished += 1
    if records and not targets and not kept:
        raise PlanError(
            f"--retry {option_text(statuses)}",
            f"the journal {str(journal.path)!r} holds no result for any item of the input: "
            "run without --retry first",
        )
    by_status = Counter(chosen[item].value for item in targets if item in chosen)
    return RetryStart(targets, by_status, kept, unfinished)
