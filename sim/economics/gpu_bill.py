"""What the fleet's GPUs cost: the hourly price of a GPU, and the bill of a fleet's replica
lifetimes over the measurement window and its drain.

Pure, vectorised functions of replica lifetimes and busy times; nothing here reads files
(the price catalogue aside) or draws random numbers, so tests can check every figure by hand.
:func:`fleet_bill` bills a fixed fleet, or rented capacity (on-demand, spot) whatever its
size; :func:`reserved_fleet_bill` bills reserved or owned capacity whose size changes.
Money is in USD, time in seconds unless a name says hours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sim.catalog import GpuSpec
from sim.catalog.prices import default_gpu_price
from sim.economics.spec import HOURS_PER_MONTH, CapacityKind, PricingSpec

__all__ = [
    "HOURS_PER_YEAR",
    "FleetBill",
    "ResolvedPricing",
    "fleet_bill",
    "idle_fleet_usd",
    "overlap_s",
    "peak_replicas",
    "reserved_fleet_bill",
    "resolve_gpu_hourly",
]

HOURS_PER_YEAR = 8760.0
# A lifetime within this fraction of a billing increment of a boundary is on the boundary:
# float round-off (3600.1 - 0.1 = 3600.0000000000005) must not bill a whole extra period.
_ROUND_OFF = 1e-9
_EMPTY: Mapping[str, float] = MappingProxyType({})
_PAID_AROUND_THE_CLOCK = ("reserved", "owned")


def overlap_s(lifetimes_s: ArrayLike, start_s: float, end_s: float) -> NDArray[np.float64]:
    """Seconds of each ``[start, end]`` lifetime inside ``[start_s, end_s]`` (0 when apart).

    The one place a replica's lifetime meets a window: bills, paid replica-time and the
    spreading of busy time over lifetimes all use it.

    Examples
    --------
    >>> overlap_s([[0.0, 50.0], [40.0, 200.0], [300.0, 400.0]], 30.0, 100.0).tolist()
    [20.0, 60.0, 0.0]
    """
    life = np.asarray(lifetimes_s, dtype=np.float64).reshape(-1, 2)
    return np.clip(np.minimum(life[:, 1], end_s) - np.maximum(life[:, 0], start_s), 0.0, None)


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
    reserved_replicas : int or None
        Reserved and owned capacity on a fleet that changes size: replicas covered by the
        reservation (:func:`reserved_fleet_bill`); None: the most alive at once.
    overflow_usd_per_gpu_hour : float
        Reserved and owned capacity: price of a GPU above the reservation; NaN when unknown
        (no quote in the catalogue), which makes any bill that needs it NaN.
    """

    kind: CapacityKind
    usd_per_gpu_hour: float
    billing_increment_s: float = 1.0
    min_billable_s: float = 0.0
    source: str = ""
    date: str = ""
    breakdown: Mapping[str, float] = field(default_factory=lambda: _EMPTY, hash=False)
    reserved_replicas: int | None = None
    overflow_usd_per_gpu_hour: float = math.nan

    def __post_init__(self) -> None:
        if not (math.isfinite(self.usd_per_gpu_hour) and self.usd_per_gpu_hour >= 0):
            raise ValueError(f"usd_per_gpu_hour must be finite and >= 0: {self.usd_per_gpu_hour}")
        if not (math.isfinite(self.billing_increment_s) and self.billing_increment_s > 0):
            raise ValueError(f"billing_increment_s must be > 0: {self.billing_increment_s}")
        if not (math.isfinite(self.min_billable_s) and self.min_billable_s >= 0):
            raise ValueError(f"min_billable_s must be >= 0: {self.min_billable_s}")
        over = self.overflow_usd_per_gpu_hour
        if not (math.isnan(over) or (math.isfinite(over) and over >= 0)):
            raise ValueError(f"overflow_usd_per_gpu_hour must be >= 0 or NaN: {over}")
        if self.reserved_replicas is not None and self.reserved_replicas < 0:
            raise ValueError(f"reserved_replicas must be >= 0: {self.reserved_replicas}")

    @property
    def extra_usd_per_gpu_hour(self) -> float:
        """Price of a GPU beyond what is paid around the clock: the hourly price for capacity
        billed per lifetime, the overflow price for reserved and owned capacity."""
        if self.kind in _PAID_AROUND_THE_CLOCK:
            return self.overflow_usd_per_gpu_hour
        return self.usd_per_gpu_hour


