"""``crossover report DIR [-o report.html]``: a self-contained HTML report of what
``crossover run``, ``sweep``, ``plan`` or ``sensitivity`` wrote, its kind told by its files
(:func:`sim.report.report_directory`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sim.cli.common import CommandParser, run_command
from sim.report import report_directory

__all__ = ["HELP", "main", "parser"]

HELP = "write a self-contained HTML report of an output directory (see crossover report -h)"


def parser() -> CommandParser:
    """The arguments of ``crossover report``."""
    p = CommandParser(
        prog="crossover report",
        description="Build a self-contained HTML report from what `crossover run`, `sweep`, "
        "`plan` or `sensitivity` wrote, its kind told by its files (replications.csv, "
        "runs.parquet, plan.csv, tornado.csv); figures as PNG and tables as CSV go to "
        "<stem>_files/ beside it.",
    )
    p.add_argument(
        "directory", type=Path, help="what a crossover command wrote with --out (out/NAME)"
    )
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="HTML file (default DIR/report.html)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``crossover report DIR [-o report.html]``.

    Returns 0 on success, 2 on bad input (one line on stderr naming the directory or file).
    """
    return run_command(parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    out = report_directory(args.directory, args.output)
    sys.stdout.write(f"wrote {out}\n")
    return 0
