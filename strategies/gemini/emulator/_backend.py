"""The ``emulator`` backend spec: the loopback emulator started in this process.

Its section is ``[backend]``'s ``api_version`` and the ``[backend.emulator]``
table (the emulator's knobs and ``[[backend.emulator.faults]]``); its stage
params are :class:`~strategies.gemini.GeminiParams`, as the requests take the
same SDK path as the ``gemini`` backend's.
"""

from __future__ import annotations

import asyncio
from typing import Final

import attrs

from stagedretry import setting

from ...backend import MAX_WAIT, BackendError, BackendSpec, Built, Closer, JobInputs, close_all
from ...quota import Quota
from .._backend import API_VERSIONS, build_on_client, check_shape, client_closer
from .._params import GeminiParams
from ._caches import ExpiryStyle
from ._faults import JOB_FAULTS, Fault, FaultKind
from ._flex import FlexSettings
from ._quota import EmulatorQuota

# The server (aiohttp) and the client (google.genai) are imported by build(), not here:
# reading and checking a pipeline needs only the section and params.

ROUTES: Final = (
    "generateContent",
    "cachedContents",
    "batchGenerateContent",
    "batches",
    "files",
    "*",
)
MAX_CLOCK_OFFSET: Final = 86_400.0
"""Seconds: the furthest ``clock_offset`` may set the emulated server's clock apart."""
MAX_BATCH_COMPLETION: Final = 7 * 86_400.0
"""Seconds: the latest a batch job may be set to end (past 48 hours it expires)."""


@attrs.frozen
class FaultSettings:
    """One ``[[backend.emulator.faults]]`` table: the fields of :class:`Fault`.

    ``at`` lists 1-based request numbers (a lone number is a list of one);
    ``retry_delay`` and ``delay`` are seconds, at most 3600 (every wait is bounded).
    """

    kind: FaultKind = setting()
    """What the fault does to a request it hits (see :class:`FaultKind`)."""
    rate: float | None = setting(None, minimum=0.0, maximum=1.0)
    """The chance that a matching request is hit; the draw depends on the seed and the
    request, not on the order requests arrive in.  ``None``: every one (as ``at`` allows)."""
    at: tuple[int, ...] | None = setting(None, minimum=1)
    """The 1-based numbers of the matching requests to hit, in arrival order; ``None``: any."""
    times: int | None = setting(None, minimum=1)
    """The most times the fault fires; ``None``: no cap."""
    route: str = setting("generateContent", choices=ROUTES)
    """The requests it matches: ``generateContent`` (and each request inside a batch job),
    ``cachedContents``, ``batchGenerateContent`` (a job's creation: where ``batch_failed`` and
    ``batch_expired`` fire, so they need no route), ``batches`` (get, list, cancel, delete),
    ``files`` (upload, download) or ``*`` (all)."""
    retry_delay: float | None = setting(None, minimum=0.0, maximum=MAX_WAIT, unit="seconds")
    """Seconds a 429 or 503 advises in its ``RetryInfo``; ``None``: the kind's own default
    (2 s on a rate limit, none on a 503)."""
    retry_after_header: bool = setting(False)
    """Send a ``Retry-After`` header too (whole seconds, rounded up)."""
    delay: float = setting(1.0, minimum=0.0, maximum=MAX_WAIT, unit="seconds")
    """Seconds a ``slow`` fault waits before answering."""

    def fault(self) -> Fault:
        """The emulator's own fault rule."""
        fault = Fault(
            kind=self.kind,
            rate=self.rate,
            at=frozenset(self.at) if self.at is not None else None,
            times=self.times,
            # A job fault fires only where jobs are made: the default route means that one.
            route=(
                "batchGenerateContent"
                if self.kind in JOB_FAULTS and self.route == "generateContent"
                else self.route
            ),
            retry_after_header=self.retry_after_header,
            delay=self.delay,
        )
        if self.retry_delay is None:
            return fault
        return attrs.evolve(fault, retry_delay=self.retry_delay)


