"""The report's figures: drawn with :mod:`sim.plots`, rendered to inline SVG and PNG."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from sim import plots
from sim.study.crossover import CrossoverResult
from sim.study.montecarlo import RunResult
from sim.study.sweep import SweepResult

LATENCIES = (("ttft_s", "TTFT"), ("tpot_s", "TPOT"), ("e2e_s", "E2E"))


@dataclass(frozen=True)
class Figure:
    """One rendered figure: ``name`` (file stem and HTML id), ``title``, ``svg`` markup
    (the ``<svg>`` element alone) and ``png`` bytes."""

    name: str
    title: str
    svg: str
    png: bytes


def render(name: str, title: str, draw: Callable[..., object], ncols: int = 1) -> Figure:
    """Draw on a fresh figure (``draw(ax)`` or ``draw(ax0, ax1, ...)``) and render it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure as MplFigure

    # A Figure not managed by pyplot: nothing global to close, nothing leaks.
    fig = MplFigure(figsize=(6.4 * ncols, 4.0), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    draw(*axes)
    with matplotlib.rc_context({"svg.hashsalt": name}):  # unique, stable ids per figure
        svg_buf = io.StringIO()
        fig.savefig(svg_buf, format="svg", metadata={"Date": None})
    png_buf = io.BytesIO()
    fig.savefig(png_buf, format="png", dpi=110, metadata={"Software": None})
    svg = svg_buf.getvalue()
    return Figure(name, title, svg[svg.index("<svg") :], png_buf.getvalue())


def run_figures(result: RunResult) -> list[Figure]:
    """Cost stack, utilisation (across replications and over time), latency CDFs."""
    reps = result.replications
    out = [
        render(
            "cost_breakdown",
            "Cost per month by component",
            lambda ax: plots.cost_breakdown(reps, ax=ax),
        ),
        render(
            "utilisation",
            "GPU utilisation across replications",
            lambda ax: plots.utilisation(reps, ax=ax),
        ),
        render(
            "timeseries",
            "Fleet state over time",
            lambda ax: plots.timeseries(result.first.timeseries, ax=ax),
        ),
    ]
    requests = result.first.requests
    for column, label in LATENCIES:
        out.append(
            render(
                f"cdf_{column}",
                f"{label} distribution by class and by route",
                _cdf_pair(requests, column),
                ncols=2,
            )
        )
    return out


def _cdf_pair(requests: pd.DataFrame, column: str) -> Callable[..., object]:
    def draw(left: object, right: object) -> None:
        plots.latency_cdf(requests, column, by="class_name", ax=left)  # type: ignore[arg-type]
        plots.latency_cdf(requests, column, by="route", ax=right)  # type: ignore[arg-type]

    return draw


def decision_figures(
    *,
    sweep: SweepResult | None,
    crossover: CrossoverResult | None,
    sensitivity: pd.DataFrame | None,
) -> list[Figure]:
    """The crossover chart and the tornado, for what is given.

    The chart marks ``crossover`` when given (so it shows the crossing the report's text
    states); ``sensitivity`` is in the bars' shape (:func:`sim.study.sensitivity.tornado_bars`).
    """
    out = []
    if sweep is not None:
        x = crossover.x if crossover is not None else None
        out.append(
            render(
                "crossover",
                "Cost per 1M tokens along the sweep",
                lambda ax: plots.crossover_chart(sweep, x=x, mark=crossover, ax=ax),
            )
        )
    elif crossover is not None:
        out.append(
            render(
                "crossover",
                "Savings against the API along the sweep",
                lambda ax: plots.crossover_chart(crossover, ax=ax),
            )
        )
    if sensitivity is not None:
        out.append(render("tornado", "Sensitivity", lambda ax: plots.tornado(sensitivity, ax=ax)))
    return out
