"""Per-replication metrics, computed after the run from the raw per-request records.

Every name produced here is defined, with its unit, in the metrics glossary of the README.
Latency metrics use the requests that *arrive* inside the measurement window
``[warmup_s, duration_s)``; utilisation uses the GPU time inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from sim.labels import labels
from sim.workload.spec import ClassSpec

LATENCIES = ("ttft_s", "tpot_s", "e2e_s", "queue_s")
QUANTILES = (50, 90, 99)


def _latency_stats(
    suffix: str,
    cols: Mapping[str, np.ndarray],
    sel: np.ndarray,
    out: dict[str, float],
    prefix: str = "",
) -> None:
    # mean and quantiles of each latency over the rows `sel` (completed requests chosen);
    # columns are read in place, no table is copied
    for col in LATENCIES:
        base = prefix + col[: -len("_s")]
        values = cols[col][sel]
        values = values[~np.isnan(values)]
        if len(values):
            out[f"{base}_mean_s{suffix}"] = float(values.mean())
            qs = np.percentile(values, QUANTILES)
            for q, v in zip(QUANTILES, qs, strict=True):
                out[f"{base}_p{q}_s{suffix}"] = float(v)
        else:
            out[f"{base}_mean_s{suffix}"] = float("nan")
            for q in QUANTILES:
                out[f"{base}_p{q}_s{suffix}"] = float("nan")


def _latencies(requests: pd.DataFrame) -> dict[str, np.ndarray]:
    return {col: requests[col].to_numpy(dtype=float) for col in LATENCIES}


def _in_window(requests: pd.DataFrame, warmup_s: float, duration_s: float) -> np.ndarray:
    arrival = requests["arrival_s"].to_numpy(dtype=float)
    return (arrival >= warmup_s) & (arrival < duration_s)


def slo_met(frame: pd.DataFrame, classes: Sequence[ClassSpec]) -> np.ndarray:
    """Boolean per request: completed and within its class's TTFT and TPOT targets.

    A request with one output token has no TPOT and is judged on TTFT alone; a class without
    an SLO only needs the request to complete.
    """
    ok = (frame["status"] == "completed").to_numpy().copy()
    names = labels(frame["class_name"])
    ttft = frame["ttft_s"].to_numpy(dtype=float)
    tpot = frame["tpot_s"].to_numpy(dtype=float)
    for cls in classes:
        if cls.slo is None:
            continue
        sel = names == cls.name
        if cls.slo.ttft_s is not None:
            ok[sel] &= ttft[sel] <= cls.slo.ttft_s
        if cls.slo.tpot_s is not None:
            ok[sel] &= ~(tpot[sel] > cls.slo.tpot_s)
    return ok


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
    """Latency, throughput and SLO metrics over the measurement window."""
    span = duration_s - warmup_s
    # boolean masks over the whole table: no copy of it is made
    arrived = _in_window(requests, warmup_s, duration_s)
    status = requests["status"]
    completed = (status == "completed").to_numpy()
    failed = (status == "failed").to_numpy()
    n_arrived = int(arrived.sum())
    out: dict[str, float] = {}
    out["requests_offered"] = float(n_arrived)
    out["requests_completed"] = float((completed & arrived).sum())
    out["requests_rejected"] = float(((status == "rejected").to_numpy() & arrived).sum())
    out["requests_failed"] = float((failed & arrived).sum())
    out["offered_rps"] = n_arrived / span
    fin = requests["finish_s"].to_numpy(dtype=float)
    served = completed & (fin >= warmup_s) & (fin < duration_s)
    out["throughput_rps"] = int(served.sum()) / span
    out["input_tokens_per_s"] = float(requests["input_tokens"].to_numpy()[served].sum()) / span
    out["output_tokens_per_s"] = float(requests["output_tokens"].to_numpy()[served].sum()) / span
    met_all = slo_met(requests, classes)
    met = met_all[arrived]
    out["slo_attainment"] = float(met.mean()) if len(met) else float("nan")
    out["goodput_rps"] = float(met.sum()) / span
    # does the fleet keep up? its backlog halfway through the window and at its end
    mid = (warmup_s + duration_s) / 2
    out["backlog_mid_requests"] = float(backlog(requests, since_s=warmup_s, at_s=mid))
    out["backlog_end_requests"] = float(backlog(requests, since_s=warmup_s, at_s=duration_s))
    cols = _latencies(requests)
    _latency_stats("", cols, completed & arrived, out)
    api = (requests["route"] == "api").to_numpy() if "route" in requests else None
    if api is not None and api[arrived].any():
        on_api = arrived & api
        out["api_share"] = float(api[arrived].mean())
        if "api_attempts" in requests:
            attempts = requests["api_attempts"].to_numpy()[on_api]
            out["api_retries"] = float((attempts - 1).clip(min=0).sum())
            out["api_rate_limited_requests"] = float((attempts > 1).sum())
            out["api_requests_failed"] = float((failed & on_api).sum())
        for route, sel in (("fleet", arrived & ~api), ("api", on_api)):
            _latency_stats(f"[route={route}]", cols, sel & completed, out)
            out[f"slo_attainment[route={route}]"] = float(met_all[sel].mean()) if sel.any() else 0.0
    cached = requests["cached_tokens"].to_numpy() if "cached_tokens" in requests else None
    if cached is not None and not cached.any():
        cached = None  # no prompt identity, or nothing ever found cached
    if len(classes) > 1:
        names = labels(requests["class_name"])
        for cls in classes:
            part = arrived & (names == cls.name)
            suffix = f"[{cls.name}]"
            _latency_stats(suffix, cols, part & completed, out)
            m = met_all[part]
            out[f"slo_attainment{suffix}"] = float(m.mean()) if len(m) else float("nan")
            out[f"offered_rps{suffix}"] = int(part.sum()) / span
            if api is not None:
                share = api[part].mean() if part.any() else float("nan")
                out[f"api_share{suffix}"] = float(share)
            if cached is not None:
                out[f"prefix_hit_rate{suffix}"] = _hit_rate(requests, cached, part & completed)
    return out


def _hit_rate(requests: pd.DataFrame, cached: np.ndarray, sel: np.ndarray) -> float:
    # prompt tokens found in a replica's prefix cache / prompt tokens, over the rows `sel`
    prompt = int(requests["input_tokens"].to_numpy()[sel].sum())
    return float(cached[sel].sum()) / prompt if prompt > 0 else float("nan")


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
    arrived = _in_window(requests, warmup_s, duration_s)
    status = requests["status"]
    completed = (status == "completed").to_numpy()
    out: dict[str, float] = {}
    _latency_stats("", _latencies(requests), completed & arrived, out, prefix=prefix)
    met = slo_met(requests, classes)[arrived]
    out[f"{prefix}slo_attainment"] = float(met.mean()) if len(met) else float("nan")
    out[f"{prefix}requests_failed"] = float(((status == "failed").to_numpy() & arrived).sum())
    return out


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
