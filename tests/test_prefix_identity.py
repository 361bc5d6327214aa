"""The content-addressed prefix cache against oracles computed from the hashes alone.

* exact event logs for a handful of requests whose prompt blocks share prefixes;
* an unbounded cache on the shipped Mooncake trace, served one request at a time: the
  cached tokens equal the trace's prefix reuse computed independently from ``hash_ids``;
* a bounded cache: an independent block-level LRU simulation in plain Python gives the same
  hits, request by request.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from engine_helpers import fleet, run_small
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_accounting import _check_conservation

from sim.engine import kernel as K
from sim.workload import Workload
from sim.workload.identity import PromptBlocks, chain_hashes

LINEAR = {"model": "linear", "c0_s": 0.1, "c_prefill_token_s": 0.01}
MOONCAKE = Path(__file__).parents[1] / "scenarios" / "traces" / "mooncake_conversation_trace.jsonl"


def identity_workload(
    requests: list[tuple[float, int, int, list[int]]], block_tokens: int, classes: int = 1
) -> Workload:
    """Requests ``(arrival_s, input_tokens, output_tokens, raw block ids)`` in arrival order;
    negative raw ids stand for blocks without identity (unique)."""
    counts = np.array([len(r[3]) for r in requests], dtype=np.int64)
    offsets = np.zeros(len(requests) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    raw = np.array([x for r in requests for x in r[3]], dtype=np.int64)
    hashes = chain_hashes(offsets, raw)
    hashes[raw < 0] = raw[raw < 0]
    n = len(requests)
    return Workload(
        arrival_s=np.array([r[0] for r in requests], dtype=float),
        input_tokens=np.array([r[1] for r in requests], dtype=np.int64),
        output_tokens=np.array([r[2] for r in requests], dtype=np.int64),
        class_id=np.zeros(n, dtype=np.int32),
        class_names=tuple(f"c{i}" for i in range(classes)),
        closed_loop=(),
        has_prefix=np.zeros(n, dtype=bool),
        prompt_blocks=PromptBlocks(block_tokens, offsets, hashes),
    )


# --- exact event logs -------------------------------------------------------------------------
def test_requests_sharing_trace_blocks_prefill_only_what_is_new() -> None:
    # engine blocks of 4 tokens, identity blocks of 8: one identity block = two engine blocks
    spec = fleet(step_time=LINEAR, engine={"block_tokens": 4, "kv_blocks": 64})
    wl = identity_workload(
        [
            (0.0, 20, 2, [1, 2, 3]),  # A: computes all 20 tokens; caches 5 whole blocks
            (5.0, 18, 2, [1, 2, 9]),  # B: shares 16 tokens (blocks 0-3), prefills 2
            (10.0, 16, 2, [1, 2]),  # C: its whole prompt is cached; the last block recomputed
            (15.0, 20, 2, [1, 7, 3]),  # D: shares the first identity block only (8 tokens)
            (20.0, 12, 2, [-1, -2]),  # E: no identity, nothing cached
        ],
        block_tokens=8,
    )
    df, run = run_small(spec, wl)
    assert df["cached_tokens"].tolist() == [0, 16, 12, 8, 0]
    ttft = [0.1 + 0.01 * p for p in (20, 2, 4, 12, 12)]
    assert df["ttft_s"].to_numpy() == pytest.approx(ttft)
    pi = run.state.pi[0]
    assert pi[K.PFX_HIT] == 36 and pi[K.PFX_ASKED] == 86
    # A cached blocks 0-4, B added none new (block 4 of B is partial: 16..18), D added 3
    # (its blocks 2-4 hash under identity block 7); everything is free again
    assert pi[K.CSIZE] == 8 and pi[K.EVICT] == 8 and pi[K.FREE] == 64
    assert (run.state.ct[:, :, K.T_REF] == 0).all()


def test_concurrent_requests_share_blocks_once_published() -> None:
    # A and B arrive together: B cannot hit A's blocks before A's prefill iteration ends; when
    # both publish the same blocks, B's copies are freed and it shares A's
    spec = fleet(step_time=LINEAR, engine={"block_tokens": 4, "kv_blocks": 64})
    wl = identity_workload(
        [(0.0, 16, 10, [1, 2]), (0.0, 16, 10, [1, 2]), (0.35, 16, 3, [1, 2])], block_tokens=8
    )
    df, run = run_small(spec, wl)
    assert df["cached_tokens"].tolist() == [0, 0, 12]
    # both prefill in the first iteration (32 tokens): 0.1 + 0.32
    assert df["ttft_s"].iloc[:2].to_numpy() == pytest.approx([0.42, 0.42])
    # C joins at the first boundary after 0.35 (0.42, when the prefill iteration ends and
    # the blocks are published) and prefills 4 tokens next to their decodes
    assert df["queue_s"].iloc[2] == pytest.approx(0.42 - 0.35)
    assert df["ttft_s"].iloc[2] == pytest.approx(0.42 - 0.35 + 0.1 + 0.04)
    assert run.state.pi[0, K.CSIZE] == 4 and run.state.pi[0, K.FREE] == 64


def test_an_interruption_empties_the_cache() -> None:
    spec = fleet(step_time=LINEAR, engine={"block_tokens": 4, "kv_blocks": 64})
    wl = identity_workload([(0.0, 16, 2, [1, 2])], block_tokens=8)
    _, run = run_small(spec, wl)
    state = run.state
    assert state.pi[0, K.CSIZE] == 4
    state.interrupt(0, 100.0)
    assert state.pi[0, K.CSIZE] == 0 and (state.ct[0, :, K.T_KEY] == -1).all()
    assert state.pi[0, K.EVICT] == 0 and state.pi[0, K.FREE] == 64


def test_a_replica_switched_off_forgets_its_cache() -> None:
    # a drained replica released by the fleet dynamics: a later one in its slot starts empty
    spec = fleet(step_time=LINEAR, engine={"block_tokens": 4, "kv_blocks": 64})
    wl = identity_workload([(0.0, 16, 2, [1, 2])], block_tokens=8)
    _, run = run_small(spec, wl)
    state = run.state
    state.set_replica_state(0, K.RS_DRAINING, 100.0)
    assert state.pi[0, K.CSIZE] == 4  # draining: still cached
    state.set_replica_state(0, K.RS_OFF, 100.0)
    assert state.pi[0, K.CSIZE] == 0 and (state.ct[0, :, K.T_KEY] == -1).all()
    assert state.pi[0, K.EVICT] == 0 and state.pi[0, K.FREE] == 64


# --- unbounded cache: the trace's prefix reuse -------------------------------------------------
def _mooncake_rows() -> list[dict[str, object]]:
    return [json.loads(line) for line in MOONCAKE.read_text().splitlines() if line.strip()]


def reuse_oracle(rows: list[dict[str, object]], block: int, engine_block: int) -> tuple[int, int]:
    """Prompt tokens found cached by an unbounded cache serving ``rows`` one at a time, at
    two granularities, from the raw ids alone.

    Returns ``(whole, engine)``: ``whole`` counts ``min(m · block, input)`` for the ``m``
    leading ids some earlier request carried (the trace's own reuse ratio); ``engine`` counts
    whole engine blocks found, each inside an identity block some earlier request carried
    that far into its prompt, and never the last token.
    """
    longest: dict[tuple[int, ...], int] = {}  # prefix of ids -> tokens cached under it
    whole = engine = 0
    for r in rows:
        ids = [int(x) for x in r["hash_ids"]]  # type: ignore[union-attr]
        n = int(r["input_length"])  # type: ignore[arg-type]
        m = 0
        while m < len(ids) and tuple(ids[: m + 1]) in longest:
            m += 1
        whole += min(m * block, n)
        limit = min(n // engine_block, (n - 1) // engine_block)
        j = 0
        while j < limit:
            t = ((j + 1) * engine_block - 1) // block
            if longest.get(tuple(ids[: t + 1]), 0) < (j + 1) * engine_block:
                break
            j += 1
        engine += j * engine_block
        for t in range(len(ids)):
            key = tuple(ids[: t + 1])
            longest[key] = max(longest.get(key, 0), min(n, (t + 1) * block))
    return whole, engine


def test_unbounded_cache_hits_the_traces_prefix_reuse() -> None:
    from sim.workload.trace import load_trace

    rows = _mooncake_rows()
    total = sum(int(r["input_length"]) for r in rows)  # type: ignore[arg-type]
    whole, engine = reuse_oracle(rows, 512, 512)
    assert whole / total == pytest.approx(0.3736, abs=5e-5)  # the trace's 37.4 %
    tr = load_trace(MOONCAKE)
    assert tr.input_tokens is not None and tr.output_tokens is not None
    n = tr.n_rows
    wl = Workload(
        arrival_s=tr.offset_s,
        input_tokens=tr.input_tokens,
        output_tokens=np.minimum(tr.output_tokens, 4),  # short decodes: a fast test
        class_id=np.zeros(n, dtype=np.int32),
        class_names=("conv",),
        closed_loop=(),
        prompt_blocks=tr.prompt_blocks,
    )
    # one request at a time, in file order; a cache larger than every distinct block
    spec = fleet(step_s=0.01, engine={"block_tokens": 512, "kv_blocks": 400_000, "max_num_seqs": 1})
    df, _ = run_small(spec, wl, duration_s=4000.0)
    assert (df["status"] == "completed").all()
    assert int(df["cached_tokens"].sum()) == engine
    # the engine neither caches a partial last block nor skips a prompt's last token
    assert 0.36 < engine / total < whole / total


def test_engine_blocks_inside_identity_blocks_match_the_oracle() -> None:
    from sim.workload.trace import load_trace

    rows = _mooncake_rows()[:600]
    _, engine = reuse_oracle(rows, 512, 16)
    tr = load_trace(MOONCAKE)
    assert tr.input_tokens is not None and tr.prompt_blocks is not None
    keep = np.arange(600)
    wl = Workload(
        arrival_s=np.arange(600, dtype=float),
        input_tokens=tr.input_tokens[keep],
        output_tokens=np.full(600, 2, dtype=np.int64),
        class_id=np.zeros(600, dtype=np.int32),
        class_names=("conv",),
        closed_loop=(),
        prompt_blocks=tr.prompt_blocks.take(keep),
    )
    spec = fleet(step_s=0.01, engine={"kv_blocks": 600_000, "max_num_seqs": 1})
    df, _ = run_small(spec, wl, duration_s=700.0)
    assert int(df["cached_tokens"].sum()) == engine > 0


# --- bounded cache: an independent LRU simulation ---------------------------------------------
def lru_oracle(
    wl: Workload, bt: int, total_blocks: int
) -> tuple[list[int], int]:  # per-request cached tokens, blocks cached at the end
    """Serve ``wl`` one request at a time through a block-level LRU cache.

    A request finds its leading cached blocks (never its last token), references them,
    takes fresh blocks (never-used ones first, then the least recently released cached
    block), publishes its whole prompt blocks when its prefill ends (sharing a block
    already cached), grows by its decode, and releases its blocks, deepest first.
    """
    assert wl.prompt_blocks is not None
    pb = wl.prompt_blocks
    free_plain = total_blocks
    lru: OrderedDict[tuple[int, int], None] = OrderedDict()  # unreferenced cached, oldest first
    refs: dict[tuple[int, int], int] = {}
    hits = []

    def take(k: int) -> None:
        nonlocal free_plain
        for _ in range(k):
            if free_plain > 0:
                free_plain -= 1
            else:
                victim, _ = lru.popitem(last=False)
                del refs[victim]

    for i in range(len(wl)):
        n = int(wl.input_tokens[i])
        out = int(wl.output_tokens[i])
        h = pb.of(i)
        lead = int(np.argmax(h < 0)) if (h < 0).any() else h.size
        cacheable = min(lead * pb.block_tokens, n) // bt

        def key(j: int, h: np.ndarray = h) -> tuple[int, int]:
            return int(h[((j + 1) * bt - 1) // pb.block_tokens]), j

        m = 0
        while m < min(cacheable, (n - 1) // bt) and key(m) in refs:
            m += 1
        hits.append(m * bt)
        for j in range(m):
            if refs[key(j)] == 0:
                del lru[key(j)]
            refs[key(j)] += 1
        take(-(-n // bt) - m)
        for j in range(m, cacheable):  # publish
            if key(j) in refs:
                if refs[key(j)] == 0:
                    del lru[key(j)]
                refs[key(j)] += 1
                free_plain += 1
            else:
                refs[key(j)] = 1
        own = -(-(n + out - 1) // bt) - cacheable
        take(-(-(n + out - 1) // bt) - -(-n // bt))
        free_plain += own
        for j in range(cacheable - 1, -1, -1):
            refs[key(j)] -= 1
            if refs[key(j)] == 0:
                lru[key(j)] = None
    return hits, len(refs)


def test_bounded_cache_evicts_as_an_lru_simulation_does() -> None:
    rng = np.random.default_rng(7)
    # prompts drawn from a small tree of shared prefixes: 3 roots, 4 branches each
    requests = []
    for i in range(300):
        root, branch = int(rng.integers(3)), int(rng.integers(4))
        depth = int(rng.integers(1, 6))
        ids = [root, 10 + 4 * root + branch] + [1000 + 10 * i + d for d in range(depth)]
        if rng.random() < 0.2:
            ids = [-(10 * i + d + 1) for d in range(len(ids))]  # a request without identity
        n = int(rng.integers(8 * (len(ids) - 1) + 1, 8 * len(ids) + 1))
        requests.append((float(i), n, int(rng.integers(1, 12)), ids))
    wl = identity_workload(requests, block_tokens=8)
    bt, blocks = 4, 40
    spec = fleet(step_s=0.01, engine={"block_tokens": bt, "kv_blocks": blocks, "max_num_seqs": 1})
    df, run = run_small(spec, wl, duration_s=400.0)
    hits, size = lru_oracle(wl, bt, blocks)
    assert (df["status"] == "completed").all()
    assert df["cached_tokens"].tolist() == hits
    assert run.state.pi[0, K.CSIZE] == size
    assert 0 < sum(hits) < wl.input_tokens.sum()  # some hits, and some evictions


# --- cache-aware routing ----------------------------------------------------------------------
def _routed(router: str, **affinity: float) -> list[int]:
    spec = fleet(
        step_time=LINEAR,
        replicas=2,
        router=router,
        affinity=affinity,
        engine={"block_tokens": 4, "kv_blocks": 64},
    )
    wl = identity_workload(
        [
            (0.0, 16, 2, [1, 2]),  # A: both idle -> slot 0
            (0.0, 16, 2, [5, 6]),  # B: slot 0 is busy -> slot 1
            (5.0, 16, 2, [5, 6]),  # C: both idle again; B's prefix is cached on slot 1
            (10.0, 16, 2, [1, 2]),  # D: A's prefix is cached on slot 0
            (15.0, 16, 2, [9, 9]),  # E: cached nowhere -> the least loaded (slot 0)
        ],
        block_tokens=8,
    )
    df, _ = run_small(spec, wl)
    return df["replica"].tolist()


def test_prefix_affinity_follows_the_cache() -> None:
    assert _routed("least_loaded") == [0, 1, 0, 0, 0]
    assert _routed("prefix_affinity") == [0, 1, 1, 0, 0]


def test_prefix_affinity_is_bounded_by_load() -> None:
    spec = fleet(
        step_time=LINEAR,
        replicas=2,
        router="prefix_affinity",
        affinity={"slack_tokens": 10, "slack_fraction": 0.0},
        engine={"block_tokens": 4, "kv_blocks": 256},
    )
    wl = identity_workload(
        [
            (0.0, 16, 2, [1, 2]),  # A -> 0, caches its prefix there
            (5.0, 40, 50, [7, 8, 9, 10, 11]),  # B -> 0 (both idle), busy for 5 s
            (5.05, 16, 2, [1, 2]),  # C: slot 0 holds its prefix but 80+ tokens more work
            (5.1, 8, 2, [3]),  # D: no hit anywhere: the least loaded (slot 1, only C there)
        ],
        block_tokens=8,
    )
    df, _ = run_small(spec, wl)
    assert df["replica"].tolist() == [0, 0, 1, 1]
    assert df["cached_tokens"].tolist() == [0, 0, 0, 0]


# --- metrics ----------------------------------------------------------------------------------
def _scenario(identity: bool) -> object:
    import sim

    return sim.Scenario.model_validate(
        {
            "name": "t",
            "horizon": {"duration_s": 120.0, "warmup_s": 10.0},
            "workload": {
                "classes": [
                    {
                        "name": "conv",
                        "arrivals": {
                            "process": "trace",
                            "path": str(MOONCAKE),
                            "rate_scale": 1.0,
                            "prompt_identity": identity,
                        },
                    },
                    {
                        "name": "chat",
                        "arrivals": {"process": "poisson", "rate_rps": 2.0},
                        "prompt_tokens": {"dist": "fixed", "value": 300},
                        "output_tokens": {"dist": "fixed", "value": 20},
                        **({"prefix": {"tokens": 1000, "share": 0.8}} if identity else {}),
                    },
                ]
            },
            "fleet": {"model": "llama-3.1-8b", "gpu": "h100-sxm", "replicas": 2},
        }
    )


def test_metrics_report_hit_rates_per_replica_and_class() -> None:
    import sim

    out = sim.simulate(_scenario(True), seed=1)  # type: ignore[arg-type]
    m, req, reps = out.metrics, out.requests, out.replicas
    done = (req["arrival_s"] >= 10.0) & (req["status"] == "completed")
    for cls in ("conv", "chat"):
        sel = done & (req["class_name"] == cls)
        rate = req["cached_tokens"][sel].sum() / req["input_tokens"][sel].sum()
        assert m[f"prefix_hit_rate[{cls}]"] == pytest.approx(rate)
        assert 0.0 < rate < 1.0
    # the class prefix: 62 whole 16-token blocks of its 1000 tokens, on most of its requests
    assert m["prefix_hit_rate[chat]"] > 0.5 * 0.8 * 992 / 1300
    assert m["prefill_tokens_saved"] == reps["prefill_tokens_saved"].sum() > 0
    assert ((reps["prefix_hit_rate"] > 0) & (reps["prefix_hit_rate"] < 1)).all()
    # without identity: no cached token, no such metric
    plain = sim.simulate(_scenario(False), seed=1)  # type: ignore[arg-type]
    assert (plain.requests["cached_tokens"] == 0).all()
    assert plain.replicas["prefix_hit_rate"].isna().all()
    assert not any(
        k.startswith(("prefix_hit_rate[", "prefill_tokens_saved")) for k in plain.metrics
    )


# --- invariants under pressure ----------------------------------------------------------------
def check_tables(state: object) -> None:
    """Every replica's hash table and LRU list are consistent: each key is reachable from its
    home slot without crossing an empty slot, and the LRU list links exactly the
    unreferenced blocks, EVICT of them."""
    st = state  # a FleetState
    mask = int(st.ep[K.E_CMASK])  # type: ignore[attr-defined]
    for r in range(st.ct.shape[0]):  # type: ignore[attr-defined]
        ct, pi = st.ct[r], st.pi[r]  # type: ignore[attr-defined]
        used = np.flatnonzero(ct[:, K.T_KEY] >= 0)
        assert used.size == pi[K.CSIZE]
        for s in used:
            i = int(ct[s, K.T_KEY]) & mask
            while i != s:
                assert ct[i, K.T_KEY] != -1
                i = (i + 1) & mask
        seen, s, prev = 0, int(pi[K.CHEAD]), -1
        while s != -1:
            assert ct[s, K.T_KEY] >= 0 and ct[s, K.T_REF] == 0 and ct[s, K.T_PRV] == prev
            prev, s = s, int(ct[s, K.T_NXT])
            seen += 1
        assert prev == pi[K.CTAIL] and seen == pi[K.EVICT] == int((ct[used, K.T_REF] == 0).sum())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 40),
    replicas=st.integers(1, 3),
    router=st.sampled_from(["round_robin", "least_loaded", "prefix_affinity", "central"]),
    kv_blocks=st.integers(16, 60),
    max_num_seqs=st.integers(1, 6),
    budget=st.integers(4, 64),
    spot=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_identity_caches_balance_under_pressure(
    n: int,
    replicas: int,
    router: str,
    kv_blocks: int,
    max_num_seqs: int,
    budget: int,
    spot: bool,
    seed: int,
) -> None:
    # prompts from a small tree of shared prefixes, tight memory (preemptions, evictions),
    # chunked prefill, spot reclaims (a replaced replica starts with an empty cache): every
    # request completes, every block and reference comes back
    rng = np.random.default_rng(seed)
    reqs = []
    for i in range(n):
        ids = [int(rng.integers(2)), 10 + int(rng.integers(3))] + [
            100 + 10 * i + d for d in range(3)
        ]
        k = int(rng.integers(1, 6))
        reqs.append((float(rng.uniform(0, 3)), int(rng.integers(8 * (k - 1) + 1, 8 * k + 1)),
                     int(rng.integers(1, 20)), ids[:k]))  # fmt: skip
    reqs.sort(key=lambda r: r[0])
    extra: dict[str, object] = {}
    if spot:
        extra["spot"] = {"interruption_times_s": [0.7, 1.9], "notice_s": 0.0, "replace": True}
    spec = fleet(
        step_s=0.05,
        replicas=replicas,
        router=router,
        engine={
            "kv_blocks": kv_blocks,
            "block_tokens": 4,
            "max_num_seqs": max_num_seqs,
            "max_num_batched_tokens": budget,
        },
        **extra,
    )
    df, run = run_small(spec, identity_workload(reqs, block_tokens=8), duration_s=3.0, seed=seed)
    assert (df["status"] == "completed").all()
    _check_conservation(df, run)
    check_tables(run.state)
    assert (df["cached_tokens"] <= df["input_tokens"] - 1).all()
