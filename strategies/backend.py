"""The contract between a provider and the command-line app: a backend spec.

A provider the app can run exposes one :class:`BackendSpec` object (``BACKEND``
in its module).  The app finds it by name (``[backend] kind``), reads the
provider's part of the pipeline file into the spec's ``section_type`` with
:func:`stagedretry.parse_settings`, checks the plan's stage params against its
``params_type`` with :func:`stagedretry.stage_params`, and finally calls
:meth:`BackendSpec.build` with the parsed section and the :class:`JobInputs`
every backend gets from the app's common sections.

How a spec's section maps onto the pipeline file: the section is the
``[backend]`` table minus the app's own keys, ``kind`` and ``model``.  So the
``gemini`` section holds ``api_version`` and ``base_url``; the ``emulator``
section holds ``api_version`` and the ``[backend.emulator]`` table; the
``sim`` section holds the ``[backend.sim]`` table.  Every error names its
path from ``backend`` (``backend.sim.invalid_rate``).  Another backend's table
(``[backend.emulator]`` under ``kind = "gemini"``, left from a switch of kind) is
set aside by the app, with one warning, before the section is read.

Nothing here imports an optional package: the app imports a provider only when
a pipeline names it.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import urlsplit

import attrs

from stagedretry import PlanError, SharedResource, StagedRetryError, Strategy, Validator, setting

__all__ = [
    "BackendError",
    "BackendSpec",
    "Built",
    "CacheChoice",
    "CacheClose",
    "CacheOptions",
    "CachePrice",
    "Closer",
    "JobInputs",
    "close_all",
    "http_url_problem",
]

S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)

Closer = Callable[[], Awaitable[None]]
"""Puts away one thing a build started (a client, a server thread)."""

MAX_TAG = 40
"""The longest cache tag: it is part of the cache's display name, which providers cap."""

MAX_WAIT: Final = 3600.0
"""The longest wait a provider setting may ask for, in seconds (an hour, as the runner's
longest per-request timeout): a latency, a retry delay, an HTTP timeout.  Every wait is
bounded, so ``1e308`` is a configuration error, not a hung run."""

MAX_CACHE_TTL: Final = 7 * 86400.0
"""The longest cache ``ttl`` in seconds (7 days): storage is billed per hour, and a longer
life is a typo far more often than a plan."""


class BackendError(StagedRetryError):
    """A backend cannot be set up; the message is one sentence for the user."""


class CacheClose(enum.Enum):
    """What happens to the provider-side cache when the run ends."""

    KEEP = "keep"
    DELETE = "delete"


@attrs.frozen
class CacheOptions:
    """The options of the ``[cache]`` table: the provider-side cache of the shared instruction.

    With ``enabled = false`` the instruction is sent inline with every request.
    Raises :class:`~stagedretry.PlanError` for a margin not shorter than the
    TTL, or a tag a cache's display name cannot hold.
    """

    enabled: bool = setting(True)
    """Whether to cache the instruction; ``false`` sends it inline with every request."""
    ttl: float = setting(3600.0, above=0.0, maximum=MAX_CACHE_TTL, unit="seconds")
    """How long the cache lives after each creation or renewal, in seconds (at most 7 days)."""
    renew_margin: float = setting(300.0, minimum=0.0, maximum=MAX_CACHE_TTL, unit="seconds")
    """Renew the cache when less than this many seconds are left."""
    on_close: CacheClose = setting(CacheClose.KEEP)
    """At the end of the run, ``keep`` the cache (a later run reuses it until it expires) or
    ``delete`` it."""
    tag: str | None = setting(None)
    """Part of the cache's display name, to tell this job's caches apart."""

    def __attrs_post_init__(self) -> None:
        if self.renew_margin >= self.ttl:
            raise PlanError(
                "renew_margin",
                f"must be smaller than the ttl ({self.ttl:g} s), got {self.renew_margin:g}",
            )
        tag = self.tag
        if tag is not None:
            if len(tag) > MAX_TAG:
                raise PlanError("tag", f"at most {MAX_TAG} characters, got {len(tag)}")
            if any(c in tag for c in ":\r\n"):
                # The tag becomes part of the cache's display name, which ':' separates.
                raise PlanError("tag", f"must not hold ':' or a line break, got {tag!r}")


@attrs.frozen
class CachePrice:
    """What a model's cache is weighed with, in USD per million tokens.

    *input* is the full price of an input token (a cache's creation is billed at it too),
    *cached_input* the price of one read from a cache, *storage* the price of keeping a
    million tokens cached for an hour.  The app injects them (from its price table); a
    provider never imports the app.
    """

    input: float
    cached_input: float
    storage: float


