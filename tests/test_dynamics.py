"""Fleet dynamics: autoscaling with cold starts, spot interruptions, failures — nothing lost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from engine_helpers import fleet, run_small, workload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.engine import kernel as K


def test_spot_interruption_mid_decode_requeues_and_finishes_elsewhere() -> None:
    # A runs on replica 0 (prefill [0,1], decodes from 1). The reclaim at 3.5 (no notice)
    # takes effect at replica 0's iteration boundary t=4, when A has 4 tokens: A goes back
    # to the queue, replica 1 re-prefills prompt + 4 generated tokens in [4,5] (token 5)
    # and decodes the last 5 tokens: done at 10.
    spec = fleet(
        step_s=1.0,
        replicas=2,
        router="round_robin",
        spot={"interruption_times_s": [3.5], "notice_s": 0.0, "replace": False},
    )
    df, run = run_small(spec, workload([(0.0, 4, 10)]))
    a = df.iloc[0]
    assert a["status"] == "completed"
    assert a["replica"] == 1
    assert a["interruptions"] == 1
    assert a["recomputed_tokens"] == 4 + 4 - 1  # its KV entries when lost
    assert a["ttft_s"] == pytest.approx(1.0)  # the first token is not re-timed
    assert a["finish_s"] == pytest.approx(10.0)
    assert run.events["interruptions"] == 1
    # replica 0 was paid until the reclaim; replica 1 throughout
    life = run.lifetimes
    assert life is not None
    assert sorted(life[:, 1].tolist())[0] == pytest.approx(3.5)


def test_interruption_during_prefill_requeues_too() -> None:
    spec = fleet(
        step_s=1.0,
        replicas=2,
        router="round_robin",
        engine={"max_num_batched_tokens": 4},
        spot={"interruption_times_s": [1.5], "notice_s": 0.0, "replace": False},
    )
    # 12-token prompt in chunks of 4: interrupted at the boundary t=2 after two chunks
    df, _ = run_small(spec, workload([(0.0, 12, 2)]))
    a = df.iloc[0]
    assert a["replica"] == 1 and a["interruptions"] == 1
    assert a["recomputed_tokens"] == 8
    assert a["ttft_s"] == pytest.approx(2.0 + 3.0)  # three chunks again from t=2
    assert a["finish_s"] == pytest.approx(6.0)


def test_scale_up_after_the_cold_start_not_before() -> None:
    # one slot per replica, central queue; at the t=10 tick two requests wait: a second
    # replica is requested (paid from 10) and serves from 40, not earlier.
    spec = fleet(
        step_s=1.0,
        replicas=1,
        router="central",
        engine={"max_num_seqs": 1},
        autoscaler={
            "min_replicas": 1,
            "max_replicas": 2,
            "metric": "queue_per_replica",
            "target": 1.0,
            "interval_s": 10.0,
            "cold_start_s": 30.0,
            "scale_down_cooldown_s": 1000.0,
        },
    )
    df, run = run_small(spec, workload([(1.0, 1, 100), (2.0, 1, 100), (3.0, 1, 100)]))
    a, b, c = df.iloc[0], df.iloc[1], df.iloc[2]
    assert a["replica"] == 0 and a["finish_s"] == pytest.approx(101.0)
    assert b["replica"] == 1 and b["queue_s"] == pytest.approx(40.0 - 2.0)
    assert c["replica"] == 0 and c["queue_s"] == pytest.approx(101.0 - 3.0)
    assert run.events["scale_ups"] == 1
    life = run.lifetimes
    assert life is not None and len(life) == 2
    assert sorted(life[:, 0].tolist()) == pytest.approx([0.0, 10.0])


def test_scale_down_drains_then_releases() -> None:
    # two replicas, light load: the autoscaler drains one after the cooldown; it finishes
    # what it holds and is released (paid) exactly until it is empty
    spec = fleet(
        step_s=1.0,
        replicas=2,
        router="round_robin",
        autoscaler={
            "min_replicas": 1,
            "max_replicas": 2,
            "metric": "queue_per_replica",
            "target": 1.0,
            "interval_s": 10.0,
            "cold_start_s": 5.0,
            "scale_down_cooldown_s": 15.0,
        },
    )
    # replica 0 gets the first request (finishes at 50), replica 1 the second (at 51); at the
    # t=20 tick, past the cooldown, nothing waits: one replica is drained, the one with less
    # work left (replica 0), and released when its request finishes
    df, run = run_small(spec, workload([(0.0, 1, 50), (1.0, 1, 50)]), duration_s=200.0)
    assert (df["status"] == "completed").all()
    assert run.events["scale_downs"] >= 1
    life = run.lifetimes
    assert life is not None
    ends = sorted(life[:, 1].tolist())
    assert ends[0] == pytest.approx(50.0)
    assert df.iloc[0]["replica"] == 0 and df.iloc[0]["finish_s"] == pytest.approx(50.0)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    times=st.lists(st.floats(0.0, 20.0), max_size=6),
    notice=st.sampled_from([0.0, 0.5, 3.0]),
    mtbf_h=st.sampled_from([None, 0.002, 0.01]),
    autoscale=st.booleans(),
    router=st.sampled_from(["round_robin", "least_loaded", "central"]),
    prefix=st.sampled_from([0, 8]),
    seed=st.integers(0, 10_000),
)
def test_no_request_lost_under_random_faults(
    times: list[float],
    notice: float,
    mtbf_h: float | None,
    autoscale: bool,
    router: str,
    prefix: int,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    n = 40
    carries = rng.random(n) < 0.5 if prefix else np.zeros(n, dtype=bool)
    reqs = [
        (float(t), int(p) + (prefix if c else 0), int(o), 0, bool(c))
        for t, p, o, c in zip(
            np.sort(rng.uniform(0, 20, n)),
            rng.integers(1, 40, n),
            rng.integers(1, 30, n),
            carries,
            strict=True,
        )
    ]
    extra: dict[str, object] = {
        "spot": {"interruption_times_s": times, "notice_s": notice, "replace": True}
    }
    if mtbf_h is not None:
        extra["failures"] = {"mtbf_hours": mtbf_h, "restart_s": 2.0}
    if autoscale:
        extra["autoscaler"] = {
            "min_replicas": 0,
            "max_replicas": 3,
            "target": 1.0,
            "interval_s": 2.0,
            "cold_start_s": 3.0,
            "scale_down_cooldown_s": 4.0,
        }
    spec = fleet(
        step_s=0.2,
        replicas=2,
        router=router,
        engine={"kv_blocks": 30, "block_tokens": 4, "max_num_seqs": 4},
        **extra,
    )
    df, run = run_small(spec, workload(reqs), duration_s=20.0, seed=seed, prefix_tokens=[prefix])
    state = run.state
    assert len(df) == n
    assert set(df["status"].unique()) <= {"completed", "rejected", "failed"}
    # with an unbounded drain everything that fits completes, whatever the faults
    assert (df["status"] == "completed").all()
    assert (state.pi[:, K.OUTST] == 0).all()
    assert (state.pi[:, K.QTOK] == 0).all() and state.g[K.G_CQLEN] == 0
    assert (state.pi[:, K.FREE] == state.replica.kv_blocks).all()
    assert (state.pi[:, K.NRUN] == 0).all()
    # tokens balance: what was recomputed is exactly what interruptions and preemptions lost
    ri = state.ri[: state.n_requests]
    assert (ri[:, K.COMP] == ri[:, K.PROMPT] + ri[:, K.OUT] - 1).all()
    life = run.lifetimes
    assert life is not None and (life[:, 1] >= life[:, 0]).all()


def test_replica_table_reports_paid_time_and_utilisation_of_it() -> None:
    from pathlib import Path

    from sim import load_scenario, simulate

    flagship = Path(__file__).resolve().parents[1] / "scenarios" / "diurnal-autoscaled-spot.yaml"
    s = load_scenario(flagship).with_overrides(
        {"horizon.duration_s": 7200, "horizon.warmup_s": 600, "fleet.spot": None}
    )
    out = simulate(s, seed=2)
    table, m = out.replicas, out.metrics
    # the slots' paid shares add up to the replicas paid on average
    assert table["paid_fraction"].sum() == pytest.approx(m["replicas_paid_mean"])
    # each slot's busy fraction is of its own paid time; never-started slots have none
    paid = table["paid_fraction"] > 0
    assert (table.loc[paid, "gpu_busy_fraction"] <= 1 + 1e-9).all()
    assert table.loc[~paid, "gpu_busy_fraction"].isna().all()
    # and the fleet's is the paid-time weighted mean of the slots'
    weighted = (table.loc[paid, "gpu_busy_fraction"] * table.loc[paid, "paid_fraction"]).sum()
    assert m["gpu_busy_fraction"] == pytest.approx(weighted / table["paid_fraction"].sum())


def test_the_time_series_is_thinned_past_its_row_budget_and_ready_metrics_see_every_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An autoscaled fleet sampled every 2 s for 10 minutes (over 300 samples × 4 slots).
    # With a budget of 64 rows (16 samples kept) the series is thinned each time it holds 33
    # samples: what is left is evenly spaced, on the grid of the full series and its rows
    # there; the ready-replica metrics are those of the full series.
    import sim
    from sim.engine import fleet as fleet_module

    scn = sim.Scenario.model_validate(
        {
            "name": "thin",
            "horizon": {"duration_s": 600.0, "warmup_s": 60.0, "sample_interval_s": 2.0},
            "workload": {
                "classes": [
                    {
                        "name": "chat",
                        "arrivals": {"process": "gamma", "rate_rps": 12.0, "cv": 3.0},
                        "prompt_tokens": {"dist": "lognormal", "median": 600, "p90": 2000},
                        "output_tokens": {"dist": "geometric", "mean": 150, "max": 2000},
                    }
                ]
            },
            "fleet": {
                "model": "llama-3.1-8b",
                "gpu": "h100-sxm",
                "replicas": 1,
                "autoscaler": {
                    "min_replicas": 1,
                    "max_replicas": 4,
                    "metric": "concurrency_per_replica",
                    "target": 8.0,
                    "interval_s": 10.0,
                    "cold_start_s": 20.0,
                    "scale_down_cooldown_s": 30.0,
                },
            },
        }
    )
    full = sim.simulate(scn, seed=5)
    monkeypatch.setattr(fleet_module, "MAX_SAMPLE_ROWS", 64)
    thin = sim.simulate(scn, seed=5)
    ts_full, ts_thin = full.timeseries, thin.timeseries
    t_full = np.unique(ts_full["t_s"].to_numpy())
    t_thin = np.unique(ts_thin["t_s"].to_numpy())
    slots = ts_full["replica"].nunique()
    assert slots == 4 and len(t_full) > 280
    assert len(ts_thin) <= 2 * 64 + slots and len(t_thin) >= 8
    step = np.diff(t_thin)
    assert (step == step[0]).all() and step[0] >= 16.0  # 2 s, doubled at least thrice
    # (the full series may end before the coarser grid's last sample; at an instant when
    # the autoscaler acts too, which of the two comes first follows when each was scheduled)
    common = t_thin[t_thin <= t_full.max()]
    common = common[common % 10.0 != 0.0]
    assert np.isin(common, t_full).all() and len(common) >= 4
    kept = ts_full[np.isin(ts_full["t_s"], common)].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        kept, ts_thin[np.isin(ts_thin["t_s"], common)].reset_index(drop=True)
    )
    for key in ("replicas_ready_mean", "replicas_ready_max"):
        assert thin.metrics[key] == full.metrics[key]
    ready = ts_full[(ts_full["t_s"] >= 60.0) & (ts_full["t_s"] < 600.0)]
    per_t = (ready["state"] == "ready").groupby(ready["t_s"]).sum()
    assert per_t.nunique() > 1  # the fleet did scale
    assert full.metrics["replicas_ready_mean"] == pytest.approx(per_t.mean(), rel=1e-12)
    assert full.metrics["replicas_ready_max"] == per_t.max()
