"""The step-time fitter: its parameter table, bounded fits, starts, the linear NNLS."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim.engine.fit_steptime as F
from sim.engine.calibrate import fit_step_model
from sim.engine.replica import build_replica
from sim.engine.spec import FleetSpec, LinearStep, RooflineStep


def test_every_constant_has_a_unit_and_nested_ranges() -> None:
    assert set(F.PARAMS) == {*F.PROFILE_KEYS, *F.LINEAR_KEYS}
    assert set(F.ROOFLINE_KEYS) <= set(RooflineStep.model_fields)
    # profile-only constants (the stack's CPU time per sequence and time per layer) are not
    # scenario fields
    assert set(F.PROFILE_KEYS) - set(F.ROOFLINE_KEYS) == {"seq_cpu_s", "layer_s"}
    assert "seq_cpu_s" not in RooflineStep.model_fields
    assert "layer_s" not in RooflineStep.model_fields
    assert set(F.LINEAR_KEYS) <= set(LinearStep.model_fields)
    for key, p in F.PARAMS.items():
        assert p.scale > 0, key
        # the profiles' physical range lies inside what calibrate allows, which lies inside
        # the field's valid range (non-negative; efficiencies at most 1)
        assert 0.0 <= p.wide[0] <= p.physical[0] < p.physical[1] <= p.wide[1], key
        assert (p.limits("wide"), p.limits("physical")) == (p.wide, p.physical)
    for key in ("compute_efficiency", "bandwidth_efficiency"):
        assert F.PARAMS[key].wide[0] > 0.0 and F.PARAMS[key].wide[1] <= 1.0


def _toy(ce: float, overhead_s: float) -> F.Residuals:
    """log(pred / meas) of ``overhead + work / ce``, measured with the given constants."""
    work = np.linspace(1e-4, 2e-2, 30)
    meas = overhead_s + work / ce

    def res(p: dict[str, float]) -> np.ndarray:
        return np.log((p["overhead_s"] + work / p["compute_efficiency"]) / meas)

    return res


def test_fit_recovers_known_constants_from_every_start() -> None:
    starts = [{"compute_efficiency": 0.3, "overhead_s": 0.01}, {"compute_efficiency": 0.8}]
    for start in starts:
        start = {"overhead_s": 0.0, **start}
        f = F.fit_constants(_toy(0.6, 0.004), ["compute_efficiency", "overhead_s"], [start])
        assert f.params["compute_efficiency"] == pytest.approx(0.6, rel=1e-5)
        assert f.params["overhead_s"] == pytest.approx(0.004, rel=1e-5)
        assert f.free == ("compute_efficiency", "overhead_s") and f.rms < 1e-6 and f.nfev > 0


def test_fixed_constants_are_passed_through_unfitted() -> None:
    seen: list[float] = []

    def res(p: dict[str, float]) -> np.ndarray:
        seen.append(p["allreduce_latency_s"])
        return _toy(0.6, 0.004)(p)

    fixed = {"overhead_s": 0.004, "allreduce_latency_s": 2e-5}
    f = F.fit_constants(res, ["compute_efficiency"], [{"compute_efficiency": 0.5}], fixed=fixed)
    assert set(seen) == {2e-5}
    assert f.params == pytest.approx(
        {"compute_efficiency": 0.6, "overhead_s": 0.004, "allreduce_latency_s": 2e-5}, rel=1e-5
    )


def test_bounds_kind_chooses_the_range() -> None:
    # an optimum beyond the physical 50 ms overhead but inside the wide 100 ms
    free = ["compute_efficiency", "overhead_s"]
    start = [{"compute_efficiency": 0.5, "overhead_s": 0.01}]
    wide = F.fit_constants(_toy(0.6, 0.07), free, start, bounds="wide")
    phys = F.fit_constants(_toy(0.6, 0.07), free, start, bounds="physical")
    assert wide.params["overhead_s"] == pytest.approx(0.07, rel=1e-4)
    assert phys.params["overhead_s"] == pytest.approx(F.PARAMS["overhead_s"].physical[1])
    assert phys.rms > wide.rms
    with pytest.raises(ValueError, match="bounds"):
        F.fit_constants(_toy(0.6, 0.07), free, start, bounds="tight")  # type: ignore[arg-type]


def test_the_start_with_the_lowest_rms_wins() -> None:
    # two minima in be: a local one near 0.2 (cost ≈ 0.03) and the global one at 0.8 (0)
    def res(p: dict[str, float]) -> np.ndarray:
        x = p["bandwidth_efficiency"]
        return np.array([10.0 * (x - 0.2) * (x - 0.8), 0.3 * (x - 0.8)])

    lo, hi = {"bandwidth_efficiency": 0.1}, {"bandwidth_efficiency": 0.9}
    local = F.fit_constants(res, ["bandwidth_efficiency"], [lo])
    assert local.params["bandwidth_efficiency"] == pytest.approx(0.2, abs=0.01)
    for starts in ([lo, hi], [hi, lo]):
        best = F.fit_constants(res, ["bandwidth_efficiency"], starts)
        assert best.params["bandwidth_efficiency"] == pytest.approx(0.8, abs=1e-4)
        assert best.rms < 1e-4 < local.rms
    with pytest.raises(ValueError, match="no starting point"):
        F.fit_constants(res, ["bandwidth_efficiency"], [])


def test_non_finite_residuals_count_as_ten() -> None:
    f = F.fit_constants(
        lambda p: np.array([np.nan, np.inf]), ["overhead_s"], [{"overhead_s": 0.001}]
    )
    assert f.rms == pytest.approx(10.0)


def test_linear_relative_fit_is_exact_and_non_negative() -> None:
    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(50), rng.integers(1, 200, 50), np.zeros(50)])
    true = np.array([4e-3, 2e-5, 0.0])
    assert F.fit_linear_relative(x, x @ true) == pytest.approx(true, rel=1e-9, abs=1e-15)
    # a coefficient that would be negative is held at zero
    y = 1.0 - 1e-3 * x[:, 1]
    assert (F.fit_linear_relative(x[:, :2], y) >= 0.0).all()


def test_calibrate_fits_within_the_wide_bounds() -> None:
    # a 70 ms iteration overhead is outside the profiles' physical range, not calibrate's
    fleet = FleetSpec.model_validate({"model": "llama-3.1-8b", "gpu": "h100-sxm", "tp": 2})
    true = RooflineStep(compute_efficiency=0.45, bandwidth_efficiency=0.7, overhead_s=0.07)
    v = build_replica(fleet.model_copy(update={"step_time": true})).coefficients
    rng = np.random.default_rng(1)
    d = rng.integers(1, 200, 60).astype(float)
    p = np.where(rng.random(60) < 0.5, rng.integers(1, 4000, 60), 0).astype(float)
    kv = rng.integers(100, 300_000, 60).astype(float)
    t = [v.time_s(a + b, a, b, c, c) for a, b, c in zip(d, p, kv, strict=True)]
    s = pd.DataFrame({"decode_seqs": d, "prefill_tokens": p, "kv_tokens": kv, "step_s": t})
    r = fit_step_model(s, model="roofline", fleet=fleet)
    assert isinstance(r.spec, RooflineStep)
    assert r.spec.overhead_s == pytest.approx(0.07, rel=1e-3)


def test_calibrate_replays_requests_on_a_scenario_fleet() -> None:
    # a scenario's fleet is a FleetSpec subclass with more fields (pricing): the replay keeps it
    from sim.engine.calibrate import RequestBench, fit_from_requests
    from sim.scenario_io import load_scenario

    scen = Path(__file__).resolve().parent.parent / "scenarios" / "chat-startup.yaml"
    fleet = load_scenario(scen).fleet
    n = 12
    inp, out = np.full(n, 200), np.full(n, 20)
    tpot = np.full(n, 0.01)
    ttft = np.full(n, 0.05)
    bench = RequestBench(inp, out, ttft, ttft + tpot * (out - 1), tpot, concurrency=4)
    r = fit_from_requests(bench, fleet=fleet, model="roofline")
    assert isinstance(r.spec, RooflineStep) and len(r.residuals) == n
    assert np.isfinite(r.mape) and r.what == "e2e_s"


def test_doctests() -> None:
    assert doctest.testmod(F, raise_on_error=True).attempted > 0
