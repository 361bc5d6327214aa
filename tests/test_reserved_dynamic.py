"""Fleet billing beyond a fixed window: the drain after the window, and reserved (or owned)
capacity on a fleet that changes size — exact hand arithmetic, by function and through the
simulator."""

from __future__ import annotations

import doctest
import math
from typing import Any

import numpy as np
import pytest
from scenario_helpers import priced_scenario_data

import sim.economics.gpu_bill
from sim import Scenario, simulate
from sim.catalog import get_gpu
from sim.catalog.prices import default_gpu_price
from sim.economics import (
    PricingSpec,
    ResolvedPricing,
    fleet_bill,
    peak_replicas,
    reserved_fleet_bill,
    resolve_gpu_hourly,
)


def _reserved(
    usd: float = 2.0, *, over: float = 5.0, level: int | None = None, kind: str = "reserved"
) -> ResolvedPricing:
    return ResolvedPricing(
        kind=kind,  # type: ignore[arg-type]
        usd_per_gpu_hour=usd,
        reserved_replicas=level,
        overflow_usd_per_gpu_hour=over,
    )


# --- the drain, by function -------------------------------------------------------------


def test_drain_is_billed_like_the_window() -> None:
    p = ResolvedPricing(kind="on_demand", usd_per_gpu_hour=3.6)
    # two replicas alive from 0 to 4000 s; the window is [400, 3600), the drain 150 s
    bill = fleet_bill(
        [[0, 4000], [0, 4000]],
        tp=2,
        pricing=p,
        window=(400, 3600),
        busy_s=[3350, 100],
        drain_s=150,
    )
    assert bill.gpu_hours_paid == pytest.approx(2 * 2 * 3350 / 3600, rel=1e-15)
    assert bill.gpu_usd == pytest.approx(2 * 2 * 3350 / 3600 * 3.6, rel=1e-15)
    assert bill.gpu_hours_busy == pytest.approx(2 * 3450 / 3600, rel=1e-15)
    assert (bill.window_s, bill.drain_s, bill.tp, bill.reserved_gpus) == (3200.0, 150.0, 2, 0.0)
    # a lifetime that ends during the drain is billed until it ends
    short = fleet_bill([[0, 3650]], tp=1, pricing=p, window=(400, 3600), busy_s=[0], drain_s=150)
    assert short.gpu_hours_paid == pytest.approx(3250 / 3600, rel=1e-15)
    # busy time beyond the window and its drain is an error
    with pytest.raises(ValueError, match="busy_s must lie"):
        fleet_bill([[0, 4000]], tp=1, pricing=p, window=(400, 3600), busy_s=[3400], drain_s=150)
    with pytest.raises(ValueError, match="drain_s"):
        fleet_bill([[0, 4000]], tp=1, pricing=p, window=(400, 3600), busy_s=[0], drain_s=-1)


def test_reserved_fixed_fleet_covers_the_drain() -> None:
    # reserved capacity is paid around the clock: the drain costs nothing more
    p = _reserved(usd=2.0)
    bill = fleet_bill(
        [[0, 10], [0, 10]], tp=1, pricing=p, window=(0, 3600), busy_s=[0, 0], drain_s=600
    )
    assert bill.gpu_hours_paid == 2.0 and bill.gpu_usd == 4.0
    assert bill.reserved_gpus == 2.0 and bill.drain_s == 600.0


# --- reserved capacity on a fleet that changes size, by function -----------------------


def test_peak_replicas_counts_hand_overs_once() -> None:
    life = [[0, 100], [100, 200], [50, 150], [150, 150]]
    # [0,100) and [50,150) overlap; [100,200) takes over from the first at 100
    assert peak_replicas(life) == 2
    assert peak_replicas([[0, 10], [0, 10], [0, 10]]) == 3


def test_reservation_defaults_to_the_peak() -> None:
    # one replica all along, a second from 600 to 2400 s, a third from 900 to 1800 s
    life = [[0, 3600], [600, 2400], [900, 1800]]
    bill = reserved_fleet_bill(
        life, tp=2, pricing=_reserved(over=math.nan), window=(0, 3600), busy_s=[0, 0, 0]
    )
    # R = 3 replicas × 2 GPUs for the hour, at $2: no overflow, so no overflow price needed
    assert bill.gpu_hours_paid == 6.0
    assert bill.gpu_usd == 12.0
    assert bill.reserved_gpus == 6.0
    # the old rule billed every lifetime for the whole window: 3 rows × 2 GPUs × 1 h
    # — the same here by coincidence; with a replacement lifetime it differs:
    more = reserved_fleet_bill(
        [*life, [2400, 3600]],
        tp=2,
        pricing=_reserved(over=math.nan),
        window=(0, 3600),
        busy_s=[0, 0, 0, 0],
    )
    assert more.gpu_hours_paid == 6.0  # still 3 at most at once, not 4 rows


