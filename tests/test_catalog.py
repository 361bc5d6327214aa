"""Tests for sim.catalog: shipped data, computed parameter counts, lookups."""

from __future__ import annotations

import dataclasses
import doctest
from importlib import resources
from typing import Any

import pytest

import sim.catalog
import sim.catalog.specs
from sim.catalog import (
    DTYPE_BYTES,
    GpuSpec,
    ModelSpec,
    get_gpu,
    get_model,
    list_gpus,
    list_models,
    model_from_hf_config,
)
from sim.catalog._load import read_gpu_rows, read_model_entries

# --- models -----------------------------------------------------------------------------

# Published totals (model cards / Hugging Face safetensors counts), in parameters.
PUBLISHED_TOTALS = {
    "llama-3.1-8b": 8.03e9,
    "llama-2-7b": 6.74e9,
    "llama-2-70b": 68.98e9,
    "llama-3.1-70b": 70.55e9,
    "llama-3.3-70b": 70.55e9,
    "llama-3.1-405b": 405.85e9,
    "mixtral-8x7b": 46.70e9,
    "qwen-2.5-7b": 7.61e9,
    "qwen-2.5-72b": 72.7e9,
}

# (hidden, layers, heads, kv_heads, intermediate, vocab, max_position, experts, top_k, tied)
# as published in each model's config.json.
PUBLISHED_CONFIGS = {
    "llama-3.1-8b": (4096, 32, 32, 8, 14336, 128256, 131072, 0, 0, False),
    "llama-3.1-70b": (8192, 80, 64, 8, 28672, 128256, 131072, 0, 0, False),
    "llama-3.3-70b": (8192, 80, 64, 8, 28672, 128256, 131072, 0, 0, False),
    "llama-3.1-405b": (16384, 126, 128, 8, 53248, 128256, 131072, 0, 0, False),
    "qwen-2.5-7b": (3584, 28, 28, 4, 18944, 152064, 32768, 0, 0, False),
    "qwen-2.5-72b": (8192, 80, 64, 8, 29568, 152064, 32768, 0, 0, False),
    "mixtral-8x7b": (4096, 32, 32, 8, 14336, 32000, 32768, 8, 2, False),
    "llama-2-7b": (4096, 32, 32, 32, 11008, 32000, 4096, 0, 0, False),
    "llama-2-70b": (8192, 80, 64, 8, 28672, 32000, 4096, 0, 0, False),
}

LLAMA_31_8B_CONFIG: dict[str, Any] = {
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "tie_word_embeddings": False,
}


def test_catalog_lists_the_required_models() -> None:
    assert set(PUBLISHED_CONFIGS) <= set(list_models())


@pytest.mark.parametrize("name", sorted(PUBLISHED_CONFIGS))
def test_model_fields_match_published_config(name: str) -> None:
    m = get_model(name)
    got = (
        m.hidden_size,
        m.num_layers,
        m.num_heads,
        m.num_kv_heads,
        m.intermediate_size,
        m.vocab_size,
        m.max_position_embeddings,
        m.num_experts,
        m.experts_per_token,
        m.tie_word_embeddings,
    )
    assert got == PUBLISHED_CONFIGS[name]
    assert m.head_dim == 128
    assert m.source.startswith("https://huggingface.co/") and m.source.endswith("config.json")


@pytest.mark.parametrize("name", sorted(PUBLISHED_TOTALS))
def test_total_params_match_published_within_1pct(name: str) -> None:
    assert get_model(name).total_params == pytest.approx(PUBLISHED_TOTALS[name], rel=0.01)


def test_mixtral_active_params() -> None:
    m = get_model("mixtral-8x7b")
    assert m.is_moe
    assert m.active_params == pytest.approx(12.88e9, rel=0.01)
    assert m.expert_params_per_layer == 3 * 4096 * 14336
    # total - active = (E - k) experts in every layer
    assert m.total_params - m.active_params == 32 * 6 * m.expert_params_per_layer


