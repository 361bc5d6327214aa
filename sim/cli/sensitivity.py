"""``crossover sensitivity SCENARIO --param PATH=LO:HI|FRACTION ... --out DIR``: which inputs
move the answer (:func:`sim.tornado`, and :func:`sim.variance_indices` on a run of the
scenario when it has an ``uncertainty:`` section); ``crossover report DIR`` reads it back."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.cli.common import (
    CommandParser,
    add_out,
    add_quiet,
    add_replications,
    add_seed,
    add_set,
    add_workers,
    load_with_overrides,
    run_command,
)
from sim.plots import tornado as draw_tornado
from sim.report.figures import render
from sim.scenario_io import ScenarioError, dump_scenario
from sim.study.montecarlo import run
from sim.study.sensitivity import tornado, tornado_bars, variance_indices

__all__ = ["HELP", "main", "parse_params", "parser"]

HELP = "one-at-a-time and variance-based sensitivity (see crossover sensitivity -h)"


def parser() -> CommandParser:
    """The arguments of ``crossover sensitivity``."""
    p = CommandParser(
        prog="crossover sensitivity",
        description="Set each --param to a low and a high value, the rest at the scenario, "
        "with the same replication seeds (OUT/tornado.csv, OUT/tornado.png); with an "
        "'uncertainty:' section, also the share of each metric's variance each uncertain "
        "input explains over a run of the scenario (OUT/variance.csv). Read it back with "
        "`crossover report OUT`.",
    )
    p.add_argument("scenario", type=Path, help="scenario YAML file")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="PATH=LO:HI|FRACTION",
        help="a path and its low and high values, or a fraction x for ±x of the scenario's "
        "value (repeatable, at least one)",
    )
    add_replications(p, help_text="replications per run, the same seeds in every run (5)")
    add_seed(p)
    add_workers(p, default=1, help_text="worker processes (0: one per core; default 1)")
    add_set(p, help_text="override a value of the base scenario (repeatable)")
    add_out(p, required=True, help_text="output directory")
    add_quiet(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``crossover sensitivity SCENARIO --param PATH=LO:HI|FRACTION ... [-n N] [--seed S]
    [-j J] [--set PATH=VALUE] --out DIR [-q]``.

    Returns 0 on success, 2 on bad input (one line on stderr naming the flag or field).
    """
    return run_command(parser(), _run, argv)


def parse_params(items: Sequence[str]) -> dict[str, float | tuple[Any, Any]]:
    """``--param`` items as :func:`sim.tornado`'s ``parameters``.

    Examples
    --------
    >>> parse_params(["fleet.replicas=1:4", "fleet.pricing.usd_per_gpu_hour=0.25"])
    {'fleet.replicas': (1, 4), 'fleet.pricing.usd_per_gpu_hour': 0.25}
    """
    import yaml

    out: dict[str, float | tuple[Any, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ScenarioError(
                f"--param {item!r}: expected PATH=LO:HI or PATH=FRACTION, e.g. fleet.replicas=1:4"
            )
        if key in out:
            raise ScenarioError(f"--param {item!r}: {key} is given twice")
        lo, colon, hi = raw.partition(":")
        try:
            if colon:
                out[key] = (yaml.safe_load(lo), yaml.safe_load(hi))
            else:
                out[key] = float(raw)
        except (ValueError, yaml.YAMLError):
            raise ScenarioError(
                f"--param {item!r}: expected PATH=LO:HI or PATH=FRACTION (a number in (0, 1))"
            ) from None
    return out


def _run(args: argparse.Namespace) -> int:
    if not args.param:
        raise ScenarioError("--param: give at least one PATH=LO:HI or PATH=FRACTION")
    parameters = parse_params(args.param)
    scenario = load_with_overrides(args.scenario, args.set)
    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "scenario.resolved.yaml").write_text(dump_scenario(scenario))
    except OSError as exc:
        raise ScenarioError(f"--out {out}: cannot write there ({exc.strerror})") from None
    executor = "serial" if args.workers == 1 else "processes"
    workers = None if args.workers in (0, 1) else args.workers
    try:
        table = tornado(
            scenario,
            parameters,
            replications=args.replications,
            seed=args.seed,
            executor=executor,
            workers=workers,
        )
    except KeyError as exc:  # no such path, or no such metric
        raise ScenarioError(f"--param: {exc.args[0]}") from None
    except ValueError as exc:
        raise ScenarioError(f"--param: {exc}") from None
    table.to_csv(out / "tornado.csv", index=False)
    bars = tornado_bars(table)
    fig = render("tornado", "Sensitivity", lambda ax: draw_tornado(bars, ax=ax))
    (out / "tornado.png").write_bytes(fig.png)
    written = ["tornado.csv", "tornado.png"]
    if scenario.uncertainty:
        result = run(
            scenario,
            replications=args.replications,
            seed=args.seed,
            executor=executor,
            workers=workers,
        )
        variance_indices(result).to_csv(out / "variance.csv", index=False)
        written.append("variance.csv")
    meta = {"seed": args.seed, "replications": args.replications, "parameters": args.param}
    (out / "sensitivity.json").write_text(json.dumps(meta, indent=2) + "\n")
    if not args.quiet:
        swing = (bars["high"] - bars["low"]).abs().to_numpy(dtype=float)
        top = bars.iloc[int(swing.argmax())]
        metrics = set(table["metric"])
        metric = "savings_vs_api_usd" if "savings_vs_api_usd" in metrics else table["metric"][0]
        sys.stdout.write(
            f"{scenario.name}: {len(parameters)} parameters × 2 values × {args.replications} "
            f"replications, seed {args.seed}; {metric} moves most with {top['parameter']} "
            f"({top['low']:.4g} at low, {top['high']:.4g} at high, base {top['base']:.4g})\n"
            f"wrote {out}/{', '.join(written)}\n"
        )
    return 0
