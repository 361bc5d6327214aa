"""Economics through the whole simulator: closed forms and exact accounting."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scenario_helpers import priced_scenario_data

from sim import Scenario, analytic, run, simulate
from sim.economics import api_bill, resolve_api_prices

Z = 4.0
P_IN, P_OUT = 0.20, 0.60  # USD per 1M tokens
IN, OUT = 500, 100


def _scenario(rate_rps: float = 2.0, **extra: Any) -> Scenario:
    return Scenario.model_validate(
        priced_scenario_data(
            name="econ",
            rate_rps=rate_rps,
            duration_s=4000,
            warmup_s=400,
            prompt={"dist": "fixed", "value": IN},
            output={"dist": "fixed", "value": OUT},
            usd_per_1m_input=P_IN,
            usd_per_1m_output=P_OUT,
            **extra,
        )
    )


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(len(x)))


def test_cost_per_token_and_break_even_match_closed_form() -> None:
    lam = 2.0
    res = run(_scenario(lam), replications=10, seed=7)
    reps = res.replications
    # a fixed fleet's cost per token: hourly cost / tokens served per hour
    theory = analytic.fleet_cost_per_1m_tokens(
        fleet_usd_per_hour=3.29, tokens_per_s=lam * (IN + OUT)
    )
    m, se = _mean_se(reps["cost_per_1m_tokens_usd"].to_numpy())
    assert abs(m - theory) < Z * se, (m, se, theory)
    # break-even: the API bill grows with volume, the fleet's does not
    per_request = (IN * P_IN + OUT * P_OUT) / 1e6
    lam_star = analytic.break_even_rate_rps(
        fleet_usd_per_hour=3.29, api_usd_per_request=per_request
    )
    estimate = lam * reps["fleet_cost_usd"] / reps["api_only_cost_usd"]
    m, se = _mean_se(estimate.to_numpy())
    assert abs(m - lam_star) < Z * se, (m, se, lam_star)
    assert reps["savings_vs_api_usd"].mean() < 0  # 2 req/s is below break-even (~6.4 req/s)


def test_fleet_and_api_bills_balance_exactly() -> None:
    s = _scenario(
        6.0,
        routing={"policy": "spillover", "spillover": {"max_queue": 1}},
        costs={"ops_fte": 0.5, "fte_usd_per_year": 175200, "monitoring_usd_per_month": 730},
        fleet={
            "model": "llama-3.1-8b",
            "gpu": "h100-sxm",
            "replicas": 1,
            "pricing": {"usd_per_gpu_hour": 3.29},
            "engine": {"max_num_seqs": 4},
        },
    )
    out = simulate(s, seed=3)
    m, df = out.metrics, out.requests
    window = 4000 - 400
    arrived = df[(df["arrival_s"] >= 400) & (df["arrival_s"] < 4000)]
    # the drain is billed with the window: from the horizon until the last request that
    # arrived in the window finished on the fleet (its engine finish: the client's finish
    # less the front end's latency)
    on_fleet = arrived[(arrived["route"] == "fleet") & (arrived["status"] == "completed")]
    front = s.fleet.engine.frontend_latency_s
    drain = float(on_fleet["finish_s"].max()) - front - 4000
    assert drain > 0 and m["fleet_drain_s"] == pytest.approx(drain, rel=1e-9)
    # GPU bill: one GPU for the whole window and its drain at the hourly rate; overheads
    # prorated to the window
    assert m["fleet_gpu_hours_paid"] == pytest.approx((window + drain) / 3600)
    assert m["fleet_gpu_usd"] == pytest.approx(3.29 * (window + drain) / 3600)
    assert m["fleet_ops_usd"] == pytest.approx(0.5 * 175200 * window / (8760 * 3600))
    assert m["fleet_other_usd"] == pytest.approx(730 * window / (730 * 3600))
    assert m["fleet_gpu_busy_usd"] + m["fleet_gpu_idle_usd"] == pytest.approx(m["fleet_gpu_usd"])
    assert m["fleet_cost_usd"] == pytest.approx(
        m["fleet_gpu_usd"] + m["fleet_ops_usd"] + m["fleet_other_usd"]
    )
    # API bill: exactly the tokens of the completed requests it served in the window
    api = arrived[(arrived["route"] == "api") & (arrived["status"] == "completed")]
    assert len(api) > 0 and (arrived["route"] == "fleet").sum() > 0
    expected = api_bill(
        api["input_tokens"].to_numpy(),
        api["cached_input_tokens"].to_numpy(),
        api["output_tokens"].to_numpy(),
        prices=resolve_api_prices(s.api),  # type: ignore[arg-type]
    ).sum()
    assert expected == pytest.approx(len(api) * (IN * P_IN + OUT * P_OUT) / 1e6)
    assert m["api_cost_usd"] == pytest.approx(expected)
    assert m["total_cost_usd"] == pytest.approx(m["fleet_cost_usd"] + m["api_cost_usd"])
    # tokens routed to the fleet plus the API are all the tokens offered
    done = arrived[arrived["status"] == "completed"]
    assert len(done) == len(arrived)
    assert m["api_only_cost_usd"] == pytest.approx(len(done) * (IN * P_IN + OUT * P_OUT) / 1e6)
    assert m["savings_vs_api_usd"] == pytest.approx(m["api_only_cost_usd"] - m["total_cost_usd"])


def test_rate_limited_api_traffic_retries_and_fails_with_reason() -> None:
    s = _scenario(
        3.0,
        routing={"policy": "api_only"},
        api={
            "usd_per_1m_input": P_IN,
            "usd_per_1m_output": P_OUT,
            "rate_limits": {"requests_per_min": 120, "max_retries": 2, "backoff_initial_s": 0.5},
            "latency": {
                "ttft_s": {"median": 0.4, "p90": 0.4},
                "output_tokens_per_s": {"median": 100, "p90": 100},
            },
        },
    )
    out = simulate(s, seed=5)
    df = out.requests
    assert (df["route"] == "api").all()
    retried = df["api_attempts"] > 1
    assert retried.any()
    failed = df["status"] == "failed"
    assert failed.any() and (df.loc[failed, "reason"] == "rate_limited").all()
    assert (df.loc[failed, "api_attempts"] == 3).all()
    ok = df[(df["status"] == "completed")]
    # latency includes the backoff: a retried call's TTFT exceeds the API's own 0.4 s
    assert np.allclose(ok.loc[ok["api_attempts"] == 1, "ttft_s"], 0.4)
    assert (ok.loc[ok["api_attempts"] > 1, "ttft_s"] > 0.4).all()
    # failed requests are not billed
    m = out.metrics
    arrived = ok[(ok["arrival_s"] >= 400) & (ok["arrival_s"] < 4000)]
    assert m["api_cost_usd"] == pytest.approx(len(arrived) * (IN * P_IN + OUT * P_OUT) / 1e6)
    # api_only and no request on the fleet: no fleet is paid for, GPU or hidden costs
    assert m["fleet_gpu_usd"] == m["fleet_cost_usd"] == m["fleet_gpu_hours_paid"] == 0.0
    assert m["total_cost_usd"] == m["api_cost_usd"]


def test_same_seed_same_requests_across_policies() -> None:
    # common random numbers: the workload does not depend on the routing policy
    a = simulate(_scenario(4.0), seed=11).requests
    b = simulate(
        _scenario(4.0, routing={"policy": "spillover", "spillover": {"max_queue": 0}}), seed=11
    ).requests
    assert np.array_equal(a["arrival_s"], b["arrival_s"])
    assert np.array_equal(a["input_tokens"], b["input_tokens"])