def test_llama_31_8b_exact_count() -> None:
    # Hand count: 2 * V*h + L * (attention + MLP + 2 norms) + final norm.
    h, f, v, layers = 4096, 14336, 128256, 32
    attention = h * h * 2 + 2 * h * 1024
    per_layer = attention + 3 * h * f + 2 * h
    assert get_model("llama-3.1-8b").total_params == 2 * v * h + layers * per_layer + h


def test_dense_model_derived_quantities() -> None:
    m = get_model("llama-3.1-8b")
    assert not m.is_moe
    assert m.active_params == m.total_params
    assert m.expert_params_per_layer == 0
    assert m.embedding_params == 128256 * 4096
    assert m.matmul_params_per_token == m.total_params - m.embedding_params


def test_matmul_params_count_tied_lm_head_once() -> None:
    tied = model_from_hf_config({**LLAMA_31_8B_CONFIG, "tie_word_embeddings": True})
    untied = model_from_hf_config(LLAMA_31_8B_CONFIG)
    assert untied.total_params - tied.total_params == tied.embedding_params
    assert tied.matmul_params_per_token == untied.matmul_params_per_token


def test_kv_bytes_per_token() -> None:
    assert get_model("llama-3.1-8b").kv_bytes_per_token("bf16") == 131072
    assert get_model("llama-2-7b").kv_bytes_per_token("bf16") == 524288
    assert get_model("llama-3.1-8b").kv_bytes_per_token("fp8") == 65536
    assert get_model("llama-3.1-70b").kv_bytes_per_token("bf16") == 2 * 80 * 8 * 128 * 2


def test_weight_bytes() -> None:
    m = get_model("llama-3.1-70b")
    assert m.weight_bytes("bf16") == 2 * m.total_params
    assert m.weight_bytes("fp8") == m.total_params
    assert m.weight_bytes("int4") == 0.5 * m.total_params
    with pytest.raises(ValueError, match="unknown dtype"):
        m.weight_bytes("fp12")


