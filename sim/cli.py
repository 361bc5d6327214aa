"""The ``crossover`` command line: a thin layer over the public functions."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from sim import __version__
from sim.command import EXIT_USAGE
from sim.decide import Decision
from sim.io import (
    ScenarioError,
    check_trace_files,
    dump_scenario,
    load_scenario,
    validate_scenario,
)
from sim.montecarlo import RunResult, run
from sim.scenario import Scenario, apply_overrides
from sim.verdict import calendar_line

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


# subcommands implemented (with their own parsers) in the modules that do the work
_DELEGATED = {
    "plan": "find the cheapest fleet that meets an SLO attainment target",
    "report": "write a self-contained HTML report of a run directory",
    "fit": "fit a workload model (rates, burstiness, lengths) to a request trace",
    "calibrate": "fit the step-time model to your own benchmark",
}
_DELEGATED_MODULES = {
    "plan": "sim.planning",
    "report": "sim.report",
    "fit": "sim.fit",
    "calibrate": "sim.calibrate",
}


class _Parser(argparse.ArgumentParser):
    # every usage error points to the top-level help: one line, exit 2, no usage dump
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"crossover: {message} (see crossover --help)\n")
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="crossover",
        description="Simulate self-hosted LLM serving against a pay-per-token API.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    r = sub.add_parser("run", help="run replications of a scenario and write the results")
    r.add_argument("scenario", type=Path)
    r.add_argument(
        "--replications",
        "-n",
        type=lambda t: _count(t, minimum=1),
        default=5,
        help="independent replications (default 5)",
    )
    r.add_argument(
        "--seed", type=lambda t: _count(t, minimum=0), default=0, help="root seed (default 0)"
    )
    r.add_argument("--out", type=Path, default=None, help="output directory (default out/NAME)")
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a scenario value, e.g. --set fleet.replicas=4 (repeatable)",
    )
    r.add_argument(
        "--workers",
        "-j",
        type=lambda t: _count(t, minimum=0),
        default=1,
        help="local worker processes for the replications (0: one per core; default 1)",
    )
    r.add_argument("--quiet", "-q", action="store_true")
    _add_sweep_parser(sub)
    for name, text in _DELEGATED.items():
        c = sub.add_parser(name, help=f"{text} (see crossover {name} -h)", add_help=False)
        c.add_argument("rest", nargs=argparse.REMAINDER)
    v = sub.add_parser("validate", help="check scenario files")
    v.add_argument("files", type=Path, nargs="+")
    return p


def _add_sweep_parser(sub: argparse._SubParsersAction[_Parser]) -> None:
    from sim.executors import EXECUTORS

    w = sub.add_parser(
        "sweep",
        help="simulate a grid or Latin hypercube of scenario variants (resumable)",
        description="Replications of every point; results in OUT/runs.parquet and "
        "OUT/summary.csv; finished runs are kept in OUT/store/ and a rerun computes only "
        "the missing ones.",
    )
    w.add_argument("scenario", type=Path)
    w.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="PATH=V1,V2,...",
        help="a swept path and its values (repeatable: the cartesian product)",
    )
    w.add_argument(
        "--lhs",
        type=lambda t: _count(t, minimum=1),
        default=None,
        metavar="N",
        help="N points of a Latin hypercube over the --range paths",
    )
    w.add_argument(
        "--range",
        action="append",
        default=[],
        dest="ranges",
        metavar="PATH=LO:HI",
        help="a path's range for --lhs (repeatable)",
    )
    w.add_argument(
        "--replications",
        "-n",
        type=lambda t: _count(t, minimum=1),
        default=5,
        help="replications per point, the same seeds at every point (default 5)",
    )
    w.add_argument(
        "--seed", type=lambda t: _count(t, minimum=0), default=0, help="root seed (default 0)"
    )
    w.add_argument("--executor", choices=EXECUTORS, default="processes")
    w.add_argument(
        "--workers",
        "-j",
        type=lambda t: _count(t, minimum=0),
        default=0,
        help="worker processes (0: one per core; default 0)",
    )
    w.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:8786",
        help="a running Dask scheduler (with --executor dask)",
    )
    w.add_argument("--out", type=Path, required=True, help="output directory")
    w.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a value of the base scenario (repeatable)",
    )
    w.add_argument("--quiet", "-q", action="store_true")


def _parse_grid(items: Sequence[str]) -> dict[str, list[object]]:
    import yaml

    out: dict[str, list[object]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise ScenarioError(
                f"--grid {item!r}: expected PATH=V1,V2,..., e.g. fleet.replicas=1,2,4"
            )
        try:
            values = [yaml.safe_load(v) for v in raw.split(",")]
        except yaml.YAMLError:
            raise ScenarioError(f"--grid {item!r}: a value is not valid YAML") from None
        if key.strip() in out:
            raise ScenarioError(f"--grid {item!r}: {key.strip()} is given twice")
        out[key.strip()] = values
    return out


def _parse_ranges(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        lo, colon, hi = raw.partition(":")
        try:
            pair = (float(lo), float(hi))
        except ValueError:
            pair = None
        if not sep or not key.strip() or not colon or pair is None:
            raise ScenarioError(f"--range {item!r}: expected PATH=LO:HI, e.g. fleet.replicas=1:8")
        if not pair[0] < pair[1]:
            raise ScenarioError(f"--range {item!r}: LO must be below HI")
        out[key.strip()] = pair
    return out


def _parse_overrides(items: Sequence[str]) -> dict[str, object]:
    import yaml

    out: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError(f"--set {item!r}: expected PATH=VALUE, e.g. fleet.replicas=4")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ScenarioError(f"--set {item!r}: the value is not valid YAML") from None
    return out


def _count(text: str, *, minimum: int) -> int:
    """An argparse type: an integer of at least ``minimum``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def _fmt(summary_row: object, fmt: str) -> str:
    mean, lo, hi = summary_row["mean"], summary_row["ci_low"], summary_row["ci_high"]  # type: ignore[index]
    text = fmt.format(mean)
    if lo == lo and hi == hi:  # not NaN
        text += f"  (95% CI {fmt.format(lo)} – {fmt.format(hi)})"
    return text


