"""One replication: sample the workload, run the fleet, collect per-request records."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.api import ApiResult
from sim.billing import replication_costs, simulate_apis
from sim.economics.apis import MAIN_API, ApiProviders, api_providers
from sim.engine import kernel as K
from sim.engine.fleet import REPLICA_STATES, SAMPLE_COLUMNS, FleetRun, run_fleet
from sim.engine.replica import ReplicaConfig, build_replica
from sim.metrics import (
    LATENCIES,
    baseline_latency_metrics,
    fleet_metrics,
    replica_table,
    request_metrics,
)
from sim.scenario import Scenario
from sim.workload import sample_workload

SeedLike = int | np.random.SeedSequence

# Substream indices: fixed per component so that adding a component never shifts the
# draws of another (common random numbers across fleet and routing options). The ``api``
# section's provider draws from STREAM_API (requests routed to it) and STREAM_API_BASELINE
# (the all-API baseline); every further provider from a child of those, keyed by its name
# (:func:`provider_stream`).
STREAM_WORKLOAD = 0
STREAM_ROUTER = 1
STREAM_API = 2
STREAM_API_BASELINE = 3
STREAM_FAULTS = 4

STATUS_NAMES = {
    K.ST_COMPLETED: "completed",
    K.ST_REJECTED: "rejected",
    K.ST_FAILED: "failed",
}


# engine status code -> position in STATUS_NAMES
_STATUS_CODE = np.zeros(K.ST_FAILED + 1, dtype=np.int8)
_STATUS_CODE[K.ST_REJECTED] = 1
_STATUS_CODE[K.ST_FAILED] = 2


def substream(seed: SeedLike, index: int) -> np.random.SeedSequence:
    """The ``index``-th independent child stream of ``seed``, by position, not by order of use.

    Examples
    --------
    >>> a = substream(7, 0).generate_state(1)[0]
    >>> b = substream(7, 0).generate_state(1)[0]
    >>> bool(a == b)
    True
    """
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, index))


def provider_stream(seed: SeedLike, stream: int, provider: str) -> np.random.SeedSequence:
    """The random stream of one API provider: ``substream(seed, stream)`` for the ``api``
    section's, else its child keyed by the CRC-32 of the provider's name, so adding or
    removing a provider shifts no other draws.

    Examples
    --------
    >>> provider_stream(7, STREAM_API, "api").spawn_key
    (2,)
    >>> provider_stream(7, STREAM_API, "apis.cheap").spawn_key
    (2, 1081156077)
    """
    base = substream(seed, stream)
    if provider == MAIN_API:
        return base
    return substream(base, zlib.crc32(provider.encode()))


def scenario_apis(scenario: Scenario) -> ApiProviders:
    """Each class's API provider (see :func:`sim.economics.apis.api_providers`).

    Examples
    --------
    >>> from sim import load_scenario
    >>> dict(scenario_apis(load_scenario("scenarios/chat-startup.yaml")).of_class)
    {'chat': 'api'}
    """
    return api_providers(
        scenario.api,
        scenario.apis,
        {c.name: c.api_model for c in scenario.workload.classes},
    )


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


def _categorical(codes: np.ndarray, names: tuple[str, ...]) -> pd.Categorical[str]:
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=pd.Index(list(names)))


def class_routes(scenario: Scenario) -> np.ndarray:
    """Per class, whether its requests may leave the fleet (``kernel.CR_*`` codes).

    Private classes, closed loops of users and classes without any API stay on the fleet
    (``CR_FLEET_ONLY``); classes the open model cannot serve (``open_model_ok: false``) and,
    under ``class_based``, the listed classes always go to the API (``CR_API``; under
    ``self_host_only`` nothing leaves); every other class is eligible for ``api_only``,
    ``spillover``, ``cold_start_spill`` and what the fleet has to reject.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/chat-startup.yaml")
    >>> class_routes(s).tolist() == [K.CR_ELIGIBLE]
    True
    >>> t = s.with_overrides({"workload.classes.chat.open_model_ok": False})
    >>> class_routes(t).tolist() == [K.CR_API]
    True
    """
    providers = scenario_apis(scenario)
    routing = scenario.routing
    listed = set(routing.api_classes) if routing.policy == "class_based" else set()
    codes = []
    for cls in scenario.workload.classes:
        no_api = providers.spec_of(cls.name) is None
        if cls.private or cls.arrivals.process == "closed_loop" or no_api:
            codes.append(K.CR_FLEET_ONLY)
        elif not cls.open_model_ok or cls.name in listed:
            codes.append(K.CR_API)
        else:
            codes.append(K.CR_ELIGIBLE)
    return np.asarray(codes, dtype=np.int64)


def requests_frame(
    run: FleetRun, class_names: tuple[str, ...], api: ApiResult | None = None
) -> pd.DataFrame:
    """Per-request records of a finished run as a tidy DataFrame.

    ``api`` holds the hosted API's outcome of the requests the engine routed there, in
    engine order.
    """
    n = run.state.n_requests
    rf = run.state.rf[:n]
    ri = run.state.ri[:n]
    status = ri[:, K.STATUS].copy()
    reason = ri[:, K.REASON].copy()
    to_api = status == K.ST_API
    unfinished = (status != K.ST_COMPLETED) & (status != K.ST_REJECTED) & ~to_api
    status[unfinished] = K.ST_FAILED
    reason[unfinished] = K.R_DRAIN
    arrival = rf[:, K.ARR]
    # the server's front end adds a constant to what the client sees (not to queueing)
    front = run.state.fleet.engine.frontend_latency_s
    first = rf[:, K.FIRST] - arrival + front
    e2e = rf[:, K.FINISH] - arrival + front
    queue = rf[:, K.ADMIT] - arrival
    attempts = np.zeros(n, dtype=np.int64)
    provisioned = np.zeros(n, dtype=bool)
    if to_api.any():
        if api is None or len(api.status) != int(to_api.sum()):
            raise ValueError("requests routed to the API need its simulated outcome")
        ok = api.status == 0
        status[to_api] = np.where(ok, K.ST_COMPLETED, K.ST_FAILED)
        reason[to_api] = np.where(ok, K.R_NONE, K.R_RATE)
        first[to_api] = api.ttft_s
        e2e[to_api] = api.e2e_s
        queue[to_api] = np.nan
        attempts[to_api] = api.attempts
        provisioned[to_api] = api.provisioned
    done = status == K.ST_COMPLETED
    out = ri[:, K.OUT]
    pfx_len = run.state.prefix_tokens
    prefix = (
        np.zeros(n, dtype=np.int64)
        if pfx_len is None
        else np.asarray(pfx_len, dtype=np.int64)[ri[:, K.CLS]] * ri[:, K.HASPFX]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(done & (out > 1), (e2e - first) / (out - 1), np.nan)
    order = np.argsort(arrival, kind="stable")
    frame = pd.DataFrame(
        {
            "arrival_s": arrival,
            "class_name": _categorical(ri[:, K.CLS], class_names),
            "input_tokens": ri[:, K.PROMPT],
            "output_tokens": out,
            "prefix_tokens": prefix,
            "route": _categorical(to_api.astype(np.int8), ("fleet", "api")),
            "replica": ri[:, K.REP],
            "status": _categorical(_STATUS_CODE[status], tuple(STATUS_NAMES.values())),
            "reason": _categorical(reason, K.REASONS),
            "queue_s": queue,
            "ttft_s": np.where(done, first, np.nan),
            "tpot_s": tpot,
            "e2e_s": np.where(done, e2e, np.nan),
            "finish_s": np.where(done, arrival + e2e, np.nan),
            "preemptions": ri[:, K.NPRE],
            "recomputed_tokens": ri[:, K.RECOMP],
            "interruptions": ri[:, K.NINT],
            "cold_start": ri[:, K.COLD].astype(bool),
            "api_attempts": attempts,
            "api_provisioned": provisioned,
        }
    )
    return frame.iloc[order].reset_index(drop=True)


def _api_cached_tokens(requests: pd.DataFrame, scenario: Scenario) -> np.ndarray:
    # prompt tokens the API would bill at its cached-input price: the shared prefix a request
    # carries, plus the class's declared cached share of the rest of its prompt
    frac = {c.name: c.api_cached_input_fraction for c in scenario.workload.classes}
    share = requests["class_name"].astype(str).map(frac).to_numpy(dtype=float)
    prefix = requests["prefix_tokens"].to_numpy()
    rest = requests["input_tokens"].to_numpy() - prefix
    return prefix + np.round(share * rest).astype(np.int64)


def _api_baseline(
    scenario: Scenario, providers: ApiProviders, requests: pd.DataFrame, seed: SeedLike
) -> dict[str, float]:
    # every request sent to its class's API instead: the latency side of the comparison
    # (its bill is priced in cost_metrics), each provider drawing from its own substream.
    # Without an API for every class there is no such alternative: NaN.
    hz = scenario.horizon
    classes = scenario.workload.classes
    order = np.argsort(requests["arrival_s"].to_numpy(), kind="stable")
    frame = requests.iloc[order]
    if not providers.complete:
        empty = pd.DataFrame({col: [] for col in ("arrival_s", "class_name", "status", *LATENCIES)})
        names = baseline_latency_metrics(
            empty, classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s
        )
        return dict.fromkeys(names, float("nan"))
    res = simulate_apis(
        providers,
        frame["class_name"].astype(str).to_numpy(),
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
    run: FleetRun,
    requests: pd.DataFrame,
    replicas: pd.DataFrame,
    ts: pd.DataFrame,
    w0: float,
    w1: float,
) -> dict[str, float]:
    # replica counts over time, cold starts, interruptions and the work they cost
    out: dict[str, float] = {}
    life = run.lifetimes if run.lifetimes is not None else np.zeros((0, 2))
    overlap = np.clip(np.minimum(life[:, 1], w1) - np.maximum(life[:, 0], w0), 0, None)
    out["replicas_paid_mean"] = float(overlap.sum() / (w1 - w0))
    # utilisation of what was paid for, not of every slot the engine could have used: the
    # fleet's over all paid replica-time, each slot's over its own paid time
    keys = ("gpu_busy_fraction", "compute_utilisation", "bandwidth_utilisation")
    used_s = {k: replicas[k].to_numpy(dtype=float) * (w1 - w0) for k in keys}
    paid_s = float(overlap.sum())
    if paid_s > 0:
        for key in keys:
            out[key] = float(np.nansum(used_s[key]) / paid_s)
    if run.lifetime_slots is not None and len(run.lifetime_slots):
        paid = np.bincount(run.lifetime_slots, weights=overlap, minlength=len(replicas))
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
    for key, value in run.events.items():
        out[key] = float(value)
    arrived = requests[(requests["arrival_s"] >= w0) & (requests["arrival_s"] < w1)]
    cold = arrived[arrived["cold_start"] & (arrived["status"] == "completed")]
    out["cold_start_requests"] = float(arrived["cold_start"].sum())
    out["cold_start_ttft_mean_s"] = float(cold["ttft_s"].mean()) if len(cold) else float("nan")
    out["interrupted_requests"] = float((arrived["interruptions"] > 0).sum())
    out["tokens_recomputed"] = float(arrived["recomputed_tokens"].sum())
    return out


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
    replica = build_replica(scenario.fleet)
    hz = scenario.horizon
    workload = sample_workload(
        scenario.workload, duration_s=hz.duration_s, seed=substream(seed, STREAM_WORKLOAD)
    )
    router_rng = np.random.default_rng(substream(seed, STREAM_ROUTER))
    run = run_fleet(
        scenario.fleet,
        replica,
        workload,
        hz,
        router_rng=router_rng,
        routing=scenario.routing,
        class_route=class_routes(scenario),
        prefix_tokens=np.array(
            [0 if c.prefix is None else c.prefix.tokens for c in scenario.workload.classes]
        ),
        fault_rng=np.random.default_rng(substream(seed, STREAM_FAULTS)),
    )
    api_result = None
    n = run.state.n_requests
    to_api = run.state.ri[:n, K.STATUS] == K.ST_API
    providers = scenario_apis(scenario)
    if to_api.any():
        api_result = simulate_apis(
            providers,
            np.asarray(workload.class_names)[run.state.ri[:n, K.CLS][to_api]],
            run.state.rf[:n, K.ARR][to_api],
            run.state.ri[:n, K.PROMPT][to_api],
            run.state.ri[:n, K.OUT][to_api],
            rng_of=lambda name: np.random.default_rng(provider_stream(seed, STREAM_API, name)),
        )
    requests = requests_frame(run, workload.class_names, api_result)
    classes = scenario.workload.classes
    metrics: dict[str, Any] = {}
    metrics.update(
        request_metrics(requests, classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s)
    )
    replicas = replica_table(
        run.window,
        warmup_s=hz.warmup_s,
        duration_s=hz.duration_s,
        kv_blocks=replica.kv_blocks,
        efficiencies=replica.coefficients.efficiencies,
    )
    served = requests[requests["status"] == "completed"].groupby("replica").size()
    replicas["requests_completed"] = served.reindex(replicas["replica"], fill_value=0).to_numpy()
    metrics.update(fleet_metrics(replicas))
    requests["cached_input_tokens"] = _api_cached_tokens(requests, scenario)
    metrics.update(replication_costs(scenario, replica, requests, replicas, run, providers))
    if providers.used():
        metrics.update(_api_baseline(scenario, providers, requests, seed))
    ts = pd.DataFrame(run.samples, columns=list(SAMPLE_COLUMNS))
    ts = ts.astype({c: "int64" for c in SAMPLE_COLUMNS[1:]})
    ts["state"] = _categorical(ts["state"].to_numpy(), REPLICA_STATES)
    if scenario.fleet.dynamic:
        metrics.update(_dynamics_metrics(run, requests, replicas, ts, hz.warmup_s, hz.duration_s))
    return Outcome(
        scenario, requests, {k: float(v) for k, v in metrics.items()}, ts, replicas, replica
    )
