"""Small hand-made fleets and workloads for exact engine tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sim.economics.spec import ApiSpec
from sim.engine.replica import build_replica
from sim.engine.routing import RoutingSpec
from sim.engine.serve import Served, serve
from sim.engine.spec import FleetSpec, Horizon
from sim.hosted_api import simulate_api
from sim.workload import Workload


def fleet(step_s: float = 0.1, **overrides: Any) -> FleetSpec:
    """A fleet with a constant step time (exact arithmetic), overridable."""
    # no front-end latency: event logs compare engine timestamps exactly
    engine = {"frontend_latency_s": 0.0, **overrides.pop("engine", {})}
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


def workload(
    requests: list[tuple[float, int, int]] | list[tuple[float, int, int, int, bool]],
    classes: int = 1,
) -> Workload:
    """Requests given as ``(arrival_s, input_tokens, output_tokens)``, optionally followed by
    ``(class_id, carries_prefix)``."""
    arr = np.array([r[0] for r in requests], dtype=float)
    order = np.argsort(arr, kind="stable")
    cls = np.array([r[3] if len(r) > 3 else 0 for r in requests], dtype=np.int32)
    pfx = np.array([bool(r[4]) if len(r) > 4 else False for r in requests])
    return Workload(
        arrival_s=arr[order],
        input_tokens=np.array([r[1] for r in requests], dtype=np.int64)[order],
        output_tokens=np.array([r[2] for r in requests], dtype=np.int64)[order],
        class_id=cls[order],
        class_names=tuple(f"c{i}" for i in range(classes)),
        closed_loop=(),
        has_prefix=pfx[order],
    )


def run_small(
    spec: FleetSpec,
    wl: Workload,
    *,
    duration_s: float = 100.0,
    seed: int = 0,
    prefix_tokens: list[int] | None = None,
    routing: dict[str, Any] | None = None,
    class_route: list[int] | None = None,
) -> tuple[pd.DataFrame, Served]:
    """Run a small case to completion and return its per-request records."""
    # drain until everything has finished, so that conservation can be checked exactly
    hz = Horizon(duration_s=duration_s, warmup_s=0.0, drain_s=1e6, sample_interval_s=duration_s)
    served = serve(
        spec,
        build_replica(spec),
        wl,
        hz,
        router_rng=np.random.default_rng(seed),
        prefix_tokens=prefix_tokens,
        routing=None if routing is None else RoutingSpec.model_validate(routing),
        class_route=class_route,
        fault_rng=np.random.default_rng(seed + 1),
    )
    sent = served.to_api()
    api = None
    if len(sent):
        api = simulate_api(
            sent.arrival_s,
            sent.input_tokens,
            sent.output_tokens,
            ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=2.0),
            rng=np.random.default_rng(seed),
        )
    return served.requests(api), served