def test_overflow_above_the_reservation_by_hand() -> None:
    life = [[0, 3600], [600, 2400], [900, 1800]]
    busy = [1800.0, 900.0, 450.0]
    bill = reserved_fleet_bill(
        life, tp=2, pricing=_reserved(2.0, over=5.0, level=1), window=(0, 3600), busy_s=busy
    )
    # alive: 1 on [0,600), 2 on [600,900), 3 on [900,1800), 2 on [1800,2400), 1 after;
    # above 1: 300 + 2·900 + 600 = 2700 replica-s
    above_h = 2700 / 3600
    assert bill.gpu_hours_paid == pytest.approx(2 * (1 + above_h), rel=1e-15)
    assert bill.gpu_usd == pytest.approx(2 * (1 * 2.0 + above_h * 5.0), rel=1e-15)
    assert bill.gpu_hours_busy == pytest.approx(2 * 3150 / 3600, rel=1e-15)
    assert bill.gpu_busy_usd == pytest.approx(bill.gpu_usd * 3150 / (3600 + 2700), rel=1e-12)
    assert bill.reserved_gpus == 2.0 and bill.extra_usd_per_gpu_hour == 5.0
    # a reservation of 2: only the third replica's 900 s are above it
    two = reserved_fleet_bill(
        life, tp=2, pricing=_reserved(2.0, over=5.0, level=2), window=(0, 3600), busy_s=busy
    )
    assert two.gpu_usd == pytest.approx(2 * (2 * 2.0 + 0.25 * 5.0), rel=1e-15)
    # the window cuts the overflow: [1000, 2000) sees 800 s of 3 and 200 s of 2 replicas
    cut = reserved_fleet_bill(
        life, tp=1, pricing=_reserved(2.0, over=5.0, level=1), window=(1000, 2000), busy_s=[0, 0, 0]
    )
    assert cut.gpu_hours_paid == pytest.approx((1000 + 2 * 800 + 200) / 3600, rel=1e-15)
    # the drain: overflow after the window is billed, the reservation covers it
    drained = reserved_fleet_bill(
        life,
        tp=1,
        pricing=_reserved(2.0, over=5.0, level=1),
        window=(0, 1800),
        busy_s=[0, 0, 0],
        drain_s=300,
    )
    # above 1 in [0, 2100): 300 + 2·900 + 300 = 2400 replica-s
    assert drained.gpu_usd == pytest.approx(1800 / 3600 * 2.0 + 2400 / 3600 * 5.0, rel=1e-15)


def test_overflow_without_a_price_is_nan() -> None:
    life = [[0, 3600], [600, 2400]]
    bill = reserved_fleet_bill(
        life, tp=1, pricing=_reserved(over=math.nan, level=1), window=(0, 3600), busy_s=[0, 0]
    )
    assert math.isnan(bill.gpu_usd) and math.isnan(bill.gpu_busy_usd)
    assert bill.gpu_hours_paid == pytest.approx(1.5, rel=1e-15)  # the time is known


def test_owned_fleet_that_changes_size_is_billed_like_a_reservation() -> None:
    life = [[0, 3600], [600, 2400]]
    bill = reserved_fleet_bill(
        life, tp=1, pricing=_reserved(1.25, kind="owned"), window=(0, 3600), busy_s=[0, 0]
    )
    assert (bill.gpu_hours_paid, bill.gpu_usd, bill.kind) == (2.0, 2.5, "owned")


def test_reserved_bill_rejects_rented_pricing() -> None:
    p = ResolvedPricing(kind="on_demand", usd_per_gpu_hour=1.0)
    with pytest.raises(ValueError, match="reserved or owned"):
        reserved_fleet_bill([[0, 10]], tp=1, pricing=p, window=(0, 10), busy_s=[0])


