"""Matplotlib figures of a run, a sweep and a crossover.

Every function draws on ``ax`` (a new figure's axes when ``None``) and returns the axes: no
file I/O, no ``plt.show()``, so the same helpers serve notebooks, scripts and
:func:`sim.report`. Inputs are the result objects or the tidy frames ``crossover run``
writes (``replications.csv``, ``requests.parquet``, ``timeseries.csv``), so a figure can be
redrawn after the fact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from sim.intervals import bounded_t_interval, metric_range
from sim.replication.simulate import Outcome
from sim.study.capacity import month_factor
from sim.study.crossover import (
    CrossoverResult,
    crossover,
    estimate_text,
    metric_unit,
    unit_of,
)
from sim.study.montecarlo import RunResult
from sim.study.sweep import SweepResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "COST_COMPONENTS",
    "cost_breakdown",
    "crossover_chart",
    "latency_cdf",
    "timeseries",
    "tornado",
    "utilisation",
]

#: Stacked components of the option's bill: (metric, label), bottom to top.
COST_COMPONENTS = (
    ("fleet_gpu_busy_usd", "busy GPU time"),
    ("fleet_gpu_idle_usd", "idle GPU time"),
    ("fleet_ops_usd", "operations staff"),
    ("fleet_other_usd", "monitoring, updates, storage"),
    ("api_cost_usd", "API calls"),
)
UTILISATION = (
    ("gpu_busy_fraction", "busy (occupancy)"),
    ("compute_utilisation", "MFU (compute)"),
    ("bandwidth_utilisation", "MBU (bandwidth)"),
)
#: Most points drawn per empirical CDF (quantiles, evenly spaced in probability).
CDF_POINTS = 2000
#: Per-request latency columns in words (for titles and axis labels; all in seconds).
LATENCY_WORDS = {
    "ttft_s": "time to first token",
    "tpot_s": "time per output token",
    "e2e_s": "end-to-end latency",
    "queue_s": "queueing delay",
}
#: What ``by`` groups on, in words.
GROUP_WORDS = {"class_name": "class", "route": "route"}


def _axes(ax: Axes | None) -> Axes:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, new = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    return new


#: Room for a right-hand axis's tick labels and label, inches: a legend beside such an axis
#: starts this far to the right of the plot.
RIGHT_AXIS_INCHES = 0.75


def legend_outside(ax: Axes, **kwargs: Any) -> None:
    """The legend to the right of the axes, outside the data area, so it hides no data
    (a constrained-layout figure makes room for it)."""
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small", **kwargs
    )


def text_label(value: object) -> str:
    """A user string made safe as a matplotlib label: ``$`` would start mathtext and a
    leading underscore would hide the entry from the legend."""
    s = str(value).replace("$", r"\$")
    return " " + s if s.startswith("_") else s


def ci_row(table: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    """``mean, ci_low, ci_high`` of ``metric`` in a summary indexed by metric."""
    values = table.loc[metric, ["mean", "ci_low", "ci_high"]].to_numpy(dtype=float)
    return float(values[0]), float(values[1]), float(values[2])


def _replications(result: RunResult | pd.DataFrame) -> pd.DataFrame:
    return result.replications if isinstance(result, RunResult) else result


def latency_cdf(
    requests: pd.DataFrame,
    column: str = "ttft_s",
    *,
    by: str = "class_name",
    baseline: Mapping[float, float] | None = None,
    baseline_label: str = "API only (p50, p90, p99)",
    ax: Axes | None = None,
) -> Axes:
    """Empirical CDF of a per-request latency, one line per value of ``by``, on a log
    x-axis (latencies span orders of magnitude).

    Parameters
    ----------
    requests
        Per-request records (``outcome.requests`` or ``requests.parquet``); completed
        requests with a finite value are used.
    column
        ``ttft_s``, ``tpot_s``, ``e2e_s`` or ``queue_s``.
    by
        ``class_name`` or ``route``.
    baseline
        Percentiles of a baseline to overlay as markers, probability → seconds (e.g. the
        API-only run's ``{0.5: p50, 0.9: p90, 0.99: p99}``): the summary keeps these, not
        the baseline's per-request latencies. Non-finite values are skipped.
    baseline_label
        Its legend entry.
    ax
        Axes to draw on.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"ttft_s": [0.1, 0.2, 0.4], "class_name": ["a", "a", "b"],
    ...                    "status": "completed"})
    >>> [line.get_label() for line in latency_cdf(df).get_lines()]
    ['a (n=2)', 'b (n=1)']
    """
    ax = _axes(ax)
    if column not in requests or by not in requests:
        raise ValueError(f"requests need the columns {column!r} and {by!r}")
    done = requests
    if "status" in requests:
        done = requests[requests["status"].astype(str) == "completed"]
    values = pd.to_numeric(done[column], errors="coerce")
    keep = np.isfinite(values.to_numpy(dtype=float))
    groups = done.loc[keep, by].astype(str)
    data = values[keep]
    for name in sorted(groups.unique()):
        x = np.sort(data[groups == name].to_numpy(dtype=float))
        n = len(x)
        # at most CDF_POINTS steps: a day's run has ~10^5 requests per class, and every
        # point would go into the report's SVG
        idx = np.unique(np.linspace(0, n - 1, min(n, CDF_POINTS)).astype(np.int64))
        ax.step(x[idx], (idx + 1) / n, where="post", label=f"{text_label(name)} (n={n:,})")
    marks = sorted((p, s) for p, s in (baseline or {}).items() if math.isfinite(s) and s > 0)
    if marks:
        ax.plot(
            [s for _, s in marks],
            [p for p, _ in marks],
            linestyle="none",
            marker="D",
            color="k",
            label=text_label(baseline_label),
        )
    finite = data.to_numpy(dtype=float)
    if (finite > 0).any() or marks:
        ax.set_xscale("log")
    words = LATENCY_WORDS.get(column, column)
    ax.set_xlabel(f"{words} (s)")
    ax.set_ylabel("share of completed requests")
    ax.set_ylim(0, 1.02)
    title = f"{words[0].upper()}{words[1:]} by {GROUP_WORDS.get(by, by)} (s)"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_lines():
        legend_outside(ax)
    return ax


def cost_components(result: RunResult | pd.DataFrame) -> pd.DataFrame:
    """The option's monthly bill by component and the all-API bill, over replications.

    One row per component (``component``, ``metric``, ``mean``, ``ci_low``, ``ci_high``, in
    USD per month); the last two rows are the option's total and ``API only``.
    """
    reps = _replications(result)
    factor = month_factor(reps)
    factor = np.ones(len(reps)) if factor is None else factor
    rows = []
    for metric, label in COST_COMPONENTS:
        if metric in reps:
            x = reps[metric].to_numpy(dtype=float) * factor
            rows.append((label, metric, *bounded_t_interval(x, metric_range(metric))))
    for metric, label in (
        ("total_cost_usd_per_month", "option total"),
        ("api_only_cost_usd_per_month", "API only"),
    ):
        if metric in reps:
            x = reps[metric].to_numpy(dtype=float)
            rows.append((label, metric, *bounded_t_interval(x, metric_range(metric))))
    return pd.DataFrame(rows, columns=["component", "metric", "mean", "ci_low", "ci_high"])


def cost_breakdown(result: RunResult | pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Stacked monthly bill of the option (busy GPU, idle GPU, ops, other, API calls) next
    to the all-API bill for the same requests; means with 95 % CI whiskers on the totals.

    ``result`` is a :class:`~sim.study.montecarlo.RunResult` or its ``replications`` frame.
    """
    ax = _axes(ax)
    table = cost_components(result).set_index("metric")
    bottom = 0.0
    for metric, label in COST_COMPONENTS:
        if metric not in table.index:
            continue
        mean = ci_row(table, metric)[0]
        if not mean > 0:
            continue
        ax.bar(["option"], [mean], bottom=bottom, label=label)
        bottom += mean
    for metric, name in (
        ("total_cost_usd_per_month", "option"),
        ("api_only_cost_usd_per_month", "API only"),
    ):
        if metric not in table.index:
            continue
        mean, lo, hi = ci_row(table, metric)
        if name == "API only":
            ax.bar([name], [mean], color="0.55", label="API only (same requests)")
        if math.isfinite(lo) and math.isfinite(hi):
            ax.errorbar(
                [name], [mean], yerr=[[mean - lo], [hi - mean]], fmt="none", color="k", capsize=6
            )
    ax.yaxis.set_major_formatter("${x:,.0f}")  # money as the report's tables write it
    ax.set_ylabel("USD per month")
    ax.set_title("Cost per month (USD, mean and 95% CI of the total)")
    legend_outside(ax)
    ax.grid(axis="y", alpha=0.3)
    return ax


