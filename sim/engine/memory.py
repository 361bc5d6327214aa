"""KV-cache capacity as vLLM V1 sizes it: what is left of the GPU after the weights, one
profiling forward pass and the runtime.

vLLM V1 (``gpu_worker.determine_available_memory``) runs one forward pass of
``max_num_batched_tokens`` dummy tokens, plus the sampler on ``min(max_num_batched_tokens,
max_num_seqs)`` rows of logits, and gives the KV cache what remains of
``gpu_memory_utilization`` × the device memory torch sees::

    kv_per_gpu = u · visible − weights / tp − activation − non_torch [− cuda_graphs]

per GPU, where

* ``visible = VISIBLE_MEMORY_FRACTION · device_memory_gib``: the memory CUDA reports (an
  "80 GB" card shows 79.2 GiB; a GDDR card's total is the driver's figure, an L4 22.5 GiB
  with ECC, not its datasheet "24 GB");
* ``activation`` = the larger of the forward pass's peak, ``T · 2 B · (2h + 3·f_eff / tp)``
  (residual and normed input, plus the MLP's gate/up output and activation; ``f_eff`` is
  ``intermediate_size``, or ``experts_per_token × moe_intermediate_size`` for a mixture of
  experts, the fused-MoE caches), and the sampler's, ``T · 2 B · h + n · V · 4 B`` (FP32
  logits over the full vocabulary, gathered on the first rank), with ``T`` =
  ``max_num_batched_tokens`` and ``n = min(T, max_num_seqs)``;
* ``non_torch`` = ``NON_TORCH_GIB`` (cuBLAS workspaces and allocator slack outside torch's
  pool) plus ``COMM_BUFFERS_GIB`` when ``tp > 1`` (NCCL and custom all-reduce buffers: a ring
  all-reduce talks to two neighbours whatever ``tp``, so this is a step, not a slope);
* ``cuda_graphs`` = ``CUDA_GRAPH_GIB + CUDA_GRAPH_PER_PEER_GIB · (tp − 1)``, subtracted only
  when CUDA graphs are captured (not ``enforce_eager``) *and* the engine counts them before
  sizing the KV cache (``cuda_graphs_in_kv_budget``: recent vLLM releases with
  ``VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS``; the releases of the published logs capture
  the graphs after sizing the KV cache, in the ``1 − u`` headroom).

The KV cache holds ``floor(kv_per_gpu / (block_tokens · kv_bytes_per_token_per_gpu))``
blocks, where a GPU keeps ``max(1, kv_heads / tp)`` KV heads (vLLM replicates a KV head when
``tp`` exceeds their number).

Five constants, each identified from the logs that report its term (see
``benchmarks/validate_kv_memory.py`` and ``benchmarks/validation.md``, section 5); the
activation terms count tensor elements from the model's shape and have no fitted constant.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.catalog import DTYPE_BYTES, GpuSpec, ModelSpec

__all__ = [
    "ACT_BYTES",
    "COMM_BUFFERS_GIB",
    "CUDA_GRAPH_GIB",
    "CUDA_GRAPH_PER_PEER_GIB",
    "LOGIT_BYTES",
    "NON_TORCH_GIB",
    "VISIBLE_MEMORY_FRACTION",
    "MemoryBudget",
    "activation_gib",
    "kv_bytes_per_token_per_gpu",
    "vllm_memory_budget",
]

GIB = 2.0**30

VISIBLE_MEMORY_FRACTION = 0.99
"""Device memory CUDA reports / the datasheet's (GiB-read) figure. Logged totals: H100 80GB
79.22 GiB, A100 40GB 39.50 GiB; the A100 80GB logs at utilisation 0.25 and 0.5 differ by
19.82 GiB of KV cache, i.e. 79.25 GiB visible."""

NON_TORCH_GIB = 0.28
"""Memory outside torch's allocator on a single GPU, GiB: the mean residual of the three
tp-1 V1 cases with stated settings (Qwen2-7B on A100 at u 0.25 and 0.5, Llama-2-7B on H100;
``benchmarks/validation.md``, section 5)."""

COMM_BUFFERS_GIB = 0.33
"""Extra memory outside torch per GPU when ``tp > 1`` (NCCL / custom all-reduce buffers),
GiB: the mean residual of the five tp>1 V1 cases with stated settings (Qwen2-7B TP 2 on A100
at u 0.25 and 0.5, gpt-oss-120b TP 4 on A100, Llama-2-70B TP 4 and Mixtral-8x7B TP 2 on
H100) beyond ``NON_TORCH_GIB``."""

CUDA_GRAPH_GIB = 0.48
"""CUDA-graph memory of one GPU at tp 1, GiB: least squares through the nine 'Graph
capturing finished ... took' figures of the V1 logs (with the next constant)."""

CUDA_GRAPH_PER_PEER_GIB = 0.42
"""Extra CUDA-graph memory per additional tensor-parallel GPU (all-reduce buffers captured in
every graph), GiB: fitted on the same figures."""

ACT_BYTES = 2.0
"""Bytes of one activation element (BF16/FP16, also under FP8 or 4-bit weights)."""

LOGIT_BYTES = 4.0
"""Bytes of one logit in the sampler (FP32); not fitted."""


@dataclass(frozen=True)
class MemoryBudget:
    """Where one GPU's memory goes, GiB per GPU, and the KV cache it leaves.

    Attributes
    ----------
    visible_gib
        Device memory CUDA reports.
    requested_gib
        ``gpu_memory_utilization`` × ``visible_gib``: what vLLM allows itself.
    weights_gib, activation_gib, non_torch_gib, cuda_graph_gib
        The terms taken out of ``requested_gib`` (``cuda_graph_gib`` is 0 when graphs are
        captured after the KV cache is sized, or not at all).
    kv_gib
        What is left for the KV cache (negative: the model does not fit).
    kv_blocks
        Paged blocks of the replica (every GPU holds its share of each block).
    kv_tokens
        ``kv_blocks × block_tokens``.
    """

    visible_gib: float
    requested_gib: float
    weights_gib: float
    activation_gib: float
    non_torch_gib: float
    cuda_graph_gib: float
    kv_gib: float
    kv_blocks: int
    kv_tokens: int


