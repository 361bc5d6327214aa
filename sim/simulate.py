"""One replication: sample the workload, run the fleet, collect per-request records."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.engine import kernel as K
from sim.engine.fleet import SAMPLE_COLUMNS, FleetRun, run_fleet
from sim.engine.replica import ReplicaConfig, build_replica
from sim.fleet_spec import RooflineStep
from sim.metrics import fleet_metrics, replica_table, request_metrics
from sim.scenario import Scenario
from sim.workload import sample_workload

SeedLike = int | np.random.SeedSequence

# Substream indices: fixed per component so that adding a component never shifts the
# draws of another (common random numbers across fleet and routing options).
STREAM_WORKLOAD = 0
STREAM_ROUTER = 1

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


def requests_frame(run: FleetRun, class_names: tuple[str, ...]) -> pd.DataFrame:
    """Per-request records of a finished run as a tidy DataFrame."""
    n = run.state.n_requests
    rf = run.state.rf[:n]
    ri = run.state.ri[:n]
    status = ri[:, K.STATUS].copy()
    reason = ri[:, K.REASON].copy()
    unfinished = (status != K.ST_COMPLETED) & (status != K.ST_REJECTED)
    status[unfinished] = K.ST_FAILED
    reason[unfinished] = K.R_DRAIN
    arrival = rf[:, K.ARR]
    first = rf[:, K.FIRST]
    finish = np.where(status == K.ST_COMPLETED, rf[:, K.FINISH], np.nan)
    out = ri[:, K.OUT]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(out > 1, (finish - first) / (out - 1), np.nan)
    order = np.argsort(arrival, kind="stable")
    frame = pd.DataFrame(
        {
            "arrival_s": arrival,
            "class_name": _categorical(ri[:, K.CLS], class_names),
            "input_tokens": ri[:, K.PROMPT],
            "output_tokens": out,
            "route": _categorical(np.zeros(n, dtype=np.int8), ("fleet", "api")),
            "replica": ri[:, K.REP],
            "status": _categorical(_STATUS_CODE[status], tuple(STATUS_NAMES.values())),
            "reason": _categorical(reason, K.REASONS),
            "queue_s": rf[:, K.ADMIT] - arrival,
            "ttft_s": np.where(status == K.ST_COMPLETED, first - arrival, np.nan),
            "tpot_s": tpot,
            "e2e_s": finish - arrival,
            "finish_s": finish,
            "preemptions": ri[:, K.NPRE],
            "recomputed_tokens": ri[:, K.RECOMP],
        }
    )
    return frame.iloc[order].reset_index(drop=True)


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
    run = run_fleet(scenario.fleet, replica, workload, hz, router_rng=router_rng)
    requests = requests_frame(run, workload.class_names)
    classes = scenario.workload.classes
    metrics: dict[str, Any] = {}
    metrics.update(
        request_metrics(requests, classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s)
    )
    step = scenario.fleet.step_time
    replicas = replica_table(
        run.window,
        warmup_s=hz.warmup_s,
        duration_s=hz.duration_s,
        kv_blocks=replica.kv_blocks,
        efficiencies=(
            (step.compute_efficiency, step.bandwidth_efficiency)
            if isinstance(step, RooflineStep)
            else None
        ),
    )
    served = requests[requests["status"] == "completed"].groupby("replica").size()
    replicas["requests_completed"] = served.reindex(replicas["replica"], fill_value=0).to_numpy()
    metrics.update(fleet_metrics(replicas))
    ts = pd.DataFrame(run.samples, columns=list(SAMPLE_COLUMNS))
    ts = ts.astype({c: "int64" for c in SAMPLE_COLUMNS[1:]})
    return Outcome(
        scenario, requests, {k: float(v) for k, v in metrics.items()}, ts, replicas, replica
    )
