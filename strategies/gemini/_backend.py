"""The ``gemini`` backend spec: Gemini itself, through the SDK, with the shared context cache.

Its section is ``[backend]``'s ``api_version`` and ``base_url``; its stage params
are :class:`GeminiParams`.  :func:`build_on_client` is shared with the
emulator's backend, which talks to its own server through the same SDK path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

import attrs

from stagedretry import PlanError, setting, validators

from ..backend import (
    BackendError,
    BackendSpec,
    Built,
    CacheClose,
    Closer,
    JobInputs,
    close_all,
    http_url_problem,
)
from ..quota import Quota
from ._params import GeminiParams

if TYPE_CHECKING:
    from google import genai

    from ._cache import GeminiContextCache
    from ._strategy import GeminiStrategy

# The modules that import google.genai are imported by the functions that build a client
# or a strategy, not here: reading and checking a pipeline needs only the section and params.

API_VERSIONS: Final = ("v1", "v1beta", "v1alpha")


@attrs.frozen
class GeminiSection:
    """The gemini backend's part of ``[backend]``: which API version, and where.

    ``base_url`` (``None``: Google's endpoint) is an ``http://`` or
    ``https://`` URL, e.g. a proxy or an emulator.
    """

    api_version: str = setting("v1beta", choices=API_VERSIONS)
    """The API version the SDK calls; not part of the fingerprint."""
    base_url: str | None = setting(None)
    """Where requests go: an ``http(s)://`` URL (a proxy, an emulator); ``None``: Google's
    endpoint.  Not part of the fingerprint."""
    quota: Quota = setting(factory=Quota)
    """The ``[backend.quota]`` table: the limits each request is admitted under before it
    is sent (see :class:`~strategies.quota.Quota`); empty: none.  Not part of the
    fingerprint."""

    def __attrs_post_init__(self) -> None:
        problem = http_url_problem(self.base_url) if self.base_url is not None else None
        if problem is not None:
            raise PlanError("base_url", problem)


def check_shape(name: str, job: JobInputs) -> None:
    """Gemini is asked for JSON of a declared shape: a pipeline must declare one."""
    if job.output_schema is None:
        raise PlanError(
            "output",
            f"the {name} backend needs output.model or output.schema: the answer's shape "
            "is what the stages validate and repair",
        )


def client_closer(client: genai.Client) -> Closer:
    """A closer for *client*'s transports."""

    async def close_client() -> None:
        from ._client import disconnect

        await disconnect(client)

    return close_client


def build_on_client(
    client: genai.Client,
    job: JobInputs,
    *,
    label: str,
    quota: Quota | None = None,
    batch_inline_limit: int | None = None,
) -> Built:
    """The strategy (and its shared context cache) for *job* over a ready *client*.

    *quota* paces every request (``None`` or an empty one: no admission);
    *batch_inline_limit* (bytes, default the service's 20 MiB) is the largest batch job sent
    inline.  The caller owns the client: the result has no closers.
    """
    from ._batch import INLINE_LIMIT
    from ._cache import ClosePolicy, GeminiContextCache
    from ._strategy import GeminiStrategy

    options = job.shared_cache
    cache = None
    if options is not None:
        cache = GeminiContextCache(
            client,
            job.model,
            system_instruction=job.system_instruction,
            ttl=options.ttl,
            renew_margin=options.renew_margin,
            tag=options.tag,
            on_close=(
                ClosePolicy.DELETE if options.on_close is CacheClose.DELETE else ClosePolicy.KEEP
            ),
            api_key=job.api_key,
        )
    response_schema = job.output_model or (
        dict(job.output_schema) if job.output_schema is not None else None
    )
    strategy = GeminiStrategy(
        client,
        job.model,
        cache=cache,
        response_schema=response_schema,
        # Without a cache the shared instruction travels with every request.
        system_instruction=job.system_instruction if cache is None else None,
        api_key=job.api_key,
        quota=quota,
        cache_prices=job.cache_prices,
        expected_items=job.expected_items,
        batch_inline_limit=INLINE_LIMIT if batch_inline_limit is None else batch_inline_limit,
    )
    return Built(
        strategy=strategy,
        validator=job.validator or validators.json_object(),
        label=label,
        resources=(cache,) if cache is not None else (),
        cache_stats=_stats_of(cache, strategy) if cache is not None else None,
        cache_choices=strategy.cache_choices if cache is not None else None,
    )


def _stats_of(
    cache: GeminiContextCache, strategy: GeminiStrategy
) -> Callable[[], Mapping[str, int]]:
    """The counters of the job's cache and of every other model's, summed."""

    def stats() -> Mapping[str, int]:
        total: dict[str, int] = {}
        for each in (cache, *strategy.model_caches):
            for key, value in attrs.asdict(each.stats).items():
                total[key] = total.get(key, 0) + int(value)
        return total

    return stats


class GeminiBackend:
    """The ``gemini`` backend: Gemini's Developer API with the job's API key."""

    name: Final = "gemini"
    section_type: Final = GeminiSection
    params_type: Final = GeminiParams
    neutral: Final = frozenset({"api_version", "base_url", "quota"})
    needs_api_key: Final = True

    def check(self, section: GeminiSection, job: JobInputs) -> None:
        check_shape(self.name, job)

    async def build(self, section: GeminiSection, job: JobInputs) -> Built:
        if job.api_key is None:
            raise BackendError("the gemini backend needs an API key")
        from ._client import connect

        client = connect(job.api_key, api_version=section.api_version, base_url=section.base_url)
        closers = (client_closer(client),)
        try:
            built = build_on_client(client, job, label=f"gemini {job.model}", quota=section.quota)
        except BaseException:
            await close_all(closers)
            raise
        return attrs.evolve(built, closers=closers)

    def __repr__(self) -> str:
        return "GeminiBackend()"


BACKEND: Final[BackendSpec[GeminiSection]] = GeminiBackend()
"""The gemini backend's spec, for the command-line app's registry."""