def test_dtype_bytes_is_read_only() -> None:
    assert dict(DTYPE_BYTES) == {
        "bf16": 2,
        "fp16": 2,
        "fp8": 1,
        "int8": 1,
        "int4": 0.5,
        "fp4": 0.5,
    }
    with pytest.raises(TypeError):
        DTYPE_BYTES["fp32"] = 4  # type: ignore[index]


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("llama-3.1-8b", "llama-3.1-8b"),
        ("LLAMA-3.1-8B", "llama-3.1-8b"),
        ("meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
        ("llama-3.1-8b-instruct", "llama-3.1-8b"),
        ("meta-llama/Llama-3.3-70B-Instruct", "llama-3.3-70b"),
        ("meta-llama/Llama-3.1-405B-Instruct", "llama-3.1-405b"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen-2.5-7b"),
        ("qwen2.5-72b", "qwen-2.5-72b"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
        ("meta-llama/Llama-2-7b-chat-hf", "llama-2-7b"),
        ("meta-llama/Llama-2-70b-hf", "llama-2-70b"),
    ],
)
def test_model_aliases(alias: str, expected: str) -> None:
    assert get_model(alias).name == expected


def test_unknown_model_lists_known_names() -> None:
    with pytest.raises(KeyError, match=r"llama-3\.1-8b") as info:
        get_model("gpt-4")
    assert "gpt-4" in str(info.value)
    with pytest.raises(KeyError):
        get_model("llama-3-70b")  # Llama 3 (8k context) is not Llama 3.1


# --- model_from_hf_config ---------------------------------------------------------------


def test_hf_config_equals_catalog_entry() -> None:
    spec = model_from_hf_config(LLAMA_31_8B_CONFIG, name="llama-3.1-8b")
    catalog = get_model("llama-3.1-8b")
    assert dataclasses.replace(spec, source=catalog.source) == catalog


@pytest.mark.parametrize(
    "missing",
    [
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "vocab_size",
        "max_position_embeddings",
    ],
)
def test_hf_config_missing_field_is_named(missing: str) -> None:
    config = {k: v for k, v in LLAMA_31_8B_CONFIG.items() if k != missing}
    with pytest.raises(ValueError, match=missing):
        model_from_hf_config(config)


def test_hf_config_defaults() -> None:
    config = {k: v for k, v in LLAMA_31_8B_CONFIG.items() if k != "num_key_value_heads"}
    spec = model_from_hf_config(config, name="mha")
    assert spec.name == "mha"
    assert spec.num_kv_heads == 32
    assert spec.head_dim == 128
    assert spec.num_experts == 0 and spec.experts_per_token == 0


def test_hf_config_explicit_head_dim() -> None:
    spec = model_from_hf_config({**LLAMA_31_8B_CONFIG, "head_dim": 64})
    assert spec.head_dim == 64
    assert spec.kv_bytes_per_token("bf16") == 2 * 32 * 8 * 64 * 2


@pytest.mark.parametrize("experts_key", ["num_local_experts", "num_experts", "n_routed_experts"])
def test_hf_config_moe_field_names(experts_key: str) -> None:
    config = {**LLAMA_31_8B_CONFIG, experts_key: 8, "num_experts_per_tok": 2}
    spec = model_from_hf_config(config)
    assert spec.num_experts == 8 and spec.experts_per_token == 2


def test_hf_config_moe_needs_top_k() -> None:
    with pytest.raises(ValueError, match="num_experts_per_tok"):
        model_from_hf_config({**LLAMA_31_8B_CONFIG, "num_local_experts": 8})


def test_hf_config_moe_intermediate_size_is_the_expert_width() -> None:
    config = {
        **LLAMA_31_8B_CONFIG,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "moe_intermediate_size": 768,
    }
    assert model_from_hf_config(config).intermediate_size == 768


def test_hf_config_warns_on_unmodelled_features() -> None:
    config = {
        **LLAMA_31_8B_CONFIG,
        "n_routed_experts": 64,
        "num_experts_per_tok": 6,
        "n_shared_experts": 2,
    }
    with pytest.warns(UserWarning, match="n_shared_experts"):
        model_from_hf_config(config)


def test_hf_config_nested_text_config() -> None:
    spec = model_from_hf_config({"model_type": "vlm", "text_config": LLAMA_31_8B_CONFIG})
    assert spec.hidden_size == 4096


def test_hf_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="hidden_size"):
        model_from_hf_config({**LLAMA_31_8B_CONFIG, "hidden_size": 4096.5})
    with pytest.raises(ValueError, match="num_kv_heads"):
        model_from_hf_config({**LLAMA_31_8B_CONFIG, "num_key_value_heads": 5})


def test_model_spec_validation() -> None:
    base = get_model("llama-3.1-8b")
    with pytest.raises(ValueError, match="experts_per_token"):
        dataclasses.replace(base, experts_per_token=1)
    with pytest.raises(ValueError, match="experts_per_token"):
        dataclasses.replace(base, num_experts=8, experts_per_token=9)
    with pytest.raises(ValueError, match="num_layers"):
        dataclasses.replace(base, num_layers=0)


# --- GPUs -------------------------------------------------------------------------------

REQUIRED_GPUS = [
    "h100-sxm",
    "h100-pcie",
    "h200-sxm",
    "a100-80gb-sxm",
    "a100-40gb-sxm",
    "l40s",
    "l4",
    "mi300x",
    "b200",
]


def test_catalog_lists_the_required_gpus() -> None:
    assert set(REQUIRED_GPUS) <= set(list_gpus())


@pytest.mark.parametrize("name", REQUIRED_GPUS)
def test_every_gpu_is_sourced_and_positive(name: str) -> None:
    gpu = get_gpu(name)
    assert isinstance(gpu, GpuSpec)
    assert gpu.source.startswith("http")
    assert gpu.memory_gib > 0 and gpu.mem_bandwidth_tb_s > 0
    assert gpu.bf16_tflops > 0 and gpu.interconnect_gb_s > 0


