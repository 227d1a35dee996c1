"""Shared resources: prepared once, injected into every stage, renewed once for all.

The runner owns each resource's lifecycle: ``prepare`` once (single-flight; a
failure stops the run), the current handle injected into every attempt through
``ctx.resources[name]``, ``renew`` single-flight when the resource's own
authority says it is about to expire or when an attempt reports it lost, and
``close`` exactly once when the runner closes.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from ._clock import Clock
from ._stop import ResourceError


class RenewReason(enum.Enum):
    """Why a resource is renewed."""

    EXPIRING = "expiring"
    LOST = "lost"


@runtime_checkable
class SharedResource(Protocol):
    """Something every stage shares, such as a provider-side context cache."""

    @property
    def name(self) -> str:
        """The key under which stages find the handle in ``ctx.resources``."""

    async def prepare(self, clock: Clock) -> Any:
        """Make the resource ready and return its handle (called once per run)."""

    def needs_renewal(self, handle: Any, clock: Clock) -> bool:
        """Whether *handle* must be renewed before its next use (cheap, no I/O)."""

    async def renew(self, handle: Any, reason: RenewReason, clock: Clock) -> Any:
        """Extend or re-create the resource; return the handle to use from now on."""

    async def close(self, handle: Any) -> None:
        """Keep or release the resource, as its own policy says."""


class _Slot:
    """One resource's handle, guarded so only one worker prepares or renews it."""

    __slots__ = ("failure", "generation", "handle", "lock", "renewals", "resource")

    def __init__(self, resource: SharedResource) -> None:
        self.resource = resource
        self.handle: Any = None
        self.generation = 0
        self.renewals = 0
        self.lock = asyncio.Lock()
        # Set once preparing or renewing failed: the workers queued on the lock must not
        # try again one after the other while the run is being stopped.
        self.failure: ResourceError | None = None

    async def current(self, clock: Clock) -> Any:
        if self.generation and not self.resource.needs_renewal(self.handle, clock):
            return self.handle
        async with self.lock:
            self._raise_failure()
            if not self.generation:
                try:
                    self.handle = await self.resource.prepare(clock)
                except Exception as exc:
                    self.failure = ResourceError(
                        f"could not prepare resource {self.resource.name!r}: {exc}"
                    )
                    raise self.failure from exc
                self.generation = 1
            elif self.resource.needs_renewal(self.handle, clock):
                await self._renew(RenewReason.EXPIRING, clock)
        return self.handle

    async def lost(self, seen: int, clock: Clock) -> None:
        async with self.lock:
            self._raise_failure()
            # Another worker already renewed since this attempt's handle was taken.
            if self.generation != seen or not self.generation:
                return
            await self._renew(RenewReason.LOST, clock)

    async def _renew(self, reason: RenewReason, clock: Clock) -> None:
        try:
            self.handle = await self.resource.renew(self.handle, reason, clock)
        except Exception as exc:
            self.failure = ResourceError(f"could not renew resource {self.resource.name!r}: {exc}")
            raise self.failure from exc
        self.generation += 1
        self.renewals += 1

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise ResourceError(str(self.failure)) from self.failure.__cause__


_EMPTY: Mapping[str, Any] = MappingProxyType({})


class ResourcePool:
    """The runner's shared resources, by name."""

    __slots__ = ("_slots",)

    def __init__(self, resources: Sequence[SharedResource]) -> None:
        names = [r.name for r in resources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two shared resources are named {duplicates[0]!r}")
        self._slots = tuple(_Slot(r) for r in resources)

    def __bool__(self) -> bool:
        return bool(self._slots)

    async def current(self, clock: Clock) -> tuple[Mapping[str, Any], tuple[int, ...]]:
        """The handles for one attempt, and the generation of each (to report a loss)."""
        if not self._slots:
            return _EMPTY, ()
        handles = {}
        for slot in self._slots:
            handles[slot.resource.name] = await slot.current(clock)
        return handles, tuple(s.generation for s in self._slots)

    async def lost(self, name: str | None, seen: tuple[int, ...], clock: Clock) -> None:
        """Renew the resource *name* unless already renewed.

        ``None``, or a name no resource has, renews them all: a loss must never
        go unanswered because a strategy named it differently.
        """
        if name is not None and all(s.resource.name != name for s in self._slots):
            name = None
        for slot, generation in zip(self._slots, seen, strict=True):
            if name is None or slot.resource.name == name:
                await slot.lost(generation, clock)

    async def close(self) -> list[Exception]:
        """Close every prepared resource once; a later run prepares them again.

        One resource failing to close does not keep the others open: the
        failures are returned, not raised.
        """
        errors: list[Exception] = []
        for slot in self._slots:
            async with slot.lock:
                slot.failure = None  # a later run tries again
                if slot.generation:
                    handle, slot.handle, slot.generation = slot.handle, None, 0
                    try:
                        await slot.resource.close(handle)
                    except Exception as exc:
                        errors.append(exc)
        return errors

    def renewals(self) -> Mapping[str, int]:
        """How many times each resource was renewed since this pool was made."""
        return {s.resource.name: s.renewals for s in self._slots}
