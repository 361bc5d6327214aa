"""Metric definitions on hand-made request records (exact values), and summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sim.intervals import summarize, t_interval
from sim.replication.metrics import request_metrics, slo_met
from sim.workload.spec import ClassSpec


def _cls(name: str, **slo: float) -> ClassSpec:
    return ClassSpec.model_validate(
        {
            "name": name,
            "arrivals": {"process": "poisson", "rate_rps": 1.0},
            "prompt_tokens": {"dist": "fixed", "value": 10},
            "output_tokens": {"dist": "fixed", "value": 10},
            "slo": slo,
        }
    )


def _frame() -> pd.DataFrame:
    rows = [
        # arrival, class, in, out, status, ttft, tpot, e2e, queue
        (5.0, "a", 100, 10, "completed", 0.1, 0.01, 0.19, 0.0),  # before the window
        (20.0, "a", 100, 10, "completed", 0.2, 0.02, 0.38, 0.05),
        (30.0, "a", 200, 20, "completed", 2.0, 0.02, 2.38, 1.0),  # misses TTFT
        (40.0, "b", 50, 1, "completed", 0.3, np.nan, 0.3, 0.1),  # one token: no TPOT
        (50.0, "b", 50, 5, "rejected", np.nan, np.nan, np.nan, np.nan),
        (60.0, "b", 50, 5, "completed", 0.4, 0.2, 1.2, 0.2),  # misses TPOT
        (99.5, "a", 100, 10, "completed", 0.2, 0.02, 0.38, 0.0),  # finishes just inside
    ]
    df = pd.DataFrame(
        rows,
        columns=[
            "arrival_s", "class_name", "input_tokens", "output_tokens", "status",
            "ttft_s", "tpot_s", "e2e_s", "queue_s",
        ],
    )  # fmt: skip
    df["finish_s"] = df["arrival_s"] + df["e2e_s"]
    df["status"] = pd.Categorical(df["status"], categories=["completed", "rejected", "failed"])
    return df


def test_slo_met_rules() -> None:
    classes = [_cls("a", ttft_s=1.0, tpot_s=0.05), _cls("b", tpot_s=0.1)]
    met = slo_met(_frame(), classes)
    assert met.tolist() == [True, True, False, True, False, False, True]


def test_request_metrics_exact_values() -> None:
    classes = [_cls("a", ttft_s=1.0, tpot_s=0.05), _cls("b", tpot_s=0.1)]
    m = request_metrics(_frame(), classes, warmup_s=10.0, duration_s=100.0)
    span = 90.0
    assert m["requests_offered"] == 6
    assert m["requests_completed"] == 5 and m["requests_rejected"] == 1
    assert m["offered_rps"] == pytest.approx(6 / span)
    # completed with finish inside [10, 100): arrivals 20, 30, 40, 60 and 99.5 (at 99.88)
    assert m["throughput_rps"] == pytest.approx(5 / span)
    assert m["output_tokens_per_s"] == pytest.approx((10 + 20 + 1 + 5 + 10) / span)
    ttft = np.array([0.2, 2.0, 0.3, 0.4, 0.2])
    assert m["ttft_mean_s"] == pytest.approx(ttft.mean())
    assert m["ttft_p90_s"] == pytest.approx(np.percentile(ttft, 90))
    assert m["tpot_p50_s"] == pytest.approx(np.median([0.02, 0.02, 0.2, 0.02]))
    # met: 20 (a), 40 (b, one token), 99.5 (a) -> 3 of 6, the rejection is a miss
    assert m["slo_attainment"] == pytest.approx(3 / 6)
    assert m["goodput_rps"] == pytest.approx(3 / span)
    assert m["slo_attainment[b]"] == pytest.approx(1 / 3)
    assert m["ttft_p50_s[a]"] == pytest.approx(np.median([0.2, 2.0, 0.2]))
    assert m["offered_rps[b]"] == pytest.approx(3 / span)


def test_t_interval_matches_scipy() -> None:
    x = np.array([1.2, 0.7, 1.9, 1.4, 1.1])
    mean, lo, hi = t_interval(x, 0.9)
    ref = stats.t.interval(0.9, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert mean == pytest.approx(x.mean())
    assert (lo, hi) == pytest.approx(ref)


def test_t_interval_coverage_on_a_known_mean() -> None:
    # 95 % intervals from 5 normal draws cover the true mean in ≈95 % of 4000 trials;
    # the binomial standard error of the coverage is 0.0034.
    rng = np.random.default_rng(2024)
    trials = 4000
    covered = 0
    for _ in range(trials):
        _, lo, hi = t_interval(rng.normal(3.0, 2.0, 5))
        covered += lo <= 3.0 <= hi
    se = np.sqrt(0.95 * 0.05 / trials)
    assert abs(covered / trials - 0.95) < 4 * se


def test_summarize_columns_and_single_replication() -> None:
    reps = pd.DataFrame({"replication": [0], "x": [2.0]})
    s = summarize(reps)
    assert list(s.columns) == [
        "metric",
        "mean",
        "ci_low",
        "ci_high",
        "std",
        "p5",
        "p50",
        "p95",
        "n",
        "note",
    ]
    row = s.iloc[0]
    assert row["metric"] == "x" and row["mean"] == 2.0 and row["n"] == 1
    assert np.isnan(row["ci_low"]) and np.isnan(row["std"])
    assert row["note"] == "one replication: no interval"
