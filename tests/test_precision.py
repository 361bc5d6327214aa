"""Precision control and extension of runs, bootstrap intervals, probabilities, and common
random numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from scipy import stats

from sim import RunResult, Scenario, load_scenario, run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def short() -> Scenario:
    return load_scenario(ROOT / "scenarios/chat-startup.yaml").with_overrides(
        {"horizon.duration_s": 300, "horizon.warmup_s": 0}
    )


def _result(reps: pd.DataFrame, scenario: Scenario) -> RunResult:
    return RunResult(scenario, reps, cast(Any, None), 0)


def test_extending_a_run_equals_running_longer(short: Scenario) -> None:
    five = run(short, replications=5, seed=4)
    ten = run(short, replications=10, seed=4, extend=five)
    assert_frame_equal(ten.replications, run(short, replications=10, seed=4).replications)
    assert ten.first is five.first  # replication 0 is kept, not recomputed


def test_extend_refuses_another_seed_or_scenario(short: Scenario) -> None:
    two = run(short, replications=2, seed=4)
    with pytest.raises(ValueError, match="seed"):
        run(short, replications=3, seed=5, extend=two)
    with pytest.raises(ValueError, match="scenario"):
        run(short.with_overrides({"fleet.replicas": 3}), replications=3, seed=4, extend=two)


def test_precision_target_is_reached_and_reported(short: Scenario) -> None:
    res = run(short, replications=4, seed=2, target_rel_ci=0.05, metrics=["ttft_p99_s"])
    p = res.precision
    assert p is not None and p.reached
    n = len(res.replications)
    assert n > 4  # four replications are not enough for ±5 % on a p99
    x = res.replications["ttft_p99_s"].to_numpy()
    half = stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n)
    assert half / abs(x.mean()) <= 0.05
    assert p.rel_ci["ttft_p99_s"] == pytest.approx(half / abs(x.mean()))
    # the stopping rule does not depend on the workers, and extending continues exactly
    assert_frame_equal(run(short, replications=n, seed=2).replications, res.replications)


def test_precision_cap_stops_and_says_so(short: Scenario) -> None:
    res = run(short, replications=2, seed=2, target_rel_ci=1e-6, max_replications=5)
    assert res.precision is not None and not res.precision.reached
    assert len(res.replications) == 5
    with pytest.raises(KeyError, match="no_such_metric"):
        run(short, replications=2, seed=2, target_rel_ci=0.1, metrics=["no_such_metric"])


def test_probability_events_and_wilson_interval(short: Scenario) -> None:
    reps = pd.DataFrame(
        {
            "replication": range(6),
            "slo_attainment": [1.0, 0.98, 0.995, 1.0, np.nan, 0.999],
            "self_host_cheaper": [1, 0, 1, 1, 1, 0],
        }
    )
    res = _result(reps, short)
    p = res.probability("slo_attainment >= 0.99")
    assert (p.successes, p.trials) == (4, 5)  # the NaN replication is no trial
    ci = stats.binomtest(4, 5).proportion_ci(0.95, method="wilson")
    assert (p.low, p.high) == pytest.approx((ci.low, ci.high))
    assert res.probability("self_host_cheaper").estimate == pytest.approx(4 / 6)
    q = res.probability(lambda r: r["self_host_cheaper"] == 0)
    assert q.successes == 2
    with pytest.raises(KeyError):
        res.probability("nope > 1")


def test_interval_statistics_and_ratio(short: Scenario) -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(10, 1, 40)
    reps = pd.DataFrame({"replication": range(40), "a": a, "b": 2 * a})
    res = _result(reps, short)
    iv = res.interval("a", "p90")
    assert iv.estimate == pytest.approx(np.percentile(a, 90))
    assert iv.low < iv.estimate < iv.high
    ratio = res.interval("a", "mean", over="b")  # paired: b / a is exactly 2
    assert ratio.estimate == pytest.approx(0.5)
    assert ratio.low == pytest.approx(0.5) and ratio.high == pytest.approx(0.5)
    with pytest.raises(ValueError, match="statistic"):
        res.interval("a", "mode")


def test_bootstrap_median_interval_covers_the_true_median(short: Scenario) -> None:
    # Exponential(1): the median is ln 2. The share of 95 % intervals that hold it must be
    # 95 % within three binomial standard errors.
    rng = np.random.default_rng(20261128)
    trials, n = 300, 60
    hits = 0
    for k in range(trials):
        x = rng.exponential(1.0, n)
        reps = pd.DataFrame({"replication": range(n), "x": x})
        iv = _result(reps, short).interval(
            "x", "median", method="percentile", n_resamples=999, seed=k
        )
        hits += iv.low <= np.log(2) <= iv.high
    se = np.sqrt(0.95 * 0.05 / trials)
    assert abs(hits / trials - 0.95) <= 3 * se, hits / trials


def test_common_random_numbers_shrink_the_variance_of_differences(short: Scenario) -> None:
    # Two fleets under the same requests (same seed) differ far less from replication to
    # replication than under independent requests (different seeds): F-test on the ratio.
    n = 16
    base = short.with_overrides({"horizon.duration_s": 200})
    one = run(base.with_overrides({"fleet.replicas": 1}), replications=n, seed=1)
    two_same = run(base, replications=n, seed=1)
    two_other = run(base, replications=n, seed=99)
    m = "ttft_p50_s"
    paired = one.replications[m].to_numpy() - two_same.replications[m].to_numpy()
    independent = one.replications[m].to_numpy() - two_other.replications[m].to_numpy()
    f = independent.var(ddof=1) / paired.var(ddof=1)
    assert stats.f.sf(f, n - 1, n - 1) < 0.01, f
