"""Speed of the simulator on a reference workload, next to a bare simpy M/M/1 in the same run.

Reference workload: one H100 SXM replica of Llama-3.1-8B (tp 1, default
engine, roofline step time), one Poisson class at 80 % of the replica's measured saturation
throughput, lengths shaped like the Azure LLM-inference conversation trace (prompt lognormal
with median 1020 and mean ≈ 1155 tokens, output geometric with mean 211 tokens) and a horizon
long enough for at least ``--requests`` requests (default 200 000).

What is timed:

* ``sim.simulate(scenario, seed=1)`` end to end: workload sampling, the compiled engine, the
  per-request DataFrame and the metrics. Numba compilation is excluded: one tiny call runs
  first, and its time (cache load, or compilation when the cache is cold) is reported apart,
  as is a truly cold compilation in a subprocess with an empty ``NUMBA_CACHE_DIR``.
* The same steps one by one (the body of :func:`sim.simulate` spelled out), so that the
  engine alone (:func:`sim.engine.serve.serve`) has a time of its own.
* A bare simpy M/M/1 (``Resource(capacity=1)``, one process per customer, exponential gaps
  and service times drawn up front with numpy, ρ = 0.8) with as many customers as the
  simulation had requests.

The headline is the ratio of simulated requests per wall-second to simpy customers per
wall-second; the target is ≥ 2. Memory is measured in separate, untimed runs under
:mod:`tracemalloc` (every numpy buffer is tracked; the engine allocates nothing inside
compiled code).

Run ``.venv/bin/python benchmarks/bench_engine.py`` (or ``make bench``); ``--help`` lists the
options.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import simpy

import sim
from sim.engine.replica import build_replica
from sim.replication.simulate import sample, serve_scenario
from sim.workload import GeometricLength, LognormalLength
from sim.workload.lengths import Z90

REPO = Path(__file__).resolve().parent.parent

# Azure LLM-inference trace 2023, conversation: prompt median 1020 / mean 1155 tokens,
# output mean 211 tokens.
PROMPT_MEDIAN = 1020.0
PROMPT_MEAN_TARGET = 1155.0
PROMPT_MAX = 16_000
OUTPUT_MEAN = 211.0
OUTPUT_MAX = 4096

LOAD = 0.8  # fraction of the measured saturation throughput
SEED = 1


# ---------------------------------------------------------------------------------------------
# scenario


def prompt_p90() -> float:
    """The p90 that gives a lognormal with median 1020 the trace's mean of 1155 tokens.

    A lognormal's mean is ``median·exp(σ²/2)``, so ``σ = sqrt(2 ln(mean/median))`` and
    ``p90 = median·exp(z₀.₉ σ)``. (Median 1020 with p90 2300 would give a mean of ≈ 1247.)
    """
    s = math.sqrt(2.0 * math.log(PROMPT_MEAN_TARGET / PROMPT_MEDIAN))
    return round(PROMPT_MEDIAN * math.exp(Z90 * s), 1)


def lengths() -> tuple[dict[str, Any], dict[str, Any]]:
    """The prompt and output length specs of the reference workload."""
    prompt = {"dist": "lognormal", "median": PROMPT_MEDIAN, "p90": prompt_p90(), "max": PROMPT_MAX}
    output = {"dist": "geometric", "mean": OUTPUT_MEAN, "max": OUTPUT_MAX}
    return prompt, output


def scenario(arrivals: dict[str, Any], *, duration_s: float, warmup_s: float) -> sim.Scenario:
    """One class with ``arrivals`` on one H100 replica of Llama-3.1-8B, engine defaults."""
    prompt, output = lengths()
    return sim.Scenario.model_validate(
        {
            "name": "bench-engine",
            "description": "speed benchmark: one H100, Llama-3.1-8B, Azure-conversation lengths",
            "horizon": {"duration_s": duration_s, "warmup_s": warmup_s},
            "workload": {
                "classes": [
                    {
                        "name": "chat",
                        "arrivals": arrivals,
                        "prompt_tokens": prompt,
                        "output_tokens": output,
                        "slo": {"ttft_s": 1.0, "tpot_s": 0.05},
                    }
                ]
            },
            "fleet": {"model": "llama-3.1-8b", "gpu": "h100-sxm", "tp": 1, "replicas": 1},
        }
    )


def measure_capacity() -> dict[str, float]:
    """Saturation throughput of the replica, two ways.

    Primary: a closed loop of ``4 × max_num_seqs`` users with zero think time, so the waiting
    queue never empties; throughput is read over ``[120 s, 900 s)``. Cross-check: Poisson
    arrivals at 5× that rate (open-loop overload) over the same window.
    """
    horizon = {"duration_s": 900.0, "warmup_s": 120.0}
    users = 4 * 256
    closed = sim.simulate(
        scenario({"process": "closed_loop", "users": users, "think_time_s": 0.0}, **horizon),
        seed=SEED,
    )
    cap = closed.metrics["throughput_rps"]
    over = sim.simulate(
        scenario({"process": "poisson", "rate_rps": 5.0 * cap}, **horizon), seed=SEED
    )
    return {
        "closed_loop_users": float(users),
        "capacity_rps": cap,
        "closed_loop_batch_mean": closed.metrics["batch_size_mean"],
        "closed_loop_step_time_mean_s": closed.metrics["step_time_mean_s"],
        "closed_loop_gpu_busy_fraction": closed.metrics["gpu_busy_fraction"],
        "overload_offered_rps": 5.0 * cap,
        "overload_throughput_rps": over.metrics["throughput_rps"],
    }


# ---------------------------------------------------------------------------------------------
# what is timed


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of ``fn()`` (garbage collected before, not during) and its result."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def simulate_in_phases(scn: sim.Scenario, seed: int) -> tuple[dict[str, float], Any]:
    """The first two steps of :func:`sim.simulate` — :func:`~sim.replication.simulate.sample`
    and :func:`~sim.replication.simulate.serve_scenario`, the very functions it calls — each
    timed: sampling the workload and the engine. The rest of ``simulate`` (per-request
    records, metrics, costs) is its total time minus these two."""
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    replica = build_replica(scn.fleet)
    workload = sample(scn, seed)
    t1 = time.perf_counter()
    served = serve_scenario(scn, workload, seed, replica)
    t2 = time.perf_counter()
    t["workload_s"] = t1 - t0
    t["engine_s"] = t2 - t1
    t["steps"] = float(served.iterations)
    t["requests"] = float(served.n_requests)
    return t, None


def mm1_simpy(n: int, *, rho: float = LOAD, seed: int = SEED) -> dict[str, float]:
    """A bare simpy M/M/1 with ``n`` customers, one process each (service rate 1).

    Gaps and service times are drawn with numpy before the run (inside the timed region, as
    the simulator's workload sampling is). Each customer records its wait in queue.
    """
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rho, n).tolist()
    service = rng.exponential(1.0, n).tolist()
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=1)
    waits: list[float] = []

    def customer(env: simpy.Environment, s: float) -> Any:
        arrived = env.now
        with server.request() as req:
            yield req
            waits.append(env.now - arrived)
            yield env.timeout(s)

    def source(env: simpy.Environment) -> Any:
        for gap, s in zip(gaps, service, strict=True):
            yield env.timeout(gap)
            env.process(customer(env, s))

    env.process(source(env))
    env.run()
    return {"customers": float(len(waits)), "wait_mean": float(np.mean(waits)), "end": env.now}


# ---------------------------------------------------------------------------------------------
# compile time and memory


def cold_compile_s() -> float | None:
    """First-call time in a fresh interpreter with an empty numba cache (pure compilation)."""
    code = (
        "import time, sys; sys.path.insert(0, sys.argv[1]); import bench_engine as b;"
        "s = b.scenario({'process': 'poisson', 'rate_rps': 2.0}, duration_s=10.0, warmup_s=0.0);"
        "t = time.perf_counter(); b.sim.simulate(s, seed=1); print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        proc = subprocess.run(
            [sys.executable, "-c", code, str(Path(__file__).parent)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
    if proc.returncode != 0:
        print(f"  (cold compile run failed: {proc.stderr.strip().splitlines()[-1:]})")
        return None
    return float(proc.stdout.strip().splitlines()[-1])


def _proc_status_kib(key: str) -> int:
    text = Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def rss_growth(fn: Callable[[], Any]) -> tuple[int, int] | None:
    """``(RSS before, peak RSS during)`` of ``fn()``, in bytes; ``None`` off Linux.

    The kernel's high-water mark (``VmHWM``) is reset first by writing 5 to
    ``/proc/self/clear_refs``, so the peak is this call's, not that of an earlier one
    (``ru_maxrss`` cannot be reset and is even inherited by a forked child).
    """
    try:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")
        before = _proc_status_kib("VmRSS")
        fn()
        peak = _proc_status_kib("VmHWM")
    except (OSError, KeyError, ValueError):
        return None
    return 1024 * before, 1024 * peak


def traced_peak(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Peak bytes traced by :mod:`tracemalloc` while ``fn()`` runs, and its result."""
    gc.collect()
    tracemalloc.start()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, out


# ---------------------------------------------------------------------------------------------
# report


def best_median(xs: list[float], *, rate: bool = False) -> dict[str, Any]:
    """Best (smallest time, or largest ``rate``), median and every value."""
    return {"best": max(xs) if rate else min(xs), "median": statistics.median(xs), "all": xs}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200_000, help="requests to simulate (min)")
    ap.add_argument("--repeat", type=int, default=3, help="timed repetitions (best and median)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument(
        "--no-cold-compile",
        action="store_true",
        help="skip the cold numba compilation measurement (a ~10 s subprocess)",
    )
    args = ap.parse_args(argv)
    if args.requests < 1 or args.repeat < 1:
        ap.error("--requests and --repeat must be >= 1")

    res: dict[str, Any] = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "numpy": np.__version__,
            "simpy": simpy.__version__,
        },
    }
    print(f"bench_engine  {res['date']}  python {res['machine']['python']}  cpus {os.cpu_count()}")

    # 1. compilation, excluded from every timing below
    print("\n[compile] numba, excluded from the timings")
    t_first, _ = timed(
        lambda: sim.simulate(
            scenario({"process": "poisson", "rate_rps": 2.0}, duration_s=10.0, warmup_s=0.0),
            seed=SEED,
        )
    )
    print(f"  first call in this process (cache load or compile): {t_first:8.3f} s")
    res["first_call_s"] = t_first
    if not args.no_cold_compile:
        cold = cold_compile_s()
        res["cold_compile_first_call_s"] = cold
        if cold is not None:
            print(f"  first call with an empty numba cache (compile):    {cold:8.3f} s")

    # 2. workload lengths
    prompt, output = lengths()
    pdist = LognormalLength.model_validate(prompt)
    odist = GeometricLength.model_validate(output)
    res["lengths"] = {
        "prompt": prompt,
        "prompt_mean": pdist.mean(),
        "prompt_std": pdist.std(),
        "output": output,
        "output_mean": odist.mean(),
        "output_std": odist.std(),
    }
    print("\n[workload] Azure-conversation-like lengths")
    print(
        f"  prompt: lognormal median {PROMPT_MEDIAN:.0f}, p90 {prompt['p90']:.1f} (chosen so the"
        f" mean is {PROMPT_MEAN_TARGET:.0f}), max {PROMPT_MAX}:"
        f" mean() = {pdist.mean():.1f}, std() = {pdist.std():.1f} tokens"
    )
    print(
        f"  output: geometric mean {OUTPUT_MEAN:.0f}, max {OUTPUT_MAX}:"
        f" mean() = {odist.mean():.2f}, std() = {odist.std():.1f} tokens"
    )

    # 3. capacity
    print("\n[capacity] saturation throughput of one H100 / Llama-3.1-8B replica")
    cap = measure_capacity()
    res["capacity"] = cap
    rate = LOAD * cap["capacity_rps"]
    print(
        f"  closed loop, {cap['closed_loop_users']:.0f} users, zero think time, window"
        f" [120, 900) s: {cap['capacity_rps']:.3f} req/s"
        f" (batch {cap['closed_loop_batch_mean']:.1f},"
        f" step {1e3 * cap['closed_loop_step_time_mean_s']:.1f} ms,"
        f" busy {cap['closed_loop_gpu_busy_fraction']:.3f})"
    )
    print(
        f"  cross-check, Poisson overload at {cap['overload_offered_rps']:.1f} req/s:"
        f" {cap['overload_throughput_rps']:.3f} req/s served"
    )
    print(f"  reference rate R = {LOAD:.0%} x {cap['capacity_rps']:.3f} = {rate:.3f} req/s")

    # 4. the reference scenario
    n = args.requests
    warmup = 120.0
    margin = math.ceil(5.0 * math.sqrt(n) / rate) + warmup  # ≥ n arrivals with ~5 sd to spare
    duration = float(math.ceil(n / rate) + margin)
    scn = scenario({"process": "poisson", "rate_rps": rate}, duration_s=duration, warmup_s=warmup)
    res["scenario"] = {"rate_rps": rate, "duration_s": duration, "warmup_s": warmup}
    print(f"\n[reference] Poisson {rate:.3f} req/s for {duration:.0f} s (warm-up {warmup:.0f} s)")

    # 5. memory, untimed
    rss = rss_growth(lambda: sim.simulate(scn, seed=SEED))
    sim_peak, out = traced_peak(lambda: sim.simulate(scn, seed=SEED))
    rss_delta = None if rss is None else rss[1] - rss[0]
    n_req = len(out.requests)
    frame_bytes = int(out.requests.memory_usage(deep=True).sum())
    m = out.metrics
    del out
    mm1_peak, _ = traced_peak(lambda: mm1_simpy(n_req))

    # 6. timings: simulate, its phases and simpy interleaved in every round, so that a busy
    #    neighbour on the machine slows all three alike
    load0 = os.getloadavg()[0]
    sim_t: list[float] = []
    mm1_t: list[float] = []
    mm1_out: dict[str, float] = {}
    phases: list[dict[str, float]] = []
    same = True
    for i in range(args.repeat):
        t, o = timed(lambda: sim.simulate(scn, seed=SEED))
        assert len(o.requests) == n_req
        del o
        sim_t.append(t)
        gc.collect()
        ph, _ = simulate_in_phases(scn, SEED)
        phases.append(ph)
        ph["rest_s"] = sim_t[-1] - ph["workload_s"] - ph["engine_s"]
        same &= ph["requests"] == n_req
        t, mm1_out = timed(lambda: mm1_simpy(n_req))
        mm1_t.append(t)
        print(
            f"  round {i + 1}/{args.repeat}: simulate {sim_t[-1]:7.3f} s"
            f" (engine {ph['engine_s']:.3f} s)   simpy M/M/1 {t:7.3f} s"
        )
    load1 = os.getloadavg()[0]
    res["load_average_1min"] = {"before": load0, "after": load1}

    sim_rps = [n_req / t for t in sim_t]
    mm1_cps = [mm1_out["customers"] / t for t in mm1_t]
    engine_t = [p["engine_s"] for p in phases]
    res["simulate"] = {
        "requests": n_req,
        "wall_s": best_median(sim_t),
        "requests_per_s": best_median(sim_rps, rate=True),
        "phases_median_s": {
            k: statistics.median(p[k] for p in phases) for k in ("workload_s", "engine_s", "rest_s")
        },
        "phases_match_simulate": same,
        "engine_requests_per_s": best_median([n_req / t for t in engine_t], rate=True),
        "engine_steps": phases[0]["steps"],
        "engine_steps_per_s": best_median([p["steps"] / p["engine_s"] for p in phases], rate=True),
        "tracemalloc_peak_bytes": sim_peak,
        "peak_bytes_per_request": sim_peak / n_req,
        "rss_before_bytes": None if rss is None else rss[0],
        "rss_peak_growth_bytes": rss_delta,
        "rss_peak_growth_bytes_per_request": None if rss_delta is None else rss_delta / n_req,
        "frame_bytes_per_request": frame_bytes / n_req,
        "sanity": {
            k: m[k]
            for k in (
                "offered_rps",
                "throughput_rps",
                "gpu_busy_fraction",
                "batch_size_mean",
                "step_time_mean_s",
                "kv_occupancy_mean",
                "preemptions",
                "ttft_p50_s",
                "ttft_p99_s",
                "tpot_p50_s",
                "tpot_p99_s",
                "e2e_p50_s",
                "requests_failed",
                "requests_rejected",
                "slo_attainment",
            )
        },
    }
    res["simpy_mm1"] = {
        "customers": mm1_out["customers"],
        "rho": LOAD,
        "wall_s": best_median(mm1_t),
        "customers_per_s": best_median(mm1_cps, rate=True),
        "wait_mean": mm1_out["wait_mean"],
        "wait_mean_theory": LOAD / (1.0 - LOAD),
        "tracemalloc_peak_bytes": mm1_peak,
        "peak_bytes_per_customer": mm1_peak / mm1_out["customers"],
    }
    ratio_best = max(sim_rps) / max(mm1_cps)
    ratio_med = statistics.median(sim_rps) / statistics.median(mm1_cps)
    paired = [a / b for a, b in zip(sim_rps, mm1_cps, strict=True)]
    res["ratio"] = {
        "best": ratio_best,
        "median": ratio_med,
        "per_round": paired,
        "target": 2.0,
    }

    # 7. report
    s = res["simulate"]
    ph = s["phases_median_s"]
    print(f"\n[sanity] what the {n_req} simulated requests did (window from {warmup:.0f} s)")
    print(
        f"  offered {m['offered_rps']:.3f} req/s, served {m['throughput_rps']:.3f} req/s,"
        f" failed {m['requests_failed']:.0f}, rejected {m['requests_rejected']:.0f}"
    )
    print(
        f"  GPU busy {m['gpu_busy_fraction']:.3f}, mean batch {m['batch_size_mean']:.1f},"
        f" mean step {1e3 * m['step_time_mean_s']:.1f} ms, KV occupancy"
        f" {m['kv_occupancy_mean']:.3f}, preemptions {m['preemptions']:.0f}"
    )
    print(
        f"  TTFT p50 {m['ttft_p50_s']:.3f} s, p99 {m['ttft_p99_s']:.3f} s;"
        f" TPOT p50 {1e3 * m['tpot_p50_s']:.1f} ms, p99 {1e3 * m['tpot_p99_s']:.1f} ms;"
        f" SLO attainment {m['slo_attainment']:.3f}"
    )
    mm = res["simpy_mm1"]
    print(f"  simpy M/M/1: mean wait {mm['wait_mean']:.3f} (theory {mm['wait_mean_theory']:.3f})")

    print("\n[speed] wall seconds, numba compilation excluded")
    print(
        f"  sim.simulate:  best {s['wall_s']['best']:7.3f} s"
        f"   median {s['wall_s']['median']:7.3f} s"
        f"   -> {s['requests_per_s']['best']:10,.0f} req/s best,"
        f" {s['requests_per_s']['median']:10,.0f} median"
    )
    print(
        f"    phases (median): workload {ph['workload_s']:.3f} s, engine {ph['engine_s']:.3f} s,"
        f" records + metrics + costs {ph['rest_s']:.3f} s"
        f"  (same requests as simulate: {same})"
    )
    print(
        f"    engine only (serve): {s['engine_requests_per_s']['best']:,.0f} req/s best,"
        f" {s['engine_steps']:.0f} iterations, {s['engine_steps_per_s']['best']:,.0f} iterations/s"
    )
    print(
        f"  simpy M/M/1:   best {mm['wall_s']['best']:7.3f} s"
        f"   median {mm['wall_s']['median']:7.3f} s"
        f"   -> {mm['customers_per_s']['best']:10,.0f} cust/s best,"
        f" {mm['customers_per_s']['median']:10,.0f} median"
    )
    verdict = "meets" if ratio_med >= 2.0 else "MISSES"
    print(
        f"  ratio (req/s / cust/s): best {ratio_best:.2f}, median {ratio_med:.2f}"
        f" (per round: {', '.join(f'{r:.2f}' for r in paired)})  -> {verdict} the target of >= 2"
    )
    print(f"  1-min load average {load0:.2f} before, {load1:.2f} after (cpus: {os.cpu_count()})")

    print("\n[memory] untimed runs: tracemalloc peak, and growth of the resident-set peak")
    print(
        f"  sim.simulate peak {sim_peak / 2**20:8.1f} MiB = {s['peak_bytes_per_request']:,.0f}"
        f" B/request; the requests DataFrame keeps {s['frame_bytes_per_request']:,.0f}"
        " B/request"
    )
    if rss is not None:
        print(
            f"  sim.simulate, resident set: {rss[0] / 2**20:.0f} MiB before, peak"
            f" {rss[1] / 2**20:.0f} MiB (+{rss[1] / 2**20 - rss[0] / 2**20:.1f} MiB ="
            f" {(rss[1] - rss[0]) / n_req:,.0f} B/request)"
        )
    print(
        f"  simpy M/M/1  peak {mm1_peak / 2**20:8.1f} MiB = {mm['peak_bytes_per_customer']:,.0f}"
        " B/customer"
    )

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
