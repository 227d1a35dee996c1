"""One context cache per model the plan's stages name, each made only when it pays.

A cache belongs to one model: a request on ``gemini-2.5-pro`` cannot name a cache made
for ``gemini-2.5-flash``.  So a plan whose last stage escalates to another model gets a
:class:`ModelCache` for that model beside the job's own cache (the strategy makes them,
:meth:`GeminiStrategy.plan_resources`).  Each is a :class:`~stagedretry.StageScoped`
shared resource: the runner prepares it when the first item reaches a stage on its model,
single-flight, and it then lives as the job's cache does (found again by its fingerprint,
renewed before expiry, recovered when lost, closed per ``on_close``).

Preparing one first looks for a live cache with its fingerprint (a resumed run finds it,
at no cost).  With none, it is created only when the break-even (:func:`weigh`) says the
requests expected on that model save more than the cache costs; else the stages on that
model send the instructions inline, and the choice is weighed again each time the number
of items that reached them doubles.  :class:`Reach` is the evidence: how many items
started, how many reached each model, and how many requests each model got.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from stagedretry import Clock, RenewReason, Stage, StageContext

from ..backend import CacheChoice, CachePrice
from ._cache import CacheHandle, ClosePolicy, GeminiContextCache, model_path

if TYPE_CHECKING:
    from google import genai

__all__ = ["ModelCache", "Reach", "Weighing", "expected_requests", "stage_models", "weigh"]

_MILLION: Final = 1_000_000
_HOUR: Final = 3600.0


@attrs.frozen
class Weighing:
    """The break-even of one model's cache: the expected bill of its instructions, both ways.

    *inline* is what the expected requests pay to carry the instructions themselves;
    *cached* what the cache costs instead: its creation, its storage for the expected
    time, and the same requests' reads from it.  USD.
    """

    expected_requests: float
    inline: float
    cached: float

    @property
    def pays(self) -> bool:
        """Whether the cache is cheaper than sending the instructions inline."""
        return self.cached < self.inline

    def reason(self) -> str:
        """The choice in one phrase, for the summary."""
        n = round(self.expected_requests)
        return (
            f"{n} request{'' if n == 1 else 's'} expected to cost ${self.inline:.3f} inline "
            f"vs ${self.cached:.3f} cached"
        )


def weigh(
    *, tokens: int, price: CachePrice, expected_requests: float, storage_hours: float
) -> Weighing:
    """The break-even for a cache of *tokens* instruction tokens at *price*.

    A cache pays when creation (*tokens* at the input price) + storage (*tokens* for
    *storage_hours* hours) < *expected_requests* x *tokens* x (input - cached input price).
    """
    per_token = tokens / _MILLION
    inline = expected_requests * per_token * price.input
    cached = (
        per_token * price.input
        + per_token * price.storage * storage_hours
        + expected_requests * per_token * price.cached_input
    )
    return Weighing(expected_requests=expected_requests, inline=inline, cached=cached)


def expected_requests(*, total: int | None, started: int, reached: int, requests: int) -> float:
    """The requests a model's stages are expected to get from now on.

    *started* items made a first request, *reached* of them reached the model (the one
    about to be sent counted) with *requests* requests there (the same).  Each item still
    to come reaches the model as often as the items so far did, and makes as many requests
    there; the item about to be sent is one more.  Items to come: *total* - *started*; with
    *total* unknown (``None``), or passed (a count that was wrong), as many again as started.
    """
    reached = max(reached, 1)
    started = max(started, reached)
    to_come = items_to_come(total, started)
    per_item = max(requests, reached) / reached
    return per_item * (1 + to_come * reached / started)


def items_to_come(total: int | None, started: int) -> int:
    """Items still to start: *total* - *started*; as many again as started when *total* is
    unknown or already passed."""
    if total is None or total < started:
        return started
    return total - started


class Reach:
    """What the strategy has seen so far: items started, and per model (``models/<id>``)
    the items that reached it and the requests it got; for :class:`ModelCache`'s choice."""

    __slots__ = ("_first_seen", "_reached", "_requests", "_stage_models", "started")

    def __init__(self) -> None:
        self.started = 0
        self._first_seen: float | None = None
        self._reached: dict[str, int] = {}
        self._requests: dict[str, int] = {}
        self._stage_models: dict[str, str] = {}

    def stages_on(self, stage_models: dict[str, str]) -> None:
        """Learn which model each stage (by name) sends to."""
        self._stage_models.update(stage_models)

    def saw(self, ctx: StageContext, model: str) -> None:
        """One request of *ctx*'s item to *model* (``models/<id>``) is about to be sent."""
        if self._first_seen is None:
            self._first_seen = ctx.clock.monotonic()
        attempts = ctx.state.attempts
        if not attempts:
            self.started += 1
        models = self._stage_models
        if all(models.get(a.stage) != model for a in attempts):
            self._reached[model] = self._reached.get(model, 0) + 1
        self._requests[model] = self._requests.get(model, 0) + 1

    def reached(self, model: str) -> int:
        """Items that sent a request to *model*."""
        return self._reached.get(model, 0)

    def requests(self, model: str) -> int:
        """Requests sent to *model*."""
        return self._requests.get(model, 0)

    def elapsed(self, now: float) -> float:
        """Seconds since the first request (by the clock's monotonic time *now*)."""
        return 0.0 if self._first_seen is None else max(0.0, now - self._first_seen)


