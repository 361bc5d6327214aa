"""Per-replication metrics, computed after the run from the raw per-request records.

Every name produced here is defined, with its unit, in the metrics glossary of the README.
Latency metrics use the requests that *arrive* inside the measurement window
``[warmup_s, duration_s)``; utilisation uses the GPU time inside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sim.replication.fold import LATENCIES, QUANTILES, RequestStats, slo_met
from sim.workload.spec import ClassSpec

__all__ = [
    "LATENCIES",
    "QUANTILES",
    "backlog",
    "baseline_latency_metrics",
    "fleet_metrics",
    "request_metrics",
    "slo_met",
]


def backlog(requests: pd.DataFrame, *, since_s: float, at_s: float) -> int:
    """Requests that arrived in ``[since_s, at_s)`` and were still on the fleet at ``at_s``:
    waiting or running, neither rejected nor finished by then (the API's requests are not
    the fleet's backlog).

    A fleet that keeps up has a backlog that does not grow with time; one that cannot keep
    up has a backlog growing in proportion to the window (arrivals minus service).

    Examples
    --------
    >>> import pandas as pd
    >>> reqs = pd.DataFrame({"arrival_s": [0.0, 1.0, 2.0, 3.0],
    ...     "status": ["completed", "completed", "rejected", "failed"],
    ...     "finish_s": [0.5, 9.0, float("nan"), float("nan")],
    ...     "route": ["fleet"] * 4})
    >>> backlog(reqs, since_s=0.0, at_s=5.0)
    2
    """
    arrival = requests["arrival_s"].to_numpy(dtype=float)
    finish = requests["finish_s"].to_numpy(dtype=float)
    status = requests["status"]
    on_fleet = (
        (requests["route"] == "fleet").to_numpy()
        if "route" in requests
        else np.ones(len(arrival), bool)
    )
    rejected = (status == "rejected").to_numpy()
    arrived = (arrival >= since_s) & (arrival < at_s) & on_fleet & ~rejected
    done = (status == "completed").to_numpy() & (finish < at_s)
    return int((arrived & ~done).sum())


def request_metrics(
    requests: pd.DataFrame,
    classes: Sequence[ClassSpec],
    *,
    warmup_s: float,
    duration_s: float,
) -> dict[str, float]:
    """Latency, throughput and SLO metrics over the measurement window
    (:class:`~sim.replication.fold.RequestStats` with every latency kept)."""
    stats = RequestStats(classes, warmup_s=warmup_s, duration_s=duration_s)
    stats.add(requests)
    return stats.metrics()


def baseline_latency_metrics(
    requests: pd.DataFrame,
    classes: Sequence[ClassSpec],
    *,
    warmup_s: float,
    duration_s: float,
    prefix: str = "api_only_",
) -> dict[str, float]:
    """Latency and SLO metrics of an alternative outcome of the same requests (e.g. every
    request sent to the API), named with ``prefix``."""
    stats = RequestStats(classes, warmup_s=warmup_s, duration_s=duration_s)
    stats.add(requests)
    return stats.latency_metrics(prefix)


def fleet_metrics(replicas: pd.DataFrame) -> dict[str, float]:
    """Fleet-level utilisation metrics from the replica table
    (:meth:`sim.engine.serve.Served.replicas`)."""
    busy = replicas["gpu_busy_fraction"].to_numpy()
    batch_int = (replicas["batch_size_mean"].fillna(0.0) * busy).sum()
    steps = replicas["iterations"].to_numpy()
    step_int = (replicas["step_time_mean_s"].fillna(0.0) * steps).sum()
    out = {
        "gpu_busy_fraction": float(busy.mean()),
        "gpu_busy_fraction_min": float(busy.min()),
        "gpu_busy_fraction_max": float(busy.max()),
        "kv_occupancy_mean": float(replicas["kv_occupancy_mean"].mean()),
        "compute_utilisation": float(replicas["compute_utilisation"].mean()),
        "bandwidth_utilisation": float(replicas["bandwidth_utilisation"].mean()),
        "batch_size_mean": float(batch_int / busy.sum()) if busy.sum() > 0 else float("nan"),
        "step_time_mean_s": float(step_int / steps.sum()) if steps.sum() > 0 else float("nan"),
        "preemptions": float(replicas["preemptions"].sum()),
        "prefix_hit_rate": float(replicas["prefix_hit_rate"].mean()),
    }
    if "prefill_tokens_saved" in replicas and replicas["prefix_hit_rate"].notna().any():
        # requests carry prompt identity: the prompt tokens the fleet did not prefill
        out["prefill_tokens_saved"] = float(replicas["prefill_tokens_saved"].sum())
    return out
