"""Sensitivity: one-at-a-time tornado with common random numbers, and variance shares from
uncertainty draws (checked on the Ishigami function's known indices)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim import Scenario, load_scenario, run, t_interval
from sim.study.sensitivity import (
    ISHIGAMI_FIRST_ORDER,
    ishigami,
    tornado,
    tornado_bars,
    variance_indices,
)

ROOT = Path(__file__).resolve().parents[1]
PRICE = "fleet.pricing.usd_per_gpu_hour"


@pytest.fixture(scope="module")
def short() -> Scenario:
    return load_scenario(ROOT / "scenarios/chat-startup.yaml").with_overrides(
        {"horizon.duration_s": 300, "horizon.warmup_s": 0}
    )


def test_tornado_levels_signs_and_exact_price_effect(short: Scenario) -> None:
    t = tornado(short, {PRICE: (2.0, 6.0), "fleet.replicas": 0.5}, replications=3, seed=1)
    assert len(t) == 2 * 2 * 2
    cost = t[t["metric"] == "savings_vs_api_usd"].set_index(["parameter", "side"])
    # a GPU price change moves the bill by exactly GPUs × paid hours × Δprice in every
    # replication (common random numbers: the same requests, so the same drain after the
    # window), so the delta's CI is the t-interval of those exact per-replication changes
    assert short.fleet.pricing is not None
    base = short.fleet.pricing.usd_per_gpu_hour  # the scenario's catalogue quote
    assert base is not None and 2.0 < base < 6.0
    drain = run(short, replications=3, seed=1).replications["fleet_drain_s"].to_numpy()
    exact = 2 * (300 + drain) / 3600 * (base - 2.0)
    mean, lo, hi = t_interval(exact)
    low = cost.loc[(PRICE, "low")]
    assert low["delta"] == pytest.approx(mean)
    assert (low["delta_ci_low"], low["delta_ci_high"]) == pytest.approx((lo, hi))
    assert cost.loc[(PRICE, "high"), "delta"] < 0
    assert cost.loc[("fleet.replicas", "low"), "value"] == 1
    assert cost.loc[("fleet.replicas", "high"), "value"] == 3
    # sorted by swing within each metric
    for _, grp in t.groupby("metric", sort=False):
        assert list(grp["swing"]) == sorted(grp["swing"], reverse=True)


def test_tornado_rejects_bad_input(short: Scenario) -> None:
    with pytest.raises(KeyError):
        tornado(short, {"fleet.no_such": 0.1}, replications=1)
    with pytest.raises(ValueError, match="fraction"):
        tornado(short, {"fleet.gpu": 0.1}, replications=1)


def test_variance_indices_recover_ishigami() -> None:
    rng = np.random.default_rng(7)
    x = rng.uniform(-np.pi, np.pi, (20_000, 3))
    df = pd.DataFrame({f"param:x{i + 1}": x[:, i] for i in range(3)})
    df["y"] = ishigami(x)
    t = variance_indices(df, metrics=["y"]).set_index("parameter")
    for i, expected in enumerate(ISHIGAMI_FIRST_ORDER):
        assert t.loc[f"x{i + 1}", "first_order"] == pytest.approx(expected, abs=0.02)
    assert t.loc["x2", "r2"] < 0.01  # a symmetric effect no straight line sees


def test_variance_indices_from_a_run_with_uncertainty(short: Scenario) -> None:
    s = short.with_overrides(
        {
            "uncertainty": {
                PRICE: {"dist": "uniform", "low": 1.5, "high": 5.0},
                "costs.monitoring_usd_per_month": {"dist": "uniform", "low": 280, "high": 320},
            }
        }
    )
    res = run(s, replications=30, seed=3)
    t = variance_indices(res, metrics=["total_cost_usd"]).set_index("parameter")
    assert t.loc[PRICE, "r2"] > 0.8  # the fleet's bill follows its GPU price
    assert t.loc["costs.monitoring_usd_per_month", "r2"] < 0.3
    with pytest.raises(ValueError, match="uncertainty"):
        variance_indices(run(short, replications=2), metrics=["cost_per_1m_tokens_usd"])


def test_tornado_bars_reads_one_metric_of_the_tidy_table() -> None:
    t = pd.DataFrame(
        {
            "metric": ["m", "m", "m", "m", "k", "k"],
            "parameter": ["a", "a", "b", "b", "a", "a"],
            "side": ["low", "high", "low", "high", "low", "high"],
            "mean": [1.0, 5.0, 2.0, 2.5, 10.0, 20.0],
            "base_mean": [3.0, 3.0, 3.0, 3.0, 15.0, 15.0],
        }
    )
    bars = tornado_bars(t)  # the first metric when there is no savings_vs_api_usd
    assert bars.values.tolist() == [["a", 1.0, 5.0, 3.0], ["b", 2.0, 2.5, 3.0]]
    assert tornado_bars(t, metric="k").values.tolist() == [["a", 10.0, 20.0, 15.0]]
    assert tornado_bars(bars) is bars  # already bars
    with pytest.raises(ValueError, match="no metric 'z'"):
        tornado_bars(t, metric="z")
    with pytest.raises(ValueError, match="missing base_mean"):
        tornado_bars(t.drop(columns="base_mean"))
