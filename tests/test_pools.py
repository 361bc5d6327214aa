"""A fleet of several pools: exact event logs with overflow, conservation across pools and
the API, pools serving disjoint classes against fleets of one pool, per-pool bills."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from engine_helpers import fleet, workload
from pydantic import ValidationError

from sim import simulate
from sim.engine import kernel as K
from sim.engine.pools import PoolLayout, serve_pools
from sim.engine.replica import build_replica
from sim.engine.spec import Horizon
from sim.replication.pooled import pool_layout, pool_usd_per_1m_tokens
from sim.scenario import Scenario
from sim.scenario_io import format_validation_error

# --- the engine: two pools in step -----------------------------------------------------------


def _layout(*fleets: Any, candidates: tuple[tuple[int, ...], ...], **kw: Any) -> PoolLayout:
    return PoolLayout(
        names=tuple(f"p{i}" for i in range(len(fleets))),
        fleets=fleets,
        replicas=tuple(build_replica(f) for f in fleets),
        candidates=candidates,
        **kw,
    )


def _serve(layout: PoolLayout, wl: Any, seed: int = 0) -> pd.DataFrame:
    hz = Horizon(duration_s=100.0, warmup_s=0.0, drain_s=1e6, sample_interval_s=100.0)
    n = len(layout.names)
    served = serve_pools(
        layout,
        wl,
        hz,
        router_rngs=[np.random.default_rng(seed + i) for i in range(n)],
        fault_rngs=[np.random.default_rng(seed + 10 + i) for i in range(n)],
    )
    return served.requests()


def test_overflow_exact_event_log() -> None:
    # Pool p0 steps every 0.1 s, p1 every 0.2 s; one sequence slot each. Class 0 tries p0
    # first, then p1; when neither has a free slot, the one with fewer outstanding tokens
    # (same KV cache) takes it. Class 1 is p1's alone.
    fast = fleet(step_s=0.1, engine={"max_num_seqs": 1})
    slow = fleet(step_s=0.2, engine={"max_num_seqs": 1})
    layout = _layout(fast, slow, candidates=((0, 1), (1,)))
    reqs = [
        (0.0, 10, 3, 0, False),  # a: p0 is free: runs [0, 0.3]
        (0.05, 10, 50, 0, False),  # b: p0 holds a: p1, prefill [0.05, 0.25], 49 decodes
        (0.06, 10, 2, 1, False),  # c: p1's own: waits for b (finishes 10.05)
        (0.1, 10, 2, 0, False),  # d: both full; p0 has far less work: waits for a
        (0.35, 10, 2, 0, False),  # e: both full (d runs on p0): p0 again, after d
        (0.75, 10, 2, 0, False),  # f: p0 idle since 0.7: starts at once
    ]
    df = _serve(layout, workload(reqs, classes=2))
    assert df["pool"].tolist() == ["p0", "p1", "p1", "p0", "p0", "p0"]
    assert df["replica"].tolist() == [0, 1, 1, 0, 0, 0]  # slots numbered across pools
    expect = {  # (ttft, finish) by hand
        0: (0.1, 0.3),
        1: (0.2, 0.25 + 49 * 0.2),
        2: (10.25 - 0.06, 10.45),
        3: (0.4 - 0.1, 0.5),
        4: (0.6 - 0.35, 0.7),
        5: (0.1, 0.95),
    }
    for i, (ttft, finish) in expect.items():
        assert df.loc[i, "ttft_s"] == pytest.approx(ttft), i
        assert df.loc[i, "finish_s"] == pytest.approx(finish), i
    assert (df["status"] == "completed").all()


def test_room_thresholds_and_least_loaded_choice() -> None:
    fast = fleet(step_s=0.1, engine={"max_num_seqs": 8})
    slow = fleet(step_s=0.2, engine={"max_num_seqs": 8})
    # eight requests at once-ish: without thresholds p0 has room for all eight (8 slots)
    reqs = [(0.01 * i, 10, 20, 0, False) for i in range(8)]
    df = _serve(_layout(fast, slow, candidates=((0, 1),)), workload(reqs))
    assert (df["pool"] == "p0").all()
    # at most 40 outstanding tokens per replica: a request holds 29 (prompt + output - 1),
    # 19 once its prefill iteration has started. a (0.00) starts on p0 at once: p0 holds
    # 19; b (0.01) waits on p0: 48, p0 is full; c (0.02) goes to p1 and starts there (19);
    # d (0.03) to p1 (48); e (0.04): both full at 48, the first listed takes it
    tight = _layout(fast, slow, candidates=((0, 1),), max_outstanding_tokens_per_replica=40)
    df = _serve(tight, workload(reqs))
    assert df["pool"].tolist()[:5] == ["p0", "p0", "p1", "p1", "p0"]
    assert set(df["pool"]) == {"p0", "p1"}
    # least_loaded: the first request goes to p0 (tie: the first listed), the second to the
    # pool holding no work
    least = _layout(fast, slow, candidates=((0, 1),), choice="least_loaded")
    df = _serve(least, workload([(0.0, 10, 20, 0, False), (0.01, 10, 20, 0, False)]))
    assert df["pool"].tolist() == ["p0", "p1"]


def test_conservation_every_request_ends_once_in_one_pool_or_the_api() -> None:
    data = _two_pool_data(rate=30.0, duration=120.0)
    data["routing"] = {"policy": "spillover", "spillover": {"max_queue": 2}}
    data["workload"]["classes"][1]["private"] = True  # docs never leaves the fleet
    s = Scenario.model_validate(data)
    out = simulate(s, seed=3)
    r = out.requests
    n_open = len(r)
    assert out.n_requests == n_open
    on_fleet = r["route"] == "fleet"
    # every request once: a pool when on the fleet, the API otherwise
    assert r["pool"].notna().all()
    assert ((r["replica"] >= 0) == on_fleet).all()
    pools = r.loc[on_fleet, "pool"].astype(str)
    first_slot = {"h100": 0, "l40s": 2}
    slot_pool = np.where(r.loc[on_fleet, "replica"] >= first_slot["l40s"], "l40s", "h100")
    assert (pools.to_numpy() == slot_pool).all()
    assert set(r["status"]) <= {"completed", "rejected", "failed"}
    assert (r["route"] == "api").sum() > 0 and on_fleet.sum() > 0
    docs = r["class_name"] == "docs"
    assert docs.any() and (r.loc[docs, "route"] == "fleet").all()
    assert set(r.loc[docs, "pool"].astype(str)) == {"h100", "l40s"}
    # the same requests as the workload, each once, in arrival order
    assert (np.diff(r["arrival_s"].to_numpy()) >= 0).all()
    m = out.metrics
    served = sum(m[f"requests_served[pool:{p}]"] for p in ("h100", "l40s"))
    window = (r["arrival_s"] >= 10.0) & (r["arrival_s"] < 120.0)
    assert served == ((r["status"] == "completed") & on_fleet & window).sum()
    assert m["fleet_gpu_usd"] == pytest.approx(
        m["gpu_usd[pool:h100]"] + m["gpu_usd[pool:l40s]"], rel=1e-12
    )


def _two_pool_data(rate: float = 4.0, duration: float = 120.0) -> dict[str, Any]:
    return {
        "name": "two-pools",
        "horizon": {"duration_s": duration, "warmup_s": 10.0},
        "workload": {
            "classes": [
                {
                    "name": "chat",
                    "arrivals": {"process": "poisson", "rate_rps": rate},
                    "prompt_tokens": {"dist": "lognormal", "median": 400, "p90": 1500},
                    "output_tokens": {"dist": "geometric", "mean": 120},
                },
                {
                    "name": "docs",
                    "arrivals": {"process": "gamma", "rate_rps": rate / 4, "cv": 2.0},
                    "prompt_tokens": {"dist": "fixed", "value": 3000},
                    "output_tokens": {"dist": "fixed", "value": 200},
                },
            ]
        },
        "fleet": {
            "policy": "overflow",
            "order": ["h100", "l40s"],
            "pools": [
                {
                    "name": "h100",
                    "model": "llama-3.1-8b",
                    "gpu": "h100-sxm",
                    "replicas": 2,
                    "router": "power_of_two",
                    "engine": {"max_num_seqs": 8},
                    "pricing": {"kind": "reserved", "usd_per_gpu_hour": 2.0},
                },
                {
                    "name": "l40s",
                    "model": "llama-3.1-8b",
                    "gpu": "l40s",
                    "replicas": 2,
                    "router": "random",
                    "pricing": {"usd_per_gpu_hour": 0.9},
                },
            ],
        },
        "api": {"usd_per_1m_input": 0.15, "usd_per_1m_output": 0.6},
    }


def test_disjoint_pools_give_the_results_of_one_pool_fleets() -> None:
    # chat only on h100, docs only on l40s: each pool runs exactly as a fleet of one pool
    # serving its class alone (same seed: same requests, same router draws)
    data = _two_pool_data(rate=6.0)
    data["workload"]["classes"][0]["pools"] = ["h100"]
    data["workload"]["classes"][1]["pools"] = ["l40s"]
    both = simulate(Scenario.model_validate(data), seed=11)
    cols = ["arrival_s", "input_tokens", "output_tokens", "ttft_s", "e2e_s", "finish_s"]
    for k, pool in enumerate(("h100", "l40s")):
        alone = dict(data)
        alone["workload"] = {"classes": [dict(data["workload"]["classes"][k], pools=None)]}
        alone["fleet"] = dict(data["fleet"], pools=[data["fleet"]["pools"][k]], order=[pool])
        one = simulate(Scenario.model_validate(alone), seed=11)
        name = data["workload"]["classes"][k]["name"]
        mine = both.requests[both.requests["class_name"] == name].reset_index(drop=True)
        pd.testing.assert_frame_equal(mine[cols], one.requests[cols], check_exact=True)
        for metric in ("ttft_p99_s", "e2e_mean_s", "slo_attainment"):
            # a scenario of one class names its metrics without the class
            assert both.metrics[f"{metric}[{name}]"] == one.metrics[metric], metric
        for metric in ("gpu_usd", "gpu_hours_busy", "gpu_busy_fraction", "tokens_served"):
            key = f"{metric}[pool:{pool}]"
            assert both.metrics[key] == one.metrics[key], key


def test_fixed_pools_bill_by_hand() -> None:
    # a fixed fleet is paid for the window and the drain: replicas × tp × price × hours
    s = Scenario.model_validate(_two_pool_data(rate=1.0, duration=310.0))
    out = simulate(s, seed=2)
    m = out.metrics
    drain = {p: m["fleet_drain_s"] for p in ("h100", "l40s")}
    # reserved capacity is paid for the window (its drain is within what is paid anyway)
    assert m["gpu_usd[pool:h100]"] == pytest.approx(2 * 2.0 * 300.0 / 3600.0, rel=1e-9)
    hours = m["gpu_hours_paid[pool:l40s]"]
    assert hours >= 2 * 300.0 / 3600.0
    assert hours <= 2 * (300.0 + drain["l40s"]) / 3600.0 + 1e-12
    assert m["gpu_usd[pool:l40s]"] == pytest.approx(0.9 * hours, rel=1e-12)
    tokens = m["tokens_served[pool:h100]"]
    assert m["gpu_usd_per_1m_tokens[pool:h100]"] == pytest.approx(
        m["gpu_usd[pool:h100]"] / tokens * 1e6, rel=1e-12
    )
    assert m["replicas[pool:h100]"] == 2.0 and m["gpus[pool:l40s]"] == 2.0
    # no hidden costs: the pools' monthly GPU bills add up to the fleet's monthly cost
    monthly = m["gpu_usd_per_month[pool:h100]"] + m["gpu_usd_per_month[pool:l40s]"]
    assert monthly == pytest.approx(m["fleet_cost_usd_per_month"], rel=1e-12)
    assert m["gpu_usd_per_month[pool:h100]"] == pytest.approx(2 * 2.0 * 730.0, rel=1e-9)


def test_policies_order_the_pools() -> None:
    data = _two_pool_data()
    data["fleet"]["order"] = ["l40s", "h100"]
    assert pool_layout(Scenario.model_validate(data)).candidates == ((1, 0), (1, 0))
    data["fleet"]["policy"] = "cheapest"
    s = Scenario.model_validate(data)
    price = [pool_usd_per_1m_tokens(s, p) for p in s.pools]
    cheap = tuple(int(i) for i in np.argsort(price))
    assert pool_layout(s).candidates == (cheap, cheap)
    # an autoscaled pool costs only what it starts: it comes after the fixed ones, dear or not
    dear = int(np.argmax(price))
    auto = {"min_replicas": 0, "max_replicas": 2, "target": 4.0}
    data["fleet"]["pools"][1 - dear]["autoscaler"] = auto
    s = Scenario.model_validate(data)
    assert pool_layout(s).candidates == ((dear, 1 - dear), (dear, 1 - dear))
    del data["fleet"]["pools"][1 - dear]["autoscaler"]
    data["fleet"]["policy"] = "first_with_room"
    data["workload"]["classes"][1]["pools"] = ["l40s", "h100"]
    assert pool_layout(Scenario.model_validate(data)).candidates == ((0, 1), (1, 0))


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"fleet.pools.1.name": "h100"}, "fleet.pools.1.name", "two pools are named 'h100'"),
        ({"workload.classes.0.pools": ["a100"]}, "workload.classes.0.pools.0", "no pool named"),
        ({"fleet.order": ["h100", "b200"]}, "fleet.order.1", "no pool named 'b200'"),
        ({"calendar.idle_replicas": 1}, "calendar.idle_replicas", "each pool keeps"),
    ],
)
def test_bad_pool_input_names_the_field(change: dict[str, Any], where: str, words: str) -> None:
    base = Scenario.model_validate(_two_pool_data())
    with pytest.raises(ValidationError) as exc:
        base.with_overrides(change)
    line = format_validation_error(exc.value, source="s.yaml", data=_with(change))
    assert line.startswith(f"s.yaml: {where}: "), line
    assert words in line, line


def _with(change: dict[str, Any]) -> dict[str, Any]:
    from sim.overrides import apply_overrides

    return apply_overrides(Scenario.model_validate(_two_pool_data()), change)


def test_a_closed_loop_needs_one_pool() -> None:
    data = _two_pool_data()
    data["workload"]["classes"][0]["arrivals"] = {
        "process": "closed_loop",
        "users": 4,
        "think_time_s": 1.0,
    }
    with pytest.raises(ValidationError, match="closed loop of users: give it one pool"):
        Scenario.model_validate(data)
    data["workload"]["classes"][0]["pools"] = ["l40s"]
    out = simulate(Scenario.model_validate(data), seed=1)
    closed = out.requests[out.requests["class_name"] == "chat"]
    assert len(closed) > 0 and (closed["pool"] == "l40s").all()


def test_single_fleet_features_refuse_pools() -> None:
    from sim.scenario_io import ScenarioError

    s = Scenario.model_validate(_two_pool_data())
    with pytest.raises(ScenarioError, match="not available for a fleet of several pools"):
        s.single_fleet("crossover plan over GPU types and counts")
    with pytest.raises(ScenarioError, match="records: all"):
        simulate(s.with_overrides({"horizon.records": "none"}), seed=1)


def _as_one_pool(s: Scenario) -> Scenario:
    data = s.model_dump(mode="python", by_alias=True)
    data["fleet"] = {"pools": [{**data["fleet"], "name": "only"}]}
    data["options"] = None  # (an option may set single-pool fleet paths)
    return Scenario.model_validate(data)


@pytest.mark.parametrize(
    ("path", "overrides"),
    [
        ("scenarios/chat-startup.yaml", {"horizon.duration_s": 300, "horizon.warmup_s": 30}),
        (
            "scenarios/mooncake-prefix-caching.yaml",
            {"horizon.duration_s": 120, "horizon.warmup_s": 10},
        ),
    ],
)
def test_a_fleet_of_one_pool_is_the_single_pool_fleet(path: str, overrides: dict[str, Any]) -> None:
    # a router without random draws: the pooled path (its engine driver, API stream, bills,
    # prompt-cache replay) gives exactly the single-pool run's results
    from sim import load_scenario

    s = load_scenario(path).with_overrides(overrides)
    assert s.single_fleet("a test").router in ("least_loaded", "prefix_affinity")
    one = simulate(s, seed=5)
    pooled = simulate(_as_one_pool(s), seed=5)
    cols = [c for c in one.requests.columns if c in pooled.requests.columns]
    assert set(pooled.requests.columns) - set(cols) == {"pool"}
    pd.testing.assert_frame_equal(one.requests[cols], pooled.requests[cols], check_exact=True)
    for key, value in one.metrics.items():
        assert pooled.metrics[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
    assert pooled.metrics["gpu_usd[pool:only]"] == pytest.approx(one.metrics["fleet_gpu_usd"])


def test_an_option_of_the_decision_can_be_a_pool_layout() -> None:
    import sim
    from sim.scenario import option_scenario

    layout = {
        "fleet": {
            "policy": "overflow",
            "pools": [
                {"name": "h100", "model": "llama-3.1-8b", "gpu": "h100-sxm",
                 "engine": {"max_num_seqs": 8}, "pricing": {"usd_per_gpu_hour": 3.0}},
                {"name": "l40s", "model": "llama-3.1-8b", "gpu": "l40s",
                 "pricing": {"usd_per_gpu_hour": 1.0}},
            ],
        }
    }  # fmt: skip
    data = _two_pool_data(rate=4.0, duration=120.0)
    data["fleet"] = {"model": "llama-3.1-8b", "gpu": "h100-sxm", "replicas": 2,
                     "pricing": {"usd_per_gpu_hour": 3.0}}  # fmt: skip
    data["options"] = ["self_host_only", {"name": "split", "set": layout}]
    s = Scenario.model_validate(data)
    res = sim.run(s, replications=2, seed=3)
    table = res.decision().table.set_index("option")
    assert set(table.index) == {"self_host_only", "split"}
    # the option is the layout's scenario, simulated on the same replication seeds
    direct = sim.run(option_scenario(s, layout), replications=2, seed=3)
    cost = direct.replications["total_cost_usd_per_month"].mean()
    assert table.loc["split", "cost_per_month_usd"] == pytest.approx(cost, rel=1e-12)
    assert (
        table.loc["split", "cost_per_month_usd"] < table.loc["self_host_only", "cost_per_month_usd"]
    )


def test_an_autoscaled_overflow_pool_starts_from_zero_for_what_it_is_sent() -> None:
    # the fixed pool's 4 slots fill up; the autoscaled pool, at 0 replicas but free to
    # start 2, has room: overflow queues there, its autoscaler starts replicas, they serve
    data = _two_pool_data(rate=6.0, duration=600.0)
    base, burst = data["fleet"]["pools"]
    base["engine"] = {"max_num_seqs": 4}
    burst.update(
        replicas=0,
        autoscaler={"min_replicas": 0, "max_replicas": 2, "metric": "queue_per_replica",
                    "target": 1.0, "interval_s": 10.0, "cold_start_s": 30.0},
    )  # fmt: skip
    out = simulate(Scenario.model_validate(data), seed=2)
    r, m = out.requests, out.metrics
    sent = r[r["pool"] == "l40s"]
    assert len(sent) > 0 and m["scale_ups"] >= 1
    assert m["requests_served[pool:l40s]"] > 0
    # the first ones sent there arrived before any replica was ready: they waited for it
    first = sent.iloc[0]
    assert bool(first["cold_start"]) and first["ttft_s"] >= 30.0
    assert 0 < m["replicas[pool:l40s]"] <= 2


@pytest.mark.parametrize("router", K.ROUTERS)
def test_the_dispatcher_shows_each_request_what_one_engine_would(router: str) -> None:
    # every request may go to two pools but always finds room in the first (256 slots, low
    # load): it must see, and get, exactly what a fleet of that pool alone gives it, under
    # every router (same pool name: same router draws), through the dispatcher's path
    data = _two_pool_data(rate=6.0, duration=120.0)
    data["workload"]["classes"][1]["prefix"] = {"tokens": 1024, "share": 0.8}
    first = dict(data["fleet"]["pools"][0], router=router, replicas=3,
                 engine={"max_num_seqs": 256})  # fmt: skip
    data["fleet"] = {"policy": "first_with_room", "pools": [first, data["fleet"]["pools"][1]]}
    both = simulate(Scenario.model_validate(data), seed=7)
    assert (both.requests["pool"] == "h100").all()
    alone = dict(data, fleet={"pools": [first]})
    one = simulate(Scenario.model_validate(alone), seed=7)
    cols = ["arrival_s", "class_name", "replica", "ttft_s", "e2e_s", "cached_tokens"]
    pd.testing.assert_frame_equal(both.requests[cols], one.requests[cols], check_exact=True)
