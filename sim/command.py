"""The shared shape of every ``crossover`` subcommand: a parser whose usage errors are one
line, and a runner that turns bad input into one line on stderr and exit code 2.

Edge code only: the modules that do the work expose a ``main(argv)`` built on
:func:`run_command`, and :mod:`sim.cli` dispatches to them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

EXIT_USAGE = 2

# What bad input raises: ScenarioError, pydantic's ValidationError and pandas' ParserError
# are ValueErrors; a missing file or column is an OSError or a KeyError.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError)


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit 2, without a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def one_line(exc: BaseException) -> str:
    """The message of an input error on one line (a missing file says which and why)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        msg = f"{exc.filename}: cannot read ({exc.strerror})"
    elif isinstance(exc, KeyError) and exc.args:
        msg = str(exc.args[0])
    else:
        msg = str(exc)
    return " ".join(msg.split())


def run_command(
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int],
    argv: Sequence[str] | None,
) -> int:
    """Parse ``argv`` and run ``body``; bad input gives one line on stderr and returns 2.

    Examples
    --------
    >>> p = CommandParser(prog="crossover demo")
    >>> _ = p.add_argument("n", type=int)
    >>> run_command(p, lambda args: 0 if args.n > 0 else int("x"), ["3"])
    0
    """
    try:
        args = parser.parse_args(None if argv is None else list(argv))
    except SystemExit as exc:  # --help (0) or a usage error (already printed, 2)
        return exc.code if isinstance(exc.code, int) else 0
    try:
        return body(args)
    except INPUT_ERRORS as exc:
        sys.stderr.write(f"{parser.prog}: {one_line(exc)}\n")
        return EXIT_USAGE
