"""Default prices: `genai-prices`' bundled data, and our own numbers only for what it lacks.

A pipeline's ``[prices."<model>"]`` entry wins; without one, the input,
cached-input and output prices come from the data that ships with the installed
``genai-prices`` package (read offline: nothing is fetched at run time), and the
cache's storage price from :data:`STORAGE`, our one table of numbers the package
does not carry.  Every part of a price says where it came from (:class:`PriceChoice`),
and the cost report prints it.

Each price has one per service tier: ``standard`` (the price itself), ``flex``,
``priority`` and ``batch`` (what a batch job's answers are billed at).  A tier's part
comes from the pipeline's ``[prices."<model>".<tier>]`` table if it sets it, else from
genai-prices where its data has the tier (Batch, for Gemini), else from the discount or
premium Google documents (:data:`TIER_RULES`), applied to the standard price.
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
class TierPrice:
    """One service tier's prices, in currency units per million tokens; ``None``: the default
    (genai-prices' data for the tier, else the documented ratio of the standard price)."""

    input: float | None = setting(None, minimum=0.0)
    """Per million input tokens sent at full price on this tier."""
    cached_input: float | None = setting(None, minimum=0.0)
    """Per million input tokens served from the cache on this tier."""
    output: float | None = setting(None, minimum=0.0)
    """Per million output (and thinking) tokens on this tier."""


@attrs.frozen
class Price:
    """Prices in currency units per million tokens; storage per million tokens per hour.

    ``input``, ``cached_input`` and ``output`` are the standard tier's; the ``flex``,
    ``priority`` and ``batch`` tables set another tier's (each part left out takes its
    default, see :func:`choose_price`).
    """

    input: float = setting(minimum=0.0)
    """Per million input tokens sent at full price (not served from the cache)."""
    cached_input: float = setting(minimum=0.0)
    """Per million input tokens served from the cache."""
    output: float = setting(minimum=0.0)
    """Per million output tokens; thinking tokens are billed at this price too."""
    cache_storage: float | None = setting(None, minimum=0.0)
    """Per million cached tokens per hour the cache is stored; ``None``: the default table's
    (``stagedretry.cli.pipeline.STORAGE``), else 0."""
    flex: TierPrice = setting(factory=TierPrice)
    """The Flex tier's prices (default: half the standard input and output price)."""
    priority: TierPrice = setting(factory=TierPrice)
    """The Priority tier's prices (default: twice the standard price, the top of the
    documented 75-100% premium)."""
    batch: TierPrice = setting(factory=TierPrice)
    """The Batch API's prices (default: genai-prices' batch price, else half the standard
    input and output price)."""


PARTS: Final = ("input", "cached_input", "output", "cache_storage")
"""The parts of a price, as :class:`Price` names them."""

TIERS: Final = ("standard", "flex", "priority", "batch")
"""The service tiers a price has, as ``ResponseMeta.service_tier`` names them."""
TOKEN_PARTS: Final = ("input", "cached_input", "output")
"""The parts of a price that differ by tier (storage does not)."""


@attrs.frozen
class TierRule:
    """A tier's documented price as factors of the standard price, with where it is written."""

    input: float
    cached_input: float
    output: float
    source: str


_FLEX_PAGE: Final = "https://ai.google.dev/gemini-api/docs/flex-inference"
_PRIORITY_PAGE: Final = "https://ai.google.dev/gemini-api/docs/priority-inference"
_BATCH_PAGE: Final = "https://ai.google.dev/gemini-api/docs/batch-api"

TIER_RULES: Final[Mapping[str, TierRule]] = MappingProxyType(
    {
        # "priced at 50% of the standard API"; the page does not say cached input is halved,
        # so it stays at the standard rate (the higher, safer reading).
        "flex": TierRule(0.5, 1.0, 0.5, f"50% of standard, {_FLEX_PAGE} (checked 2026-12-01)"),
        # "75-100% more than Standard": the top of the range, so no bill is underestimated.
        "priority": TierRule(
            2.0, 2.0, 2.0, f"standard + 100% (of 75-100%), {_PRIORITY_PAGE} (checked 2026-12-01)"
        ),
        # Batch halves input and output; context caching stays at the standard rate.
        "batch": TierRule(0.5, 1.0, 0.5, f"50% of standard, {_BATCH_PAGE} (checked 2026-12-01)"),
    }
)
"""The documented price of each non-standard tier, used where genai-prices has none."""

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


def _frozen_tiers(value: Mapping[str, TierPrice]) -> Mapping[str, TierPrice]:
    return MappingProxyType(dict(value))


@attrs.frozen
class PriceChoice:
    """The price a job is billed at, and where each part of it came from.

    *sources* maps each of :data:`PARTS` to one phrase: the pipeline's table,
    ``genai-prices <version> (<pricing page>)``, a :data:`STORAGE` source, or
    ``"none known (0)"``.  *tier_sources* maps each tier but ``standard`` to where its
    prices came from (see :meth:`tier`).
    """

    model: str
    price: Price
    sources: Mapping[str, str] = attrs.field(converter=_frozen)
    tier_sources: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen)
    tier_prices: Mapping[str, TierPrice] = attrs.field(factory=dict, converter=_frozen_tiers)
    """Each tier but ``standard``, every part filled (see :meth:`tier`)."""

    def tier(self, name: str | None) -> Price:
        """The price of tier *name* (``None``, ``"standard"`` or an unknown name: the standard
        price); its ``input``, ``cached_input`` and ``output`` are the tier's, in full."""
        price = self.price
        if name is None or name not in TIERS or name == "standard":
            return price
        given = self.tier_prices.get(name, getattr(price, name))
        return attrs.evolve(
            price,
            **{
                part: getattr(given, part)
                for part in TOKEN_PARTS
                if getattr(given, part) is not None
            },
        )


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

    standard = Price(
        input=per_million(fresh.total_price),
        cached_input=per_million(cached.total_price),
        output=per_million(out.total_price),
        cache_storage=storage.usd_per_mtok_hour if storage is not None else 0.0,
    )
    # genai-prices has Gemini's Batch prices (a "processing" variant), not Flex's nor
    # Priority's; a variant it lacks prices as standard, which is then not taken for one.
    batch_context = {"processing": "batch"}

    def batch_price(usage: Usage) -> float:
        found = calc_price(usage, name, provider_id="google", price_context=batch_context)
        return per_million(found.total_price)

    batch = TierPrice(
        input=batch_price(Usage(input_tokens=_PROBE)),
        cached_input=batch_price(Usage(input_tokens=_PROBE, cache_read_tokens=_PROBE)),
        output=batch_price(Usage(output_tokens=_PROBE)),
    )
    known = (
        {} if (batch.input, batch.output) == (standard.input, standard.output) else {"batch": batch}
    )
    tier_prices, tier_sources = _with_tiers(standard, known, source)
    return PriceChoice(
        model,
        standard,
        {
            "input": source,
            "cached_input": source,
            "output": source,
            "cache_storage": storage.source if storage is not None else "none known (0)",
        },
        tier_sources,
        tier_prices,
    )


