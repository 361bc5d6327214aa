"""Tests for sim.catalog.prices: shipped price tables, default choice, lookups and errors."""

from __future__ import annotations

import csv
import dataclasses
import doctest
import io
import re
from importlib import resources

import pytest

import sim.catalog.prices
from sim.catalog import list_gpus
from sim.catalog.prices import (
    CONFIDENCE_LEVELS,
    GPU_PRICE_KINDS,
    ApiPrice,
    GpuPrice,
    api_price,
    default_gpu_price,
    gpu_prices,
    list_api_models,
)


def _shipped(name: str) -> list[dict[str, str]]:
    text = resources.files("sim.catalog").joinpath(name).read_text(encoding="utf-8")
    return list(csv.DictReader(io.StringIO(text)))


# --- the shipped files ------------------------------------------------------------------


def test_price_files_ship_inside_the_package() -> None:
    gpu_rows, api_rows = _shipped("prices_gpu.csv"), _shipped("prices_api.csv")
    assert len(gpu_rows) == len(gpu_prices()) == 22
    assert len(api_rows) == len(list_api_models()) == 42
    for row in gpu_rows + api_rows:
        assert row["source"] and row["quote_date"] and row["confidence"]


def test_gpu_rows_are_normalised() -> None:
    known = set(list_gpus())
    for p in gpu_prices():
        assert p.gpu in known
        assert p.kind in GPU_PRICE_KINDS
        assert p.confidence in CONFIDENCE_LEVELS
        assert p.usd_per_gpu_hour > 0 and p.gpu_count >= 1
    # per-GPU price = instance price / GPUs, as copied
    for row in _shipped("prices_gpu.csv"):
        per_gpu = float(row["usd_per_hour_instance"]) / int(row["gpu_count"])
        assert float(row["usd_per_gpu_hour"]) == pytest.approx(per_gpu, abs=1e-4)


def test_gpu_prices_filters_by_name_or_alias() -> None:
    h100 = gpu_prices("H100 SXM5")
    assert h100 and {p.gpu for p in h100} == {"h100-sxm"}
    assert [p.usd_per_gpu_hour for p in h100 if p.provider == "Lambda"] == [3.29, 3.19, 3.09, 2.99]
    assert gpu_prices("l4") == []  # known GPU, no quote
    with pytest.raises(KeyError, match="known GPUs"):
        gpu_prices("tpu-v5")


def test_api_rows_are_sane() -> None:
    keys = list_api_models()
    assert len({k.lower() for k in keys}) == len(keys)
    for key in keys:
        p = api_price(key)
        assert p.key == key
        assert p.usd_per_1m_input >= 0 and p.usd_per_1m_output >= 0
        if p.usd_per_1m_cached_input is not None:
            assert p.usd_per_1m_cached_input <= p.usd_per_1m_input
        assert p.confidence in CONFIDENCE_LEVELS


