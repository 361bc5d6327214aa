"""Small hand-made fleets and workloads for exact engine tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sim.engine.fleet import FleetRun, run_fleet
from sim.engine.replica import build_replica
from sim.fleet_spec import FleetSpec, Horizon
from sim.simulate import requests_frame
from sim.workload import Workload


def fleet(step_s: float = 0.1, **overrides: Any) -> FleetSpec:
    """A fleet with a constant step time (exact arithmetic), overridable."""
    engine = overrides.pop("engine", {})
    data: dict[str, Any] = {
        "model": "llama-3.1-8b",
        "gpu": "h100-sxm",
        "replicas": 1,
        "router": "round_robin",
        "step_time": {"model": "constant", "step_s": step_s},
        "engine": engine,
    }
    data.update(overrides)
    return FleetSpec.model_validate(data)


def workload(requests: list[tuple[float, int, int]], classes: int = 1) -> Workload:
    """Requests given as ``(arrival_s, input_tokens, output_tokens)``."""
    arr = np.array([r[0] for r in requests], dtype=float)
    order = np.argsort(arr, kind="stable")
    return Workload(
        arrival_s=arr[order],
        input_tokens=np.array([r[1] for r in requests], dtype=np.int64)[order],
        output_tokens=np.array([r[2] for r in requests], dtype=np.int64)[order],
        class_id=np.zeros(len(requests), dtype=np.int32),
        class_names=tuple(f"c{i}" for i in range(classes)),
        closed_loop=(),
    )


def run_small(
    spec: FleetSpec, wl: Workload, *, duration_s: float = 100.0, seed: int = 0
) -> tuple[pd.DataFrame, FleetRun]:
    """Run a small case to completion and return its per-request records."""
    # drain until everything has finished, so that conservation can be checked exactly
    hz = Horizon(duration_s=duration_s, warmup_s=0.0, drain_s=1e6, sample_interval_s=duration_s)
    run = run_fleet(spec, build_replica(spec), wl, hz, router_rng=np.random.default_rng(seed))
    return requests_frame(run, wl.class_names), run
