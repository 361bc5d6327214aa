"""``crossover plan SCENARIO --out DIR``: the cheapest fleet meeting an SLO-attainment
target (:func:`sim.study.planning.plan_capacity`), its evidence in ``DIR/plan.csv``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sim.cli.common import CommandParser, run_command
from sim.scenario_io import load_scenario
from sim.study.planning import describe, plan_capacity

__all__ = ["HELP", "main", "parser"]

HELP = "find the cheapest fleet that meets an SLO attainment target (see crossover plan -h)"


def parser() -> CommandParser:
    """The arguments of ``crossover plan``."""
    p = CommandParser(
        prog="crossover plan",
        description="Find the cheapest fleet meeting an SLO-attainment target.",
    )
    p.add_argument("scenario", help="scenario YAML file")
    p.add_argument("--slo", type=float, default=0.99, help="SLO attainment target (0.99)")
    p.add_argument("--gpus", help="comma-separated catalogue GPUs")
    p.add_argument("--tp", help="comma-separated tensor-parallel degrees")
    p.add_argument("--pricing", help="capacity kinds: on_demand,reserved,spot")
    p.add_argument("--max-replicas", type=int, default=8, help="largest replica count (8)")
    # plain integers, not the shared --replications/--seed/--workers groups: a value out of
    # range is reported by plan_capacity, as it always was
    p.add_argument("-n", "--replications", type=int, default=5, help="per configuration (5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--criterion", choices=["mean", "ci_low"], default="mean")
    p.add_argument("--executor", choices=["serial", "processes", "dask"], default="serial")
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--out", required=True, help="directory for plan.csv")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``crossover plan SCENARIO [--slo] [--gpus] [--tp] [--pricing] [--max-replicas] [-n]
    [--seed] --out DIR``: writes ``DIR/plan.csv`` and prints the answer.

    Returns 0 on success (a plan was found or not), 2 on bad input (one line on stderr).
    """
    return run_command(parser(), _run, argv)


def _csv(text: str, cast: type, flag: str) -> list[Any]:
    try:
        values = [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: expected a comma-separated list") from None
    if not values:
        raise ValueError(f"{flag}: give at least one value")
    return values


def _run(args: argparse.Namespace) -> int:
    if args.max_replicas < 1:
        raise ValueError(f"--max-replicas must be at least 1, got {args.max_replicas}")
    options: dict[str, Sequence[Any]] = {"replicas": range(1, args.max_replicas + 1)}
    if args.gpus:
        options["gpu"] = _csv(args.gpus, str, "--gpus")
    if args.tp:
        options["tp"] = _csv(args.tp, int, "--tp")
    if args.pricing:
        options["pricing"] = _csv(args.pricing, str, "--pricing")
    scenario = load_scenario(args.scenario)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write there ({exc.strerror})") from None
    plan = plan_capacity(
        scenario,
        slo_target=args.slo,
        options=options,
        replications=args.replications,
        seed=args.seed,
        criterion=args.criterion,
        executor=args.executor,
        workers=args.workers,
    )
    plan.table.to_csv(out / "plan.csv", index=False)
    sys.stdout.write(describe(plan) + f"\nevidence: {out / 'plan.csv'}\n")
    return 0
