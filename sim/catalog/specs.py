"""The catalogue's value types: a GPU's datasheet figures and an LLM's architecture, with
what is computed from them (parameter counts, weight and KV-cache bytes), and
:func:`model_from_hf_config` for a Hugging Face ``config.json``. No files are read here
(the named catalogue in :mod:`sim.catalog._load` builds these from the shipped data).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = ["DTYPE_BYTES", "GpuSpec", "ModelSpec", "model_from_hf_config"]

DTYPE_BYTES: Mapping[str, float] = MappingProxyType(
    {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "fp4": 0.5}
)
"""Bytes per element of each supported weight / KV-cache data type (read-only)."""


def _dtype(dtype: str) -> str:
    key = dtype.strip().lower()
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_BYTES)}")
    return key


@dataclass(frozen=True)
class GpuSpec:
    """Datasheet figures of one GPU.

    Attributes
    ----------
    name : str
        Canonical catalog name, e.g. ``"h100-sxm"``.
    memory_gib : float
        Device memory in GiB (datasheet GB read as GiB, see the module notes).
    mem_bandwidth_tb_s : float
        Peak memory bandwidth in TB/s (10^12 bytes/s).
    bf16_tflops : float
        Dense BF16/FP16 tensor-core peak, TFLOP/s.
    fp8_tflops : float or None
        Dense FP8 tensor-core peak, TFLOP/s; None where the GPU has no FP8 units (A100).
    interconnect_gb_s : float
        Per-GPU, one-direction bandwidth of the tensor-parallel link, GB/s.
    tdp_w : float or None
        Board power limit in watts, None if unknown.
    source : str
        Where the figures come from (URLs).
    fp4_tflops : float or None
        Dense FP4 tensor-core peak, TFLOP/s; only Blackwell has FP4 units.
    memory_reported_gib : float or None
        The total the driver reports (nvidia-smi), GiB, where it differs from ``memory_gib``
        read as GiB: a GDDR card's datasheet "24 GB" is decimal and ECC reserves part of
        it (an L4 reports 23,034 MiB). None: ``memory_gib``.
    """

    name: str
    memory_gib: float
    mem_bandwidth_tb_s: float
    bf16_tflops: float
    fp8_tflops: float | None
    interconnect_gb_s: float
    tdp_w: float | None
    source: str
    fp4_tflops: float | None = None
    memory_reported_gib: float | None = None

    @property
    def device_memory_gib(self) -> float:
        """The device memory the driver reports, GiB (``memory_reported_gib`` when known,
        else ``memory_gib``): what a serving engine's memory fraction applies to."""
        return self.memory_reported_gib or self.memory_gib

    def __post_init__(self) -> None:
        for field in ("memory_gib", "mem_bandwidth_tb_s", "bf16_tflops", "interconnect_gb_s"):
            if not getattr(self, field) > 0:
                raise ValueError(f"GpuSpec {self.name!r}: {field} must be > 0")
        for field in ("fp8_tflops", "fp4_tflops", "tdp_w", "memory_reported_gib"):
            value = getattr(self, field)
            if value is not None and not value > 0:
                raise ValueError(f"GpuSpec {self.name!r}: {field} must be > 0 or None")

    def peak_tflops(self, dtype: str) -> float:
        """Dense peak TFLOP/s of the matmuls when weights are stored as ``dtype``.

        ``bf16``/``fp16`` use the BF16 peak. ``fp8``/``int8`` use the FP8 peak where the GPU
        has FP8 units (on those GPUs INT8 runs at the same rate); otherwise the weights are
        assumed dequantised and multiplied in BF16 (weight-only quantisation, e.g. FP8
        Marlin kernels on A100), so the BF16 peak applies. ``fp4`` uses the FP4 peak where
        the GPU has FP4 units, and ``int4`` always uses the BF16 peak: 4-bit integer
        schemes in serving engines (AWQ, GPTQ) are weight-only. A100 INT8 tensor cores
        (W8A8) are therefore not credited: conservative for compute-bound prefill.

        Parameters
        ----------
        dtype : str
            One of the keys of :data:`DTYPE_BYTES`.

        Returns
        -------
        float
            TFLOP/s.

        Raises
        ------
        ValueError
            If ``dtype`` is not known.

        Examples
        --------
        >>> from sim.catalog import get_gpu
        >>> get_gpu("h100").peak_tflops("fp8")
        1978.9
        >>> get_gpu("a100-80gb").peak_tflops("fp8")  # no FP8 units: BF16 math
        312.0
        """
        key = _dtype(dtype)
        if key in ("fp8", "int8") and self.fp8_tflops is not None:
            return self.fp8_tflops
        if key == "fp4" and self.fp4_tflops is not None:
            return self.fp4_tflops
        return self.bf16_tflops


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of a decoder-only transformer (Llama-style: RMSNorm, SwiGLU, GQA).

    Field meanings follow the Hugging Face ``config.json`` names given in brackets.

    Attributes
    ----------
    name : str
        Catalog name, or the ``name`` passed to :func:`model_from_hf_config`.
    hidden_size : int
        Model width h [hidden_size].
    num_layers : int
        Decoder layers L [num_hidden_layers].
    num_heads : int
        Query heads [num_attention_heads].
    num_kv_heads : int
        Key/value heads (GQA groups) [num_key_value_heads].
    head_dim : int
        Width d of one head [head_dim, default hidden_size / num_attention_heads].
    intermediate_size : int
        MLP width f of one (expert) MLP [intermediate_size, or moe_intermediate_size].
    vocab_size : int
        V [vocab_size].
    tie_word_embeddings : bool
        Whether the output projection reuses the input embedding table.
    max_position_embeddings : int
        Longest context the configuration supports, tokens.
    num_experts : int
        Routed experts per MoE layer; 0 for a dense model [num_local_experts].
    experts_per_token : int
        Experts each token is routed to; 0 for a dense model [num_experts_per_tok].
    source : str
        URL of the config the numbers come from.

    Notes
    -----
    Parameter counts cover: the embedding table (V·h); per layer the q, k, v, o projections
    (h·n_q·d + 2·h·n_kv·d + n_q·d·h), a gated MLP of three h×f matrices per expert, the MoE
    router (h·E) and two RMSNorm weight vectors (2h); a final norm (h); and an untied
    ``lm_head`` (V·h). Biases (Qwen2 q/k/v) and rotary tables are not counted.
    """

    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    num_experts: int
    experts_per_token: int
    source: str

    def __post_init__(self) -> None:
        positive = (
            "hidden_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
            "max_position_embeddings",
        )
        for field in positive:
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"ModelSpec {self.name!r}: {field} must be a positive int")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"ModelSpec {self.name!r}: num_heads ({self.num_heads}) must be a multiple "
                f"of num_kv_heads ({self.num_kv_heads})"
            )
        if self.num_experts < 0:
            raise ValueError(f"ModelSpec {self.name!r}: num_experts must be >= 0")
        if self.num_experts == 0 and self.experts_per_token != 0:
            raise ValueError(
                f"ModelSpec {self.name!r}: experts_per_token must be 0 for a dense model"
            )
        if self.num_experts > 0 and not 1 <= self.experts_per_token <= self.num_experts:
            raise ValueError(
                f"ModelSpec {self.name!r}: experts_per_token must be in 1..num_experts"
            )

    @property
    def is_moe(self) -> bool:
        """True for a mixture-of-experts model (``num_experts > 0``)."""
        return self.num_experts > 0

    @property
    def _attention_params_per_layer(self) -> int:
        q = self.num_heads * self.head_dim
        kv = self.num_kv_heads * self.head_dim
        return self.hidden_size * (2 * q + 2 * kv)

    @property
    def _mlp_params(self) -> int:
        return 3 * self.hidden_size * self.intermediate_size

    @property
    def expert_params_per_layer(self) -> int:
        """Parameters of one expert's MLP in one layer, 3·h·f; 0 for a dense model."""
        return self._mlp_params if self.is_moe else 0

    @property
    def embedding_params(self) -> int:
        """Parameters of the input embedding table, V·h."""
        return self.vocab_size * self.hidden_size

    def _params(self, experts: int) -> int:
        mlp = experts * self._mlp_params if self.is_moe else self._mlp_params
        router = self.hidden_size * self.num_experts
        per_layer = self._attention_params_per_layer + mlp + router + 2 * self.hidden_size
        lm_head = 0 if self.tie_word_embeddings else self.embedding_params
        return self.embedding_params + lm_head + self.num_layers * per_layer + self.hidden_size

    @property
    def total_params(self) -> int:
        """All parameters: V·h + [V·h if untied] + L·(attn + E·3hf + hE + 2h) + h.

        For a dense model the MLP term is one 3·h·f MLP and there is no router.
        """
        return self._params(self.num_experts)

    @property
    def active_params(self) -> int:
        """Parameters used for one token: as :attr:`total_params` with k of E experts.

        Equal to :attr:`total_params` for a dense model; for MoE only
        ``experts_per_token`` experts' MLPs count (the router and attention always do).
        """
        return self._params(self.experts_per_token)

    @property
    def matmul_params_per_token(self) -> int:
        """Parameters one token multiplies by: active − V·h (+ V·h again when tied).

        The input embedding is a table lookup, not a matmul, so it is removed; the output
        projection (``lm_head``) is a V×h matmul even when it shares the embedding's
        weights, so it is counted once in both cases. Norm weights (≈ 2·L·h) are left in:
        negligible. Forward FLOPs per token ≈ 2 × this (+ attention over the context).
        """
        tied_lm_head = self.embedding_params if self.tie_word_embeddings else 0
        return self.active_params - self.embedding_params + tied_lm_head

    def kv_bytes_per_token(self, kv_dtype: str) -> float:
        """KV-cache bytes one token occupies: 2 · L · n_kv · d · bytes(kv_dtype).

        Parameters
        ----------
        kv_dtype : str
            One of the keys of :data:`DTYPE_BYTES`.

        Returns
        -------
        float
            Bytes per token of context (K and V, all layers).

        Examples
        --------
        >>> from sim.catalog import get_model
        >>> get_model("llama-3.1-8b").kv_bytes_per_token("bf16")
        131072.0
        """
        return (
            2 * self.num_layers * self.num_kv_heads * self.head_dim * DTYPE_BYTES[_dtype(kv_dtype)]
        )

    def weight_bytes(self, dtype: str) -> float:
        """Bytes of all weights stored as ``dtype``: total_params · bytes(dtype).

        Every expert of a MoE model is resident, so this uses :attr:`total_params`.
        Quantisation scales and unquantised layers (often the embeddings) are ignored.

        Examples
        --------
        >>> from sim.catalog import get_model
        >>> round(get_model("llama-3.1-8b").weight_bytes("bf16") / 2**30, 2)  # GiB
        14.96
        """
        return self.total_params * DTYPE_BYTES[_dtype(dtype)]


