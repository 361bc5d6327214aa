"""Routing between the fleet and the API, decided per request inside the engine."""

from __future__ import annotations

import numpy as np
from engine_helpers import fleet, run_small, workload
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.engine import kernel as K

FLEET_ONLY, ELIGIBLE, API = K.CR_FLEET_ONLY, K.CR_ELIGIBLE, K.CR_API


def _three_classes() -> list[tuple[float, int, int, int, bool]]:
    # class 0 private, class 1 eligible, class 2 listed for the API
    return [(0.1 * i, 20, 4, i % 3, False) for i in range(12)]


def test_self_host_only_keeps_everything() -> None:
    df, _ = run_small(
        fleet(), workload(_three_classes(), classes=3), class_route=[FLEET_ONLY, ELIGIBLE, API]
    )
    assert (df["route"] == "fleet").all()


def test_api_only_sends_all_but_private() -> None:
    df, _ = run_small(
        fleet(),
        workload(_three_classes(), classes=3),
        routing={"policy": "api_only"},
        class_route=[FLEET_ONLY, ELIGIBLE, ELIGIBLE],
    )
    on_api = df["route"] == "api"
    assert (on_api == (df["class_name"] != "c0")).all()
    assert (df.loc[on_api, "replica"] == -1).all()
    assert (df["status"] == "completed").all()


def test_class_based_sends_listed_classes() -> None:
    df, _ = run_small(
        fleet(),
        workload(_three_classes(), classes=3),
        routing={"policy": "class_based", "api_classes": ["c2"]},
        class_route=[FLEET_ONLY, ELIGIBLE, API],
    )
    assert ((df["route"] == "api") == (df["class_name"] == "c2")).all()


def test_spillover_on_queue_depth_exact() -> None:
    # one slot, queue threshold 1: A runs, B waits (queue 0 -> 1), C finds 1 waiting and
    # spills; D arrives after A finished and B started, finds an empty queue and stays.
    spec = fleet(step_s=0.1, engine={"max_num_seqs": 1})
    reqs = [(0.0, 5, 5, 0, False), (0.01, 5, 5, 0, False), (0.02, 5, 5, 0, False)]
    reqs.append((0.55, 5, 5, 0, False))
    df, _ = run_small(
        spec,
        workload(reqs),
        routing={"policy": "spillover", "spillover": {"max_queue": 1}},
        class_route=[ELIGIBLE],
    )
    assert list(df["route"]) == ["fleet", "fleet", "api", "fleet"]


def test_spillover_on_predicted_ttft() -> None:
    # linear prefill of 1 ms per token: a 1,000-token prompt behind 1,000 queued tokens is
    # predicted at about 2 s; the threshold of 1.5 s sends the third request to the API
    spec = fleet(
        step_time={"model": "linear", "c0_s": 0.0, "c_prefill_token_s": 1e-3},
        engine={"max_num_seqs": 1, "max_num_batched_tokens": 100_000},
    )
    reqs = [(0.0, 1000, 50, 0, False), (0.001, 1000, 50, 0, False), (0.002, 1000, 50, 0, False)]
    df, _ = run_small(
        spec,
        workload(reqs),
        routing={"policy": "spillover", "spillover": {"max_predicted_ttft_s": 1.5}},
        class_route=[ELIGIBLE],
    )
    assert list(df["route"]) == ["fleet", "fleet", "api"]


def test_what_the_fleet_must_reject_goes_to_the_api_when_allowed() -> None:
    spec = fleet(engine={"kv_blocks": 2, "block_tokens": 4})
    reqs = [(0.0, 20, 4, 0, False), (0.0, 20, 4, 1, False)]
    df, _ = run_small(
        spec,
        workload(reqs, classes=2),
        routing={"policy": "spillover", "spillover": {"max_queue": 10}},
        class_route=[ELIGIBLE, FLEET_ONLY],
    )
    assert list(df["route"]) == ["api", "fleet"]
    assert list(df["status"]) == ["completed", "rejected"]
    assert df.iloc[1]["reason"] == "exceeds_kv_capacity"


@settings(max_examples=60, deadline=None)
@given(
    policy=st.sampled_from(["api_only", "class_based", "spillover", "cold_start_spill"]),
    routes=st.lists(st.sampled_from([FLEET_ONLY, ELIGIBLE, API]), min_size=3, max_size=3),
    kv_blocks=st.integers(2, 30),
    max_queue=st.integers(0, 3),
    seed=st.integers(0, 10_000),
)
def test_private_classes_never_reach_the_api(
    policy: str, routes: list[int], kv_blocks: int, max_queue: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    n = 30
    reqs = [
        (float(t), int(p), int(o), int(c), False)
        for t, p, o, c in zip(
            np.sort(rng.uniform(0, 3, n)),
            rng.integers(1, 80, n),
            rng.integers(1, 30, n),
            rng.integers(0, 3, n),
            strict=True,
        )
    ]
    routing: dict[str, object] = {"policy": policy}
    if policy == "class_based":
        routing["api_classes"] = ["c2"]
    if policy == "spillover":
        routing["spillover"] = {"max_queue": max_queue}
    spec = fleet(step_s=0.05, engine={"kv_blocks": kv_blocks, "block_tokens": 4})
    df, run = run_small(spec, workload(reqs, classes=3), routing=routing, class_route=routes)
    private = np.isin(
        df["class_name"].astype(str), [f"c{i}" for i, r in enumerate(routes) if r == 0]
    )
    assert (df.loc[private, "route"] == "fleet").all()
    # and nothing is lost: fleet accounting balances with part of the traffic gone
    assert (run.state.pi[:, K.OUTST] == 0).all()
    assert (run.state.pi[:, K.FREE] == run.state.replica.kv_blocks).all()
    assert set(df["status"].unique()) <= {"completed", "rejected", "failed"}
