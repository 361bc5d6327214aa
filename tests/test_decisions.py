"""The crossover: against the closed-form break-even, and exact cases built by hand."""

from __future__ import annotations

import doctest
from html import escape
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scenario_helpers import priced_scenario_data
from scipy import stats

import sim.study.crossover
from sim import Scenario, SweepResult, analytic, crossover, find_crossover, sweep
from sim.study.crossover import describe, estimate_text, metric_unit, unit_of, wilson_interval

RATE = "workload.classes.chat.arrivals.rate_rps"
PRICE = "fleet.pricing.usd_per_gpu_hour"
P_IN, P_OUT = 0.20, 0.60  # USD per 1M tokens
IN, OUT = 500, 100
GPU_USD_PER_HOUR = 3.29


def _scenario(rate_rps: float = 5.0) -> Scenario:
    # fixed lengths, one fixed replica, Poisson arrivals: the API bill grows linearly with
    # the rate and the fleet's does not
    return Scenario.model_validate(
        priced_scenario_data(
            name="break-even",
            rate_rps=rate_rps,
            duration_s=400,
            warmup_s=50,
            prompt={"dist": "fixed", "value": IN},
            output={"dist": "fixed", "value": OUT},
            usd_per_gpu_hour=GPU_USD_PER_HOUR,
            usd_per_1m_input=P_IN,
            usd_per_1m_output=P_OUT,
        )
    )


def test_crossover_ci_covers_the_closed_form_break_even() -> None:
    lam_star = analytic.break_even_rate_rps(
        fleet_usd_per_hour=GPU_USD_PER_HOUR, api_usd_per_request=(IN * P_IN + OUT * P_OUT) / 1e6
    )
    rates = [4.5, 5.0, 5.5, 6.0, 6.5, 7.0]  # λ* ≈ 5.71 req/s lies between two points
    res = sweep(_scenario(), grid={RATE: rates}, replications=8, seed=3, executor="serial")
    c = crossover(res, x=RATE)
    assert c.method == "interpolate" and c.note == ""
    assert c.ci_low <= lam_star <= c.ci_high, (c.ci_low, lam_star, c.ci_high)
    assert c.ci_low < c.estimate < c.ci_high and c.ci_high - c.ci_low < 0.5
    # probability that self-hosting is cheaper: never well below λ*, always well above
    pts = c.points
    assert pts["x"].tolist() == rates and (pts["n"] == 8).all()
    assert pts["p_cheaper"].iloc[0] == 0.0 and pts["p_cheaper"].iloc[-1] == 1.0
    assert pts["p_cheaper_high"].iloc[0] == pytest.approx(wilson_interval(0, 8)[1])
    # the bootstrap over replications gives a comparable interval around the same estimate
    b = crossover(res, x=RATE, method="bootstrap", n_resamples=500)
    assert b.estimate == c.estimate and b.ci_low < b.estimate < b.ci_high
    assert abs(b.ci_low - c.ci_low) < 0.3 and abs(b.ci_high - c.ci_high) < 0.3


def _synthetic(
    xs: list[float], noise: list[float], slope: float = 2.0, root: float = 2.5
) -> SweepResult:
    """A sweep whose metric is ``slope·(x − root) + noise[replication]`` exactly."""
    rows = []
    for p, x in enumerate(xs):
        for r, e in enumerate(noise):
            y = slope * (x - root) + e
            rows.append(
                {
                    "point": p,
                    "x": x,
                    "other": 1,
                    "replication": r,
                    "savings_vs_api_usd": y,
                    "self_host_cheaper": float(y > 0),
                }
            )
    runs = pd.DataFrame(rows)
    points = runs[["point", "x", "other"]].drop_duplicates().reset_index(drop=True)
    return SweepResult(_scenario(), ("x", "other"), points, runs, seed=0, replications=len(noise))


NOISE = [-0.1, 0.1, -0.2, 0.2]


