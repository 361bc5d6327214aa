"""Automatic prefix caching of a class-level shared prefix: exact event logs on one replica.

Timing uses the linear step model ``0.1 s + 0.01 s per prefill token`` so that skipping a
cached prefix shows up in TTFT; blocks hold 4 tokens and the class prefix is 8 tokens (two
full blocks). The hit rate's denominator is every prompt token looked up at an admission.
"""

from __future__ import annotations

import pytest
from engine_helpers import fleet, run_small, workload

from sim.engine import kernel as K
from sim.engine.state import FleetState

LINEAR = {"model": "linear", "c0_s": 0.1, "c_prefill_token_s": 0.01}


def cached(state: FleetState, r: int = 0) -> tuple[int, int]:
    """Replica ``r``'s cached blocks and the references on them."""
    used = state.ct[r, :, K.T_KEY] >= 0
    assert int(used.sum()) == state.pi[r, K.CSIZE]
    return int(used.sum()), int(state.ct[r, used, K.T_REF].sum())


def test_second_request_prefills_only_its_suffix() -> None:
    spec = fleet(step_time=LINEAR, engine={"block_tokens": 4, "kv_blocks": 16})
    # A computes the 8-token prefix + 2 tokens; B arrives after A left and reuses it
    wl = workload([(0.0, 10, 2, 0, True), (5.0, 10, 2, 0, True)])
    df, run = run_small(spec, wl, prefix_tokens=[8])
    a, b = df.iloc[0], df.iloc[1]
    assert a["ttft_s"] == pytest.approx(0.1 + 0.01 * 10)  # whole prompt
    assert b["ttft_s"] == pytest.approx(0.1 + 0.01 * 2)  # only the suffix
    pi = run.state.pi[0]
    assert pi[K.PFX_ASKED] == 20 and pi[K.PFX_HIT] == 8  # 8 of 20 prompt tokens
    # the prefix stays cached (2 blocks), unreferenced, so evictable and counted free
    assert cached(run.state) == (2, 0)
    assert pi[K.EVICT] == 2 and pi[K.FREE] == 16
    assert df["cached_tokens"].tolist() == [0, 8]


def test_requests_without_the_prefix_do_not_hit() -> None:
    spec = fleet(step_time=LINEAR, engine={"block_tokens": 4, "kv_blocks": 16})
    wl = workload([(0.0, 10, 2, 0, True), (5.0, 10, 2, 0, False)])
    df, run = run_small(spec, wl, prefix_tokens=[8])
    assert df.iloc[1]["ttft_s"] == pytest.approx(0.1 + 0.01 * 10)
    assert run.state.pi[0, K.PFX_HIT] == 0


def test_concurrent_sharers_hold_one_copy() -> None:
    # B is admitted while A still runs: it shares A's published prefix blocks.
    spec = fleet(step_time=LINEAR, engine={"block_tokens": 4, "kv_blocks": 16})
    wl = workload([(0.0, 10, 5, 0, True), (0.25, 10, 5, 0, True)])
    df, run = run_small(spec, wl, prefix_tokens=[8])
    b = df.iloc[1]
    # A prefills in [0, 0.2] and decodes in [0.2, 0.3]; B joins at 0.3 and prefills only its
    # 2 suffix tokens next to A's decode: [0.3, 0.42]
    assert b["queue_s"] == pytest.approx(0.05)
    assert b["ttft_s"] == pytest.approx(0.17)
    assert run.state.pi[0, K.PFX_HIT] == 8
    assert run.state.pi[0, K.FREE] == 16 and cached(run.state) == (2, 0)


def test_lru_eviction_under_memory_pressure_then_partial_hit() -> None:
    # 6 blocks. A1 caches class 0's prefix (2 blocks). B (class 1, 20 tokens = 5 blocks)
    # needs one of them: the LRU prefix loses its last block. A2 then hits one block
    # (4 tokens), recomputes the rest of the prefix and publishes it again.
    spec = fleet(step_time=LINEAR, engine={"block_tokens": 4, "kv_blocks": 6})
    wl = workload(
        [(0.0, 10, 2, 0, True), (5.0, 20, 1, 1, False), (10.0, 10, 2, 0, True)], classes=2
    )
    df, run = run_small(spec, wl, prefix_tokens=[8, 0])
    a2 = df.iloc[2]
    assert a2["ttft_s"] == pytest.approx(0.1 + 0.01 * 6)
    pi = run.state.pi[0]
    assert pi[K.PFX_HIT] == 4 and pi[K.PFX_ASKED] == 40
    assert cached(run.state) == (2, 0)  # published again in full
    assert pi[K.FREE] == 6 and pi[K.EVICT] == 2
    assert (df["status"] == "completed").all()
