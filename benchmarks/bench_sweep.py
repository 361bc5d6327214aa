"""Sweep throughput: simulated requests per wall-second with 1 and 2 worker processes.

Usage: ``python benchmarks/bench_sweep.py [--duration-s 3600] [--replications 4]``

The sweep is the one the README reports: 8 Poisson rates (10–45 req/s) × replications of
one hour on two H100 replicas of Llama-3.1-8B (lognormal prompts, geometric outputs), on the
``processes`` executor; worker start-up is included, as a user would see it. Parallel
efficiency is (throughput with 2 workers) / (2 × throughput with 1).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from sim import Scenario, load_scenario, sweep

ROOT = Path(__file__).resolve().parents[1]
RATE = "workload.classes.chat.arrivals"
RATES = [10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0, 45.0]


def _scenario(duration_s: float) -> Scenario:
    base = load_scenario(ROOT / "scenarios/chat-startup.yaml")
    return base.with_overrides(
        {
            "horizon.duration_s": duration_s,
            "horizon.warmup_s": 0,
            "workload.classes.chat.arrivals": {"process": "poisson", "rate_rps": 10.0},
            "workload.classes.chat.profile": None,
        }
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration-s", type=float, default=3600)
    p.add_argument("--replications", type=int, default=4)
    args = p.parse_args(argv)
    scenario = _scenario(args.duration_s)
    grid = {f"{RATE}.rate_rps": RATES}
    rates = {}
    for workers in (1, 2):
        res = sweep(
            scenario,
            grid=grid,
            replications=args.replications,
            seed=1,
            executor="processes",
            workers=workers,
            progress=False,
        )
        rates[workers] = res.requests_simulated / res.elapsed_s
        print(
            f"processes, {workers} worker(s): {res.requests_simulated:,.0f} requests in "
            f"{res.elapsed_s:.1f} s = {rates[workers]:,.0f} simulated req/s"
        )
    speedup = rates[2] / rates[1]
    print(
        f"speed-up {speedup:.2f}x, parallel efficiency {speedup / 2:.0%} ({os.cpu_count()} cores)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