@attrs.frozen
class EmulatorSettings:
    """The ``[backend.emulator]`` table: the in-process emulator's knobs.

    ``expiry_style`` ``None`` is the emulator's own default (Gemini's); ``latency`` is
    seconds per request, at most 3600.  ``models`` lists the model ids served (404
    ``NOT_FOUND`` for any other, as for a retired or misspelled name; default: empty,
    any name); like ``latency``, it is not part of the pipeline's fingerprint.
    """

    seed: int = setting(0, minimum=0)
    """Seeds the answers and the faults' draws: the same seed, the same run."""
    invalid_rate: float = setting(0.15, minimum=0.0, maximum=1.0)
    """The chance that a field of an answer is invalid, at temperature 0."""
    invalid_rate_slope: float = setting(0.4, minimum=0.0)
    """Added to ``invalid_rate`` per unit of temperature."""
    latency: float = setting(0.0, minimum=0.0, maximum=MAX_WAIT, unit="seconds")
    """Seconds each ``generateContent`` request takes; not part of the fingerprint."""
    min_cache_tokens: int = setting(1024, minimum=0, unit="tokens")
    """The smallest context cache the emulator accepts, in tokens (Gemini's minimum)."""
    expiry_style: ExpiryStyle | None = setting(None)
    """How an expired cache answers: ``gemini`` (it vanishes: 403) or ``vertex`` (it lingers:
    400); ``None``: ``gemini``."""
    models: tuple[str, ...] = setting(())
    """The model ids served (404 ``NOT_FOUND`` for any other, as the API answers a retired or
    misspelled name); empty: any name.  Not part of the fingerprint."""
    clock_offset: float = setting(
        0.0, minimum=-MAX_CLOCK_OFFSET, maximum=MAX_CLOCK_OFFSET, unit="seconds"
    )
    """Seconds the emulated server's clock runs ahead of this machine's (negative: behind),
    at most a day either way: every time it reports and every cache expiry it decides is
    on that clock.  Not part of the fingerprint."""
    implicit_caching: bool = setting(False)
    """Report a request whose prefix (instructions, then contents) was sent before, at least
    ``min_cache_tokens`` long, as read from an implicit cache (``cachedContentTokenCount``),
    as Gemini 2.5 models do.  It changes the usage reported, never an answer: not part of the
    fingerprint."""
    batch_completion: float = setting(
        2.0, minimum=0.0, maximum=MAX_BATCH_COMPLETION, unit="seconds"
    )
    """Seconds after its creation a batch job ends (pending, then running from half that
    time); past 48 hours it expires unanswered.  Not part of the fingerprint."""
    batch_inline_limit: int = setting(20 * 1024 * 1024, minimum=1, unit="bytes")
    """The largest ``batchGenerateContent`` body with inlined requests (the service's 20 MiB);
    a larger one is refused with 400.  Not part of the fingerprint."""
    faults: tuple[FaultSettings, ...] = setting(())
    """Injected faults, one ``[[backend.emulator.faults]]`` table each, tried in order."""
    quota: EmulatorQuota = setting(factory=EmulatorQuota)
    """The ``[backend.emulator.quota]`` table: the quotas the emulator enforces with the
    service's 429s (none by default).  Not part of the fingerprint."""
    flex: FlexSettings = setting(factory=FlexSettings)
    """The ``flex`` table: how requests on the ``flex`` tier are treated, e.g.
    ``flex = { shed_rate = 0.1, latency = 0.05 }`` (default: never shed, no extra wait).
    ``flex.latency`` is not part of the fingerprint."""


@attrs.frozen
class EmulatorSection:
    """The emulator backend's part of ``[backend]``: the API version and ``[backend.emulator]``."""

    api_version: str = setting("v1beta", choices=API_VERSIONS)
    """The API version in the request paths, as the SDK is told; not part of the fingerprint."""
    emulator: EmulatorSettings = setting(factory=EmulatorSettings)
    """The ``[backend.emulator]`` table."""
    quota: Quota = setting(factory=Quota)
    """The ``[backend.quota]`` table: the client's admission, as for the gemini backend."""


class EmulatorBackend:
    """The ``emulator`` backend: a Gemini emulator on loopback, stopped when the run ends."""

    name: Final = "emulator"
    section_type: Final = EmulatorSection
    params_type: Final = GeminiParams
    # What decides no answer: where the API is, how fast it answers, which models it serves.
    neutral: Final = frozenset(
        {
            "api_version",
            "emulator.latency",
            "emulator.models",
            "emulator.clock_offset",
            "emulator.quota",
            "emulator.flex.latency",
            "emulator.implicit_caching",
            "emulator.batch_completion",
            "emulator.batch_inline_limit",
            "quota",
        }
    )
    needs_api_key: Final = False

    def check(self, section: EmulatorSection, job: JobInputs) -> None:
        check_shape(self.name, job)

    async def build(self, section: EmulatorSection, job: JobInputs) -> Built:
        from ._client import make_client
        from ._server import GeminiEmulator

        knobs = section.emulator
        emulator = GeminiEmulator(
            seed=knobs.seed,
            min_cache_tokens=knobs.min_cache_tokens,
            expiry_style=knobs.expiry_style or ExpiryStyle.GEMINI,
            invalid_rate=knobs.invalid_rate,
            invalid_rate_slope=knobs.invalid_rate_slope,
            latency=knobs.latency,
            models=knobs.models or None,
            clock_offset=knobs.clock_offset,
            quota=knobs.quota,
            flex=knobs.flex,
            implicit_caching=knobs.implicit_caching,
            batch_completion=knobs.batch_completion,
            batch_inline_limit=knobs.batch_inline_limit,
        )
        for fault in knobs.faults:
            emulator.inject(fault.fault())
        try:
            base_url = await asyncio.to_thread(emulator.start)
        except RuntimeError as exc:
            raise BackendError(f"the Gemini emulator did not start: {exc}") from None

        async def stop() -> None:
            await asyncio.to_thread(emulator.stop)

        started: list[Closer] = [stop]
        try:
            # The user's key when there is one, as their own code would send it.
            client = make_client(
                base_url, api_version=section.api_version, api_key=job.api_key or "emulator-key"
            )
            started.append(client_closer(client))
            built = build_on_client(
                client,
                job,
                label=f"emulator {job.model} (in-process, seed {knobs.seed})",
                quota=section.quota,
                # The client sends as a file what its emulator would refuse inline.
                batch_inline_limit=knobs.batch_inline_limit,
            )
        except BaseException:
            await close_all(reversed(started))
            raise
        return attrs.evolve(built, closers=tuple(reversed(started)))

    def __repr__(self) -> str:
        return "EmulatorBackend()"


BACKEND: Final[BackendSpec[EmulatorSection]] = EmulatorBackend()
"""The emulator backend's spec, for the command-line app's registry."""