def test_overflow_price_resolution() -> None:
    h100 = get_gpu("h100-sxm")
    given = resolve_gpu_hourly(
        PricingSpec(
            kind="reserved",
            usd_per_gpu_hour=2.0,
            reserved_replicas=3,
            overflow_usd_per_gpu_hour=4.0,
        ),
        h100,
    )
    assert (given.reserved_replicas, given.overflow_usd_per_gpu_hour) == (3, 4.0)
    assert given.extra_usd_per_gpu_hour == 4.0
    spot = resolve_gpu_hourly(
        PricingSpec(kind="reserved", usd_per_gpu_hour=2.0, overflow_kind="spot"), h100
    )
    assert spot.overflow_usd_per_gpu_hour == default_gpu_price("h100-sxm", "spot").usd_per_gpu_hour
    # rented capacity has no reservation: what runs beyond it costs the hourly price
    od = resolve_gpu_hourly(PricingSpec(kind="on_demand", usd_per_gpu_hour=3.0), h100)
    assert od.reserved_replicas is None and math.isnan(od.overflow_usd_per_gpu_hour)
    assert od.extra_usd_per_gpu_hour == 3.0
    with pytest.raises(ValueError, match="overflow"):
        ResolvedPricing(kind="reserved", usd_per_gpu_hour=1.0, overflow_usd_per_gpu_hour=-1.0)


# --- through the simulator ---------------------------------------------------------------

W0, W1 = 600.0, 3600.0


def _spot_fleet(replace: bool, **pricing: Any) -> Scenario:
    # two replicas, no traffic; the first is reclaimed at 1800 s (a spot trace), idle so
    # released at once; with `replace` a replacement is paid from 1800 s on
    fleet = {
        "model": "llama-3.1-8b",
        "gpu": "h100-sxm",
        "replicas": 2,
        "spot": {"interruption_times_s": [1800.0], "notice_s": 120, "replace": replace},
        "pricing": {"kind": "reserved", "usd_per_gpu_hour": 2.0, **pricing},
    }
    return Scenario.model_validate(
        priced_scenario_data(
            name="reserved-spot", rate_rps=1e-9, duration_s=W1, warmup_s=W0, fleet=fleet
        )
    )


def test_simulated_reserved_fleet_pays_its_peak_not_its_lifetimes() -> None:
    out = simulate(_spot_fleet(replace=True), seed=1)
    m = out.metrics
    assert m["requests_offered"] == 0 and m["interruptions"] == 1
    # lifetimes [0, 1800], [0, end], [1800, end]: at most 2 at once, paid for the window
    window_h = (W1 - W0) / 3600
    assert m["fleet_gpu_hours_paid"] == pytest.approx(2 * window_h, rel=1e-12)
    assert m["fleet_gpu_usd"] == pytest.approx(2 * window_h * 2.0, rel=1e-12)
    # (the old rule billed all three lifetimes for the whole window: 3 × window_h × $2)
    assert m["total_cost_usd_per_month"] == pytest.approx(2 * 2.0 * 730, rel=1e-12)
    assert m["fleet_drain_s"] == 0.0


def test_simulated_reservation_with_overflow_by_hand() -> None:
    out = simulate(
        _spot_fleet(replace=False, reserved_replicas=1, overflow_usd_per_gpu_hour=5.0), seed=1
    )
    m = out.metrics
    # lifetimes [0, 1800] and [0, end]: one reserved, the other above it until 1800 s
    above_h = (1800 - W0) / 3600
    window_h = (W1 - W0) / 3600
    assert m["fleet_gpu_hours_paid"] == pytest.approx(window_h + above_h, rel=1e-12)
    assert m["fleet_gpu_usd"] == pytest.approx(window_h * 2.0 + above_h * 5.0, rel=1e-12)
    # with a replacement, a second replica runs above the reservation all window long
    out = simulate(
        _spot_fleet(replace=True, reserved_replicas=1, overflow_usd_per_gpu_hour=5.0), seed=1
    )
    assert out.metrics["fleet_gpu_usd"] == pytest.approx(window_h * (2.0 + 5.0), rel=1e-12)


