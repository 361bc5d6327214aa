"""Will one replication fit in memory? Checked before anything is drawn or allocated.

A replication keeps one record per request (the engine's arrays, then the per-request
table its metrics are computed from). Its expected number of open-loop requests follows
from the scenario alone — each class's mean arrival rate, shaped by its daily profile,
over the window — so a window that cannot fit is refused with one line saying how many
requests, how much memory and what to change, rather than failing half-way with an
out-of-memory error. Closed-loop classes are not counted: their number of requests is set
by the fleet's speed (a rejected user backs off, see ``sim.engine.kernel.RETRY_MIN_S``).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from sim.scenario import Scenario
from sim.scenario_io import ScenarioError
from sim.workload.arrivals import ClosedLoopArrivals
from sim.workload.spec import ClassSpec
from sim.workload.trace import TraceArrivals

__all__ = [
    "BYTES_PER_REQUEST",
    "available_memory_bytes",
    "bytes_per_request",
    "check_memory",
    "expected_requests",
    "held_requests",
]

# Peak memory of ``sim.simulate`` per request, rounded up from what the benchmarks measure
# (engine rows, then the per-request table and its metrics): 263 bytes a request at 204,000
# requests (benchmarks/bench_engine.py).
BYTES_PER_REQUEST = 300
# Prompt identity (sim.workload.identity, sim.engine.prefix_cache) adds, per request, its
# offsets and the engine's three identity columns, and per prompt-block hash the
# workload's and the engine's copies plus one transient while they are built.
IDENTITY_BYTES_PER_REQUEST = 40
IDENTITY_BYTES_PER_HASH = 24
# A fleet of several pools holds a request's engine rows in each pool it may go to (float
# and int columns, sim.engine.kernel: 5 × 8 + 19 × 4 bytes a row).
ENGINE_ROW_BYTES = 116
# Share of the available memory one replication may plan to use.
HEADROOM = 0.8
GIB = 2**30


def expected_requests(scenario: Scenario) -> float:
    """Expected open-loop requests in one replication's window (all classes)."""
    duration = scenario.horizon.duration_s
    return sum(_class_requests(c, duration) for c in scenario.workload.classes)


def _class_requests(c: ClassSpec, duration: float) -> float:
    # one class's expected open-loop requests in the window (0 for a closed loop)
    arrivals = c.arrivals
    if isinstance(arrivals, ClosedLoopArrivals):
        return 0.0
    if isinstance(arrivals, TraceArrivals):
        trace = arrivals.load(read_input_tokens=False, read_output_tokens=False)
        return float(trace.mean_rate_rps(arrivals.rate_scale) * duration)
    rate = arrivals.mean_rate_rps()
    if c.profile is None:
        return float(rate * duration)
    # the profile's mean over the window, on a one-minute grid
    grid = np.linspace(0.0, duration, max(2, math.ceil(duration / 60.0) + 1))
    return float(rate * float(np.mean(c.profile.multiplier(grid))) * duration)


def bytes_per_request(scenario: Scenario) -> float:
    """Peak bytes per open-loop request: :data:`BYTES_PER_REQUEST`, plus what the prompt
    identity of trace classes that carry it costs (weighted by their share of requests)."""
    duration = scenario.horizon.duration_s
    n = expected_requests(scenario)
    extra = 0.0
    for c in scenario.workload.classes:
        arrivals = c.arrivals
        if not isinstance(arrivals, TraceArrivals) or c.prompt_tokens is not None:
            continue
        if not arrivals.prompt_identity:
            continue
        trace = arrivals.load(read_output_tokens=c.output_tokens is None)
        if trace.prompt_blocks is None:
            continue
        hashes = float(trace.prompt_blocks.counts.mean())
        share = trace.mean_rate_rps(arrivals.rate_scale) * duration / max(n, 1.0)
        extra += share * (IDENTITY_BYTES_PER_REQUEST + IDENTITY_BYTES_PER_HASH * hashes)
    if scenario.pooled:
        # each request's rows in every pool it may go to, beyond the first
        rows = [len(p) for p in scenario.class_pools()]
        rates = [_class_requests(c, duration) for c in scenario.workload.classes]
        if sum(rates) > 0:
            extra += ENGINE_ROW_BYTES * (np.dot(rates, rows) / sum(rates) - 1.0)
    return BYTES_PER_REQUEST + extra


def available_memory_bytes() -> int | None:
    """Memory available to a new allocation (Linux ``MemAvailable``), or ``None``."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def held_requests(scenario: Scenario, n: float) -> float:
    """Requests one replication holds at its peak: all of them when it keeps every record;
    with ``horizon.records: sample`` or ``none``, a window of arrivals read ahead of the
    clock (what is in flight beyond it is not known before the run) and the sample."""
    hz = scenario.horizon
    if hz.records == "all":
        return n
    from sim.replication.stream import WINDOW_REQUESTS

    window = min(n, 2.0 * WINDOW_REQUESTS)
    return window + (hz.records_sample * n if hz.records == "sample" else 0.0)


def check_memory(
    scenario: Scenario, *, available_bytes: int | None = None, concurrent: int = 1
) -> float:
    """Refuse a scenario whose replication cannot fit in memory, ``concurrent`` replications
    at a time (local worker processes). Returns its expected number of requests.

    Raises
    ------
    ScenarioError
        One line: the expected requests, the memory they need, what is available and what
        to change.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/chat-startup.yaml")
    >>> n = check_memory(s, available_bytes=2**40)  # fits
    >>> check_memory(s, available_bytes=2**20)
    Traceback (most recent call last):
    ...
    sim.scenario_io.ScenarioError: horizon.duration_s: one replication holds about ...
    """
    n = expected_requests(scenario)
    avail = available_memory_bytes() if available_bytes is None else available_bytes
    if avail is None:
        return n
    held = held_requests(scenario, n)
    per = bytes_per_request(scenario)
    # a Poisson count rarely exceeds its mean by 5 standard deviations
    at_once = max(1, concurrent)
    need = (held + 5.0 * math.sqrt(held)) * per
    if need * at_once <= HEADROOM * avail:
        return n
    fit = HEADROOM * avail / per / at_once
    several = (
        ""
        if at_once == 1
        else f" ({at_once} replications at once: {need * at_once / GIB:,.1f} GiB; fewer workers)"
    )
    records = scenario.horizon.records
    change = (
        "shorten horizon.duration_s or lower the arrival rates (a fleet of several pools "
        "keeps every record)"
        if scenario.pooled
        else "set horizon.records to none or sample (metrics folded as requests finish), "
        "shorten horizon.duration_s or lower the arrival rates"
        if records == "all"
        else "lower horizon.records_sample"
        if records == "sample"
        else "lower the arrival rates"
    )
    raise ScenarioError(
        f"horizon.duration_s: one replication holds about {held:,.0f} requests, "
        f"{need / GIB:,.1f} GiB at {per:,.0f} bytes each{several}, but "
        f"{avail / GIB:,.1f} GiB of memory is available; {change} "
        f"(about {fit:,.0f} requests held per replication fit)"
    )