_REQUIRED_HF_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "vocab_size",
    "max_position_embeddings",
)
# Architectural features the simple count above does not represent; a config that uses
# them still loads, with a warning that the counts are approximate.
_UNMODELLED_HF_FIELDS = (
    "n_shared_experts",
    "shared_expert_intermediate_size",
    "first_k_dense_replace",
    "kv_lora_rank",
    "q_lora_rank",
)


def _first_present(config: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if config.get(key) is not None:
            return config[key]
    return None


def _as_int(value: Any, field: str) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value != int(value)
    ):
        raise ValueError(f"config field {field!r} must be an integer, got {value!r}")
    return int(value)


def model_from_hf_config(config: Mapping[str, Any], *, name: str = "custom") -> ModelSpec:
    """Build a :class:`ModelSpec` from a Hugging Face ``config.json`` mapping.

    Parameters
    ----------
    config : Mapping
        Parsed ``config.json``. Multimodal configs that nest the language model under
        ``text_config`` are accepted.
    name : str, keyword-only
        Name given to the spec.

    Returns
    -------
    ModelSpec
        ``source`` is ``"hf-config"``; set it with :func:`dataclasses.replace` if known.

    Raises
    ------
    ValueError
        If a required field (hidden_size, num_hidden_layers, num_attention_heads,
        intermediate_size, vocab_size, max_position_embeddings) is missing, naming it, or
        a value is not an integer.

    Notes
    -----
    Defaults follow the Hugging Face Llama config: ``num_key_value_heads`` defaults to
    ``num_attention_heads``, ``head_dim`` to hidden_size / num_attention_heads,
    ``tie_word_embeddings`` to False. Expert count is read from ``num_local_experts``
    (Mixtral), ``num_experts`` (Qwen-MoE) or ``n_routed_experts`` (DeepSeek), and the
    expert MLP width from ``moe_intermediate_size`` when present. Shared experts, leading
    dense layers and MLA compressed KV are not modelled: a config using them gets a
    ``UserWarning`` and approximate counts.

    Examples
    --------
    >>> spec = model_from_hf_config(
    ...     {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
    ...      "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
    ...      "max_position_embeddings": 131072},
    ...     name="my-llama",
    ... )
    >>> round(spec.total_params / 1e9, 2)
    8.03
    """
    text_config = config.get("text_config")
    if "hidden_size" not in config and isinstance(text_config, Mapping):
        config = text_config
    for field in _REQUIRED_HF_FIELDS:
        if config.get(field) is None:
            raise ValueError(f"config for {name!r} is missing required field {field!r}")
    unmodelled = [key for key in _UNMODELLED_HF_FIELDS if config.get(key)]
    if unmodelled:
        warnings.warn(
            f"config for {name!r} uses {', '.join(unmodelled)}, which the parameter and KV "
            "counts do not model; treat them as approximate",
            UserWarning,
            stacklevel=2,
        )
    hidden = _as_int(config["hidden_size"], "hidden_size")
    heads = _as_int(config["num_attention_heads"], "num_attention_heads")
    kv_heads = _first_present(config, "num_key_value_heads")
    head_dim = _first_present(config, "head_dim")
    experts_raw = _first_present(config, "num_local_experts", "num_experts", "n_routed_experts")
    experts = 0 if experts_raw is None else _as_int(experts_raw, "num_local_experts")
    per_token = 0
    intermediate_field = "intermediate_size"
    if experts > 0:
        if config.get("num_experts_per_tok") is None:
            raise ValueError(f"config for {name!r} is missing required field 'num_experts_per_tok'")
        per_token = _as_int(config["num_experts_per_tok"], "num_experts_per_tok")
        if config.get("moe_intermediate_size") is not None:
            intermediate_field = "moe_intermediate_size"
    return ModelSpec(
        name=name,
        hidden_size=hidden,
        num_layers=_as_int(config["num_hidden_layers"], "num_hidden_layers"),
        num_heads=heads,
        num_kv_heads=heads if kv_heads is None else _as_int(kv_heads, "num_key_value_heads"),
        head_dim=hidden // heads if head_dim is None else _as_int(head_dim, "head_dim"),
        intermediate_size=_as_int(config[intermediate_field], intermediate_field),
        vocab_size=_as_int(config["vocab_size"], "vocab_size"),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_position_embeddings=_as_int(
            config["max_position_embeddings"], "max_position_embeddings"
        ),
        num_experts=experts,
        experts_per_token=per_token,
        source="hf-config",
    )