def test_gpu_values_copied_from_reference_table() -> None:
    h100 = get_gpu("h100-sxm")
    assert (h100.memory_gib, h100.mem_bandwidth_tb_s, h100.bf16_tflops, h100.fp8_tflops) == (
        80,
        3.35,
        989.4,
        1978.9,
    )
    assert h100.tdp_w == 700
    assert get_gpu("h200").memory_gib == 141
    assert get_gpu("h200").mem_bandwidth_tb_s == 4.8
    assert get_gpu("a100-40gb").mem_bandwidth_tb_s == 1.555
    assert get_gpu("mi300x").memory_gib == 192


def test_interconnect_bandwidths() -> None:
    per_direction = {
        "h100-sxm": 450,
        "h200-sxm": 450,
        "a100-80gb-sxm": 300,
        "a100-40gb-sxm": 300,
        "h100-pcie": 64,
        "l40s": 32,
        "l4": 32,
        "mi300x": 448,
        "b200": 900,
    }
    assert {name: get_gpu(name).interconnect_gb_s for name in per_direction} == per_direction


def test_peak_tflops_fallbacks() -> None:
    h100, a100, b200 = get_gpu("h100"), get_gpu("a100-80gb"), get_gpu("b200")
    assert h100.peak_tflops("bf16") == h100.peak_tflops("fp16") == 989.4
    assert h100.peak_tflops("fp8") == h100.peak_tflops("int8") == 1978.9
    assert h100.peak_tflops("fp4") == h100.peak_tflops("int4") == 989.4  # weight-only
    assert a100.fp8_tflops is None
    assert a100.peak_tflops("fp8") == a100.peak_tflops("int8") == 312
    assert b200.peak_tflops("fp4") == 9000
    assert b200.peak_tflops("int4") == b200.bf16_tflops
    with pytest.raises(ValueError, match="unknown dtype"):
        h100.peak_tflops("tf32")


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("h100-sxm", "h100-sxm"),
        ("h100", "h100-sxm"),
        ("H100 SXM5", "h100-sxm"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("h100-pcie", "h100-pcie"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("h200", "h200-sxm"),
        ("a100-80gb", "a100-80gb-sxm"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm"),
        ("a100-40gb", "a100-40gb-sxm"),
        ("A100 80GB PCIe", "a100-80gb-pcie"),
        ("L40S", "l40s"),
        ("l4", "l4"),
        ("AMD Instinct MI300X", "mi300x"),
        ("B200", "b200"),
    ],
)
def test_gpu_aliases(alias: str, expected: str) -> None:
    assert get_gpu(alias).name == expected


def test_unknown_gpu_lists_known_names() -> None:
    with pytest.raises(KeyError, match="h100-sxm"):
        get_gpu("rtx-4090")


def test_gpu_spec_validation() -> None:
    with pytest.raises(ValueError, match="memory_gib"):
        dataclasses.replace(get_gpu("l4"), memory_gib=0)
    with pytest.raises(ValueError, match="fp8_tflops"):
        dataclasses.replace(get_gpu("l4"), fp8_tflops=-1.0)


# --- shipped files ----------------------------------------------------------------------


def test_data_files_ship_inside_the_package() -> None:
    root = resources.files("sim.catalog")
    for filename in ("gpus.csv", "models.yaml", "SOURCES.md"):
        assert root.joinpath(filename).is_file()


def test_raw_rows_are_complete() -> None:
    rows = read_gpu_rows()
    assert len({row["name"] for row in rows}) == len(rows)
    for row in rows:
        assert row["source"] and row["confidence"] and row["interconnect_source"]
    for name, entry in read_model_entries().items():
        assert entry["source"].startswith("https://huggingface.co/"), name


def test_specs_are_immutable_values() -> None:
    spec: ModelSpec = get_model("llama-2-7b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.num_layers = 1  # type: ignore[misc]
    assert get_model("llama-2-7b") is spec  # parsed once, cached


def test_docstring_examples() -> None:
    for module in (sim.catalog.specs, sim.catalog._load):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__
