"""The report's figures: drawn with :mod:`sim.plots`, rendered to inline SVG and PNG."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from sim import plots
from sim.study.crossover import CrossoverResult
from sim.study.montecarlo import RunResult
from sim.study.sweep import SweepResult

LATENCIES = (
    ("ttft_s", "Time to first token (TTFT)"),
    ("tpot_s", "Time per output token (TPOT)"),
    ("e2e_s", "End-to-end latency (E2E)"),
)
#: Percentiles of the API-only baseline the summary keeps: (probability, metric suffix).
BASELINE_PERCENTILES = ((0.5, "p50"), (0.9, "p90"), (0.99, "p99"))


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
    if not len(requests):  # horizon.records: none keeps no per-request records
        return out
    groupings = cdf_groupings(requests)
    by_words = " and by ".join(plots.GROUP_WORDS[g] for g in groupings)
    sampled = ""
    if len(requests) < result.first.n_requests:
        sampled = (
            f" (the {len(requests):,} requests recorded, a reproducible "
            f"{len(requests) / result.first.n_requests:.1%} sample of "
            f"{result.first.n_requests:,})"
        )
    for column, label in LATENCIES:
        marks = baseline_percentiles(result.first.metrics, column)
        title = (
            f"{label}, seconds on a log scale: share of completed requests{sampled} by {by_words}"
        )
        if marks:
            title += (
                "; diamonds: the API-only baseline's p50, p90 and p99 for the same requests "
                "(its per-request latencies are not stored, only these percentiles)"
            )
        out.append(
            render(
                f"cdf_{column}",
                title,
                _cdf_panels(requests, column, groupings, marks),
                ncols=len(groupings),
            )
        )
    return out


def cdf_groupings(requests: pd.DataFrame) -> list[str]:
    """The CDF panels to draw: by class and by route, or only by class when the completed
    requests have one class and one route (the two panels would be the same)."""
    done = requests
    if "status" in requests:
        done = requests[requests["status"].astype(str) == "completed"]
    if "route" not in done:
        return ["class_name"]
    one_each = all(done[c].astype(str).nunique() <= 1 for c in ("class_name", "route") if c in done)
    return ["class_name"] if one_each else ["class_name", "route"]


def baseline_percentiles(metrics: Mapping[str, float], column: str) -> dict[float, float]:
    """The API-only baseline's percentiles of ``column`` (probability → seconds) from a
    replication's metrics, e.g. ``api_only_ttft_p50_s``; empty when it has none."""
    stem = column.removesuffix("_s")
    out = {}
    for p, suffix in BASELINE_PERCENTILES:
        value = float(metrics.get(f"api_only_{stem}_{suffix}_s", math.nan))
        if math.isfinite(value):
            out[p] = value
    return out


def _cdf_panels(
    requests: pd.DataFrame, column: str, groupings: list[str], marks: dict[float, float]
) -> Callable[..., object]:
    def draw(*axes: object) -> None:
        for by, ax in zip(groupings, axes, strict=True):
            plots.latency_cdf(requests, column, by=by, baseline=marks, ax=ax)  # type: ignore[arg-type]

    return draw


def decision_figures(
    *,
    sweep: SweepResult | None,
    crossover: CrossoverResult | None,
    sensitivity: pd.DataFrame | None,
    output_label: str = "output",
) -> list[Figure]:
    """The crossover chart and the tornado, for what is given.

    The chart marks ``crossover`` when given (so it shows the crossing the report's text
    states); ``sensitivity`` is in the bars' shape (:func:`sim.study.sensitivity.tornado_bars`),
    its output named by ``output_label`` (with its unit) on the tornado's axis.
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
        out.append(
            render(
                "tornado",
                "Sensitivity: the output with each input at its low and its high value",
                lambda ax: plots.tornado(sensitivity, xlabel=output_label, ax=ax),
            )
        )
    return out
