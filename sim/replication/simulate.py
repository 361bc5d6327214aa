"""One replication: sample the workload, run the fleet, collect per-request records."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from sim.engine.replica import ReplicaConfig, build_replica
from sim.replication.billing import replication_costs
from sim.replication.budget import check_memory
from sim.replication.parts import (
    add_cache_columns,
    api_baseline_metrics,
    class_routes,
    dynamics_metrics,
    dynamics_sums,
    frame_prompts,
    records_and_metrics,
    scenario_apis,
    serve_scenario,
    simulate_routed,
)
from sim.replication.pooled import pooled_replication
from sim.replication.stream import simulate_streamed
from sim.scenario import Scenario
from sim.seeds import (
    STREAM_WORKLOAD,
    SeedLike,
    substream,
)
from sim.workload import Workload, sample_workload

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


def replica_fleet_dynamic(scenario: Scenario) -> bool:
    """Some pool of the fleet starts and stops replicas (autoscaling, spot, failures)."""
    return any(p.dynamic for p in scenario.pools)


def _simulate_pooled(scenario: Scenario, seed: SeedLike) -> Outcome:
    # a fleet of several pools (sim.replication.pooled); its replica: the first pool's
    workload = sample(scenario, seed)
    requests, metrics, ts, replicas = pooled_replication(scenario, workload, seed)
    return Outcome(scenario, requests, metrics, ts, replicas, build_replica(scenario.pools[0]))


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
    if scenario.pooled:
        return _simulate_pooled(scenario, seed)
    replica = build_replica(scenario.single_fleet("a single replica"))
    hz = scenario.horizon
    if hz.records != "all":
        sampled, streamed, ts, reps = simulate_streamed(scenario, seed, replica, n_expected)
        n = int(streamed.pop("requests_simulated"))
        metrics_s = {k: float(v) for k, v in streamed.items()}
        return Outcome(scenario, sampled, metrics_s, ts, reps, replica, n_requests=n)
    workload = sample(scenario, seed)
    # kept only to align prompt identities with the request table; otherwise freed once the
    # engine has copied the requests (it would double the memory of the run's peak)
    identified = workload if workload.prompt_blocks is not None else None
    served = serve_scenario(scenario, workload, seed, replica)
    del workload
    providers = scenario_apis(scenario)
    api_result = simulate_routed(scenario, providers, served.to_api(), seed)
    drain_s = served.drain_s
    requests, replicas, metrics = records_and_metrics(scenario, served, api_result)
    prompts = None
    if identified is not None and providers.used():
        prompts = frame_prompts(requests, identified)
    cache_tokens = add_cache_columns(requests, scenario, prompts, providers)
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
        metrics.update(api_baseline_metrics(scenario, providers, requests, seed))
    ts = served.timeseries()
    if replica_fleet_dynamic(scenario):
        sums = dynamics_sums(requests, hz.warmup_s, hz.duration_s)
        metrics.update(dynamics_metrics(served, sums, replicas, hz.warmup_s, hz.duration_s))
    return Outcome(
        scenario, requests, {k: float(v) for k, v in metrics.items()}, ts, replicas, replica
    )
