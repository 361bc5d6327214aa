"""``crossover validate FILE...``: check scenario files, one line per file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sim.cli.common import EXIT_USAGE, CommandParser, run_scenario_command
from sim.scenario_io import ScenarioError, load_scenario

__all__ = ["HELP", "main", "parser"]

HELP = "check scenario files"


def parser() -> CommandParser:
    """The arguments of ``crossover validate``."""
    p = CommandParser(prog="crossover validate", errors_as="crossover")
    p.add_argument("files", type=Path, nargs="+")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``crossover validate FILE...``: ``ok: FILE (NAME)`` on stdout or ``error: …`` on stderr
    for each file; returns 0 when all are valid, else 2."""
    return run_scenario_command(parser(), _run, argv)


def _run(args: argparse.Namespace) -> int:
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
