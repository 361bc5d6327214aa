"""The money side of one replication: each API provider simulated on the requests sent to
it, and the fleet's bill — its drain, its reservation, what it keeps running outside the
active time.

:func:`sim.replication.simulate.simulate` calls these on a finished fleet run; the arithmetic itself
lives in :mod:`sim.economics` (pure functions of the records, checked by hand in the tests).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from sim.economics.apis import MAIN_API, ApiProviders
from sim.economics.cost import (
    CacheTokens,
    FleetBill,
    cost_metrics,
    fleet_bill,
    reserved_fleet_bill,
    resolve_gpu_hourly,
)
from sim.economics.gpu_bill import overlap_s
from sim.economics.spec import PricedFleetSpec
from sim.engine.serve import Served
from sim.engine.spec import Horizon
from sim.hosted_api import ApiResult, simulate_api
from sim.scenario import Scenario

__all__ = ["idle_replicas", "kept_up", "replication_costs", "run_fleet_bill", "simulate_apis"]


def simulate_apis(
    providers: ApiProviders,
    class_names: ArrayLike,
    arrival_s: ArrayLike,
    input_tokens: ArrayLike,
    output_tokens: ArrayLike,
    *,
    rng_of: Callable[[str], np.random.Generator],
) -> ApiResult:
    """Simulate each provider on the requests of the classes it serves, separately (its own
    token buckets and latency draws, from ``rng_of(provider name)``), and give the outcomes
    back in the order of the requests.

    Raises
    ------
    ValueError
        If a request's class has no API.

    Examples
    --------
    >>> from sim.economics import ApiSpec, api_providers
    >>> spec = ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=1.0)
    >>> p = api_providers(spec, {}, {"chat": None})
    >>> res = simulate_apis(p, ["chat", "chat"], [0.0, 1.0], [10, 10], [5, 5],
    ...                     rng_of=lambda name: np.random.default_rng(0))
    >>> res.status.tolist()
    [0, 0]
    """
    names = np.asarray(class_names).astype(str)
    arr = np.asarray(arrival_s, dtype=np.float64)
    inp = np.asarray(input_tokens)
    out = np.asarray(output_tokens)
    by_provider: dict[str, NDArray[np.bool_]] = {}
    for cls in np.unique(names):
        name = providers.of_class.get(cls, MAIN_API)
        if name is None or name not in providers.specs:
            raise ValueError(f"class {cls!r} was sent to the API but has none")
        rows = names == cls
        by_provider[name] = by_provider.get(name, np.zeros(len(names), dtype=bool)) | rows
    if len(by_provider) == 1:
        # one provider for every request: its outcome as it comes
        (name,) = by_provider
        return simulate_api(arr, inp, out, providers.specs[name], rng=rng_of(name))
    n = len(names)
    parts = {
        "status": np.zeros(n, dtype=np.int8),
        "ttft_s": np.full(n, np.nan),
        "e2e_s": np.full(n, np.nan),
        "tpot_s": np.full(n, np.nan),
        "attempts": np.zeros(n, dtype=np.int64),
        "provisioned": np.zeros(n, dtype=bool),
        "wait_s": np.full(n, np.nan),
    }
    for name in providers.specs:  # a fixed order: each provider's stream is its own anyway
        rows = by_provider.get(name)
        if rows is None:
            continue
        res = simulate_api(arr[rows], inp[rows], out[rows], providers.specs[name], rng=rng_of(name))
        for key, values in parts.items():
            values[rows] = getattr(res, key)
    return ApiResult(**parts)


def idle_replicas(scenario: Scenario) -> int:
    """Replicas kept running outside the active time: ``calendar.idle_replicas``, else all
    of a fleet without an autoscaler and an autoscaled fleet's ``min_replicas``."""
    given = scenario.calendar.idle_replicas
    if given is not None:
        return given
    return kept_up(scenario.single_fleet("idle replicas of a single fleet"))


def kept_up(fleet: PricedFleetSpec) -> int:
    """Replicas a fleet (or one pool of several) keeps running outside the active time by
    default: all of a fixed one, an autoscaled one's ``min_replicas``."""
    return fleet.replicas if fleet.autoscaler is None else fleet.autoscaler.min_replicas


