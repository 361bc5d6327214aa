"""The report of any directory the ``crossover`` command writes, its kind told by its files.

``crossover run`` writes ``replications.csv`` (the full report, :func:`sim.report`);
``crossover sweep`` writes ``runs.parquet`` (the crossover chart and the per-point table);
``crossover plan`` writes ``plan.csv`` (the evidence table); ``crossover sensitivity``
writes ``tornado.csv`` (the tornado, and the variance shares when ``variance.csv`` is
there).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from sim import plots
from sim.report.build import report, study_context, tornado_output_label, write_report
from sim.report.figures import Figure, decision_figures, render
from sim.report.reading import load_run, read_scenario
from sim.report.tables import (
    assumptions,
    format_number,
    scenario_inputs,
    table_records,
    with_ci,
)
from sim.scenario import Scenario
from sim.scenario_io import ScenarioError
from sim.study.crossover import CrossoverResult, crossover
from sim.study.sensitivity import tornado_bars
from sim.study.sweep import SweepResult

__all__ = ["KINDS", "directory_kind", "load_sweep", "report_directory"]

Kind = Literal["run", "sweep", "plan", "sensitivity"]
#: The file that tells each kind of output directory, checked in this order.
KINDS: tuple[tuple[Kind, str], ...] = (
    ("run", "replications.csv"),
    ("run", "requests.parquet"),
    ("sweep", "runs.parquet"),
    ("sensitivity", "tornado.csv"),
    ("plan", "plan.csv"),
)
#: Per-point metrics of a sweep's table: (metric, format).
SWEEP_METRICS = (
    ("savings_vs_api_usd", "${:,.2f}"),
    ("cost_per_1m_tokens_usd", "${:.3f}"),
    ("api_only_cost_per_1m_tokens_usd", "${:.3f}"),
    ("total_cost_usd_per_month", "${:,.0f}"),
    ("slo_attainment", "{:.1%}"),
)


def directory_kind(directory: str | Path) -> Kind:
    """Which command wrote ``directory``: ``run``, ``sweep``, ``plan`` or ``sensitivity``.

    Raises
    ------
    ScenarioError
        One line, when it is not a directory or holds none of the telling files.
    """
    d = Path(directory)
    if not d.is_dir():
        raise ScenarioError(f"{d}: not a directory (give what a crossover command wrote)")
    for kind, name in KINDS:
        if (d / name).is_file():
            return kind
    names = ", ".join(dict.fromkeys(name for _, name in KINDS))
    raise ScenarioError(
        f"{d}: not an output of crossover run, sweep, plan or sensitivity (none of {names})"
    )


def load_sweep(directory: str | Path) -> SweepResult:
    """Read a ``crossover sweep`` output directory back into a :class:`SweepResult`.

    The parameters are the columns of ``runs.parquet`` between ``point`` and
    ``replication``; the seed is read from ``store/sweep.json`` (``-1`` without one).
    """
    d = Path(directory)
    scenario = read_scenario(d / "scenario.resolved.yaml")
    try:
        runs = pd.read_parquet(d / "runs.parquet")
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{d / 'runs.parquet'}: cannot read it ({exc})") from None
    cols = list(runs.columns)
    if "point" not in cols or "replication" not in cols or runs.empty:
        raise ScenarioError(f"{d / 'runs.parquet'}: not the runs of a sweep")
    parameters = tuple(cols[cols.index("point") + 1 : cols.index("replication")])
    points = runs[["point", *parameters]].drop_duplicates("point").sort_values("point")
    seed = -1
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        meta = json.loads((d / "store" / "sweep.json").read_text(encoding="utf-8"))
        seed = int(meta["seed"])
    replications = int(runs.groupby("point")["replication"].nunique().max())
    return SweepResult(
        scenario, parameters, points.reset_index(drop=True), runs, seed, replications
    )


def sweep_table(result: SweepResult) -> pd.DataFrame:
    """One row per point: its parameters and the mean (95 % CI) of the main metrics."""
    summary = result.summary().set_index(["point", "metric"])
    rows = []
    for point in result.points.to_dict("records"):
        row: dict[str, Any] = {p: point[p] for p in result.parameters}
        for metric, fmt in SWEEP_METRICS:
            if (point["point"], metric) in summary.index:
                r = summary.loc[(point["point"], metric)]
                row[metric] = with_ci(
                    fmt, float(r["mean"]), float(r["ci_low"]), float(r["ci_high"])
                )
        rows.append(row)
    return pd.DataFrame(rows)


def _scenario_context(scenario: Scenario) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "assumptions": table_records(assumptions(scenario)),
        "inputs": table_records(scenario_inputs(scenario)),
    }


def report_directory(directory: str | Path, path: str | Path | None = None) -> Path:
    """Write the report of any directory a ``crossover`` command wrote; return its path.

    Parameters
    ----------
    directory
        What ``crossover run``, ``sweep``, ``plan`` or ``sensitivity`` wrote; its kind is
        told by its files (:func:`directory_kind`).
    path
        The HTML file (default ``DIR/report.html``).
    """
    d = Path(directory)
    kind = directory_kind(d)
    out = Path(path) if path is not None else d / "report.html"
    if kind == "run":
        return report(load_run(d), out)
    if kind == "sweep":
        return _sweep_report(d, out)
    if kind == "sensitivity":
        return _sensitivity_report(d, out)
    return _plan_report(d, out)


def _sweep_report(d: Path, out: Path) -> Path:
    result = load_sweep(d)
    s = result.scenario
    cross: CrossoverResult | None = None
    if len(result.parameters) == 1 and "savings_vs_api_usd" in result.runs:
        with contextlib.suppress(ValueError):
            cross = crossover(result, x=result.parameters[0])
    figures = decision_figures(sweep=result if cross else None, crossover=cross, sensitivity=None)
    table = sweep_table(result)
    tables = {
        "sweep_points": table,
        "summary": result.summary(),
        "assumptions": assumptions(s),
        "scenario_inputs": scenario_inputs(s),
    }
    if cross is not None:
        tables["crossover_points"] = cross.points
    swept = ", ".join(result.parameters)
    context = {
        **study_context(cross, None, None),
        **_scenario_context(s),
        "title": f"crossover sweep report: {s.name}",
        "run_line": (
            f"sweep of {swept}: {len(result.points)} points × {result.replications} "
            f"replications × {s.horizon.duration_s:g} s (warm-up {s.horizon.warmup_s:g} s "
            "excluded)" + (f", seed {result.seed}" if result.seed >= 0 else "")
        ),
        "sweep_points": {"columns": list(table.columns), "rows": table_records(table)},
    }
    return write_report(out, context, figures, tables)


def _sensitivity_report(d: Path, out: Path) -> Path:
    try:
        table = pd.read_csv(d / "tornado.csv")
        variance = pd.read_csv(d / "variance.csv") if (d / "variance.csv").is_file() else None
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{d}: cannot read the sensitivity tables ({exc})") from None
    try:
        bars = tornado_bars(table)
    except ValueError as exc:
        raise ScenarioError(f"{d / 'tornado.csv'}: {exc}") from None
    source = d / "scenario.resolved.yaml"
    scenario = read_scenario(source) if source.is_file() else None
    study = study_context(None, table, bars)
    figures = decision_figures(
        sweep=None, crossover=None, sensitivity=bars, output_label=tornado_output_label(study)
    )
    tables: dict[str, pd.DataFrame] = {"sensitivity": table}
    context = {**study, "scenario": scenario}
    if variance is not None:
        tables["variance"] = variance
        figures.append(_variance_figure(variance))
        context["variance"] = table_records(variance)
    if scenario is not None:
        tables["assumptions"] = assumptions(scenario)
        tables["scenario_inputs"] = scenario_inputs(scenario)
        context.update(_scenario_context(scenario))
    name = scenario.name if scenario is not None else d.name
    n = float(table["n"].max()) if "n" in table else float("nan")
    context["title"] = f"crossover sensitivity report: {name}"
    context["run_line"] = (
        f"one at a time: {table['parameter'].nunique()} parameters at a low and a high value"
        + (f", {int(n)} replications each, the same seeds as the base" if n == n else "")
    )
    return write_report(out, context, figures, tables)


def _variance_figure(variance: pd.DataFrame) -> Figure:
    metric = (
        "savings_vs_api_usd"
        if "savings_vs_api_usd" in set(variance["metric"])
        else str(variance["metric"].iloc[0])
    )
    rows = variance[variance["metric"] == metric]

    def draw(ax: Any) -> None:
        ys = range(len(rows))
        ax.barh(list(ys), rows["first_order"].fillna(0).to_numpy(dtype=float), color="C0")
        ax.set_yticks(list(ys), [plots.text_label(p) for p in rows["parameter"]])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"share of the variance of {metric} (first order)")
        ax.grid(axis="x", alpha=0.3)

    return render("variance", f"Share of the variance of {metric} by uncertain input", draw)


def _plan_report(d: Path, out: Path) -> Path:
    try:
        table = pd.read_csv(d / "plan.csv")
    except (OSError, ValueError) as exc:
        raise ScenarioError(f"{d / 'plan.csv'}: cannot read it ({exc})") from None
    feasible = int(table["feasible"].astype(bool).sum()) if "feasible" in table else 0
    cheapest = ""
    if feasible and "cost_per_month" in table:
        best = table[table["feasible"].astype(bool)].sort_values("cost_per_month").iloc[0]
        cost = format_number("${:,.0f}", float(best["cost_per_month"]))
        what = (
            str(best["layout"])  # a fleet of several pools: the composition in words
            if "layout" in best
            else ", ".join(
                f"{k} {best[k]}" for k in ("gpu", "tp", "replicas", "pricing") if k in best
            )
        )
        cheapest = f"; the cheapest feasible: {what} at {cost} per month"
    source = d / "scenario.resolved.yaml"
    scenario = read_scenario(source) if source.is_file() else None
    tables: dict[str, pd.DataFrame] = {"plan": table}
    context = {
        **study_context(None, None, None),
        "scenario": scenario,
        "title": f"crossover plan report: {scenario.name if scenario is not None else d.name}",
        "run_line": (
            f"{len(table)} {'compositions' if 'layout' in table else 'configurations'} "
            f"simulated, {feasible} meeting the SLO target" + cheapest
        ),
        "plan": {
            "columns": [str(c) for c in table.columns],
            "rows": table_records(table),
        },
    }
    if scenario is not None:
        tables["assumptions"] = assumptions(scenario)
        tables["scenario_inputs"] = scenario_inputs(scenario)
        context.update(_scenario_context(scenario))
    return write_report(out, context, [], tables)
