"""Exact event logs: a handful of requests through one replica with a constant step time.

Every timestamp below is derived by hand from the scheduler rules (see sim/engine/kernel.py):
admission at step boundaries, prefill producing the first token, one token per decode step,
chunked prefill under the token budget, preemption of the newest sequence by recompute.
"""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import fleet, run_small, workload

from sim.engine import kernel as K


def test_single_request_timeline() -> None:
    df, _ = run_small(fleet(step_s=0.1), workload([(0.0, 10, 3)]))
    r = df.iloc[0]
    assert r["status"] == "completed"
    assert r["queue_s"] == pytest.approx(0.0)
    assert r["ttft_s"] == pytest.approx(0.1)  # prefill step
    assert r["finish_s"] == pytest.approx(0.3)  # + two decode steps
    assert r["e2e_s"] == pytest.approx(0.3)
    assert r["tpot_s"] == pytest.approx(0.1)


def test_arrival_waits_for_next_step_boundary() -> None:
    # A arrives at 0 and starts at once; B arrives mid-step and joins at the 0.1 boundary.
    df, _ = run_small(fleet(step_s=0.1), workload([(0.0, 10, 3), (0.05, 10, 2)]))
    a, b = df.iloc[0], df.iloc[1]
    assert a["finish_s"] == pytest.approx(0.3)
    assert b["queue_s"] == pytest.approx(0.05)
    assert b["ttft_s"] == pytest.approx(0.15)  # its prefill runs in step [0.1, 0.2]
    assert b["finish_s"] == pytest.approx(0.3)  # one decode step after


def test_arrival_exactly_at_boundary_joins_that_step() -> None:
    df, _ = run_small(fleet(step_s=0.25), workload([(0.0, 10, 3), (0.25, 10, 2)]))
    b = df.iloc[1]
    assert b["queue_s"] == pytest.approx(0.0)
    assert b["ttft_s"] == pytest.approx(0.25)


def test_schedule_ahead_admits_one_iteration_later_while_sequences_run() -> None:
    # The scheduler plans step i + 1 while step i runs. A starts at once on the idle replica
    # (0); B arrives at 0.05 during step [0, 0.1], which was planned at 0 without it, so the
    # step [0.1, 0.2] (planned at 0) runs without it too: B joins at 0.2. C arrives at 0.25,
    # after the last step that holds A started (0.2), but A finishes at 0.3 and B still
    # runs, so C waits for the step planned at 0.3: it joins at 0.4. D arrives on an idle
    # replica at 5.0 and starts at once.
    ahead = fleet(step_s=0.1, engine={"schedule_ahead": True})
    df, _ = run_small(ahead, workload([(0.0, 10, 3), (0.05, 10, 4), (0.25, 10, 2), (5.0, 10, 2)]))
    a, b, c, d = (df.iloc[i] for i in range(4))
    assert a["finish_s"] == pytest.approx(0.3)
    assert b["queue_s"] == pytest.approx(0.15)
    assert b["ttft_s"] == pytest.approx(0.25)  # prefill in [0.2, 0.3]
    assert b["finish_s"] == pytest.approx(0.6)  # three decode steps after
    assert c["queue_s"] == pytest.approx(0.15)
    assert c["ttft_s"] == pytest.approx(0.25)  # prefill in [0.4, 0.5]
    assert c["finish_s"] == pytest.approx(0.6)
    assert d["queue_s"] == pytest.approx(0.0)
    assert d["ttft_s"] == pytest.approx(0.1)
    # the same requests with a scheduler planning at each boundary: B joins at 0.1, C at 0.3
    now, _ = run_small(fleet(step_s=0.1), workload([(0.0, 10, 3), (0.05, 10, 4), (0.25, 10, 2)]))
    assert now.iloc[1]["queue_s"] == pytest.approx(0.05)
    assert now.iloc[2]["queue_s"] == pytest.approx(0.05)


def test_chunked_prefill_splits_prompt_over_steps() -> None:
    spec = fleet(step_s=0.1, engine={"max_num_batched_tokens": 4})
    df, run = run_small(spec, workload([(0.0, 10, 2)]))
    r = df.iloc[0]
    assert r["ttft_s"] == pytest.approx(0.3)  # chunks of 4, 4, 2 tokens
    assert r["finish_s"] == pytest.approx(0.4)
    assert int(run.state.pi[0, K.STEPS]) == 4  # STEPS: three prefill chunks and one decode


def test_without_chunked_prefill_long_prompt_is_rejected() -> None:
    spec = fleet(step_s=0.1, engine={"max_num_batched_tokens": 4, "chunked_prefill": False})
    df, _ = run_small(spec, workload([(0.0, 10, 2), (0.0, 3, 2)]))
    assert list(df["status"]) == ["rejected", "completed"]
    assert df.iloc[0]["reason"] == "exceeds_max_num_batched_tokens"


def test_token_budget_shared_between_decode_and_prefill() -> None:
    # Budget 4: A decodes (1 token) while B's 6-token prompt is chunked 3 + 3.
    spec = fleet(step_s=1.0, engine={"max_num_batched_tokens": 4})
    df, _ = run_small(spec, workload([(0.0, 4, 5), (0.5, 6, 1)]))
    a, b = df.iloc[0], df.iloc[1]
    assert a["ttft_s"] == pytest.approx(1.0)
    # step [1,2]: A decode + B chunk 3; step [2,3]: A decode + B chunk 3 -> B's token at 3
    assert b["ttft_s"] == pytest.approx(2.5)
    assert b["finish_s"] == pytest.approx(3.0)
    assert a["finish_s"] == pytest.approx(5.0)


