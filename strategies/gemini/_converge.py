"""Which of several caches with one fingerprint every process uses: the same one.

Processes started together (a cron job, the shards of one job) each list, find
nothing and create, so several caches carry one fingerprint.  After creating, each
process looks again and applies :func:`winner` to what it sees; the rule depends only
on what the server reports, so every process that sees the same caches picks the same
one, and the loser's creator deletes its own.

Why the oldest: a process's second look starts after its own create was answered, so
it sees every cache created before its own (the emulator lists a cache as soon as its
create is answered; for the service this is assumed, not verified), the oldest included.
The oldest is never deleted by the convergence (its creator sees nothing older), so all
settle on it.
A list that lagged behind a create could let two processes keep two caches; each
still runs on one, and the extra one ends with its TTL.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Generic, TypeVar

import attrs

__all__ = ["Candidate", "winner"]

T = TypeVar("T")


@attrs.frozen
class Candidate(Generic[T]):
    """One listed cache with this fingerprint: its name and the server's times of it
    (epoch seconds; ``None`` when the server sent none), and the listed object."""

    name: str
    create_time: float | None
    expire_time: float | None
    item: T = attrs.field(repr=False, eq=False)


def winner(candidates: Iterable[Candidate[T]], *, server_now: float) -> Candidate[T] | None:
    """The live candidate created first (ties: the smaller name), or ``None`` if none lives.

    *server_now* is the server's time (epoch seconds); a candidate whose ``expire_time``
    is not after it is dead.  A missing ``create_time`` sorts last: a cache whose age is
    unknown never displaces one whose age is known.
    """
    live = [c for c in candidates if c.expire_time is None or c.expire_time > server_now]
    if not live:
        return None
    return min(
        live,
        key=lambda c: (c.create_time if c.create_time is not None else math.inf, c.name),
    )
