"""How the engine's speed and memory grow with the fleet: replicas × routers, one run.

Every point has the same load per replica — Poisson arrivals at ``--rate`` requests/s per
replica (about 75 % of a replica's saturation throughput) on H100 replicas of Llama-3.1-8B
with the lengths of :mod:`bench_engine` — and at least ``--per-replica`` requests per
replica (``--min-requests`` in all), so that the drain at the end of the window is a small
share of the work. What is timed is the engine alone
(:func:`sim.replication.simulate.serve_scenario`): the workload is sampled before, the
tables after. Numba compilation happens in a warm-up call first.

The headline is each point's requests per wall-second as a share of one replica's with the
same router, measured in the same run (machines here are shared and noisy: read the ratios,
not the absolute figures). Peak memory per request is measured apart, for
:func:`sim.simulate` (engine, per-request table and metrics) under :mod:`tracemalloc`.

Run ``.venv/bin/python benchmarks/bench_scale.py`` (several minutes; ``--quick`` for a
smaller grid, ``--repeat N`` to time every point N times and keep the median); it prints a
Markdown table, and ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import platform
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_engine as base  # noqa: E402

import sim  # noqa: E402
from sim.engine.replica import build_replica  # noqa: E402
from sim.replication.simulate import sample, serve_scenario  # noqa: E402

ROUTERS = ("round_robin", "power_of_two", "random", "least_requests", "least_loaded", "central")


def fleet_scenario(replicas: int, router: str, *, rate: float, requests: int) -> sim.Scenario:
    """``replicas`` H100 replicas at ``rate`` req/s each, long enough for ``requests``."""
    duration = requests / (rate * replicas)
    scn = base.scenario(
        {"process": "poisson", "rate_rps": rate * replicas}, duration_s=duration, warmup_s=0.0
    )
    return scn.with_overrides({"fleet.replicas": replicas, "fleet.router": router})


def engine_rate(scn: sim.Scenario, seed: int = 1, repeat: int = 1) -> dict[str, float]:
    """Requests per wall-second of the engine alone (the median of ``repeat`` timings of
    the same workload), and iterations per request."""
    replica = build_replica(scn.fleet)
    workload = sample(scn, seed)
    walls = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        served = serve_scenario(scn, workload, seed, replica)
        walls.append(time.perf_counter() - t0)
    wall = statistics.median(walls)
    n = served.n_requests
    return {
        "requests": float(n),
        "engine_s": wall,
        "req_per_s": n / wall,
        "iterations_per_request": served.iterations / n,
    }


def _traced_peak(requests: int, rate: float) -> tuple[int, float]:
    scn = fleet_scenario(1, "least_loaded", rate=rate, requests=requests)
    gc.collect()
    tracemalloc.start()
    out = sim.simulate(scn, seed=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return len(out.requests), float(peak)


def memory_per_request(requests: int, rate: float) -> dict[str, float]:
    """Peak traced bytes of ``sim.simulate`` (one replica) at ``requests`` and at three
    times as many: per request in all, and per extra request (the slope, without the fixed
    cost of a replication)."""
    _traced_peak(1_000, rate)  # one-off allocations (catalogue, caches) out of the figures
    n1, p1 = _traced_peak(requests, rate)
    n3, p3 = _traced_peak(3 * requests, rate)
    return {
        "requests": float(n3),
        "peak_bytes": p3,
        "bytes_per_request": p3 / n3,
        "marginal_bytes_per_request": (p3 - p1) / (n3 - n1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=9.0, help="requests/s per replica")
    p.add_argument("--per-replica", type=int, default=1000, help="requests per replica")
    p.add_argument("--min-requests", type=int, default=100_000)
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 10, 100, 1000])
    p.add_argument("--routers", nargs="+", default=list(ROUTERS), choices=ROUTERS)
    p.add_argument("--repeat", type=int, default=1, help="timings per point (the median)")
    p.add_argument("--quick", action="store_true", help="replicas 1, 10, 100; fewer requests")
    p.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.replicas = [1, 10, 100]
        args.min_requests = 30_000
        args.per_replica = 300
    sim.simulate(fleet_scenario(1, "least_loaded", rate=2.0, requests=50), seed=1)  # compile
    rows: list[dict[str, Any]] = []
    for router in args.routers:
        engine_rate(fleet_scenario(2, router, rate=2.0, requests=200))  # compile this path
        one = None
        for r in args.replicas:
            n = max(args.min_requests, args.per_replica * r)
            scn = fleet_scenario(r, router, rate=args.rate, requests=n)
            res = engine_rate(scn, repeat=args.repeat)
            one = res["req_per_s"] if r == 1 else one
            res.update(router=router, replicas=r)
            res["share_of_one_replica"] = res["req_per_s"] / one if one else float("nan")
            rows.append(res)
            print(
                f"{router:>13} {r:>5} replicas {int(res['requests']):>9,} requests "
                f"{res['req_per_s']:>10,.0f} req/s  {res['share_of_one_replica']:6.0%} of one  "
                f"{res['iterations_per_request']:.1f} iterations/request",
                flush=True,
            )
    mem = memory_per_request(max(args.min_requests, 20_000), args.rate)
    print(
        f"peak memory of sim.simulate at {mem['requests']:,.0f} requests: "
        f"{mem['bytes_per_request']:.0f} bytes/request "
        f"({mem['marginal_bytes_per_request']:.0f} per extra request)"
    )
    print()
    print("| router | " + " | ".join(f"{r} replicas" for r in args.replicas) + " |")
    print("|---|" + "---|" * len(args.replicas))
    for router in args.routers:
        cells = [
            f"{row['req_per_s'] / 1000:,.0f}k ({row['share_of_one_replica']:.0%})"
            for row in rows
            if row["router"] == router
        ]
        print(f"| {router} | " + " | ".join(cells) + " |")
    if args.json is None:
        return 0
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": platform.platform(),
                "python": platform.python_version(),
                "rate_per_replica": args.rate,
                "repeat": args.repeat,
                "rows": rows,
                "memory": mem,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