def kv_bytes_per_token_per_gpu(model: ModelSpec, tp: int, kv_dtype: str) -> float:
    """KV bytes one token occupies on each GPU of a ``tp`` group.

    Each GPU keeps ``max(1, ceil(kv_heads / tp))`` KV heads: when ``tp`` exceeds the number
    of KV heads, vLLM replicates them.

    Examples
    --------
    >>> from sim.catalog import get_model
    >>> m = get_model("llama-3.1-70b")  # 8 KV heads
    >>> kv_bytes_per_token_per_gpu(m, 4, "bf16"), kv_bytes_per_token_per_gpu(m, 16, "bf16")
    (81920.0, 40960.0)
    """
    heads = max(1, -(-model.num_kv_heads // tp))
    return 2.0 * model.num_layers * heads * model.head_dim * DTYPE_BYTES[kv_dtype]


def activation_gib(
    model: ModelSpec, *, tp: int, max_num_batched_tokens: int, max_num_seqs: int
) -> float:
    """Peak activation memory of vLLM's profiling pass on one GPU, GiB.

    ``max(T·2B·(2h + 3·f_eff/tp), T·2B·h + min(T, max_num_seqs)·V·4B)``: the MLP of one layer
    (the largest live set of the forward pass) or the sampler's FP32 logits, whichever is
    larger; ``T`` = ``max_num_batched_tokens``.

    Examples
    --------
    >>> from sim.catalog import get_model
    >>> m = get_model("llama-2-7b")  # h 4096, f 11008, V 32000
    >>> round(activation_gib(m, tp=1, max_num_batched_tokens=2048, max_num_seqs=128), 4)
    0.1572
    """
    t = float(max_num_batched_tokens)
    f_eff = model.intermediate_size * (model.experts_per_token if model.is_moe else 1)
    forward = t * ACT_BYTES * (2 * model.hidden_size + 3 * f_eff / tp)
    rows = min(t, float(max_num_seqs))
    sampler = t * ACT_BYTES * model.hidden_size + rows * model.vocab_size * LOGIT_BYTES
    return max(forward, sampler) / GIB


def vllm_memory_budget(
    model: ModelSpec,
    gpu: GpuSpec,
    *,
    tp: int,
    dtype: str,
    kv_dtype: str,
    gpu_memory_utilization: float,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    block_tokens: int = 16,
    enforce_eager: bool = False,
    cuda_graphs_in_kv_budget: bool = False,
    weights_gib: float | None = None,
) -> MemoryBudget:
    """The KV cache vLLM V1 allocates for ``model`` on ``tp`` GPUs of type ``gpu``.

    Parameters
    ----------
    model, gpu
        Catalogue entries.
    tp, dtype, kv_dtype
        Tensor-parallel degree, weight and KV-cache data types.
    gpu_memory_utilization, max_num_batched_tokens, max_num_seqs, block_tokens
        The engine settings of the same names (``kv_memory_fraction`` is
        ``gpu_memory_utilization``).
    enforce_eager, cuda_graphs_in_kv_budget
        Whether CUDA graphs are captured, and whether their memory is taken out of the KV
        budget (see the module notes).
    weights_gib
        Weights per GPU when known (e.g. from a log, for a quantised checkpoint); default
        ``model.weight_bytes(dtype) / tp``.

    Examples
    --------
    One H100, Llama-2-7B, u 0.9, 2048 batched tokens, 128 sequences: 0.99 · 80 · 0.9 =
    71.28 GiB requested − 12.55 weights − 0.157 activation − 0.28 non-torch = 58.29 GiB, or
    7,461 blocks of 16 tokens at 512 KiB a token (vLLM logged 7,462):

    >>> from sim.catalog import get_gpu, get_model
    >>> b = vllm_memory_budget(get_model("llama-2-7b"), get_gpu("h100-sxm"), tp=1,
    ...     dtype="bf16", kv_dtype="bf16", gpu_memory_utilization=0.9,
    ...     max_num_batched_tokens=2048, max_num_seqs=128)
    >>> round(b.kv_gib, 2), b.kv_blocks
    (58.29, 7461)
    """
    visible = VISIBLE_MEMORY_FRACTION * gpu.device_memory_gib
    requested = gpu_memory_utilization * visible
    weights = model.weight_bytes(dtype) / GIB / tp if weights_gib is None else weights_gib
    act = activation_gib(
        model, tp=tp, max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs
    )
    non_torch = NON_TORCH_GIB + (COMM_BUFFERS_GIB if tp > 1 else 0.0)
    graphs = 0.0
    if cuda_graphs_in_kv_budget and not enforce_eager:
        graphs = CUDA_GRAPH_GIB + CUDA_GRAPH_PER_PEER_GIB * (tp - 1)
    kv = requested - weights - act - non_torch - graphs
    per_block = kv_bytes_per_token_per_gpu(model, tp, kv_dtype) * block_tokens
    blocks = int((kv * GIB) // per_block) if kv > 0 else 0
    return MemoryBudget(
        visible_gib=visible,
        requested_gib=requested,
        weights_gib=weights,
        activation_gib=act,
        non_torch_gib=non_torch,
        cuda_graph_gib=graphs,
        kv_gib=kv,
        kv_blocks=blocks,
        kv_tokens=blocks * block_tokens,
    )
