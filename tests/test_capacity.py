"""Capacity at the SLO: traffic scaled per arrival process (same shape, same window), the
search against an M/M/1 bound, monotone in the fleet's size, and cached."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.optimize import brentq
from theory import assert_poisson_count

import sim
from sim import Scenario, analytic
from sim.study import capacity as capacity_module
from sim.study.capacity import capacity_at_slo, capacity_scenario
from sim.workload import WorkloadSpec, sample_workload
from sim.workload.scale import nominal_rate_rps, scale_arrivals, scale_workload

DATA = Path(__file__).resolve().parent / "data"
LENGTHS = {
    "prompt_tokens": {"dist": "fixed", "value": 10},
    "output_tokens": {"dist": "fixed", "value": 5},
}
OPEN_LOOP = {
    "poisson": {"process": "poisson", "rate_rps": 2.0},
    "gamma": {"process": "gamma", "rate_rps": 2.0, "cv": 2.5},
    "mmpp": {"process": "mmpp", "rates_rps": [1.0, 6.0], "mean_dwell_s": [300.0, 60.0]},
}


def _workload(arrivals: dict[str, Any], **extra: Any) -> WorkloadSpec:
    cls: dict[str, Any] = {"name": "c", "arrivals": arrivals, **extra}
    if arrivals["process"] != "trace":
        cls.update(LENGTHS)
    return WorkloadSpec.model_validate({"classes": [cls]})


def _count(spec: WorkloadSpec, duration_s: float, seed: int) -> tuple[int, float]:
    w = sample_workload(spec, duration_s=duration_s, seed=np.random.SeedSequence(seed))
    t = w.arrival_s
    assert t.size == 0 or (t.min() >= 0.0 and t.max() < duration_s)  # the window is kept
    return int(t.size), float(t.max()) if t.size else 0.0


@pytest.mark.parametrize("kind", sorted(OPEN_LOOP))
@pytest.mark.parametrize("factor", [0.5, 3.0])
def test_open_loop_scaled_spec_has_s_times_the_rate(kind: str, factor: float) -> None:
    spec = _workload(OPEN_LOOP[kind])
    scaled = scale_workload(spec, factor)
    before, after = spec.classes[0].arrivals, scaled.classes[0].arrivals
    assert after.process == before.process
    assert nominal_rate_rps(after) == pytest.approx(factor * nominal_rate_rps(before), rel=1e-12)
    if kind == "mmpp":  # the same states, dwell times and rate ratios: bursts as long
        assert after.mean_dwell_s == before.mean_dwell_s
        assert np.allclose(np.asarray(after.rates_rps) / before.rates_rps, factor)
    else:  # the same burstiness
        assert after.interarrival_cv() == pytest.approx(before.interarrival_cv(), rel=1e-9)
    # sampled over the same window: s× the arrivals (MMPP counts are overdispersed)
    duration = 20_000.0
    n, last = _count(scaled, duration, seed=1)
    idc = after.index_of_dispersion() if kind != "gamma" else after.cv**2
    assert_poisson_count(n, factor * nominal_rate_rps(before) * duration, idc=idc)
    assert last > 0.99 * duration


def test_diurnal_profile_keeps_its_shape_and_the_whole_day() -> None:
    spec = _workload(
        {"process": "poisson", "rate_rps": 0.5},
        profile={"kind": "diurnal", "peak_to_trough": 4.0, "peak_hour": 14},
    )
    scaled = scale_workload(spec, 2.0)
    assert scaled.classes[0].profile == spec.classes[0].profile
    w = sample_workload(scaled, duration_s=86_400.0, seed=np.random.SeedSequence(3))
    hours = np.bincount((w.arrival_s // 3600).astype(int), minlength=24)
    assert hours.size == 24 and hours.min() > 0  # every hour of the day still has traffic
    assert_poisson_count(int(hours.sum()), 2.0 * 0.5 * 86_400.0)
    assert hours[14] > 2 * hours[2]  # the peak is still at 14:00


@pytest.mark.parametrize(
    ("users", "think", "factor"), [(8, 2.0, 2.5), (3, 1.0, 0.5), (5, 4.0, 1.3)]
)
def test_closed_loop_scales_its_think_limited_rate_exactly(
    users: int, think: float, factor: float
) -> None:
    arrivals = {"process": "closed_loop", "users": users, "think_time_s": think}
    before = _workload(arrivals).classes[0].arrivals
    after = scale_arrivals(before, factor)
    assert after.users == math.ceil(users * factor)
    assert nominal_rate_rps(after) == pytest.approx(factor * nominal_rate_rps(before), rel=1e-12)
    assert after.think_dist == before.think_dist


def test_closed_loop_without_think_time_scales_its_users() -> None:
    before = _workload({"process": "closed_loop", "users": 4, "think_time_s": 0.0})
    assert scale_workload(before, 2.0).classes[0].arrivals.users == 8
    assert scale_workload(before, 0.01).classes[0].arrivals.users == 1


def test_trace_is_time_compressed_over_the_same_window() -> None:
    path = str(DATA / "tiny_trace.csv")
    spec = _workload({"process": "trace", "path": path, "rate_scale": 1.5})
    scaled = scale_workload(spec, 2.0)
    assert scaled.classes[0].arrivals.rate_scale == 3.0
    trace = spec.classes[0].arrivals.load()
    duration = 50 * trace.period_s(1.5)  # many passes: counts are exact multiples
    n1, _ = _count(spec, duration, seed=0)
    n2, last = _count(scaled, duration, seed=0)
    assert n2 == pytest.approx(2 * n1, rel=0.02)
    assert last > 0.95 * duration


def test_scaling_refuses_a_bad_factor() -> None:
    spec = _workload(OPEN_LOOP["poisson"])
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="factor"):
            scale_workload(spec, bad)


# ---------------------------------------------------------------------------------------------
# the search


def _mm1(
    *, rate_rps: float, replicas: int = 1, duration_s: float = 20_000.0, ttft_s: float = 3.0
) -> Scenario:
    # constant 1 ms steps, one-token prompts, geometric outputs of mean 1000: service times
    # are (nearly) exponential with mean 1 s, one sequence at a time: M/M/1 per replica, and
    # TTFT = the wait in the queue + the 1 ms prefill step
    return Scenario.model_validate(
        {
            "name": "mm1",
            "horizon": {"duration_s": duration_s, "warmup_s": 1_000.0, "sample_interval_s": 600},
            "workload": {
                "classes": [
                    {
                        "name": "q",
                        "arrivals": {"process": "poisson", "rate_rps": rate_rps},
                        "prompt_tokens": {"dist": "fixed", "value": 1},
                        "output_tokens": {"dist": "geometric", "mean": 1000},
                        "slo": {"ttft_s": ttft_s, "attainment": 0.8},
                    }
                ]
            },
            "fleet": {
                "model": "llama-3.1-8b",
                "gpu": "h100-sxm",
                "replicas": replicas,
                "router": "least_loaded",
                "engine": {"max_num_seqs": 1, "frontend_latency_s": 0.0},
                "step_time": {"model": "constant", "step_s": 1e-3},
                "pricing": {"usd_per_gpu_hour": 2.0},
            },
        }
    )


def test_one_replica_capacity_matches_the_mm1_bound() -> None:
    # P(TTFT ≤ 3 s) = P(Wq ≤ 2.999 s) = 1 − ρ·exp(−(μ − λ)·2.999) ≥ 0.8 holds up to λ*
    def margin(lam: float) -> float:
        return float(analytic.mm1(lam, 1.0).wait_cdf(3.0 - 1e-3)) - 0.8

    lam_star = brentq(margin, 0.05, 0.99)
    base = 0.3
    cap = capacity_at_slo(
        _mm1(rate_rps=base, duration_s=10_000.0), replications=2, tolerance=0.05, seed=5
    )
    truth = lam_star / base
    # the bracket holds the truth up to the noise of two 9,000 s replications (about
    # ±0.01 in attainment, ±3 % in load near λ* ≈ 0.62, where the margin's slope is ≈ 0.9)
    assert cap.scale <= truth * 1.08 and cap.scale_high >= truth / 1.08, (cap.scale, truth)
    assert cap.scale_high / cap.scale <= 1.05 + 1e-9
    assert cap.used_share == pytest.approx(1.0 / cap.scale)
    assert cap.capacity_rps == pytest.approx(cap.scale * cap.offered_rps)
    assert cap.offered_rps == pytest.approx(base, rel=0.05)
    assert cap.targets == {"q": 0.8}
    ev = cap.evaluations
    assert ev["scale"].iloc[0] == 1.0 and bool(ev["holds"].iloc[0])
    # the bill splits into used and unused capacity, and adds up
    # (the window's 9,000 s and the drain after it: at most a few seconds here)
    assert cap.gpu_usd_per_month == pytest.approx(2.0 * 730.0, rel=1e-3)
    assert cap.gpu_usd_per_month >= 2.0 * 730.0
    assert cap.used_usd_per_month == pytest.approx(cap.gpu_usd_per_month * cap.used_share)
    assert cap.used_usd_per_month + cap.unused_usd_per_month == pytest.approx(cap.gpu_usd_per_month)


def test_more_replicas_more_capacity_lower_used_share() -> None:
    caps = [
        capacity_at_slo(_mm1(rate_rps=0.3, replicas=r, duration_s=5_000.0), tolerance=0.1)
        for r in (1, 2, 3)
    ]
    rps = [c.capacity_rps for c in caps]
    share = [c.used_share for c in caps]
    assert rps[0] < rps[1] < rps[2], rps
    assert share[0] > share[1] > share[2], share
    assert [c.replicas for c in caps] == [1, 2, 3]


def test_a_cache_hit_returns_the_same_numbers_without_simulating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _mm1(rate_rps=0.3, duration_s=3_000.0)
    first = capacity_at_slo(s, tolerance=0.2, cache_dir=tmp_path)
    assert not first.cached
    assert len(list(tmp_path.glob("capacity-*.json"))) == 1

    def no_simulation(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cache hit must not simulate")

    monkeypatch.setattr(capacity_module, "simulate", no_simulation)
    again = capacity_at_slo(s, tolerance=0.2, cache_dir=tmp_path)
    assert again.cached
    for field in ("scale", "scale_high", "offered_rps", "capacity_rps", "used_share"):
        assert getattr(again, field) == getattr(first, field), field
    assert again.evaluations.equals(first.evaluations)
    # another seed, setting or scenario is another search
    with pytest.raises(AssertionError, match="cache hit"):
        capacity_at_slo(s, tolerance=0.2, cache_dir=tmp_path, seed=1)
    with pytest.raises(AssertionError, match="cache hit"):
        capacity_at_slo(s.with_overrides({"fleet.replicas": 2}), tolerance=0.2, cache_dir=tmp_path)


def test_run_result_reuses_its_own_first_replication(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _mm1(rate_rps=0.3, duration_s=3_000.0)
    res = sim.run(s, replications=2, seed=4)
    tried: list[float] = []
    real = capacity_module.simulate

    def counting(scenario: Scenario, **kwargs: Any) -> Any:
        tried.append(scenario.workload.classes[0].arrivals.rate_rps)
        return real(scenario, **kwargs)

    monkeypatch.setattr(capacity_module, "simulate", counting)
    cap = res.capacity(tolerance=0.2)
    assert 0.3 not in tried  # s = 1 is the run's replication 0
    assert res.capacity_found is cap
    assert cap.evaluations["slo_attainment[q]"].iloc[0] == res.replications["slo_attainment"][0]


def test_autoscaled_fleet_is_judged_at_its_maximum() -> None:
    s = sim.load_scenario("scenarios/diurnal-autoscaled-spot.yaml")
    fixed, note = capacity_scenario(s)
    assert fixed.fleet.autoscaler is None
    assert fixed.fleet.replicas == s.fleet.autoscaler.max_replicas
    assert "maximum size" in note
    assert fixed.routing.policy == "self_host_only"


def test_unattainable_slo_says_so() -> None:
    # a 1 ms prefill step cannot give a TTFT under 0.5 ms at any load
    s = _mm1(rate_rps=0.3, duration_s=2_000.0, ttft_s=5e-4)
    cap = capacity_at_slo(s, min_scale=0.25)
    assert math.isnan(cap.scale) and math.isnan(cap.used_share)
    assert "fails even" in cap.describe()
    assert json.loads(json.dumps(cap.to_dict()))["scale"] is None


def test_crossover_run_writes_prints_and_reports_it_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sim.cli import main
    from sim.report import load_run

    path = tmp_path / "mm1.yaml"
    path.write_text(sim.dump_scenario(_mm1(rate_rps=0.3, duration_s=3_000.0)))
    out = tmp_path / "run"
    assert main(["run", str(path), "-n", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "capacity at SLO ×" in printed and "paid for but unused" in printed
    data = json.loads((out / "capacity.json").read_text())
    assert data["used_share"] == pytest.approx(1.0 / data["scale"])
    evaluations = (out / "capacity.csv").read_text().splitlines()
    assert evaluations[0].startswith("scale,holds,offered_rps")
    assert len(list((out / ".cache").glob("capacity-*.json"))) == 1
    back = load_run(out)
    assert back.capacity_found is not None
    assert back.capacity_found.scale == pytest.approx(data["scale"])
    html = sim.report(back, tmp_path / "r.html").read_text()
    section = html.split('<section id="utilisation">', 1)[1].split("</section>", 1)[0]
    rows = [m.group(1) for m in re.finditer(r"<tr><td>([^<]*)</td>", section)]
    assert rows[:4] == ["share of capacity at the SLO", "busy (occupancy)", "MFU", "MBU"]
    assert "paid for but unused" in section
    # skipped on request: no file, no line, and the report says how to get it
    bare = tmp_path / "bare"
    assert main(["run", str(path), "-n", "2", "--out", str(bare), "--no-capacity"]) == 0
    assert "capacity at SLO" not in capsys.readouterr().out
    assert not (bare / "capacity.json").exists()
    html = sim.report(load_run(bare), tmp_path / "bare.html").read_text()
    assert "was not searched" in html


def test_no_traffic_uses_none_of_the_capacity() -> None:
    s = _mm1(rate_rps=1e-7, duration_s=1_100.0)
    cap = capacity_at_slo(s)
    assert cap.offered_rps == 0.0 and cap.used_share == 0.0
    assert len(cap.evaluations) == 1  # nothing to scale: no search
    assert cap.used_usd_per_month == 0.0 and cap.unused_usd_per_month == cap.gpu_usd_per_month
    assert "no request arrived" in cap.describe()


def test_the_search_beside_the_replications_finds_what_the_search_after_them_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # with a spare core `crossover run` searches in a child process during the run; on one
    # core it searches after it, reusing the run's first replication: the same file either way
    import sim.cli.run as cli_run
    from sim.cli import main

    path = tmp_path / "mm1.yaml"
    path.write_text(sim.dump_scenario(_mm1(rate_rps=0.3, duration_s=3_000.0)))
    files = {}
    for cores in (2, 1):
        monkeypatch.setattr(cli_run.os, "cpu_count", lambda cores=cores: cores)
        out = tmp_path / f"cores{cores}"
        assert main(["run", str(path), "-n", "2", "--seed", "4", "--out", str(out), "-q"]) == 0
        files[cores] = json.loads((out / "capacity.json").read_text())
        assert (out / "capacity.csv").read_text().startswith("scale,holds,offered_rps")
    assert files[2] == files[1]
    assert files[2]["scale"] > 1.0
