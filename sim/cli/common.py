"""What the ``crossover`` subcommands share: the parser whose usage errors are one line, the
runners that turn bad input into one line on stderr and exit code 2, and the argument groups
several subcommands take (``--set``, ``--seed``, ``--replications``, ``--workers``, ``--out``,
``--quiet``, a scenario loaded with its overrides).

Two conventions, kept as they were: ``run``, ``sweep`` and ``validate`` report bad input as
``error: …`` and their usage errors point to ``crossover --help``
(:func:`run_scenario_command`); ``plan``, ``report``, ``fit`` and ``calibrate`` name
themselves, ``crossover plan: …``, and point to their own ``--help`` (:func:`run_command`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sim.scenario import Scenario, apply_overrides
from sim.scenario_io import ScenarioError, check_trace_files, load_scenario, validate_scenario

__all__ = [
    "EXIT_USAGE",
    "INPUT_ERRORS",
    "CommandParser",
    "add_out",
    "add_quiet",
    "add_replications",
    "add_seed",
    "add_set",
    "add_workers",
    "count",
    "load_with_overrides",
    "one_line",
    "parse_overrides",
    "run_command",
    "run_scenario_command",
]

EXIT_USAGE = 2

# What bad input raises: ScenarioError, pydantic's ValidationError and pandas' ParserError
# are ValueErrors; a missing file or column is an OSError or a KeyError.
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError)

Body = Callable[[argparse.Namespace], int]


class CommandParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line and exit 2, without a usage dump.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`argparse.ArgumentParser`.
    errors_as
        The command a usage error is reported as, and whose ``--help`` it points to
        (default: this parser's ``prog``).
    """

    def __init__(self, *args: Any, errors_as: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.errors_as = errors_as

    def error(self, message: str) -> None:  # type: ignore[override]
        name = self.errors_as or self.prog
        sys.stderr.write(f"{name}: {message} (see {name} --help)\n")
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


def run_command(parser: argparse.ArgumentParser, body: Body, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run ``body``; bad input gives one line on stderr and returns 2.

    The line starts with the parser's ``prog`` (``crossover plan: …``); ``--help`` returns 0.

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


def run_scenario_command(
    parser: argparse.ArgumentParser, body: Body, argv: Sequence[str] | None
) -> int:
    """Parse ``argv`` and run ``body``; bad input gives ``error: …`` on stderr and returns 2.

    Usage errors and ``--help`` leave through :class:`SystemExit`, as argparse's do. A
    :class:`~sim.scenario_io.ScenarioError` names its file and field itself; any other
    :class:`ValueError` is prefixed with the scenario file, if the command has one. Ctrl-C
    gives ``interrupted`` and 130.

    Examples
    --------
    >>> p = CommandParser(prog="crossover demo", errors_as="crossover")
    >>> _ = p.add_argument("n", type=int)
    >>> run_scenario_command(p, lambda args: args.n, ["0"])
    0
    """
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        return body(args)
    except ScenarioError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        # Input errors are caught when the scenario loads; this is the safety net for an
        # input the checks missed, still one line and exit 2 rather than a traceback.
        scenario = getattr(args, "scenario", None)
        where = f"{scenario}: " if scenario is not None else ""
        print(f"error: {where}{exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def count(text: str, *, minimum: int) -> int:
    """An argparse type: an integer of at least ``minimum``.

    Examples
    --------
    >>> count("3", minimum=1)
    3
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


# ---------------------------------------------------------------------------------------------
# argument groups: the same flag, type and check wherever a subcommand takes it


def add_replications(parser: argparse.ArgumentParser, *, help_text: str) -> None:
    """``--replications/-n N`` (at least 1, default 5)."""
    parser.add_argument(
        "--replications",
        "-n",
        type=lambda t: count(t, minimum=1),
        default=5,
        help=help_text,
    )


def add_seed(parser: argparse.ArgumentParser) -> None:
    """``--seed N``, the root seed (at least 0, default 0)."""
    parser.add_argument(
        "--seed", type=lambda t: count(t, minimum=0), default=0, help="root seed (default 0)"
    )


def add_workers(parser: argparse.ArgumentParser, *, default: int, help_text: str) -> None:
    """``--workers/-j N`` worker processes (0: one per core)."""
    parser.add_argument(
        "--workers",
        "-j",
        type=lambda t: count(t, minimum=0),
        default=default,
        help=help_text,
    )


def add_out(parser: argparse.ArgumentParser, *, required: bool, help_text: str) -> None:
    """``--out DIR``, the output directory (``None`` when optional and not given)."""
    if required:
        parser.add_argument("--out", type=Path, required=True, help=help_text)
    else:
        parser.add_argument("--out", type=Path, default=None, help=help_text)


def add_set(parser: argparse.ArgumentParser, *, help_text: str) -> None:
    """``--set PATH=VALUE``, repeatable; read with :func:`parse_overrides`."""
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", help=help_text)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    """``--quiet/-q``: print nothing on success."""
    parser.add_argument("--quiet", "-q", action="store_true")


def parse_overrides(items: Sequence[str]) -> dict[str, object]:
    """``--set PATH=VALUE`` items as a mapping of paths to YAML values.

    Examples
    --------
    >>> parse_overrides(["fleet.replicas=4", "fleet.router=least_loaded"])
    {'fleet.replicas': 4, 'fleet.router': 'least_loaded'}
    """
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


def load_with_overrides(path: Path, items: Sequence[str]) -> Scenario:
    """The scenario file at ``path`` with the ``--set`` ``items`` applied and checked.

    An error names ``PATH (with --set)`` and the field, as :class:`~sim.scenario_io.ScenarioError`.
    """
    scenario = load_scenario(path)
    if not items:
        return scenario
    source = f"{path} (with --set)"
    try:
        data = apply_overrides(scenario, parse_overrides(items))
    except KeyError as exc:
        raise ScenarioError(f"{source}: {exc.args[0]}") from None
    scenario = validate_scenario(data, source=source)
    check_trace_files(scenario, source=source)  # a --set may point at another trace
    return scenario
