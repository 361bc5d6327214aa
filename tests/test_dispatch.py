"""The fleet's event order and routing at scale: the indexed heaps, planned decode runs and
the closed-loop retry bound (sim.engine.heaps, sim.engine.dispatch)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from engine_helpers import fleet, run_small, workload
from hypothesis import given, settings
from hypothesis import strategies as st

import sim
import sim.engine.state as engine_state
from sim.cli import main
from sim.engine import heaps
from sim.engine import kernel as K
from sim.engine.replica import build_replica
from sim.replication.simulate import sample, serve_scenario
from sim.scenario_io import ScenarioError

# --- the heap against a sorted list -----------------------------------------------------


def _top_two(members: set[int], key: np.ndarray) -> list[int]:
    return sorted(members, key=lambda i: (key[i], i))[:2]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["push", "remove", "fix"]), st.integers(0, 11), st.integers(0, 4)
        ),
        min_size=1,
        max_size=80,
    )
)
def test_heap_keeps_the_smallest_key_lowest_id_on_top(ops: list[tuple[str, int, int]]) -> None:
    cap = 12
    heap = np.full(cap, -1, dtype=np.int64)
    pos = np.full(cap, -1, dtype=np.int64)
    key = np.zeros(cap)
    size = np.zeros(1, dtype=np.int64)
    members: set[int] = set()
    for op, item, k in ops:  # few distinct keys: ties are common
        if op == "push" and item not in members:
            key[item] = k
            heaps.push(heap, pos, key, size, 0, item)
            members.add(item)
        elif op == "remove" and item in members:
            heaps.remove(heap, pos, key, size, 0, item)
            members.discard(item)
        elif op == "fix" and item in members:
            key[item] = k
            heaps.fix(heap, pos, key, size, 0, item)
        assert size[0] == len(members)
        assert {int(i) for i in heap[: size[0]]} == members
        assert all(pos[int(i)] == j for j, i in enumerate(heap[: size[0]]))
        expected = _top_two(members, key)
        if expected:
            assert heap[0] == expected[0]
        assert heaps.second(heap, key, size, 0) == (expected[1] if len(expected) > 1 else -1)


# --- planned decode runs give the engine's results -------------------------------------


def _fleet_scenario(router: str, replicas: int = 6, **extra: object) -> sim.Scenario:
    data: dict[str, object] = {
        "name": "dispatch",
        "horizon": {"duration_s": 240.0, "warmup_s": 0.0, "drain_s": 600.0},
        "workload": {
            "classes": [
                {
                    "name": "chat",
                    "arrivals": {"process": "gamma", "rate_rps": 5.0 * replicas, "cv": 2.0},
                    "prompt_tokens": {"dist": "lognormal", "median": 600, "p90": 2000},
                    "output_tokens": {"dist": "geometric", "mean": 150, "max": 2000},
                }
            ]
        },
        "fleet": {
            "model": "llama-3.1-8b",
            "gpu": "h100-sxm",
            "replicas": replicas,
            "router": router,
        },
    }
    scn = sim.Scenario.model_validate(data)
    return scn.with_overrides(dict(extra)) if extra else scn


def _served(
    scn: sim.Scenario, lazy: tuple[str, ...], monkeypatch: pytest.MonkeyPatch
) -> K.KernelState:
    monkeypatch.setattr(engine_state, "LAZY_ROUTERS", lazy)
    served = serve_scenario(scn, sample(scn, 7), 7, build_replica(scn.fleet))
    return served.state


CLOSED_LOOP = {
    "workload.classes.chat.arrivals": {"process": "closed_loop", "users": 60, "think_time_s": 1.0},
}
AUTOSCALED = {
    "min_replicas": 2,
    "max_replicas": 6,
    "metric": "concurrency_per_replica",
    "target": 20.0,
    "interval_s": 15.0,
}
SPOT = {"interruptions_per_hour": 20.0, "notice_s": 30.0}
API = {"model": "together_ai/Llama-3.3-70B-Instruct-Turbo"}
VARIANTS: dict[str, dict[str, object]] = {
    "closed loop": CLOSED_LOOP,
    "spillover": {
        "api": API,
        "routing.policy": "spillover",
        "routing.spillover.max_outstanding_tokens": 20000,
    },
    "autoscaled with spot and failures": {
        "fleet.autoscaler": AUTOSCALED,
        "fleet.spot": SPOT,
        "fleet.failures": {"mtbf_hours": 0.2, "restart_s": 60.0},
    },
    # few sequence slots and little KV: replicas are often full, the shared queue backs up
    "full replicas": {"fleet.engine.max_num_seqs": 8, "fleet.engine.kv_blocks": 900},
    # a request joins at the first boundary after it arrives, not one iteration later
    # (few slots, so that busy replicas often have a free one)
    "not planning ahead": {"fleet.engine.max_num_seqs": 8, "fleet.engine.schedule_ahead": False},
}
CASES: dict[str, dict[str, object]] = {
    "least_requests": {},
    "round_robin": {},
    "random": {},
    "power_of_two": {},
    "least_loaded": {},
    "central": {},
    "power_of_two, spillover": {
        "api": API,
        "routing.policy": "spillover",
        "routing.spillover.max_queue": 2,
    },
    "round_robin, closed loop": CLOSED_LOOP,
    "random, autoscaled with spot": {"fleet.autoscaler": AUTOSCALED, "fleet.spot": SPOT},
    # the routers whose loads are counted as planned runs go on, in every variant
    **{
        f"{router}, {name}": extra
        for router in ("least_loaded", "central")
        for name, extra in VARIANTS.items()
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_planned_decode_runs_match_runs_bounded_by_every_arrival(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Planning a decode run to its end and applying it early only for the replica an
    # arrival goes to must give every request the outcome of an engine that cuts every run
    # at every arrival: the same replica, status and token counts, times equal up to the
    # rounding of summing a run's step times in one piece or several.
    router = case.split(",")[0]
    scn = _fleet_scenario(router, **CASES[case])
    everything = engine_state.LAZY_ROUTERS  # (read before _served replaces it)
    assert router in everything
    eager = _served(scn, (), monkeypatch)
    lazy = _served(scn, everything, monkeypatch)
    assert eager.ep[K.E_LAZY] == 0 and lazy.ep[K.E_LAZY] == 1
    n = int(eager.g[K.G_NREQ])
    assert n == int(lazy.g[K.G_NREQ]) > 500
    np.testing.assert_array_equal(eager.ri[:n, : K.NEXT], lazy.ri[:n, : K.NEXT])
    np.testing.assert_allclose(eager.rf[:n], lazy.rf[:n], rtol=1e-12, atol=1e-9, equal_nan=True)
    for col in (K.BUSY, K.BATCH_INT, K.COMPUTE_INT, K.MEMORY_INT):
        np.testing.assert_allclose(eager.pf[:, col], lazy.pf[:, col], rtol=1e-9)
    # KV occupancy is integrated per run (trapezoid): splitting runs elsewhere moves it a little
    np.testing.assert_allclose(eager.pf[:, K.KV_INT], lazy.pf[:, K.KV_INT], rtol=1e-3)


@settings(max_examples=25, deadline=None)
@given(
    router=st.sampled_from(list(engine_state.LAZY_ROUTERS)),
    replicas=st.integers(1, 4),
    seqs=st.sampled_from([2, 5, 16, 256]),
    kv_blocks=st.sampled_from([None, 400, 2000]),
    ahead=st.booleans(),
    load=st.sampled_from([0.3, 1.0, 2.0]),
    think=st.sampled_from([None, None, 0.0, 0.5]),
    seed=st.integers(0, 1000),
)
def test_planned_runs_match_the_engine_that_stops_at_every_arrival_in_any_fleet(
    router: str,
    replicas: int,
    seqs: int,
    kv_blocks: int | None,
    ahead: bool,
    load: float,
    think: float | None,
    seed: int,
) -> None:
    # The same property over random small fleets: few or many sequence slots, little or
    # ample KV cache, planning ahead or not, light to overloaded, open or closed loop (a
    # closed-loop user with no think time sends at the instant its request finished)
    arrivals: dict[str, object] = {"process": "gamma", "rate_rps": 6.0 * load * replicas, "cv": 2.0}
    if think is not None:
        users = int(12 * load * replicas) + 1
        arrivals = {"process": "closed_loop", "users": users, "think_time_s": think}
    scn = _fleet_scenario(router, replicas=replicas).with_overrides(
        {
            "horizon.duration_s": 60.0,
            "fleet.engine.max_num_seqs": seqs,
            "fleet.engine.kv_blocks": kv_blocks,
            "fleet.engine.schedule_ahead": ahead,
            "workload.classes.chat.arrivals": arrivals,
        }
    )
    everything = saved = engine_state.LAZY_ROUTERS
    try:
        engine_state.LAZY_ROUTERS = ()
        eager = serve_scenario(scn, sample(scn, seed), seed, build_replica(scn.fleet)).state
        engine_state.LAZY_ROUTERS = everything
        lazy = serve_scenario(scn, sample(scn, seed), seed, build_replica(scn.fleet)).state
    finally:
        engine_state.LAZY_ROUTERS = saved
    assert eager.ep[K.E_LAZY] == 0 and lazy.ep[K.E_LAZY] == 1
    n = int(eager.g[K.G_NREQ])
    assert n == int(lazy.g[K.G_NREQ]) > 0
    np.testing.assert_array_equal(eager.ri[:n, : K.NEXT], lazy.ri[:n, : K.NEXT])
    np.testing.assert_allclose(eager.rf[:n], lazy.rf[:n], rtol=1e-12, atol=1e-9, equal_nan=True)


def test_a_fleet_of_hundreds_of_replicas_is_served_in_order() -> None:
    # 300 replicas behind round robin: every request completes, each replica serves its
    # exact share (one in 300, in arrival order), and no replica is left idle
    scn = _fleet_scenario("round_robin", replicas=300).with_overrides({"horizon.duration_s": 20.0})
    out = sim.simulate(scn, seed=3)
    req = out.requests.sort_values("arrival_s", kind="stable")
    assert (req["status"] == "completed").all()
    assert len(req) > 20_000
    np.testing.assert_array_equal(req["replica"].to_numpy(), np.arange(len(req)) % 300)
    assert (out.replicas["gpu_busy_fraction"] > 0).all()


# --- closed loops that cannot make progress ---------------------------------------------


def _hopeless(prompt_tokens: dict[str, object]) -> sim.Scenario:
    return sim.Scenario.model_validate(
        {
            "name": "hopeless",
            "horizon": {"duration_s": 60.0, "warmup_s": 0.0},
            "workload": {
                "classes": [
                    {
                        "name": "huge",
                        "arrivals": {"process": "closed_loop", "users": 5, "think_time_s": 0.0},
                        "prompt_tokens": prompt_tokens,
                        "output_tokens": {"dist": "fixed", "value": 10},
                    }
                ]
            },
            "fleet": {"model": "llama-3.1-8b", "gpu": "h100-sxm", "replicas": 1},
        }
    )


def test_a_rejected_closed_loop_user_backs_off_instead_of_spinning() -> None:
    # every request exceeds the model's context: each user is rejected at once, and with no
    # think time would resend at the same instant forever; it waits RETRY_MIN_S instead
    scn = _hopeless({"dist": "fixed", "value": 200_000})
    served = serve_scenario(scn, sample(scn, 1), 1, build_replica(scn.fleet))
    n = served.n_requests
    status = served.state.ri[:n, K.STATUS]
    assert (status == K.ST_REJECTED).all()
    per_user = 60.0 / K.RETRY_MIN_S
    assert 5 * (per_user - 1) <= n <= 5 * (per_user + 1)


def test_a_closed_loop_that_cannot_make_progress_ends_with_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scn = _hopeless({"dist": "fixed", "value": 200_000})
    with pytest.raises(ScenarioError, match=r"workload\.classes\.0 \(huge\): all [0-9,]+ "):
        sim.simulate(scn, seed=1)
    path = tmp_path / "hopeless.yaml"
    path.write_text(yaml.safe_dump(scn.model_dump(mode="json", exclude_none=True)))
    code = main(["run", str(path), "--replications", "1", "--no-capacity", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "exceeds_max_model_len" in err
    # some requests fit: the loop makes progress and its rejections are only counted
    mixed = _hopeless({"dist": "lognormal", "median": 60_000, "p90": 200_000, "max": 300_000})
    out = sim.simulate(mixed, seed=1)
    assert (out.requests["status"] == "rejected").any()
    assert (out.requests["status"] == "completed").any()


@pytest.mark.parametrize(("router", "third_goes_to"), [("least_requests", 0), ("least_loaded", 1)])
def test_least_requests_counts_requests_where_least_loaded_counts_tokens(
    router: str, third_goes_to: int
) -> None:
    # replica 0 holds one long request, replica 1 one short one: the third arrival ties on
    # requests (to the lowest slot) but not on outstanding tokens
    reqs = [(0.0, 4000, 100), (0.001, 10, 5), (0.002, 10, 5)]
    df, _ = run_small(fleet(replicas=2, router=router), workload(reqs))
    assert df.sort_values("arrival_s")["replica"].tolist() == [0, 1, third_goes_to]
    assert (df["status"] == "completed").all()


def test_least_requests_sends_each_arrival_to_a_replica_holding_the_fewest() -> None:
    # constant 20 ms iterations, so a request's last iteration starts exactly 20 ms before it
    # finishes: at every arrival, count on each replica the requests routed there earlier
    # whose last iteration had not started (the engine's state at an arrival is that after
    # every iteration started before it); the chosen replica holds the fewest, ties going to
    # the lowest slot
    step = 0.02
    scn = _fleet_scenario(
        "least_requests", **{"fleet.step_time": {"model": "constant", "step_s": step}}
    )
    served = serve_scenario(scn, sample(scn, 5), 5, build_replica(scn.fleet))
    n = served.n_requests
    ri, rf = served.state.ri[:n], served.state.rf[:n]
    rep = ri[:, K.REP].astype(np.int64)
    arr, last_start = rf[:, K.ARR], rf[:, K.FINISH] - step
    order = np.argsort(arr, kind="stable")
    for i, q in enumerate(order):
        before = order[:i]
        held = np.bincount(rep[before][last_start[before] >= arr[q]], minlength=scn.fleet.replicas)
        assert rep[q] == int(np.argmin(held)), (i, held, rep[q])
    assert n > 500 and (ri[:, K.STATUS] == K.ST_COMPLETED).all()
    assert len(set(rep.tolist())) == scn.fleet.replicas