def _with_tiers(
    price: Price, known: Mapping[str, TierPrice], known_source: str
) -> tuple[dict[str, TierPrice], dict[str, str]]:
    """*price* with every tier's parts filled: what it sets, else *known* (data from
    *known_source*), else :data:`TIER_RULES` applied to its standard parts."""
    filled: dict[str, TierPrice] = {}
    sources: dict[str, str] = {}
    for tier, rule in TIER_RULES.items():
        given: TierPrice = getattr(price, tier)
        data = known.get(tier)
        parts: dict[str, float] = {}
        used: list[str] = []
        for part in TOKEN_PARTS:
            value = getattr(given, part)
            if value is not None:
                used.append(PIPELINE_SOURCE)
            elif data is not None and getattr(data, part) is not None:
                value = getattr(data, part)
                used.append(known_source)
            else:
                value = getattr(price, part) * getattr(rule, part)
                used.append(rule.source)
            parts[part] = value
        filled[tier] = TierPrice(**parts)
        sources[tier] = "; ".join(dict.fromkeys(used))
    return filled, sources


def choose_price(model: str, table: Mapping[str, Price]) -> PriceChoice | None:
    """The pipeline's entry for *model* if it has one, else :func:`default_price`.

    An entry without ``cache_storage`` takes :data:`STORAGE`'s (0 when it has
    none).  ``None``: no price is known, and no cost is reported.
    """
    given = table.get(model)
    if given is None:
        return default_price(model)
    sources = dict.fromkeys(PARTS, PIPELINE_SOURCE)
    # A tier the table leaves out follows the table's own standard price by the documented
    # ratio: genai-prices' tier data belongs with its own standard price, not this one.
    tier_prices, tier_sources = _with_tiers(given, {}, PIPELINE_SOURCE)
    if given.cache_storage is None:
        storage = storage_price(model)
        given = attrs.evolve(
            given, cache_storage=storage.usd_per_mtok_hour if storage is not None else 0.0
        )
        sources["cache_storage"] = storage.source if storage is not None else "none known (0)"
    return PriceChoice(model, given, sources, tier_sources, tier_prices)
