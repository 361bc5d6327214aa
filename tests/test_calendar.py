"""Monthly figures with a calendar: the window stands for the active hours of a month; what
runs around the clock (reservations, replicas kept up, provisioned throughput, staff) is
billed for all 730 hours. Exact hand arithmetic, by function and through the simulator."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
from scenario_helpers import priced_scenario_data

from sim import Scenario, load_scenario, simulate
from sim.economics import (
    ApiSpec,
    CalendarSpec,
    HiddenCostsSpec,
    ResolvedPricing,
    cost_metrics,
    fleet_bill,
    idle_fleet_usd,
    reserved_fleet_bill,
)
from sim.replication.billing import idle_replicas

WINDOW = (0.0, 3600.0)  # one hour of traffic
# 8 hours on each of 20 days: the hour stands for 160 hours, 570 hours have no traffic
WORKDAYS = CalendarSpec(active_hours_per_day=8, active_days_per_month=20)
ACTIVE_H, IDLE_H = 160.0, 570.0


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "arrival_s": [10.0, 20.0, 30.0, 40.0],
            "class_name": ["chat", "chat", "docs", "docs"],
            "input_tokens": [1000, 2000, 3000, 4000],
            "output_tokens": [100, 200, 300, 400],
            "route": ["fleet", "api", "api", "fleet"],
            "status": ["completed"] * 4,
        }
    )


def _api(**kw: Any) -> ApiSpec:
    return ApiSpec.model_validate({"usd_per_1m_input": 2.0, "usd_per_1m_output": 8.0, **kw})


def _on_demand_bill(replicas: int = 2, tp: int = 1, usd: float = 3.0):  # type: ignore[no-untyped-def]
    p = ResolvedPricing(kind="on_demand", usd_per_gpu_hour=usd)
    return fleet_bill(
        [[0, 3600]] * replicas, tp=tp, pricing=p, window=WINDOW, busy_s=[1800] * replicas
    )


HIDDEN = HiddenCostsSpec(ops_fte=1.0, fte_usd_per_year=87_600.0, monitoring_usd_per_month=73.0)
PER_TOKEN = [(1000 * 2.0 + 100 * 8.0) / 1e6, (2000 * 2.0 + 200 * 8.0) / 1e6]
PER_TOKEN += [(3000 * 2.0 + 300 * 8.0) / 1e6, (4000 * 2.0 + 400 * 8.0) / 1e6]


def test_default_calendar_is_the_window_times_730_hours_exactly() -> None:
    bill = _on_demand_bill()
    api = _api(provisioned={"usd_per_hour": 1.0, "tokens_per_s": 100.0})
    base = cost_metrics(_frame(), window=WINDOW, fleet=bill, hidden=HIDDEN, api=api)
    for cal in (CalendarSpec(), CalendarSpec(active_hours_per_day=24)):
        m = cost_metrics(
            _frame(),
            window=WINDOW,
            fleet=bill,
            hidden=HIDDEN,
            api=api,
            calendar=cal,
            idle_replicas=2,
        )
        assert m == base
    assert base["total_cost_usd_per_month"] == base["total_cost_usd"] * 730.0
    assert base["api_only_cost_usd_per_month"] == base["api_only_cost_usd"] * 730.0
    assert base["savings_vs_api_usd_per_month"] == base["savings_vs_api_usd"] * 730.0


def test_fixed_on_demand_fleet_kept_running_all_month_by_hand() -> None:
    bill = _on_demand_bill(replicas=2, usd=3.0)
    api = _api(provisioned={"usd_per_hour": 1.0, "tokens_per_s": 100.0})
    m = cost_metrics(
        _frame(),
        window=WINDOW,
        fleet=bill,
        hidden=HIDDEN,
        api=api,
        calendar=WORKDAYS,
        idle_replicas=2,
    )
    # window: 2 GPU-h at $3, ops $10/h (87,600 / 8760), monitoring $0.1/h (73 / 730)
    assert m["fleet_cost_usd"] == pytest.approx(6.0 + 10.0 + 0.1, rel=1e-12)
    # month: the GPUs all 730 h (kept running), staff and monitoring all month
    fleet_month = 2 * 3.0 * 730 + 87_600 / 12 + 73.0
    assert m["fleet_cost_usd_per_month"] == pytest.approx(fleet_month, rel=1e-12)
    # API: per-token bills of the routed requests over 160 h, the provisioned fee all 730 h
    routed = PER_TOKEN[1] + PER_TOKEN[2]
    assert m["api_cost_usd"] == pytest.approx(routed + 1.0, rel=1e-12)
    assert m["api_cost_usd_per_month"] == pytest.approx(routed * ACTIVE_H + 730.0, rel=1e-12)
    assert m["total_cost_usd_per_month"] == pytest.approx(
        fleet_month + routed * ACTIVE_H + 730.0, rel=1e-12
    )
    api_only = sum(PER_TOKEN) * ACTIVE_H
    assert m["api_only_cost_usd_per_month"] == pytest.approx(api_only, rel=1e-12)
    assert m["savings_vs_api_usd_per_month"] == pytest.approx(
        api_only - m["total_cost_usd_per_month"], rel=1e-12
    )
    # window metrics keep their meaning
    assert m["total_cost_usd"] == pytest.approx(16.1 + routed + 1.0, rel=1e-12)


def test_fleet_switched_off_outside_the_active_time() -> None:
    bill = _on_demand_bill(replicas=2, tp=4, usd=3.0)
    m = cost_metrics(_frame(), window=WINDOW, fleet=bill, api=_api(), calendar=WORKDAYS)
    # idle_replicas = 0: the fleet costs its window × 160 h; 2 replicas × 4 GPUs × $3
    assert m["fleet_cost_usd_per_month"] == pytest.approx(24.0 * ACTIVE_H, rel=1e-12)
    one = cost_metrics(
        _frame(), window=WINDOW, fleet=bill, api=_api(), calendar=WORKDAYS, idle_replicas=1
    )
    assert one["fleet_cost_usd_per_month"] == pytest.approx(
        24.0 * ACTIVE_H + 4 * 3.0 * IDLE_H, rel=1e-12
    )


def test_reserved_capacity_is_paid_around_the_clock() -> None:
    p = ResolvedPricing(kind="reserved", usd_per_gpu_hour=2.0, overflow_usd_per_gpu_hour=5.0)
    fixed = fleet_bill([[0, 3600]] * 3, tp=2, pricing=p, window=WINDOW, busy_s=[0] * 3)
    fleet_only = _frame().assign(route="fleet")
    m = cost_metrics(fleet_only, window=WINDOW, fleet=fixed, calendar=WORKDAYS, idle_replicas=0)
    # 3 replicas × 2 GPUs × $2 × 730 h, whatever the calendar and the idle replicas
    assert m["fleet_cost_usd_per_month"] == pytest.approx(3 * 2 * 2.0 * 730, rel=1e-12)
    # a reservation of 1 on a fleet that changes size: the second replica is overflow in
    # the window ($5 for 30 minutes), and kept running when idle it is overflow too
    life = [[0, 3600], [0, 1800]]
    p1 = ResolvedPricing(
        kind="reserved", usd_per_gpu_hour=2.0, reserved_replicas=1, overflow_usd_per_gpu_hour=5.0
    )
    dyn = reserved_fleet_bill(life, tp=1, pricing=p1, window=WINDOW, busy_s=[0, 0])
    assert dyn.gpu_usd == pytest.approx(2.0 + 0.5 * 5.0, rel=1e-15)
    m = cost_metrics(fleet_only, window=WINDOW, fleet=dyn, calendar=WORKDAYS, idle_replicas=2)
    assert m["fleet_cost_usd_per_month"] == pytest.approx(
        (2.0 + 0.5 * 5.0) * ACTIVE_H + (2.0 + 5.0) * IDLE_H, rel=1e-12
    )
    assert idle_fleet_usd(dyn, idle_replicas=0, idle_s=IDLE_H * 3600) == pytest.approx(
        2.0 * IDLE_H, rel=1e-15
    )


def test_unknown_overflow_price_needed_only_when_used() -> None:
    p = ResolvedPricing(kind="reserved", usd_per_gpu_hour=2.0)  # no overflow quote
    bill = fleet_bill([[0, 3600]], tp=1, pricing=p, window=WINDOW, busy_s=[0])
    fleet_only = _frame().assign(route="fleet")
    ok = cost_metrics(fleet_only, window=WINDOW, fleet=bill, calendar=WORKDAYS, idle_replicas=1)
    assert ok["fleet_cost_usd_per_month"] == pytest.approx(2.0 * 730, rel=1e-12)
    more = cost_metrics(fleet_only, window=WINDOW, fleet=bill, calendar=WORKDAYS, idle_replicas=2)
    assert math.isnan(more["fleet_cost_usd_per_month"])


def test_per_class_monthly_api_bills() -> None:
    from sim.economics import api_providers

    cheap = ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=1.0)
    providers = api_providers(_api(), {"cheap": cheap}, {"chat": None, "docs": "cheap"})
    m = cost_metrics(_frame(), window=WINDOW, fleet=None, api=providers, calendar=WORKDAYS)
    chat_api = PER_TOKEN[1]
    docs_api = (3000 + 300) / 1e6
    assert m["api_cost_usd_per_month[chat]"] == pytest.approx(chat_api * ACTIVE_H, rel=1e-12)
    assert m["api_cost_usd_per_month[docs]"] == pytest.approx(docs_api * ACTIVE_H, rel=1e-12)
    chat_all = PER_TOKEN[0] + PER_TOKEN[1]
    docs_all = (3300 + 4400) / 1e6
    assert m["api_only_cost_usd_per_month[chat]"] == pytest.approx(chat_all * ACTIVE_H, rel=1e-12)
    assert m["api_only_cost_usd_per_month[docs]"] == pytest.approx(docs_all * ACTIVE_H, rel=1e-12)
    assert m["api_only_cost_usd_per_month"] == pytest.approx(
        m["api_only_cost_usd_per_month[chat]"] + m["api_only_cost_usd_per_month[docs]"],
        rel=1e-12,
    )


# --- through the simulator ---------------------------------------------------------------


def _scenario(**extra: Any) -> Scenario:
    return Scenario.model_validate(
        priced_scenario_data(name="calendar", rate_rps=2.0, duration_s=600, warmup_s=60, **extra)
    )


def test_simulated_default_calendar_is_bit_identical() -> None:
    base = simulate(_scenario(), seed=5).metrics
    explicit = simulate(
        _scenario(calendar={"active_hours_per_day": 24, "active_days_per_month": 730 / 24}),
        seed=5,
    ).metrics
    # every metric bit for bit (NaN where both are NaN)
    pd.testing.assert_series_equal(pd.Series(base), pd.Series(explicit), check_exact=True)


def test_simulated_calendar_by_hand() -> None:
    costs = {"ops_fte": 0.5, "fte_usd_per_year": 175_200.0}
    base = simulate(_scenario(costs=costs), seed=5).metrics
    cal = {"active_hours_per_day": 10, "active_days_per_month": 22, "idle_replicas": 1}
    m = simulate(_scenario(costs=costs, calendar=cal), seed=5).metrics
    window_h = 540 / 3600
    scale = 220 / window_h
    idle_h = 730 - 220
    # the same window, another month: the fleet's window bill over 220 h, the one replica
    # kept up ($3.29) over the other 510 h, staff ($10/h) all month
    assert m["total_cost_usd"] == base["total_cost_usd"]
    assert m["fleet_cost_usd_per_month"] == pytest.approx(
        base["fleet_gpu_usd"] * scale + 3.29 * idle_h + 0.5 * 175_200 / 12, rel=1e-12
    )
    assert m["api_only_cost_usd_per_month"] == pytest.approx(
        base["api_only_cost_usd"] * scale, rel=1e-12
    )
    assert m["total_cost_usd_per_month"] == pytest.approx(
        m["fleet_cost_usd_per_month"] + m["api_cost_usd_per_month"], rel=1e-12
    )


def test_idle_replicas_defaults() -> None:
    fixed = _scenario()
    assert idle_replicas(fixed) == 1
    auto = _scenario(
        fleet={
            "model": "llama-3.1-8b",
            "gpu": "h100-sxm",
            "replicas": 2,
            "autoscaler": {"min_replicas": 0, "max_replicas": 4, "target": 8},
        }
    )
    assert idle_replicas(auto) == 0
    assert idle_replicas(auto.with_overrides({"calendar.idle_replicas": 3})) == 3


def test_scenario_files_with_a_calendar_load() -> None:
    rag = load_scenario("scenarios/rag-private-hybrid.yaml")
    assert not rag.calendar.continuous
    assert rag.calendar.active_hours_per_month < 730
