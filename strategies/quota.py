"""Proactive quota admission: pace requests to a provider's published quotas before sending.

A 429 only says *too late*: the refused request was already sent, and every worker then
waits.  Admission asks first.  :class:`Quota` holds the limits a provider publishes per
model (requests per minute, input tokens per minute, requests per day, requests at once);
:class:`QuotaAdmission` is shared by every worker of a run and lets a request go only when
all of its model's limits have room, waiting otherwise.  The counting is done by the
``limits`` library (a moving window by default) in a storage named by a URI: the default
``async+memory://`` counts in this process, ``async+redis://host:6379`` shares one quota
between processes.  The concurrency limit is an :class:`asyncio.Semaphore` of this process.

Requests per day reset at midnight Pacific time, as Gemini's do: a day quota that is spent
is not waited for (a run would sleep for hours) but stops the run with
:class:`~stagedretry.StopRun`, saying when it resets.  A request larger than the whole
per-minute token quota can never be admitted: it fails its item at once
(:class:`~stagedretry.FatalError`, nothing sent) instead of waiting forever.

:func:`time_under` is the arithmetic a planner needs: how long a batch takes under a quota.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import time
import zoneinfo
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from stagedretry import FatalError, PlanError, StopRun, Usage, setting

if TYPE_CHECKING:
    import limits
    import limits.aio.storage
    import limits.aio.strategies

# ``limits`` is imported by the admission when it first counts: reading a pipeline's
# [backend.quota] table needs only the settings classes here.

__all__ = ["ModelQuota", "Permit", "Quota", "QuotaAdmission", "time_under"]

PACIFIC: Final = zoneinfo.ZoneInfo("America/Los_Angeles")
"""Where a provider's day ends: Gemini's requests-per-day quotas reset at midnight Pacific
time (https://ai.google.dev/gemini-api/docs/rate-limits)."""

Strategy = Literal["moving-window", "sliding-window-counter"]

_MAX_STEP: Final = 5.0
"""The longest single sleep of a waiting admission, in seconds: it looks again after it."""
_MIN_STEP: Final = 0.005
_RATIO_BOUNDS: Final = (0.25, 4.0)
_LEARN: Final = 0.2
"""How much one request's real usage moves the learned estimate ratio (an EWMA weight)."""


def _bare(model: str) -> str:
    return model.removeprefix("models/")


@attrs.frozen
class ModelQuota:
    """The limits of one model: each ``None`` means no limit of that kind.

    Every limit counts per model, as Gemini's quotas do (``...PerProjectPerModel``).
    """

    rpm: int | None = setting(None, minimum=1, unit="requests per minute")
    """Requests per minute (a moving 60-second window)."""
    tpm: int | None = setting(None, minimum=1, unit="input tokens per minute")
    """Input tokens per minute, the prompt's tokens including those read from a cache."""
    rpd: int | None = setting(None, minimum=1, unit="requests per day")
    """Requests per day; the day ends at midnight Pacific time."""
    concurrent: int | None = setting(None, minimum=1, unit="requests")
    """Requests on the wire at once, in this process."""

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return any(v is not None for v in (self.rpm, self.tpm, self.rpd, self.concurrent))

    def over(self, other: ModelQuota) -> ModelQuota:
        """This quota, with *other*'s limits where this one sets none."""
        return ModelQuota(
            rpm=self.rpm if self.rpm is not None else other.rpm,
            tpm=self.tpm if self.tpm is not None else other.tpm,
            rpd=self.rpd if self.rpd is not None else other.rpd,
            concurrent=self.concurrent if self.concurrent is not None else other.concurrent,
        )


def _models(value: object) -> Mapping[str, ModelQuota]:
    """``[quota.models."gemini-2.5-pro"]`` tables, read into one :class:`ModelQuota` each."""
    from stagedretry import parse_settings

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise PlanError("models", f"expected a table of model names, got {type(value).__name__}")
    out: dict[str, ModelQuota] = {}
    for name, table in value.items():
        if not isinstance(name, str) or not name.strip():
            raise PlanError("models", f"expected model names as keys, got {name!r}")
        where = f'models."{name}"' if not name.isidentifier() else f"models.{name}"
        quota = table if isinstance(table, ModelQuota) else parse_settings(ModelQuota, table, where)
        out[_bare(name)] = quota
    return out


@attrs.frozen
class Quota(ModelQuota):
    """The ``[backend.quota]`` table: limits for every model, and overrides per model.

    ``rpm``, ``tpm``, ``rpd`` and ``concurrent`` apply to each model on its own;
    ``models`` maps a model name (``"gemini-2.5-pro"``) to a :class:`ModelQuota` whose
    limits replace these for that model (a limit it leaves unset keeps this one).
    Raises :class:`~stagedretry.PlanError` for a limit below 1 or an override that is
    not a table.
    """

    models: Mapping[str, ModelQuota] = attrs.field(factory=dict, converter=_models)
    """Per-model overrides, by model name (with or without the ``models/`` prefix)."""

    def for_model(self, model: str) -> ModelQuota:
        """The limits that apply to *model*."""
        base = ModelQuota(self.rpm, self.tpm, self.rpd, self.concurrent)
        override = self.models.get(_bare(model))
        return base if override is None else override.over(base)

    @property
    def limited(self) -> bool:
        return super().limited or any(q.limited for q in self.models.values())


def time_under(quota: ModelQuota, requests: int, tokens: int, *, minute: float = 60.0) -> float:
    """Seconds that *requests* requests holding *tokens* input tokens in all take under *quota*.

    The steady pace of the binding per-minute limit (RPM or TPM), ignoring the head start
    an empty window gives; ``0.0`` with neither limit.  Requests per day are not
    converted into time (a run stops when they are spent); nor is ``concurrent``, whose
    effect depends on latency.
    """
    if requests < 0 or tokens < 0:
        raise ValueError("requests and tokens must not be negative")
    needed = 0.0
    if quota.rpm is not None:
        needed = max(needed, requests / quota.rpm)
    if quota.tpm is not None:
        needed = max(needed, tokens / quota.tpm)
    return needed * minute


def next_pacific_midnight(now: float) -> float:
    """The Unix time of the next midnight in Pacific time after *now*."""
    local = datetime.datetime.fromtimestamp(now, PACIFIC)
    tomorrow = (local + datetime.timedelta(days=1)).date()
    midnight = datetime.datetime.combine(tomorrow, datetime.time(), tzinfo=PACIFIC)
    return midnight.timestamp()


def _pacific_day(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, PACIFIC).date().isoformat()


def describe_reset(now: float) -> str:
    """``"at midnight Pacific time (08:00 UTC), in 5 h 12 min"`` for the next day's reset."""
    reset = next_pacific_midnight(now)
    utc = datetime.datetime.fromtimestamp(reset, datetime.UTC).strftime("%H:%M UTC")
    left = max(0, int(reset - now))
    hours, minutes = divmod(left // 60, 60)
    return f"at midnight Pacific time ({utc}), in {hours} h {minutes:02d} min"


@attrs.define
class _Model:
    """One model's limits, as the ``limits`` library counts them, and its semaphore."""

    quota: ModelQuota
    rpm: limits.RateLimitItem | None
    tpm: limits.RateLimitItem | None
    rpd: limits.RateLimitItem | None
    slots: asyncio.Semaphore | None
    ratio: float = 1.0
    """Real input tokens per estimated token, learned from answers (estimates are scaled)."""
    debt: int = 0
    """Tokens used beyond what was charged and not yet counted (the window had no room)."""


class Permit:
    """One admitted request: what was charged for it, settled once when it has ended."""

    __slots__ = ("_admission", "_model", "_settled", "charged", "estimate", "model")

    def __init__(
        self, admission: QuotaAdmission, model: str, entry: _Model, estimate: int, charged: int
    ) -> None:
        self._admission = admission
        self._model = entry
        self._settled = False
        self.model = model
        self.estimate = estimate
        """Tokens the caller estimated."""
        self.charged = charged
        """Tokens counted against the per-minute token quota at admission."""

    def __call__(self, usage: Usage | None) -> None:
        """Settle with the request's real *usage* (``None``: no answer; the charge stands)."""
        if self._settled:
            return
        self._settled = True
        self._admission._settle(self, self._model, usage)

    def __repr__(self) -> str:
        return f"Permit(model={self.model!r}, estimate={self.estimate}, charged={self.charged})"


class QuotaAdmission:
    """Admission to a :class:`Quota`, shared by every worker of a run (and, with a shared
    storage, by several processes).

    :meth:`admit` waits until *model*'s limits all have room for one request of
    *tokens* input tokens, counts it, and returns a :class:`Permit` to call with the
    real usage once the request has ended: a token estimate that fell short is counted
    then (or, when the window is full, with the model's next request), and the ratio of
    real to estimated tokens is learned and applied to later estimates.  Tokens charged
    beyond the real usage are not given back: the ``limits`` windows have no refund.

    *storage* is a ``limits`` storage URI or object (default ``"async+memory://"``, this
    process only; ``"async+redis://localhost:6379"`` shares the counts between processes,
    with the ``redis`` or ``coredis`` package installed).  *strategy* is the ``limits``
    window: ``"moving-window"`` (exact; the default) or ``"sliding-window-counter"``
    (constant memory, approximate).  *minute* is the length of a quota's minute in whole
    seconds (default 60): a test or a benchmark shortens it, and must shorten the
    server's the same way.  *now* is the wall clock (``limits`` counts in wall time).

    Its counts, locks and slots belong to the event loop that first uses it: one admission
    serves one loop (one run, or several runs in one loop).

    Raises :class:`~stagedretry.FatalError` (``sent=False``) from :meth:`admit` for a
    request larger than the model's whole ``tpm``, and :class:`~stagedretry.StopRun`
    when the model's ``rpd`` is spent for the day.  Every wait is bounded by the
    windows it waits on, and cancelled with its caller.
    """

    def __init__(
        self,
        quota: Quota,
        *,
        storage: str | limits.aio.storage.Storage = "async+memory://",
        strategy: Strategy = "moving-window",
        minute: int = 60,
        margin: float = 0.25,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(quota, Quota):
            raise TypeError(f"quota must be a Quota, got {type(quota).__name__}")
        if isinstance(minute, bool) or not isinstance(minute, int) or minute < 1:
            raise ValueError(f"minute must be a whole number of seconds >= 1, got {minute!r}")
        if strategy not in ("moving-window", "sliding-window-counter"):
            raise ValueError(
                f"strategy must be 'moving-window' or 'sliding-window-counter', got {strategy!r}"
            )
        if not (math.isfinite(margin) and 0 <= margin < minute):
            raise ValueError(f"margin must be seconds in [0, minute), got {margin!r}")
        self.quota = quota
        self.minute = minute
        self.margin = margin
        self.strategy = strategy
        self._storage_spec = storage
        self._now = now
        self._models: dict[str, _Model] = {}
        self._window: limits.aio.strategies.RateLimiter | None = None
        self._daily: limits.aio.strategies.RateLimiter | None = None
        self._lock: asyncio.Lock | None = None
        self.waited = 0.0
        """Seconds spent waiting for admission, summed over requests."""

    def __repr__(self) -> str:
        return f"QuotaAdmission({self.quota!r}, strategy={self.strategy!r}, minute={self.minute})"

    def _limiters(
        self,
    ) -> tuple[limits.aio.strategies.RateLimiter, limits.aio.strategies.RateLimiter]:
        # Made on first use, inside the event loop the storage's locks belong to.
        if self._window is None or self._daily is None:
            import limits.aio.storage
            import limits.aio.strategies
            import limits.storage

            spec = self._storage_spec
            storage = limits.storage.storage_from_string(spec) if isinstance(spec, str) else spec
            if not isinstance(storage, limits.aio.storage.Storage):
                raise TypeError(
                    f"the quota storage must be an async limits storage (async+memory://, "
                    f"async+redis://...), got {spec!r}"
                )
            self._window = (
                limits.aio.strategies.MovingWindowRateLimiter(storage)
                if self.strategy == "moving-window"
                else limits.aio.strategies.SlidingWindowCounterRateLimiter(storage)
            )
            self._daily = limits.aio.strategies.FixedWindowRateLimiter(storage)
        return self._window, self._daily

    def _entry(self, model: str) -> _Model:
        found = self._models.get(model)
        if found is None:
            import limits

            quota = self.quota.for_model(model)
            per = limits.RateLimitItemPerSecond
            found = _Model(
                quota=quota,
                rpm=per(quota.rpm, self.minute, namespace="rpm") if quota.rpm else None,
                tpm=per(quota.tpm, self.minute, namespace="tpm") if quota.tpm else None,
                rpd=limits.RateLimitItemPerDay(quota.rpd, namespace="rpd") if quota.rpd else None,
                slots=asyncio.Semaphore(quota.concurrent) if quota.concurrent else None,
            )
            self._models[model] = found
        return found

    async def admit(self, model: str, tokens: int) -> Permit:
        """Wait until *model* may take one more request of *tokens* (estimated) input tokens."""
        model = _bare(model)
        entry = self._entry(model)
        quota = entry.quota
        lo, hi = _RATIO_BOUNDS
        charged = max(0, math.ceil(tokens * min(hi, max(lo, entry.ratio))))
        if quota.tpm is not None and charged > quota.tpm:
            raise FatalError(
                f"the request's {charged:,} estimated input tokens exceed {model}'s whole quota "
                f"of {quota.tpm:,} input tokens per minute (quota tpm): no wait can admit it",
                sent=False,
            )
        if entry.slots is not None:
            await entry.slots.acquire()
        try:
            started = self._now()
            await self._take(model, entry, charged)
            self.waited += max(0.0, self._now() - started)
        except BaseException:
            if entry.slots is not None:
                entry.slots.release()
            raise
        return Permit(self, model, entry, tokens, charged)

    async def _take(self, model: str, entry: _Model, charged: int) -> None:
        window, daily = self._limiters()
        if self._lock is None:
            self._lock = asyncio.Lock()
        while True:
            async with self._lock:
                # One decision at a time: test every limit, then count in all of them.
                now = self._now()
                day = _pacific_day(now)
                if entry.rpd is not None and not await daily.test(entry.rpd, model, day):
                    raise StopRun(
                        f"the requests-per-day quota of {model} ({entry.rpd.amount:,} requests, "
                        f"quota rpd) is spent; it resets {describe_reset(now)}"
                    )
                cost = charged + entry.debt
                if entry.tpm is not None:
                    cost = min(cost, entry.tpm.amount)
                waits = []
                if entry.rpm is not None and not await window.test(entry.rpm, model):
                    waits.append(await window.get_window_stats(entry.rpm, model))
                if (
                    entry.tpm is not None
                    and cost
                    and not await window.test(entry.tpm, model, cost=cost)
                ):
                    waits.append(await window.get_window_stats(entry.tpm, model))
                if not waits:
                    if entry.rpm is not None and not await window.hit(entry.rpm, model):
                        continue  # another process took the room first
                    if entry.tpm is not None and cost:
                        await window.hit(entry.tpm, model, cost=cost)
                    entry.debt = 0
                    if entry.rpd is not None:
                        await daily.hit(entry.rpd, model, day)
                    return
            # Past the moment room frees up, by the margin: the server counts a request when it
            # arrives, and the one leaving the window may have arrived later than it left here.
            reset = min(stats.reset_time for stats in waits) + self.margin
            await asyncio.sleep(min(_MAX_STEP, max(_MIN_STEP, reset - self._now())))

    def _settle(self, permit: Permit, entry: _Model, usage: Usage | None) -> None:
        if entry.slots is not None:
            entry.slots.release()
        if usage is None or permit.estimate <= 0 or usage.input_tokens <= 0:
            return
        real = usage.input_tokens
        entry.ratio += _LEARN * (real / permit.estimate - entry.ratio)
        if real > permit.charged:
            # Counted with the model's next admission, whose test then sees it.
            entry.debt += real - permit.charged


def make_admission(quota: Quota | QuotaAdmission | None, **options: Any) -> QuotaAdmission | None:
    """*quota* as an admission object (``None`` when nothing is limited)."""
    if quota is None:
        return None
    if isinstance(quota, QuotaAdmission):
        return quota
    if not quota.limited:
        return None
    return QuotaAdmission(quota, **options)
