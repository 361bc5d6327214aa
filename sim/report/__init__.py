"""One-file HTML reports of a run: ``sim.report(result, "report.html")`` or, after the fact,
``crossover report DIR -o report.html`` on what ``crossover run`` wrote."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sim.report.build import assumptions, load_run, report

__all__ = ["assumptions", "load_run", "main", "report"]

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"crossover report: {message} (see crossover report --help)\n")
        raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
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
    try:
        args = _parser().parse_args(None if argv is None else list(argv))
    except SystemExit as exc:
        return int(exc.code or 0) if exc.code != 0 else 0
    from sim.io import ScenarioError

    try:
        result = load_run(args.directory)
        out = report(result, args.output or args.directory / "report.html")
    except (ScenarioError, OSError) as exc:
        msg = " ".join(str(exc).split())
        sys.stderr.write(f"crossover report: {msg}\n")
        return EXIT_USAGE
    sys.stdout.write(f"wrote {out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
