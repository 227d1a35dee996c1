"""Adversarial checks of issue 13 that need no process: the ``--retry`` notice's counts."""

from __future__ import annotations

from collections import Counter

import pytest

from stagedretry import ItemStatus
from stagedretry.cli._retry import RetryStart


@pytest.mark.parametrize(
    ("targets", "kept", "text"),
    [
        (1, 1, "running 1 item again (1 failed); 1 keeps its latest result"),
        (2, 0, "running 2 items again (2 failed); 0 keep their latest result"),
        (3, 2, "running 3 items again (3 failed); 2 keep their latest result"),
    ],
)
def test_the_retry_notice_counts_in_words(targets: int, kept: int, text: str) -> None:
    start = RetryStart(
        targets=frozenset(f"i{n}" for n in range(targets)),
        by_status=Counter({"failed": targets}),
        kept=kept,
        unfinished=0,
    )

    assert start.notice(frozenset({ItemStatus.FAILED})) == f"--retry failed: {text}"