def utilisation(result: RunResult | pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Distribution across replications of GPU occupancy (``gpu_busy_fraction``), MFU
    (``compute_utilisation``) and MBU (``bandwidth_utilisation``): box plots with every
    replication as a dot."""
    ax = _axes(ax)
    reps = _replications(result)
    present = [(m, label) for m, label in UTILISATION if m in reps]
    data = [reps[m].dropna().to_numpy(dtype=float) for m, _ in present]
    positions = np.arange(1, len(present) + 1)
    if present:
        ax.boxplot(data, positions=positions, widths=0.5)
        for pos, values in zip(positions, data, strict=True):
            ax.plot(np.full(len(values), pos), values, "o", alpha=0.6, color="C0")
    ax.set_xticks(positions, [label for _, label in present])
    ax.set_ylabel("fraction")
    ax.set_ylim(0, 1.05)
    ax.set_title(f"GPU utilisation over {len(reps)} replications (fraction of peak)")
    ax.grid(axis="y", alpha=0.3)
    return ax


def timeseries(outcome: Outcome | pd.DataFrame, *, ax: Axes | None = None) -> Axes:
    """Running and queued sequences over the fleet against time, and — when replicas
    start, drain or stop — the replicas ready (right axis), with one legend outside the data
    (beside the right axis when there is one).

    ``outcome`` is an :class:`~sim.replication.simulate.Outcome` or its ``timeseries`` frame.
    """
    ax = _axes(ax)
    ts = outcome.timeseries if isinstance(outcome, Outcome) else outcome
    if ts.empty:
        ax.set_title("fleet state over time (no samples)")
        return ax
    fleet = ts.groupby("t_s", sort=True)[["running", "queued"]].sum()
    hours = fleet.index.to_numpy(dtype=float) / 3600.0
    ax.plot(hours, fleet["running"].to_numpy(), label="running sequences")
    ax.plot(hours, fleet["queued"].to_numpy(), label="queued requests")
    ax.set_xlabel("time (h)")
    ax.set_ylabel("sequences (whole fleet)")
    ax.set_title("Fleet state over time (replication 0)")
    ax.grid(alpha=0.3)
    if "state" in ts and (ts["state"].astype(str) != "ready").any():
        ready = (ts["state"].astype(str) == "ready").groupby(ts["t_s"], sort=True).sum()
        right = ax.twinx()
        right.step(hours, ready.to_numpy(), where="post", color="C2", label="replicas ready")
        right.set_ylabel("replicas ready")
        right.set_ylim(0, max(1, int(ready.max())) + 1)
        # one legend for both axes, outside the data: to the right of the right axis's tick
        # labels and label (a fixed offset in inches, whatever the size or resolution)
        from matplotlib.transforms import ScaledTranslation

        handles = ax.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
        shift = ScaledTranslation(RIGHT_AXIS_INCHES, 0.0, ax.figure.dpi_scale_trans)
        ax.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            bbox_transform=ax.transAxes + shift,
            borderaxespad=0.0,
            fontsize="small",
        )
        return ax
    legend_outside(ax)
    return ax


def crossover_chart(
    data: CrossoverResult | SweepResult,
    *,
    x: str | None = None,
    where: Mapping[str, Any] | None = None,
    mark: CrossoverResult | None = None,
    ax: Axes | None = None,
) -> Axes:
    """The cost of the option against the swept quantity, with its CI band, the API's line
    and the break-even marked.

    With a :class:`~sim.study.sweep.SweepResult`: cost per 1M tokens (mean and 95 % band) against
    ``x`` (default: the only swept path), the all-API cost per 1M tokens, and the crossing
    ``mark`` (default: :func:`sim.crossover` of the sweep on its default metric,
    ``savings_vs_api_usd``, so the chart marks what the command line and the report say).
    With a :class:`~sim.study.crossover.CrossoverResult`: its metric per point (API = 0) and
    its estimate with the CI span. The legend words the crossing as
    :func:`sim.study.crossover.describe` does.
    """
    ax = _axes(ax)
    if isinstance(data, CrossoverResult):
        pts = data.points
        xs = pts["x"].to_numpy(dtype=float)
        ax.plot(xs, pts["mean"].to_numpy(dtype=float), "o-", label=f"{data.metric} (mean)")
        ax.fill_between(
            xs,
            pts["ci_low"].to_numpy(dtype=float),
            pts["ci_high"].to_numpy(dtype=float),
            alpha=0.25,
            label="95% CI",
        )
        ax.axhline(0.0, color="0.3", ls="--", label="API (break-even)")
        _mark(ax, data)
        ax.set_xlabel(_with_unit(data.x))
        unit = metric_unit(data.metric)
        ax.set_ylabel(f"{data.metric} ({unit})" if unit else data.metric)
        ax.set_title("Savings vs the API along the sweep")
        legend_outside(ax)
        ax.grid(alpha=0.3)
        return ax
    if x is None:
        if len(data.parameters) != 1:
            raise ValueError(f"give x=, one of {', '.join(data.parameters)}")
        x = data.parameters[0]
    summary = data.summary()
    for path, value in (where or {}).items():
        summary = summary[summary[path] == value]
    for metric, label, band in (
        ("cost_per_1m_tokens_usd", "option", True),
        ("api_only_cost_per_1m_tokens_usd", "API only", False),
    ):
        rows = summary[summary["metric"] == metric].sort_values(x)
        if rows.empty:
            continue
        xs = rows[x].to_numpy(dtype=float)
        ax.plot(xs, rows["mean"].to_numpy(dtype=float), "o-" if band else "--", label=label)
        if band:
            ax.fill_between(
                xs,
                rows["ci_low"].to_numpy(dtype=float),
                rows["ci_high"].to_numpy(dtype=float),
                alpha=0.25,
                label="95% CI",
            )
    cross = mark
    if cross is None and "savings_vs_api_usd" in data.runs:
        try:
            cross = crossover(data, x=x, where=where)
        except ValueError:
            cross = None
    if cross is not None:
        _mark(ax, cross)
    ax.set_xlabel(_with_unit(x))
    ax.set_ylabel("USD per 1M tokens")
    ax.set_title("Cost per 1M tokens along the sweep (USD)")
    legend_outside(ax)
    ax.grid(alpha=0.3)
    return ax


def _with_unit(path: str) -> str:
    unit = unit_of(path)
    return f"{text_label(path)} ({unit})" if unit else text_label(path)


def _mark(ax: Axes, cross: CrossoverResult) -> None:
    if not math.isfinite(cross.estimate):
        return
    # the crossing as the command line and the report word it; an open bound of the
    # interval shades to the edge of the swept range
    label = text_label(f"break-even {estimate_text(cross)}")
    ax.axvline(cross.estimate, color="C3", label=label)
    xs = cross.points["x"].to_numpy(dtype=float)
    lo = cross.ci_low if math.isfinite(cross.ci_low) else float(xs.min())
    hi = cross.ci_high if math.isfinite(cross.ci_high) else float(xs.max())
    if math.isfinite(cross.ci_low) or math.isfinite(cross.ci_high):
        ax.axvspan(lo, hi, color="C3", alpha=0.12, label=f"break-even {cross.confidence:.0%} CI")


def tornado(df: pd.DataFrame, *, xlabel: str = "output", ax: Axes | None = None) -> Axes:
    """One-at-a-time sensitivity: per parameter a bar from the output at its low value to
    the output at its high value, around the base output; widest swing on top.

    ``df`` has the columns ``parameter``, ``low``, ``high`` (the output with the parameter
    at its low / high value) and ``base`` (the output at the base case); ``xlabel`` names
    the output with its unit.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"parameter": ["gpu price", "rate"], "low": [-5.0, -1.0],
    ...                    "high": [3.0, 2.0], "base": 0.0})
    >>> [t.get_text() for t in tornado(df).get_yticklabels()]
    ['rate', 'gpu price']
    """
    missing = {"parameter", "low", "high", "base"} - set(df.columns)
    if missing:
        raise ValueError(f"tornado needs the columns {', '.join(sorted(missing))}")
    ax = _axes(ax)
    frame = df.assign(swing=(df["high"] - df["low"]).abs()).sort_values("swing")
    ys = np.arange(len(frame))
    base = frame["base"].to_numpy(dtype=float)
    low = frame["low"].to_numpy(dtype=float)
    high = frame["high"].to_numpy(dtype=float)
    ax.barh(ys, low - base, left=base, color="C0", label="parameter at low")
    ax.barh(ys, high - base, left=base, color="C1", label="parameter at high")
    if len(frame):
        ax.axvline(float(np.nanmean(base)), color="k", lw=1, label="base")
    ax.set_yticks(ys, [text_label(p) for p in frame["parameter"]])
    ax.set_xlabel(xlabel)
    ax.set_title("Sensitivity, one input at a time")
    legend_outside(ax)
    ax.grid(axis="x", alpha=0.3)
    return ax
