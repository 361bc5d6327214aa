"""Build the one-file HTML report of a run (and the pieces a study's report shares): the
template, the figures beside it, the context of every section.

The report is rendered from a :class:`~sim.study.montecarlo.RunResult`, whether it comes from
memory or is read back from a ``crossover run`` directory
(:func:`sim.report.reading.load_run`), so both give the same document; its tables and number
formats are in :mod:`sim.report.tables`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from sim import plots
from sim.report.figures import Figure, decision_figures, run_figures
from sim.report.reading import decision_of
from sim.report.tables import (
    assumptions,
    capacity_bill_rows,
    grouped_table,
    latency_table,
    pool_table,
    scenario_inputs,
    table_records,
    utilisation_rows,
    verdict_context,
    with_ci,
)
from sim.scenario import fleet_text
from sim.scenario_io import ScenarioError
from sim.study.crossover import CrossoverResult, metric_unit, unit_of
from sim.study.crossover import describe as describe_crossover
from sim.study.montecarlo import RunResult
from sim.study.sensitivity import tornado_bars
from sim.study.sweep import SweepResult
from sim.study.verdict import calendar_line

__all__ = ["figure_names", "report", "study_context", "tornado_output_label", "write_report"]


def _environment() -> Environment:
    # autoescape on for every template: scenario and class names are user strings
    return Environment(
        loader=PackageLoader("sim.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def report(
    result: RunResult,
    path: str | Path,
    *,
    sweep: SweepResult | None = None,
    crossover: CrossoverResult | None = None,
    sensitivity: pd.DataFrame | None = None,
) -> Path:
    """Write a self-contained HTML report of ``result`` to ``path``; return the path.

    (For a directory written by ``crossover run``, ``sweep``, ``plan`` or ``sensitivity``:
    :func:`sim.report.report_directory`.)

    The page has no external resources (figures are inline SVG, CSS inline, no scripts).
    Beside it, ``<stem>_files/`` holds every figure as PNG and every table as CSV.

    Parameters
    ----------
    result
        The run (:func:`sim.run`, or :func:`load_run` on a ``crossover run`` directory).
    path
        The HTML file to write; its directory is created.
    sweep, crossover
        A sweep and/or its :func:`sim.crossover`: adds the crossover chart and table.
    sensitivity
        A one-at-a-time sensitivity table: what :func:`sim.tornado` returns (drawn for
        ``savings_vs_api_usd`` when it has it, else its first metric), or the bars
        ``parameter``, ``low``, ``high``, ``base``: adds a tornado chart. Checked before
        anything is drawn.

    Examples
    --------
    >>> import sim, tempfile, pathlib
    >>> s = sim.load_scenario("scenarios/chat-startup.yaml").with_overrides(
    ...     {"horizon.duration_s": 120, "horizon.warmup_s": 0})
    >>> out = sim.report(sim.run(s, replications=2), pathlib.Path(tempfile.mkdtemp()) / "r.html")
    >>> out.name, (out.parent / "r_files" / "cost_breakdown.png").is_file()
    ('r.html', True)
    """
    out = Path(path)
    # a table that cannot be drawn fails here, before any figure is rendered
    bars = tornado_bars(sensitivity) if sensitivity is not None else None
    decision = decision_of(result)
    study = study_context(crossover, sensitivity, bars)
    figures = run_figures(result) + decision_figures(
        sweep=sweep, crossover=crossover, sensitivity=bars, output_label=tornado_output_label(study)
    )
    tables: dict[str, pd.DataFrame] = {
        "summary": result.summary(),
        "compare": result.compare(),
        "decision": result.decision().table
        if result.options_simulated or result.seed >= 0
        else pd.DataFrame(),
        "side_by_side": latency_table(result),
        "by_class_and_route": grouped_table(result),
        "cost_breakdown": plots.cost_components(result),
        "assumptions": assumptions(result.scenario),
        "scenario_inputs": scenario_inputs(result.scenario),
    }
    by_pool = pool_table(result)
    if len(by_pool):
        tables["by_pool"] = by_pool
    if result.capacity_found is not None:
        tables["capacity_at_slo"] = result.capacity_found.evaluations
    if crossover is not None:
        tables["crossover_points"] = crossover.points
    if sensitivity is not None:
        tables["sensitivity"] = sensitivity
    s = result.scenario
    context = {
        **study,
        "run": True,
        "title": f"crossover report: {s.name}",
        "scenario": s,
        "fleet_line": (f"{fleet_text(s)}, routing {s.routing.policy}"),
        "run_line": (
            f"{len(result.replications)} replications × {s.horizon.duration_s:g} s "
            f"(warm-up {s.horizon.warmup_s:g} s excluded)"
            + (f", seed {result.seed}" if result.seed >= 0 else "")
            + f"; {calendar_line(s)}"
        ),
        "verdict": verdict_context(decision),
        "side_by_side": table_records(tables["side_by_side"]),
        "grouped": tables["by_class_and_route"],
        "by_pool": by_pool,
        "costs": [
            [
                str(r["component"]),
                with_ci("${:,.0f}", float(r["mean"]), float(r["ci_low"]), float(r["ci_high"])),
            ]
            for r in tables["cost_breakdown"].to_dict("records")
        ],
        "assumptions": table_records(tables["assumptions"]),
        "inputs": table_records(tables["scenario_inputs"]),
        "utilisation": utilisation_rows(result),
        "capacity_bill": capacity_bill_rows(result),
        "capacity_searched": result.capacity_found is not None,
    }
    return write_report(out, context, figures, tables)


def tornado_output_label(study: dict[str, Any]) -> str:
    """The tornado's output with its unit, as the sensitivity table names it."""
    sens = study.get("sensitivity") or {}
    metric, unit = sens.get("metric", ""), sens.get("unit", "")
    if not metric:
        return "output"
    return f"{metric} ({unit})" if unit else metric


