"""What one replica is, resolved from the scenario: model, GPU, KV-cache size, step times."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.catalog import GpuSpec, ModelSpec, get_gpu, get_model, model_from_hf_config
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
    """Paged KV-cache blocks of one replica, as vLLM sizes it.

    ``(tp · memory · kv_memory_fraction − weights − tp · activation_reserve) /
    (kv_bytes_per_token · block_tokens)``, floored. Returns 0 or less when the model does not
    fit.
    """
    eng = fleet.engine
    if eng.kv_blocks is not None:
        return eng.kv_blocks
    usable = fleet.tp * gpu.memory_gib * GIB * eng.kv_memory_fraction
    free = usable - model.weight_bytes(fleet.dtype) - fleet.tp * eng.activation_reserve_gib * GIB
    per_block = model.kv_bytes_per_token(fleet.kv_dtype_resolved) * eng.block_tokens
    return int(free // per_block)


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
        raise ValueError(
            f"fleet: {model.name} in {fleet.dtype} needs {need:.1f} GiB of weights per GPU at "
            f"tp={fleet.tp}, leaving no room for a KV cache on {gpu.name} "
            f"({gpu.memory_gib:g} GiB × kv_memory_fraction {fleet.engine.kv_memory_fraction}); "
            "raise tp, use a smaller dtype or a larger GPU"
        )
    spec = fleet.step_time
    if isinstance(spec, ConstantStep):
        coeffs = constant_coefficients(spec)
    elif isinstance(spec, LinearStep):
        coeffs = linear_coefficients(spec)
    else:
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
    )