def test_interpolated_interval_by_hand() -> None:
    c = crossover(_synthetic([1.0, 2.0, 3.0, 4.0], NOISE), x="x")
    assert c.estimate == pytest.approx(2.5)
    # same spread at every point: ci = mean ± h, and mean has slope 2, so x* ± h/2
    h = stats.t.ppf(0.975, 3) * np.std(NOISE, ddof=1) / 2
    assert c.ci_low == pytest.approx(2.5 - h / 2) and c.ci_high == pytest.approx(2.5 + h / 2)
    assert c.points["p_cheaper"].tolist() == [0.0, 0.0, 1.0, 1.0]
    lo, hi = wilson_interval(4, 4)
    assert (c.points["p_cheaper_low"].iloc[3], c.points["p_cheaper_high"].iloc[3]) == (lo, hi)


def test_decreasing_metric_and_interval_spanning_points() -> None:
    # savings fall as the GPU price rises; wide noise: the interval spans several segments
    wide = [-1.5, 1.5, -1.0, 1.0]
    c = crossover(_synthetic([1.0, 2.0, 3.0, 4.0, 5.0], wide, slope=-2.0, root=3.2), x="x")
    assert c.estimate == pytest.approx(3.2)
    h = stats.t.ppf(0.975, 3) * np.std(wide, ddof=1) / 2
    assert c.ci_low == pytest.approx(3.2 - h / 2) and c.ci_high == pytest.approx(3.2 + h / 2)
    assert c.ci_high - c.ci_low > 1.0


def test_no_crossing_or_interval_past_the_range_is_nan_with_a_note() -> None:
    c = crossover(_synthetic([3.0, 4.0], NOISE), x="x")
    assert np.isnan(c.estimate) and np.isnan(c.ci_low) and "stays above zero" in c.note
    wide = [-3.0, 3.0, -2.0, 2.0]
    c = crossover(_synthetic([2.0, 3.0, 4.0, 5.0, 6.0], wide), x="x")
    assert c.estimate == pytest.approx(2.5)
    assert np.isnan(c.ci_low) and c.ci_high > 2.5 and "past the swept range" in c.note


def test_where_selects_a_slice_of_a_larger_grid() -> None:
    one = _synthetic([1.0, 2.0, 3.0], NOISE)
    two = _synthetic([1.0, 2.0, 3.0], NOISE, root=1.5)
    runs = pd.concat([one.runs, two.runs.assign(other=2, point=two.runs["point"] + 3)])
    points = runs[["point", "x", "other"]].drop_duplicates().reset_index(drop=True)
    both = SweepResult(one.scenario, ("x", "other"), points, runs, seed=0, replications=4)
    with pytest.raises(ValueError, match="also varies other"):
        crossover(both, x="x")
    assert crossover(both, x="x", where={"other": 2}).estimate == pytest.approx(1.5)
    with pytest.raises(ValueError, match="not a swept parameter"):
        crossover(both, x="nope")
    with pytest.raises(ValueError, match="no metric"):
        crossover(both, x="x", metric="savings_per_unicorn")


def test_wilson_interval_formula() -> None:
    k, n, z = 3, 10, stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert wilson_interval(k, n) == pytest.approx((centre - half, centre + half))
    assert all(np.isnan(wilson_interval(0, 0)))


def test_doctests(monkeypatch: Any) -> None:
    from pathlib import Path

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert doctest.testmod(sim.study.crossover, raise_on_error=True).attempted > 0


def test_find_crossover_bisects_to_the_closed_form_break_even() -> None:
    lam_star = analytic.break_even_rate_rps(
        fleet_usd_per_hour=GPU_USD_PER_HOUR, api_usd_per_request=(IN * P_IN + OUT * P_OUT) / 1e6
    )
    low, high = 2.0, 10.0
    c = find_crossover(_scenario(), x=RATE, low=low, high=high, replications=8, seed=3)
    assert c.x == RATE and c.method == "interpolate"
    assert c.ci_low <= lam_star <= c.ci_high, (c.ci_low, lam_star, c.ci_high)
    assert c.ci_low < c.estimate < c.ci_high and c.ci_high - c.ci_low < 0.5
    assert "cannot be resolved further" in c.note
    xs = c.points["x"].to_numpy()
    assert xs[0] == low and xs[-1] == high and (c.points["n"] == 8).all()
    # a grid as fine as the finest step taken needs many more points
    grid_points = (high - low) / np.diff(xs).min() + 1
    assert len(xs) <= 12 and len(xs) < grid_points / 3, (len(xs), grid_points)
    # common random numbers: every point is what a grid sweep with the same seed gives
    x_mid = float(xs[2])
    grid = crossover(
        sweep(_scenario(), grid={RATE: [low, x_mid]}, replications=8, seed=3, executor="serial"),
        x=RATE,
    )
    assert c.points.iloc[[0, 2]]["mean"].tolist() == grid.points["mean"].tolist()