def test_max_num_seqs_makes_requests_queue() -> None:
    spec = fleet(step_s=0.1, engine={"max_num_seqs": 1})
    df, _ = run_small(spec, workload([(0.0, 5, 3), (0.0, 5, 2)]))
    a, b = df.iloc[0], df.iloc[1]
    assert a["finish_s"] == pytest.approx(0.3)
    assert b["queue_s"] == pytest.approx(0.3)  # admitted when A leaves
    assert b["ttft_s"] == pytest.approx(0.4)
    assert b["finish_s"] == pytest.approx(0.5)


def test_preemption_by_recompute_exact_log() -> None:
    # 4 KV blocks of 4 tokens (16 tokens). Two requests, prompt 4, output 8 (11 tokens of
    # KV each at the end) cannot both finish: when A needs its third block at step 5, the
    # newest sequence (B) is preempted, loses its 8 computed tokens, and is re-prefilled
    # (prompt + 5 generated = 9 tokens) once A has finished at t=8.
    spec = fleet(step_s=1.0, engine={"kv_blocks": 4, "block_tokens": 4})
    df, run = run_small(spec, workload([(0.0, 4, 8), (0.0, 4, 8)]))
    a, b = df.iloc[0], df.iloc[1]
    assert a["ttft_s"] == pytest.approx(1.0)
    assert a["finish_s"] == pytest.approx(8.0)
    assert a["preemptions"] == 0
    assert b["ttft_s"] == pytest.approx(1.0)  # its first token is not re-timed
    assert b["preemptions"] == 1
    assert b["recomputed_tokens"] == 8
    assert b["finish_s"] == pytest.approx(11.0)
    assert int(run.state.pi[0, K.FREE]) == 4  # every KV block is free again
    assert int(run.state.pi[0, K.NPREEMPT]) == 1  # one preemption counted by the replica


def test_request_larger_than_kv_cache_is_rejected_with_reason() -> None:
    spec = fleet(step_s=0.1, engine={"kv_blocks": 2, "block_tokens": 4})
    df, _ = run_small(spec, workload([(0.0, 6, 3), (0.0, 6, 4)]))
    assert list(df["status"]) == ["completed", "rejected"]  # 8 tokens fit, 9 do not
    assert df.iloc[1]["reason"] == "exceeds_kv_capacity"
    assert np.isnan(df.iloc[1]["ttft_s"])


def test_max_model_len_rejects() -> None:
    spec = fleet(step_s=0.1, engine={"max_model_len": 10})
    df, _ = run_small(spec, workload([(0.0, 8, 2), (0.0, 8, 3)]))
    assert list(df["status"]) == ["completed", "rejected"]
    assert df.iloc[1]["reason"] == "exceeds_max_model_len"


def test_queue_limit_rejects_queue_full() -> None:
    spec = fleet(step_s=0.1, max_queue=1, engine={"max_num_seqs": 1})
    df, _ = run_small(spec, workload([(0.0, 5, 5), (0.01, 5, 5), (0.02, 5, 5)]))
    # A runs; B waits in the queue (length 1); C finds the queue full.
    assert list(df["status"]) == ["completed", "completed", "rejected"]
    assert df.iloc[2]["reason"] == "queue_full"


def test_round_robin_alternates_replicas() -> None:
    spec = fleet(step_s=0.1, replicas=3, router="round_robin")
    df, _ = run_small(spec, workload([(0.01 * i, 5, 2) for i in range(7)]))
    assert list(df["replica"]) == [0, 1, 2, 0, 1, 2, 0]


def test_least_loaded_picks_replica_with_least_outstanding_work() -> None:
    spec = fleet(step_s=1.0, replicas=2, router="least_loaded")
    # A (long) goes to replica 0; B goes to the empty replica 1; C (after B finished)
    # goes to replica 1 again because A still has work outstanding on replica 0.
    df, _ = run_small(spec, workload([(0.0, 10, 50), (0.1, 10, 2), (5.0, 10, 2)]))
    assert list(df["replica"]) == [0, 1, 1]


def test_central_queue_dispatches_to_first_free_replica() -> None:
    spec = fleet(step_s=1.0, replicas=2, router="central", engine={"max_num_seqs": 1})
    # A, B occupy both replicas; C waits centrally and goes to whichever frees first (B's).
    df, _ = run_small(spec, workload([(0.0, 4, 10), (0.0, 4, 2), (0.5, 4, 2)]))
    assert list(df["replica"]) == [0, 1, 1]
    c = df.iloc[2]
    assert c["queue_s"] == pytest.approx(1.5)  # B finishes at t=2
    assert c["finish_s"] == pytest.approx(4.0)


def test_decode_jump_matches_step_by_step() -> None:
    # A long decode run is advanced in one jump; the result must equal iterating step by
    # step, which a tiny arrival every 0.05 s forces (each arrival bounds the jump).
    spec = fleet(step_s=0.1, replicas=2, router="round_robin")
    jump, _ = run_small(spec, workload([(0.0, 20, 400)]))
    reqs = [(0.0, 20, 400)] + [(0.05 * (i + 1), 1, 1) for i in range(800)]
    stepped, _ = run_small(spec, workload(reqs))
    assert stepped.iloc[0]["finish_s"] == pytest.approx(jump.iloc[0]["finish_s"], abs=1e-9)
    assert jump.iloc[0]["finish_s"] == pytest.approx(40.0)