def test_prices_are_immutable_values() -> None:
    p = default_gpu_price("h100-sxm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.usd_per_gpu_hour = 0.0  # type: ignore[misc]
    assert isinstance(p, GpuPrice)
    assert isinstance(api_price("openai/gpt-4o"), ApiPrice)


# --- the default choice -----------------------------------------------------------------

DEFAULTS = [
    ("h100-sxm", "on_demand", 3.29, "Lambda"),
    ("h100-sxm", "reserved", 4.9162, "AWS"),
    ("h100-pcie", "on_demand", 2.49, "Lambda"),
    ("h200-sxm", "reserved", 5.4075, "AWS"),
    ("a100-80gb-sxm", "on_demand", 1.89, "RunPod (secure cloud)"),
    ("a100-80gb-pcie", "on_demand", 1.64, "RunPod (secure cloud)"),
    ("a100-80gb-pcie", "spot", 1.19, "RunPod (secure cloud)"),
    ("a100-40gb-sxm", "on_demand", 1.29, "Lambda"),
    ("a100-40gb-sxm", "reserved", 1.8438, "AWS"),
    ("l40s", "on_demand", 1.03, "RunPod"),
    ("mi300x", "on_demand", 3.99, "MAKO/Cirrascale"),
]


@pytest.mark.parametrize(("gpu", "kind", "usd", "provider"), DEFAULTS)
def test_default_gpu_price(gpu: str, kind: str, usd: float, provider: str) -> None:
    p = default_gpu_price(gpu, kind)
    assert (p.gpu, p.kind, p.usd_per_gpu_hour, p.provider) == (gpu, kind, usd, provider)


def test_default_rule_confidence_then_smallest_instance_then_price() -> None:
    on_demand = [p for p in gpu_prices("h100-sxm") if p.kind == "on_demand"]
    # cheaper quotes exist (8x node at 2.99, CoreWeave 2.23 low), but the rule picks the
    # high-confidence single-GPU instance
    assert min(p.usd_per_gpu_hour for p in on_demand) < 3.29
    chosen = default_gpu_price("h100-sxm")
    assert (chosen.confidence, chosen.gpu_count, chosen.sku) == ("high", 1, "gpu_1x_h100_sxm5")
    # reserved: the medium AWS quote beats the cheaper low-confidence CoreWeave one
    assert default_gpu_price("h100-sxm", "reserved").confidence == "medium"
    # the same GPU under an alias gives the same quote; the choice is deterministic
    assert default_gpu_price("H100") == chosen == default_gpu_price("h100-sxm")


def test_default_gpu_price_errors_name_what_is_known() -> None:
    with pytest.raises(KeyError, match="known GPUs: h100-sxm"):
        default_gpu_price("tpu-v5")
    with pytest.raises(KeyError, match=r"unknown pricing kind 'owned'.*on_demand, spot, reserved"):
        default_gpu_price("h100-sxm", "owned")
    with pytest.raises(
        KeyError, match=r"no on_demand price for GPU 'l4'.*kinds priced for l4: none"
    ):
        default_gpu_price("l4")
    with pytest.raises(KeyError, match=r"kinds priced for h200-sxm: reserved.*GPUs with on_demand"):
        default_gpu_price("h200", "on_demand")
    with pytest.raises(KeyError, match="GPUs with spot prices: a100-80gb-pcie"):
        default_gpu_price("b200", "spot")


# --- API lookups ------------------------------------------------------------------------


def test_api_price_by_key_case_insensitive() -> None:
    p = api_price("openai/gpt-4o-mini")
    assert (p.usd_per_1m_input, p.usd_per_1m_output, p.usd_per_1m_cached_input) == (
        0.15,
        0.6,
        0.075,
    )
    assert api_price("OPENAI/GPT-4O-MINI") == p
    assert api_price("  gpt-4o-mini ") == p  # bare name, unambiguous
    t = api_price("together_ai/Meta-Llama-3.1-8B-Instruct-Turbo")
    assert (t.usd_per_1m_input, t.usd_per_1m_output, t.usd_per_1m_cached_input) == (
        0.18,
        0.18,
        None,
    )
    # LiteLLM's model id finds the same entry
    assert api_price("together_ai/meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo") == t
    d = api_price("deepinfra/Meta-Llama-3.1-70B-Instruct")
    assert (d.usd_per_1m_input, d.usd_per_1m_output) == (0.4, 0.4)


def test_api_price_official_rows_win() -> None:
    opus = api_price("anthropic/claude-opus-4-5")
    assert (opus.usd_per_1m_input, opus.usd_per_1m_output, opus.confidence) == (5.0, 25.0, "high")
    assert api_price("claude-opus-4-1").usd_per_1m_output == 75.0


def test_api_price_ambiguous_bare_name_lists_providers() -> None:
    with pytest.raises(KeyError, match="ambiguous") as err:
        api_price("gpt-oss-120b")
    for key in ("together_ai/gpt-oss-120b", "fireworks_ai/gpt-oss-120b", "groq/gpt-oss-120b"):
        assert key in str(err.value)
    with pytest.raises(KeyError, match=re.escape("deepinfra/Meta-Llama-3.1-8B-Instruct")):
        api_price("meta-llama-3.1-8b-instruct")


def test_api_price_unknown_lists_close_matches() -> None:
    with pytest.raises(
        KeyError,
        match=r"unknown API model 'gpt4o-mini'; close matches: .*"
        r"openai/gpt-4o-mini",
    ):
        api_price("gpt4o-mini")
    with pytest.raises(KeyError, match="list_api_models"):
        api_price("zzzzzz")


def test_list_api_models_keys() -> None:
    keys = list_api_models()
    assert keys[0] == "openai/gpt-4o"
    for key in (
        "openai/gpt-4o-mini",
        "together_ai/Meta-Llama-3.1-8B-Instruct-Turbo",
        "deepinfra/Meta-Llama-3.1-70B-Instruct",
    ):
        assert key in keys
    assert all("/" in k for k in keys)


def test_docstring_examples() -> None:
    result = doctest.testmod(sim.catalog.prices, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted >= 5
