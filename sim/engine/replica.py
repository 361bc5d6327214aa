"""What one replica is, resolved from the scenario: model, GPU, KV-cache size, step times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.catalog import GpuSpec, ModelSpec, get_gpu, get_model, model_from_hf_config
from sim.catalog.profiles import DEFAULT_PROFILE, profile_schedules_ahead
from sim.engine.memory import MemoryBudget, vllm_memory_budget
from sim.engine.spec import ConstantStep, FleetSpec, LinearStep
from sim.engine.steptime import (
    StepCoefficients,
    constant_coefficients,
    linear_coefficients,
    roofline_coefficients,
)

GIB = 2.0**30


@dataclass(frozen=True)
class ReplicaConfig:
    """A replica's resolved, physical description (everything the engine needs).

    Attributes
    ----------
    model, gpu
        Catalog entries.
    weight_gib_per_gpu
        Model weights held by each GPU of the tensor-parallel group.
    kv_bytes_per_token
        KV-cache bytes for one token of context (all layers, K and V).
    kv_blocks
        Paged KV-cache blocks per replica (``block_tokens`` tokens each).
    max_model_len
        Longest prompt + output the replica accepts.
    coefficients
        The step-time coefficient vector.
    schedule_ahead
        The scheduler plans the next iteration while one runs (``EngineSpec.schedule_ahead``
        or the profile's engine).
    """

    model: ModelSpec
    gpu: GpuSpec
    tp: int
    weight_gib_per_gpu: float
    kv_bytes_per_token: float
    kv_blocks: int
    block_tokens: int
    max_model_len: int
    coefficients: StepCoefficients
    schedule_ahead: bool = False

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens of context the KV cache holds at once."""
        return self.kv_blocks * self.block_tokens


def resolve_model(model: str | dict[str, Any]) -> ModelSpec:
    """A catalog model by name, or one built from inline Hugging Face config fields."""
    if isinstance(model, str):
        return get_model(model)
    cfg = dict(model)
    name = str(cfg.pop("name", "custom"))
    return model_from_hf_config(cfg, name=name)


def kv_blocks_for(fleet: FleetSpec, model: ModelSpec, gpu: GpuSpec) -> int:
    """Paged KV-cache blocks of one replica, as vLLM V1 sizes them.

    ``engine.kv_blocks`` when given. Otherwise, per GPU, ``kv_memory_fraction`` × the memory
    CUDA sees − weights/tp − the peak activation of vLLM's profiling pass at
    ``max_num_batched_tokens`` − non-torch memory (more under tensor parallelism) [− CUDA
    graphs], over the KV bytes of one block on one GPU (:func:`sim.engine.memory.
    vllm_memory_budget`). A scenario that sets ``engine.activation_reserve_gib`` keeps the
    former formula ``(tp · memory · kv_memory_fraction − weights − tp · reserve) /
    (kv_bytes_per_token · block_tokens)``. Floored; 0 or less when the model does not fit.
    """
    eng = fleet.engine
    if eng.kv_blocks is not None:
        return eng.kv_blocks
    if eng.activation_reserve_gib is not None:
        usable = fleet.tp * gpu.memory_gib * GIB * eng.kv_memory_fraction
        reserve = fleet.tp * eng.activation_reserve_gib * GIB
        free = usable - model.weight_bytes(fleet.dtype) - reserve
        per_block = model.kv_bytes_per_token(fleet.kv_dtype_resolved) * eng.block_tokens
        return int(free // per_block)
    return memory_budget(fleet, model, gpu).kv_blocks


def memory_budget(fleet: FleetSpec, model: ModelSpec, gpu: GpuSpec) -> MemoryBudget:
    """Where each GPU's memory goes under ``fleet``'s engine settings (vLLM V1 sizing)."""
    eng = fleet.engine
    return vllm_memory_budget(
        model,
        gpu,
        tp=fleet.tp,
        dtype=fleet.dtype,
        kv_dtype=fleet.kv_dtype_resolved,
        gpu_memory_utilization=eng.kv_memory_fraction,
        max_num_batched_tokens=eng.max_num_batched_tokens,
        max_num_seqs=eng.max_num_seqs,
        block_tokens=eng.block_tokens,
        enforce_eager=eng.enforce_eager,
        cuda_graphs_in_kv_budget=eng.cuda_graphs_in_kv_budget,
    )


def build_replica(fleet: FleetSpec) -> ReplicaConfig:
    """Resolve ``fleet`` into a :class:`ReplicaConfig`.

    Raises
    ------
    ValueError
        If the model's weights leave no room for a KV cache on ``tp`` GPUs.
    """
    model = resolve_model(fleet.model)
    gpu = get_gpu(fleet.gpu)
    blocks = kv_blocks_for(fleet, model, gpu)
    if blocks < 1:
        need = model.weight_bytes(fleet.dtype) / GIB / fleet.tp
        rest = ""
        if fleet.engine.kv_blocks is None and fleet.engine.activation_reserve_gib is None:
            b = memory_budget(fleet, model, gpu)
            rest = (
                f" and {b.activation_gib + b.non_torch_gib + b.cuda_graph_gib:.1f} GiB of "
                "activations and runtime"
            )
        raise ValueError(
            f"fleet: {model.name} in {fleet.dtype} needs {need:.1f} GiB of weights per GPU at "
            f"tp={fleet.tp}{rest}, leaving no room for a KV cache on {gpu.name} "
            f"({gpu.memory_gib:g} GiB × kv_memory_fraction {fleet.engine.kv_memory_fraction}); "
            "raise tp, use a smaller dtype or a larger GPU"
        )
    spec = fleet.step_time
    ahead = fleet.engine.schedule_ahead
    if isinstance(spec, ConstantStep):
        coeffs = constant_coefficients(spec)
    elif isinstance(spec, LinearStep):
        coeffs = linear_coefficients(spec)
    else:
        if ahead is None:
            ahead = profile_schedules_ahead(spec.profile or DEFAULT_PROFILE, fleet.gpu)
        coeffs = roofline_coefficients(
            spec,
            model=model,
            gpu=gpu,
            tp=fleet.tp,
            dtype=fleet.dtype,
            kv_dtype=fleet.kv_dtype_resolved,
        )
    return ReplicaConfig(
        model=model,
        gpu=gpu,
        tp=fleet.tp,
        weight_gib_per_gpu=model.weight_bytes(fleet.dtype) / GIB / fleet.tp,
        kv_bytes_per_token=model.kv_bytes_per_token(fleet.kv_dtype_resolved),
        kv_blocks=blocks,
        block_tokens=fleet.engine.block_tokens,
        max_model_len=fleet.engine.max_model_len or model.max_position_embeddings,
        coefficients=coeffs,
        schedule_ahead=bool(ahead),
    )