def _fleet_size(s: Scenario) -> str:
    auto = s.fleet.autoscaler
    if auto is None:
        return str(s.fleet.replicas)
    return f"{auto.min_replicas}–{auto.max_replicas} (autoscaled)"


def print_summary(result: RunResult, decision: Decision, out_dir: Path, elapsed_s: float) -> None:
    """A short human summary of a run, ending with the verdict."""
    s = result.scenario
    table = result.summary().set_index("metric")
    rep = result.first.replica
    print(
        f"{s.name}: {len(result.replications)} replications × {s.horizon.duration_s:g} s "
        f"(warm-up {s.horizon.warmup_s:g} s excluded), seed {result.seed}"
    )
    print(
        f"fleet: {_fleet_size(s)} × {rep.model.name} on {s.fleet.tp} × {rep.gpu.name} "
        f"({s.fleet.dtype}), KV cache {rep.kv_capacity_tokens:,} tokens/replica, "
        f"router {s.fleet.router}"
    )
    print(calendar_line(s))
    for key, label, fmt in _HEADLINE:
        if key in table.index:
            print(f"  {label:<15} {_fmt(table.loc[key], fmt)}")
    means = table["mean"].astype(float)
    rej = float(means.get("requests_rejected", 0.0)) + float(means.get("requests_failed", 0.0))
    if rej > 0:
        print(f"  not served      {rej:.0f} requests per replication (rejected or failed)")
    print(textwrap.fill(decision.verdict, width=100, break_on_hyphens=False))
    n_req = len(result.first.requests)
    print(f"wrote {out_dir}/ in {elapsed_s:.1f} s ({n_req:,} requests in replication 0)")


def _load(args: argparse.Namespace) -> Scenario:
    scenario = load_scenario(args.scenario)
    if not args.set:
        return scenario
    source = f"{args.scenario} (with --set)"
    try:
        data = apply_overrides(scenario, _parse_overrides(args.set))
    except KeyError as exc:
        raise ScenarioError(f"{source}: {exc.args[0]}") from None
    scenario = validate_scenario(data, source=source)
    check_trace_files(scenario, source=source)  # a --set may point at another trace
    return scenario


