"""`crossover report DIR` on every directory the command writes (run, sweep, plan,
sensitivity), the crossover worded and drawn once, and a report with `sim.tornado`'s table."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import sim
from sim import plots
from sim.cli import main as cli
from sim.report import directory_kind, load_sweep
from sim.study.crossover import CrossoverResult, describe, estimate_text
from sim.study.sensitivity import TORNADO_COLUMNS

FLAGSHIP = Path(__file__).resolve().parents[1] / "scenarios" / "chat-startup.yaml"
RATE = "workload.classes.chat.arrivals.rates_rps.0"
PRICE = "fleet.pricing.usd_per_gpu_hour"
SHORT = ["--set", "horizon.duration_s=300", "--set", "horizon.warmup_s=0"]


def _figures(html: str) -> list[str]:
    return re.findall(r'<figure id="fig-(\w+)"', html)


def _short() -> sim.Scenario:
    return sim.load_scenario(FLAGSHIP).with_overrides(
        {"horizon.duration_s": 300, "horizon.warmup_s": 0}
    )


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sweep")
    args = ["sweep", str(FLAGSHIP), "--grid", f"{RATE}=1,40,80", "-n", "2", "--seed", "4"]
    assert cli([*args, "--executor", "serial", *SHORT, "-q", "--out", str(d)]) == 0
    return d


def test_report_of_a_sweep_directory(sweep_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert directory_kind(sweep_dir) == "sweep"
    grid = load_sweep(sweep_dir)
    assert grid.parameters == (RATE,) and grid.seed == 4 and grid.replications == 2
    c = sim.crossover(grid, x=RATE)
    assert np.isfinite(c.estimate)
    assert cli(["report", str(sweep_dir)]) == 0
    assert capsys.readouterr().out == f"wrote {sweep_dir / 'report.html'}\n"
    html = (sweep_dir / "report.html").read_text()
    assert _figures(html) == ["crossover"]
    assert '<section id="verdict">' not in html and '<section id="assumptions">' in html
    # the text is describe()'s sentence; the per-point tables say their units
    assert f'<p id="crossover-estimate">{describe(c)} (interval: interpolate).' in html
    assert f"<th>{RATE} (req/s)</th><th>mean (USD per simulated window)</th>" in html
    sweep_table = html[html.index('<table id="sweep-points">') :]
    assert sweep_table[: sweep_table.index("</table>")].count("<tr>") == 1 + 3
    files = sweep_dir / "report_files"
    assert (files / "crossover.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(files / "sweep_points.csv")) == 3


def test_the_chart_marks_the_crossing_the_result_reports(sweep_dir: Path) -> None:
    grid = load_sweep(sweep_dir)
    c = sim.crossover(grid, x=RATE)
    for ax in (plots.crossover_chart(grid), plots.crossover_chart(c)):
        marks = [line for line in ax.get_lines() if line.get_label().startswith("break-even")]
        assert len(marks) == 1
        assert marks[0].get_label() == f"break-even {estimate_text(c)}"
        assert marks[0].get_xdata()[0] == pytest.approx(c.estimate)  # same metric, same x*


def test_an_open_bound_is_explained_in_the_report_and_the_legend(tmp_path: Path) -> None:
    pts = pd.DataFrame(
        {
            "x": [10.0, 45.0],
            "mean": [-1.0, 2.0],
            "ci_low": [-2.0, -0.5],
            "ci_high": [0.5, 3.0],
            "n": 2,
            "p_cheaper": [0.0, 1.0],
            "p_cheaper_low": 0.0,
            "p_cheaper_high": 1.0,
        }
    )
    c = CrossoverResult(RATE, "savings_vs_api_usd", 29.44, 25.73, np.nan, 0.95, "interpolate", pts)
    res = sim.run(_short(), replications=2, seed=1)
    html = sim.report(res, tmp_path / "r.html", crossover=c).read_text()
    assert "29.44 req/s (95% CI 25.73 req/s – above the swept range (max 45 req/s))" in html
    assert "nan" not in html[html.index('<section id="crossover">') :].split("</section>")[0]
    ax = plots.crossover_chart(c)
    assert f"break-even {estimate_text(c)}" in [line.get_label() for line in ax.get_lines()]


def test_report_with_the_tornado_table_of_sim_tornado(tmp_path: Path) -> None:
    # this raised a KeyError (the table has no low/high/base columns) after every
    # simulation had run
    s = _short()
    table = sim.tornado(s, {PRICE: (2.0, 6.0)}, replications=2, seed=1)
    res = sim.run(s, replications=2, seed=1)
    out = sim.report(res, tmp_path / "r.html", sensitivity=table)
    html = out.read_text()
    assert "tornado" in _figures(html)
    assert "<th>savings_vs_api_usd at low (USD per simulated window)</th>" in html
    assert f"<td>{PRICE}</td>" in html
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "r_files" / "sensitivity.csv"), table)


def test_sensitivity_command_writes_its_files_and_reads_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "sens"
    spread = "uncertainty={" + PRICE + ": {dist: uniform, low: 1.5, high: 5.0}}"
    args = ["sensitivity", str(FLAGSHIP), "--param", f"{PRICE}=2:6", "--param"]
    args += ["fleet.replicas=0.5", "-n", "3", "--seed", "2", *SHORT, "--set", spread]
    assert cli([*args, "--out", str(d)]) == 0
    assert "wrote" in capsys.readouterr().out
    tornado = pd.read_csv(d / "tornado.csv")
    assert list(tornado.columns) == list(TORNADO_COLUMNS)
    assert set(tornado["parameter"]) == {PRICE, "fleet.replicas"} and (tornado["n"] == 3).all()
    variance = pd.read_csv(d / "variance.csv")
    assert set(variance["parameter"]) == {PRICE}
    assert (d / "tornado.png").read_bytes()[:4] == b"\x89PNG"
    assert directory_kind(d) == "sensitivity"
    assert cli(["report", str(d), "-o", str(tmp_path / "s.html")]) == 0
    html = (tmp_path / "s.html").read_text()
    assert _figures(html) == ["tornado", "variance"]
    assert '<table id="variance">' in html and "crossover sensitivity report" in html
    capsys.readouterr()
    # without an uncertainty section: the tornado only
    plain = tmp_path / "plain"
    args = ["sensitivity", str(FLAGSHIP), "--param", f"{PRICE}=0.5", "-n", "2", *SHORT, "-q"]
    assert cli([*args, "--out", str(plain)]) == 0
    assert (plain / "tornado.csv").is_file() and not (plain / "variance.csv").exists()
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("param", "words"),
    [
        ("fleet.replicas", "expected PATH=LO:HI or PATH=FRACTION"),
        ("fleet.no_such=0.5", "no field 'fleet.no_such'"),
        ("fleet.gpu=0.5", "give (low, high) instead of a fraction"),
    ],
)
def test_sensitivity_bad_input_is_one_line(
    param: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli(["sensitivity", str(FLAGSHIP), "--param", param, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("crossover sensitivity: --param") and words in err, err


def test_report_of_a_plan_directory(tmp_path: Path) -> None:
    plan = sim.plan_capacity(
        _short(), options={"gpu": ["h100-sxm"], "tp": [1], "replicas": [1, 2]}, replications=2
    )
    plan.table.to_csv(tmp_path / "plan.csv", index=False)
    assert directory_kind(tmp_path) == "plan"
    assert cli(["report", str(tmp_path)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert _figures(html) == [] and '<table id="plan-evidence">' in html
    table = html[html.index('<table id="plan-evidence">') :]
    assert table[: table.index("</table>")].count("<tr>") == 1 + len(plan.table)
    assert f"{len(plan.table)} configurations simulated" in html
