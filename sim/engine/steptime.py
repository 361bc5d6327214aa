"""Step-time models: how long one continuous-batching iteration takes.

All three models (``roofline``, ``linear``, ``constant``) are reduced to one coefficient
vector read by the compiled engine, so the engine has a single code path::

    t = overhead + seq_cpu * D + max(compute, memory) + allreduce(T)
    compute = c_tok*T + c_attn*AP + c_dec*D + c_pf*P + c_kv*KV
    memory  = m_const + m_kv*KV + m_expert * E * (1 - (1 - k/E)**T)

with, for the iteration: ``T`` tokens computed, ``D`` decoding sequences, ``P`` prefill tokens,
``KV`` KV-cache entries read or written and ``AP`` attention query-key pairs. ``allreduce(T)`` is
``allreduce_step + allreduce_token · T`` up to ``S`` tokens and ``allreduce_token_large`` per
token beyond: a serving stack all-reduces small messages with a latency-optimised kernel and
large ones with NCCL, which moves bytes faster. The roofline fills
the FLOP and byte terms from the model and GPU; ``linear`` uses ``overhead`` and the ``c_dec``,
``c_pf``, ``c_kv`` terms; ``constant`` only ``overhead``.

``seq_cpu`` is the serving stack's CPU time per running sequence per iteration (scheduler,
sampler, detokenisation and streaming of each sequence), paid before the GPU work and not
overlapped with it. The engine passes the decoding sequences ``D``, not the prefilling ones
(their number is not among the step's arguments), so the term counts ``D``. The roofline's
``overhead`` is the stack's fixed cost per iteration plus ``layers · layer_s``: every
transformer layer runs a dozen kernels (norms, projections, attention, activation, the
all-reduce), each taking a minimum time however small the batch (launch, synchronisation,
a latency-bound kernel's floor), so the fixed cost grows with the model's depth.

The roofline's constants (``compute_efficiency``, ``bandwidth_efficiency``,
``overhead_s``, ``allreduce_latency_s``, ``allreduce_hop_s``: a tensor-parallel all-reduce
costs its latency plus ``2(tp − 1)`` ring hops; ``small_link_efficiency``,
``small_message_mib`` and ``link_efficiency``: the shares of the interconnect's bandwidth its
bytes move at, for messages up to ``small_message_mib`` and beyond) come, field by field, from the
``step_time:`` block when it gives them, else from a named *profile* of
``sim/catalog/profiles.yaml`` (``vllm`` unless ``profile`` names an engine version) for
the GPU's family (hopper: H100/H200; ampere: A100; ada: L40S/L4; ``default`` for the rest),
else from :data:`GLOBAL_DEFAULTS`. ``seq_cpu_s`` and ``layer_s`` come from the profile (or
the global default) only. Each profile value records the data it was fitted on and its error (see
:func:`resolve_roofline`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numba
import numpy as np

from sim.catalog import DTYPE_BYTES, GpuSpec, ModelSpec
from sim.catalog.profiles import (
    DEFAULT_PROFILE,
    GLOBAL_DEFAULTS,
    PROFILE_FIELDS,
    gpu_family,
    profile_entry,
    profile_families,
    profile_fitted_range,
    profiles,
    profiles_text,
)
from sim.engine.spec import ConstantStep, LinearStep, RooflineStep

# Layout of the coefficient vector (compile-time constants for the engine).
OVERHEAD, C_TOK, C_ATTN, C_DEC, C_PF, C_KV = 0, 1, 2, 3, 4, 5
M_CONST, M_KV, M_EXPERT, N_EXPERTS, K_EXPERTS, AR_STEP, AR_TOK = 6, 7, 8, 9, 10, 11, 12
SEQ_CPU, AR_TOK_LARGE, AR_SMALL_TOKENS = 13, 14, 15
N_COEFFS = 16
# Entries that are counts (experts; the tokens of the largest small all-reduce message), not
# durations: scaling an iteration's time leaves them alone.
COUNT_COEFFS = (N_EXPERTS, K_EXPERTS, AR_SMALL_TOKENS)

# Activations crossing the tensor-parallel all-reduce are kept in 16-bit.
_ACT_BYTES = 2.0


@dataclass(frozen=True)
class ResolvedRoofline:
    """The roofline constants in force, and where each came from."""

    compute_efficiency: float
    bandwidth_efficiency: float
    overhead_s: float
    allreduce_latency_s: float
    allreduce_hop_s: float
    link_efficiency: float
    small_link_efficiency: float
    small_message_mib: float
    seq_cpu_s: float
    layer_s: float
    profile: str
    family: str
    origin: Mapping[str, str]

    def as_dict(self) -> dict[str, float]:
        """The constants by field name."""
        return {k: float(getattr(self, k)) for k in PROFILE_FIELDS}


def resolve_roofline(spec: RooflineStep, gpu_name: str) -> ResolvedRoofline:
    """Fill the fields ``spec`` leaves unset from its profile for ``gpu_name``'s family.

    Order, per field: the value in ``spec``; the profile's entry for the GPU family; the
    profile's ``default`` entry; :data:`GLOBAL_DEFAULTS`. ``origin`` says which, per field.
    ``seq_cpu_s`` and ``layer_s`` are not fields of :class:`RooflineStep`: they come from
    the profile.

    Raises
    ------
    KeyError
        If ``spec.profile`` names no profile.
    ValueError
        If the profile was fitted on other GPU families than ``gpu_name``'s.

    Examples
    --------
    >>> from sim.engine.spec import RooflineStep
    >>> r = resolve_roofline(RooflineStep(overhead_s=0.002), "h100-sxm")
    >>> r.profile, r.family, r.overhead_s, r.origin["overhead_s"]
    ('vllm', 'hopper', 0.002, 'step_time')
    """
    name = spec.profile or DEFAULT_PROFILE
    if name not in profiles():
        raise KeyError(f"unknown step-time profile {name!r}; known: {profiles_text()}")
    family = gpu_family(gpu_name)
    fams = profile_families(name)
    if fams is not None and family not in fams:
        raise ValueError(
            f"step-time profile {name!r} was fitted on {', '.join(fams)} GPUs, not on "
            f"{gpu_name} ({family}); profiles: {profiles_text()}"
        )
    values: dict[str, float] = {}
    origin: dict[str, str] = {}
    for key in PROFILE_FIELDS:
        given = getattr(spec, key, None)
        if given is not None:
            values[key], origin[key] = float(given), "step_time"
            continue
        found = profile_entry(name, family, key)
        if found is not None:
            values[key], origin[key] = float(found[0]), f"profile {name}/{found[1]}"
        else:
            values[key], origin[key] = GLOBAL_DEFAULTS[key], "global default"
    return ResolvedRoofline(**values, profile=name, family=family, origin=MappingProxyType(origin))


def profile_extrapolation(r: ResolvedRoofline, *, gpu: str, tp: int) -> list[str]:
    """What lies outside the data profile ``r`` was fitted on: the GPU, the tensor-parallel
    degree (one sentence each; empty when inside or when the profile records no range).

    Examples
    --------
    >>> from sim.engine.spec import RooflineStep
    >>> r = resolve_roofline(RooflineStep(profile="vllm-2026"), "h200-sxm")
    >>> for line in profile_extrapolation(r, gpu="h200-sxm", tp=8):
    ...     print(line)
    step-time profile 'vllm-2026' was fitted on h100-sxm, not h200-sxm: extrapolating
    step-time profile 'vllm-2026' was fitted at tp 1-4, not tp 8: extrapolating
    """
    fitted = profile_fitted_range(r.profile, r.family)
    out = []
    gpus = [str(g) for g in fitted.get("gpus", ())]
    if gpus and gpu not in gpus:
        out.append(
            f"step-time profile {r.profile!r} was fitted on {', '.join(gpus)}, not {gpu}: "
            "extrapolating"
        )
    span = fitted.get("tp")
    if span and not int(span[0]) <= tp <= int(span[1]):
        out.append(
            f"step-time profile {r.profile!r} was fitted at tp {span[0]}-{span[1]}, not tp "
            f"{tp}: extrapolating"
        )
    return out


@dataclass(frozen=True)
class StepCoefficients:
    """The coefficient vector plus a readable record of where it came from.

    ``efficiencies`` is (compute, bandwidth) efficiency of a roofline model (for MFU / MBU),
    None for the other models.
    """

    vector: np.ndarray
    kind: str
    efficiencies: tuple[float, float] | None = None

    def time_s(
        self,
        tokens: float,
        decode_seqs: float,
        prefill_tokens: float,
        kv_tokens: float,
        attn_pairs: float,
    ) -> float:
        """Duration of one iteration with the given composition.

        Examples
        --------
        >>> from sim.engine.spec import ConstantStep
        >>> c = constant_coefficients(ConstantStep(model="constant", step_s=0.01))
        >>> c.time_s(10, 10, 0, 5000, 5000)
        0.01
        """
        return float(
            step_time(self.vector, tokens, decode_seqs, prefill_tokens, kv_tokens, attn_pairs)
        )


def roofline_coefficients(
    spec: RooflineStep,
    *,
    model: ModelSpec,
    gpu: GpuSpec,
    tp: int,
    dtype: str,
    kv_dtype: str,
) -> StepCoefficients:
    """Roofline coefficients for ``model`` on ``tp`` GPUs of type ``gpu``.

    Compute: 2 FLOPs per matmul parameter per token, plus attention
    (4 · layers · heads · head_dim FLOPs per query-key pair), on the GPU's dense peak for the
    weight dtype times ``compute_efficiency``. Memory: the weights read once per iteration
    (for a mixture of experts, the dense part always and each expert only when at least one
    token in the batch routes to it), plus the KV cache entries read and written, at HBM
    bandwidth times ``bandwidth_efficiency``. Tensor parallelism divides both by ``tp`` and adds
    two ring all-reduces of the activations per layer, each costing ``allreduce_latency_s``
    plus ``2(tp − 1)`` hops of ``allreduce_hop_s`` (a ring passes its message GPU by GPU)
    plus its ``2(tp − 1)/tp`` bytes per byte of activations over the link: at
    ``small_link_efficiency`` of the GPU's per-direction interconnect bandwidth while the
    message is at most ``small_message_mib``, at ``link_efficiency`` for the rest
    (:func:`allreduce_time`). Every decoding
    sequence adds ``seq_cpu_s`` of CPU time to the iteration's fixed part, and every layer
    ``layer_s`` (the floor of its kernels).
    Fields ``spec`` leaves unset come from its profile (:func:`resolve_roofline`).
    """
    r = resolve_roofline(spec, gpu.name)
    if spec.profile is not None:
        for why in profile_extrapolation(r, gpu=gpu.name, tp=tp):
            warnings.warn(why, UserWarning, stacklevel=2)
    v = np.zeros(N_COEFFS)
    flops_s = gpu.peak_tflops(dtype) * 1e12 * r.compute_efficiency * tp
    bytes_s = gpu.mem_bandwidth_tb_s * 1e12 * r.bandwidth_efficiency * tp
    wbytes = DTYPE_BYTES[dtype]
    v[OVERHEAD] = r.overhead_s + model.num_layers * r.layer_s
    v[SEQ_CPU] = r.seq_cpu_s
    v[C_TOK] = 2.0 * model.matmul_params_per_token / flops_s
    v[C_ATTN] = 4.0 * model.num_layers * model.num_heads * model.head_dim / flops_s
    expert_params = model.expert_params_per_layer * model.num_layers
    # The input embedding table is gathered (a few rows), not streamed; a tied table is read
    # in full as the output projection.
    table = 0 if model.tie_word_embeddings else model.vocab_size * model.hidden_size
    streamed_params = model.total_params - table
    if model.num_experts > 0:
        dense_params = streamed_params - expert_params * model.num_experts
        v[M_EXPERT] = expert_params * wbytes / bytes_s
        v[N_EXPERTS] = model.num_experts
        v[K_EXPERTS] = model.experts_per_token
    else:
        dense_params = streamed_params
    v[M_CONST] = dense_params * wbytes / bytes_s
    v[M_KV] = model.kv_bytes_per_token(kv_dtype) / bytes_s
    if tp > 1:
        # bytes each GPU moves per token, over the two all-reduces of every layer
        wire = 2 * model.num_layers * 2.0 * (tp - 1) / tp * model.hidden_size * _ACT_BYTES
        link = gpu.interconnect_gb_s * 1e9
        # a ring all-reduce passes 2(tp − 1) messages one after another, each paying a hop
        v[AR_STEP] = (
            2 * model.num_layers * (r.allreduce_latency_s + 2 * (tp - 1) * r.allreduce_hop_s)
        )
        v[AR_TOK] = wire / (link * r.small_link_efficiency)
        v[AR_TOK_LARGE] = wire / (link * r.link_efficiency)
        v[AR_SMALL_TOKENS] = r.small_message_mib * 2**20 / (model.hidden_size * _ACT_BYTES)
    return StepCoefficients(v, "roofline", (r.compute_efficiency, r.bandwidth_efficiency))


def apply_stack_constants(
    coeffs: StepCoefficients,
    spec: RooflineStep,
    *,
    model: ModelSpec,
    gpu_name: str,
    values: Mapping[str, float],
) -> None:
    """Set profile-only constants (``seq_cpu_s``, ``layer_s``) in a roofline's coefficients.

    A scenario's ``step_time:`` block cannot set them (they belong to the serving stack), but
    a fit must vary them: ``coeffs`` (built from ``spec`` for ``model`` on ``gpu_name``) is
    changed in place as if the profile gave ``values``. Keys other than those two are
    ignored.

    Examples
    --------
    >>> from sim.catalog import get_gpu, get_model
    >>> from sim.engine.spec import RooflineStep
    >>> spec, m, g = RooflineStep(), get_model("llama-2-7b"), get_gpu("h100-sxm")
    >>> c = roofline_coefficients(spec, model=m, gpu=g, tp=1, dtype="bf16", kv_dtype="bf16")
    >>> apply_stack_constants(c, spec, model=m, gpu_name=g.name,
    ...                       values={"seq_cpu_s": 2e-5, "layer_s": 0.0})
    >>> r = resolve_roofline(spec, g.name)
    >>> float(c.vector[SEQ_CPU]), bool(c.vector[OVERHEAD] == r.overhead_s)
    (2e-05, True)
    """
    v = coeffs.vector
    if values.get("seq_cpu_s") is not None:
        v[SEQ_CPU] = float(values["seq_cpu_s"])
    if values.get("layer_s") is not None:
        r = resolve_roofline(spec, gpu_name)
        v[OVERHEAD] += model.num_layers * (float(values["layer_s"]) - r.layer_s)


def linear_coefficients(spec: LinearStep) -> StepCoefficients:
    """Coefficients of the ``linear`` model (fitted to a user's own measurements)."""
    v = np.zeros(N_COEFFS)
    v[OVERHEAD] = spec.c0_s
    v[C_DEC] = spec.c_decode_s
    v[C_PF] = spec.c_prefill_token_s
    v[C_KV] = spec.c_kv_token_s
    return StepCoefficients(v, "linear")


def constant_coefficients(spec: ConstantStep) -> StepCoefficients:
    """Coefficients of the ``constant`` model: every iteration lasts ``step_s``."""
    v = np.zeros(N_COEFFS)
    v[OVERHEAD] = spec.step_s
    return StepCoefficients(v, "constant")


@numba.njit(cache=True)
def _experts_touched(v: np.ndarray, tokens: float) -> float:
    e = v[N_EXPERTS]
    if e <= 0.0:
        return 0.0
    return e * (1.0 - (1.0 - v[K_EXPERTS] / e) ** tokens)


@numba.njit(cache=True)
def allreduce_time(v: np.ndarray, tokens: float) -> float:
    """The tensor-parallel all-reduces of an iteration of ``tokens`` tokens: their latency,
    then the bytes of the first ``S`` tokens (messages up to ``small_message_mib``) at the
    small-message rate and the rest at the large-message rate."""
    small = v[AR_SMALL_TOKENS]
    if tokens <= small:
        return v[AR_STEP] + v[AR_TOK] * tokens
    return v[AR_STEP] + v[AR_TOK] * small + v[AR_TOK_LARGE] * (tokens - small)


@numba.njit(cache=True)
def step_parts(
    v: np.ndarray, tokens: float, dec: float, pf: float, kv: float, ap: float
) -> tuple[float, float]:
    """The compute and memory terms of one iteration (seconds at achievable throughput)."""
    compute = v[C_TOK] * tokens + v[C_ATTN] * ap + v[C_DEC] * dec + v[C_PF] * pf + v[C_KV] * kv
    memory = v[M_CONST] + v[M_KV] * kv + v[M_EXPERT] * _experts_touched(v, tokens)
    return compute, memory


@numba.njit(cache=True)
def step_time(v: np.ndarray, tokens: float, dec: float, pf: float, kv: float, ap: float) -> float:
    """One iteration's duration (see the module docstring for the formula)."""
    compute, memory = step_parts(v, tokens, dec, pf, kv, ap)
    return v[OVERHEAD] + v[SEQ_CPU] * dec + max(compute, memory) + allreduce_time(v, tokens)


@numba.njit(cache=True)
def decode_run_parts(v: np.ndarray, n: int, kv0: float, k: int) -> tuple[float, float]:
    """Summed compute and memory terms of ``k`` pure-decode iterations of a batch of ``n``."""
    a1 = (v[C_TOK] + v[C_DEC]) * n + (v[C_ATTN] + v[C_KV]) * kv0
    b1 = (v[C_ATTN] + v[C_KV]) * n
    a2 = v[M_CONST] + v[M_EXPERT] * _experts_touched(v, float(n)) + v[M_KV] * kv0
    b2 = v[M_KV] * n
    return _line_sum(a1, b1, 0, k), _line_sum(a2, b2, 0, k)


@numba.njit(cache=True)
def _line_sum(a: float, b: float, j0: int, j1: int) -> float:
    # sum_{j=j0}^{j1-1} (a + b j)
    m = j1 - j0
    if m <= 0:
        return 0.0
    return m * a + b * (m * (j0 + j1 - 1) / 2.0)


@numba.njit(cache=True)
def decode_run_time(v: np.ndarray, n: int, kv0: float, k: int) -> float:
    """Total time of ``k`` consecutive pure-decode iterations of a fixed batch of ``n``.

    Iteration ``j`` reads ``kv0 + n·j`` KV entries (every sequence's context grows by one
    token per iteration), so each of the two roofline terms is affine in ``j`` and the sum of
    their maximum has a closed form: split ``[0, k)`` where the lines cross.
    """
    if k <= 0:
        return 0.0
    const = v[OVERHEAD] + v[SEQ_CPU] * n + allreduce_time(v, float(n))
    a1 = (v[C_TOK] + v[C_DEC]) * n + (v[C_ATTN] + v[C_KV]) * kv0
    b1 = (v[C_ATTN] + v[C_KV]) * n
    a2 = v[M_CONST] + v[M_EXPERT] * _experts_touched(v, float(n)) + v[M_KV] * kv0
    b2 = v[M_KV] * n
    total = const * k
    db = b1 - b2
    da = a1 - a2
    if db == 0.0:
        if da >= 0.0:
            return total + _line_sum(a1, b1, 0, k)
        return total + _line_sum(a2, b2, 0, k)
    # d(j) = da + db*j ; line 1 dominates where d(j) >= 0
    jc = -da / db  # may be huge or infinite when the slopes barely differ
    if db > 0.0:  # line 2 first, then line 1 from ceil(jc)
        m = 0 if jc <= 0.0 else (k if jc >= k else int(np.ceil(jc)))
        return total + _line_sum(a2, b2, 0, m) + _line_sum(a1, b1, m, k)
    # db < 0: line 1 first (while d >= 0, i.e. j <= jc), then line 2
    m = 0 if jc < 0.0 else (k if jc >= k else int(np.floor(jc)) + 1)
    m = min(m, k)
    return total + _line_sum(a1, b1, 0, m) + _line_sum(a2, b2, m, k)
