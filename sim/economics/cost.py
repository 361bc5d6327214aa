"""Cost accounting: what the fleet and the API cost over the measurement window.

Pure, vectorised functions of the raw records of one replication (replica lifetimes and
busy times, one row per request) and the scenario's money sections; nothing here reads
files or draws random numbers. Every figure is exact arithmetic on those records, so tests
can check it by hand.

Money is in USD, time in seconds unless a name says hours; "per month" means
``HOURS_PER_MONTH`` (730) hours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from sim.catalog import GpuSpec
from sim.catalog.prices import ApiPrice, api_price, default_gpu_price
from sim.economics.spec import (
    HOURS_PER_MONTH,
    ApiSpec,
    CapacityKind,
    HiddenCostsSpec,
    PricingSpec,
    ProvisionedSpec,
)

__all__ = [
    "HOURS_PER_YEAR",
    "FleetBill",
    "ResolvedPricing",
    "api_bill",
    "cost_metrics",
    "fleet_bill",
    "hidden_costs",
    "provisioned_fee",
    "resolve_api_prices",
    "resolve_gpu_hourly",
]

HOURS_PER_YEAR = 8760.0
# A lifetime within this fraction of a billing increment of a boundary is on the boundary:
# float round-off (3600.1 - 0.1 = 3600.0000000000005) must not bill a whole extra period.
_ROUND_OFF = 1e-9
_EMPTY: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True)
class ResolvedPricing:
    """The hourly price of one GPU and how it is billed, ready for :func:`fleet_bill`.

    Attributes
    ----------
    kind : {"on_demand", "reserved", "spot", "owned"}
        ``reserved`` and ``owned`` capacity is paid for the whole window; the others per
        replica lifetime.
    usd_per_gpu_hour : float
        Price of one GPU for one hour.
    billing_increment_s : float
        A lifetime is rounded up to a whole number of these.
    min_billable_s : float
        Shortest billed lifetime.
    source, date : str
        Where the price comes from and when it held.
    breakdown : Mapping[str, float]
        Owned capacity only: ``capex_usd_per_gpu_hour``, ``power_usd_per_gpu_hour``,
        ``hosting_usd_per_gpu_hour`` (they sum to ``usd_per_gpu_hour``); empty otherwise.
    """

    kind: CapacityKind
    usd_per_gpu_hour: float
    billing_increment_s: float = 1.0
    min_billable_s: float = 0.0
    source: str = ""
    date: str = ""
    breakdown: Mapping[str, float] = field(default_factory=lambda: _EMPTY, hash=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.usd_per_gpu_hour) and self.usd_per_gpu_hour >= 0):
            raise ValueError(f"usd_per_gpu_hour must be finite and >= 0: {self.usd_per_gpu_hour}")
        if not (math.isfinite(self.billing_increment_s) and self.billing_increment_s > 0):
            raise ValueError(f"billing_increment_s must be > 0: {self.billing_increment_s}")
        if not (math.isfinite(self.min_billable_s) and self.min_billable_s >= 0):
            raise ValueError(f"min_billable_s must be >= 0: {self.min_billable_s}")


@dataclass(frozen=True)
class FleetBill:
    """GPU cost of a fleet attributed to the measurement window.

    Attributes
    ----------
    gpu_hours_paid : float
        GPU-hours billed and attributed to the window (see :func:`fleet_bill`).
    gpu_hours_busy : float
        GPU-hours a replica was running a batch inside the window: Σ busy_s · tp / 3600.
    gpu_usd : float
        ``gpu_hours_paid · usd_per_gpu_hour``.
    gpu_busy_usd : float
        ``gpu_usd · gpu_hours_busy / gpu_hours_paid``: the share of the bill that did work.
    gpu_idle_usd : float
        ``gpu_usd − gpu_busy_usd``.
    window_s : float
        Length of the window the bill is for.
    kind : str
        Pricing kind.
    usd_per_gpu_hour : float
        Price used.
    """

    gpu_hours_paid: float
    gpu_hours_busy: float
    gpu_usd: float
    gpu_busy_usd: float
    gpu_idle_usd: float
    window_s: float
    kind: str
    usd_per_gpu_hour: float


def resolve_gpu_hourly(pricing: PricingSpec | None, gpu: GpuSpec) -> ResolvedPricing:
    """Turn the scenario's ``fleet.pricing`` into one hourly price per GPU.

    Rented capacity (``on_demand``, ``spot``, ``reserved``) uses ``usd_per_gpu_hour`` when
    given, otherwise the catalogue's default quote for the GPU and kind
    (:func:`sim.catalog.prices.default_gpu_price`). Owned capacity costs straight-line
    depreciation plus power plus hosting, per GPU-hour::

        capex / (life_years · 8760) + power_w · pue · usd_per_kwh / 1000
            + hosting_usd_per_gpu_month / 730

    with ``power_w`` the GPU's TDP unless ``power_w_per_gpu`` is given (an average draw at
    full power: conservative).

    Parameters
    ----------
    pricing : PricingSpec or None
        None means catalogue on-demand pricing.
    gpu : GpuSpec
        The fleet's GPU.

    Returns
    -------
    ResolvedPricing

    Raises
    ------
    KeyError
        If the catalogue has no price of that kind for the GPU (give one explicitly).
    ValueError
        If owned capacity is given a ``usd_per_gpu_hour`` (it is computed), or needs the
        TDP and the GPU has none.

    Examples
    --------
    >>> from sim.catalog import get_gpu
    >>> resolve_gpu_hourly(None, get_gpu("h100-sxm")).usd_per_gpu_hour
    3.29
    >>> owned = PricingSpec(kind="owned", capex_usd_per_gpu=35040.0, life_years=4.0,
    ...                     pue=1.25, usd_per_kwh=0.1)
    >>> r = resolve_gpu_hourly(owned, get_gpu("h100-sxm"))  # 700 W TDP
    >>> round(r.usd_per_gpu_hour, 6), round(r.breakdown["power_usd_per_gpu_hour"], 6)
    (1.0875, 0.0875)
    """
    spec = pricing if pricing is not None else PricingSpec()
    if spec.kind == "owned":
        if spec.usd_per_gpu_hour is not None:
            raise ValueError(
                "fleet.pricing.usd_per_gpu_hour is not used for owned capacity "
                "(it is computed from capex, power and hosting); remove it"
            )
        power_w = spec.power_w_per_gpu if spec.power_w_per_gpu is not None else gpu.tdp_w
        if power_w is None:
            raise ValueError(f"GPU {gpu.name!r} has no TDP: give fleet.pricing.power_w_per_gpu")
        assert spec.capex_usd_per_gpu is not None  # guaranteed by PricingSpec's validator
        parts = {
            "capex_usd_per_gpu_hour": spec.capex_usd_per_gpu / (spec.life_years * HOURS_PER_YEAR),
            "power_usd_per_gpu_hour": power_w * spec.pue * spec.usd_per_kwh / 1000.0,
            "hosting_usd_per_gpu_hour": spec.hosting_usd_per_gpu_month / HOURS_PER_MONTH,
        }
        return ResolvedPricing(
            kind="owned",
            usd_per_gpu_hour=sum(parts.values()),
            source=spec.price_source or "owned: capex + power + hosting",
            date=spec.price_date,
            breakdown=MappingProxyType(parts),
            billing_increment_s=spec.billing_increment_s,
            min_billable_s=spec.min_billable_s,
        )
    if spec.usd_per_gpu_hour is not None:
        return ResolvedPricing(
            kind=spec.kind,
            usd_per_gpu_hour=spec.usd_per_gpu_hour,
            source=spec.price_source or "scenario",
            date=spec.price_date,
            billing_increment_s=spec.billing_increment_s,
            min_billable_s=spec.min_billable_s,
        )
    quote = default_gpu_price(gpu.name, spec.kind)
    return ResolvedPricing(
        kind=spec.kind,
        usd_per_gpu_hour=quote.usd_per_gpu_hour,
        source=spec.price_source or f"{quote.provider} {quote.sku} ({quote.source})",
        date=spec.price_date or quote.quote_date,
        billing_increment_s=spec.billing_increment_s,
        min_billable_s=spec.min_billable_s,
    )


def fleet_bill(
    lifetimes_s: ArrayLike,
    *,
    tp: int,
    pricing: ResolvedPricing,
    window: tuple[float, float],
    busy_s: ArrayLike,
) -> FleetBill:
    """GPU bill of a fleet attributed to the window ``[window[0], window[1])``.

    Per replica (``tp`` GPUs), billed by lifetime (``on_demand``, ``spot``):

    - billed time = ``max(ceil((end − start) / increment) · increment, min_billable_s)``;
    - attributed to the window = billed time × overlap([start, end], window) / (end − start).

    The proration spreads the rounding and the minimum evenly over the lifetime, so bills of
    consecutive windows add up to the whole bill; a replica of zero lifetime is attributed
    to the window its start lies in. ``reserved`` and ``owned`` capacity is paid for the
    whole window for every replica (row), whatever its lifetime.

    Parameters
    ----------
    lifetimes_s : array_like, shape (n_replicas, 2)
        Start and end of each replica's life (start ≤ end, finite; the end of the run for a
        replica still alive).
    tp : int, keyword-only
        GPUs per replica.
    pricing : ResolvedPricing, keyword-only
        From :func:`resolve_gpu_hourly`.
    window : (float, float), keyword-only
        Measurement window, usually ``(warmup_s, duration_s)``.
    busy_s : array_like, shape (n_replicas,), keyword-only
        Seconds each replica ran a batch inside the window (at most its overlap).

    Returns
    -------
    FleetBill

    Raises
    ------
    ValueError
        On bad shapes, an empty window, end < start, or busy time outside [0, overlap].

    Examples
    --------
    Two replicas billed per started hour, one alive 90 minutes, one 10 minutes:

    >>> p = ResolvedPricing(kind="on_demand", usd_per_gpu_hour=2.0, billing_increment_s=3600)
    >>> b = fleet_bill([[0, 5400], [0, 600]], tp=1, pricing=p, window=(0, 5400),
    ...                busy_s=[3000, 600])
    >>> b.gpu_hours_paid, b.gpu_usd, b.gpu_busy_usd, b.gpu_idle_usd
    (3.0, 6.0, 2.0, 4.0)
    """
    life = np.asarray(lifetimes_s, dtype=np.float64)
    if life.ndim != 2 or life.shape[1] != 2:
        raise ValueError(f"lifetimes_s must have shape (n_replicas, 2), got {life.shape}")
    busy = np.asarray(busy_s, dtype=np.float64)
    if busy.shape != (life.shape[0],):
        raise ValueError(f"busy_s must have shape ({life.shape[0]},), got {busy.shape}")
    if isinstance(tp, bool) or int(tp) != tp or tp < 1:
        raise ValueError(f"tp must be an integer >= 1, got {tp!r}")
    w0, w1 = float(window[0]), float(window[1])
    if not (math.isfinite(w0) and math.isfinite(w1) and w1 > w0):
        raise ValueError(f"window must be finite with end > start, got {window!r}")
    start, end = life[:, 0], life[:, 1]
    if not np.all(np.isfinite(life)) or np.any(end < start):
        raise ValueError("lifetimes must be finite with end >= start")
    overlap = np.clip(np.minimum(end, w1) - np.maximum(start, w0), 0.0, None)
    if np.any(busy < 0) or np.any(busy > overlap * (1 + _ROUND_OFF) + _ROUND_OFF):
        raise ValueError("busy_s must lie in [0, overlap of the replica's life with the window]")
    span = w1 - w0
    if pricing.kind in ("reserved", "owned"):
        paid_s = np.full(life.shape[0], span)
    else:
        length = end - start
        inc = pricing.billing_increment_s
        periods = np.maximum(np.ceil(length / inc - _ROUND_OFF), 0.0)
        billed = np.maximum(periods * inc, pricing.min_billable_s)
        starts_inside = ((start >= w0) & (start < w1)).astype(np.float64)
        share = np.divide(overlap, length, out=starts_inside, where=length > 0)
        paid_s = billed * share
    hours_paid = float(paid_s.sum()) * tp / 3600.0
    hours_busy = float(busy.sum()) * tp / 3600.0
    gpu_usd = hours_paid * pricing.usd_per_gpu_hour
    # min(1, ·): the round-off allowance above can bill a hair less than the lifetime
    busy_usd = gpu_usd * min(1.0, hours_busy / hours_paid) if hours_paid > 0 else 0.0
    return FleetBill(
        gpu_hours_paid=hours_paid,
        gpu_hours_busy=hours_busy,
        gpu_usd=gpu_usd,
        gpu_busy_usd=busy_usd,
        gpu_idle_usd=gpu_usd - busy_usd,
        window_s=span,
        kind=pricing.kind,
        usd_per_gpu_hour=pricing.usd_per_gpu_hour,
    )


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


def resolve_api_prices(spec: ApiSpec) -> ApiPrice:
    """Per-token prices of the scenario's API: the catalogue entry, explicit fields winning.

    The cached-input price falls back to the catalogue's, then to the input price (no
    prompt-cache discount) when neither is known.

    Examples
    --------
    >>> p = resolve_api_prices(ApiSpec(model="together_ai/Meta-Llama-3.1-8B-Instruct-Turbo"))
    >>> p.usd_per_1m_input, p.usd_per_1m_cached_input
    (0.18, 0.18)
    >>> resolve_api_prices(ApiSpec(model="gpt-4o-mini", usd_per_1m_output=0.5)).usd_per_1m_output
    0.5
    """
    base = api_price(spec.model) if spec.model is not None else None
    p_in = spec.usd_per_1m_input if spec.usd_per_1m_input is not None else None
    p_out = spec.usd_per_1m_output if spec.usd_per_1m_output is not None else None
    p_cached = spec.usd_per_1m_cached_input
    if base is not None:
        p_in = base.usd_per_1m_input if p_in is None else p_in
        p_out = base.usd_per_1m_output if p_out is None else p_out
        p_cached = base.usd_per_1m_cached_input if p_cached is None else p_cached
    assert p_in is not None and p_out is not None  # guaranteed by ApiSpec's validator
    return ApiPrice(
        key=base.key if base is not None else "custom",
        usd_per_1m_input=p_in,
        usd_per_1m_output=p_out,
        usd_per_1m_cached_input=p_in if p_cached is None else p_cached,
        source=spec.price_source or (base.source if base is not None else "scenario"),
        quote_date=spec.price_date or (base.quote_date if base is not None else ""),
        confidence=base.confidence if base is not None else "",
    )


def api_bill(
    input_tokens: ArrayLike,
    cached_input_tokens: ArrayLike,
    output_tokens: ArrayLike,
    *,
    prices: ApiPrice,
    batch: ArrayLike | None = None,
    batch_discount: float = 0.0,
    provisioned: ArrayLike | None = None,
) -> NDArray[np.float64]:
    """Pay-per-token price of each request, USD.

    ``((input − cached) · p_in + cached · p_cached + output · p_out) / 1e6``, times
    ``1 − batch_discount`` for requests sent through the batch API; 0 for requests served
    under provisioned throughput (their cost is the hourly :func:`provisioned_fee`).
    ``input_tokens`` is the whole prompt, of which ``cached_input_tokens`` hit the cache.

    Parameters
    ----------
    input_tokens, cached_input_tokens, output_tokens : array_like
        Per request, same length; 0 ≤ cached ≤ input.
    prices : ApiPrice, keyword-only
        A missing cached-input price means the input price.
    batch : array_like of bool, optional
        Requests sent through the batch API.
    batch_discount : float, keyword-only
        Fraction off for batch requests, in [0, 1).
    provisioned : array_like of bool, optional
        Requests served under provisioned throughput.

    Returns
    -------
    ndarray of float64

    Examples
    --------
    >>> p = ApiPrice("x/y", 1.0, 4.0, 0.5, "", "")
    >>> api_bill([1000, 1000, 1000], [400, 0, 0], [100, 100, 100], prices=p,
    ...          batch=[False, True, False], batch_discount=0.5,
    ...          provisioned=[False, False, True]).tolist()
    [0.0012, 0.0007, 0.0]
    """
    inp = np.asarray(input_tokens, dtype=np.float64)
    cached = np.asarray(cached_input_tokens, dtype=np.float64)
    out = np.asarray(output_tokens, dtype=np.float64)
    if not inp.shape == cached.shape == out.shape:
        raise ValueError("input, cached input and output token arrays must have the same shape")
    if np.any(out < 0) or np.any(cached < 0) or np.any(cached > inp):
        raise ValueError("token counts must be >= 0 with cached_input_tokens <= input_tokens")
    if not 0.0 <= batch_discount < 1.0:
        raise ValueError(f"batch_discount must be in [0, 1), got {batch_discount!r}")
    p_cached = prices.usd_per_1m_cached_input
    p_cached = prices.usd_per_1m_input if p_cached is None else p_cached
    usd = (
        (inp - cached) * prices.usd_per_1m_input
        + cached * p_cached
        + out * prices.usd_per_1m_output
    ) / 1e6
    if batch is not None:
        usd = np.where(np.asarray(batch, dtype=bool), usd * (1.0 - batch_discount), usd)
    if provisioned is not None:
        usd = np.where(np.asarray(provisioned, dtype=bool), 0.0, usd)
    return usd


def provisioned_fee(spec: ApiSpec | ProvisionedSpec | None, window_s: float) -> float:
    """Fee of provisioned API throughput over a window: ``usd_per_hour · window_s / 3600``.

    0 when the API (or ``spec``) has no provisioned throughput. The fee is owed whether or
    not any request used the capacity.

    Examples
    --------
    >>> provisioned_fee(ProvisionedSpec(usd_per_hour=12.0, tokens_per_s=1000), 1800.0)
    6.0
    """
    prov = spec.provisioned if isinstance(spec, ApiSpec) else spec
    return 0.0 if prov is None else prov.usd_per_hour * window_s / 3600.0


def _ratio(num: float, den: float, scale: float = 1.0) -> float:
    return num / den * scale if den > 0 else float("nan")


def _column(frame: pd.DataFrame, name: str, default: float | bool) -> NDArray[np.generic]:
    if name not in frame:
        return np.full(len(frame), default)
    values = frame[name]
    return values.fillna(default).to_numpy(dtype=type(default))


def cost_metrics(
    requests: pd.DataFrame,
    *,
    window: tuple[float, float],
    fleet: FleetBill | None,
    hidden: HiddenCostsSpec | None = None,
    api: ApiSpec | None = None,
    api_batch: Mapping[str, bool] | None = None,
) -> dict[str, float]:
    """Cost metrics of one replication over the measurement window.

    **Requests counted**: those that *arrived* in ``[window[0], window[1])`` and
    *completed*. Rejected and failed requests are not billed by the API (a provider charges
    for answers, not for 429s) and appear in neither side of the comparison, so the
    savings are for the work actually delivered; read them with ``requests_rejected`` and
    ``slo_attainment``. Tokens are ``input_tokens`` (whole prompt, cached part included)
    and ``output_tokens``; ``cached_input_tokens`` (default 0) is the part of the prompt
    the API's cache served; ``api_provisioned`` (default False) marks requests served by
    provisioned throughput.

    ===================================  =========  =============================================
    name                                 unit       definition
    ===================================  =========  =============================================
    fleet_gpu_hours_paid                 GPU-h      GPU time billed and attributed to the window
    fleet_gpu_hours_busy                 GPU-h      GPU time running batches inside the window
    fleet_gpu_usd                        USD        paid GPU-hours × price per GPU-hour
    fleet_gpu_busy_usd                   USD        fleet_gpu_usd × busy / paid GPU-hours
    fleet_gpu_idle_usd                   USD        fleet_gpu_usd − fleet_gpu_busy_usd
    fleet_ops_usd                        USD        operations staff, prorated to the window
    fleet_other_usd                      USD        monitoring, storage/egress, model updates
    fleet_cost_usd                       USD        gpu + ops + other
    api_cost_usd                         USD        per-token bill of requests routed to the API
                                                    + provisioned fee (0 without an API)
    total_cost_usd                       USD        fleet_cost_usd + api_cost_usd
    api_only_cost_usd                    USD        every counted request, whatever its route,
                                                    priced pay-per-token (batch discount for
                                                    batch classes, no provisioned throughput)
    savings_vs_api_usd                   USD        api_only_cost_usd − total_cost_usd
    savings_vs_api_usd_per_month         USD/month  savings × 730 h / window
    total_cost_usd_per_month             USD/month  total × 730 h / window
    api_only_cost_usd_per_month          USD/month  api_only × 730 h / window
    cost_per_request_usd                 USD        total ÷ counted requests
    cost_per_1m_input_tokens_usd         USD        total ÷ input tokens × 1e6 (the whole cost
                                                    charged to input: not a split)
    cost_per_1m_output_tokens_usd        USD        total ÷ output tokens × 1e6 (likewise)
    cost_per_1m_tokens_usd               USD        total ÷ (input + output tokens) × 1e6:
                                                    blended, every token weighted equally
    api_only_cost_per_1m_tokens_usd      USD        api_only ÷ (input + output tokens) × 1e6
    savings_vs_api_per_1m_tokens_usd     USD        the difference of the two above
    self_host_cheaper                    0/1        1.0 if savings_vs_api_usd > 0 else 0.0
    ===================================  =========  =============================================

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
    fleet : FleetBill or None, keyword-only
        From :func:`fleet_bill` over the same window; None for no fleet.
    hidden : HiddenCostsSpec, optional
        Non-GPU fleet costs; None for none.
    api : ApiSpec, optional
        The hosted API.
    api_batch : Mapping[str, bool], optional
        Class name → sent through the batch API (``api.batch_discount`` applies).

    Returns
    -------
    dict of str to float

    Raises
    ------
    ValueError
        If the fleet bill is for a window of another length, or requests were routed to
        the API and there is no ``api``.

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
    """
    w0, w1 = float(window[0]), float(window[1])
    span = w1 - w0
    if not span > 0:
        raise ValueError(f"window must have end > start, got {window!r}")
    if fleet is not None and not math.isclose(fleet.window_s, span, rel_tol=1e-9):
        raise ValueError(f"fleet bill is for a {fleet.window_s} s window, not {span} s")
    arrival = requests["arrival_s"].to_numpy(dtype=np.float64)
    counted = (arrival >= w0) & (arrival < w1) & (requests["status"] == "completed").to_numpy()
    sel = requests[counted]
    inp = sel["input_tokens"].to_numpy(dtype=np.float64)
    out = sel["output_tokens"].to_numpy(dtype=np.float64)
    cached = _column(sel, "cached_input_tokens", 0.0).astype(np.float64)
    prov = _column(sel, "api_provisioned", False).astype(bool)
    to_api = (sel["route"] == "api").to_numpy(dtype=bool)
    batch_classes = [name for name, flag in (api_batch or {}).items() if flag]
    batch = np.isin(sel["class_name"].astype(str).to_numpy(), batch_classes)

    gpu = fleet.gpu_usd if fleet is not None else 0.0
    extra = hidden_costs(hidden, span) if hidden is not None else {"ops_usd": 0.0, "other_usd": 0.0}
    fleet_cost = gpu + extra["ops_usd"] + extra["other_usd"]
    nan = float("nan")
    if api is None:
        if to_api.any():
            raise ValueError("requests were routed to the API but the scenario has no 'api'")
        api_cost, api_only = 0.0, nan
    else:
        prices = resolve_api_prices(api)
        routed = api_bill(
            inp[to_api],
            cached[to_api],
            out[to_api],
            prices=prices,
            batch=batch[to_api],
            batch_discount=api.batch_discount,
            provisioned=prov[to_api],
        )
        api_cost = float(routed.sum()) + provisioned_fee(api, span)
        everything = api_bill(
            inp, cached, out, prices=prices, batch=batch, batch_discount=api.batch_discount
        )
        api_only = float(everything.sum())
    total = fleet_cost + api_cost
    savings = api_only - total
    per_month = HOURS_PER_MONTH * 3600.0 / span
    tokens_in, tokens_out = float(inp.sum()), float(out.sum())
    tokens = tokens_in + tokens_out
    return {
        "fleet_gpu_hours_paid": fleet.gpu_hours_paid if fleet is not None else 0.0,
        "fleet_gpu_hours_busy": fleet.gpu_hours_busy if fleet is not None else 0.0,
        "fleet_gpu_usd": gpu,
        "fleet_gpu_busy_usd": fleet.gpu_busy_usd if fleet is not None else 0.0,
        "fleet_gpu_idle_usd": fleet.gpu_idle_usd if fleet is not None else 0.0,
        "fleet_ops_usd": extra["ops_usd"],
        "fleet_other_usd": extra["other_usd"],
        "fleet_cost_usd": fleet_cost,
        "api_cost_usd": api_cost,
        "total_cost_usd": total,
        "api_only_cost_usd": api_only,
        "savings_vs_api_usd": savings,
        "savings_vs_api_usd_per_month": savings * per_month,
        "total_cost_usd_per_month": total * per_month,
        "api_only_cost_usd_per_month": api_only * per_month,
        "cost_per_request_usd": _ratio(total, float(len(sel))),
        "cost_per_1m_input_tokens_usd": _ratio(total, tokens_in, 1e6),
        "cost_per_1m_output_tokens_usd": _ratio(total, tokens_out, 1e6),
        "cost_per_1m_tokens_usd": _ratio(total, tokens, 1e6),
        "api_only_cost_per_1m_tokens_usd": _ratio(api_only, tokens, 1e6),
        "savings_vs_api_per_1m_tokens_usd": _ratio(savings, tokens, 1e6),
        "self_host_cheaper": nan if math.isnan(savings) else float(savings > 0),
    }