def test_find_crossover_stops_and_reports_no_sign_change() -> None:
    s = _scenario()
    c = find_crossover(s, x=RATE, low=1.0, high=3.0, replications=3)
    assert np.isnan(c.estimate) and np.isnan(c.ci_low) and len(c.points) == 2
    assert "no sign change" in c.note and "stays below zero" in c.note
    # a loose tolerance: 2, 10, then 6, 4, 5 and the bracket [5, 6] is within 30 %
    c = find_crossover(s, x=RATE, low=2.0, high=10.0, replications=8, seed=3, rel_tol=0.3)
    assert c.points["x"].tolist() == [2.0, 4.0, 5.0, 6.0, 10.0] and 5.0 < c.estimate < 6.0
    assert "max_points" not in c.note
    c = find_crossover(s, x=RATE, low=2.0, high=10.0, replications=8, seed=3, max_points=3)
    assert c.points["x"].tolist() == [2.0, 6.0, 10.0] and "max_points=3" in c.note
    with pytest.raises(ValueError, match="low < high"):
        find_crossover(s, x=RATE, low=3.0, high=1.0)


def _open_above() -> sim.study.crossover.CrossoverResult:
    """A crossing near the top of the range whose interval runs past it, on a path in req/s."""
    base = _synthetic([2.0, 3.0, 4.0, 5.0, 6.0], [-3.0, 3.0, -2.0, 2.0], root=5.5)
    runs = base.runs.rename(columns={"x": RATE})
    points = base.points.rename(columns={"x": RATE})
    swept = SweepResult(base.scenario, (RATE, "other"), points, runs, seed=0, replications=4)
    return crossover(swept, x=RATE)


def test_the_crossover_is_worded_with_its_unit_and_open_bounds_explained() -> None:
    c = _open_above()
    assert c.estimate == pytest.approx(5.5) and np.isnan(c.ci_high) and np.isfinite(c.ci_low)
    text = str(c)
    assert text == describe(c) and "nan" not in text
    assert text.startswith(f"savings_vs_api_usd crosses zero at {RATE} = 5.5 req/s (95% CI ")
    assert f"{c.ci_low:.4g} req/s – above the swept range (max 6 req/s))" in text
    assert estimate_text(c) in text and escape(text) in c._repr_html_()
    # no crossing: says so, with the range and why, never "nan"
    none = crossover(_synthetic([3.0, 4.0], NOISE), x="x")
    assert str(none).startswith("savings_vs_api_usd does not cross zero along x: none in ")
    assert "3 – 4" in str(none) and "stays above zero" in str(none) and "nan" not in str(none)
    # units come from the path's last name, list indices skipped
    assert unit_of("workload.classes.chat.arrivals.rates_rps.0") == "req/s"
    assert unit_of(PRICE) == "USD/GPU-hour" and unit_of("horizon.duration_s") == "s"
    assert unit_of("fleet.replicas") == "" and metric_unit("savings_vs_api_usd") == (
        "USD per simulated window"
    )


def test_the_sweep_command_prints_the_same_words(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import sim.cli.sweep
    from sim.cli import main

    c = _open_above()
    monkeypatch.setattr(sim.cli.sweep, "crossover", lambda result, x: c)
    from pathlib import Path

    flagship = Path(__file__).resolve().parents[1] / "scenarios" / "chat-startup.yaml"
    args = ["sweep", str(flagship), "--grid", "fleet.replicas=1,2", "-n", "1", "--executor"]
    args += ["serial", "--set", "horizon.duration_s=60", "--set", "horizon.warmup_s=0"]
    args += ["--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"crossover: {describe(c)}\n" in out
    assert "above the swept range (max 6 req/s)" in out and "nan" not in out