@dataclass(frozen=True)
class FleetBill:
    """GPU cost of a fleet attributed to the measurement window (and its drain).

    Attributes
    ----------
    gpu_hours_paid : float
        GPU-hours billed and attributed to the window (see :func:`fleet_bill`).
    gpu_hours_busy : float
        GPU-hours a replica was running a batch inside the window and its drain:
        Σ busy_s · tp / 3600.
    gpu_usd : float
        What the paid GPU-hours cost (``gpu_hours_paid · usd_per_gpu_hour``, except for a
        reserved fleet with overflow at another price).
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
    drain_s : float
        Time after the window until the window's last request left the fleet; billed for
        capacity paid per lifetime (reserved and owned capacity is paid around the clock).
    tp : int
        GPUs per replica.
    reserved_gpus : float
        GPUs paid around the clock (reserved or owned): every replica of a fixed fleet,
        the reservation of one that changes size; 0 for on-demand and spot capacity.
    extra_usd_per_gpu_hour : float
        Price of a GPU beyond ``reserved_gpus`` (NaN when unknown).
    """

    gpu_hours_paid: float
    gpu_hours_busy: float
    gpu_usd: float
    gpu_busy_usd: float
    gpu_idle_usd: float
    window_s: float
    kind: str
    usd_per_gpu_hour: float
    drain_s: float = 0.0
    tp: int = 1
    reserved_gpus: float = 0.0
    extra_usd_per_gpu_hour: float = math.nan


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

    Reserved and owned capacity also carry the price of replicas above the reservation
    (``overflow_usd_per_gpu_hour``, else the catalogue's ``overflow_kind`` quote for the GPU;
    NaN when the catalogue has none — a bill that needs it is then NaN, as a fleet without
    any price is) and ``reserved_replicas``.

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
    2.95
    >>> owned = PricingSpec(kind="owned", capex_usd_per_gpu=35040.0, life_years=4.0,
    ...                     pue=1.25, usd_per_kwh=0.1)
    >>> r = resolve_gpu_hourly(owned, get_gpu("h100-sxm"))  # 700 W TDP
    >>> round(r.usd_per_gpu_hour, 6), round(r.breakdown["power_usd_per_gpu_hour"], 6)
    (1.0875, 0.0875)
    >>> r = resolve_gpu_hourly(PricingSpec(kind="reserved", usd_per_gpu_hour=2.0,
    ...                                    overflow_usd_per_gpu_hour=4.5), get_gpu("h100-sxm"))
    >>> r.usd_per_gpu_hour, r.overflow_usd_per_gpu_hour
    (2.0, 4.5)
    """
    spec = pricing if pricing is not None else PricingSpec()
    around = spec.kind in _PAID_AROUND_THE_CLOCK
    reserved = spec.reserved_replicas if around else None
    overflow = _overflow_price(spec, gpu) if around else math.nan
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
            reserved_replicas=reserved,
            overflow_usd_per_gpu_hour=overflow,
        )
    if spec.usd_per_gpu_hour is not None:
        return ResolvedPricing(
            kind=spec.kind,
            usd_per_gpu_hour=spec.usd_per_gpu_hour,
            source=spec.price_source or "scenario",
            date=spec.price_date,
            billing_increment_s=spec.billing_increment_s,
            min_billable_s=spec.min_billable_s,
            reserved_replicas=reserved,
            overflow_usd_per_gpu_hour=overflow,
        )
    quote = default_gpu_price(gpu.name, spec.kind)
    return ResolvedPricing(
        kind=spec.kind,
        usd_per_gpu_hour=quote.usd_per_gpu_hour,
        source=spec.price_source or f"{quote.provider} {quote.sku} ({quote.source})",
        date=spec.price_date or quote.quote_date,
        billing_increment_s=spec.billing_increment_s,
        min_billable_s=spec.min_billable_s,
        reserved_replicas=reserved,
        overflow_usd_per_gpu_hour=overflow,
    )


def _overflow_price(spec: PricingSpec, gpu: GpuSpec) -> float:
    if spec.overflow_usd_per_gpu_hour is not None:
        return spec.overflow_usd_per_gpu_hour
    try:
        return default_gpu_price(gpu.name, spec.overflow_kind).usd_per_gpu_hour
    except KeyError:
        return math.nan


def _fleet_inputs(
    lifetimes_s: ArrayLike,
    busy_s: ArrayLike,
    tp: int,
    window: tuple[float, float],
    drain_s: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, float, NDArray[np.float64]]:
    """Validated lifetimes, busy times, window and the overlap of each lifetime with the
    billed period ``[window[0], window[1] + drain_s]``."""
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
    if not (math.isfinite(drain_s) and drain_s >= 0):
        raise ValueError(f"drain_s must be finite and >= 0, got {drain_s!r}")
    start, end = life[:, 0], life[:, 1]
    if not np.all(np.isfinite(life)) or np.any(end < start):
        raise ValueError("lifetimes must be finite with end >= start")
    overlap = overlap_s(life, w0, w1 + drain_s)
    if np.any(busy < 0) or np.any(busy > overlap * (1 + _ROUND_OFF) + _ROUND_OFF):
        raise ValueError(
            "busy_s must lie in [0, overlap of the replica's life with the window and drain]"
        )
    return life, busy, w0, w1, overlap


def _bill(
    hours_paid: float,
    hours_busy: float,
    gpu_usd: float,
    *,
    span: float,
    pricing: ResolvedPricing,
    drain_s: float,
    tp: int,
    reserved_gpus: float,
) -> FleetBill:
    # min(1, ·): the round-off allowance of the busy check can bill a hair less than the
    # lifetime
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
        drain_s=drain_s,
        tp=tp,
        reserved_gpus=reserved_gpus,
        extra_usd_per_gpu_hour=pricing.extra_usd_per_gpu_hour,
    )


def fleet_bill(
    lifetimes_s: ArrayLike,
    *,
    tp: int,
    pricing: ResolvedPricing,
    window: tuple[float, float],
    busy_s: ArrayLike,
    drain_s: float = 0.0,
) -> FleetBill:
    """GPU bill of a fleet attributed to the window ``[window[0], window[1])`` and its drain.

    Per replica (``tp`` GPUs), billed by lifetime (``on_demand``, ``spot``):

    - billed time = ``max(ceil((end − start) / increment) · increment, min_billable_s)``;
    - attributed = billed time × overlap([start, end], [window[0], window[1] + drain_s])
      / (end − start).

    The proration spreads the rounding and the minimum evenly over the lifetime, so bills of
    consecutive windows add up to the whole bill; a replica of zero lifetime is attributed
    to the window its start lies in. ``drain_s`` is the time after the window the fleet
    spent finishing the window's requests: it is paid like the window. ``reserved`` and
    ``owned`` capacity is paid for the whole window for every replica (row), whatever its
    lifetime, and covers the drain (it is paid around the clock): this is the bill of a
    fixed fleet; a reserved fleet that changes size is billed by
    :func:`reserved_fleet_bill`.

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
        Seconds each replica ran a batch inside the window and its drain (at most its
        overlap with them).
    drain_s : float, keyword-only
        Billed time after the window, s (default 0).

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

    One replica per second for a 1-hour window whose last request left 360 s later:

    >>> p = ResolvedPricing(kind="on_demand", usd_per_gpu_hour=2.0)
    >>> fleet_bill([[0, 3960]], tp=1, pricing=p, window=(0, 3600), busy_s=[3960],
    ...            drain_s=360).gpu_usd
    2.2
    """
    life, busy, w0, w1, overlap = _fleet_inputs(lifetimes_s, busy_s, tp, window, drain_s)
    start, end = life[:, 0], life[:, 1]
    span = w1 - w0
    around = pricing.kind in _PAID_AROUND_THE_CLOCK
    if around:
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
    return _bill(
        hours_paid,
        float(busy.sum()) * tp / 3600.0,
        hours_paid * pricing.usd_per_gpu_hour,
        span=span,
        pricing=pricing,
        drain_s=drain_s,
        tp=tp,
        reserved_gpus=float(life.shape[0] * tp) if around else 0.0,
    )


def _alive_steps(life: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Times at which the number of live replicas changes and the number just after each.

    A lifetime is the half-open interval ``[start, end)``: at a time where one ends and
    another starts, the ending one is counted out first, so hand-overs are not overlaps.
    """
    t = np.concatenate([life[:, 0], life[:, 1]])
    step = np.concatenate([np.ones(len(life), np.int64), -np.ones(len(life), np.int64)])
    order = np.lexsort((step, t))
    return t[order], np.cumsum(step[order])


