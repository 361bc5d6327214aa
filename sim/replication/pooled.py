"""One replication of a fleet of several pools (``fleet.pools``).

The workload is sampled once; the pools serve it in step (:func:`sim.engine.pools.serve_pools`)
and the hosted API takes, in one stream, every request any pool sent it. The metrics are a
single-pool replication's, over the whole fleet (latency over every request, utilisation
over every replica, one GPU bill summed over the pools' own bills), plus each pool's own,
named ``<metric>[pool:<name>]``: its GPU-hours paid and busy, busy fraction, MFU and MBU,
GPU cost, requests and tokens served, and GPU cost per million tokens it served.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from sim.economics.cost import FleetBill, cost_metrics, month_split
from sim.economics.gpu_bill import idle_fleet_usd, overlap_s, resolve_gpu_hourly
from sim.economics.spec import PooledFleetSpec, PricedFleetSpec
from sim.engine.pools import PooledServed, PoolLayout, serve_pools
from sim.engine.replica import ReplicaConfig, build_replica
from sim.engine.serve import ROUTE_API, ROUTE_EITHER
from sim.replication.billing import kept_up, run_fleet_bill
from sim.replication.parts import (
    add_cache_columns,
    api_baseline_metrics,
    class_routes,
    dynamics_metrics,
    dynamics_sums,
    frame_prompts,
    records_and_metrics,
    scenario_apis,
    simulate_routed,
)
from sim.scenario import Scenario
from sim.scenario_io import ScenarioError
from sim.seeds import (
    STREAM_FAULTS,
    STREAM_ROUTER,
    SeedLike,
    pool_stream,
)
from sim.workload import Workload

__all__ = ["POOL_METRICS", "pool_layout", "replica_capacity_rps", "serve_pooled"]

#: Per-pool metrics, each named ``<metric>[pool:<name>]``.
POOL_METRICS = (
    "replicas",
    "gpus",
    "requests_served",
    "tokens_served",
    "gpu_busy_fraction",
    "compute_utilisation",
    "bandwidth_utilisation",
    "gpu_hours_paid",
    "gpu_hours_busy",
    "gpu_usd",
    "gpu_usd_per_month",
    "gpu_usd_per_1m_tokens",
)


def pool_key(metric: str, pool: str) -> str:
    """The name of a per-pool metric."""
    return f"{metric}[pool:{pool}]"


def replica_capacity_rps(
    replica: ReplicaConfig, max_num_seqs: int, prompt: float, out: float
) -> float:
    """Requests per second one replica serves when saturated with requests of ``prompt``
    input and ``out`` output tokens (means): a full decode batch (sequence slots or KV
    cache, whichever runs out first) at the mean context, plus each request's prefill.
    An estimate from the step-time model, used to order and bound, never as a result."""
    c = replica.coefficients
    ctx = prompt + out / 2.0
    kv_tokens = replica.kv_blocks * replica.block_tokens
    batch = max(1.0, min(float(max_num_seqs), kv_tokens / max(prompt + out, 1.0)))
    decode = c.time_s(batch, batch, 0.0, batch * ctx, 0.0)
    prefill = c.time_s(prompt, 0.0, prompt, prompt, prompt * (prompt + 1) / 2.0)
    per_request = prefill + out * decode / batch
    return 1.0 / per_request if per_request > 0 else math.inf


#: Mean prompt and output tokens assumed for a class whose lengths come from a trace, where
#: an estimate needs them before the trace is read.
NOMINAL_LENGTHS = (1000.0, 200.0)


def class_mix(scenario: Scenario) -> list[tuple[float, float, float]]:
    """Per class: its mean arrival rate (NaN for a closed loop of users, or a rate that
    cannot be read) and its mean prompt and output lengths (NaN when they come from a
    trace): what the capacity estimates weigh the workload by."""
    out = []
    for cls in scenario.workload.classes:
        rate = math.nan
        mean_rate = getattr(cls.arrivals, "mean_rate_rps", None)
        if callable(mean_rate):
            try:
                rate = float(mean_rate())
            except (TypeError, ValueError, OSError):
                rate = math.nan
        prompt = cls.prompt_tokens.mean() if cls.prompt_tokens is not None else math.nan
        output = cls.output_tokens.mean() if cls.output_tokens is not None else math.nan
        out.append((rate, prompt, output))
    return out


def _class_means(scenario: Scenario) -> tuple[float, float]:
    # the workload's mean prompt and output lengths, weighted by mean arrival rate (a class
    # without a rate weighs as one request a second; lengths from a trace are nominal)
    rates, prompts, outs = [], [], []
    for rate, prompt, output in class_mix(scenario):
        rates.append(rate if math.isfinite(rate) and rate else 1.0)
        prompts.append(prompt if math.isfinite(prompt) else NOMINAL_LENGTHS[0])
        outs.append(output if math.isfinite(output) else NOMINAL_LENGTHS[1])
    w = np.asarray(rates) / np.sum(rates)
    return float(w @ np.asarray(prompts)), float(w @ np.asarray(outs))


def pool_usd_per_1m_tokens(scenario: Scenario, pool: PricedFleetSpec) -> float:
    """A pool's GPU price per million tokens at its estimated capacity for the scenario's
    request mix (:func:`replica_capacity_rps`); NaN without a price for its GPU."""
    replica = build_replica(pool)
    try:
        price = resolve_gpu_hourly(pool.pricing, replica.gpu).usd_per_gpu_hour
    except KeyError:
        return math.nan
    prompt, out = _class_means(scenario)
    rps = replica_capacity_rps(replica, pool.engine.max_num_seqs, prompt, out)
    return price * pool.tp / 3600.0 / (rps * (prompt + out)) * 1e6


def pool_layout(scenario: Scenario) -> PoolLayout:
    """The scenario's pools as the engine takes them, each class's pools in the order the
    policy tries them (``overflow``: the fleet's ``order``; ``cheapest``: by marginal
    cost, the pools paid for whatever they serve first, i.e. those without an autoscaler,
    then the autoscaled ones, each group by :func:`pool_usd_per_1m_tokens`, pools without
    a price last)."""
    fleet = scenario.fleet
    assert isinstance(fleet, PooledFleetSpec)
    names = fleet.names
    cands = scenario.class_pools()
    if fleet.policy == "overflow" and fleet.order:
        rank = {n: i for i, n in enumerate(fleet.order)}
        cands = tuple(
            tuple(sorted(c, key=lambda p: (rank.get(names[p], len(rank)), c.index(p))))
            for c in cands
        )
    elif fleet.policy == "cheapest":
        price = [pool_usd_per_1m_tokens(scenario, p) for p in fleet.pools]
        key = [
            (p.autoscaler is not None, math.isnan(v), v)
            for p, v in zip(fleet.pools, price, strict=True)
        ]
        cands = tuple(tuple(sorted(c, key=lambda p: (*key[p], c.index(p)))) for c in cands)
    return PoolLayout(
        names=names,
        fleets=fleet.pools,
        replicas=tuple(build_replica(p) for p in fleet.pools),
        candidates=cands,
        choice="least_loaded" if fleet.policy == "least_loaded" else "ordered",
        max_queue_per_replica=fleet.room.max_queue_per_replica,
        max_outstanding_tokens_per_replica=fleet.room.max_outstanding_tokens_per_replica,
    )


def serve_pooled(scenario: Scenario, workload: Workload, seed: SeedLike) -> PooledServed:
    """The scenario's pools serving ``workload``, each pool with its own router and fault
    streams (keyed by its name, so adding a pool shifts no other pool's draws)."""
    layout = pool_layout(scenario)
    return serve_pools(
        layout,
        workload,
        scenario.horizon,
        router_rngs=[
            np.random.default_rng(pool_stream(seed, STREAM_ROUTER, n)) for n in layout.names
        ],
        fault_rngs=[
            np.random.default_rng(pool_stream(seed, STREAM_FAULTS, n)) for n in layout.names
        ],
        routing=scenario.routing,
        class_route=class_routes(scenario),
        prefix_tokens=np.asarray(
            [0 if c.prefix is None else c.prefix.tokens for c in scenario.workload.classes]
        ),
    )


def pools_in_use(scenario: Scenario) -> list[bool]:
    """Per pool, whether the routing can send it any request: a pool every one of whose
    classes the routing sends to the API (``api_only``; ``class_based`` with all of them in
    ``api_classes``; classes the open model may not serve) is not paid for, nor are the
    hidden costs when no pool is (an option of the decision that moves a pool's traffic to
    the API drops the pool)."""
    routes = class_routes(scenario)
    policy = scenario.routing.policy
    cands = scenario.class_pools()
    used = [False] * len(scenario.pools)
    for c, pools in enumerate(cands):
        route = routes[c]
        away = policy != "self_host_only" and (
            route == ROUTE_API or (policy == "api_only" and route == ROUTE_EITHER)
        )
        if not away:
            for p in pools:
                used[p] = True
    return used


def _unpaid(bill: FleetBill) -> FleetBill:
    # a pool not paid for: its bill is zero (it served nothing)
    return FleetBill(0.0, 0.0, 0.0, 0.0, 0.0, bill.window_s, bill.kind, bill.usd_per_gpu_hour,
                     tp=bill.tp)  # fmt: skip


def pooled_replication(
    scenario: Scenario, workload: Workload, seed: SeedLike
) -> tuple[pd.DataFrame, dict[str, float], pd.DataFrame, pd.DataFrame]:
    """One replication of a pooled scenario on ``workload``: its request table, metrics,
    fleet time series and replica table."""
    hz = scenario.horizon
    if hz.records != "all":
        raise ScenarioError(
            "horizon.records: a fleet of several pools keeps every record (records: all)"
        )
    classes = scenario.workload.classes
    served = serve_pooled(scenario, workload, seed)
    providers = scenario_apis(scenario)
    api_result = simulate_routed(scenario, providers, served.to_api(), seed)
    drains = [s.drain_s for s in served.pools]
    requests, replicas, metrics = records_and_metrics(scenario, served, api_result)
    prompts = None
    if workload.prompt_blocks is not None and providers.used():
        prompts = frame_prompts(requests, workload)
    cache_tokens = add_cache_columns(requests, scenario, prompts, providers)
    pools = scenario.pools
    used = pools_in_use(scenario)
    bills: list[FleetBill] = []
    for p, (pool, served_p) in enumerate(zip(pools, served.pools, strict=True)):
        mine = (replicas["pool"] == served.names[p]).to_numpy()
        bill = run_fleet_bill(
            scenario.horizon,
            pool,
            replicas[mine].reset_index(drop=True),
            served_p,
            drain=drains[p],
        )
        bills.append(bill if used[p] else _unpaid(bill))
    paid = [b for b, u in zip(bills, used, strict=True) if u]
    metrics.update(
        cost_metrics(
            requests,
            window=(hz.warmup_s, hz.duration_s),
            fleet=paid or None,
            hidden=scenario.costs if paid else None,
            api=providers,
            api_batch={c.name: c.api_batch for c in classes},
            calendar=scenario.calendar,
            idle_replicas=[kept_up(p) for p, u in zip(pools, used, strict=True) if u],
            cache_tokens=cache_tokens,
        )
    )
    if any(p.dynamic for p in pools):
        sums = dynamics_sums(requests, hz.warmup_s, hz.duration_s)
        metrics.update(dynamics_metrics(served, sums, replicas, hz.warmup_s, hz.duration_s))
    metrics.update(_pool_metrics(scenario, served, requests, replicas, bills, used))
    if providers.used():
        metrics.update(api_baseline_metrics(scenario, providers, requests, seed))
    ts = served.timeseries()
    return requests, {k: float(v) for k, v in metrics.items()}, ts, replicas


def _pool_metrics(
    scenario: Scenario,
    served: PooledServed,
    requests: pd.DataFrame,
    replicas: pd.DataFrame,
    bills: list[FleetBill],
    used: list[bool],
) -> dict[str, float]:
    hz = scenario.horizon
    arrival = requests["arrival_s"].to_numpy()
    counted = (
        (arrival >= hz.warmup_s)
        & (arrival < hz.duration_s)
        & (requests["status"] == "completed").to_numpy()
        & (requests["route"] == "fleet").to_numpy()
    )
    tokens = (requests["input_tokens"] + requests["output_tokens"]).to_numpy()
    pool_col = requests["pool"].to_numpy()
    scale, idle_s = month_split(scenario.calendar, hz.duration_s - hz.warmup_s)
    out: dict[str, float] = {}
    pools = zip(served.names, scenario.pools, served.pools, bills, used, strict=True)
    for name, pool, served_p, bill, in_use in pools:
        mine = pool_col == name
        reps = replicas[(replicas["pool"] == name).to_numpy()]
        served_tokens = float(tokens[counted & mine].sum())
        paid = overlap_s(served_p.lifetimes, hz.warmup_s, hz.duration_s).sum()
        mean_replicas = float(paid / (hz.duration_s - hz.warmup_s))
        values = {
            "replicas": mean_replicas,
            "gpus": mean_replicas * pool.tp,
            "requests_served": float((counted & mine).sum()),
            "tokens_served": served_tokens,
            "gpu_busy_fraction": float(reps["gpu_busy_fraction"].mean()),
            "compute_utilisation": float(reps["compute_utilisation"].mean()),
            "bandwidth_utilisation": float(reps["bandwidth_utilisation"].mean()),
            "gpu_hours_paid": bill.gpu_hours_paid,
            "gpu_hours_busy": bill.gpu_hours_busy,
            "gpu_usd": bill.gpu_usd,
            # the window's bill for the month's active time, and what the pool keeps
            # running outside it (as the fleet's monthly cost counts it)
            "gpu_usd_per_month": bill.gpu_usd * scale
            + idle_fleet_usd(bill, idle_replicas=kept_up(pool) * in_use, idle_s=idle_s),
            "gpu_usd_per_1m_tokens": (
                bill.gpu_usd / served_tokens * 1e6 if served_tokens > 0 else math.nan
            ),
        }
        if "paid_fraction" in reps:
            # utilisation of the paid replica-time, as the fleet's is with an autoscaler
            share = reps["paid_fraction"].to_numpy()
            for key in ("gpu_busy_fraction", "compute_utilisation", "bandwidth_utilisation"):
                busy = np.nansum(reps[key].to_numpy() * share)
                values[key] = float(busy / share.sum()) if share.sum() > 0 else math.nan
        for key, value in values.items():
            out[pool_key(key, name)] = value
    return out
