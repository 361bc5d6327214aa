"""``crossover sweep SCENARIO``: every point of a grid or Latin hypercube of scenario
variants, resumable from ``OUT/store/``, and the crossover when one path is swept."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from sim.cli.common import (
    CommandParser,
    add_out,
    add_quiet,
    add_replications,
    add_seed,
    add_set,
    add_workers,
    count,
    load_with_overrides,
    run_scenario_command,
)
from sim.scenario_io import ScenarioError, dump_scenario, format_validation_error
from sim.study.crossover import crossover, describe
from sim.study.executors import EXECUTORS, make_executor
from sim.study.store import StoreMismatch
from sim.study.sweep import sweep, sweep_points

__all__ = ["HELP", "main", "parse_grid", "parse_ranges", "parser"]

HELP = "simulate a grid or Latin hypercube of scenario variants (resumable)"


def parser() -> CommandParser:
    """The arguments of ``crossover sweep``."""
    p = CommandParser(
        prog="crossover sweep",
        errors_as="crossover",
        description="Replications of every point; results in OUT/runs.parquet and "
        "OUT/summary.csv; finished runs are kept in OUT/store/ and a rerun computes only "
        "the missing ones.",
    )
    p.add_argument("scenario", type=Path)
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="PATH=V1,V2,...",
        help="a swept path and its values (repeatable: the cartesian product)",
    )
    p.add_argument(
        "--lhs",
        type=lambda t: count(t, minimum=1),
        default=None,
        metavar="N",
        help="N points of a Latin hypercube over the --range paths",
    )
    p.add_argument(
        "--range",
        action="append",
        default=[],
        dest="ranges",
        metavar="PATH=LO:HI",
        help="a path's range for --lhs (repeatable)",
    )
    add_replications(
        p, help_text="replications per point, the same seeds at every point (default 5)"
    )
    add_seed(p)
    p.add_argument("--executor", choices=EXECUTORS, default="processes")
    add_workers(p, default=0, help_text="worker processes (0: one per core; default 0)")
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:8786",
        help="a running Dask scheduler (with --executor dask)",
    )
    add_out(p, required=True, help_text="output directory")
    add_set(p, help_text="override a value of the base scenario (repeatable)")
    add_quiet(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``crossover sweep SCENARIO (--grid PATH=V1,V2,... | --lhs N --range PATH=LO:HI) --out
    DIR [-n] [--seed] [--executor] [-j] [--scheduler] [--set PATH=VALUE] [-q]``.

    Returns 0 on success, 2 on bad input (``error: …`` on stderr naming the flag or field).
    """
    return run_scenario_command(parser(), _run, argv)


def parse_grid(items: Sequence[str]) -> dict[str, list[object]]:
    """``--grid PATH=V1,V2,...`` items as a mapping of paths to their YAML values.

    Examples
    --------
    >>> parse_grid(["fleet.replicas=1,2,4"])
    {'fleet.replicas': [1, 2, 4]}
    """
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


def parse_ranges(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``--range PATH=LO:HI`` items as a mapping of paths to ``(LO, HI)``.

    Examples
    --------
    >>> parse_ranges(["fleet.replicas=1:8"])
    {'fleet.replicas': (1.0, 8.0)}
    """
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


def _run(args: argparse.Namespace) -> int:
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
        {"grid": parse_grid(args.grid)}
        if args.grid
        else {"samples": args.lhs, "ranges": parse_ranges(args.ranges)}
    )
    scenario = load_with_overrides(args.scenario, args.set)
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
            print(f"crossover: {describe(c)}")
    print(f"wrote {out_dir}/runs.parquet and summary.csv")
    return 0
