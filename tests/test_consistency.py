"""Every number a reader sees is bounded and explained, wherever it is shown: the sweep's
summary and the decision table give intervals as the run's summary does, the fleet-state
plot's legend hides no data, ``crossover plan`` records its scenario, and the report's
modules share only public helpers."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from test_plots import _legend_hides_data

import sim
from sim import plots
from sim.intervals import NOTE_IDENTICAL, NOTE_ONE
from sim.study.sweep import SweepResult

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "tests" / "data" / "good-trace.yaml"


def _tiny() -> sim.Scenario:
    return sim.load_scenario(ROOT / "scenarios" / "chat-startup.yaml").with_overrides(
        {"horizon.duration_s": 60, "horizon.warmup_s": 0}
    )


def _fleet_state(dynamic: bool) -> pd.DataFrame:
    # two replicas over 10 h, the second one starting late; the busiest samples at the end,
    # right where a legend inside the axes used to sit
    t = np.arange(0.0, 36_000.0, 300.0)
    rows = []
    for replica in (0, 1):
        state = np.where((replica == 1) & (t < 18_000.0), "starting", "ready")
        busy = (40 * t / t.max()).astype(int) + 5 * replica
        rows.append(
            pd.DataFrame(
                {
                    "t_s": t,
                    "replica": replica,
                    "state": state if dynamic else "ready",
                    "queued": busy // 2,
                    "running": busy,
                    "kv_used_blocks": busy,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("dpi", [72, 110])  # the report's SVG and PNG
def test_fleet_state_plot_has_one_legend_outside_the_data(dynamic: bool, dpi: int) -> None:
    fig = Figure(figsize=(6.4, 4.0), layout="constrained", dpi=dpi)  # as the report's
    FigureCanvasAgg(fig)
    ax = plots.timeseries(_fleet_state(dynamic), ax=fig.subplots())
    assert _legend_hides_data(ax) == []
    legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    assert len(legends) == 1  # one legend for both axes, not one over each corner
    labels = [t.get_text() for t in legends[0].get_texts()]
    assert labels[:2] == ["running sequences", "queued requests"]
    renderer = fig.canvas.get_renderer()
    box = legends[0].get_window_extent(renderer)
    assert box.x0 >= ax.get_window_extent(renderer).x1  # right of the plot
    if dynamic:
        assert labels[2] == "replicas ready"
        right = fig.axes[1]
        # and clear of the right axis's tick labels and label, and of its line
        assert not box.overlaps(right.yaxis.get_tightbbox(renderer))
        xy = right.transData.transform(right.get_lines()[0].get_xydata())
        assert not ((xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1)).any()
    # inside the figure: constrained layout made room for it
    assert box.x1 <= fig.bbox.x1 + 1


def test_sweep_summary_bounds_its_intervals_as_the_run_summary_does() -> None:
    runs = pd.DataFrame(
        {
            "point": [0, 0, 0, 1, 1, 1, 2],
            "fleet.replicas": [1, 1, 1, 2, 2, 2, 3],
            "replication": [0, 1, 2, 0, 1, 2, 0],
            "slo_attainment": [0.97, 0.99, 1.0, 0.999, 1.0, 1.0, 0.5],
            "cost_per_1m_tokens_usd": [0.02, 1.5, 0.03, 7.0, 7.0, 7.0, 3.0],
            "savings_vs_api_usd": [-5.0, 1.0, 2.0, 3.0, 3.0, 3.0, 1.0],
        }
    )
    points = pd.DataFrame({"point": [0, 1, 2], "fleet.replicas": [1, 2, 3]})
    res = SweepResult(_tiny(), ("fleet.replicas",), points, runs, seed=0, replications=3)
    table = res.summary().set_index(["point", "metric"])
    assert list(res.summary().columns)[-2:] == ["n", "note"]
    # a fraction stays in [0, 1], a cost at or above 0 (the plain t-interval leaves both)
    slo = table.loc[(0, "slo_attainment")]
    assert slo["ci_high"] == 1.0 and slo["ci_low"] < slo["mean"] and slo["note"] == ""
    cost = table.loc[(0, "cost_per_1m_tokens_usd")]
    assert cost["ci_low"] == 0.0 and cost["ci_high"] > cost["mean"]
    # a signed quantity keeps the plain interval
    assert table.loc[(0, "savings_vs_api_usd"), "ci_low"] < -5.0
    # no interval from identical replications, or from one: NaN bounds and why
    same = table.loc[(1, "cost_per_1m_tokens_usd")]
    assert math.isnan(same["ci_low"]) and math.isnan(same["ci_high"])
    assert same["note"] == NOTE_IDENTICAL and same["mean"] == 7.0
    one = table.loc[(2, "slo_attainment")]
    assert math.isnan(one["ci_low"]) and one["note"] == NOTE_ONE and one["n"] == 1


def test_decision_table_says_identical_replications_give_no_interval(tmp_path: Path) -> None:
    # a trace replayed the same way in every replication, with fixed prompt lengths and the
    # trace's outputs: every replication serves exactly the same requests
    s = sim.load_scenario(TRACE)
    result = sim.run(s, replications=3, seed=2)
    assert result.replications["total_cost_usd_per_month"].nunique() == 1
    row = result.decision().table.set_index("option").loc["self_host_only"]
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
    assert row["ci_note"] == NOTE_IDENTICAL
    assert math.isnan(row["slo_ci_low"]) and row["slo_ci_note"] == NOTE_IDENTICAL
    assert NOTE_IDENTICAL in result.decision().verdict
    html = sim.report(result, tmp_path / "r.html").read_text()
    decision = html.split('<table id="decision">', 1)[1].split("</table>", 1)[0]
    assert f"({NOTE_IDENTICAL})" in decision
    # two different replications do have an interval, and no note
    varied = sim.run(_tiny(), replications=2, seed=1).decision().table
    assert (varied["ci_note"] == "").all() and varied["ci_low"].notna().all()


def test_plan_writes_the_resolved_scenario_and_its_report_lists_the_assumptions(
    tmp_path: Path,
) -> None:
    from sim.cli import main

    out = tmp_path / "plan"
    args = ["plan", str(ROOT / "scenarios" / "chat-startup.yaml"), "--gpus", "h100-sxm",
            "--tp", "1", "--pricing", "on_demand", "--max-replicas", "1", "-n", "1", "-q",
            "--set", "horizon.duration_s=60", "--set", "horizon.warmup_s=0",
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    written = sim.load_scenario(out / "scenario.resolved.yaml")
    assert written == _tiny()
    assert main(["report", str(out), "-o", str(tmp_path / "plan.html")]) == 0
    html = (tmp_path / "plan.html").read_text()
    assert "crossover plan report: chat-startup" in html
    assert "usd_per_gpu_hour" in html  # the scenario's inputs, as a run's report lists them


def test_report_modules_import_no_private_helpers_of_each_other() -> None:
    for path in (ROOT / "sim" / "report").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sim"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
