"""Pieces of one replication's metrics that add up over batches of requests.

A replication with its records computes them once over its whole per-request table; a
streamed one (:mod:`sim.replication.stream`) adds them up as requests finish. Both call
these functions, so the two agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from sim.economics.apis import ApiProviders, api_cache_tokens
from sim.economics.cost import CacheTokens
from sim.economics.gpu_bill import overlap_s
from sim.engine.pools import PooledServed
from sim.engine.replica import ReplicaConfig
from sim.engine.serve import (
    ROUTE_API,
    ROUTE_EITHER,
    ROUTE_FLEET_ONLY,
    Retired,
    Served,
    ToApi,
    serve,
)
from sim.hosted_api import ApiResult
from sim.labels import labels
from sim.replication.billing import simulate_apis
from sim.replication.metrics import (
    LATENCIES,
    baseline_latency_metrics,
    fleet_metrics,
    request_metrics,
)
from sim.scenario import Scenario
from sim.scenario_io import ScenarioError
from sim.seeds import (
    STREAM_API_BASELINE,
    STREAM_FAULTS,
    STREAM_ROUTER,
    SeedLike,
    provider_stream,
    routed_api_stream,
    substream,
)
from sim.workload import Workload
from sim.workload.arrivals import ClosedLoopArrivals
from sim.workload.identity import PromptBlocks
from sim.workload.sample import WorkloadStream

__all__ = [
    "add_cache_columns",
    "api_baseline_frame",
    "api_baseline_metrics",
    "api_baseline_names",
    "api_cached_tokens",
    "check_progress",
    "class_routes",
    "completed_by_replica",
    "dynamics_metrics",
    "dynamics_sums",
    "frame_prompts",
    "progress_counts",
    "records_and_metrics",
    "scenario_apis",
    "serve_scenario",
    "simulate_routed",
]


def scenario_apis(scenario: Scenario) -> ApiProviders:
    """Each class's API provider (see :func:`sim.economics.apis.api_providers`).

    Examples
    --------
    >>> from sim import load_scenario
    >>> dict(scenario_apis(load_scenario("scenarios/chat-startup.yaml")).of_class)
    {'chat': 'api'}
    """
    return scenario.providers()


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


def progress_counts(
    scenario: Scenario, requests: pd.DataFrame
) -> dict[str, tuple[int, int, dict[str, int]]]:
    """Per closed-loop class: requests sent, rejected, and the rejections by reason
    (summable over batches of requests)."""
    out: dict[str, tuple[int, int, dict[str, int]]] = {}
    names = labels(requests["class_name"])
    for cls in scenario.workload.classes:
        if not isinstance(cls.arrivals, ClosedLoopArrivals):
            continue
        mine = names == cls.name
        rejected = mine & (requests["status"] == "rejected").to_numpy()
        reasons = requests["reason"].to_numpy()[rejected].astype(str)
        keys, counts = np.unique(reasons, return_counts=True)
        out[cls.name] = (
            int(mine.sum()),
            int(rejected.sum()),
            dict(zip(keys.tolist(), counts.tolist(), strict=True)),
        )
    return out


def check_progress(scenario: Scenario, counts: dict[str, tuple[int, int, dict[str, int]]]) -> None:
    """A closed loop whose every request the fleet rejected never made progress: its users
    only backed off and retried; say so rather than report a window of rejections."""
    for i, cls in enumerate(scenario.workload.classes):
        if cls.name not in counts:
            continue
        n, rejected, reasons = counts[cls.name]
        if n == 0 or rejected < n:
            continue
        reason = max(reasons, key=lambda k: reasons[k])
        raise ScenarioError(
            f"workload.classes.{i} ({cls.name}): all {n:,} requests its closed-loop "
            f"users sent were rejected ({reason}); the loop cannot make progress: make its "
            "requests fit the fleet (prompt_tokens, output_tokens) or the fleet take them"
        )


def completed_by_replica(requests: pd.DataFrame, slots: int) -> np.ndarray:
    """Requests each replica slot completed (those the API served have replica -1)."""
    completed = (requests["status"] == "completed").to_numpy()
    on_fleet = requests["replica"].to_numpy()[completed]
    return np.bincount(on_fleet[on_fleet >= 0], minlength=slots)[:slots]


def api_cached_tokens(requests: pd.DataFrame, scenario: Scenario) -> np.ndarray:
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


def api_baseline_frame(arrival_s: np.ndarray, class_name: object, res: ApiResult) -> pd.DataFrame:
    """The every-request-to-the-API alternative's records of requests arriving at
    ``arrival_s`` (class ``class_name``, an array or a categorical), as its metrics take
    them (:func:`sim.replication.metrics.baseline_latency_metrics`)."""
    ok = res.status == 0
    return pd.DataFrame(
        {
            "arrival_s": arrival_s,
            "class_name": class_name,
            "status": np.where(ok, "completed", "failed"),
            "ttft_s": res.ttft_s,
            "tpot_s": res.tpot_s,
            "e2e_s": res.e2e_s,
            "queue_s": np.full(len(res), np.nan),
        }
    )


def api_baseline_metrics(
    scenario: Scenario, providers: ApiProviders, requests: pd.DataFrame, seed: SeedLike
) -> dict[str, float]:
    """The latency metrics of every request sent to its class's API instead: the latency
    side of the comparison (its bill is priced in cost_metrics), each provider drawing from
    its own substream. Without an API for every class there is no such alternative: NaN."""
    hz = scenario.horizon
    classes = scenario.workload.classes
    arrival = requests["arrival_s"].to_numpy()
    frame = requests  # the table is sorted by arrival: copy only if it is not
    if len(arrival) > 1 and not bool(np.all(arrival[1:] >= arrival[:-1])):
        frame = requests.iloc[np.argsort(arrival, kind="stable")]
    if not providers.complete:
        return dict.fromkeys(api_baseline_names(scenario), float("nan"))
    res = simulate_apis(
        providers,
        labels(frame["class_name"]),
        frame["arrival_s"].to_numpy(),
        frame["input_tokens"].to_numpy(),
        frame["output_tokens"].to_numpy(),
        rng_of=lambda name: np.random.default_rng(provider_stream(seed, STREAM_API_BASELINE, name)),
    )
    base = api_baseline_frame(frame["arrival_s"].to_numpy(), frame["class_name"].to_numpy(), res)
    return baseline_latency_metrics(base, classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s)


def api_baseline_names(scenario: Scenario) -> list[str]:
    """Names of the metrics of the every-request-to-the-API alternative."""
    empty = pd.DataFrame({col: [] for col in ("arrival_s", "class_name", "status", *LATENCIES)})
    hz = scenario.horizon
    return list(
        baseline_latency_metrics(
            empty, scenario.workload.classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s
        )
    )


def dynamics_metrics(
    served: Served | PooledServed,
    request_sums: np.ndarray,
    replicas: pd.DataFrame,
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
    mean, most = served.ready_replicas
    if not np.isnan(mean):
        out["replicas_ready_mean"] = mean
        out["replicas_ready_max"] = most
    for key, value in served.events.items():
        out[key] = float(value)
    cold, cold_ttft_s, cold_done, interrupted, recomputed = request_sums
    out["cold_start_requests"] = float(cold)
    out["cold_start_ttft_mean_s"] = cold_ttft_s / cold_done if cold_done else float("nan")
    out["interrupted_requests"] = float(interrupted)
    out["tokens_recomputed"] = float(recomputed)
    return out


def dynamics_sums(requests: pd.DataFrame, w0: float, w1: float) -> np.ndarray:
    """What the dynamics metrics need of the requests arriving in ``[w0, w1)``, summable
    over batches: cold-start arrivals, the TTFT sum and count of those completed,
    interrupted requests, tokens recomputed."""
    arrival = requests["arrival_s"].to_numpy()
    arrived = (arrival >= w0) & (arrival < w1)
    cold = requests["cold_start"].to_numpy() & arrived
    done = cold & (requests["status"] == "completed").to_numpy()
    ttft = requests["ttft_s"].to_numpy()[done]
    return np.array(
        [
            cold.sum(),
            ttft[~np.isnan(ttft)].sum(),
            (~np.isnan(ttft)).sum(),
            ((requests["interruptions"].to_numpy() > 0) & arrived).sum(),
            requests["recomputed_tokens"].to_numpy()[arrived].sum(),
        ],
        dtype=np.float64,
    )


def frame_prompts(requests: pd.DataFrame, workload: Workload) -> PromptBlocks | None:
    """The workload's prompt identities in the order of the request table (sorted by
    arrival, open-loop rows in workload order); None without identities."""
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


def records_and_metrics(
    scenario: Scenario, served: Served | PooledServed, api: ApiResult | None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The finished run's request table (``api``: the hosted APIs' outcome of the requests
    it sent them), its replica table, and the latency, SLO and utilisation metrics of the
    two. The engine's per-request rows are freed once the table holds them; a closed loop
    that never made progress is an error (:func:`check_progress`)."""
    hz = scenario.horizon
    requests = served.requests(api)
    # the table holds everything the metrics need: the engine's per-request rows go
    served.release_rows()
    check_progress(scenario, progress_counts(scenario, requests))
    metrics: dict[str, Any] = dict(
        request_metrics(
            requests, scenario.workload.classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s
        )
    )
    replicas = served.replicas()
    replicas["requests_completed"] = completed_by_replica(requests, len(replicas))
    metrics.update(fleet_metrics(replicas))
    return requests, replicas, metrics


