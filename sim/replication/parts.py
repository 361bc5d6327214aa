"""Pieces of one replication's metrics that add up over batches of requests.

A replication with its records computes them once over its whole per-request table; a
streamed one (:mod:`sim.replication.stream`) adds them up as requests finish. Both call
these functions, so the two agree by construction.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from sim.economics.apis import ApiProviders
from sim.economics.gpu_bill import overlap_s
from sim.engine.replica import ReplicaConfig
from sim.engine.serve import ROUTE_API, ROUTE_EITHER, ROUTE_FLEET_ONLY, Retired, Served, serve
from sim.hosted_api import ApiResult
from sim.labels import labels
from sim.replication.metrics import LATENCIES, baseline_latency_metrics
from sim.scenario import Scenario
from sim.scenario_io import ScenarioError
from sim.seeds import STREAM_FAULTS, STREAM_ROUTER, SeedLike, substream
from sim.workload import Workload
from sim.workload.arrivals import ClosedLoopArrivals
from sim.workload.sample import WorkloadStream

__all__ = [
    "api_baseline_frame",
    "api_baseline_names",
    "api_cached_tokens",
    "check_progress",
    "class_routes",
    "completed_by_replica",
    "dynamics_metrics",
    "dynamics_sums",
    "progress_counts",
    "scenario_apis",
    "serve_scenario",
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
    served: Served,
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
        window_s=window_s,
        retire=retire,
    )