def peak_replicas(lifetimes_s: ArrayLike) -> int:
    """The most replicas alive at once (lifetimes are half-open ``[start, end)``).

    Examples
    --------
    >>> peak_replicas([[0, 10], [5, 20], [10, 30], [12, 12]])
    2
    >>> peak_replicas(np.zeros((0, 2)))
    0
    """
    life = np.asarray(lifetimes_s, dtype=np.float64).reshape(-1, 2)
    _, alive = _alive_steps(life)
    return int(alive.max()) if len(alive) else 0


def _excess_replica_s(life: NDArray[np.float64], level: int, lo: float, hi: float) -> float:
    """∫ max(0, alive(t) − level) dt over ``[lo, hi]``: replica-seconds above ``level``."""
    t, alive = _alive_steps(life)
    if len(t) < 2:
        return 0.0
    seg = np.clip(t[1:], lo, hi) - np.clip(t[:-1], lo, hi)
    return float((np.maximum(alive[:-1] - level, 0) * seg).sum())


def reserved_fleet_bill(
    lifetimes_s: ArrayLike,
    *,
    tp: int,
    pricing: ResolvedPricing,
    window: tuple[float, float],
    busy_s: ArrayLike,
    drain_s: float = 0.0,
) -> FleetBill:
    """GPU bill of a reserved (or owned) fleet whose size changes (autoscaler, spot,
    failures), attributed to the window and its drain.

    The reservation ``R`` (``pricing.reserved_replicas``, or when unset the most replicas
    alive at once, :func:`peak_replicas`) is paid for the whole window, ``R · tp`` GPUs at
    ``usd_per_gpu_hour``, whether used or not, and covers the drain. Replicas above ``R`` at
    each instant are billed per second at ``overflow_usd_per_gpu_hour`` for their time in
    ``[window[0], window[1] + drain_s]``: ``∫ max(0, alive(t) − R) dt``. Billing increments
    and minimum periods do not apply to the overflow (which replica is the one above the
    reservation changes from instant to instant). An overflow with an unknown price (NaN)
    makes the bill NaN; without overflow the price is not needed.

    Parameters
    ----------
    lifetimes_s : array_like, shape (n_lifetimes, 2)
        Start and end of each replica lifetime (half-open, start ≤ end, finite).
    tp : int, keyword-only
        GPUs per replica.
    pricing : ResolvedPricing, keyword-only
        Of kind ``reserved`` or ``owned``.
    window : (float, float), keyword-only
        Measurement window.
    busy_s : array_like, shape (n_lifetimes,), keyword-only
        Seconds each lifetime ran a batch inside the window and its drain.
    drain_s : float, keyword-only
        Time after the window until its last request left the fleet, s.

    Returns
    -------
    FleetBill
        ``reserved_gpus = R · tp``; ``gpu_hours_paid`` counts the reservation over the
        window plus the overflow.

    Raises
    ------
    ValueError
        As :func:`fleet_bill`, or if the pricing is not reserved or owned.

    Examples
    --------
    One replica all hour, a second for 30 minutes and a third for 15 of them; one replica
    reserved at $2/GPU-hour, the rest at $5:

    >>> p = ResolvedPricing(kind="reserved", usd_per_gpu_hour=2.0, reserved_replicas=1,
    ...                     overflow_usd_per_gpu_hour=5.0)
    >>> b = reserved_fleet_bill([[0, 3600], [600, 2400], [900, 1800]], tp=1, pricing=p,
    ...                         window=(0, 3600), busy_s=[0, 0, 0])
    >>> b.gpu_hours_paid, b.gpu_usd  # 1 h reserved + 0.75 h above it
    (1.75, 5.75)
    """
    if pricing.kind not in _PAID_AROUND_THE_CLOCK:
        raise ValueError(f"reserved_fleet_bill needs reserved or owned pricing, not {pricing.kind}")
    life, busy, w0, w1, _ = _fleet_inputs(lifetimes_s, busy_s, tp, window, drain_s)
    span = w1 - w0
    level = pricing.reserved_replicas
    if level is None:
        level = peak_replicas(life)
    above_s = _excess_replica_s(life, level, w0, w1 + drain_s)
    reserved_usd = level * tp * span / 3600.0 * pricing.usd_per_gpu_hour
    overflow_usd = above_s * tp / 3600.0 * pricing.overflow_usd_per_gpu_hour if above_s else 0.0
    return _bill(
        (level * span + above_s) * tp / 3600.0,
        float(busy.sum()) * tp / 3600.0,
        reserved_usd + overflow_usd,
        span=span,
        pricing=pricing,
        drain_s=drain_s,
        tp=tp,
        reserved_gpus=float(level * tp),
    )


