"""The identity replay of benchmarks/validate_model.py on a small hand-made run.

Each request's prompt identity goes through a CSV trace (``prefix_id`` / ``prefix_tokens``
columns) read back by ``load_trace``; the engine then serves a repeated prompt from its
prefix cache except the last block, as vLLM does and as the class-per-prompt replay does.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BLOCK = 16
PROMPTS = np.array([40, 57, 64, 100, 33])  # 64: a whole number of blocks
REPEATS = 4


def _validate_model() -> ModuleType:
    path = REPO / "benchmarks" / "validate_model.py"
    spec = importlib.util.spec_from_file_location("validate_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def v() -> ModuleType:
    return _validate_model()


def _run(v: ModuleType) -> Any:
    # the prompts cycled REPEATS times, one request a second (each served alone)
    tokens = np.tile(PROMPTS, REPEATS).astype(np.int64)
    n = tokens.size
    return v.VllmRun(
        name="20260101-000000-tiny",
        model="llama-2-7b",
        tp=1,
        max_num_seqs=8,
        max_batched=2048,
        kv_blocks=4096,
        block_size=BLOCK,
        stages="1rps x 20s",
        system_prompt_len=0,
        output_len_cfg=4,
        arrival_s=np.arange(n, dtype=float),
        input_tokens=tokens,
        recorded_output=np.full(n, 4, dtype=np.int64),
        ttft_s=np.full(n, 0.05),
        e2e_s=np.full(n, 0.1),
        prompt_period=PROMPTS.size,
        uncached_fraction=v.uncached_fraction(tokens, PROMPTS.size, BLOCK),
    )


def test_identity_workload_shares_whole_blocks_of_repeated_prompts(v: ModuleType) -> None:
    tokens = np.tile(PROMPTS, 2)
    wl = v.identity_workload(
        np.arange(tokens.size, dtype=float), tokens, np.ones_like(tokens), block_tokens=BLOCK
    )
    pb = wl.prompt_blocks
    assert wl.class_names == ("trace",) and wl.has_prefix is None
    np.testing.assert_array_equal(wl.input_tokens, tokens)
    np.testing.assert_array_equal(wl.arrival_s, np.arange(tokens.size, dtype=float))
    assert pb.block_tokens == BLOCK
    np.testing.assert_array_equal(pb.counts, -(-tokens // BLOCK))
    k = PROMPTS.size
    for i, n in enumerate(PROMPTS):
        first, again = pb.of(i), pb.of(i + k)
        whole = n // BLOCK
        # whole blocks: the same chained hashes; a partial last block: unique to the request
        np.testing.assert_array_equal(first[:whole], again[:whole])
        assert (first[:whole] >= 0).all()
        if n % BLOCK:
            assert first[-1] < 0 and again[-1] < 0 and first[-1] != again[-1]
    # different prompts share nothing
    assert not set(pb.of(0)[pb.of(0) >= 0]) & set(pb.of(1)[pb.of(1) >= 0])
    # times read back from integer microseconds, or the caller's own
    arrival = np.arange(tokens.size) * 0.1 + 1e-7
    back = v.identity_workload(arrival, tokens, np.ones_like(tokens), block_tokens=BLOCK)
    np.testing.assert_allclose(back.arrival_s, arrival, rtol=0, atol=1e-6)
    own = v.identity_workload(
        arrival, tokens, np.ones_like(tokens), block_tokens=BLOCK, trace_times=False
    )
    np.testing.assert_array_equal(own.arrival_s, arrival)


def test_identity_replay_hits_the_repeats_except_their_last_block(v: ModuleType) -> None:
    run = _run(v)
    stats_id, facts_id = v.replay(run, v.DEFAULT_PARAMS, identity=True)
    stats_cls, facts_cls = v.replay(run, v.DEFAULT_PARAMS)
    _, facts_none = v.replay(run, v.DEFAULT_PARAMS, prefix_cache=False)
    # by hand: the first pass misses, a repeat finds 16 · floor((n − 1) / 16) tokens cached
    hit = (REPEATS - 1) * int(np.sum(BLOCK * ((PROMPTS - 1) // BLOCK)))
    total = REPEATS * int(PROMPTS.sum())
    assert facts_id["computed_share"] == pytest.approx(1.0 - hit / total, abs=1e-12)
    assert facts_id["computed_share"] == pytest.approx(run.uncached_fraction, abs=1e-12)
    assert facts_id["computed_share"] == pytest.approx(facts_cls["computed_share"], abs=1e-12)
    assert facts_none["computed_share"] == 1.0
    assert facts_id["completed"] == 1.0
    # the same cached blocks, the same latencies
    for m in v.METRICS:
        assert stats_id[m] == pytest.approx(stats_cls[m], rel=1e-9), m


def test_identity_comparison_table(v: ModuleType) -> None:
    run = _run(v)
    cls, _ = v.vllm_errors([run], v.DEFAULT_PARAMS)
    ident, _ = v.vllm_errors([run], v.DEFAULT_PARAMS, identity=True)
    table = v.identity_comparison(cls, ident)
    assert list(table["run"]) == ["tiny"]
    assert v.prediction_difference(cls, ident)[0] == pytest.approx(0.0, abs=1e-9)
    assert v.fmt_difference(0.0) == "none" and v.fmt_difference(0.0123) == "1.2%"
    e2e = table["e2e mean err (identity / classes)"].iloc[0]
    a, b = e2e.split(" / ")
    assert a == b
