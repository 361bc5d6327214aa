"""What a fleet of several pools costs in engine speed: the pool dispatcher against one
engine, on the same requests.

Three runs of one workload (Poisson arrivals on H100 replicas of Llama-3.1-8B with the
lengths of :mod:`bench_engine`, at about 75 % of the fleet's saturation throughput), each
timed on the engine alone (the workload sampled before, the tables after; numba compiled in
a warm-up call first):

* **one pool**: ``2 × replicas`` replicas behind one router (the single-pool engine);
* **static pools**: two pools of ``replicas`` each, each class its own pool (no request
  needs the dispatcher: two engines run one after the other);
* **shared pools**: the same two pools, every request free to go to either
  (``policy: least_loaded``, which splits the load as the one pool's router does): every
  arrival advances both pools to it and reads their loads.

The headline is each pooled run's requests per wall-second as a share of the one-pool run's
(machines here are shared and noisy: read the ratios). Run
``.venv/bin/python benchmarks/bench_pools.py [--replicas 4] [--requests 200000]
[--repeat 3]``; it prints a Markdown table, and ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_engine as base  # noqa: E402

import sim  # noqa: E402
from sim.engine.replica import build_replica  # noqa: E402
from sim.replication.pooled import serve_pooled  # noqa: E402
from sim.replication.simulate import sample, serve_scenario  # noqa: E402


def scenarios(replicas: int, rate: float, requests: int) -> dict[str, sim.Scenario]:
    """The three fleets, on the same two classes (half the traffic each)."""
    total = rate * 2 * replicas
    duration = requests / total
    one = base.scenario({"process": "poisson", "rate_rps": total / 2}, duration_s=duration,
                        warmup_s=0.0)  # fmt: skip
    data = one.model_dump(mode="python", by_alias=True)
    first = dict(data["workload"]["classes"][0])
    data["workload"]["classes"] = [dict(first, name="a"), dict(first, name="b")]
    data["options"] = None
    fleet = data["fleet"]
    one_data = dict(data, fleet=dict(fleet, replicas=2 * replicas))
    pools = [dict(fleet, replicas=replicas, name=n) for n in ("p0", "p1")]
    static = dict(data, fleet={"pools": pools})
    static["workload"] = {
        "classes": [dict(first, name="a", pools=["p0"]), dict(first, name="b", pools=["p1"])]
    }
    shared = dict(data, fleet={"pools": pools, "policy": "least_loaded"})
    return {
        "one pool": sim.Scenario.model_validate(one_data),
        "static pools": sim.Scenario.model_validate(static),
        "shared pools": sim.Scenario.model_validate(shared),
    }


def engine_seconds(scn: sim.Scenario, seed: int = 1) -> tuple[float, int, int]:
    """Wall-seconds of the engine alone on the scenario's workload, its requests and the
    scheduler iterations its replicas ran."""
    workload = sample(scn, seed)
    if scn.pooled:
        t0 = time.perf_counter()
        served = serve_pooled(scn, workload, seed)
        elapsed = time.perf_counter() - t0
        return elapsed, served.n_requests, sum(p.iterations for p in served.pools)
    replica = build_replica(scn.pools[0])
    t0 = time.perf_counter()
    one = serve_scenario(scn, workload, seed, replica)
    elapsed = time.perf_counter() - t0
    return elapsed, one.n_requests, one.iterations


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--replicas", type=int, default=4, help="replicas per pool (4)")
    p.add_argument("--rate", type=float, default=9.0, help="requests/s per replica (9)")
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=3, help="timings per run; the median is kept")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    runs = scenarios(args.replicas, args.rate, args.requests)
    warm = scenarios(1, args.rate, 2_000)
    for scn in warm.values():  # compile every kernel path first
        engine_seconds(scn)
    rows: list[dict[str, Any]] = []
    for label, scn in runs.items():
        times, n, steps = [], 0, 0
        for _ in range(args.repeat):
            elapsed, n, steps = engine_seconds(scn)
            times.append(elapsed)
        median = statistics.median(times)
        rows.append(
            {"run": label, "requests": n, "iterations": steps, "seconds": median,
             "rps": n / median}
        )  # fmt: skip
    ref = rows[0]["rps"]
    print(f"pools: {args.replicas} replicas each, {args.requests:,} requests, median of "
          f"{args.repeat}; {platform.processor() or platform.machine()}, "
          f"{dt.date.today().isoformat()}")  # fmt: skip
    print()
    print("| run | requests | iterations | engine s | requests/s | share of one pool |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['run']} | {r['requests']:,} | {r['iterations']:,} | {r['seconds']:.2f} | "
              f"{r['rps']:,.0f} | {r['rps'] / ref:.0%} |")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
