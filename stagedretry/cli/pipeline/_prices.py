"""Default prices: `genai-prices`' bundled data, and our own numbers only for what it lacks.

A pipeline's ``[prices."<model>"]`` entry wins; without one, the input,
cached-input and output prices come from the data that ships with the installed
``genai-prices`` package (read offline: nothing is fetched at run time), and the
cache's storage price from :data:`STORAGE`, our one table of numbers the package
does not carry.  Every part of a price says where it came from (:class:`PriceChoice`),
and the cost report prints it.

Tier discounts (Batch, Flex) are not applied: this job runs at the standard tier.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Final

import attrs

from stagedretry import setting


@attrs.frozen
class Price:
    """Prices in currency units per million tokens; storage per million tokens per hour."""

    input: float = setting(minimum=0.0)
    """Per million input tokens sent at full price (not served from the cache)."""
    cached_input: float = setting(minimum=0.0)
    """Per million input tokens served from the cache."""
    output: float = setting(minimum=0.0)
    """Per million output tokens; thinking tokens are billed at this price too."""
    cache_storage: float | None = setting(None, minimum=0.0)
    """Per million cached tokens per hour the cache is stored; ``None``: the default table's
    (``stagedretry.cli.pipeline.STORAGE``), else 0."""


PARTS: Final = ("input", "cached_input", "output", "cache_storage")
"""The parts of a price, as :class:`Price` names them."""

PIPELINE_SOURCE: Final = "the pipeline's [prices] table"


@attrs.frozen
class StoragePrice:
    """Cache storage in USD per million tokens per hour, with where the number was read."""

    usd_per_mtok_hour: float
    source: str


_PRICING_PAGE: Final = "https://ai.google.dev/gemini-api/docs/pricing"

STORAGE: Final[Mapping[str, StoragePrice]] = MappingProxyType(
    {
        # Model-name prefixes, longest first wins.  genai-prices has no storage price.
        "gemini-2.5-pro": StoragePrice(
            4.50,
            f"{_PRICING_PAGE} as quoted in "
            "https://discuss.ai.google.dev/t/question-about-gemini-api-caching-pricing/107349 "
            "(checked 2026-11-30)",
        ),
        "gemini-3-pro": StoragePrice(4.50, f"{_PRICING_PAGE} (checked 2026-11-30)"),
        "gemini-3.1-pro": StoragePrice(4.50, f"{_PRICING_PAGE} (checked 2026-11-30)"),
        "gemini-2.5-flash": StoragePrice(1.00, f"{_PRICING_PAGE} (checked 2026-11-30)"),
        "gemini-2.0-flash": StoragePrice(1.00, f"{_PRICING_PAGE} (checked 2026-11-30)"),
        "gemini-3-flash": StoragePrice(1.00, f"{_PRICING_PAGE} (checked 2026-11-30)"),
    }
)
"""Cache storage per million tokens per hour, by model-name prefix, each with its source."""

# Priced per thousand tokens, then scaled: a million would cross Gemini's 200k-token tier and
# price the long-prompt rate.
_PROBE: Final = 1000


def _frozen(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@attrs.frozen
class PriceChoice:
    """The price a job is billed at, and where each part of it came from.

    *sources* maps each of :data:`PARTS` to one phrase: the pipeline's table,
    ``genai-prices <version> (<pricing page>)``, a :data:`STORAGE` source, or
    ``"none known (0)"``.
    """

    model: str
    price: Price
    sources: Mapping[str, str] = attrs.field(converter=_frozen)


def storage_price(model: str) -> StoragePrice | None:
    """Our storage price for *model* (by the longest matching prefix), or ``None``."""
    name = model.removeprefix("models/")
    found = [prefix for prefix in STORAGE if name.startswith(prefix)]
    return STORAGE[max(found, key=len)] if found else None


@functools.lru_cache(maxsize=64)
def default_price(model: str) -> PriceChoice | None:
    """*model*'s standard-tier price from genai-prices' bundled data, or ``None`` if unknown.

    Prices in USD per million tokens; prompts over 200k tokens are priced at the
    base rate.  Cache storage comes from :data:`STORAGE` (0 when it has none).  The
    package's data loads on the first call (about half a second); answers are kept.
    """
    from genai_prices import Usage, __version__, calc_price

    name = model.removeprefix("models/")
    try:
        fresh = calc_price(Usage(input_tokens=_PROBE), name, provider_id="google")
        cached = calc_price(
            Usage(input_tokens=_PROBE, cache_read_tokens=_PROBE), name, provider_id="google"
        )
        out = calc_price(Usage(output_tokens=_PROBE), name, provider_id="google")
    except LookupError:
        return None
    pages = fresh.provider.pricing_urls or []
    source = f"genai-prices {__version__}" + (f" ({pages[0]})" if pages else "")
    storage = storage_price(name)

    def per_million(value: Decimal) -> float:
        return float(value * 1_000_000 / _PROBE)

    return PriceChoice(
        model,
        Price(
            input=per_million(fresh.total_price),
            cached_input=per_million(cached.total_price),
            output=per_million(out.total_price),
            cache_storage=storage.usd_per_mtok_hour if storage is not None else 0.0,
        ),
        {
            "input": source,
            "cached_input": source,
            "output": source,
            "cache_storage": storage.source if storage is not None else "none known (0)",
        },
    )


def choose_price(model: str, table: Mapping[str, Price]) -> PriceChoice | None:
    """The pipeline's entry for *model* if it has one, else :func:`default_price`.

    An entry without ``cache_storage`` takes :data:`STORAGE`'s (0 when it has
    none).  ``None``: no price is known, and no cost is reported.
    """
    given = table.get(model)
    if given is None:
        return default_price(model)
    sources = dict.fromkeys(PARTS, PIPELINE_SOURCE)
    if given.cache_storage is None:
        storage = storage_price(model)
        given = attrs.evolve(
            given, cache_storage=storage.usd_per_mtok_hour if storage is not None else 0.0
        )
        sources["cache_storage"] = storage.source if storage is not None else "none known (0)"
    return PriceChoice(model, given, sources)
