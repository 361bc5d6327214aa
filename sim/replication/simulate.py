"""One replication: sample the workload, run the fleet, collect per-request records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.economics.apis import ApiProviders, api_cache_tokens
from sim.engine.replica import ReplicaConfig, build_replica
from sim.labels import labels
from sim.replication.billing import replication_costs, simulate_apis
from sim.replication.budget import check_memory
from sim.replication.metrics import (
    baseline_latency_metrics,
    fleet_metrics,
    request_metrics,
)
from sim.replication.parts import (
    api_baseline_frame,
    api_baseline_names,
    api_cached_tokens,
    check_progress,
    class_routes,
    completed_by_replica,
    dynamics_metrics,
    dynamics_sums,
    progress_counts,
    scenario_apis,
    serve_scenario,
)
from sim.replication.stream import simulate_streamed
from sim.scenario import Scenario
from sim.seeds import (
    STREAM_API_BASELINE,
    STREAM_WORKLOAD,
    SeedLike,
    provider_stream,
    routed_api_stream,
    substream,
)
from sim.workload import Workload, sample_workload
from sim.workload.identity import PromptBlocks

__all__ = ["Outcome", "class_routes", "sample", "scenario_apis", "serve_scenario", "simulate"]


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
    n_requests
        Requests simulated (open- and closed-loop); ``len(requests)`` unless
        ``horizon.records`` kept a sample or none of them.
    """

    scenario: Scenario
    requests: pd.DataFrame
    metrics: dict[str, float]
    timeseries: pd.DataFrame
    replicas: pd.DataFrame
    replica: ReplicaConfig
    n_requests: int = -1

    def __post_init__(self) -> None:
        if self.n_requests < 0:
            object.__setattr__(self, "n_requests", len(self.requests))

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{k}</td><td>{v:.4g}</td></tr>"
            for k, v in self.metrics.items()
            if "[" not in k
        )
        return (
            f"<b>Outcome of {self.scenario.name!s}</b> ({self.n_requests:,} requests)"
            f"<table>{rows}</table>"
        )


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


def sample(scenario: Scenario, seed: SeedLike) -> Workload:
    """The replication's requests: the workload sampled from its own substream."""
    return sample_workload(
        scenario.workload,
        duration_s=scenario.horizon.duration_s,
        seed=substream(seed, STREAM_WORKLOAD),
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
    n_expected = check_memory(scenario)
    replica = build_replica(scenario.fleet)
    hz = scenario.horizon
    if hz.records != "all":
        sampled, streamed, ts, reps = simulate_streamed(scenario, seed, replica, n_expected)
        n = int(streamed.pop("requests_simulated"))
        metrics_s = {k: float(v) for k, v in streamed.items()}
        return Outcome(scenario, sampled, metrics_s, ts, reps, replica, n_requests=n)
    classes = scenario.workload.classes
    workload = sample(scenario, seed)
    # kept only to align prompt identities with the request table; otherwise freed once the
    # engine has copied the requests (it would double the memory of the run's peak)
    identified = workload if workload.prompt_blocks is not None else None
    served = serve_scenario(scenario, workload, seed, replica)
    del workload
    providers = scenario_apis(scenario)
    sent = served.to_api()
    api_result = None
    if len(sent):
        routed = routed_api_stream(scenario.routing.policy)
        api_result = simulate_apis(
            providers,
            sent.class_name,
            sent.arrival_s,
            sent.input_tokens,
            sent.output_tokens,
            rng_of=lambda name: np.random.default_rng(provider_stream(seed, routed, name)),
        )
    drain_s = served.drain_s
    requests = served.requests(api_result)
    # the table holds everything the metrics need: the engine's per-request rows go
    served.release_rows()
    check_progress(scenario, progress_counts(scenario, requests))
    metrics: dict[str, Any] = {}
    metrics.update(
        request_metrics(requests, classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s)
    )
    replicas = served.replicas()
    replicas["requests_completed"] = completed_by_replica(requests, len(replicas))
    metrics.update(fleet_metrics(replicas))
    prompts = None
    if identified is not None and providers.used():
        prompts = _frame_prompts(requests, identified)
    cache_tokens = None
    if prompts is None:
        requests["cached_input_tokens"] = api_cached_tokens(requests, scenario)
    else:
        # the API's caches replayed from the prompts: what the API served read and wrote
        cache_tokens = api_cache_tokens(requests, prompts, providers)
        requests["cached_input_tokens"] = cache_tokens[0]
        requests["cache_write_tokens"] = cache_tokens[1]
    metrics.update(
        replication_costs(
            scenario,
            requests,
            replicas,
            served,
            providers,
            cache_tokens=cache_tokens,
            drain_s=drain_s,
        )
    )
    if providers.used():
        metrics.update(_api_baseline(scenario, providers, requests, seed))
    ts = served.timeseries()
    if scenario.fleet.dynamic:
        sums = dynamics_sums(requests, hz.warmup_s, hz.duration_s)
        metrics.update(dynamics_metrics(served, sums, replicas, hz.warmup_s, hz.duration_s))
    return Outcome(
        scenario, requests, {k: float(v) for k, v in metrics.items()}, ts, replicas, replica
    )
