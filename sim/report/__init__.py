"""One-file HTML reports of a run: ``sim.report(result, "report.html")`` or, after the fact,
``crossover report DIR -o report.html`` on what ``crossover run`` wrote."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sim.command import CommandParser, run_command
from sim.report.build import assumptions, load_run, report

__all__ = ["assumptions", "load_run", "main", "report"]


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="crossover report",
        description="Build a self-contained HTML report from a `crossover run` directory "
        "(figures as PNG and tables as CSV go to <stem>_files/ beside it).",
    )
    p.add_argument("directory", type=Path, help="what `crossover run` wrote (out/NAME)")
    p.add_argument(
        "-o", "--output", type=Path, default=None, help="HTML file (default DIR/report.html)"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``crossover report DIR [-o report.html]``.

    Returns 0 on success, 2 on bad input (one line on stderr naming the directory or file).
    """
    return run_command(_parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
    out = report(load_run(args.directory), args.output or args.directory / "report.html")
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