def simulate_routed(
    scenario: Scenario, providers: ApiProviders, sent: ToApi, seed: SeedLike
) -> ApiResult | None:
    """The hosted APIs' outcome of the requests the fleet routed to them (None when none
    was), each provider drawing from its substream of the routed stream
    (:func:`sim.seeds.routed_api_stream`)."""
    if not len(sent):
        return None
    routed = routed_api_stream(scenario.routing.policy)
    return simulate_apis(
        providers,
        sent.class_name,
        sent.arrival_s,
        sent.input_tokens,
        sent.output_tokens,
        rng_of=lambda name: np.random.default_rng(provider_stream(seed, routed, name)),
    )


def add_cache_columns(
    requests: pd.DataFrame,
    scenario: Scenario,
    prompts: PromptBlocks | None,
    providers: ApiProviders,
) -> CacheTokens | None:
    """Add ``cached_input_tokens`` (and, with prompt identities, ``cache_write_tokens``) to
    the request table: the API's caches replayed from ``prompts`` when given
    (:func:`sim.economics.apis.api_cache_tokens`, returned), else the classes' declared
    shares (:func:`api_cached_tokens`)."""
    if prompts is None:
        requests["cached_input_tokens"] = api_cached_tokens(requests, scenario)
        return None
    # the API's caches replayed from the prompts: what the API served read and wrote
    cache_tokens = api_cache_tokens(requests, prompts, providers)
    requests["cached_input_tokens"] = cache_tokens[0]
    requests["cache_write_tokens"] = cache_tokens[1]
    return cache_tokens


def serve_scenario(
    scenario: Scenario,
    workload: Workload | WorkloadStream,
    seed: SeedLike,
    replica: ReplicaConfig,
    *,
    window_s: float | None = None,
    retire: Callable[[Retired], None] | None = None,
) -> Served:
    """The scenario's fleet serving ``workload``: its routing, per-class routes and
    prefixes, the router's and the faults' substreams (:func:`sim.engine.serve.serve`;
    ``window_s`` and ``retire`` for a streamed workload)."""
    return serve(
        scenario.single_fleet("a single fleet's engine"),
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
        window_s=window_s,
        retire=retire,
    )
