"""The ``fleet:`` and ``horizon:`` sections of a scenario: what runs the self-hosted model."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from sim._base import Frozen
from sim.economics.spec import PricingSpec

Dtype = Literal["bf16", "fp16", "fp8", "int8", "int4", "fp4"]
RouterKind = Literal["round_robin", "least_loaded", "power_of_two", "central", "random"]


class Horizon(Frozen):
    """How long one replication runs and which part of it is measured.

    Requests arrive during ``[0, duration_s)``. Latency and utilisation metrics use the window
    ``[warmup_s, duration_s)`` (requests that *arrive* in it; GPU time inside it). After
    ``duration_s`` no new request arrives and the fleet keeps working for at most ``drain_s``
    (default: as long as the horizon) so that in-flight requests finish; whatever is still
    unfinished then ends ``failed`` with reason ``drain_limit``.
    """

    duration_s: float = Field(gt=0, description="Simulated time during which requests arrive.")
    warmup_s: float = Field(0.0, ge=0, description="Initial transient excluded from metrics.")
    drain_s: float | None = Field(None, ge=0, description="Extra time to finish in-flight work.")
    sample_interval_s: float = Field(
        60.0, gt=0, description="Spacing of the fleet time series (queue, batch, KV use)."
    )

    @model_validator(mode="after")
    def _warmup_inside(self) -> Horizon:
        if self.warmup_s >= self.duration_s:
            raise ValueError(
                f"warmup_s ({self.warmup_s}) must be smaller than duration_s ({self.duration_s})"
            )
        return self

    @property
    def drain_limit_s(self) -> float:
        """Absolute time at which the drain stops."""
        return self.duration_s + (self.duration_s if self.drain_s is None else self.drain_s)


class EngineSpec(Frozen):
    """Continuous-batching scheduler settings of one replica (vLLM names)."""

    max_num_seqs: int = Field(256, ge=1, le=4096)
    max_num_batched_tokens: int = Field(8192, ge=1)
    kv_memory_fraction: float = Field(0.9, gt=0, le=1.0)
    block_tokens: int = Field(16, ge=1, le=1024)
    chunked_prefill: bool = True
    max_model_len: int | None = Field(
        None, ge=1, description="Longest prompt+output accepted; default: the model's context."
    )
    activation_reserve_gib: float = Field(
        1.5,
        ge=0,
        description="Per-GPU memory kept for activations, CUDA graphs and the runtime.",
    )
    kv_blocks: int | None = Field(
        None, ge=1, description="Override the computed KV-cache size (blocks per replica)."
    )


class RooflineStep(Frozen):
    """Step time = overhead + max(compute time, memory time) + tensor-parallel all-reduce."""

    model: Literal["roofline"] = "roofline"
    compute_efficiency: float = Field(0.55, gt=0, le=1)
    bandwidth_efficiency: float = Field(0.80, gt=0, le=1)
    overhead_s: float = Field(0.003, ge=0)
    allreduce_latency_s: float = Field(8e-6, ge=0)


class LinearStep(Frozen):
    """Step time = c0 + c_decode·decode_seqs + c_prefill·prefill_tokens + c_kv·kv_tokens."""

    model: Literal["linear"]
    c0_s: float = Field(ge=0)
    c_decode_s: float = Field(0.0, ge=0)
    c_prefill_token_s: float = Field(0.0, ge=0)
    c_kv_token_s: float = Field(0.0, ge=0)


class ConstantStep(Frozen):
    """Every iteration takes ``step_s`` whatever the batch (the queueing-theory anchor)."""

    model: Literal["constant"]
    step_s: float = Field(gt=0)


StepTimeSpec = Annotated[RooflineStep | LinearStep | ConstantStep, Field(discriminator="model")]


class FleetSpec(Frozen):
    """A fixed fleet of identical replicas, each one copy of the model on ``tp`` GPUs."""

    model: str | dict[str, Any] = Field(
        description="Catalog name, or Hugging Face config.json fields given inline."
    )
    gpu: str
    tp: int = Field(1, ge=1, le=64)
    dtype: Dtype = "bf16"
    kv_dtype: Dtype | None = None
    replicas: int = Field(1, ge=1, le=4096)
    router: RouterKind = "least_loaded"
    max_queue: int | None = Field(
        None, ge=0, description="Waiting requests allowed per replica (central: in total)."
    )
    pricing: PricingSpec | None = Field(
        None, description="What a GPU costs; default: the price catalogue's on-demand quote."
    )
    engine: EngineSpec = Field(default_factory=EngineSpec)
    step_time: StepTimeSpec = Field(default_factory=RooflineStep)

    @property
    def kv_dtype_resolved(self) -> str:
        """KV-cache dtype: ``kv_dtype`` or, when unset, the weight dtype."""
        return self.kv_dtype or self.dtype
