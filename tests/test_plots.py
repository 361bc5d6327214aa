"""sim.plots: every helper returns its Axes with the expected artists, and reuses ``ax=``."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

import sim
from sim import plots

RATE = "workload.classes.general.arrivals.rates_rps.0"


@pytest.fixture(scope="module")
def result() -> sim.RunResult:
    s = sim.load_scenario("scenarios/rag-private-hybrid.yaml").with_overrides(
        {"horizon.duration_s": 300, "horizon.warmup_s": 30}
    )
    return sim.run(s, replications=3, seed=1)


@pytest.fixture(scope="module")
def swept() -> sim.SweepResult:
    s = sim.load_scenario("scenarios/chat-startup.yaml").with_overrides(
        {"horizon.duration_s": 200, "horizon.warmup_s": 0}
    )
    path = "workload.classes.chat.arrivals.rates_rps.0"
    return sim.sweep(s, grid={path: [1.0, 40.0, 80.0]}, replications=2, executor="serial")


@pytest.fixture(autouse=True)
def _close() -> object:
    yield
    plt.close("all")


def test_latency_cdf_one_line_per_group(result: sim.RunResult) -> None:
    req = result.first.requests
    ax = plots.latency_cdf(req, "ttft_s", by="class_name")
    labels = [line.get_label() for line in ax.get_lines()]
    assert [lab.split(" (")[0] for lab in labels] == ["general", "private-rag"]
    assert ax.get_xlabel() == "time to first token (s)"
    assert ax.get_title() == "Time to first token by class (s)"
    ax2 = plots.latency_cdf(req, "e2e_s", by="route")
    assert ax2.get_title() == "End-to-end latency by route (s)"
    assert {lab.split(" (")[0] for lab in (x.get_label() for x in ax2.get_lines())} == set(
        req.loc[req["status"] == "completed", "route"].astype(str)
    )
    # each line is an ECDF ending at 1
    assert all(line.get_ydata()[-1] == pytest.approx(1.0) for line in ax.get_lines())


def test_latency_cdf_escapes_mathtext_and_rejects_missing_column() -> None:
    df = pd.DataFrame({"ttft_s": [0.1, 0.2], "class_name": ["$x$", "_hidden"]})
    ax = plots.latency_cdf(df)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        r"\$x\$ (n=1)",
        " _hidden (n=1)",
    ]
    with pytest.raises(ValueError, match="columns"):
        plots.latency_cdf(df, "nope")


def test_cost_breakdown_stacks_components_against_the_api(result: sim.RunResult) -> None:
    ax = plots.cost_breakdown(result)
    labels = [c.get_label() for c in ax.containers if hasattr(c, "patches")]
    assert "busy GPU time" in labels and "API only (same requests)" in labels
    table = plots.cost_components(result).set_index("component")
    stacked = sum(
        p.get_height()
        for c in ax.containers
        if c.get_label() not in ("API only (same requests)",)
        for p in getattr(c, "patches", [])
    )
    assert stacked == pytest.approx(table.loc["option total", "mean"], rel=1e-6)
    assert ax.get_ylabel() == "USD per month"


def test_utilisation_and_timeseries(result: sim.RunResult) -> None:
    ax = plots.utilisation(result)
    assert [t.get_text() for t in ax.get_xticklabels()] == [
        "busy (occupancy)",
        "MFU (compute)",
        "MBU (bandwidth)",
    ]
    ax = plots.timeseries(result.first)
    assert [line.get_label() for line in ax.get_lines()] == [
        "running sequences",
        "queued requests",
    ]
    assert plots.timeseries(result.first.timeseries).get_xlabel() == "time (h)"


def test_timeseries_shows_replica_states() -> None:
    ts = pd.DataFrame(
        {
            "t_s": [0, 0, 60, 60],
            "replica": [0, 1, 0, 1],
            "state": ["ready", "starting", "ready", "ready"],
            "queued": [1, 0, 0, 0],
            "running": [2, 0, 3, 1],
            "kv_used_blocks": 0,
        }
    )
    fig, ax = plt.subplots()
    assert plots.timeseries(ts, ax=ax) is ax
    twins = [a for a in fig.axes if a is not ax]
    assert twins and twins[0].get_ylabel() == "replicas ready"


def test_crossover_chart_from_sweep_and_result(swept: sim.SweepResult) -> None:
    path = "workload.classes.chat.arrivals.rates_rps.0"
    ax = plots.crossover_chart(swept)
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["option", "API only"]
    assert ax.collections, "CI band"
    assert ax.get_ylabel() == "USD per 1M tokens"
    c = sim.crossover(swept, x=path)
    ax2 = plots.crossover_chart(c)
    assert ax2.get_xlabel() == f"{path} (req/s)"
    assert any(line.get_label() == "API (break-even)" for line in ax2.get_lines())
    if c.estimate == c.estimate:
        assert any(line.get_label().startswith("break-even") for line in ax2.get_lines())


def test_tornado_orders_by_swing() -> None:
    df = pd.DataFrame(
        {
            "parameter": ["a", "b", "c"],
            "low": [-1.0, -5.0, 0.0],
            "high": [1.0, 5.0, 0.5],
            "base": 0.0,
        }
    )
    ax = plots.tornado(df)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["c", "a", "b"]
    assert len(ax.patches) == 6
    with pytest.raises(ValueError, match="base"):
        plots.tornado(df.drop(columns="base"))


def test_every_helper_reuses_the_given_axes(result: sim.RunResult, swept: sim.SweepResult) -> None:
    df = pd.DataFrame({"parameter": ["a"], "low": [-1.0], "high": [1.0], "base": 0.0})
    calls = [
        lambda ax: plots.latency_cdf(result.first.requests, ax=ax),
        lambda ax: plots.cost_breakdown(result, ax=ax),
        lambda ax: plots.utilisation(result.replications, ax=ax),
        lambda ax: plots.timeseries(result.first, ax=ax),
        lambda ax: plots.crossover_chart(swept, ax=ax),
        lambda ax: plots.tornado(df, ax=ax),
    ]
    for call in calls:
        fig, ax = plt.subplots()
        assert call(ax) is ax
        assert len(fig.axes) == 1
        plt.close(fig)


def _legend_hides_data(ax: Axes) -> list[str]:
    """What the drawn legend's box overlaps, in display coordinates after the figure is
    drawn: bars (patch extents), and any point along a line or a line collection
    (error bars), sampled densely so that a long segment crossing the box counts."""
    from matplotlib.collections import LineCollection

    fig = ax.figure
    fig.canvas.draw()
    legend = ax.get_legend()
    assert legend is not None
    box = legend.get_window_extent()
    hidden = []
    for patch in ax.patches:
        extent = patch.get_window_extent()
        if extent.width > 0 and extent.height > 0 and box.overlaps(extent):
            hidden.append(f"bar {patch.get_label()}")
    paths = [
        (f"line {x.get_label()}", x.get_transform().transform(x.get_xydata()))
        for x in ax.get_lines()
    ]
    for coll in ax.collections:
        if isinstance(coll, LineCollection):
            for seg in coll.get_segments():
                paths.append((f"lines {coll.get_label()}", coll.get_transform().transform(seg)))
    for name, xy in paths:
        xy = np.asarray(xy, dtype=float)
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) > 1:  # points along every segment, not only its ends
            t = np.linspace(0.0, 1.0, 200)[:, None, None]
            xy = (xy[:-1] + t * (xy[1:] - xy[:-1])).reshape(-1, 2)
        inside = (
            (xy[:, 0] >= box.x0)
            & (xy[:, 0] <= box.x1)
            & (xy[:, 1] >= box.y0)
            & (xy[:, 1] <= box.y1)
        )
        if inside.any():
            hidden.append(name)
    return hidden


def test_legends_hide_no_bars_or_lines(result: sim.RunResult) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # the flagship's API-only bill has a wide CI: its error bar runs where the legend went
    chat = sim.run(
        sim.load_scenario("scenarios/chat-startup.yaml").with_overrides(
            {"horizon.duration_s": 300, "horizon.warmup_s": 30}
        ),
        replications=2,
        seed=1,
    )
    # every bar as wide as the axes: a legend inside them covers one
    df = pd.DataFrame(
        {
            "parameter": [f"input {i}" for i in range(6)],
            "low": -900.0,
            "high": 900.0,
            "base": 0.0,
        }
    )
    baseline = {0.5: 0.3, 0.9: 0.6, 0.99: 1.2}
    draws = [
        lambda ax: plots.cost_breakdown(chat, ax=ax),
        lambda ax: plots.cost_breakdown(result, ax=ax),
        lambda ax: plots.tornado(df, ax=ax),
        lambda ax: plots.latency_cdf(result.first.requests, "ttft_s", baseline=baseline, ax=ax),
        lambda ax: plots.latency_cdf(result.first.requests, "e2e_s", by="route", ax=ax),
    ]
    for dpi in (72, 110):  # the report's SVG and PNG
        for draw in draws:
            fig = Figure(figsize=(6.4, 4.0), layout="constrained", dpi=dpi)  # as the report's
            FigureCanvasAgg(fig)  # a bare Figure's own canvas does not draw
            ax = draw(fig.subplots())
            assert _legend_hides_data(ax) == [], (dpi, ax.get_title())


def test_latency_cdfs_are_log_scaled_with_the_baseline_marked(result: sim.RunResult) -> None:
    req = result.first.requests
    for column in ("ttft_s", "tpot_s", "e2e_s"):
        assert plots.latency_cdf(req, column).get_xscale() == "log", column
    ax = plots.latency_cdf(req, "tpot_s", baseline={0.5: 0.02, 0.9: 0.04, 0.99: float("nan")})
    marks = [line for line in ax.get_lines() if line.get_label() == "API only (p50, p90, p99)"]
    assert len(marks) == 1
    assert list(marks[0].get_xdata()) == [0.02, 0.04]  # the non-finite one is skipped
    assert list(marks[0].get_ydata()) == [0.5, 0.9]


def test_tornado_names_its_output_with_a_unit() -> None:
    df = pd.DataFrame({"parameter": ["a"], "low": [-1.0], "high": [1.0], "base": 0.0})
    assert plots.tornado(df, xlabel="savings_vs_api_usd (USD)").get_xlabel().endswith("(USD)")
