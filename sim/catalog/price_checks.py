"""Sanity rules for a price catalogue, and flags for stale or weak quotes.

:func:`check_catalogue` applies the rules that compare rows with each other (the loader in
:mod:`sim.catalog.prices` already checks each row on its own); the shipped catalogue must
pass them, and any catalogue can be checked the same way. :func:`price_flags` says why one
quote needs checking before its answer is trusted: it is old, undated, or of low confidence.

The rules (``SOURCES.md`` gives the reasons):

1. **Coverage.** Every catalog GPU has at least one ``on_demand`` quote, so the default
   fleet price always exists.
2. **Commitments pay.** Every ``reserved`` quote is below the cheapest ``on_demand`` quote of
   the same GPU *at the same provider*; where that provider sells the GPU on demand nowhere
   in the catalogue, below the cheapest ``on_demand`` quote of the GPU at any provider.
   A longer term of the same provider and instance is not dearer than a shorter one.
3. **Spot is not dearer than on-demand**, compared the same way as rule 2.
4. **No outlier API price.** An open-weight model on a gateway costs at least
   :data:`API_OUTPUT_FLOOR_USD_PER_1M_PER_B` per 1M output tokens per billion active
   parameters (about a quarter of what decoding costs on a fully batched 8 x H100 FP8 node
   at ~$2 per GPU-hour; the cheapest offer in the 2026-12-01 data, Llama 3.1 405B FP8 at
   $0.80, is twice the floor). A lower price is a placeholder or a mistyped row: the old
   catalogue's $0.30 for a 405B model is a third of the floor.
5. **Cache writes are not discounted.** A cache-write price is at least the input price
   (providers charge a premium for writes, or nothing extra); a lower one is a cached-read
   price in the wrong column.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence

from sim.catalog._load import list_gpus
from sim.catalog.prices import ApiPrice, GpuPrice, _api_table, gpu_prices

__all__ = [
    "API_OUTPUT_FLOOR_USD_PER_1M_PER_B",
    "STALE_AFTER_MONTHS",
    "WEAK_CONFIDENCE",
    "check_catalogue",
    "price_flags",
    "quote_day",
]

API_OUTPUT_FLOOR_USD_PER_1M_PER_B = 0.001
"""Lowest sane price of an open-weight model's output: USD per 1M tokens per billion active
parameters ($1 per 1M tokens for a trillion active parameters)."""

STALE_AFTER_MONTHS = 6
"""A quote older than this many months (before the report's ``as_of`` date) is flagged."""

WEAK_CONFIDENCE = ("low-medium", "low")
"""Confidence levels that get a quote flagged."""


def check_catalogue(
    gpu: Sequence[GpuPrice] | None = None,
    api: Iterable[ApiPrice] | None = None,
    *,
    gpus: Iterable[str] | None = None,
) -> list[str]:
    """The problems of a price catalogue under the rules of this module; empty when sane.

    Parameters
    ----------
    gpu : sequence of GpuPrice, optional
        GPU quotes; default the shipped ``prices_gpu.csv``.
    api : iterable of ApiPrice, optional
        API prices; default the shipped ``prices_api.csv``.
    gpus : iterable of str, keyword-only, optional
        GPU names that must have an on-demand quote; default every catalog GPU.

    Returns
    -------
    list of str
        One line per broken rule and row, naming the row and the price it was compared with.

    Examples
    --------
    >>> check_catalogue()
    []
    >>> bad = ApiPrice("x/405b", 0.12, 0.3, None, "", "", params_b=405, active_params_b=405)
    >>> check_catalogue(api=[bad])
    ['x/405b: $0.3 per 1M output tokens is below the floor $0.405 (405B active parameters ...)']
    """
    quotes = list(gpu_prices()) if gpu is None else list(gpu)
    rows = list(_api_table()[0].values()) if api is None else list(api)
    wanted = list_gpus() if gpus is None else list(gpus)
    return (
        _coverage(quotes, wanted)
        + _below_on_demand(quotes)
        + _terms(quotes)
        + _floor(rows)
        + _cache_writes(rows)
    )


def _coverage(quotes: Sequence[GpuPrice], wanted: Iterable[str]) -> list[str]:
    have = {q.gpu for q in quotes if q.kind == "on_demand"}
    return [f"{name}: no on_demand quote" for name in wanted if name not in have]


def _label(q: GpuPrice) -> str:
    term = f" {q.term_years}-year" if q.term_years is not None else ""
    return f"{q.gpu} {q.kind}{term} at {q.provider} {q.sku}".rstrip()


def _below_on_demand(quotes: Sequence[GpuPrice]) -> list[str]:
    problems: list[str] = []
    on_demand = [q for q in quotes if q.kind == "on_demand"]
    for q in quotes:
        if q.kind == "on_demand":
            continue
        same = [o for o in on_demand if o.gpu == q.gpu and o.provider == q.provider]
        where = f"cheapest on-demand at {q.provider}"
        if not same:
            same = [o for o in on_demand if o.gpu == q.gpu]
            where = "cheapest on-demand anywhere"
        if not same:
            continue  # no on-demand quote at all: the coverage rule reports it
        ref = min(same, key=lambda o: o.usd_per_gpu_hour)
        bad = (
            q.usd_per_gpu_hour >= ref.usd_per_gpu_hour
            if q.kind == "reserved"
            else q.usd_per_gpu_hour > ref.usd_per_gpu_hour
        )
        if bad:
            relation = "not below" if q.kind == "reserved" else "above"
            problems.append(
                f"{_label(q)}: ${q.usd_per_gpu_hour:g} per GPU-hour is {relation} the {where} "
                f"(${ref.usd_per_gpu_hour:g}, {ref.provider} {ref.sku})"
            )
    return problems


def _terms(quotes: Sequence[GpuPrice]) -> list[str]:
    problems: list[str] = []
    reserved = [q for q in quotes if q.kind == "reserved" and q.term_years is not None]
    for longer in reserved:
        for shorter in reserved:
            if (
                (longer.gpu, longer.provider, longer.sku)
                == (shorter.gpu, shorter.provider, shorter.sku)
                and longer.term_years is not None
                and shorter.term_years is not None
                and longer.term_years > shorter.term_years
                and longer.usd_per_gpu_hour > shorter.usd_per_gpu_hour
            ):
                problems.append(
                    f"{_label(longer)}: ${longer.usd_per_gpu_hour:g} is dearer than the "
                    f"{shorter.term_years}-year term (${shorter.usd_per_gpu_hour:g})"
                )
    return problems


def _floor(rows: Iterable[ApiPrice]) -> list[str]:
    problems: list[str] = []
    for p in rows:
        active = p.active_params_b if p.active_params_b is not None else p.params_b
        if active is None:
            continue  # closed model, or size unknown: no floor
        floor = API_OUTPUT_FLOOR_USD_PER_1M_PER_B * active
        if p.usd_per_1m_output < floor:
            problems.append(
                f"{p.key}: ${p.usd_per_1m_output:g} per 1M output tokens is below the floor "
                f"${floor:.3g} ({active:g}B active parameters x "
                f"${API_OUTPUT_FLOOR_USD_PER_1M_PER_B:g})"
            )
    return problems


def _cache_writes(rows: Iterable[ApiPrice]) -> list[str]:
    return [
        f"{p.key}: cache-write price ${p.cache_write_usd_per_1m:g} is below the input price "
        f"${p.usd_per_1m_input:g}"
        for p in rows
        if p.cache_write_usd_per_1m is not None and p.cache_write_usd_per_1m < p.usd_per_1m_input
    ]


# --- stale and weak quotes -----------------------------------------------------------------

_DATE = re.compile(r"(?<!\d)((?:19|20)\d\d)(?:-(\d\d)(?:-(\d\d))?)?(?!\d)")


def quote_day(text: str) -> dt.date | None:
    """The day a quote's date text stands for; None when it names no date.

    Quote dates are free text (``"snapshot read 2026-12-01"``, ``"2023-07..2025-06"``,
    ``"2026"``). The latest date named is used, and a date given only to the month or year
    is read as its first day: the earliest it can mean, so an imprecise date is flagged as
    stale sooner rather than later.

    Examples
    --------
    >>> quote_day("snapshot read 2026-12-01"), quote_day("2023-07..2025-06"), quote_day("2026")
    (datetime.date(2026, 12, 1), datetime.date(2025, 6, 1), datetime.date(2026, 1, 1))
    >>> quote_day("undated") is None
    True
    """
    days = []
    for year, month, day in _DATE.findall(text):
        try:
            days.append(dt.date(int(year), int(month or 1), int(day or 1)))
        except ValueError:
            continue  # not a calendar date (e.g. month 13): ignore it
    return max(days) if days else None


def _months_before(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 - months
    year, month = divmod(index, 12)
    # clamp the day to the target month (31 March - 1 month -> 28/29 February)
    for d in (day.day, 30, 29, 28):
        try:
            return dt.date(year, month + 1, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


def price_flags(date: str, confidence: str = "", *, as_of: dt.date | None = None) -> list[str]:
    """Why a price quote should be checked before its answer is trusted; empty if it is fine.

    A quote is flagged when it names no date, when its date (:func:`quote_day`) is more than
    :data:`STALE_AFTER_MONTHS` months before ``as_of``, or when its confidence is one of
    :data:`WEAK_CONFIDENCE`.

    Parameters
    ----------
    date : str
        The quote's date as written (catalogue ``quote_date`` or scenario ``price_date``).
    confidence : str, optional
        The quote's confidence level; empty when unknown (a scenario's own price).
    as_of : datetime.date, keyword-only, optional
        The day the prices are judged on; default today.

    Examples
    --------
    >>> import datetime as dt
    >>> price_flags("2026-11-27", "high", as_of=dt.date(2026, 12, 1))
    []
    >>> price_flags("2026", "low", as_of=dt.date(2026, 12, 1))
    ['quoted 2026, more than 6 months before 2026-12-01', 'low confidence']
    >>> price_flags("", as_of=dt.date(2026, 12, 1))
    ['no quote date']
    """
    today = dt.date.today() if as_of is None else as_of
    flags: list[str] = []
    day = quote_day(date)
    if day is None:
        flags.append("no quote date" if not date.strip() else f"no date in {date.strip()!r}")
    elif day < _months_before(today, STALE_AFTER_MONTHS):
        flags.append(f"quoted {date.strip()}, more than {STALE_AFTER_MONTHS} months before {today}")
    if confidence in WEAK_CONFIDENCE:
        flags.append(f"{confidence} confidence")
    return flags
