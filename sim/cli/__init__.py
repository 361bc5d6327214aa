"""The ``crossover`` command line: a thin layer over the public functions.

One module per subcommand, each with its ``HELP`` line, its ``parser()`` and its
``main(argv)``; what they share (the one-line-error parser and runners, the common argument
groups) is in :mod:`sim.cli.common`. :func:`main` hands the arguments after the subcommand's
name to that subcommand's ``main``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Protocol

from sim.cli import calibrate, fit, plan, report, run, sensitivity, sweep, validate
from sim.cli.common import CommandParser

__all__ = ["main"]


class Subcommand(Protocol):
    """What a subcommand module provides."""

    HELP: str  # its line in `crossover --help`

    def main(self, argv: Sequence[str] | None = None) -> int: ...


# in the order `crossover --help` lists them
COMMANDS: dict[str, Subcommand] = {
    "run": run,
    "sweep": sweep,
    "plan": plan,
    "sensitivity": sensitivity,
    "report": report,
    "fit": fit,
    "calibrate": calibrate,
    "validate": validate,
}


def _parser() -> CommandParser:
    # `crossover --help`, and the usage errors of a line that names no subcommand first
    p = CommandParser(
        prog="crossover",
        description="Simulate self-hosted LLM serving against a pay-per-token API.",
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    for name, module in COMMANDS.items():
        c = sub.add_parser(name, help=module.HELP, add_help=False, errors_as="crossover")
        c.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crossover`` command.

    Returns the exit code: 0 on success, 2 on bad input (one line on stderr), 130 when
    interrupted. Usage errors of ``run``, ``sweep``, ``validate`` and of the command itself
    exit through :class:`SystemExit` (code 2), as argparse's do.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] and argv[0] in COMMANDS:
        return COMMANDS[argv[0]].main(argv[1:])
    args = _parser().parse_args(argv)  # --help, or a usage error (both exit)
    # parse_args returned (a subcommand after `--`, which newer Pythons accept): as above
    return COMMANDS[args.command].main(args.rest)
