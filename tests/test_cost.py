"""Exact cost accounting: billing granularity, proration, owned hardware, API bills, metrics,
and the break-even closed forms."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim.economics.cost
from sim.analytic import break_even_rate_rps, fleet_cost_per_1m_tokens
from sim.catalog import get_gpu
from sim.catalog.prices import ApiPrice
from sim.economics import (
    HOURS_PER_MONTH,
    ApiSpec,
    FleetBill,
    HiddenCostsSpec,
    PricingSpec,
    ProvisionedSpec,
    ResolvedPricing,
    api_bill,
    cost_metrics,
    fleet_bill,
    hidden_costs,
    provisioned_fee,
    resolve_api_prices,
    resolve_gpu_hourly,
)

METRIC_NAMES = {
    "fleet_gpu_hours_paid",
    "fleet_gpu_hours_busy",
    "fleet_gpu_usd",
    "fleet_gpu_busy_usd",
    "fleet_gpu_idle_usd",
    "fleet_drain_s",
    "fleet_ops_usd",
    "fleet_other_usd",
    "fleet_cost_usd",
    "api_cost_usd",
    "total_cost_usd",
    "api_only_cost_usd",
    "savings_vs_api_usd",
    "savings_vs_api_usd_per_month",
    "total_cost_usd_per_month",
    "api_only_cost_usd_per_month",
    "fleet_cost_usd_per_month",
    "api_cost_usd_per_month",
    "cost_per_request_usd",
    "cost_per_1m_input_tokens_usd",
    "cost_per_1m_output_tokens_usd",
    "cost_per_1m_tokens_usd",
    "api_only_cost_per_1m_tokens_usd",
    "savings_vs_api_per_1m_tokens_usd",
    "self_host_cheaper",
}


def _pricing(
    usd: float = 3.6, *, kind: str = "on_demand", inc: float = 1.0, minimum: float = 0.0
) -> ResolvedPricing:
    return ResolvedPricing(
        kind=kind,  # type: ignore[arg-type]
        usd_per_gpu_hour=usd,
        billing_increment_s=inc,
        min_billable_s=minimum,
    )


def _paid_s(lifetime: tuple[float, float], window: tuple[float, float], **kw: float) -> float:
    """Billed seconds of one replica, tp = 1, attributed to ``window``."""
    bill = fleet_bill([lifetime], tp=1, pricing=_pricing(**kw), window=window, busy_s=[0.0])
    return bill.gpu_hours_paid * 3600.0


# --- billing granularity ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("lifetime", "inc", "minimum", "billed_s"),
    [
        ((0.0, 100.5), 1.0, 0.0, 101.0),  # per second, started second billed
        ((0.0, 100.0), 1.0, 0.0, 100.0),
        ((0.0, 61.0), 60.0, 0.0, 120.0),  # per minute
        ((0.0, 60.0), 60.0, 0.0, 60.0),
        ((0.0, 3601.0), 3600.0, 0.0, 7200.0),  # per started hour
        ((0.0, 3600.0), 3600.0, 0.0, 3600.0),
        ((0.1, 3600.1), 3600.0, 0.0, 3600.0),  # float round-off is not an extra hour
        ((0.0, 30.0), 1.0, 60.0, 60.0),  # minimum period
        ((0.0, 90.0), 1.0, 60.0, 90.0),  # above the minimum
        ((0.0, 30.0), 3600.0, 7200.0, 7200.0),  # minimum above one increment
    ],
)
def test_billing_granularity(
    lifetime: tuple[float, float], inc: float, minimum: float, billed_s: float
) -> None:
    window = (min(lifetime[0], 0.0), max(lifetime[1], 1.0))
    assert _paid_s(lifetime, window, inc=inc, minimum=minimum) == pytest.approx(billed_s, rel=1e-12)


def test_zero_lifetime_is_billed_the_minimum_in_the_window_it_starts() -> None:
    assert _paid_s((50.0, 50.0), (0.0, 100.0), minimum=60.0) == 60.0
    assert _paid_s((150.0, 150.0), (0.0, 100.0), minimum=60.0) == 0.0
    assert _paid_s((50.0, 50.0), (0.0, 100.0)) == 0.0


def test_bill_scales_with_tp_and_price() -> None:
    p = _pricing(usd=2.5, inc=3600.0)
    bill = fleet_bill([[0, 1800], [0, 5400]], tp=4, pricing=p, window=(0, 5400), busy_s=[0, 0])
    # 1 h + 2 h billed per replica, 4 GPUs each
    assert bill.gpu_hours_paid == 12.0
    assert bill.gpu_usd == 30.0
    assert (bill.kind, bill.usd_per_gpu_hour, bill.window_s) == ("on_demand", 2.5, 5400.0)


# --- proration into the window ----------------------------------------------------------


def test_proration_by_overlap() -> None:
    # 2 h lifetime, window covers 30 minutes of it: 1800 s of the 7200 s bill
    assert _paid_s((0.0, 7200.0), (3600.0, 5400.0), inc=3600.0) == 1800.0
    # 1.5 h lifetime billed 2 h; half the lifetime in the window -> half the bill
    assert _paid_s((0.0, 5400.0), (0.0, 2700.0), inc=3600.0) == 3600.0
    # no overlap, nothing attributed
    assert _paid_s((0.0, 100.0), (200.0, 300.0), inc=3600.0) == 0.0


def test_consecutive_windows_add_up_to_the_whole_bill() -> None:
    lifetimes = np.array([[10.0, 4000.0], [500.0, 9000.5], [0.0, 30.0]])
    p = _pricing(inc=60.0, minimum=600.0)
    busy = np.zeros(3)
    whole = fleet_bill(lifetimes, tp=2, pricing=p, window=(0.0, 10_000.0), busy_s=busy)
    parts = [
        fleet_bill(lifetimes, tp=2, pricing=p, window=w, busy_s=busy)
        for w in [(0.0, 1000.0), (1000.0, 4567.0), (4567.0, 10_000.0)]
    ]
    # whole bills per minute: 3990 s -> 67 min, 8500.5 s -> 142 min, 30 s -> the 600 s minimum
    assert whole.gpu_hours_paid == pytest.approx(2 * (67 * 60 + 142 * 60 + 600) / 3600, rel=1e-12)
    assert sum(b.gpu_hours_paid for b in parts) == pytest.approx(whole.gpu_hours_paid, rel=1e-12)


def test_reserved_is_paid_for_the_whole_window() -> None:
    p = _pricing(usd=2.0, kind="reserved", inc=3600.0)
    bill = fleet_bill(
        [[0, 10], [500, 600], [5000, 6000]], tp=2, pricing=p, window=(0, 1800), busy_s=[5, 50, 0]
    )
    assert bill.gpu_hours_paid == 3 * 2 * 0.5
    assert bill.gpu_usd == 6.0
    assert bill.gpu_hours_busy == pytest.approx(2 * 55 / 3600, rel=1e-12)


def test_busy_and_idle_split_the_bill() -> None:
    p = _pricing(usd=3.6)
    bill = fleet_bill([[0, 100], [0, 100]], tp=1, pricing=p, window=(0, 100), busy_s=[25, 75])
    assert bill.gpu_hours_paid == pytest.approx(200 / 3600, rel=1e-12)
    assert bill.gpu_usd == pytest.approx(0.2, rel=1e-12)
    assert bill.gpu_busy_usd == pytest.approx(0.1, rel=1e-12)
    assert bill.gpu_idle_usd == pytest.approx(0.1, rel=1e-12)
    assert bill.gpu_busy_usd + bill.gpu_idle_usd == pytest.approx(bill.gpu_usd, rel=1e-15)


def test_fleet_bill_rejects_bad_input() -> None:
    p = _pricing()
    with pytest.raises(ValueError, match="shape"):
        fleet_bill([0, 10], tp=1, pricing=p, window=(0, 10), busy_s=[0])
    with pytest.raises(ValueError, match="busy_s must have shape"):
        fleet_bill([[0, 10]], tp=1, pricing=p, window=(0, 10), busy_s=[0, 0])
    with pytest.raises(ValueError, match="end >= start"):
        fleet_bill([[10, 0]], tp=1, pricing=p, window=(0, 10), busy_s=[0])
    with pytest.raises(ValueError, match="window"):
        fleet_bill([[0, 10]], tp=1, pricing=p, window=(10, 10), busy_s=[0])
    with pytest.raises(ValueError, match="busy_s must lie"):
        fleet_bill([[0, 10]], tp=1, pricing=p, window=(5, 20), busy_s=[6])
    with pytest.raises(ValueError, match="tp"):
        fleet_bill([[0, 10]], tp=0, pricing=p, window=(0, 10), busy_s=[0])
    with pytest.raises(ValueError, match="billing_increment_s"):
        _pricing(inc=0.0)


# --- resolving the hourly price ---------------------------------------------------------


def test_owned_hourly_from_capex_power_hosting() -> None:
    spec = PricingSpec(
        kind="owned",
        capex_usd_per_gpu=30_000.0,
        life_years=3.0,
        pue=1.4,
        usd_per_kwh=0.12,
        hosting_usd_per_gpu_month=146.0,
    )
    r = resolve_gpu_hourly(spec, get_gpu("h100-sxm"))  # TDP 700 W
    capex = 30_000.0 / (3.0 * 8760.0)
    power = 700.0 * 1.4 * 0.12 / 1000.0
    hosting = 146.0 * 12.0 / 8760.0
    assert r.kind == "owned"
    assert r.breakdown["capex_usd_per_gpu_hour"] == pytest.approx(capex, rel=1e-15)
    assert r.breakdown["power_usd_per_gpu_hour"] == pytest.approx(0.1176, rel=1e-15)
    assert r.breakdown["hosting_usd_per_gpu_hour"] == pytest.approx(0.2, rel=1e-15)
    assert r.usd_per_gpu_hour == pytest.approx(capex + power + hosting, rel=1e-15)
    assert r.usd_per_gpu_hour == sum(r.breakdown.values())
    # an explicit average draw replaces the TDP
    lower = resolve_gpu_hourly(spec.model_copy(update={"power_w_per_gpu": 350.0}), get_gpu("h100"))
    assert lower.breakdown["power_usd_per_gpu_hour"] == pytest.approx(power / 2, rel=1e-15)
    # owned hardware is paid for the whole window, whatever the lifetimes
    bill = fleet_bill([[100, 200]], tp=8, pricing=r, window=(0, 3600), busy_s=[50])
    assert bill.gpu_hours_paid == 8.0
    assert bill.gpu_usd == pytest.approx(8 * r.usd_per_gpu_hour, rel=1e-15)


def test_owned_rejects_an_hourly_price() -> None:
    spec = PricingSpec(kind="owned", capex_usd_per_gpu=1.0, usd_per_gpu_hour=2.0)
    with pytest.raises(ValueError, match="not used for owned"):
        resolve_gpu_hourly(spec, get_gpu("h100-sxm"))


def test_resolve_defaults_to_catalogue_on_demand() -> None:
    r = resolve_gpu_hourly(None, get_gpu("h100-sxm"))
    assert (r.kind, r.usd_per_gpu_hour, r.billing_increment_s, r.min_billable_s) == (
        "on_demand",
        2.95,
        1.0,
        0.0,
    )
    assert "Nebius" in r.source and "skypilot" in r.source
    assert r.date == "snapshot read 2026-12-01"
    assert dict(r.breakdown) == {}
    # reserved: the catalogue's 1-year committed-use quote
    reserved = resolve_gpu_hourly(PricingSpec(kind="reserved"), get_gpu("l4"))
    assert reserved.usd_per_gpu_hour == 0.4453
    with pytest.raises(KeyError, match="no reserved price for GPU 'h200-sxm'"):
        resolve_gpu_hourly(PricingSpec(kind="reserved"), get_gpu("h200"))


def test_resolve_explicit_price_and_billing() -> None:
    spec = PricingSpec(
        kind="spot",
        usd_per_gpu_hour=1.5,
        billing_increment_s=60.0,
        min_billable_s=600.0,
        price_source="my quote",
        price_date="2026-01",
    )
    r = resolve_gpu_hourly(spec, get_gpu("l4"))
    assert (r.kind, r.usd_per_gpu_hour, r.billing_increment_s, r.min_billable_s) == (
        "spot",
        1.5,
        60.0,
        600.0,
    )
    assert (r.source, r.date) == ("my quote", "2026-01")


# --- hidden costs -----------------------------------------------------------------------


def test_hidden_costs_prorated() -> None:
    spec = HiddenCostsSpec(
        ops_fte=1.5,
        fte_usd_per_year=200_000.0,
        monitoring_usd_per_month=500.0,
        storage_egress_usd_per_month=230.0,
        model_updates_per_year=4.0,
        usd_per_model_update=2190.0,
    )
    day = 86_400.0
    out = hidden_costs(spec, day)
    assert out["ops_usd"] == pytest.approx(1.5 * 200_000.0 * 24 / 8760, rel=1e-15)
    assert out["other_usd"] == pytest.approx(730.0 * 24 / 730 + 4 * 2190.0 * 24 / 8760, rel=1e-15)
    month = hidden_costs(spec, HOURS_PER_MONTH * 3600.0)
    assert month["other_usd"] == pytest.approx(730.0 + 4 * 2190.0 / 12, rel=1e-15)
    assert hidden_costs(HiddenCostsSpec(), day) == {"ops_usd": 0.0, "other_usd": 0.0}
    with pytest.raises(ValueError):
        hidden_costs(spec, -1.0)


# --- the API bill -----------------------------------------------------------------------

PRICES = ApiPrice("test/model", 2.0, 8.0, 0.5, "test", "2026")


def test_api_bill_by_hand() -> None:
    usd = api_bill(
        [1000, 2000, 3000, 4000],
        [0, 1000, 0, 4000],
        [100, 200, 300, 400],
        prices=PRICES,
        batch=[False, True, False, True],
        batch_discount=0.5,
        provisioned=[False, False, True, False],
    )
    expected = [
        (1000 * 2.0 + 100 * 8.0) / 1e6,
        (1000 * 2.0 + 1000 * 0.5 + 200 * 8.0) / 1e6 * 0.5,
        0.0,
        (4000 * 0.5 + 400 * 8.0) / 1e6 * 0.5,
    ]
    np.testing.assert_allclose(usd, expected, rtol=1e-15)
    # no cached price listed: cached tokens cost the input price
    no_cache = ApiPrice("t/m", 2.0, 8.0, None, "", "")
    assert api_bill([1000], [1000], [0], prices=no_cache)[0] == pytest.approx(0.002, rel=1e-15)


def test_api_bill_rejects_bad_tokens() -> None:
    with pytest.raises(ValueError, match="cached_input_tokens <= input_tokens"):
        api_bill([10], [11], [0], prices=PRICES)
    with pytest.raises(ValueError, match="same shape"):
        api_bill([10, 10], [0], [0], prices=PRICES)
    with pytest.raises(ValueError, match="batch_discount"):
        api_bill([10], [0], [0], prices=PRICES, batch=[True], batch_discount=1.0)


def test_resolve_api_prices_overrides() -> None:
    base = resolve_api_prices(ApiSpec(model="openai/gpt-4o-mini"))
    assert (base.key, base.usd_per_1m_input, base.usd_per_1m_output) == (
        "openai/gpt-4o-mini",
        0.15,
        0.6,
    )
    assert base.usd_per_1m_cached_input == 0.075
    over = resolve_api_prices(
        ApiSpec(model="gpt-4o-mini", usd_per_1m_input=0.2, price_source="deal", price_date="d")
    )
    assert (over.usd_per_1m_input, over.usd_per_1m_output, over.usd_per_1m_cached_input) == (
        0.2,
        0.6,
        0.075,
    )
    assert (over.source, over.quote_date) == ("deal", "d")
    custom = resolve_api_prices(ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=3.0))
    assert (custom.key, custom.usd_per_1m_cached_input, custom.source) == (
        "custom",
        1.0,
        "scenario",
    )
    # catalogue entry without a cached price: defaults to the input price
    together = resolve_api_prices(ApiSpec(model="together_ai/Llama-3.3-70B-Instruct-Turbo"))
    assert together.usd_per_1m_cached_input == together.usd_per_1m_input == 1.04


def test_provisioned_fee() -> None:
    prov = ProvisionedSpec(usd_per_hour=20.0, tokens_per_s=5000)
    assert provisioned_fee(prov, 5400.0) == 30.0
    assert provisioned_fee(ApiSpec(model="gpt-4o", provisioned=prov), 3600.0) == 20.0
    assert provisioned_fee(ApiSpec(model="gpt-4o"), 3600.0) == 0.0
    assert provisioned_fee(None, 3600.0) == 0.0


# --- cost metrics on a hand-made frame --------------------------------------------------

WINDOW = (100.0, 3700.0)  # one hour


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "arrival_s": [50.0, 150.0, 200.0, 300.0, 400.0, 500.0, 600.0, 3800.0],
            "class_name": ["chat", "chat", "chat", "bulk", "chat", "chat", "bulk", "chat"],
            "input_tokens": [9999, 1000, 2000, 4000, 1000, 3000, 1000, 9999],
            "output_tokens": [9999, 100, 200, 400, 100, 300, 100, 9999],
            "route": ["fleet", "fleet", "api", "api", "api", "fleet", "fleet", "api"],
            "status": [
                "completed",  # arrived before the window: not counted
                "completed",
                "completed",
                "completed",
                "completed",
                "rejected",  # not counted
                "completed",
                "completed",  # arrived after the window: not counted
            ],
            "finish_s": [60.0, 160.0, 210.0, 330.0, 420.0, np.nan, 650.0, 3810.0],
            "cached_input_tokens": [0, 0, 1000, 0, 0, 0, 0, 0],
            "api_provisioned": [False, False, False, False, True, False, False, False],
        }
    )


def _api(**kw: object) -> ApiSpec:
    fields: dict[str, object] = {
        "usd_per_1m_input": 2.0,
        "usd_per_1m_output": 8.0,
        "usd_per_1m_cached_input": 0.5,
        "batch_discount": 0.5,
        "provisioned": {"usd_per_hour": 1.0, "tokens_per_s": 100.0},
    }
    return ApiSpec.model_validate({**fields, **kw})


def _bill() -> FleetBill:
    p = _pricing(usd=3.0)
    return fleet_bill([[0, 3700], [100, 1900]], tp=2, pricing=p, window=WINDOW, busy_s=[900, 900])


def test_cost_metrics_by_hand() -> None:
    hidden = HiddenCostsSpec(ops_fte=1.0, fte_usd_per_year=87_600.0, monitoring_usd_per_month=73.0)
    bill = _bill()
    m = cost_metrics(
        _frame(), window=WINDOW, fleet=bill, hidden=hidden, api=_api(), api_batch={"bulk": True}
    )
    assert set(m) == METRIC_NAMES
    # fleet: replica 1 paid 3700 s x 3600/3700 = 3600 s, replica 2 1800 s; 2 GPUs each
    assert m["fleet_gpu_hours_paid"] == pytest.approx(2 * 5400 / 3600, rel=1e-12)
    assert m["fleet_gpu_usd"] == pytest.approx(9.0, rel=1e-12)
    assert m["fleet_gpu_hours_busy"] == pytest.approx(1.0, rel=1e-12)
    assert m["fleet_gpu_busy_usd"] == pytest.approx(3.0, rel=1e-12)
    assert m["fleet_gpu_idle_usd"] == pytest.approx(6.0, rel=1e-12)
    assert m["fleet_ops_usd"] == pytest.approx(10.0, rel=1e-12)  # 87,600 / 8760 per hour
    assert m["fleet_other_usd"] == pytest.approx(0.1, rel=1e-12)  # 73 / 730 per hour
    assert m["fleet_cost_usd"] == m["fleet_gpu_usd"] + m["fleet_ops_usd"] + m["fleet_other_usd"]
    # API: the counted requests are rows 1, 2, 3, 4 and 6
    req2 = (1000 * 2.0 + 1000 * 0.5 + 200 * 8.0) / 1e6  # chat, 1000 cached
    req3 = (4000 * 2.0 + 400 * 8.0) / 1e6 * 0.5  # bulk: batch API
    req4 = 0.0  # provisioned
    fee = 1.0  # one hour of provisioned throughput
    assert m["api_cost_usd"] == pytest.approx(req2 + req3 + req4 + fee, rel=1e-12)
    assert m["total_cost_usd"] == m["fleet_cost_usd"] + m["api_cost_usd"]
    # API only: every counted request pay-per-token, whatever its route
    req1 = (1000 * 2.0 + 100 * 8.0) / 1e6
    req4_payg = (1000 * 2.0 + 100 * 8.0) / 1e6
    req6 = (1000 * 2.0 + 100 * 8.0) / 1e6 * 0.5  # bulk
    api_only = req1 + req2 + req3 + req4_payg + req6
    assert m["api_only_cost_usd"] == pytest.approx(api_only, rel=1e-12)
    assert m["savings_vs_api_usd"] == m["api_only_cost_usd"] - m["total_cost_usd"]
    assert m["self_host_cheaper"] == 0.0
    # per month: the window is one hour
    assert m["total_cost_usd_per_month"] == pytest.approx(730 * m["total_cost_usd"], rel=1e-12)
    assert m["api_only_cost_usd_per_month"] == pytest.approx(730 * api_only, rel=1e-12)
    assert m["savings_vs_api_usd_per_month"] == pytest.approx(
        730 * m["savings_vs_api_usd"], rel=1e-12
    )
    # the split of the monthly total (the default calendar: the window stands for all time)
    assert m["fleet_cost_usd_per_month"] == pytest.approx(730 * m["fleet_cost_usd"], rel=1e-12)
    assert m["api_cost_usd_per_month"] == pytest.approx(730 * m["api_cost_usd"], rel=1e-12)
    assert m["fleet_drain_s"] == 0.0
    # unit costs over 5 requests, 9000 input and 900 output tokens
    total = m["total_cost_usd"]
    assert m["cost_per_request_usd"] == pytest.approx(total / 5, rel=1e-12)
    assert m["cost_per_1m_input_tokens_usd"] == pytest.approx(total / 9000 * 1e6, rel=1e-12)
    assert m["cost_per_1m_output_tokens_usd"] == pytest.approx(total / 900 * 1e6, rel=1e-12)
    assert m["cost_per_1m_tokens_usd"] == pytest.approx(total / 9900 * 1e6, rel=1e-12)
    assert m["api_only_cost_per_1m_tokens_usd"] == pytest.approx(api_only / 9900 * 1e6, rel=1e-12)
    assert m["savings_vs_api_per_1m_tokens_usd"] == pytest.approx(
        (api_only - total) / 9900 * 1e6, rel=1e-12
    )


def test_self_host_cheaper_when_savings_positive() -> None:
    cheap = fleet_bill([[0, 3600]], tp=1, pricing=_pricing(usd=1e-6), window=WINDOW, busy_s=[0])
    frame = _frame().assign(route="fleet")
    m = cost_metrics(frame, window=WINDOW, fleet=cheap, api=_api(provisioned=None))
    assert m["savings_vs_api_usd"] > 0
    assert m["self_host_cheaper"] == 1.0
    assert m["api_cost_usd"] == 0.0  # nothing routed to the API, no provisioned fee


def test_per_month_scaling_with_window_length() -> None:
    frame = _frame()
    for span in (1800.0, 7200.0):
        window = (100.0, 100.0 + span)
        bill = fleet_bill([[0, 100 + span]], tp=1, pricing=_pricing(), window=window, busy_s=[0])
        m = cost_metrics(frame, window=window, fleet=bill, api=_api())
        scale = HOURS_PER_MONTH * 3600.0 / span
        assert m["total_cost_usd_per_month"] == pytest.approx(m["total_cost_usd"] * scale)
        assert m["savings_vs_api_usd_per_month"] == pytest.approx(m["savings_vs_api_usd"] * scale)


def test_without_api_the_comparison_is_nan() -> None:
    frame = _frame().assign(route="fleet").drop(columns=["cached_input_tokens", "api_provisioned"])
    m = cost_metrics(frame, window=WINDOW, fleet=_bill())
    assert set(m) == METRIC_NAMES
    assert m["api_cost_usd"] == 0.0
    assert m["total_cost_usd"] == m["fleet_cost_usd"] == m["fleet_gpu_usd"]
    for name in (
        "api_only_cost_usd",
        "savings_vs_api_usd",
        "api_only_cost_usd_per_month",
        "savings_vs_api_per_1m_tokens_usd",
        "self_host_cheaper",
    ):
        assert math.isnan(m[name]), name
    with pytest.raises(ValueError, match="no 'api'"):
        cost_metrics(_frame(), window=WINDOW, fleet=_bill())


def test_cost_metrics_checks_the_window_and_empty_frames() -> None:
    with pytest.raises(ValueError, match="window"):
        cost_metrics(_frame(), window=(0.0, 1800.0), fleet=_bill(), api=_api())
    empty = _frame().iloc[:0]
    m = cost_metrics(empty, window=WINDOW, fleet=_bill(), api=_api())
    assert m["api_only_cost_usd"] == 0.0
    assert math.isnan(m["cost_per_request_usd"]) and math.isnan(m["cost_per_1m_tokens_usd"])
    # no fleet at all: everything through the API
    m = cost_metrics(_frame(), window=WINDOW, fleet=None, api=_api())
    assert m["fleet_cost_usd"] == 0.0 and m["total_cost_usd"] == m["api_cost_usd"]


def test_categorical_columns_as_simulate_builds_them() -> None:
    frame = _frame()
    for col, cats in (("route", ["fleet", "api"]), ("status", ["completed", "rejected", "failed"])):
        frame[col] = pd.Categorical(frame[col], categories=cats)
    frame["class_name"] = pd.Categorical(frame["class_name"])
    plain = cost_metrics(
        _frame(), window=WINDOW, fleet=_bill(), api=_api(), api_batch={"bulk": True}
    )
    cat = cost_metrics(frame, window=WINDOW, fleet=_bill(), api=_api(), api_batch={"bulk": True})
    assert cat == plain


# --- property: the components always add up ---------------------------------------------

lifetimes = st.lists(
    st.tuples(st.floats(0, 10_000, allow_nan=False), st.floats(0, 10_000, allow_nan=False)).map(
        sorted
    ),
    min_size=0,
    max_size=6,
)


@settings(max_examples=200, deadline=None)
@given(
    lives=lifetimes,
    w=st.tuples(st.floats(0, 9_000), st.floats(1, 5_000)),
    usd=st.floats(0, 100),
    kind=st.sampled_from(["on_demand", "spot", "reserved", "owned"]),
    inc=st.sampled_from([1.0, 60.0, 3600.0]),
    minimum=st.sampled_from([0.0, 60.0, 600.0]),
    tp=st.integers(1, 8),
    busy_frac=st.floats(0, 1),
    ops=st.floats(0, 3),
)
def test_components_sum_to_total(
    lives: list[list[float]],
    w: tuple[float, float],
    usd: float,
    kind: str,
    inc: float,
    minimum: float,
    tp: int,
    busy_frac: float,
    ops: float,
) -> None:
    window = (w[0], w[0] + w[1])
    life = np.array(lives, dtype=float).reshape(-1, 2)
    overlap = np.clip(
        np.minimum(life[:, 1], window[1]) - np.maximum(life[:, 0], window[0]), 0, None
    )
    p = _pricing(usd=usd, kind=kind, inc=inc, minimum=minimum)
    bill = fleet_bill(life, tp=tp, pricing=p, window=window, busy_s=overlap * busy_frac)
    scale = max(bill.gpu_usd, 1e-300)
    assert bill.gpu_busy_usd >= 0 and bill.gpu_idle_usd >= -1e-12 * scale
    assert bill.gpu_busy_usd + bill.gpu_idle_usd == pytest.approx(bill.gpu_usd, rel=1e-12, abs=0)
    assert bill.gpu_hours_busy <= bill.gpu_hours_paid * (1 + 1e-9) + 1e-12
    assert bill.gpu_usd == bill.gpu_hours_paid * usd
    frame = _frame().assign(arrival_s=np.linspace(window[0], window[1], 8, endpoint=False))
    m = cost_metrics(
        frame,
        window=window,
        fleet=bill,
        hidden=HiddenCostsSpec(ops_fte=ops, monitoring_usd_per_month=100.0),
        api=_api(),
        api_batch={"bulk": True},
    )
    assert m["fleet_cost_usd"] == m["fleet_gpu_usd"] + m["fleet_ops_usd"] + m["fleet_other_usd"]
    assert m["total_cost_usd"] == m["fleet_cost_usd"] + m["api_cost_usd"]
    assert m["savings_vs_api_usd"] == m["api_only_cost_usd"] - m["total_cost_usd"]
    assert m["self_host_cheaper"] == float(m["savings_vs_api_usd"] > 0)


# --- break-even closed forms ------------------------------------------------------------


def test_break_even_rate_closed_form() -> None:
    lam = break_even_rate_rps(fleet_usd_per_hour=3.29, api_usd_per_request=0.001)
    assert lam == pytest.approx(3.29 / 3.6, rel=1e-15)
    assert round(lam, 3) == 0.914
    assert break_even_rate_rps(fleet_usd_per_hour=0.0, api_usd_per_request=0.01) == 0.0
    with pytest.raises(ValueError, match="api_usd_per_request"):
        break_even_rate_rps(fleet_usd_per_hour=1.0, api_usd_per_request=0.0)
    with pytest.raises(ValueError, match="fleet_usd_per_hour"):
        break_even_rate_rps(fleet_usd_per_hour=-1.0, api_usd_per_request=0.01)


def test_break_even_agrees_with_cost_metrics() -> None:
    # one H100 at $3.29/h for an hour; every request costs exactly $0.001 at the API
    # (1000 input tokens at $1/M): λ* = 0.9139 req/s, i.e. 3290 requests in the hour
    window = (0.0, 3600.0)
    bill = fleet_bill([[0, 3600]], tp=1, pricing=_pricing(usd=3.29), window=window, busy_s=[0])
    api = ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=0.0)
    lam = break_even_rate_rps(fleet_usd_per_hour=3.29, api_usd_per_request=0.001)
    for n, cheaper in ((3289, 0.0), (3291, 1.0)):
        frame = pd.DataFrame(
            {
                "arrival_s": np.linspace(0, 3600, n, endpoint=False),
                "class_name": "chat",
                "input_tokens": 1000,
                "output_tokens": 0,
                "route": "fleet",
                "status": "completed",
            }
        )
        m = cost_metrics(frame, window=window, fleet=bill, api=api)
        assert m["self_host_cheaper"] == cheaper
        assert (n / 3600 > lam) == bool(cheaper)


def test_fleet_cost_per_1m_tokens() -> None:
    assert fleet_cost_per_1m_tokens(fleet_usd_per_hour=3.6, tokens_per_s=2000.0) == pytest.approx(
        0.5, rel=1e-15
    )
    # consistent with the simulator's blended figure for a fully loaded fleet
    window = (0.0, 3600.0)
    bill = fleet_bill([[0, 3600]], tp=1, pricing=_pricing(usd=3.6), window=window, busy_s=[3600])
    frame = pd.DataFrame(
        {
            "arrival_s": [1.0, 2.0],
            "class_name": "chat",
            "input_tokens": [3_000_000, 2_000_000],
            "output_tokens": [1_000_000, 1_200_000],
            "route": "fleet",
            "status": "completed",
        }
    )
    m = cost_metrics(frame, window=window, fleet=bill)
    tokens_per_s = 7_200_000 / 3600
    assert m["cost_per_1m_tokens_usd"] == pytest.approx(
        fleet_cost_per_1m_tokens(fleet_usd_per_hour=3.6, tokens_per_s=tokens_per_s), rel=1e-12
    )
    with pytest.raises(ValueError, match="tokens_per_s"):
        fleet_cost_per_1m_tokens(fleet_usd_per_hour=1.0, tokens_per_s=0.0)


def test_docstring_examples() -> None:
    result = doctest.testmod(sim.economics.cost, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted >= 10
