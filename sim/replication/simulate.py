"""One replication: sample the workload, run the fleet, collect per-request records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.economics.apis import ApiProviders, api_cache_tokens
from sim.economics.gpu_bill import overlap_s
from sim.engine.replica import ReplicaConfig, build_replica
from sim.engine.serve import ROUTE_API, ROUTE_EITHER, ROUTE_FLEET_ONLY, Served, serve
from sim.labels import labels
from sim.replication.billing import replication_costs, simulate_apis
from sim.replication.budget import check_memory
from sim.replication.metrics import (
    LATENCIES,
    baseline_latency_metrics,
    fleet_metrics,
    request_metrics,
)
from sim.scenario import Scenario
from sim.scenario_io import ScenarioError
from sim.seeds import (
    STREAM_API,
    STREAM_API_BASELINE,
    STREAM_FAULTS,
    STREAM_ROUTER,
    STREAM_WORKLOAD,
    SeedLike,
    provider_stream,
    substream,
)
from sim.workload import Workload, sample_workload
from sim.workload.arrivals import ClosedLoopArrivals
from sim.workload.identity import PromptBlocks

__all__ = ["Outcome", "class_routes", "sample", "scenario_apis", "serve_scenario", "simulate"]


def scenario_apis(scenario: Scenario) -> ApiProviders:
    """Each class's API provider (see :func:`sim.economics.apis.api_providers`).

    Examples
    --------
    >>> from sim import load_scenario
    >>> dict(scenario_apis(load_scenario("scenarios/chat-startup.yaml")).of_class)
    {'chat': 'api'}
    """
    return scenario.providers()


@dataclass(frozen=True)
class Outcome:
    """The result of one replication.

    Attributes
    ----------
    scenario
        What was simulated.
    requests
        One row per request (see the README's glossary for the columns).
    metrics
        Named scalar metrics of this replication.
    timeseries
        Fleet state sampled every ``horizon.sample_interval_s``: queued and running
        sequences and KV blocks in use, per replica.
    replicas
        One row per replica: busy fraction, KV occupancy, mean batch, iterations, mean
        iteration time, preemptions and completed requests (all over the window; the
        completed count over the whole run).
    replica
        The resolved replica (KV-cache size, step-time coefficients, ...).
    """

    scenario: Scenario
    requests: pd.DataFrame
    metrics: dict[str, float]
    timeseries: pd.DataFrame
    replicas: pd.DataFrame
    replica: ReplicaConfig

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{k}</td><td>{v:.4g}</td></tr>"
            for k, v in self.metrics.items()
            if "[" not in k
        )
        return (
            f"<b>Outcome of {self.scenario.name!s}</b> ({len(self.requests)} requests)"
            f"<table>{rows}</table>"
        )


def class_routes(scenario: Scenario) -> np.ndarray:
    """Per class, whether its requests may leave the fleet (:data:`sim.engine.serve.ROUTE_*`).

    Private classes, closed loops of users and classes without any API stay on the fleet
    (``CR_FLEET_ONLY``); classes the open model cannot serve (``open_model_ok: false``) and,
    under ``class_based``, the listed classes always go to the API (``CR_API``; under
    ``self_host_only`` nothing leaves); every other class is eligible for ``api_only``,
    ``spillover``, ``cold_start_spill`` and what the fleet has to reject.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/chat-startup.yaml")
    >>> class_routes(s).tolist() == [ROUTE_EITHER]
    True
    >>> t = s.with_overrides({"workload.classes.chat.open_model_ok": False})
    >>> class_routes(t).tolist() == [ROUTE_API]
    True
    """
    providers = scenario_apis(scenario)
    routing = scenario.routing
    listed = set(routing.api_classes) if routing.policy == "class_based" else set()
    codes = []
    for cls in scenario.workload.classes:
        no_api = providers.spec_of(cls.name) is None
        if cls.private or cls.arrivals.process == "closed_loop" or no_api:
            codes.append(ROUTE_FLEET_ONLY)
        elif not cls.open_model_ok or cls.name in listed:
            codes.append(ROUTE_API)
        else:
            codes.append(ROUTE_EITHER)
    return np.asarray(codes, dtype=np.int64)


def _check_progress(scenario: Scenario, requests: pd.DataFrame) -> None:
    # a closed loop whose every request the fleet rejected never made progress: its users
    # only backed off and retried; say so rather than report a window of rejections
    for i, cls in enumerate(scenario.workload.classes):
        if not isinstance(cls.arrivals, ClosedLoopArrivals):
            continue
        mine = requests[requests["class_name"] == cls.name]
        if len(mine) == 0 or not (mine["status"] == "rejected").all():
            continue
        reason = mine["reason"].astype(str).value_counts().index[0]
        raise ScenarioError(
            f"workload.classes.{i} ({cls.name}): all {len(mine):,} requests its closed-loop "
            f"users sent were rejected ({reason}); the loop cannot make progress: make its "
            "requests fit the fleet (prompt_tokens, output_tokens) or the fleet take them"
        )


def _completed_by_replica(requests: pd.DataFrame, replicas: pd.DataFrame) -> np.ndarray:
    # requests each replica slot completed (those the API served have replica -1)
    completed = (requests["status"] == "completed").to_numpy()
    on_fleet = requests["replica"].to_numpy()[completed]
    served_by = np.bincount(on_fleet[on_fleet >= 0], minlength=len(replicas))
    return served_by[replicas["replica"].to_numpy()]


def _api_cached_tokens(requests: pd.DataFrame, scenario: Scenario) -> np.ndarray:
    # prompt tokens the API would bill at its cached-input price: the shared prefix a request
    # carries, plus the class's declared cached share of the rest of its prompt
    frac = {c.name: c.api_cached_input_fraction for c in scenario.workload.classes}
    names = requests["class_name"].astype("category")
    share = np.array([frac[str(c)] for c in names.cat.categories], dtype=float)
    prefix = requests["prefix_tokens"].to_numpy()
    rest = (requests["input_tokens"].to_numpy() - prefix).astype(float)
    rest *= share[names.cat.codes.to_numpy()]
    cached = np.round(rest, out=rest).astype(np.int64)
    cached += prefix
    return cached


def _frame_prompts(requests: pd.DataFrame, workload: Workload) -> PromptBlocks | None:
    # the workload's prompt identities in the order of the request table: its open-loop
    # rows are the workload's requests in order (a stable sort by arrival keeps them so);
    # closed-loop requests carry none (never cached)
    blocks = workload.prompt_blocks
    if blocks is None:
        return None
    closed = [workload.class_names[s.class_id] for s in workload.closed_loop]
    is_open = ~requests["class_name"].isin(closed).to_numpy(dtype=bool)
    rows = np.flatnonzero(is_open)
    arrival = requests["arrival_s"].to_numpy()[rows]
    if rows.size != len(workload) or not np.array_equal(arrival, workload.arrival_s):
        raise AssertionError("request table does not hold the workload's requests in order")
    counts = np.zeros(len(requests), dtype=np.int64)
    counts[rows] = blocks.counts
    offsets = np.zeros(len(requests) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return PromptBlocks(blocks.block_tokens, offsets, blocks.hashes)


def _api_baseline(
    scenario: Scenario, providers: ApiProviders, requests: pd.DataFrame, seed: SeedLike
) -> dict[str, float]:
    # every request sent to its class's API instead: the latency side of the comparison
    # (its bill is priced in cost_metrics), each provider drawing from its own substream.
    # Without an API for every class there is no such alternative: NaN.
    hz = scenario.horizon
    classes = scenario.workload.classes
    arrival = requests["arrival_s"].to_numpy()
    frame = requests  # the table is sorted by arrival: copy only if it is not
    if len(arrival) > 1 and not bool(np.all(arrival[1:] >= arrival[:-1])):
        frame = requests.iloc[np.argsort(arrival, kind="stable")]
    if not providers.complete:
        empty = pd.DataFrame({col: [] for col in ("arrival_s", "class_name", "status", *LATENCIES)})
        names = baseline_latency_metrics(
            empty, classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s
        )
        return dict.fromkeys(names, float("nan"))
    res = simulate_apis(
        providers,
        labels(frame["class_name"]),
        frame["arrival_s"].to_numpy(),
        frame["input_tokens"].to_numpy(),
        frame["output_tokens"].to_numpy(),
        rng_of=lambda name: np.random.default_rng(provider_stream(seed, STREAM_API_BASELINE, name)),
    )
    ok = res.status == 0
    base = pd.DataFrame(
        {
            "arrival_s": frame["arrival_s"].to_numpy(),
            "class_name": frame["class_name"].to_numpy(),
            "status": np.where(ok, "completed", "failed"),
            "ttft_s": res.ttft_s,
            "tpot_s": res.tpot_s,
            "e2e_s": res.e2e_s,
            "queue_s": np.full(len(frame), np.nan),
        }
    )
    return baseline_latency_metrics(base, classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s)


def _dynamics_metrics(
    served: Served,
    requests: pd.DataFrame,
    replicas: pd.DataFrame,
    ts: pd.DataFrame,
    w0: float,
    w1: float,
) -> dict[str, float]:
    # replica counts over time, cold starts, interruptions and the work they cost
    out: dict[str, float] = {}
    life = served.lifetimes
    overlap = overlap_s(life, w0, w1)
    out["replicas_paid_mean"] = float(overlap.sum() / (w1 - w0))
    # utilisation of what was paid for, not of every slot the engine could have used: the
    # fleet's over all paid replica-time, each slot's over its own paid time
    keys = ("gpu_busy_fraction", "compute_utilisation", "bandwidth_utilisation")
    used_s = {k: replicas[k].to_numpy(dtype=float) * (w1 - w0) for k in keys}
    paid_s = float(overlap.sum())
    if paid_s > 0:
        for key in keys:
            out[key] = float(np.nansum(used_s[key]) / paid_s)
    slots = served.lifetime_slots
    if len(slots):
        paid = np.bincount(slots, weights=overlap, minlength=len(replicas))
        paid = paid[: len(replicas)]
        replicas["paid_fraction"] = paid / (w1 - w0)
        with np.errstate(invalid="ignore", divide="ignore"):
            for key in keys:
                replicas[key] = np.where(paid > 0, used_s[key] / paid, np.nan)
    inside = ts[(ts["t_s"] >= w0) & (ts["t_s"] < w1)]
    if len(inside):
        ready = (inside["state"] == "ready").groupby(inside["t_s"]).sum()
        out["replicas_ready_mean"] = float(ready.mean())
        out["replicas_ready_max"] = float(ready.max())
    for key, value in served.events.items():
        out[key] = float(value)
    arrived = requests[(requests["arrival_s"] >= w0) & (requests["arrival_s"] < w1)]
    cold = arrived[arrived["cold_start"] & (arrived["status"] == "completed")]
    out["cold_start_requests"] = float(arrived["cold_start"].sum())
    out["cold_start_ttft_mean_s"] = float(cold["ttft_s"].mean()) if len(cold) else float("nan")
    out["interrupted_requests"] = float((arrived["interruptions"] > 0).sum())
    out["tokens_recomputed"] = float(arrived["recomputed_tokens"].sum())
    return out


def sample(scenario: Scenario, seed: SeedLike) -> Workload:
    """The replication's requests: the workload sampled from its own substream."""
    return sample_workload(
        scenario.workload,
        duration_s=scenario.horizon.duration_s,
        seed=substream(seed, STREAM_WORKLOAD),
    )


def serve_scenario(
    scenario: Scenario, workload: Workload, seed: SeedLike, replica: ReplicaConfig
) -> Served:
    """The scenario's fleet serving ``workload``: its routing, per-class routes and
    prefixes, the router's and the faults' substreams (:func:`sim.engine.serve.serve`)."""
    return serve(
        scenario.fleet,
        replica,
        workload,
        scenario.horizon,
        router_rng=np.random.default_rng(substream(seed, STREAM_ROUTER)),
        routing=scenario.routing,
        class_route=class_routes(scenario),
        prefix_tokens=[
            0 if c.prefix is None else c.prefix.tokens for c in scenario.workload.classes
        ],
        fault_rng=np.random.default_rng(substream(seed, STREAM_FAULTS)),
    )


def simulate(scenario: Scenario, *, seed: SeedLike) -> Outcome:
    """Run one replication of ``scenario``.

    Parameters
    ----------
    scenario
        The validated scenario.
    seed
        Root seed (an int or a :class:`numpy.random.SeedSequence`). Each component draws
        from its own substream, so two scenarios that differ only in the fleet see exactly
        the same requests.

    Examples
    --------
    >>> from sim import load_scenario, simulate
    >>> out = simulate(load_scenario("scenarios/chat-startup.yaml").with_overrides(
    ...     {"horizon.duration_s": 120, "horizon.warmup_s": 0}), seed=1)
    >>> bool((out.requests["status"] == "completed").all())
    True
    """
    check_memory(scenario)
    replica = build_replica(scenario.fleet)
    hz = scenario.horizon
    classes = scenario.workload.classes
    workload = sample(scenario, seed)
    served = serve_scenario(scenario, workload, seed, replica)
    providers = scenario_apis(scenario)
    sent = served.to_api()
    api_result = None
    if len(sent):
        api_result = simulate_apis(
            providers,
            sent.class_name,
            sent.arrival_s,
            sent.input_tokens,
            sent.output_tokens,
            rng_of=lambda name: np.random.default_rng(provider_stream(seed, STREAM_API, name)),
        )
    requests = served.requests(api_result)
    _check_progress(scenario, requests)
    metrics: dict[str, Any] = {}
    metrics.update(
        request_metrics(requests, classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s)
    )
    replicas = served.replicas()
    replicas["requests_completed"] = _completed_by_replica(requests, replicas)
    metrics.update(fleet_metrics(replicas))
    prompts = _frame_prompts(requests, workload) if providers.used() else None
    cache_tokens = None
    if prompts is None:
        requests["cached_input_tokens"] = _api_cached_tokens(requests, scenario)
    else:
        # the API's caches replayed from the prompts: what the API served read and wrote
        cache_tokens = api_cache_tokens(requests, prompts, providers)
        requests["cached_input_tokens"] = cache_tokens[0]
        requests["cache_write_tokens"] = cache_tokens[1]
    metrics.update(
        replication_costs(
            scenario, requests, replicas, served, providers, cache_tokens=cache_tokens
        )
    )
    if providers.used():
        metrics.update(_api_baseline(scenario, providers, requests, seed))
    ts = served.timeseries()
    if scenario.fleet.dynamic:
        metrics.update(
            _dynamics_metrics(served, requests, replicas, ts, hz.warmup_s, hz.duration_s)
        )
    return Outcome(
        scenario, requests, {k: float(v) for k, v in metrics.items()}, ts, replicas, replica
    )