def run_fleet_bill(
    horizon: Horizon,
    fleet: PricedFleetSpec,
    replicas: pd.DataFrame,
    served: Served,
    *,
    drain: float,
) -> FleetBill:
    """The GPU bill of ``fleet`` (a fleet of one pool, or one pool of several) for the
    window and ``drain`` seconds after it.

    A fixed fleet is always on: every replica is paid for exactly the window and the drain
    (billing increments and minimum periods only matter for replicas that start or stop).
    A fleet that changes size is billed per lifetime, or by its reservation when reserved
    or owned (:func:`sim.economics.reserved_fleet_bill`). Busy time includes the drain's.
    Without a price for the GPU the bill is NaN (latency is still simulated).
    """
    hz = horizon
    w0, w1 = hz.warmup_s, hz.duration_s
    tp = fleet.tp
    try:
        pricing = resolve_gpu_hourly(fleet.pricing, served.replica.gpu)
    except KeyError:
        nan = math.nan
        kind = fleet.pricing.kind if fleet.pricing is not None else "on_demand"
        return FleetBill(nan, nan, nan, nan, nan, w1 - w0, kind, nan, drain_s=drain, tp=tp)
    busy = replicas["gpu_busy_fraction"].to_numpy() * (w1 - w0)
    if drain > 0:
        # per slot: busy time after the window (its counters were read at duration_s)
        after = served.busy_after_window_s()
        busy = busy + np.clip(after[: len(busy)], 0.0, drain)
    if not served.dynamic:
        n = fleet.replicas
        pricing = dataclasses.replace(pricing, billing_increment_s=1e-6, min_billable_s=0.0)
        lifetimes = np.tile([0.0, max(served.end_s, w1 + drain)], (n, 1))
        return fleet_bill(
            lifetimes, tp=tp, pricing=pricing, window=(w0, w1), busy_s=busy, drain_s=drain
        )
    # replicas started and stopped: busy time is known per slot, not per lifetime; spread it
    # over the lifetimes in proportion to their overlap with the window and drain (the
    # totals are exact)
    lifetimes = served.lifetimes
    overlap = overlap_s(lifetimes, w0, w1 + drain)
    total_busy = (
        float(busy.sum()) if drain > 0 else float(replicas["gpu_busy_fraction"].sum() * (w1 - w0))
    )
    spread = np.zeros(len(lifetimes))
    if overlap.sum() > 0:
        spread = np.minimum(overlap, total_busy * overlap / overlap.sum())
    bill = reserved_fleet_bill if pricing.kind in ("reserved", "owned") else fleet_bill
    return bill(lifetimes, tp=tp, pricing=pricing, window=(w0, w1), busy_s=spread, drain_s=drain)


def replication_costs(
    scenario: Scenario,
    requests: pd.DataFrame,
    replicas: pd.DataFrame,
    served: Served,
    providers: ApiProviders,
    *,
    fleet_used: bool | None = None,
    drain_s: float | None = None,
    cache_tokens: CacheTokens | None = None,
) -> dict[str, float]:
    """The cost metrics of one replication (:func:`sim.economics.cost_metrics`).

    Under ``routing.policy: api_only`` a fleet that served no request is not paid for: no
    GPU and no hidden costs (classes that cannot leave the fleet keep it billed).
    ``fleet_used`` (any request routed to the fleet) and ``drain_s`` (:attr:`Served.drain_s`)
    are read from ``requests`` and ``served`` unless given (a streamed replication keeps
    neither its requests nor the engine's rows). With ``cache_tokens``
    (:func:`sim.economics.apis.api_cache_tokens`) the API's cached and cache-write tokens
    come from replaying each provider's prompt cache.
    """
    hz = scenario.horizon
    if fleet_used is None:
        fleet_used = bool((requests["route"] == "fleet").any())
    unused = scenario.routing.policy == "api_only" and not fleet_used
    bill = None
    if not unused:
        drain = served.drain_s if drain_s is None else drain_s
        fleet = scenario.single_fleet("a single fleet's bill")
        bill = run_fleet_bill(scenario.horizon, fleet, replicas, served, drain=drain)
    return cost_metrics(
        requests,
        window=(hz.warmup_s, hz.duration_s),
        fleet=bill,
        hidden=None if unused else scenario.costs,
        api=providers,
        api_batch={c.name: c.api_batch for c in scenario.workload.classes},
        calendar=scenario.calendar,
        idle_replicas=idle_replicas(scenario),
        cache_tokens=cache_tokens,
    )
