"""``crossover run SCENARIO``: replications of one scenario, their files, and a summary that
ends with the decision's verdict."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from sim import __version__
from sim.cli.common import (
    CommandParser,
    add_out,
    add_quiet,
    add_replications,
    add_seed,
    add_set,
    add_workers,
    load_with_overrides,
    run_scenario_command,
)
from sim.intervals import NOTE_NARROW
from sim.scenario import Scenario, fleet_text
from sim.scenario_io import ScenarioError, dump_scenario
from sim.study.capacity import BackgroundCapacity, CapacityAtSLO
from sim.study.decide import Decision
from sim.study.montecarlo import RunResult, run
from sim.study.verdict import calendar_line, number

__all__ = ["HELP", "capacity_lines", "main", "parser", "print_summary", "write_capacity"]

HELP = "run replications of a scenario and write the results"

_HEADLINE = (
    ("throughput_rps", "throughput", "{:.2f} req/s"),
    ("output_tokens_per_s", "output tokens", "{:.0f} tok/s"),
    ("ttft_p50_s", "TTFT p50", "{:.3f} s"),
    ("ttft_p99_s", "TTFT p99", "{:.3f} s"),
    ("tpot_p50_s", "TPOT p50", "{:.4f} s"),
    ("e2e_p99_s", "E2E p99", "{:.2f} s"),
    ("slo_attainment", "SLO attainment", "{:.1%}"),
    ("api_share", "API share", "{:.1%}"),
    ("replicas_paid_mean", "replicas paid", "{:.2f}"),
    ("cold_start_requests", "cold-start reqs", "{:.0f}"),
    ("interrupted_requests", "interrupted", "{:.0f} requests"),
    ("total_cost_usd_per_month", "cost per month", "${:,.0f}"),
    ("cost_per_1m_tokens_usd", "cost per 1M tok", "${:.3f}"),
    ("api_only_cost_usd_per_month", "all-API / month", "${:,.0f}"),
    ("gpu_busy_fraction", "GPU busy", "{:.1%}"),
    ("compute_utilisation", "GPU MFU", "{:.1%}"),
    ("bandwidth_utilisation", "GPU MBU", "{:.1%}"),
    ("kv_occupancy_mean", "KV occupancy", "{:.1%}"),
    ("batch_size_mean", "mean batch", "{:.1f} seqs"),
)


def parser() -> CommandParser:
    """The arguments of ``crossover run``."""
    p = CommandParser(prog="crossover run", errors_as="crossover")
    p.add_argument("scenario", type=Path)
    add_replications(p, help_text="independent replications (default 5)")
    add_seed(p)
    add_out(p, required=False, help_text="output directory (default out/NAME)")
    add_set(p, help_text="override a scenario value, e.g. --set fleet.replicas=4 (repeatable)")
    add_workers(
        p,
        default=1,
        help_text="local worker processes for the replications (0: one per core; default 1)",
    )
    p.add_argument(
        "--no-capacity",
        action="store_true",
        help="skip the search for the capacity at the SLO (capacity.json; it simulates the "
        "traffic scaled up until the SLO fails, cached in DIR/.cache)",
    )
    add_quiet(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``crossover run SCENARIO [-n] [--seed] [--out DIR] [--set PATH=VALUE] [-j]
    [--no-capacity] [-q]``.

    Returns 0 on success, 2 on bad input (``error: …`` on stderr naming the file and field).
    """
    return run_scenario_command(parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    scenario = load_with_overrides(args.scenario, args.set)
    out_dir = args.out or Path("out") / scenario.name
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # written first: what was asked for is on disk even if the run fails
        (out_dir / "scenario.resolved.yaml").write_text(dump_scenario(scenario))
    except OSError as exc:
        raise ScenarioError(f"--out {out_dir}: cannot write there ({exc.strerror})") from None
    t0 = time.perf_counter()
    progress = None
    if not args.quiet and sys.stderr.isatty():

        def progress(done: int, total: int) -> None:
            sys.stderr.write(f"\rreplication {done}/{total}")
            if done == total:
                sys.stderr.write("\n")

    search = None
    if not args.no_capacity and args.workers == 1 and (os.cpu_count() or 1) > 1:
        # a spare core searches the capacity at the SLO while the replications run
        search = BackgroundCapacity(scenario, seed=args.seed, cache_dir=out_dir / ".cache")
    try:
        return _run_and_write(args, scenario, out_dir, t0, progress, search)
    finally:
        if search is not None:
            search.cancel()


def _run_and_write(
    args: argparse.Namespace,
    scenario: Scenario,
    out_dir: Path,
    t0: float,
    progress: Callable[[int, int], None] | None,
    search: BackgroundCapacity | None,
) -> int:
    result = run(
        scenario,
        replications=args.replications,
        seed=args.seed,
        progress=progress,
        workers=args.workers,
    )
    result.summary().to_csv(out_dir / "summary.csv", index=False)
    result.replications.to_csv(out_dir / "replications.csv", index=False)
    result.first.requests.to_parquet(out_dir / "requests.parquet", index=False)
    result.first.timeseries.to_csv(out_dir / "timeseries.csv", index=False)
    result.first.replicas.to_csv(out_dir / "replicas.csv", index=False)
    run_info = {
        "seed": result.seed,
        "replications": len(result.replications),
        "requests": result.first.n_requests,
    }
    (out_dir / "run.json").write_text(json.dumps(run_info | {"version": __version__}) + "\n")
    compare = result.compare()
    if len(compare):
        compare.to_csv(out_dir / "compare.csv", index=False)
    if progress is not None:
        sys.stderr.write("simulating the other options on the same requests\n")
    decision = result.decision()
    result.option_runs().to_csv(out_dir / "options.csv", index=False)
    decision.table.to_csv(out_dir / "decision.csv", index=False)
    (out_dir / "verdict.txt").write_text(decision.verdict + "\n", encoding="utf-8")
    if search is not None:
        if progress is not None:
            sys.stderr.write("capacity at the SLO: waiting for the search\n")
        result = adopt_capacity(result, search, out_dir)
    elif not args.no_capacity:
        write_capacity(result, out_dir, progress=progress is not None)
    if not args.quiet:
        print_summary(result, decision, out_dir, time.perf_counter() - t0)
    return 0


def adopt_capacity(result: RunResult, search: BackgroundCapacity, out_dir: Path) -> RunResult:
    """``result`` with the capacity the background ``search`` found (its files written)."""
    try:
        capacity = search.result(result)
    except ValueError as exc:  # no class may run on the fleet: nothing to search
        _write_capacity_error(out_dir, exc)
        return result
    _write_capacity_files(capacity, out_dir)
    return result.with_capacity(capacity)


def _write_capacity_error(out_dir: Path, exc: ValueError) -> None:
    (out_dir / "capacity.json").write_text(json.dumps({"error": str(exc)}) + "\n")


def _write_capacity_files(capacity: CapacityAtSLO, out_dir: Path) -> None:
    text = json.dumps(capacity.to_dict() | {"summary": capacity.describe()}, indent=1)
    (out_dir / "capacity.json").write_text(text + "\n", encoding="utf-8")
    capacity.evaluations.to_csv(out_dir / "capacity.csv", index=False)


def write_capacity(result: RunResult, out_dir: Path, *, progress: bool = False) -> None:
    """Search the capacity at the SLO (cached in ``out_dir/.cache``) and write
    ``capacity.json`` (the result) and ``capacity.csv`` (one row per load multiplier tried).
    """
    report = None
    if progress:
        sys.stderr.write("capacity at the SLO: scaling the traffic\n")

        def report(done: int, scale: float, holds: bool) -> None:
            word = "holds" if holds else "fails"
            sys.stderr.write(f"\r  ×{scale:.3g}: the SLO {word} ({done} loads tried)   ")

    try:
        capacity = result.capacity(cache_dir=out_dir / ".cache", progress=report)
    except ValueError as exc:  # no class may run on the fleet: nothing to search
        _write_capacity_error(out_dir, exc)
        return
    finally:
        if progress:
            sys.stderr.write("\n")
    _write_capacity_files(capacity, out_dir)


def capacity_lines(cap: CapacityAtSLO) -> list[str]:
    """The capacity at the SLO as ``crossover run`` prints it: the load at which the SLO
    would just hold, the share of it the traffic uses and the GPU bill split on that basis.

    Examples
    --------
    >>> import pandas as pd
    >>> cap = CapacityAtSLO(2.0, 2.2, 3.0, 6.0, 0.5, 100.0, 50.0, 50.0, {"chat": 0.99}, 1,
    ...                     "", pd.DataFrame(), 0.1, 1, 0, 64.0)
    >>> for line in capacity_lines(cap):
    ...     print(line)
      capacity at SLO ×2 the traffic = 6 req/s (it fails at ×2.2; found to within 10%)
      share used      50.0% of the capacity at the SLO (GPU busy below is occupancy, not this)
      GPU bill split  $50 used + $50 paid for but unused = $100/month
    """
    label = f"  {'capacity at SLO':<15} "
    if not math.isfinite(cap.scale):
        lines = [label + cap.describe()]
    else:
        bound = (
            f"it fails at ×{cap.scale_high:.3g}"
            if math.isfinite(cap.scale_high)
            else f"it holds at every load searched, up to ×{cap.max_scale:g}"
        )
        lines = [
            f"{label}×{cap.scale:.3g} the traffic = {cap.capacity_rps:.3g} req/s "
            f"({bound}; found to within {cap.tolerance:.0%})",
            f"  {'share used':<15} {cap.used_share:.1%} of the capacity at the SLO "
            "(GPU busy below is occupancy, not this)",
        ]
        if math.isfinite(cap.gpu_usd_per_month):
            lines.append(
                f"  {'GPU bill split':<15} {number('${:,.0f}', cap.used_usd_per_month)} used + "
                f"{number('${:,.0f}', cap.unused_usd_per_month)} paid for but unused = "
                f"{number('${:,.0f}', cap.gpu_usd_per_month)}/month"
            )
    if cap.note:
        lines.append(f"  {'':<15} note: {cap.note}")
    return lines


def _fmt(summary_row: object, fmt: str) -> str:
    mean, lo, hi = summary_row["mean"], summary_row["ci_low"], summary_row["ci_high"]  # type: ignore[index]
    note = summary_row.get("note", "")  # type: ignore[attr-defined]
    text = number(fmt, mean)
    if lo == lo and hi == hi and number(fmt, lo) == number(fmt, hi):
        text += f"  ({NOTE_NARROW})"  # a real interval, not a zero-width one
    elif lo == lo and hi == hi:  # not NaN
        text += f"  (95% CI {number(fmt, lo)} – {number(fmt, hi)})"
    elif isinstance(note, str) and note:  # identical in every replication, or one of them
        text += f"  ({note})"
    return text


def print_summary(result: RunResult, decision: Decision, out_dir: Path, elapsed_s: float) -> None:
    """A short human summary of a run, ending with the verdict."""
    s = result.scenario
    table = result.summary().set_index("metric")
    print(
        f"{s.name}: {len(result.replications)} replications × {s.horizon.duration_s:g} s "
        f"(warm-up {s.horizon.warmup_s:g} s excluded), seed {result.seed}"
    )
    print(f"fleet: {fleet_text(s)}")
    print(calendar_line(s))
    capacity = result.capacity_found
    for key, label, fmt in _HEADLINE:
        if key == "gpu_busy_fraction" and capacity is not None:
            # utilisation as the guide means it first, then occupancy, MFU and MBU
            for line in capacity_lines(capacity):
                print(line)
            capacity = None
        if key in table.index:
            print(f"  {label:<15} {_fmt(table.loc[key], fmt)}")
    if capacity is not None:  # no utilisation rows to put it before
        for line in capacity_lines(capacity):
            print(line)
    means = table["mean"].astype(float)
    for name in s.pool_names if s.pooled else ():
        share = float(means.get(f"gpu_busy_fraction[pool:{name}]", float("nan")))
        month = float(means.get(f"gpu_usd_per_month[pool:{name}]", float("nan")))
        per = float(means.get(f"gpu_usd_per_1m_tokens[pool:{name}]", float("nan")))
        served = float(means.get(f"requests_served[pool:{name}]", float("nan")))
        cost = f"${per:.3f} per 1M tokens it served" if math.isfinite(per) else "no tokens served"
        print(
            f"  pool {name:<10} {served:,.0f} requests served, GPU busy {share:.1%}, "
            f"GPU ${month:,.0f}/month, {cost}"
        )
    rej = float(means.get("requests_rejected", 0.0)) + float(means.get("requests_failed", 0.0))
    if rej > 0:
        print(f"  not served      {rej:.0f} requests per replication (rejected or failed)")
    print(textwrap.fill(decision.verdict, width=100, break_on_hyphens=False))
    first = result.first
    n_req = first.n_requests
    kept = ""
    if len(first.requests) < n_req:
        kept = f"; {len(first.requests):,} of them in requests.parquet"
    print(f"wrote {out_dir}/ in {elapsed_s:.1f} s ({n_req:,} requests in replication 0{kept})")