def test_overloaded_fleet_pays_its_drain_exactly() -> None:
    # one sequence at a time, 0.1 s per iteration, 20 output tokens: 2 s per request at
    # 1 request/s — hopelessly overloaded; the drain stops at the limit of 100 s
    fleet = {
        "model": "llama-3.1-8b",
        "gpu": "h100-sxm",
        "replicas": 2,
        "step_time": {"model": "constant", "step_s": 0.1},
        "engine": {"max_num_seqs": 1},
        "pricing": {"usd_per_gpu_hour": 3.6},
    }
    data = priced_scenario_data(
        name="overloaded",
        rate_rps=2.0,
        prompt={"dist": "fixed", "value": 100},
        output={"dist": "fixed", "value": 20},
        fleet=fleet,
        horizon={"duration_s": 600, "warmup_s": 60, "drain_s": 100},
    )
    out = simulate(Scenario.model_validate(data), seed=2)
    m, df = out.metrics, out.requests
    assert (df["reason"] == "drain_limit").any()
    assert m["fleet_drain_s"] == 100.0
    # every replica paid for the window and the drain: 2 × (540 + 100) s at $3.60 an hour
    # (a fixed fleet is billed to the engine's 1 µs increment: at most 1 µs per replica)
    micro_h = 2 * 1e-6 / 3600
    assert m["fleet_gpu_hours_paid"] == pytest.approx(2 * 640 / 3600, abs=micro_h)
    assert m["fleet_gpu_usd"] == pytest.approx(2 * 640 / 3600 * 3.6, abs=3.6 * micro_h)
    # busy all along, drain included: nothing idle
    assert m["fleet_gpu_hours_busy"] == pytest.approx(2 * 640 / 3600, rel=1e-9)
    assert m["fleet_gpu_idle_usd"] == pytest.approx(0.0, abs=3.6 * micro_h)


def test_drain_ends_with_the_last_request_of_the_window() -> None:
    s = Scenario.model_validate(
        priced_scenario_data(name="drain", rate_rps=6.0, duration_s=600, warmup_s=60)
    )
    out = simulate(s, seed=4)
    m, df = out.metrics, out.requests
    arrived = df[(df["arrival_s"] >= 60) & (df["arrival_s"] < 600)]
    on_fleet = arrived[(arrived["route"] == "fleet") & (arrived["status"] == "completed")]
    # the engine's finish is the client's less the server front end's latency
    last = float(on_fleet["finish_s"].max()) - s.fleet.engine.frontend_latency_s
    assert last > 600
    assert m["fleet_drain_s"] == pytest.approx(last - 600, rel=1e-9)
    assert m["fleet_gpu_hours_paid"] == pytest.approx((540 + last - 600) / 3600, abs=1e-6 / 3600)


def test_docstring_examples() -> None:
    result = doctest.testmod(sim.economics.gpu_bill, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted >= 10


def test_busy_spread_over_lifetimes_stays_within_them() -> None:
    # an autoscaled on-demand fleet: busy time spread over lifetimes never exceeds them
    s = Scenario.model_validate(
        priced_scenario_data(
            name="auto",
            rate_rps=4.0,
            duration_s=1200,
            warmup_s=120,
            fleet={
                "model": "llama-3.1-8b",
                "gpu": "h100-sxm",
                "replicas": 1,
                "router": "central",
                "autoscaler": {
                    "min_replicas": 1,
                    "max_replicas": 3,
                    "target": 2,
                    "interval_s": 30,
                    "cold_start_s": 60,
                },
                "pricing": {"usd_per_gpu_hour": 3.0},
            },
        )
    )
    m = simulate(s, seed=3).metrics
    assert 0 <= m["fleet_gpu_hours_busy"] <= m["fleet_gpu_hours_paid"] * (1 + 1e-9)
    assert np.isfinite(m["fleet_gpu_usd"])


def test_fleet_without_a_price_costs_nan() -> None:
    # no reserved quote for this GPU in the catalogue: the fleet's costs are unknown (NaN),
    # not zero; latency is still simulated
    with pytest.raises(KeyError):
        resolve_gpu_hourly(PricingSpec(kind="reserved"), get_gpu("h200-sxm"))
    fleet = {"model": "llama-3.1-8b", "gpu": "h200-sxm", "pricing": {"kind": "reserved"}}
    s = Scenario.model_validate(priced_scenario_data(name="unpriced", fleet=fleet))
    m = simulate(s, seed=1).metrics
    for name in ("fleet_gpu_usd", "fleet_cost_usd", "total_cost_usd", "total_cost_usd_per_month"):
        assert math.isnan(m[name]), name
    assert m["requests_completed"] > 0 and np.isfinite(m["ttft_p99_s"])
