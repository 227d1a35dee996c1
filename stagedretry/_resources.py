"""Shared resources: prepared once, injected into every stage, renewed once for all.

The runner owns each resource's lifecycle: ``prepare`` once (single-flight; a
failure stops the run), the current handle injected into every attempt through
``ctx.resources[name]``, ``renew`` single-flight when the resource's own
authority says it is about to expire or when an attempt reports it lost, and
``close`` exactly once when the runner closes.  Each of these calls is bounded
(:data:`PREPARE_TIMEOUT`, :data:`CLOSE_TIMEOUT`), in real seconds: a provider
that never answers fails the run, or the close, instead of holding it for ever.

A resource's failure may quote the server, and the server may quote the key:
every :class:`ResourceError` is masked by the run's :class:`Secrets`, and the
original exception is kept as its cause only when its own text is clean.
"""

from __future__ import annotations

import asyncio
import enum
import traceback
from collections.abc import Awaitable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Protocol, runtime_checkable

from ._clock import Clock
from ._describe import without_reprs
from ._plan import Stage
from ._redact import Secrets
from ._stop import ResourceError

PREPARE_TIMEOUT: Final = 120.0
"""Seconds one ``prepare`` or ``renew`` may take (creating a large Gemini cache takes a few)."""
CLOSE_TIMEOUT: Final = 30.0
"""Seconds one ``close`` may take (e.g. deleting a cache); then it is reported and given up."""


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


@runtime_checkable
class StageScoped(Protocol):
    """A shared resource that only some stages use, such as a cache for one stage's model.

    The runner prepares it when the first attempt of a stage that uses it asks for it, not
    before, and leaves it out of ``ctx.resources`` for the other stages (nor renews it for
    them).  A resource without ``used_by`` is used by every stage.
    """

    def used_by(self, stage: Stage) -> bool:
        """Whether attempts of *stage* use this resource (cheap, no I/O)."""


class _Slot:
    """One resource's handle, guarded so only one worker prepares or renews it."""

    __slots__ = ("failure", "generation", "handle", "lock", "renewals", "resource", "secrets")

    def __init__(self, resource: SharedResource, secrets: Secrets) -> None:
        self.resource = resource
        self.secrets = secrets
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
                    self.handle = await _bounded(self.resource.prepare(clock), PREPARE_TIMEOUT)
                except Exception as exc:
                    what = f"could not prepare resource {self.resource.name!r}"
                    failure = self._failed(what, exc)
                    raise failure from failure.__cause__
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
            self.handle = await _bounded(
                self.resource.renew(self.handle, reason, clock), PREPARE_TIMEOUT
            )
        except Exception as exc:
            failure = self._failed(f"could not renew resource {self.resource.name!r}", exc)
            raise failure from failure.__cause__
        self.generation += 1
        self.renewals += 1

    def _failed(self, what: str, exc: Exception) -> ResourceError:
        """The run-stopping error for *exc*, masked; set as this slot's failure."""
        self.failure = masked_error(what, exc, self.secrets)
        return self.failure

    def _raise_failure(self) -> None:
        if self.failure is not None:
            raise ResourceError(str(self.failure)) from self.failure.__cause__


def masked_error(what: str, exc: Exception, secrets: Secrets) -> ResourceError:
    """``ResourceError("<what>: <exc>")`` masked; caused by *exc* unless a traceback of *exc*
    would print a secret (in its text, its notes, its causes and contexts, a group's members)."""
    shown = without_reprs(str(exc))
    error = ResourceError(f"{what}: {secrets.text(shown)}")
    if shows_secret(exc, secrets):
        error.add_note(f"(the {type(exc).__name__} it came from is not shown: it holds a secret)")
    else:
        error.__cause__ = exc
    return error


def shows_secret(exc: BaseException, secrets: Secrets) -> bool:
    """Whether *exc*'s repr or a traceback of it (its text, notes, causes and contexts, a
    group's members) would show a secret."""
    if not secrets:
        return False
    return secrets.found(repr(exc)) or secrets.found("".join(traceback.format_exception(exc)))


class _NoAnswer(TimeoutError):
    """A resource's call outlasted its bound (not a timeout of the provider's own)."""


async def _bounded(call: Awaitable[Any], seconds: float) -> Any:
    """Await *call* for at most *seconds*; past them raise :class:`_NoAnswer`, which says so.

    Real seconds, not the runner's clock's: this guards against a provider that hangs, a real
    event, and must not fire while a test moves virtual time over a live request.
    """
    try:
        async with asyncio.timeout(seconds) as bound:
            return await call
    except TimeoutError:
        if not bound.expired():
            raise  # the provider's own timeout, with its own words
        raise _NoAnswer(f"no answer within {seconds:g} s") from None


_EMPTY: Mapping[str, Any] = MappingProxyType({})


class ResourcePool:
    """The runner's shared resources, by name."""

    __slots__ = ("_scoped", "_slots")

    def __init__(self, resources: Sequence[SharedResource], secrets: Secrets | None = None) -> None:
        names = [r.name for r in resources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two shared resources are named {duplicates[0]!r}")
        secrets = Secrets() if secrets is None else secrets
        self._slots = tuple(_Slot(r, secrets) for r in resources)
        self._scoped = tuple(r.used_by if isinstance(r, StageScoped) else None for r in resources)

    def __bool__(self) -> bool:
        return bool(self._slots)

    async def current(
        self, clock: Clock, stage: Stage | None = None
    ) -> tuple[Mapping[str, Any], tuple[int, ...]]:
        """The handles for one attempt of *stage*, and the generation of each (to report a loss).

        A :class:`StageScoped` resource that *stage* does not use is neither prepared nor
        handed over (``None``: every resource is).
        """
        if not self._slots:
            return _EMPTY, ()
        handles = {}
        for slot, used_by in zip(self._slots, self._scoped, strict=True):
            if used_by is not None and stage is not None and not used_by(stage):
                continue
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
        failures are returned, not raised.  Each close may take up to
        :data:`CLOSE_TIMEOUT` real seconds (see :func:`_bounded`); one that takes
        longer is given up and returned as a ``TimeoutError``.
        """
        errors: list[Exception] = []
        for slot in self._slots:
            async with slot.lock:
                slot.failure = None  # a later run tries again
                if slot.generation:
                    handle, slot.handle, slot.generation = slot.handle, None, 0
                    try:
                        await _bounded(slot.resource.close(handle), CLOSE_TIMEOUT)
                    except _NoAnswer:
                        errors.append(
                            TimeoutError(
                                f"closing resource {slot.resource.name!r} took over "
                                f"{CLOSE_TIMEOUT:g} s: given up"
                            )
                        )
                    except Exception as exc:
                        if shows_secret(exc, slot.secrets):
                            what = f"could not close resource {slot.resource.name!r}"
                            errors.append(masked_error(what, exc, slot.secrets))
                        else:
                            errors.append(exc)
        return errors

    def renewals(self) -> Mapping[str, int]:
        """How many times each resource was renewed since this pool was made."""
        return {s.resource.name: s.renewals for s in self._slots}
