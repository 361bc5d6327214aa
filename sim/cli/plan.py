"""``crossover plan SCENARIO --out DIR``: the cheapest fleet meeting an SLO-attainment
target (:func:`sim.study.planning.plan_capacity`), its evidence in ``DIR/plan.csv``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from sim.cli.common import CommandParser, add_quiet, add_set, load_with_overrides, run_command
from sim.scenario import Scenario
from sim.scenario_io import dump_scenario
from sim.study.mix import describe_mix, plan_mix
from sim.study.planning import describe, plan_capacity

__all__ = ["HELP", "main", "parser", "rounded"]

HELP = "find the cheapest fleet that meets an SLO attainment target (see crossover plan -h)"


def parser() -> CommandParser:
    """The arguments of ``crossover plan``."""
    p = CommandParser(
        prog="crossover plan",
        description="Find the cheapest fleet meeting an SLO-attainment target.",
    )
    p.add_argument("scenario", type=Path, help="scenario YAML file")
    add_set(p, help_text="override a scenario value before planning (repeatable)")
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
    add_quiet(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """``crossover plan SCENARIO [--set PATH=VALUE ...] [--slo] [--gpus] [--tp] [--pricing]
    [--max-replicas] [-n] [--seed] [--quiet] --out DIR``: writes ``DIR/plan.csv`` (rounded:
    money to cents, fractions to 4 decimals, seconds to 4 significant digits) and prints the
    answer, with the all-API bill of the same requests beside it. Progress goes to stderr
    on a terminal only, and nothing is printed with ``--quiet``.

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
    scenario = load_with_overrides(args.scenario, args.set)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        # written first, as `crossover run` does: what was asked for is on disk even if the
        # search fails, and `crossover report` lists the scenario's assumptions from it
        (out / "scenario.resolved.yaml").write_text(dump_scenario(scenario), encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot write there ({exc.strerror})") from None
    show = not args.quiet and sys.stderr.isatty()  # progress on a terminal only
    # what both searches (pool compositions, single fleets) take from the command line
    search: dict[str, Any] = {
        "slo_target": args.slo,
        "replications": args.replications,
        "seed": args.seed,
        "criterion": args.criterion,
        "executor": args.executor,
        "workers": args.workers,
        "progress": _progress if show else None,
    }
    try:
        if scenario.pooled:
            mix = plan_mix(
                scenario,
                options=_pool_options(scenario, options),
                max_replicas=args.max_replicas,
                **search,
            )
            table, text = mix.table, describe_mix(mix)
            if mix.decision is not None:
                mix.decision.table.to_csv(out / "decision.csv", index=False)
        else:
            plan = plan_capacity(scenario, options=options, **search)
            table, text = plan.table, describe(plan)
    finally:
        if show:
            sys.stderr.write("\n")
    rounded(table).to_csv(out / "plan.csv", index=False)
    if not args.quiet:
        sys.stdout.write(text + f"\nevidence: {out / 'plan.csv'}\n")
    return 0


def _pool_options(
    scenario: Scenario, options: dict[str, Sequence[Any]]
) -> dict[str, dict[str, Sequence[Any]]]:
    # a fleet of several pools: --gpus, --tp and --pricing widen every pool's search beyond
    # its own GPU, tp and kind (--max-replicas bounds every pool)
    per_pool: dict[str, dict[str, Sequence[Any]]] = {}
    for name, pool in zip(scenario.pool_names, scenario.pools, strict=True):
        own_kind = pool.pricing.kind if pool.pricing is not None else "on_demand"
        mine: dict[str, Sequence[Any]] = {}
        if "gpu" in options:
            mine["gpu"] = list(dict.fromkeys([pool.gpu, *options["gpu"]]))
        if "tp" in options:
            mine["tp"] = sorted({pool.tp, *options["tp"]})
        if "pricing" in options:
            mine["pricing"] = list(dict.fromkeys([own_kind, *options["pricing"]]))
        per_pool[name] = mine
    return per_pool


def _progress(done: int, total: int) -> None:
    # total grows as larger replica counts are tried
    sys.stderr.write(f"\rplan: {done}/{total} simulations so far")
    sys.stderr.flush()


_MONEY = ("usd_per_gpu_hour", "cost_per_month", "cost_ci_low", "cost_ci_high",
         "api_only_cost_per_month", "floor_per_month")  # fmt: skip
_FRACTIONS = ("slo_attainment", "slo_ci_low", "slo_ci_high")
_SECONDS = ("ttft_p99_s",)


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """``plan.table`` as ``plan.csv`` writes it: money to cents (the hourly price to 4
    decimals, as catalogue quotes are given), fractions to 4 decimals, seconds to 4
    significant digits.

    Examples
    --------
    >>> rounded(pd.DataFrame({"cost_per_month": [1234.5678], "slo_attainment": [0.987654],
    ...                       "ttft_p99_s": [0.00123456]})).iloc[0].tolist()
    [1234.57, 0.9877, 0.001235]
    """
    out = table.copy()
    for col in out.columns:
        if str(col).endswith(".usd_per_gpu_hour"):  # per pool, in a mix plan
            out[col] = out[col].astype(float).round(4)
    for col in _MONEY:
        if col in out:
            out[col] = out[col].astype(float).round(4 if col == "usd_per_gpu_hour" else 2)
    for col in _FRACTIONS:
        if col in out:
            out[col] = out[col].astype(float).round(4)
    for col in _SECONDS:
        if col in out:
            out[col] = [float(f"{v:.4g}") for v in out[col].astype(float)]
    return out
