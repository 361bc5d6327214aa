"""Streaming replications: arrivals generated as the clock advances, requests folded as they
finish. The simulation must be bit-identical to one with every request loaded, whatever the
window; the folded metrics equal the per-request ones (counts exactly, quantiles within the
sketch's stated error); memory follows what is in flight."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sim.replication.stream as stream_mod
from sim import load_scenario, simulate
from sim.engine import kernel as K
from sim.engine.fleet import run_fleet
from sim.engine.replica import build_replica
from sim.engine.serve import request_frame
from sim.replication.budget import check_memory
from sim.replication.parts import class_routes
from sim.replication.sketch import ALPHA, MIN_VALUE, QuantileSketch
from sim.replication.stream import sample_mask
from sim.scenario_io import ScenarioError
from sim.seeds import STREAM_FAULTS, STREAM_ROUTER, STREAM_WORKLOAD, substream
from sim.workload import WorkloadSpec, sample_workload
from sim.workload.sample import WorkloadStream

FIELDS = ("arrival_s", "input_tokens", "output_tokens", "class_id", "has_prefix")


def _mixed_spec() -> WorkloadSpec:
    fixed = {"dist": "fixed", "value": 100}
    return WorkloadSpec.model_validate(
        {
            "classes": [
                {
                    "name": "bursty",
                    "arrivals": {
                        "process": "mmpp",
                        "rates_rps": [1.0, 30.0],
                        "mean_dwell_s": [60.0, 10.0],
                    },
                    "prompt_tokens": {"dist": "lognormal", "median": 500, "p90": 2000},
                    "output_tokens": {"dist": "geometric", "mean": 100},
                    "prefix": {"tokens": 200, "share": 0.5},
                },
                {
                    "name": "daily",
                    "arrivals": {"process": "poisson", "rate_rps": 20.0},
                    "profile": {"kind": "diurnal", "peak_to_trough": 3.0},
                    "prompt_tokens": {"dist": "empirical", "values": [10, 50, 90]},
                    "output_tokens": fixed,
                },
                {
                    "name": "gamma",
                    "arrivals": {"process": "gamma", "rate_rps": 50.0, "cv": 3.0},
                    "prompt_tokens": fixed,
                    "output_tokens": fixed,
                },
            ]
        }
    )


@pytest.mark.parametrize(
    "ends",
    [[0.01, 1.0, 2.0, 3.0, 100.0, 5000.0, 7200.0], list(np.linspace(0.5, 7200.0, 331))],
)
def test_workload_stream_is_the_workload_whatever_the_windows(ends: list[float]) -> None:
    spec = _mixed_spec()
    seed = np.random.SeedSequence(3)
    whole = sample_workload(spec, duration_s=7200.0, seed=seed)
    stream = WorkloadStream(spec, duration_s=7200.0, seed=seed)
    parts = [stream.until(t) for t in ends]
    assert len(whole) > 100_000
    for f in FIELDS:
        got = np.concatenate([getattr(p, f) for p in parts])
        assert np.array_equal(got, getattr(whole, f)), f
    # past the horizon there is nothing more, and a window never goes back
    assert len(stream.until(1e9)) == 0
    assert len(stream.until(10.0)) == 0


def test_closed_loop_draws_do_not_depend_on_how_many_at_once() -> None:
    spec = WorkloadSpec.model_validate(
        {
            "classes": [
                {
                    "name": "agents",
                    "arrivals": {"process": "closed_loop", "users": 4, "think_time_s": 2.0},
                    "prompt_tokens": {"dist": "empirical", "values": [10, 20, 30, 40]},
                    "output_tokens": {"dist": "geometric", "mean": 20},
                }
            ]
        }
    )
    seed = np.random.SeedSequence(9)
    src = sample_workload(spec, duration_s=10.0, seed=seed).closed_loop[0]
    once = src.fresh().draw(70_000)
    pieces = [src.fresh()]
    got = [pieces[0].draw(n) for n in (3, 1, 65_535, 4_461)]
    for k in range(3):
        assert np.array_equal(np.concatenate([g[k] for g in got]), once[k])


def _engine_rows(scenario_name: str, router: str, window_s: float | None) -> pd.DataFrame:
    sc = load_scenario(f"scenarios/{scenario_name}.yaml").with_overrides(
        {"horizon.duration_s": 1800.0, "horizon.warmup_s": 0.0, "fleet.router": router}
    )
    replica = build_replica(sc.fleet)
    seed = 5
    prefix = np.array([0 if c.prefix is None else c.prefix.tokens for c in sc.workload.classes])
    kw = {
        "router_rng": np.random.default_rng(substream(seed, STREAM_ROUTER)),
        "routing": sc.routing,
        "class_route": class_routes(sc),
        "prefix_tokens": prefix,
        "fault_rng": np.random.default_rng(substream(seed, STREAM_FAULTS)),
    }
    wseed = substream(seed, STREAM_WORKLOAD)
    hz = sc.horizon
    if window_s is None:
        run = run_fleet(
            sc.fleet, replica, sample_workload(sc.workload, duration_s=1800.0, seed=wseed), hz, **kw
        )
        n = run.state.n_requests
        rf, ri = run.state.rf[:n], run.state.ri[:n]
    else:
        rows: list[tuple[np.ndarray, np.ndarray, float]] = []
        run = run_fleet(
            sc.fleet,
            replica,
            WorkloadStream(sc.workload, duration_s=1800.0, seed=wseed),
            hz,
            window_s=window_s,
            retire=lambda a, b, w: rows.append((a.copy(), b.copy(), w)),
            **kw,
        )
        rf = np.concatenate([a for a, _, _ in rows])
        ri = np.concatenate([b for _, b, _ in rows])
        assert run.state.n_requests == 0  # every row was handed over
        # the watermark handed over with each batch: no later request arrives before it
        later = np.minimum.accumulate([a[:, K.ARR].min() for a, _, _ in rows][::-1])[::-1]
        for i, (_, _, w) in enumerate(rows[:-1]):
            assert later[i + 1] >= w
        assert rows[-1][2] == np.inf
    status = ri[:, K.STATUS].copy()
    ri = ri.copy()
    ri[status == K.ST_API, K.STATUS] = K.ST_REJECTED  # no API outcome needed to compare
    frame = request_frame(
        rf, ri, sc.workload.class_names(), prefix_tokens=prefix, frontend_latency_s=0.0
    )
    frame["engine_status"] = status
    frame["pf"] = float(np.nansum(run.state.pf))  # every replica's clock and integrals
    keys = ["arrival_s", "class_name", "input_tokens", "output_tokens", "ttft_s"]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


@pytest.mark.parametrize(
    ("scenario_name", "router"),
    [
        ("chat-startup", "least_loaded"),
        ("chat-startup", "round_robin"),
        ("closed-loop-benchmark", "power_of_two"),
        ("closed-loop-benchmark", "least_requests"),
        ("diurnal-autoscaled-spot", "central"),
        ("rag-private-hybrid", "least_loaded"),
        ("code-assistant-trace", "random"),
    ],
)
def test_streamed_engine_is_bit_identical(scenario_name: str, router: str) -> None:
    whole = _engine_rows(scenario_name, router, None)
    assert len(whole) > 1000
    for window_s in (3.0, 250.0):
        streamed = _engine_rows(scenario_name, router, window_s)
        pd.testing.assert_frame_equal(streamed, whole, check_exact=True)


def _pair(name: str, **over: object) -> tuple[dict[str, float], dict[str, float], object]:
    sc = load_scenario(f"scenarios/{name}.yaml")
    sc = sc.with_overrides(
        {"horizon.duration_s": 3600.0, "horizon.warmup_s": 300.0, **over}  # type: ignore[dict-item]
    )
    a = simulate(sc, seed=4)
    b = simulate(
        sc.with_overrides({"horizon.records": "sample", "horizon.records_sample": 0.1}), seed=4
    )
    assert a.n_requests == b.n_requests
    return a.metrics, b.metrics, b


def _is_quantile(key: str) -> bool:
    base = key.split("[")[0]
    return any(base.endswith(f"_p{q}_s") for q in (50, 90, 99))


@pytest.mark.parametrize(
    "name",
    ["chat-startup", "rag-private-hybrid", "diurnal-autoscaled-spot", "closed-loop-benchmark"],
)
def test_folded_metrics_equal_the_per_request_ones(name: str) -> None:
    exact, folded, _ = _pair(name)
    assert set(exact) == set(folded)
    for key, v in exact.items():
        w = folded[key]
        if isinstance(v, float) and math.isnan(v):
            assert math.isnan(w), key
        elif _is_quantile(key):
            # np.percentile of the same values, within the sketch's relative error
            assert w == pytest.approx(v, rel=ALPHA, abs=MIN_VALUE), key
        else:
            # counts exactly; sums, means and bills to rounding (added in another order)
            assert w == pytest.approx(v, rel=1e-9, abs=1e-12), key


def test_api_calls_retrying_across_windows_fold_as_in_a_run_with_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # tight rate limits: calls wait to retry across many small windows, and are settled
    # and folded as they would be with every record kept
    monkeypatch.setattr(stream_mod, "WINDOW_REQUESTS", 300)
    sc = load_scenario("scenarios/rag-private-hybrid.yaml").with_overrides(
        {
            "horizon.duration_s": 1800.0,
            "horizon.warmup_s": 300.0,
            "api.rate_limits.requests_per_min": 40,
            "api.rate_limits.max_retries": 5,
            "routing.spillover.max_predicted_ttft_s": 0.02,
        }
    )
    a = simulate(sc, seed=4)
    b = simulate(sc.with_overrides({"horizon.records": "none"}), seed=4)
    api = a.requests[a.requests["route"] == "api"]
    assert (api["api_attempts"] > 1).mean() > 0.05
    assert (api["status"] == "failed").sum() > 0
    for key in ("requests_completed", "requests_failed", "api_share[general]"):
        assert b.metrics[key] == a.metrics[key], key
    assert b.metrics["api_cost_usd"] == pytest.approx(a.metrics["api_cost_usd"], rel=1e-9)
    for key, v in a.metrics.items():
        if _is_quantile(key) and not key.startswith("api_only_") and not math.isnan(v):
            assert b.metrics[key] == pytest.approx(v, rel=ALPHA, abs=MIN_VALUE), key


def test_the_sample_is_reproducible_and_of_the_stated_share() -> None:
    _, _, out = _pair("chat-startup")
    kept = out.requests  # type: ignore[attr-defined]
    n = out.n_requests  # type: ignore[attr-defined]
    share, p = len(kept) / n, 0.1
    assert abs(share - p) < 4.0 * math.sqrt(p * (1 - p) / n)
    assert bool(np.all(np.diff(kept["arrival_s"].to_numpy()) >= 0))
    # the same requests are recorded with a record of every request
    full = simulate(
        load_scenario("scenarios/chat-startup.yaml").with_overrides(
            {"horizon.duration_s": 3600.0, "horizon.warmup_s": 300.0}
        ),
        seed=4,
    ).requests
    mask = sample_mask(
        full["arrival_s"].to_numpy(),
        full["class_name"].cat.codes.to_numpy(),
        full["input_tokens"].to_numpy(),
        p,
    )
    mine = full[mask].reset_index(drop=True)
    for col in ("arrival_s", "input_tokens", "output_tokens", "ttft_s", "e2e_s", "replica"):
        assert np.array_equal(mine[col].to_numpy(), kept[col].to_numpy(), equal_nan=True), col


def test_records_none_keeps_no_records_and_memory_follows_what_is_in_flight(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sim.engine.state as state_mod

    monkeypatch.setattr(stream_mod, "WINDOW_REQUESTS", 5_000)
    seen: list[int] = []
    original = state_mod.FleetState._relayout

    def spy(self: state_mod.FleetState, *, retire: bool) -> None:
        original(self, retire=retire)
        seen.append(int(self.rf.shape[0]))

    monkeypatch.setattr(state_mod.FleetState, "_relayout", spy)
    sc = load_scenario("scenarios/steady-api-replacement.yaml").with_overrides(
        {"horizon.duration_s": 7200.0, "horizon.warmup_s": 0.0, "horizon.records": "none"}
    )
    out = simulate(sc, seed=1)
    assert len(out.requests) == 0
    assert out.n_requests > 250_000
    # 40 req/s for 2 h: the engine's row buffer never held more than a few windows of
    # arrivals (5,000 requests each) and what was in flight
    assert len(seen) > 50
    assert max(seen) < 25_000


def test_memory_check_counts_what_a_streamed_run_holds() -> None:
    sc = load_scenario("scenarios/chat-startup.yaml").with_overrides(
        {"workload.classes.0.arrivals": {"process": "poisson", "rate_rps": 1e6}}
    )
    with pytest.raises(ScenarioError, match=r"set horizon\.records to none or sample"):
        check_memory(sc, available_bytes=2 * 2**30)
    n = check_memory(sc.with_overrides({"horizon.records": "none"}), available_bytes=2 * 2**30)
    assert n == pytest.approx(1e6 * 86_400, rel=0.05)
    with pytest.raises(ScenarioError, match=r"lower horizon\.records_sample"):
        check_memory(sc.with_overrides({"horizon.records": "sample"}), available_bytes=2 * 2**30)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.just(0.0), st.floats(min_value=MIN_VALUE, max_value=1e6)),
        min_size=1,
        max_size=400,
    ),
    st.integers(min_value=0, max_value=400),
    st.sampled_from([0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0]),
)
def test_sketch_quantiles_within_alpha_of_numpy(values: list[float], cut: int, q: float) -> None:
    x = np.asarray(values)
    a, b = QuantileSketch(), QuantileSketch()
    a.add(x[:cut])
    b.add(x[cut:])
    a.merge(b)
    exact = float(np.percentile(x, q))
    assert a.n == x.size
    assert a.quantile(q) == pytest.approx(exact, rel=ALPHA * (1 + 1e-9), abs=1e-300)
