"""Step-time models: closed forms against brute force, and the physics of the roofline."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import fleet, run_small, workload
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.engine import kernel as K
from sim.engine import steptime as S
from sim.engine.replica import build_replica
from sim.engine.spec import FleetSpec, RooflineStep

coef = st.floats(0.0, 1e-2, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    overhead=coef,
    c_tok=st.floats(0.0, 1e-4),
    c_attn=st.floats(0.0, 1e-7),
    m_const=st.floats(0.0, 2e-2),
    m_kv=st.floats(0.0, 1e-6),
    seq_cpu=st.floats(0.0, 1e-4),
    n=st.integers(1, 300),
    kv0=st.integers(1, 200_000),
    k=st.integers(1, 400),
)
def test_decode_run_closed_form_equals_sum_of_steps(
    overhead: float,
    c_tok: float,
    c_attn: float,
    m_const: float,
    m_kv: float,
    seq_cpu: float,
    n: int,
    kv0: int,
    k: int,
) -> None:
    # the compute and memory lines may cross anywhere inside the run
    v = np.zeros(S.N_COEFFS)
    v[S.OVERHEAD], v[S.C_TOK], v[S.C_ATTN] = overhead, c_tok, c_attn
    v[S.M_CONST], v[S.M_KV], v[S.SEQ_CPU] = m_const, m_kv, seq_cpu
    steps = [S.step_time(v, n, n, 0, kv0 + n * j, kv0 + n * j) for j in range(k)]
    assert S.decode_run_time(v, n, float(kv0), k) == pytest.approx(sum(steps), rel=1e-9)
    parts = [S.step_parts(v, n, n, 0, kv0 + n * j, kv0 + n * j) for j in range(k)]
    c_sum, m_sum = S.decode_run_parts(v, n, float(kv0), k)
    assert c_sum == pytest.approx(sum(p[0] for p in parts), rel=1e-9, abs=1e-15)
    assert m_sum == pytest.approx(sum(p[1] for p in parts), rel=1e-9, abs=1e-15)


def test_cpu_per_sequence_adds_to_the_fixed_cost_by_hand() -> None:
    # 1 ms overhead, 20 µs of CPU per decoding sequence, 5 ms of weights, 1 µs per KV token
    v = np.zeros(S.N_COEFFS)
    v[S.OVERHEAD], v[S.SEQ_CPU], v[S.M_CONST], v[S.M_KV] = 1e-3, 2e-5, 5e-3, 1e-6
    # 10 decoding sequences reading 1000 KV tokens: 1 + 10 × 0.02 + 5 + 1000 × 0.001 ms
    assert S.step_time(v, 10, 10, 0, 1000, 1000) == pytest.approx(7.2e-3, rel=1e-12)
    # a prefill-only iteration (no decoding sequence) pays no per-sequence CPU time
    assert S.step_time(v, 500, 0, 500, 500, 500 * 501 / 2) == pytest.approx(6.5e-3, rel=1e-12)
    # the term is fixed cost, outside the compute and memory terms the MFU / MBU integrate
    assert S.step_parts(v, 10, 10, 0, 1000, 1000) == pytest.approx((0.0, 6e-3))
    # 3 decode iterations of 10 sequences, 1000 KV tokens growing by 10 per iteration:
    # 3 × (1 + 0.2 + 5) ms + (1000 + 1010 + 1020) µs
    assert S.decode_run_time(v, 10, 1000.0, 3) == pytest.approx(21.63e-3, rel=1e-12)


def test_cpu_per_sequence_comes_from_the_profile() -> None:
    prof = S.profiles()
    hop = prof["vllm"]["hopper"]["seq_cpu_s"]["value"]
    assert hop > 0.0
    # the default profile on Hopper and on Ampere (the 2023 stack's), and the stack fitted
    # without the term (held at 0)
    assert _coeffs().vector[S.SEQ_CPU] == pytest.approx(hop)
    amp = prof["vllm"]["ampere"]["seq_cpu_s"]["value"]
    assert _coeffs(gpu="a100-80gb-sxm").vector[S.SEQ_CPU] == pytest.approx(amp)
    assert amp > hop
    assert _coeffs(step_time={"model": "roofline", "profile": "trtllm"}).vector[S.SEQ_CPU] == 0.0
    linear = {"model": "linear", "c0_s": 1e-3, "c_decode_s": 1e-5}
    assert _coeffs(step_time=linear).vector[S.SEQ_CPU] == 0.0


def _coeffs(**fleet_fields: object) -> S.StepCoefficients:
    data = {"model": "llama-3.1-8b", "gpu": "h100-sxm", **fleet_fields}
    return build_replica(FleetSpec.model_validate(data)).coefficients


def test_roofline_decode_is_bandwidth_bound_and_prefill_compute_bound() -> None:
    c = _coeffs()
    # batch-1 decode: reading ~15 GiB of weights at the default (vllm profile, hopper)
    # bandwidth efficiency of 3.35 TB/s plus the profile's overhead
    hop = S.profiles()["vllm"]["hopper"]
    be, overhead = hop["bandwidth_efficiency"]["value"], hop["overhead_s"]["value"]
    weights = 8.03e9 * 2 - 128256 * 4096 * 2  # the input embedding table is not streamed
    fixed = overhead + 32 * hop["layer_s"]["value"] + hop["seq_cpu_s"]["value"]  # 32 layers
    expected = fixed + weights / (3.35e12 * be)
    assert c.time_s(1, 1, 0, 1000, 1000) == pytest.approx(expected, rel=0.01)
    compute, memory = S.step_parts(c.vector, 1, 1, 0, 1000, 1000)
    assert memory > 20 * compute
    # an 8k-token prefill is compute bound: 2 FLOPs per parameter per token at the profile's
    # compute efficiency
    compute, memory = S.step_parts(c.vector, 8192, 0, 8192, 8192, 8192 * 8193 / 2)
    assert compute > 5 * memory
    ce = hop["compute_efficiency"]["value"]
    assert compute > 2 * 7.5e9 * 8192 / (989.4e12 * ce)


def test_tensor_parallel_divides_work_and_adds_allreduce() -> None:
    one, two = _coeffs(tp=1).vector, _coeffs(tp=2).vector
    assert two[S.C_TOK] == pytest.approx(one[S.C_TOK] / 2)
    assert two[S.M_CONST] == pytest.approx(one[S.M_CONST] / 2)
    assert one[S.AR_TOK] == 0.0 and two[S.AR_TOK] > 0.0 and two[S.AR_STEP] > 0.0


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_allreduce_bytes_move_at_the_small_then_the_large_message_rate(tp: int) -> None:
    # Llama 3.1 8B: 32 layers, hidden 4096, two all-reduces per layer of 2-byte activations;
    # a ring moves 2(tp - 1)/tp bytes per byte over H100's 450 GB/s per direction. Messages
    # up to 2 MiB (256 tokens of 8 KiB) at 0.4 of the link, the rest at 0.8.
    step = {
        "model": "roofline",
        "allreduce_latency_s": 1e-5,
        "small_link_efficiency": 0.4,
        "small_message_mib": 2.0,
        "link_efficiency": 0.8,
    }
    v = _coeffs(tp=tp, step_time=step).vector
    wire = 2 * 32 * (2 * (tp - 1) / tp) * 4096 * 2  # bytes per token
    lat = 2 * 32 * 1e-5
    assert S.allreduce_time(v, 100.0) == pytest.approx(lat + 100 * wire / (450e9 * 0.4))
    assert S.allreduce_time(v, 256.0) == pytest.approx(lat + 256 * wire / (450e9 * 0.4))
    expected = lat + 256 * wire / (450e9 * 0.4) + (1000 - 256) * wire / (450e9 * 0.8)
    assert S.allreduce_time(v, 1000.0) == pytest.approx(expected, rel=1e-12)
    # the step time carries it, and a run of decode iterations counts it per iteration
    compute, memory = S.step_parts(v, 1000, 1000, 0, 5000, 5000)
    base = v[S.OVERHEAD] + v[S.SEQ_CPU] * 1000 + max(compute, memory)
    assert S.step_time(v, 1000, 1000, 0, 5000, 5000) == pytest.approx(base + expected)
    one = S.decode_run_time(v, 1000, 5000.0, 1)
    assert one == pytest.approx(S.step_time(v, 1000, 1000, 0, 5000, 5000), rel=1e-12)
    # one GPU: no all-reduce at all
    assert S.allreduce_time(_coeffs(tp=1, step_time=step).vector, 1000.0) == 0.0


def test_profiles_take_their_link_efficiency_from_a_published_measurement() -> None:
    # vLLM on H100: its two-stage custom all-reduce up to 8 MiB (212 GB/s of 450), NCCL
    # beyond (370); the 2023 A100 stack: NCCL (200 GB/s of 300) for every message;
    # TensorRT-LLM's throughput fit keeps the nominal link
    hop = S.resolve_roofline(RooflineStep(), "h100-sxm")
    assert (hop.small_link_efficiency, hop.small_message_mib, hop.link_efficiency) == (
        0.47,
        8.0,
        0.82,
    )
    amp = S.resolve_roofline(RooflineStep(), "a100-80gb-sxm")
    assert (amp.small_message_mib, amp.link_efficiency) == (0.0, 0.67)
    trt = S.resolve_roofline(RooflineStep(profile="trtllm"), "h100-sxm")
    assert trt.link_efficiency == 1.0
    assert trt.origin["link_efficiency"] == "profile trtllm/hopper"


def test_fp8_weights_halve_weight_traffic_and_double_peak() -> None:
    bf16, fp8 = _coeffs(dtype="bf16").vector, _coeffs(dtype="fp8").vector
    assert fp8[S.M_CONST] == pytest.approx(bf16[S.M_CONST] / 2)
    assert fp8[S.C_TOK] == pytest.approx(bf16[S.C_TOK] / 2, rel=1e-3)  # 1978.9 vs 2 x 989.4
    assert fp8[S.M_KV] == pytest.approx(bf16[S.M_KV] / 2)  # kv_dtype follows the weights


def test_moe_reads_more_experts_as_the_batch_grows() -> None:
    c = _coeffs(model="mixtral-8x7b", tp=2)
    _, m1 = S.step_parts(c.vector, 1, 1, 0, 100, 100)
    _, m64 = S.step_parts(c.vector, 64, 64, 0, 100, 100)
    expert = c.vector[S.M_EXPERT]
    # one token touches its 2 experts; 64 tokens touch nearly all 8
    assert m1 - c.vector[S.M_CONST] - c.vector[S.M_KV] * 100 == pytest.approx(2 * expert)
    assert m64 - c.vector[S.M_CONST] - c.vector[S.M_KV] * 100 == pytest.approx(
        8 * expert * (1 - 0.75**64)
    )


def test_engine_busy_time_equals_sum_of_its_iterations_with_roofline() -> None:
    # one request, roofline timing: a prefill iteration then 4 decode iterations (jumped)
    spec = fleet(step_time={"model": "roofline"})
    df, run = run_small(spec, workload([(0.0, 100, 5)]))
    v = run.state.replica.coefficients.vector
    steps = [S.step_time(v, 100, 0, 100, 100, 100 * 101 / 2)]
    steps += [S.step_time(v, 1, 1, 0, 101 + j, 101 + j) for j in range(4)]
    assert run.state.pf[0, K.BUSY] == pytest.approx(sum(steps), rel=1e-12)
    assert df.iloc[0]["ttft_s"] == pytest.approx(steps[0], rel=1e-12)
    assert df.iloc[0]["e2e_s"] == pytest.approx(sum(steps), rel=1e-12)
    parts = [S.step_parts(v, 100, 0, 100, 100, 100 * 101 / 2)]
    parts += [S.step_parts(v, 1, 1, 0, 101 + j, 101 + j) for j in range(4)]
    assert run.state.pf[0, K.COMPUTE_INT] == pytest.approx(sum(p[0] for p in parts))
    assert run.state.pf[0, K.MEMORY_INT] == pytest.approx(sum(p[1] for p in parts))


def test_time_per_layer_adds_to_the_fixed_cost_by_depth() -> None:
    from sim.catalog import get_gpu, get_model
    from sim.engine.spec import RooflineStep

    prof = S.profiles()["vllm"]["hopper"]
    layer, overhead = prof["layer_s"]["value"], prof["overhead_s"]["value"]
    assert layer > 0.0
    gpu = get_gpu("h100-sxm")
    for name in ("llama-2-7b", "llama-2-70b"):
        m = get_model(name)
        c = S.roofline_coefficients(
            RooflineStep(), model=m, gpu=gpu, tp=1, dtype="bf16", kv_dtype="bf16"
        )
        assert c.vector[S.OVERHEAD] == pytest.approx(overhead + m.num_layers * layer, rel=1e-12)
        # a fit varies the profile-only constants in place: the vector is then what a profile
        # with those values would give
        S.apply_stack_constants(
            c, RooflineStep(), model=m, gpu_name=gpu.name, values={"layer_s": 2 * layer}
        )
        assert c.vector[S.OVERHEAD] == pytest.approx(overhead + 2 * m.num_layers * layer, rel=1e-12)
        S.apply_stack_constants(c, RooflineStep(), model=m, gpu_name=gpu.name, values={})
        assert c.vector[S.OVERHEAD] == pytest.approx(overhead + 2 * m.num_layers * layer, rel=1e-12)


def test_scaling_every_duration_scales_the_iteration() -> None:
    # COUNT_COEFFS names the entries that are counts: scaling all the others by k scales
    # every iteration by k, past the small-message switch and for a mixture of experts too
    for v in (
        _coeffs(model="mixtral-8x7b", tp=2).vector,
        _coeffs(tp=4, step_time={"model": "roofline", "small_message_mib": 1.0}).vector,
    ):
        scaled = v.copy()
        times = np.ones(v.size, dtype=bool)
        times[list(S.COUNT_COEFFS)] = False
        scaled[times] *= 1.3
        for tokens in (8.0, 2048.0):
            args = (tokens, tokens, 0.0, 4000.0, 4000.0)
            assert S.step_time(scaled, *args) == pytest.approx(1.3 * S.step_time(v, *args))
        assert S.decode_run_time(scaled, 300, 9000.0, 7) == pytest.approx(
            1.3 * S.decode_run_time(v, 300, 9000.0, 7)
        )