class ModelCache(GeminiContextCache):
    """The cache of the job's instructions for one other model, made when it pays.

    Same instructions, TTL, margin, tag and ``on_close`` as *primary*; its own model,
    fingerprint and resource name (``<primary's name>@<model id>``).  It is used by no
    stage until :meth:`add_stages` names the stages on *model*.  *price* weighs the choice
    (``None``: no price known, so the cache is made as the job's own is); *expected_items*
    is the run's item count (``None``: unknown); *tokens* the instructions' size by the
    local count; *reach* what the strategy has seen so far.
    """

    def __init__(
        self,
        client: genai.Client,
        primary: GeminiContextCache,
        model: str,
        *,
        reach: Reach,
        tokens: int,
        price: CachePrice | None,
        expected_items: int | None,
        api_key: str | None = None,
    ) -> None:
        super().__init__(
            client,
            model,
            system_instruction=primary.system_instruction,
            contents=primary.contents,
            tools=primary.tools,
            ttl=primary.ttl,
            renew_margin=primary.renew_margin,
            tag=primary.tag,
            on_close=primary.on_close,
            name=f"{primary.name}@{model_path(model).removeprefix('models/')}",
            api_key=api_key,
        )
        self._stages = set()
        self._reach = reach
        self._tokens = tokens
        self._price = price
        self._expected_items = expected_items
        self._weighing: Weighing | None = None
        # Items that had reached this model when the choice was last weighed (0: never).
        self._weighed_at = 0

    @property
    def weighing(self) -> Weighing | None:
        """The last break-even weighed (``None``: none yet, or a live cache was found)."""
        return self._weighing

    @property
    def inline_reason(self) -> str | None:
        """Why the stages on this model send the instructions inline, or ``None``."""
        too_small = super().inline_reason
        if too_small is not None:
            return too_small
        weighing = self._weighing
        if weighing is not None and not weighing.pays:
            return weighing.reason()
        return None

    async def prepare(self, clock: Clock) -> CacheHandle:
        """A live cache with this fingerprint if there is one; else a new one if it pays,
        else the inline handle (the choice is weighed again as more items arrive)."""
        if self._inline:
            return self._inline_handle()
        found = await self._call(clock, lambda: self._find(clock, None))
        if found is not None:
            adopted = await self._adopt(found, clock)
            if adopted is not None:
                self._bump(reused=1)
                self._weighing = None
                return adopted
        return await self._if_it_pays(clock)

    def needs_renewal(self, handle: CacheHandle, clock: Clock) -> bool:
        """A live cache: as the job's cache.  Inline by choice: once the items that reached
        this model have doubled since the choice was weighed (no I/O)."""
        if handle.name is not None:
            return super().needs_renewal(handle, clock)
        if self._inline or self._weighed_at == 0:
            return False
        return self._reach.reached(self._model) + 1 >= 2 * self._weighed_at

    async def renew(self, handle: CacheHandle, reason: RenewReason, clock: Clock) -> CacheHandle:
        """A live cache: as the job's cache.  Inline by choice: weigh again."""
        if handle.name is None:
            if self._inline:
                return handle
            return await self._if_it_pays(clock, weighed=True)
        return await super().renew(handle, reason, clock)

    async def _if_it_pays(self, clock: Clock, *, weighed: bool = False) -> CacheHandle:
        weighing = self._weigh(clock)
        if weighing is not None and not weighing.pays:
            return self._inline_handle()
        if weighed:
            # Weighed again after an inline start: another process may have made it since.
            return await self._find_or_create(clock, exclude=None)
        handle = await self._create(clock)
        if handle.name is None:
            return handle
        return await self._converge(handle, clock, exclude=None)

    def _weigh(self, clock: Clock) -> Weighing | None:
        """The break-even now, kept for the summary; ``None`` without a price."""
        reach = self._reach
        model = self._model
        # The request about to be sent is counted: it is why the cache is asked for.
        reached = reach.reached(model) + 1
        self._weighed_at = reached
        price = self._price
        if price is None:
            self._weighing = None
            return None
        started = max(reach.started, reached)
        total = self._expected_items
        expected = expected_requests(
            total=total, started=started, reached=reached, requests=reach.requests(model) + 1
        )
        to_come = items_to_come(total, started)
        pace = reach.elapsed(clock.monotonic()) / started
        hours = (pace * to_come + (self.ttl if self.on_close is ClosePolicy.KEEP else 0.0)) / _HOUR
        self._weighing = weigh(
            tokens=self._tokens, price=price, expected_requests=expected, storage_hours=hours
        )
        return self._weighing

    def choice(self) -> CacheChoice:
        """Whether the stages on this model ran with a cache, and why not."""
        return CacheChoice(
            self._model.removeprefix("models/"), self.stages or (), self.inline_reason
        )

    def __repr__(self) -> str:
        return f"ModelCache(model={self._model!r}, name={self.name!r}, stages={self.stages!r})"


def stage_models(stages: Iterable[Stage], params: Iterable[Any], default: str) -> dict[str, str]:
    """Each stage's name -> the model it sends to (``models/<id>``): its ``model`` param,
    else *default*."""
    found = {}
    for stage, p in zip(stages, params, strict=True):
        model = p.get("model") if isinstance(p, Mapping) else getattr(p, "model", None)
        found[stage.name] = model_path(model if isinstance(model, str) and model else default)
    return found
