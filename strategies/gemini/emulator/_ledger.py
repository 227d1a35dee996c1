"""The ledger: what the emulator was asked and what it billed, as frozen snapshots."""

from __future__ import annotations

import threading

import attrs

from ._faults import FaultKind


@attrs.frozen(kw_only=True)
class RequestRecord:
    """One HTTP request as the emulator saw it.

    ``headers`` holds lower-cased header *names* only and the ``key`` query parameter is
    redacted, so no API key value is ever stored. ``status`` is None when no answer was
    sent (a HANG, or a client that went away).
    """

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    status: int | None
    model: str | None = None
    cached_content: str | None = None
    headers: tuple[str, ...] = ()
    fault: FaultKind | None = None
    service_tier: str | None = None
    """The tier a generateContent request asked for (``None``: none sent, i.e. standard)."""
    shed: bool = False
    """Whether the emulator shed this Flex request (a 503, not billed)."""


@attrs.frozen(kw_only=True)
class Usage:
    """The usage numbers of one well-formed generateContent answer."""

    prompt_tokens: int
    cached_tokens: int = 0
    candidates_tokens: int = 0
    thoughts_tokens: int = 0
    service_tier: str = "standard"
    """The tier the answer was served and billed at."""


@attrs.frozen(kw_only=True)
class TierTotals:
    """The billed answers of one service tier and their tokens (``prompt_tokens`` includes
    ``cached_tokens``, as in :class:`Ledger`)."""

    service_tier: str
    generate_calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    candidates_tokens: int = 0
    thoughts_tokens: int = 0


@attrs.frozen(kw_only=True)
class BatchRecord:
    """One batch job as it was created: its name, model, display name, size and source
    (``"inline"`` or ``"file"``)."""

    name: str
    model: str
    display_name: str
    requests: int
    source: str


@attrs.frozen(kw_only=True)
class Ledger:
    """A consistent snapshot of the emulator's counters.

    Token totals cover the well-formed 200 generateContent answers only (the ones whose
    ``usageMetadata`` a client can read); ``prompt_tokens`` includes ``cached_tokens``.
    Requests answered inside batch jobs are counted apart, in the ``batch_*`` fields.
    """

    requests: tuple[RequestRecord, ...] = ()
    caches_created: int = 0
    caches_updated: int = 0
    caches_deleted: int = 0
    caches_listed: int = 0
    generate_calls: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    candidates_tokens: int = 0
    thoughts_tokens: int = 0
    cache_tokens_created: int = 0
    faults_fired: int = 0
    tiers: tuple[TierTotals, ...] = ()
    """The billed answers split by service tier, in the order tiers were first billed."""
    flex_shed: int = 0
    """Flex requests the emulator shed (503s, not billed)."""
    batch_jobs: tuple[BatchRecord, ...] = ()
    """Every batch job created, in order (a job submitted twice shows twice)."""
    batches_listed: int = 0
    batches_cancelled: int = 0
    batches_deleted: int = 0
    files_uploaded: int = 0
    batch_calls: int = 0
    """Requests answered inside batch jobs (billed at the batch price, half the standard)."""
    batch_prompt_tokens: int = 0
    batch_cached_tokens: int = 0
    batch_candidates_tokens: int = 0
    batch_thoughts_tokens: int = 0

    def tier(self, name: str) -> TierTotals:
        """The totals of the tier *name* (all zero when nothing was billed at it)."""
        for totals in self.tiers:
            if totals.service_tier == name:
                return totals
        return TierTotals(service_tier=name)

    @property
    def fresh_prompt_tokens(self) -> int:
        """Prompt tokens billed at the full input price (prompt minus cached)."""
        return self.prompt_tokens - self.cached_tokens


class LedgerBook:
    """The mutable, lock-protected side of the ledger; :meth:`snapshot` freezes it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = Ledger()
        self._requests: list[RequestRecord] = []

    def record_request(self, record: RequestRecord) -> None:
        """Append one request record (and count a fired fault)."""
        with self._lock:
            self._requests.append(record)
            if record.fault is not None:
                self._bump(faults_fired=1)
            if record.shed:
                self._bump(flex_shed=1)

    def bill(self, usage: Usage) -> None:
        """Add one billed generateContent answer."""
        with self._lock:
            self._bump(
                generate_calls=1,
                prompt_tokens=usage.prompt_tokens,
                cached_tokens=usage.cached_tokens,
                candidates_tokens=usage.candidates_tokens,
                thoughts_tokens=usage.thoughts_tokens,
            )
            totals = self._state.tier(usage.service_tier)
            totals = attrs.evolve(
                totals,
                generate_calls=totals.generate_calls + 1,
                prompt_tokens=totals.prompt_tokens + usage.prompt_tokens,
                cached_tokens=totals.cached_tokens + usage.cached_tokens,
                candidates_tokens=totals.candidates_tokens + usage.candidates_tokens,
                thoughts_tokens=totals.thoughts_tokens + usage.thoughts_tokens,
            )
            others = tuple(t for t in self._state.tiers if t.service_tier != usage.service_tier)
            order = [t.service_tier for t in self._state.tiers]
            tiers = (*others, totals)
            if usage.service_tier in order:
                tiers = tuple(sorted(tiers, key=lambda t: order.index(t.service_tier)))
            self._state = attrs.evolve(self._state, tiers=tiers)

    def bill_batch(self, usage: Usage) -> None:
        """Add one request answered inside a batch job (kept apart: it is billed at the batch
        price)."""
        with self._lock:
            self._bump(
                batch_calls=1,
                batch_prompt_tokens=usage.prompt_tokens,
                batch_cached_tokens=usage.cached_tokens,
                batch_candidates_tokens=usage.candidates_tokens,
                batch_thoughts_tokens=usage.thoughts_tokens,
            )

    def record_batch(self, record: BatchRecord) -> None:
        """Add one created batch job."""
        with self._lock:
            self._state = attrs.evolve(self._state, batch_jobs=(*self._state.batch_jobs, record))

    def count(self, **increments: int) -> None:
        """Add to cache counters, e.g. ``count(caches_created=1, cache_tokens_created=n)``."""
        with self._lock:
            self._bump(**increments)

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            self._state = Ledger()
            self._requests.clear()

    def snapshot(self) -> Ledger:
        """Return a frozen copy taken under the lock."""
        with self._lock:
            return attrs.evolve(self._state, requests=tuple(self._requests))

    def _bump(self, **increments: int) -> None:
        self._state = attrs.evolve(
            self._state,
            **{name: getattr(self._state, name) + value for name, value in increments.items()},
        )
