"""``crossover calibrate BENCH -o profile.yaml``: a step-time model fitted to your own
benchmark (:mod:`sim.engine.calibrate`), written as a scenario's ``step_time:`` block."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from sim.cli.common import EXIT_USAGE, CommandParser, run_command
from sim.engine.calibrate import MAX_MAPE_PCT, fit_from_requests, fit_step_model
from sim.scenario_io import load_scenario

__all__ = ["HELP", "main", "parser"]

HELP = "fit the step-time model to your own benchmark (see crossover calibrate -h)"


def parser() -> CommandParser:
    """The arguments of ``crossover calibrate``."""
    ap = CommandParser(
        prog="crossover calibrate",
        description="Fit a step-time model to per-iteration timings (CSV with decode_seqs, "
        "prefill_tokens, kv_tokens, step_s) or to a serving benchmark (vLLM "
        "benchmark_serving JSON, or a per-request CSV) and write a step_time: block.",
    )
    ap.add_argument("bench", help="BENCH.csv or BENCH.json")
    ap.add_argument("-o", "--out", required=True, help="where to write the step_time YAML")
    ap.add_argument("--model", choices=("linear", "roofline"), default="linear")
    ap.add_argument("--scenario", help="scenario YAML whose fleet gives model / GPU / tp")
    ap.add_argument("--plot", help="write a residual plot (PNG) here")
    ap.add_argument(
        "--force",
        action="store_true",
        help=f"write the fit even when it fails its checks (MAPE above {MAX_MAPE_PCT:g}%% "
        "or a constant at a limit of its range)",
    )
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    """``crossover calibrate BENCH -o profile.yaml [--model] [--scenario] [--plot] [--force]``.

    Returns 0 on success, 2 on bad input (one line on stderr naming the file / column) and
    on a fit that fails its checks (:attr:`~sim.engine.calibrate.CalibrationResult.problems`:
    one line on stderr saying what is wrong, nothing written to ``-o``; the residual plot is
    still written, to see why). ``--force`` writes such a fit anyway, with a warning line.
    """
    return run_command(parser(), _run, argv)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")


def _run(args: argparse.Namespace) -> int:
    fleet = load_scenario(args.scenario).single_fleet("calibration") if args.scenario else None
    path = Path(args.bench)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix.lower() not in (".csv", ".json"):
        raise ValueError(f"{path}: expected a .csv or .json file")
    per_iteration = False
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
        per_iteration = "step_s" in frame.columns
    if per_iteration:
        try:
            result = fit_step_model(frame, model=args.model, fleet=fleet)
        except ValueError as exc:
            raise ValueError(str(exc).replace("samples:", f"{path}:", 1)) from None
    else:
        if fleet is None:
            raise ValueError(f"{path}: a request benchmark is replayed: pass --scenario")
        result = fit_from_requests(path, fleet=fleet, model=args.model)
    extra = "".join(f", {k.replace('_mape', '')} MAPE {v:.1f}%" for k, v in result.extra.items())
    _say(
        f"{result.spec.model} fit on {len(result.residuals)} samples of {path.name}: "
        f"{result.what} MAPE {result.mape:.1f}%{extra}"
    )
    refused = bool(result.problems) and not args.force
    if result.problems:
        what = f"the {result.spec.model} fit of {path.name} fails its checks: " + "; ".join(
            result.problems
        )
        if refused:
            sys.stderr.write(
                f"{parser().prog}: not writing {args.out}: {what} (the model cannot follow "
                "these measurements; check them, try another --model, or --force)\n"
            )
        else:
            sys.stderr.write(f"{parser().prog}: WARNING: writing it anyway (--force): {what}\n")
    if not refused:
        Path(args.out).write_text(result.to_yaml(), encoding="utf-8")
        _say(f"wrote {args.out}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        ax = result.plot_residuals()
        from matplotlib.figure import Figure

        fig = ax.get_figure()
        assert isinstance(fig, Figure)
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        _say(f"wrote {args.plot}")
    return EXIT_USAGE if refused else 0
