"""Intervals that respect their quantity: fractions stay in [0, 1], latencies, counts and
costs are not negative, signed metrics keep the plain t-interval, and a metric without an
interval says why; money prints as ``-$1,165``."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim
from sim.cli.run import _fmt, print_summary
from sim.intervals import (
    NOTE_IDENTICAL,
    NOTE_NONE,
    NOTE_ONE,
    bounded_t_interval,
    metric_interval,
    metric_range,
    summarize,
    t_interval,
)
from sim.report.tables import with_ci
from sim.study.verdict import _ci_text, number, usd

ROOT = Path(__file__).resolve().parents[1]
FRACTION = (0.0, 1.0)
NON_NEGATIVE = (0.0, math.inf)


@pytest.mark.parametrize(
    ("metric", "bounds"),
    [
        ("slo_attainment", FRACTION),
        ("slo_attainment[chat]", FRACTION),
        ("slo_attainment[route=api]", FRACTION),
        ("api_only_slo_attainment", FRACTION),
        ("gpu_busy_fraction_max", FRACTION),
        ("api_share[batch]", FRACTION),
        ("compute_utilisation", FRACTION),
        ("kv_occupancy_mean", FRACTION),
        ("prefix_hit_rate", FRACTION),
        ("self_host_cheaper", FRACTION),
        ("ttft_p50_s", NON_NEGATIVE),
        ("api_only_e2e_p99_s[chat]", NON_NEGATIVE),
        ("throughput_rps", NON_NEGATIVE),
        ("output_tokens_per_s", NON_NEGATIVE),
        ("requests_failed", NON_NEGATIVE),
        ("backlog_end_requests", NON_NEGATIVE),
        ("total_cost_usd_per_month", NON_NEGATIVE),
        ("api_cost_usd_per_month[chat]", NON_NEGATIVE),
        ("fleet_gpu_usd", NON_NEGATIVE),
        ("cost_per_1m_tokens_usd", NON_NEGATIVE),
        ("fleet_gpu_hours_paid", NON_NEGATIVE),
        ("preemptions", NON_NEGATIVE),
        ("savings_vs_api_usd", None),
        ("savings_vs_api_usd_per_month", None),
        ("savings_vs_api_per_1m_tokens_usd", None),
        ("param:arrivals.rate_rps", None),
        ("something_new", None),
    ],
)
def test_the_range_table_reads_the_metric_name(
    metric: str, bounds: tuple[float, float] | None
) -> None:
    assert metric_range(metric) == bounds


def test_fraction_near_one_keeps_the_t_intervals_coverage_inside_zero_one() -> None:
    # Bernoulli-ish: each replication's attainment is the share of 50 requests meeting the
    # SLO with p = 0.98; 5 replications, 2,000 repetitions. The plain t-interval passes 1
    # in most repetitions; clipped to [0, 1] it covers p exactly when the plain one does.
    rng = np.random.default_rng(20261201)
    p, trials = 0.98, 2000
    covered = covered_plain = above_one = identical = 0
    for _ in range(trials):
        x = rng.binomial(50, p, 5) / 50
        mean, lo, hi, note = metric_interval("slo_attainment", x)
        assert mean == pytest.approx(x.mean())
        if note:
            assert note == NOTE_IDENTICAL and math.isnan(lo) and math.isnan(hi)
            identical += 1
            continue
        _, plo, phi = t_interval(x)
        assert 0.0 <= lo <= mean <= hi <= 1.0
        above_one += phi > 1
        covered += lo <= p <= hi
        covered_plain += plo <= p <= phi
    reported = trials - identical
    assert 0 < identical < 0.05 * trials  # the same share in all five: rare, not absent
    assert above_one > 0.5 * reported  # the clipping is exercised
    assert covered == covered_plain
    se = math.sqrt(0.95 * 0.05 / reported)
    assert abs(covered / reported - 0.95) < 3 * se, covered / reported


@pytest.mark.parametrize("n", [2, 3, 5])
def test_bounds_never_leave_the_range(n: int) -> None:
    rng = np.random.default_rng(n)
    for _ in range(300):
        reps = pd.DataFrame(
            {
                "replication": range(n),
                "gpu_busy_fraction": rng.uniform(0.9, 1.0, n),
                "api_share": rng.uniform(0.0, 0.05, n),
                "ttft_p50_s": rng.exponential(0.05, n),
                "requests_rejected": rng.poisson(1.0, n).astype(float),
                "cost_per_1m_tokens_usd": rng.lognormal(0.0, 2.0, n),
            }
        )
        table = summarize(reps).set_index("metric")
        for metric, (low, high) in (
            ("gpu_busy_fraction", FRACTION),
            ("api_share", FRACTION),
            ("ttft_p50_s", NON_NEGATIVE),
            ("requests_rejected", NON_NEGATIVE),
            ("cost_per_1m_tokens_usd", NON_NEGATIVE),
        ):
            row = table.loc[metric]
            assert row["mean"] == pytest.approx(reps[metric].mean())  # the arithmetic mean
            if row["note"]:
                assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"])
                continue
            assert low <= row["ci_low"] <= row["mean"] <= row["ci_high"] <= high


def test_the_bound_replaces_only_the_side_past_the_range() -> None:
    x = np.array([0.956, 0.99, 0.999])
    mean, lo, hi = t_interval(x)
    assert hi > 1.0
    assert bounded_t_interval(x, FRACTION) == (mean, lo, 1.0)
    y = np.array([0.01, 0.08])
    m, ylo, yhi = t_interval(y)
    assert ylo < 0 and bounded_t_interval(y, NON_NEGATIVE) == (m, 0.0, yhi)


def test_signed_and_unlisted_metrics_keep_the_plain_interval() -> None:
    values = [-120.0, 40.0, 300.0]
    reps = pd.DataFrame(
        {
            "replication": range(3),
            "savings_vs_api_usd_per_month": values,
            "param:arrivals.rate_rps": [0.5, 3.0, 9.0],
            "something_new": [0.2, 0.9, 1.0],
        }
    )
    table = summarize(reps).set_index("metric")
    for metric in reps.columns[1:]:
        mean, lo, hi = t_interval(reps[metric].to_numpy(dtype=float))
        row = table.loc[metric]
        assert (row["mean"], row["ci_low"], row["ci_high"]) == (mean, lo, hi)
        assert row["note"] == ""
    assert table.loc["savings_vs_api_usd_per_month", "ci_low"] < -120


def test_values_outside_the_range_keep_the_plain_interval() -> None:
    # a metric the table calls a fraction but whose data say otherwise: not clipped
    x = np.array([0.9, 1.3, 1.1])
    assert bounded_t_interval(x, FRACTION) == t_interval(x)


def test_no_interval_is_reported_with_its_reason() -> None:
    reps = pd.DataFrame(
        {
            "replication": range(3),
            "ttft_p50_s": [0.25, 0.25, 0.25],  # a trace replayed identically
            "savings_vs_api_usd": [-5.0, -5.0, -5.0],
            "slo_attainment": [np.nan, 0.97, np.nan],
            "api_share": [np.nan, np.nan, np.nan],
            "throughput_rps": [3.0, 3.5, 4.0],
        }
    )
    table = summarize(reps).set_index("metric")
    expected = {
        "ttft_p50_s": (0.25, NOTE_IDENTICAL, 3),
        "savings_vs_api_usd": (-5.0, NOTE_IDENTICAL, 3),
        "slo_attainment": (0.97, NOTE_ONE, 1),
        "throughput_rps": (3.5, "", 3),
    }
    for metric, (mean, note, n) in expected.items():
        row = table.loc[metric]
        assert row["mean"] == pytest.approx(mean) and row["note"] == note and row["n"] == n
        assert math.isnan(row["ci_low"]) == bool(note) == math.isnan(row["ci_high"])
    none = table.loc["api_share"]
    assert none["note"] == NOTE_NONE and math.isnan(none["mean"]) and none["n"] == 0
    assert NOTE_IDENTICAL == "identical in every replication"
    assert NOTE_ONE == "one replication: no interval"


def test_money_puts_the_sign_before_the_dollar() -> None:
    assert number("${:,.0f}", -1165.4) == "-$1,165"
    assert number("${:,.0f}", 1165.4) == "$1,165"
    assert number("${:.3f}", -0.0001) == "$0.000"  # rounds to zero: no sign
    assert number("{:.1%}", -0.007) == "-0.7%"  # not money: as formatted
    assert usd(-1165.0) == "-$1,165" and usd(-56.0) == "-$56.00"
    assert with_ci("${:,.0f}", -1165.0, -2000.0, -300.0) == "-$1,165 (-$2,000 – -$300)"
    assert with_ci("{:.3f} s", 0.25, 0.25, 0.25) == "0.250 s (identical in every replication)"
    assert with_ci("{:.3f} s", 0.25, math.nan, math.nan, NOTE_ONE) == (
        "0.250 s (one replication: no interval)"
    )
    assert _ci_text(-10.0, 20.0) == "95% CI -$10.00 – $20.00"
    assert _ci_text(5.0, 5.0) == NOTE_IDENTICAL and _ci_text(math.nan, math.nan) == NOTE_ONE


def test_cli_headline_shows_the_note_and_signed_money() -> None:
    row = pd.Series({"mean": -1165.0, "ci_low": -2000.0, "ci_high": -300.0, "note": ""})
    assert _fmt(row, "${:,.0f}") == "-$1,165  (95% CI -$2,000 – -$300)"
    row = pd.Series({"mean": 0.25, "ci_low": np.nan, "ci_high": np.nan, "note": NOTE_IDENTICAL})
    assert _fmt(row, "{:.3f} s") == "0.250 s  (identical in every replication)"
    # a real but narrow interval is not printed as if it had zero width
    row = pd.Series({"mean": 11146.86, "ci_low": 11146.73, "ci_high": 11146.99, "note": ""})
    assert _fmt(row, "${:,.0f}") == "$11,147  (95% CI narrower than the last digit shown)"
    assert with_ci("${:,.0f}", 11146.86, 11146.73, 11146.99) == (
        "$11,147 (95% CI narrower than the last digit shown)"
    )


@pytest.fixture(scope="module")
def tiny_run() -> sim.RunResult:
    s = sim.load_scenario(ROOT / "scenarios" / "chat-startup.yaml").with_overrides(
        {"horizon.duration_s": 60, "horizon.warmup_s": 0, "fleet.replicas": 1}
    )
    return sim.run(s, replications=2, seed=3)


def test_run_summary_never_prints_dollar_minus_nor_out_of_range(
    tiny_run: sim.RunResult, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # two replications far apart: the plain t-interval of every cost, latency and share
    # would pass zero (and the shares one); an identical metric prints its note
    reps = tiny_run.replications.copy()
    for metric in reps.columns:
        if metric != "replication" and pd.api.types.is_numeric_dtype(reps[metric]):
            reps[metric] = reps[metric].astype(float)
    spread = {
        "total_cost_usd_per_month": [10.0, 2500.0],
        "cost_per_1m_tokens_usd": [0.01, 3.0],
        "ttft_p50_s": [0.001, 0.2],
        "slo_attainment": [0.5, 1.0],
        "api_share": [0.0, 0.3],
        "gpu_busy_fraction": [0.2, 1.0],
        "interrupted_requests": [0.0, 9.0],
        "e2e_p99_s": [2.0, 2.0],
    }
    for metric, values in spread.items():
        reps[metric] = values
    crafted = dataclasses.replace(tiny_run, replications=reps)
    print_summary(crafted, tiny_run.decision(), tmp_path, 1.0)
    out = capsys.readouterr().out
    assert "$-" not in out
    assert "(95% CI $0 – $" in next(v for v in out.splitlines() if "cost per month" in v)
    assert "(95% CI 0.000 s – " in next(v for v in out.splitlines() if "TTFT p50" in v)
    assert "– 100.0%)" in next(v for v in out.splitlines() if "SLO attainment" in v)
    assert "(95% CI 0.0% – " in next(v for v in out.splitlines() if "API share" in v)
    assert "E2E p99         2.00 s  (identical in every replication)" in out
    table = crafted.summary().set_index("metric")
    for metric, row in table.iterrows():
        bounds = metric_range(str(metric))
        if bounds is not None and row["ci_low"] == row["ci_low"]:
            assert bounds[0] <= row["ci_low"] <= row["ci_high"] <= bounds[1], metric


def test_report_tables_never_print_dollar_minus(tiny_run: sim.RunResult) -> None:
    from sim.report.tables import latency_table, verdict_context

    reps = tiny_run.replications.copy()
    reps["total_cost_usd_per_month"] = [10.0, 2500.0]
    reps["cost_per_1m_tokens_usd"] = [0.01, 3.0]
    reps["slo_attainment"] = [0.6, 1.0]
    crafted = dataclasses.replace(tiny_run, replications=reps)
    table = latency_table(crafted).set_index("quantity")
    text = table.to_string()
    assert "$-" not in text
    assert table.loc["cost per month", "option"].startswith("$1,255 ($0 – $")
    assert table.loc["SLO attainment", "option"].endswith("– 100.0%)")
    options = verdict_context(tiny_run.decision())["options"]
    assert options and not any("$-" in o["cost"] for o in options)
