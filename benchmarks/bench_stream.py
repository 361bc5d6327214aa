"""Memory of a replication that keeps no per-request records, as the horizon grows.

With ``horizon.records: none`` the workload is generated as the clock advances and each
request is folded into the metrics once it has finished (``sim.replication.stream``), so
peak memory should follow the requests in flight, not the number of requests. This script
runs :func:`sim.simulate` on Poisson traffic at a fixed load per replica (the lengths and
replica of :mod:`bench_engine`, ``--replicas`` replicas, round robin) for horizons holding
``--requests`` requests, each in a fresh process, and reports the process's peak resident
memory (``ru_maxrss``) and its growth over an empty run of the same process (imports and
compiled code), with the wall time and requests per second. ``records: all`` is measured at
the smallest size for comparison.

Run ``.venv/bin/python benchmarks/bench_stream.py`` (a few minutes; ``--requests 1e6 1e7
1e8`` for the README's table, about 15 minutes more); ``--json PATH`` writes the figures.
The billion-request row: ``--requests 1e6 1e9 --replicas 1 --workload short --all-at 1e6``
(short answers to mid-sized prompts, the cheapest requests to simulate: about 1.5 hours on
one core).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Each workload: its lengths (None: bench_engine's Azure-conversation lengths) and a rate
# per replica of about 70 % of one replica's saturation throughput.
WORKLOADS: dict[str, dict[str, Any]] = {
    "conversation": {"rate_per_replica": 8.0, "lengths": None},
    # short answers to mid-sized prompts (classification, extraction): prefill-bound, few
    # iterations a request, so the cheapest per request to simulate; saturates near 50 req/s
    "short": {
        "rate_per_replica": 35.0,
        "lengths": {
            "prompt_tokens": {"dist": "lognormal", "median": 400.0, "p90": 1200.0, "max": 8000},
            "output_tokens": {"dist": "geometric", "mean": 16.0, "max": 256},
        },
    },
}


def _child(
    requests: float, replicas: int, records: str, workload: str = "conversation"
) -> dict[str, Any]:
    import bench_engine as base

    import sim

    spec = WORKLOADS[workload]

    def scenario(n: float) -> sim.Scenario:
        rate = spec["rate_per_replica"] * replicas
        scn = base.scenario(
            {"process": "poisson", "rate_rps": rate}, duration_s=n / rate, warmup_s=0.0
        )
        overrides: dict[str, Any] = {
            "fleet.replicas": replicas,
            "fleet.router": "round_robin",
            "horizon.records": records,
            # one sample an hour: the time series stays small over a year of traffic
            "horizon.sample_interval_s": 3600.0,
        }
        for key, dist in (spec["lengths"] or {}).items():
            overrides[f"workload.classes.0.{key}"] = dist
        return scn.with_overrides(overrides)

    # compile and import everything on a small run first: what is left is the run's own
    sim.simulate(scenario(2_000), seed=1)
    base_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    out = sim.simulate(scenario(requests), seed=1)
    wall = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "requests": out.n_requests,
        "records": records,
        "wall_s": wall,
        "requests_per_s": out.n_requests / wall,
        "peak_rss_mib": peak_kib / 1024,
        "growth_mib": (peak_kib - base_kib) / 1024,
        "ttft_p99_s": out.metrics["ttft_p99_s"],
        "throughput_rps": out.metrics["throughput_rps"],
    }


def measure(requests: float, replicas: int, records: str, workload: str) -> dict[str, Any]:
    """One point in a fresh process (peak RSS is a process-wide high-water mark)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import bench_stream as b; "
        f"print(json.dumps(b._child({requests!r}, {replicas:d}, {records!r}, {workload!r})))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    p.add_argument("--replicas", type=int, default=4)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="conversation")
    p.add_argument(
        "--all-at",
        type=float,
        default=None,
        help="requests of the run that keeps every record (default: the smallest size)",
    )
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    sizes = sorted(args.requests)
    all_at = args.all_at if args.all_at is not None else sizes[0]
    rows = [measure(all_at, args.replicas, "all", args.workload)]
    rows += [measure(n, args.replicas, "none", args.workload) for n in sizes]
    rate = WORKLOADS[args.workload]["rate_per_replica"]
    print(
        f"{args.replicas} H100 replicas of Llama-3.1-8B, {args.workload} workload, Poisson at "
        f"{rate} req/s each, round robin; {platform.python_version()}, {dt.date.today()}\n"
    )
    print("| records | requests | wall s | requests/s | peak RSS MiB | growth MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['records']} | {r['requests']:,} | {r['wall_s']:,.0f} | "
            f"{r['requests_per_s']:,.0f} | {r['peak_rss_mib']:,.0f} | {r['growth_mib']:,.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
