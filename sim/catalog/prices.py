"""Price catalogue: hourly GPU prices and per-token API prices shipped with the package.

Two data files, read once per process with :mod:`importlib.resources` (so they work from a
wheel and never depend on the working directory): ``prices_gpu.csv`` (one row per quote of
one GPU model at one provider, normalised to a price per GPU-hour) and ``prices_api.csv``
(per-1M-token input / output / cached-input prices keyed ``provider/model``, with the
provider's prompt-cache and batch terms where known). Every row carries its ``source``,
``quote_date`` and ``confidence``; ``SOURCES.md`` says where they come from. Prices change: a
scenario should state the date of the prices it uses. The loader checks each row on its own
(known GPU and kind, positive prices, a term on every reserved row and only there, cached
input not dearer than input, ...); the rules that compare rows with each other are in
:func:`sim.catalog.price_checks.check_catalogue`.

Confidence levels, best first: ``high`` (the provider's own price list, or a catalogue
scraped from it), ``medium-high`` (a community-maintained price map or marketplace catalogue
confirmed by a second source), ``medium`` (a mirror or a community-maintained price map),
``low-medium`` (a third-party quote, or a model past its deprecation date), ``low`` (an
aggregator page, a superseded list price, or sources that disagree).
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import TypeVar

from sim.catalog._load import _read_text, get_gpu, list_gpus

__all__ = [
    "CACHE_MODES",
    "CONFIDENCE_LEVELS",
    "DEFAULT_RESERVED_TERM_YEARS",
    "GPU_PRICE_KINDS",
    "ApiPrice",
    "GpuPrice",
    "api_price",
    "default_gpu_price",
    "gpu_prices",
    "list_api_models",
]

GPU_PRICE_KINDS = ("on_demand", "spot", "reserved")
"""Pricing types a catalogue GPU quote can have (``owned`` is priced from capex, not here)."""

_N = TypeVar("_N", int, float)

CACHE_MODES = ("automatic", "explicit", "none")
"""How a provider caches prompts: ``automatic`` (every prompt of at least a minimum length
is cached, prefix hits found without the client asking: OpenAI, Gemini, DeepSeek and the
gateways that list a cached-input price), ``explicit`` (the client marks cache breakpoints;
writes cost a premium: Anthropic), ``none``."""

CONFIDENCE_LEVELS = ("high", "medium-high", "medium", "low-medium", "low")
"""Confidence levels of a quote, best first."""

DEFAULT_RESERVED_TERM_YEARS = 1
"""Commitment term :func:`default_gpu_price` picks for ``reserved`` unless told otherwise:
the shortest term providers sell, so a default never assumes a three-year commitment."""


@dataclass(frozen=True)
class GpuPrice:
    """One quoted hourly price of one GPU.

    Attributes
    ----------
    gpu : str
        Catalog GPU name (see :func:`sim.catalog.list_gpus`).
    kind : str
        ``on_demand``, ``spot`` or ``reserved`` (committed-use: paid whether used or not).
    usd_per_gpu_hour : float
        Instance price divided by the GPUs in the instance.
    provider : str
        Who sells it.
    source : str
        Where the quote was read (URL).
    quote_date : str
        When the price held, as precisely as the source says.
    confidence : str
        One of :data:`CONFIDENCE_LEVELS`.
    sku : str
        Provider's instance name.
    gpu_count : int
        GPUs in the instance the price is quoted for.
    region : str
        Region(s) the price applies to.
    notes : str
        Caveats, and the source's own wording where it was shortened.
    term_years : int or None
        Length of the commitment of a ``reserved`` quote (1 or 3 years); None otherwise.
    """

    gpu: str
    kind: str
    usd_per_gpu_hour: float
    provider: str
    source: str
    quote_date: str
    confidence: str
    sku: str = ""
    gpu_count: int = 1
    region: str = ""
    notes: str = ""
    term_years: int | None = None


@dataclass(frozen=True)
class ApiPrice:
    """Per-token prices of one hosted model at one provider, USD per million tokens.

    Attributes
    ----------
    key : str
        ``provider/model``, e.g. ``"openai/gpt-4o-mini"`` (``"custom"`` for user prices).
    usd_per_1m_input : float
        Uncached input (prompt) tokens.
    usd_per_1m_output : float
        Output (generated) tokens.
    usd_per_1m_cached_input : float or None
        Input tokens served from the provider's prompt cache; None where not listed.
    source : str
        Where the prices were read.
    quote_date : str
        When they held.
    confidence : str
        One of :data:`CONFIDENCE_LEVELS` (empty for user-given prices).
    cache_write_usd_per_1m : float or None
        Price of writing a prompt-cache entry, USD per 1M tokens, where the provider charges
        for it (OpenAI GPT-5.6 and later, Anthropic: 1.25 x input); None where writes are
        free or not listed.
    cache_ttl_s : int or None
        How long a cache entry lives without use, seconds (the provider's default), where
        documented.
    cache_min_tokens : int or None
        Shortest prompt the provider caches, tokens, where documented.
    cache_mode : str or None
        One of :data:`CACHE_MODES`; None where unknown (user-given prices).
    cache_increment_tokens : int or None
        ``automatic`` only: cached prefixes are counted in multiples of this many tokens
        (OpenAI: 128), where documented.
    batch_discount : float or None
        Share taken off every price on the provider's batch API (0.5 = half price), where
        the provider has one.
    params_b, active_params_b : float or None
        Open-weight models only: total and per-token (active) parameters, billions (equal
        for dense models); None for closed models and where unknown. Used by the outlier
        rule of :func:`sim.catalog.price_checks.check_catalogue`.

    The cache fields are the provider's rule that :mod:`sim.economics.prompt_cache` replays
    a workload's prompt identities through; the batch discount is applied by the scenario's
    ``api.batch_discount``.
    """

    key: str
    usd_per_1m_input: float
    usd_per_1m_output: float
    usd_per_1m_cached_input: float | None
    source: str
    quote_date: str
    confidence: str = ""
    cache_write_usd_per_1m: float | None = None
    cache_ttl_s: int | None = None
    cache_min_tokens: int | None = None
    batch_discount: float | None = None
    cache_mode: str | None = None
    cache_increment_tokens: int | None = None
    params_b: float | None = None
    active_params_b: float | None = None


def _rows(filename: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(_read_text(filename)))
    rows: list[dict[str, str]] = []
    for line_no, row in enumerate(reader, start=2):
        if None in row or any(value is None for value in row.values()):
            raise ValueError(f"{filename} line {line_no}: cell count does not match the header")
        rows.append({k: v.strip() for k, v in row.items()})
    return rows


def _optional(row: Mapping[str, str], column: str, kind: type[_N], where: str) -> _N | None:
    """An optional number cell: None when empty or absent, ``kind`` otherwise (>= 0)."""
    text = row.get(column, "")
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{where}: {column} {text!r} is not a valid {kind.__name__}") from None
    if value < 0:
        raise ValueError(f"{where}: {column} must be >= 0")
    return value


def _check_level(filename: str, line_no: int, level: str) -> str:
    if level not in CONFIDENCE_LEVELS:
        raise ValueError(
            f"{filename} line {line_no}: confidence {level!r} is not one of {CONFIDENCE_LEVELS}"
        )
    return level


@lru_cache(maxsize=1)
def _gpu_table() -> tuple[GpuPrice, ...]:
    known = set(list_gpus())
    prices: list[GpuPrice] = []
    for line_no, row in enumerate(_rows("prices_gpu.csv"), start=2):
        where = f"prices_gpu.csv line {line_no}"
        if row["gpu"] not in known:
            raise ValueError(f"{where}: gpu {row['gpu']!r} is not a catalog GPU")
        if row["pricing_type"] not in GPU_PRICE_KINDS:
            raise ValueError(
                f"{where}: pricing_type {row['pricing_type']!r} not in {GPU_PRICE_KINDS}"
            )
        price = float(row["usd_per_gpu_hour"])
        if not price > 0:
            raise ValueError(f"{where}: usd_per_gpu_hour must be > 0")
        count = int(row["gpu_count"])
        if count < 1:
            raise ValueError(f"{where}: gpu_count must be >= 1")
        term = _optional(row, "term_years", int, where)
        if (row["pricing_type"] == "reserved") != (term is not None):
            raise ValueError(f"{where}: term_years is required on reserved rows and only there")
        if term is not None and term < 1:
            raise ValueError(f"{where}: term_years must be >= 1")
        prices.append(
            GpuPrice(
                gpu=row["gpu"],
                kind=row["pricing_type"],
                usd_per_gpu_hour=price,
                provider=row["provider"],
                source=row["source"],
                quote_date=row["quote_date"],
                confidence=_check_level("prices_gpu.csv", line_no, row["confidence"]),
                sku=row["sku"],
                gpu_count=count,
                region=row["region"],
                notes=row["notes"],
                term_years=term,
            )
        )
    return tuple(prices)


@lru_cache(maxsize=1)
def _api_table() -> tuple[Mapping[str, ApiPrice], Mapping[str, tuple[str, ...]]]:
    """Prices by canonical key, and lower-cased lookup names -> canonical keys."""
    prices: dict[str, ApiPrice] = {}
    names: dict[str, list[str]] = {}
    for line_no, row in enumerate(_rows("prices_api.csv"), start=2):
        where = f"prices_api.csv line {line_no}"
        key = row["key"]
        if key != f"{row['provider']}/{row['model']}":
            raise ValueError(f"{where}: key must be provider/model")
        if key.lower() in {k.lower() for k in prices}:
            raise ValueError(f"{where}: duplicate key {key!r}")
        p_in = _optional(row, "usd_per_1m_input", float, where)
        p_out = _optional(row, "usd_per_1m_output", float, where)
        if p_in is None or p_out is None:
            raise ValueError(f"{where}: usd_per_1m_input and usd_per_1m_output are required")
        cached = _optional(row, "usd_per_1m_cached_input", float, where)
        if cached is not None and cached > p_in:
            raise ValueError(f"{where}: usd_per_1m_cached_input is above the input price")
        batch = _optional(row, "batch_discount", float, where)
        if batch is not None and not batch < 1:
            raise ValueError(f"{where}: batch_discount must be < 1 (a share of the price)")
        mode = row.get("cache_mode", "") or None
        if mode is not None and mode not in CACHE_MODES:
            raise ValueError(f"{where}: cache_mode {mode!r} is not one of {CACHE_MODES}")
        increment = _optional(row, "cache_increment_tokens", int, where)
        if increment is not None and (mode != "automatic" or increment < 1):
            raise ValueError(f"{where}: cache_increment_tokens is for automatic caching, >= 1")
        if mode == "none" and cached is not None:
            raise ValueError(f"{where}: cache_mode none with a cached-input price")
        if mode == "explicit" and not row.get("cache_write_usd_per_1m"):
            raise ValueError(f"{where}: explicit caching needs cache_write_usd_per_1m")
        params = _optional(row, "params_b", float, where)
        active = _optional(row, "active_params_b", float, where)
        if active is not None and (params is None or active > params):
            raise ValueError(f"{where}: active_params_b needs params_b, and <= it")
        prices[key] = ApiPrice(
            key=key,
            usd_per_1m_input=p_in,
            usd_per_1m_output=p_out,
            usd_per_1m_cached_input=cached,
            source=row["source"],
            quote_date=row["quote_date"],
            confidence=_check_level("prices_api.csv", line_no, row["confidence"]),
            cache_write_usd_per_1m=_optional(row, "cache_write_usd_per_1m", float, where),
            cache_ttl_s=_optional(row, "cache_ttl_s", int, where),
            cache_min_tokens=_optional(row, "cache_min_tokens", int, where),
            batch_discount=batch,
            cache_mode=mode,
            cache_increment_tokens=increment,
            params_b=params,
            active_params_b=active if active is not None else params,
        )
        # the key, the bare model name and LiteLLM's model id all find the entry
        for name in {key, row["model"], row["model_id"]}:
            names.setdefault(name.lower(), [])
            if key not in names[name.lower()]:
                names[name.lower()].append(key)
    return MappingProxyType(prices), MappingProxyType({k: tuple(v) for k, v in names.items()})


def gpu_prices(gpu: str | None = None) -> list[GpuPrice]:
    """All catalogue quotes, or those of one GPU, in file order.

    Parameters
    ----------
    gpu : str, optional
        Catalog GPU name or alias (anything :func:`sim.catalog.get_gpu` accepts).

    Returns
    -------
    list of GpuPrice
        Empty when the GPU is known but has no quote.

    Raises
    ------
    KeyError
        If ``gpu`` is not a catalog GPU.

    Examples
    --------
    >>> sorted({p.kind for p in gpu_prices("H100 SXM5")})
    ['on_demand', 'reserved', 'spot']
    """
    table = _gpu_table()
    if gpu is None:
        return list(table)
    name = get_gpu(gpu).name
    return [p for p in table if p.gpu == name]


def _rank(price: GpuPrice) -> tuple[int, int, float]:
    return (CONFIDENCE_LEVELS.index(price.confidence), price.gpu_count, price.usd_per_gpu_hour)


def default_gpu_price(
    gpu: str, kind: str = "on_demand", *, term_years: int | None = None
) -> GpuPrice:
    """The catalogue's default quote for a GPU and pricing kind.

    The choice is deterministic: the highest-confidence quote; among equals, the one for the
    smallest instance (fewest GPUs: the instance a single replica can rent, and at one
    provider the dearest per GPU, so the default does not flatter self-hosting); then the
    lowest price; then file order. ``reserved`` quotes are first narrowed to one commitment
    term: :data:`DEFAULT_RESERVED_TERM_YEARS` (1 year) unless ``term_years`` says otherwise.

    Parameters
    ----------
    gpu : str
        Catalog GPU name or alias.
    kind : str, default ``"on_demand"``
        One of :data:`GPU_PRICE_KINDS`.
    term_years : int, optional, keyword-only
        ``reserved`` only: the commitment term (e.g. 3); default 1.

    Returns
    -------
    GpuPrice

    Raises
    ------
    KeyError
        If the GPU is unknown (naming the catalog GPUs), the kind is unknown, or the GPU
        has no quote of that kind or term (naming the kinds or terms it has, and the GPUs
        that have one).
    ValueError
        If ``term_years`` is given for a kind other than ``reserved``.

    Examples
    --------
    >>> p = default_gpu_price("h100-sxm")
    >>> p.usd_per_gpu_hour, p.provider
    (2.95, 'Nebius')
    >>> [default_gpu_price("l4", "reserved", term_years=t).usd_per_gpu_hour for t in (1, 3)]
    [0.4453, 0.3181]
    """
    if kind not in GPU_PRICE_KINDS:
        raise KeyError(
            f"unknown pricing kind {kind!r}; catalogue kinds: {', '.join(GPU_PRICE_KINDS)}"
        )
    if term_years is not None and kind != "reserved":
        raise ValueError(f"term_years applies to reserved prices only, not {kind}")
    name = get_gpu(gpu).name
    quotes = [p for p in gpu_prices(name) if p.kind == kind]
    if quotes and kind == "reserved":
        term = DEFAULT_RESERVED_TERM_YEARS if term_years is None else term_years
        terms = sorted({p.term_years for p in quotes if p.term_years is not None})
        quotes = [p for p in quotes if p.term_years == term]
        if not quotes:
            raise KeyError(
                f"no {term}-year reserved price for GPU {name!r} in the price catalogue; "
                f"terms priced: {', '.join(f'{t}-year' for t in terms)}. "
                "Give fleet.pricing.usd_per_gpu_hour explicitly."
            )
    if not quotes:
        have = sorted({p.kind for p in gpu_prices(name)})
        others = sorted({p.gpu for p in _gpu_table() if p.kind == kind})
        raise KeyError(
            f"no {kind} price for GPU {name!r} in the price catalogue; "
            f"kinds priced for {name}: {', '.join(have) or 'none'}; "
            f"GPUs with {kind} prices: {', '.join(others)}. "
            "Give fleet.pricing.usd_per_gpu_hour explicitly."
        )
    return min(quotes, key=_rank)  # min() keeps the first of equal ranks: file order


def api_price(key: str) -> ApiPrice:
    """Look up the per-token prices of a hosted model.

    Matching ignores case. The full key ``provider/model`` always works; the bare model
    name and LiteLLM's model id work when they name one entry.

    Parameters
    ----------
    key : str
        ``"openai/gpt-4o-mini"``, ``"gpt-4o-mini"``,
        ``"together_ai/meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo"``, ...

    Returns
    -------
    ApiPrice

    Raises
    ------
    KeyError
        If nothing matches (listing close matches), or a bare name is served by several
        providers (listing them).

    Examples
    --------
    >>> p = api_price("OpenAI/GPT-4o-mini")
    >>> p.key, p.usd_per_1m_input, p.usd_per_1m_output, p.usd_per_1m_cached_input
    ('openai/gpt-4o-mini', 0.15, 0.6, 0.075)
    >>> p.cache_ttl_s, p.cache_min_tokens, p.batch_discount
    (600, 1024, 0.5)
    """
    prices, names = _api_table()
    hits = names.get(key.strip().lower(), ())
    if len(hits) == 1:
        return prices[hits[0]]
    if len(hits) > 1:
        raise KeyError(f"API model {key!r} is ambiguous; use one of: {', '.join(hits)}")
    close = difflib.get_close_matches(key.strip().lower(), list(names), n=8, cutoff=0.6)
    suggestions = list(dict.fromkeys(k for name in close for k in names[name]))
    hint = (
        f"close matches: {', '.join(suggestions)}"
        if suggestions
        else "see sim.catalog.prices.list_api_models()"
    )
    raise KeyError(f"unknown API model {key!r}; {hint}")


def list_api_models() -> list[str]:
    """Keys of the API price catalogue (``provider/model``), in file order.

    Examples
    --------
    >>> "openai/gpt-4o-mini" in list_api_models()
    True
    """
    return list(_api_table()[0])