@attrs.frozen
class CacheChoice:
    """Whether the stages on one model ran with a cache, and why not when they did not.

    *model* as the stages name it; *stages* the plan's stage names on it; *reason* is
    ``None`` when a cache was used, else one phrase for the summary (``"below the
    model's minimum of 4096 tokens"``, ``"53 requests expected to cost $0.011 inline vs
    $0.024 cached"``).
    """

    model: str
    stages: tuple[str, ...]
    reason: str | None = None

    @property
    def cached(self) -> bool:
        """Whether the stages named a cache."""
        return self.reason is None


@attrs.frozen
class JobInputs:
    """What every backend gets from the pipeline's common sections.

    *model* is the default model name (a stage may name another in its
    params).  *system_instruction* is the shared instruction text of the
    ``[cache]`` section and *cache* its options (both ``None`` without one).
    The answer's shape is *output_model* (a pydantic class) or, without one,
    *output_schema*; *output_schema* is the JSON Schema in both cases (the
    model's own), ``None`` when any JSON object will do.  *validator* checks
    an answer against that shape (``None``: the backend picks its own).
    *api_key* is the provider's key, when the app has one.  *cache_prices* gives the
    :class:`CachePrice` of a model (``None``: unknown), and *expected_items* the number of
    items the run will take (``None``: unknown): with them a provider decides whether a
    cache for a stage's other model pays for itself.
    """

    model: str
    system_instruction: str | None = attrs.field(default=None, repr=False)
    cache: CacheOptions | None = None
    output_model: type[Any] | None = None
    output_schema: Mapping[str, Any] | None = attrs.field(default=None, repr=False)
    validator: Validator | None = None
    api_key: str | None = attrs.field(default=None, repr=False)
    cache_prices: Callable[[str], CachePrice | None] | None = attrs.field(default=None, repr=False)
    expected_items: int | None = None

    @property
    def shared_cache(self) -> CacheOptions | None:
        """The options of the provider cache to make; ``None``: send the instruction inline."""
        if self.cache is None or not self.cache.enabled or self.system_instruction is None:
            return None
        return self.cache


@attrs.frozen
class Built:
    """A backend, built: what a run needs from it and what puts it away afterwards.

    *closers* run newest first (the order they are given in); the app runs
    each once, after the run, and a failing one does not stop the others.
    *cache_stats* reads the provider cache's counters (``None``: no cache), summed over
    the caches of every model; *cache_choices* says, per model the stages name, whether a
    cache served them and why not (``None``: the provider does not say).
    """

    strategy: Strategy
    validator: Validator
    label: str
    """One line naming the backend for the summary: ``"sim (seed 3)"``."""
    resources: tuple[SharedResource, ...] = ()
    closers: tuple[Closer, ...] = ()
    cache_stats: Callable[[], Mapping[str, int]] | None = None
    cache_choices: Callable[[], Sequence[CacheChoice]] | None = None


class BackendSpec(Protocol[S_contra]):
    """A provider's backend: its name, its typed section and stage params, and a factory.

    *section_type* is a frozen attrs class made with :func:`stagedretry.setting`;
    *params_type* the stage-params class its strategy declares.  *neutral*
    holds the dotted keys of the section that never change an answer (a
    latency, where requests are sent): they are left out of the journal's
    fingerprint, so changing them keeps earlier results.  *needs_api_key*:
    :meth:`build` needs :attr:`JobInputs.api_key`.
    """

    @property
    def name(self) -> str: ...

    @property
    def section_type(self) -> type[Any]: ...

    @property
    def params_type(self) -> type[Any]: ...

    @property
    def neutral(self) -> frozenset[str]: ...

    @property
    def needs_api_key(self) -> bool: ...

    def check(self, section: S_contra, job: JobInputs) -> None:
        """Every check that needs no network; raise :class:`~stagedretry.PlanError`.

        The error's path is the pipeline key at fault (``output`` when the
        backend cannot answer the declared shape).
        """

    async def build(self, section: S_contra, job: JobInputs) -> Built:
        """Build the strategy and start what it shares; raise :class:`BackendError`.

        Async because a backend may start something (the emulator's server).
        When it raises, whatever it started is already put away.
        """


async def close_all(closers: Iterable[Closer]) -> None:
    """Run *closers* in the order given; a failing one does not stop the others."""
    for closer in closers:
        # Closing must never hide the run's own outcome.
        with contextlib.suppress(Exception):
            await closer()


def http_url_problem(url: str) -> str | None:
    """Why *url* cannot be an endpoint, in one phrase, or ``None`` for an ``http://`` or
    ``https://`` URL with a host and, if any, a port in range (a proxy, an emulator)."""
    try:
        parts = urlsplit(url)
        _port = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        return f"expected an http(s) URL, got {url!r} ({exc})"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"expected an http(s) URL, got {url!r}"
    return None