def _cmd_run(args: argparse.Namespace) -> int:
    scenario = _load(args)
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
    run_info = {"seed": result.seed, "replications": len(result.replications)}
    (out_dir / "run.json").write_text(json.dumps(run_info | {"version": __version__}) + "\n")
    if result.compare().shape[0]:
        result.compare().to_csv(out_dir / "compare.csv", index=False)
    if progress is not None:
        sys.stderr.write("simulating the other options on the same requests\n")
    decision = result.decision()
    result.option_runs().to_csv(out_dir / "options.csv", index=False)
    decision.table.to_csv(out_dir / "decision.csv", index=False)
    (out_dir / "verdict.txt").write_text(decision.verdict + "\n", encoding="utf-8")
    if not args.quiet:
        print_summary(result, decision, out_dir, time.perf_counter() - t0)
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from sim.decisions import crossover
    from sim.executors import make_executor
    from sim.io import format_validation_error
    from sim.store import StoreMismatch
    from sim.sweep import sweep, sweep_points

    if args.grid and (args.lhs is not None or args.ranges):
        raise ScenarioError("--grid: use either --grid or --lhs with --range, not both")
    if args.ranges and args.lhs is None:
        raise ScenarioError("--lhs: --range goes with --lhs N")
    if not args.grid and args.lhs is None:
        raise ScenarioError("--grid: give --grid PATH=V1,V2,... or --lhs N with --range")
    if args.lhs is not None and not args.ranges:
        raise ScenarioError("--range: --lhs needs at least one --range PATH=LO:HI")
    if args.scheduler is not None and args.executor != "dask":
        raise ScenarioError("--scheduler: a scheduler address needs --executor dask")
    opt = "--grid" if args.grid else "--range"
    design = (
        {"grid": _parse_grid(args.grid)}
        if args.grid
        else {"samples": args.lhs, "ranges": _parse_ranges(args.ranges)}
    )
    scenario = _load(args)
    try:
        points = sweep_points(scenario, seed=args.seed, **design)
    except KeyError as exc:
        raise ScenarioError(f"{opt}: {exc.args[0]}") from None
    except ValidationError as exc:
        source = f"{args.scenario} (with {opt})"
        raise ScenarioError(format_validation_error(exc, source=source)) from None
    except ValueError as exc:
        raise ScenarioError(f"{opt}: {exc}") from None
    out_dir: Path = args.out
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "scenario.resolved.yaml").write_text(dump_scenario(scenario))
    except OSError as exc:
        raise ScenarioError(f"--out {out_dir}: cannot write there ({exc.strerror})") from None
    executor = make_executor(args.executor, workers=args.workers, scheduler=args.scheduler)
    store = out_dir / "store"
    try:
        result = sweep(
            scenario,
            replications=args.replications,
            seed=args.seed,
            executor=executor,
            store=store,
            progress=None if not args.quiet else False,
            **design,
        )
    except StoreMismatch as exc:
        raise ScenarioError(f"--out {out_dir}: {exc}") from None
    except OSError as exc:  # an unreachable scheduler, or a store that cannot be written
        where = f"--scheduler {args.scheduler}" if args.scheduler else f"--out {out_dir}"
        raise ScenarioError(f"{where}: {exc}") from None
    result.runs.to_parquet(out_dir / "runs.parquet", index=False)
    result.summary().to_csv(out_dir / "summary.csv", index=False)
    if args.quiet:
        return 0
    rate = result.requests_simulated / result.elapsed_s if result.computed else 0.0
    print(
        f"{scenario.name}: {len(points)} points × {args.replications} replications, seed "
        f"{args.seed}: {result.computed} simulated, {result.reused} reused from {store}/ "
        f"in {result.elapsed_s:.1f} s ({rate:,.0f} simulated requests/s)"
    )
    if len(result.parameters) == 1 and "savings_vs_api_usd" in result.runs:
        try:
            c = crossover(result, x=result.parameters[0])
        except ValueError:
            pass
        else:
            if c.estimate == c.estimate:
                ci = f" (95% CI {c.ci_low:.4g} – {c.ci_high:.4g})" if c.ci_low == c.ci_low else ""
                print(f"crossover: savings vs the API cross zero at {c.x} = {c.estimate:.4g}{ci}")
            else:
                print(f"crossover: none in the swept range ({c.note})")
    print(f"wrote {out_dir}/runs.parquet and summary.csv")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    bad = 0
    for f in args.files:
        try:
            s = load_scenario(f)
        except ScenarioError as exc:
            print(f"error: {exc}", file=sys.stderr)
            bad += 1
        else:
            print(f"ok: {f} ({s.name})")
    return EXIT_USAGE if bad else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossover`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in _DELEGATED:
        # commands with their own parser, in the module that implements them
        module = importlib.import_module(_DELEGATED_MODULES[argv[0]])
        code: int = module.main(argv[1:])
        return code
    args = _parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "sweep":
            return _cmd_sweep(args)
        return _cmd_validate(args)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        # Input errors are caught when the scenario loads; this is the safety net for an
        # input the checks missed, still one line and exit 2 rather than a traceback.
        where = f"{args.scenario}: " if args.command in ("run", "sweep") else ""
        print(f"error: {where}{exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