def idle_fleet_usd(bill: FleetBill, *, idle_replicas: float, idle_s: float) -> float:
    """GPU cost of the part of the month outside the active time (``idle_s`` seconds).

    What is paid around the clock (``bill.reserved_gpus`` at ``usd_per_gpu_hour``) plus the
    GPUs of ``idle_replicas`` kept running beyond it at ``extra_usd_per_gpu_hour``::

        (reserved_gpus · usd_per_gpu_hour
         + max(0, idle_replicas · tp − reserved_gpus) · extra_usd_per_gpu_hour) · idle_s / 3600

    Examples
    --------
    >>> p = ResolvedPricing(kind="on_demand", usd_per_gpu_hour=2.0)
    >>> b = fleet_bill([[0, 3600]] * 3, tp=2, pricing=p, window=(0, 3600), busy_s=[0] * 3)
    >>> idle_fleet_usd(b, idle_replicas=1, idle_s=7200.0)  # 1 replica, 2 GPUs, 2 hours
    8.0
    """
    if idle_s == 0:
        return 0.0
    beyond = max(0.0, idle_replicas * bill.tp - bill.reserved_gpus)
    per_hour = bill.reserved_gpus * bill.usd_per_gpu_hour
    if beyond > 0:
        per_hour += beyond * bill.extra_usd_per_gpu_hour
    return per_hour * idle_s / 3600.0
