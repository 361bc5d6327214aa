"""Cost accounting: what the fleet and the API cost over the measurement window, and per
month.

Pure, vectorised functions of the raw records of one replication (replica lifetimes and
busy times, one row per request) and the scenario's money sections; nothing here reads
files or draws random numbers. Every figure is exact arithmetic on those records, so tests
can check it by hand. The GPU bill lives in :mod:`sim.economics.gpu_bill`, the API side
(prices, per-request bills, provisioned fees, providers) in :mod:`sim.economics.apis`;
both are re-exported here.

Money is in USD, time in seconds unless a name says hours; "per month" means
``HOURS_PER_MONTH`` (730) hours, of which the scenario's ``calendar`` says how many the
measurement window stands for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sim.economics.apis import (
    ApiProviders,
    CacheTokens,
    api_bill,
    api_cache_tokens,
    provider_rows,
    provisioned_fee,
    resolve_api_prices,
)
from sim.economics.gpu_bill import (
    HOURS_PER_YEAR,
    FleetBill,
    ResolvedPricing,
    fleet_bill,
    idle_fleet_usd,
    peak_replicas,
    reserved_fleet_bill,
    resolve_gpu_hourly,
)
from sim.economics.spec import HOURS_PER_MONTH, ApiSpec, CalendarSpec, HiddenCostsSpec

__all__ = [
    "HOURS_PER_YEAR",
    "CacheTokens",
    "FleetBill",
    "ResolvedPricing",
    "api_bill",
    "api_cache_tokens",
    "cost_metrics",
    "fleet_bill",
    "hidden_costs",
    "idle_fleet_usd",
    "month_split",
    "peak_replicas",
    "provisioned_fee",
    "reserved_fleet_bill",
    "resolve_api_prices",
    "resolve_gpu_hourly",
]


def hidden_costs(spec: HiddenCostsSpec, window_s: float) -> dict[str, float]:
    """Non-GPU costs of running the fleet, prorated to a window of ``window_s`` seconds.

    ``ops_usd = ops_fte · fte_usd_per_year · window_s / (8760 · 3600)``;
    ``other_usd = (monitoring + storage_egress per month) · window_s / (730 · 3600)
    + model_updates_per_year · usd_per_model_update · window_s / (8760 · 3600)``.

    Parameters
    ----------
    spec : HiddenCostsSpec
        The scenario's ``costs:`` section.
    window_s : float
        Length of the window, seconds (≥ 0).

    Returns
    -------
    dict
        ``{"ops_usd": ..., "other_usd": ...}``.

    Examples
    --------
    >>> hidden_costs(HiddenCostsSpec(ops_fte=0.5, fte_usd_per_year=175_200.0,
    ...                              monitoring_usd_per_month=730.0), 3600.0)
    {'ops_usd': 10.0, 'other_usd': 1.0}
    """
    if not (math.isfinite(window_s) and window_s >= 0):
        raise ValueError(f"window_s must be finite and >= 0, got {window_s!r}")
    years = window_s / (HOURS_PER_YEAR * 3600.0)
    months = window_s / (HOURS_PER_MONTH * 3600.0)
    monthly = spec.monitoring_usd_per_month + spec.storage_egress_usd_per_month
    updates = spec.model_updates_per_year * spec.usd_per_model_update
    return {
        "ops_usd": spec.ops_fte * spec.fte_usd_per_year * years,
        "other_usd": monthly * months + updates * years,
    }


def _ratio(num: float, den: float, scale: float = 1.0) -> float:
    return num / den * scale if den > 0 else float("nan")


def _column(frame: pd.DataFrame, name: str, default: float | bool) -> NDArray[np.generic]:
    if name not in frame:
        return np.full(len(frame), default)
    values = frame[name]
    return values.fillna(default).to_numpy(dtype=type(default))


def month_split(calendar: CalendarSpec | None, span: float) -> tuple[float, float]:
    """``(scale, idle_s)``: what a window cost is multiplied by to stand for the month's
    active time, and the seconds of the month outside it (exactly 0 when the window stands
    for all time, so that monthly figures are then window figures × 730 h / window)."""
    cal = calendar if calendar is not None else CalendarSpec()
    month_s = HOURS_PER_MONTH * 3600.0
    active_s = month_s if cal.continuous else cal.active_hours_per_month * 3600.0
    return active_s / span, month_s - active_s


def cost_metrics(
    requests: pd.DataFrame,
    *,
    window: tuple[float, float],
    fleet: FleetBill | Sequence[FleetBill] | None,
    hidden: HiddenCostsSpec | None = None,
    api: ApiSpec | ApiProviders | None = None,
    api_batch: Mapping[str, bool] | None = None,
    calendar: CalendarSpec | None = None,
    idle_replicas: float | Sequence[float] = 0.0,
    cache_tokens: CacheTokens | None = None,
) -> dict[str, float]:
    """Cost metrics of one replication over the measurement window, and per month.

    **Requests counted**: those that *arrived* in ``[window[0], window[1])`` and
    *completed*. Rejected and failed requests are not billed by the API (a provider charges
    for answers, not for 429s) and appear in neither side of the comparison, so the
    savings are for the work actually delivered; read them with ``requests_rejected`` and
    ``slo_attainment``. Tokens are ``input_tokens`` (whole prompt, cached part included)
    and ``output_tokens``; ``cached_input_tokens`` (default 0) is the part of the prompt
    the API's cache served; ``api_provisioned`` (default False) marks requests served by
    provisioned throughput. Each request routed to the API is billed by its class's
    provider (``api`` as :class:`~sim.economics.apis.ApiProviders`), at that provider's
    prices and batch discount.

    **Prompt identity.** With ``cache_tokens`` (from :func:`api_cache_tokens`: each
    provider's cache replayed from the requests' prompt-block hashes), the cached and
    cache-write tokens come from the replay instead of ``cached_input_tokens``: the replay
    over the requests the API served for the bill of the run, the replay over every request
    of the provider's classes for the all-API bill. With an API, four metrics are added:
    ``api_cached_input_share`` and ``api_only_cached_input_share`` (cached ÷ input tokens
    of the counted requests billed), ``api_cache_savings_usd_per_month`` and
    ``api_only_cache_savings_usd_per_month`` (the bill with every input token at the input
    price minus the bill with the cache, × A/W; negative when write premiums outweigh the
    reads).

    **Per month.** With ``W`` the window, ``A`` the active seconds of a month
    (``calendar.active_hours_per_month · 3600``; ``M = 730 · 3600`` when the window stands
    for all time) and ``I = M − A`` the rest of the month: per-token API bills and the
    fleet's window bill (drain included) scale by ``A / W``; over ``I`` the month adds what
    runs around the clock — reserved and owned GPUs, the replicas kept running outside the
    active time (``idle_replicas``, see :func:`idle_fleet_usd`), the provisioned API fee
    and the hidden costs, which are thus billed for the whole month.

    =====================================  =========  =============================================
    name                                   unit       definition
    =====================================  =========  =============================================
    fleet_gpu_hours_paid                   GPU-h      GPU time billed and attributed to the window
                                                      and its drain
    fleet_gpu_hours_busy                   GPU-h      GPU time running batches inside the window
                                                      and its drain
    fleet_gpu_usd                          USD        what the paid GPU-hours cost
    fleet_gpu_busy_usd                     USD        fleet_gpu_usd × busy / paid GPU-hours
    fleet_gpu_idle_usd                     USD        fleet_gpu_usd − fleet_gpu_busy_usd
    fleet_drain_s                          s          after the window, until the window's last
                                                      request left the fleet (billed with the
                                                      window for capacity paid per lifetime)
    fleet_ops_usd                          USD        operations staff, prorated to the window
    fleet_other_usd                        USD        monitoring, storage/egress, model updates
    fleet_cost_usd                         USD        gpu + ops + other
    api_cost_usd                           USD        per-token bill of requests routed to the API
                                                      + provisioned fees (0 without an API)
    total_cost_usd                         USD        fleet_cost_usd + api_cost_usd
    api_only_cost_usd                      USD        every counted request, whatever its route,
                                                      priced pay-per-token at its class's provider
                                                      (batch discount for batch classes, no
                                                      provisioned throughput); NaN if a class
                                                      has no API
    savings_vs_api_usd                     USD        api_only_cost_usd − total_cost_usd
    fleet_cost_usd_per_month               USD/month  fleet_cost × A/W + (reserved and idle GPUs,
                                                      hidden costs) over I
    api_cost_usd_per_month                 USD/month  api_cost × A/W + provisioned fees over I
    total_cost_usd_per_month               USD/month  total × A/W + the same over I (= fleet +
                                                      API per month, up to round-off)
    api_only_cost_usd_per_month            USD/month  api_only × A/W
    savings_vs_api_usd_per_month           USD/month  api_only − total, per month
    api_cost_usd_per_month[<class>]        USD/month  per-token bill of the class's requests
                                                      routed to the API × A/W (more than one
                                                      class; fees not split by class)
    api_only_cost_usd_per_month[<class>]   USD/month  the class's all-API bill × A/W (NaN
                                                      without an API; more than one class)
    cost_per_request_usd                   USD        total ÷ counted requests
    cost_per_1m_input_tokens_usd           USD        total ÷ input tokens × 1e6 (the whole cost
                                                      charged to input: not a split)
    cost_per_1m_output_tokens_usd          USD        total ÷ output tokens × 1e6 (likewise)
    cost_per_1m_tokens_usd                 USD        total ÷ (input + output tokens) × 1e6:
                                                      blended, every token weighted equally
    api_only_cost_per_1m_tokens_usd        USD        api_only ÷ (input + output tokens) × 1e6
    savings_vs_api_per_1m_tokens_usd       USD        the difference of the two above
    self_host_cheaper                      0/1        1.0 if savings_vs_api_usd > 0 else 0.0
    =====================================  =========  =============================================


    Ratios with a zero denominator are NaN. Without an ``api`` the ``api_only_*``,
    ``savings_*`` and ``self_host_cheaper`` metrics are NaN (there is nothing to compare
    with) and ``api_cost_usd`` is 0.

    Parameters
    ----------
    requests : DataFrame
        One row per request: ``arrival_s``, ``class_name``, ``input_tokens``,
        ``output_tokens``, ``route`` (``"fleet"``/``"api"``), ``status``; optionally
        ``cached_input_tokens`` and ``api_provisioned``.
    window : (float, float), keyword-only
        ``(warmup_s, duration_s)``.
    fleet : FleetBill, sequence of FleetBill, or None, keyword-only
        From :func:`fleet_bill` or :func:`reserved_fleet_bill` over the same window; one
        per pool for a fleet of several (their sum is the fleet's); None for no fleet.
    hidden : HiddenCostsSpec, optional
        Non-GPU fleet costs; None for none.
    api : ApiSpec or ApiProviders, optional
        The hosted API every class uses, or each class's provider (per-class metrics are
        given for more than one class).
    api_batch : Mapping[str, bool], optional
        Class name → sent through the batch API (its provider's ``batch_discount`` applies).
    calendar : CalendarSpec, optional
        What the window stands for; default: all time.
    idle_replicas : float or sequence of float, keyword-only
        Replicas kept running outside the active time (see :func:`idle_fleet_usd`); one
        per bill when ``fleet`` is a sequence.
    cache_tokens : CacheTokens, keyword-only, optional
        The providers' caches replayed over these rows (:func:`api_cache_tokens`).

    Returns
    -------
    dict of str to float

    Raises
    ------
    ValueError
        If the fleet bill is for a window of another length, or requests were routed to
        the API by a class that has none.

    Examples
    --------
    >>> import pandas as pd
    >>> reqs = pd.DataFrame({"arrival_s": [10.0, 20.0], "class_name": ["chat", "chat"],
    ...     "input_tokens": [1000, 3000], "output_tokens": [500, 500],
    ...     "route": ["fleet", "api"], "status": ["completed", "completed"]})
    >>> p = ResolvedPricing(kind="on_demand", usd_per_gpu_hour=3.6)
    >>> bill = fleet_bill([[0, 100]], tp=1, pricing=p, window=(0, 100), busy_s=[50])
    >>> m = cost_metrics(reqs, window=(0, 100), fleet=bill,
    ...     api=ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=2.0))
    >>> [round(m[k], 6) for k in ("fleet_cost_usd", "api_cost_usd", "api_only_cost_usd")]
    [0.1, 0.004, 0.006]
    >>> round(m["savings_vs_api_usd"], 6), m["self_host_cheaper"]
    (-0.098, 0.0)

    The same 100 s standing for 1 hour on each of 20 days, the replica kept off otherwise:

    >>> m = cost_metrics(reqs, window=(0, 100), fleet=bill,
    ...     api=ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=2.0),
    ...     calendar=CalendarSpec(active_hours_per_day=1, active_days_per_month=20))
    >>> round(m["fleet_cost_usd_per_month"], 6), round(m["api_cost_usd_per_month"], 6)
    (72.0, 2.88)
    """
    w0, w1 = float(window[0]), float(window[1])
    span = w1 - w0
    if not span > 0:
        raise ValueError(f"window must have end > start, got {window!r}")
    bills = [] if fleet is None else [fleet] if isinstance(fleet, FleetBill) else list(fleet)
    idles = (
        [float(idle_replicas)] * len(bills)
        if isinstance(idle_replicas, int | float)
        else [float(v) for v in idle_replicas]
    )
    if len(idles) != len(bills):
        raise ValueError("idle_replicas must hold one count per fleet bill")
    for b in bills:
        if not math.isclose(b.window_s, span, rel_tol=1e-9):
            raise ValueError(f"fleet bill is for a {b.window_s} s window, not {span} s")
    arrival = requests["arrival_s"].to_numpy(dtype=np.float64)
    counted = (arrival >= w0) & (arrival < w1) & (requests["status"] == "completed").to_numpy()
    # the counted rows of the columns billed (no copy of the table); classes by code
    inp = requests["input_tokens"].to_numpy()[counted].astype(np.float64)
    out = requests["output_tokens"].to_numpy()[counted].astype(np.float64)
    cached = _column(requests, "cached_input_tokens", 0.0)[counted].astype(np.float64)
    prov = _column(requests, "api_provisioned", False)[counted].astype(bool)
    to_api = (requests["route"] == "api").to_numpy(dtype=bool)[counted]
    classes = requests["class_name"].astype("category")
    cats = np.asarray(classes.cat.categories.astype(str), dtype=object)
    codes = classes.cat.codes.to_numpy()[counted]
    batch_classes = [name for name, flag in (api_batch or {}).items() if flag]
    batch = np.isin(cats, batch_classes)[codes]
    # a row may stand for several requests with the same class, route and provisioning
    # (their token counts summed: every bill here is linear in them)
    n_counted = float(_column(requests, "n_requests", 1)[counted].sum())

    gpu = float(sum(b.gpu_usd for b in bills))
    extra = hidden_costs(hidden, span) if hidden is not None else {"ops_usd": 0.0, "other_usd": 0.0}
    fleet_cost = gpu + extra["ops_usd"] + extra["other_usd"]
    nan = float("nan")
    providers, used, rows = provider_rows(api, codes, cats)
    served = np.zeros(len(codes), dtype=bool)
    for r in rows.values():
        served |= r
    if (to_api & ~served).any():
        raise ValueError(
            "requests were routed to the API but their class has no API "
            "(no 'api' section, api_model or apis entry)"
        )

    none = np.zeros(len(codes))
    cached_r, write_r, cached_a, write_a = cached, none, cached, none
    if cache_tokens is not None:
        if any(len(a) != len(requests) for a in cache_tokens):
            raise ValueError("cache_tokens must hold one entry per request row")
        cached_r, write_r, cached_a, write_a = (
            np.asarray(a)[counted].astype(np.float64) for a in cache_tokens
        )

    def bill(spec: ApiSpec, r: NDArray[np.bool_], cache: bool = True) -> tuple[float, float]:
        # (per-token bill of the rows routed to the API, all-API bill of the rows); without
        # `cache`, every input token at the input price
        prices = resolve_api_prices(spec)
        r_api = to_api & r
        routed = api_bill(
            inp[r_api],
            cached_r[r_api] if cache else none[r_api],
            out[r_api],
            prices=prices,
            batch=batch[r_api],
            batch_discount=spec.batch_discount,
            provisioned=prov[r_api],
            cache_write_tokens=write_r[r_api] if cache else None,
        )
        everything = api_bill(
            inp[r],
            cached_a[r] if cache else none[r],
            out[r],
            prices=prices,
            batch=batch[r],
            batch_discount=spec.batch_discount,
            cache_write_tokens=write_a[r] if cache else None,
        )
        return float(routed.sum()), float(everything.sum())

    api_cost, api_only = 0.0, 0.0
    for name in used:
        routed_usd, all_usd = bill(providers.specs[name], rows[name])
        api_cost += routed_usd + provisioned_fee(providers.specs[name], span)
        api_only += all_usd
    if not used or not providers.complete:
        api_only = nan
    total = fleet_cost + api_cost
    savings = api_only - total
    scale, idle_s = month_split(calendar, span)
    fleet_month, api_month = fleet_cost * scale, api_cost * scale
    total_month, savings_month = total * scale, savings * scale
    if idle_s > 0:
        # what runs around the clock, over the part of the month without traffic
        fleet_idle = float(
            sum(
                idle_fleet_usd(b, idle_replicas=k, idle_s=idle_s)
                for b, k in zip(bills, idles, strict=True)
            )
        )
        if hidden is not None:
            fleet_idle += sum(hidden_costs(hidden, idle_s).values())
        fees = sum(provisioned_fee(providers.specs[name], idle_s) for name in used)
        fleet_month += fleet_idle
        api_month += fees
        total_month += fleet_idle + fees
        savings_month -= fleet_idle + fees
    tokens_in, tokens_out = float(inp.sum()), float(out.sum())
    tokens = tokens_in + tokens_out
    metrics = {
        "fleet_gpu_hours_paid": float(sum(b.gpu_hours_paid for b in bills)),
        "fleet_gpu_hours_busy": float(sum(b.gpu_hours_busy for b in bills)),
        "fleet_gpu_usd": gpu,
        "fleet_gpu_busy_usd": float(sum(b.gpu_busy_usd for b in bills)),
        "fleet_gpu_idle_usd": float(sum(b.gpu_idle_usd for b in bills)),
        "fleet_drain_s": max((b.drain_s for b in bills), default=0.0),
        "fleet_ops_usd": extra["ops_usd"],
        "fleet_other_usd": extra["other_usd"],
        "fleet_cost_usd": fleet_cost,
        "api_cost_usd": api_cost,
        "total_cost_usd": total,
        "api_only_cost_usd": api_only,
        "savings_vs_api_usd": savings,
        "savings_vs_api_usd_per_month": savings_month,
        "total_cost_usd_per_month": total_month,
        "api_only_cost_usd_per_month": api_only * scale,
        "fleet_cost_usd_per_month": fleet_month,
        "api_cost_usd_per_month": api_month,
        "cost_per_request_usd": _ratio(total, n_counted),
        "cost_per_1m_input_tokens_usd": _ratio(total, tokens_in, 1e6),
        "cost_per_1m_output_tokens_usd": _ratio(total, tokens_out, 1e6),
        "cost_per_1m_tokens_usd": _ratio(total, tokens, 1e6),
        "api_only_cost_per_1m_tokens_usd": _ratio(api_only, tokens, 1e6),
        "savings_vs_api_per_1m_tokens_usd": _ratio(savings, tokens, 1e6),
        "self_host_cheaper": nan if math.isnan(savings) else float(savings > 0),
    }
    if cache_tokens is not None and used:
        saved = [bill(providers.specs[name], rows[name], cache=False) for name in used]
        routed_in = inp[to_api].sum()
        metrics["api_cached_input_share"] = _ratio(float(cached_r[to_api].sum()), routed_in)
        metrics["api_only_cached_input_share"] = _ratio(float(cached_a.sum()), inp.sum())
        no_cache = sum(s[0] for s in saved) + sum(
            provisioned_fee(providers.specs[n], span) for n in used
        )
        metrics["api_cache_savings_usd_per_month"] = (no_cache - api_cost) * scale
        only = sum(s[1] for s in saved) if providers.complete else nan
        metrics["api_only_cache_savings_usd_per_month"] = (only - api_only) * scale
    if isinstance(api, ApiProviders) and len(providers.of_class) > 1:
        for cls in providers.of_class:
            spec = providers.spec_of(cls)
            rows_c = np.isin(cats, [cls])[codes]
            routed_c, only_c = (0.0, nan) if spec is None else bill(spec, rows_c)
            metrics[f"api_cost_usd_per_month[{cls}]"] = routed_c * scale
            metrics[f"api_only_cost_usd_per_month[{cls}]"] = only_c * scale
    return metrics
