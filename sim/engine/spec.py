"""The ``fleet:`` and ``horizon:`` sections of a scenario as the engine reads them: the
replicas, their engine settings and step-time model, routing to replicas, fleet dynamics.

What the fleet costs (``fleet.pricing``) is the economics layer's addition
(:class:`sim.economics.spec.PricedFleetSpec`); the engine never reads it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from sim._base import Frozen
from sim.catalog.profiles import profile_names, profiles_text

Dtype = Literal["bf16", "fp16", "fp8", "int8", "int4", "fp4"]
RouterKind = Literal[
    "round_robin",
    "least_loaded",
    "power_of_two",
    "central",
    "random",
    "least_requests",
    "prefix_affinity",
]


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
        60.0,
        gt=0,
        description=(
            "Spacing of the fleet time series (queue, batch, KV use); past 1,000,000 rows "
            "every second sample is dropped and the spacing doubles."
        ),
    )
    records: Literal["all", "sample", "none"] = Field(
        "all",
        description=(
            "Per-request records kept: all (exact latency quantiles), a reproducible sample "
            "or none. With sample or none, requests are generated as the clock advances and "
            "folded into the metrics once finished (memory follows what is in flight) and "
            "latency quantiles come from a sketch within 0.5 % (relative)."
        ),
    )
    records_sample: float = Field(
        0.01, gt=0, le=1, description="Share of requests recorded when records is sample."
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
    kv_memory_fraction: float = Field(
        0.9,
        gt=0,
        le=1.0,
        description="vLLM's gpu_memory_utilization: the share of each GPU's memory the "
        "engine may use for weights, activations and the KV cache.",
    )
    block_tokens: int = Field(16, ge=1, le=1024)
    chunked_prefill: bool = True
    max_model_len: int | None = Field(
        None, ge=1, description="Longest prompt+output accepted; default: the model's context."
    )
    activation_reserve_gib: float | None = Field(
        None,
        ge=0,
        description="Legacy: a constant per-GPU reserve for activations, CUDA graphs and the "
        "runtime, taken from the nominal memory. Unset (default): the KV cache is sized as "
        "vLLM V1 does, from the model's shape and these settings (sim.engine.memory).",
    )
    enforce_eager: bool = Field(
        False, description="No CUDA graphs (vLLM --enforce-eager): no graph memory to keep."
    )
    cuda_graphs_in_kv_budget: bool = Field(
        False,
        description="Take the CUDA graphs' memory out of the KV budget (recent vLLM with "
        "VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS); the releases of the published logs "
        "capture the graphs after sizing the KV cache.",
    )
    kv_blocks: int | None = Field(
        None, ge=1, description="Override the computed KV-cache size (blocks per replica)."
    )
    schedule_ahead: bool | None = Field(
        None,
        description="The scheduler plans iteration i + 1 while iteration i runs (vLLM's "
        "asynchronous scheduling): a request arriving while sequences run joins one "
        "iteration later than an engine that plans at each boundary. Unset: the step-time "
        "profile's engine (vllm-2026: yes; splitwise-2023, trtllm, linear and constant step "
        "times: no).",
    )
    frontend_latency_s: float = Field(
        0.01,
        ge=0,
        description="Server front end (HTTP, tokenisation, first streamed chunk), added to TTFT "
        "and E2E of every request the fleet serves. Default: fitted to the mean TTFT of nine "
        "measured vLLM runs, with the scheduler planning ahead (benchmarks/validation.md).",
    )


class RooflineStep(Frozen):
    """Step time = overhead + max(compute time, memory time) + tensor-parallel all-reduce.

    Each constant may be given here; those left out come from the named ``profile`` of
    ``sim/catalog/profiles.yaml`` for the GPU's family: an engine version (``vllm-2026``:
    vLLM on H100; ``splitwise-2023``: the 2023 A100 stack of the Splitwise profile;
    ``trtllm``: TensorRT-LLM's published offline throughput), refused on a GPU family it was
    not fitted on, or the default ``vllm`` (per family the stack measured on it, the Hopper
    values elsewhere); else from the documented global defaults (the ``vllm-2026`` values);
    see
    :func:`sim.engine.steptime.resolve_roofline`.
    """

    model: Literal["roofline"] = "roofline"
    profile: str | None = Field(
        None,
        description="Named coefficient profile: an engine and version (vllm-2026, "
        "splitwise-2023, trtllm) or the default vllm (per GPU family, the stack measured "
        "on it).",
    )
    compute_efficiency: float | None = Field(
        None, gt=0, le=1, description="Achieved share of the dense tensor-core peak."
    )
    bandwidth_efficiency: float | None = Field(
        None, gt=0, le=1, description="Achieved share of the HBM bandwidth."
    )
    overhead_s: float | None = Field(None, ge=0, description="Fixed cost of every iteration.")
    allreduce_latency_s: float | None = Field(
        None, ge=0, description="Latency of one tensor-parallel all-reduce (2 per layer)."
    )
    allreduce_hop_s: float | None = Field(
        None,
        ge=0,
        description="Latency of one step of a ring all-reduce: each all-reduce takes "
        "2·(tp − 1) steps, so the fixed cost per iteration grows with tp.",
    )
    link_efficiency: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Achieved share of the GPU's interconnect bandwidth (per direction) while "
        "an all-reduce moves its 2·(tp − 1)/tp bytes per byte of activations, for messages "
        "beyond small_message_mib (the stack's NCCL path).",
    )
    small_link_efficiency: float | None = Field(
        None,
        gt=0,
        le=1,
        description="The same share for messages up to small_message_mib (the stack's "
        "latency-optimised all-reduce kernel).",
    )
    small_message_mib: float | None = Field(
        None,
        ge=0,
        description="Largest all-reduce message (MiB) the small-message kernel takes.",
    )

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str | None) -> str | None:
        if v is not None and v not in profile_names():
            raise ValueError(f"unknown step-time profile {v!r}; known: {profiles_text()}")
        return v


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


class ScheduledCapacity(Frozen):
    """From ``hour`` (time of day, 0–24) on, keep at least ``replicas`` replicas."""

    hour: float = Field(ge=0, lt=24)
    replicas: int = Field(ge=0)


class AutoscalerSpec(Frozen):
    """Scale the number of replicas to keep a load metric near its target.

    Every ``interval_s`` the autoscaler reads ``metric`` over the ready replicas (sequences
    running or waiting per replica; requests waiting per replica; mean KV-cache occupancy; or
    predicted time to first token of a new request) and asks for
    ``ceil(ready · value / target)`` replicas (proportional control, as Kubernetes' horizontal
    autoscaler does), bounded by ``[min_replicas, max_replicas]`` and never below the
    ``schedule`` floor for the time of day. A new replica is paid from the request on and
    serves after a cold start: ``provisioning_s`` plus loading the weights at
    ``weight_load_gb_per_s`` (or ``cold_start_s`` when given). Scaling down drains the
    least-loaded replica (no new work; it finishes what it holds and is released when empty),
    one replica at most once per ``scale_down_cooldown_s``, and never within that time of a
    scale-up.
    """

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(ge=1, le=1024)
    metric: Literal[
        "concurrency_per_replica", "queue_per_replica", "kv_occupancy", "predicted_ttft_s"
    ] = "concurrency_per_replica"
    target: float = Field(gt=0)
    interval_s: float = Field(30.0, gt=0)
    provisioning_s: float = Field(90.0, ge=0)
    weight_load_gb_per_s: float = Field(2.0, gt=0)
    cold_start_s: float | None = Field(None, ge=0)
    scale_down_cooldown_s: float = Field(300.0, ge=0)
    schedule: tuple[ScheduledCapacity, ...] = ()

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalerSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class SpotSpec(Frozen):
    """Spot capacity: replicas are reclaimed at ``interruptions_per_hour`` each (Poisson), or
    at the listed ``interruption_times_s``, after a warning of ``notice_s``.

    On the warning the replica stops taking work and a replacement is requested (cold start
    again, when ``replace``); at the interruption whatever it still holds goes back to the
    shared queue, its KV cache lost, to be recomputed elsewhere.
    """

    interruptions_per_hour: float = Field(0.0, ge=0)
    interruption_times_s: tuple[float, ...] = ()
    notice_s: float = Field(120.0, ge=0)
    replace: bool = True


class FailureSpec(Frozen):
    """Replica failures: exponential time to failure with mean ``mtbf_hours`` per replica;
    the replica's work is re-queued at once (no warning) and it serves again after
    ``restart_s`` (still paid meanwhile)."""

    mtbf_hours: float = Field(gt=0)
    restart_s: float = Field(300.0, ge=0)


class AffinitySpec(Frozen):
    """How far the ``prefix_affinity`` router may stray from the least loaded replica.

    A ready replica is a candidate when its outstanding tokens are at most
    ``least + max(slack_tokens, slack_fraction · least)``, ``least`` being the least loaded
    replica's; among candidates the one holding the longest cached prefix of the request
    wins (ties: the less loaded, then the lower slot), and without any cached prefix the
    least loaded replica.
    """

    slack_tokens: int = Field(8192, ge=0, description="load allowance, tokens")
    slack_fraction: float = Field(0.25, ge=0.0, description="load allowance, share of the least")


class FleetSpec(Frozen):
    """A fixed fleet of identical replicas, each one copy of the model on ``tp`` GPUs."""

    model: str | dict[str, Any] = Field(
        description="Catalog name, or Hugging Face config.json fields given inline."
    )
    gpu: str
    tp: int = Field(1, ge=1, le=64)
    dtype: Dtype = "bf16"
    kv_dtype: Dtype | None = None
    replicas: int = Field(
        1, ge=0, le=4096, description="Fixed fleet size; with an autoscaler, the starting size."
    )
    router: RouterKind = "least_loaded"
    affinity: AffinitySpec = Field(default_factory=AffinitySpec)
    max_queue: int | None = Field(
        None, ge=0, description="Waiting requests allowed per replica (central: in total)."
    )
    autoscaler: AutoscalerSpec | None = None
    spot: SpotSpec | None = None
    failures: FailureSpec | None = None
    engine: EngineSpec = Field(default_factory=EngineSpec)
    step_time: StepTimeSpec = Field(default_factory=RooflineStep)

    @property
    def dynamic(self) -> bool:
        """Replicas start and stop during a run (autoscaling, spot, failures)."""
        return self.autoscaler is not None or self.spot is not None or self.failures is not None

    @property
    def max_slots(self) -> int:
        """Replica slots the engine allocates: the most replicas that can exist at once."""
        most = self.replicas if self.autoscaler is None else self.autoscaler.max_replicas
        most = max(most, self.replicas)
        # a spot replacement starts while the warned replica still drains
        return 2 * most if self.spot is not None else most

    @property
    def size_text(self) -> str:
        """The fleet size in words: ``"2"``, or ``"1–6 (autoscaled)"`` with an autoscaler
        (``replicas`` is then only the starting size)."""
        if self.autoscaler is None:
            return str(self.replicas)
        return f"{self.autoscaler.min_replicas}–{self.autoscaler.max_replicas} (autoscaled)"

    @property
    def kv_dtype_resolved(self) -> str:
        """KV-cache dtype: ``kv_dtype`` or, when unset, the weight dtype."""
        return self.kv_dtype or self.dtype
