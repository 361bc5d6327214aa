"""``crossover fit TRACE -o workload.yaml``: a workload class fitted to a request trace
(:func:`sim.workload.fit.fit_workload`), and the table comparing a sample of it with the trace."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sim.cli.common import CommandParser, run_command
from sim.workload.fit import fit_workload
from sim.workload.trace import load_trace

__all__ = ["HELP", "main", "parser"]

HELP = "fit a workload model (rates, burstiness, lengths) to a request trace (see crossover fit -h)"


def parser() -> CommandParser:
    """The arguments of ``crossover fit``."""
    p = CommandParser(
        prog="crossover fit",
        description="Fit a workload class (arrivals, profile, lengths) to a request trace.",
    )
    p.add_argument("trace", help="trace file (Azure CSV, Mooncake JSONL, or CSV)")
    p.add_argument("-o", "--output", required=True, help="where to write the workload YAML")
    p.add_argument("--window", type=float, default=60.0, help="count window, seconds")
    p.add_argument("--name", default="fitted", help="class name")
    p.add_argument(
        "--format",
        choices=["azure_csv", "mooncake_jsonl", "csv"],
        default=None,
        help="trace format",
    )
    p.add_argument("--time-unit", choices=["s", "ms", "us"], default=None)
    p.add_argument("--seed", type=int, default=0, help="seed of the comparison sample")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``crossover fit TRACE -o workload.yaml [--window 60] [--name chat]``.

    Prints the choice and the report table, writes the ``workload:`` YAML. Returns 0 on
    success, 2 on bad input (one line on stderr).
    """
    return run_command(parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    trace = load_trace(
        args.trace, format=args.format, time_unit=args.time_unit, read_identity=False
    )
    res = fit_workload(trace, name=args.name, window_s=args.window, seed=args.seed)
    Path(args.output).write_text(res.to_yaml())
    with pd.option_context("display.float_format", "{:.4g}".format):
        table = res.report.to_string()
    sys.stdout.write(f"{res.reason}\n\n{table}\n\nwrote {args.output}\n")
    return 0