def study_context(
    crossover: CrossoverResult | None,
    sensitivity: pd.DataFrame | None,
    bars: pd.DataFrame | None,
) -> dict[str, Any]:
    """The crossover's and the sensitivity's part of the template's context."""
    cross: dict[str, str] = {}
    if crossover is not None:
        unit = unit_of(crossover.x)
        cross = {
            "sentence": describe_crossover(crossover),
            "method": crossover.method,
            # describe() says why there is no crossing; an open bound's note is said here
            "note": crossover.note if math.isfinite(crossover.estimate) else "",
            "x_header": f"{crossover.x} ({unit})" if unit else crossover.x,
            "unit": metric_unit(crossover.metric) or "as the metric",
            "metric": crossover.metric,
        }
    sens: dict[str, Any] = {}
    if sensitivity is not None and bars is not None:
        metric = ""
        if "metric" in sensitivity and "side" in sensitivity:
            metric = (
                "savings_vs_api_usd"
                if "savings_vs_api_usd" in set(sensitivity["metric"])
                else str(sensitivity["metric"].iloc[0])
            )
        sens = {
            "metric": metric,
            "unit": metric_unit(metric) if metric else "",
            "rows": table_records(bars[["parameter", "low", "high", "base"]]),
        }
    return {
        "run": False,
        "crossover": cross,
        "crossover_points": table_records(crossover.points) if crossover is not None else [],
        "sensitivity": sens,
        "variance": [],
        "sweep_points": {},
        "plan": {},
        "fleet_line": "",
        "verdict": {},
        "assumptions": [],
        "inputs": [],
        "utilisation": [],
        "capacity_bill": [],
        "capacity_searched": False,
    }


def write_report(
    out: Path, context: dict[str, Any], figures: list[Figure], tables: dict[str, pd.DataFrame]
) -> Path:
    """Render the template with ``context`` to ``out`` and write ``<stem>_files/`` beside it
    (each figure as PNG, each table as CSV); a write error is a one-line
    :class:`~sim.scenario_io.ScenarioError`."""
    files = out.with_name(f"{out.stem}_files")
    context = {
        **context,
        "figures": {f.name: {"title": f.title, "svg": Markup(f.svg)} for f in figures},
        "files": files.name,
        "table_names": sorted(tables),
    }
    html = _environment().get_template("report.html.j2").render(**context)
    try:
        files.mkdir(parents=True, exist_ok=True)
        out.write_text(html, encoding="utf-8")
        for fig in figures:
            (files / f"{fig.name}.png").write_bytes(fig.png)
        for name, frame in tables.items():
            frame.to_csv(files / f"{name}.csv", index=False)
    except OSError as exc:
        raise ScenarioError(f"{out}: cannot write the report ({exc.strerror})") from None
    return out


def figure_names(html: str) -> Iterable[str]:
    """The ids of the figures in a rendered report (for tests and tooling)."""
    import re

    return re.findall(r'<figure id="fig-([A-Za-z0-9_]+)"', html)
