"""Tests for sim.catalog.prices and price_checks: shipped price tables, sanity rules, default
choice, lookups, errors and stale/weak-price flags."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import doctest
import io
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

import sim.catalog.price_checks
import sim.catalog.prices
from sim.catalog import list_gpus
from sim.catalog.price_checks import (
    API_OUTPUT_FLOOR_USD_PER_1M_PER_B,
    check_catalogue,
    price_flags,
    quote_day,
)
from sim.catalog.prices import (
    CONFIDENCE_LEVELS,
    DEFAULT_RESERVED_TERM_YEARS,
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
    assert len(gpu_rows) == len(gpu_prices()) == 82
    assert len(api_rows) == len(list_api_models()) == 112
    for row in gpu_rows + api_rows:
        assert row["source"] and row["quote_date"] and row["confidence"]


def test_refreshed_rows_replace_the_old_ones() -> None:
    # 2026-12-01 refresh: the expired AWS capacity blocks and the SEO site's CoreWeave rows
    # are gone, Lambda's 1x H100 SXM is $4.29 and AWS p5 $6.88 per GPU
    providers = {p.provider for p in gpu_prices()}
    assert "CoreWeave" not in providers
    assert not any("capacity" in (p.notes + p.source).lower() for p in gpu_prices())
    lam = [p for p in gpu_prices("h100-sxm") if p.sku == "gpu_1x_h100_sxm5"]
    assert [(p.usd_per_gpu_hour, p.quote_date) for p in lam] == [(4.29, "snapshot read 2026-12-01")]
    assert {p.usd_per_gpu_hour for p in gpu_prices("h100-sxm") if p.sku.startswith("p5.")} == {
        6.88,
        2.3355,
        6.6034,
    }
    hyp = api_price("hyperbolic/Meta-Llama-3.1-405B-Instruct")
    assert (hyp.usd_per_1m_input, hyp.usd_per_1m_output) == (4.0, 4.0)


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
    assert [p.usd_per_gpu_hour for p in h100 if p.provider == "Lambda"] == [4.29, 3.99]
    assert [p.gpu_count for p in gpu_prices("l4") if p.kind == "on_demand"] == [1, 1]
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
        if p.cache_write_usd_per_1m is not None:  # writes cost at least a plain input token
            assert p.cache_write_usd_per_1m >= p.usd_per_1m_input
        if p.batch_discount is not None:
            assert 0 < p.batch_discount < 1
        assert p.confidence in CONFIDENCE_LEVELS


def test_api_cache_and_batch_terms_are_carried() -> None:
    opus = api_price("anthropic/claude-opus-4-5")
    assert (
        opus.cache_write_usd_per_1m,
        opus.cache_ttl_s,
        opus.cache_min_tokens,
        opus.batch_discount,
    ) == (6.25, 300, 4096, 0.5)
    gemini = api_price("gemini/gemini-2.5-pro")
    assert (gemini.cache_write_usd_per_1m, gemini.cache_ttl_s) == (None, None)
    assert gemini.cache_min_tokens == 2048
    groq = api_price("groq/gpt-oss-120b")
    assert (groq.cache_ttl_s, groq.batch_discount) == (7200, None)
    # open-weight rows carry their size for the outlier rule; closed ones do not
    assert (api_price("deepinfra/DeepSeek-V3-0324").params_b, opus.params_b) == (671.0, None)
    assert api_price("deepinfra/DeepSeek-V3-0324").active_params_b == 37.0
    assert api_price("nebius/Llama-3.3-70B-Instruct").active_params_b == 70.0  # dense


def test_prices_are_immutable_values() -> None:
    p = default_gpu_price("h100-sxm")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.usd_per_gpu_hour = 0.0  # type: ignore[misc]
    assert isinstance(p, GpuPrice)
    assert isinstance(api_price("openai/gpt-4o"), ApiPrice)


# --- the default choice -----------------------------------------------------------------

RUNPOD = "RunPod (secure cloud)"
DEFAULTS = [
    ("h100-sxm", "on_demand", 2.95, "Nebius"),
    ("h100-sxm", "spot", 1.25, "Nebius"),
    ("h100-sxm", "reserved", 7.673, "GCP"),
    ("h100-pcie", "on_demand", 3.29, "Lambda"),
    ("h100-pcie", "spot", 1.25, RUNPOD),
    ("h200-sxm", "on_demand", 3.5, "Nebius"),
    ("h200-sxm", "spot", 1.45, "Nebius"),
    ("a100-80gb-sxm", "on_demand", 5.0688, "GCP"),
    ("a100-80gb-sxm", "spot", 2.7595, "GCP"),
    ("a100-80gb-pcie", "on_demand", 1.64, RUNPOD),
    ("a100-80gb-pcie", "spot", 0.82, RUNPOD),
    ("a100-40gb-sxm", "on_demand", 1.99, "Lambda"),
    ("a100-40gb-sxm", "spot", 1.928, "GCP"),
    ("a100-40gb-sxm", "reserved", 2.3142, "GCP"),
    ("l40s", "on_demand", 1.5484, "Nebius"),
    ("l40s", "spot", 0.9971, "AWS"),
    ("l4", "on_demand", 0.7068, "GCP"),
    ("l4", "spot", 0.3618, "AWS"),
    ("l4", "reserved", 0.4453, "GCP"),
    ("mi300x", "on_demand", 2.29, RUNPOD),
    ("mi300x", "spot", 1.49, RUNPOD),
    ("b200", "on_demand", 6.99, "Lambda"),
    ("b200", "spot", 2.9, "Nebius"),
]


@pytest.mark.parametrize(("gpu", "kind", "usd", "provider"), DEFAULTS)
def test_default_gpu_price(gpu: str, kind: str, usd: float, provider: str) -> None:
    p = default_gpu_price(gpu, kind)
    assert (p.gpu, p.kind, p.usd_per_gpu_hour, p.provider) == (gpu, kind, usd, provider)


def test_default_rule_confidence_then_smallest_instance_then_price() -> None:
    on_demand = [p for p in gpu_prices("h100-sxm") if p.kind == "on_demand"]
    # a cheaper quote exists (Hyperbolic 1.29, medium-high), but the rule picks the cheapest
    # high-confidence single-GPU instance
    assert min(p.usd_per_gpu_hour for p in on_demand) == 1.29
    chosen = default_gpu_price("h100-sxm")
    assert (chosen.confidence, chosen.gpu_count, chosen.sku) == (
        "high",
        1,
        "gpu-h100-sxm_1gpu-16vcpu-200gb",
    )
    # smallest instance before price: RunPod's 4x A100 SXM at 1.74 loses to GCP's 1x
    assert default_gpu_price("a100-80gb-sxm").gpu_count == 1
    # the same GPU under an alias gives the same quote; the choice is deterministic
    assert default_gpu_price("H100") == chosen == default_gpu_price("h100-sxm")


def test_reserved_default_is_the_one_year_term() -> None:
    assert DEFAULT_RESERVED_TERM_YEARS == 1
    one = default_gpu_price("h100-sxm", "reserved")
    assert (one.term_years, one.usd_per_gpu_hour, one.sku) == (1, 7.673, "a3-highgpu-1g")
    three = default_gpu_price("h100-sxm", "reserved", term_years=3)
    assert (three.term_years, three.usd_per_gpu_hour, three.sku) == (3, 4.858, "a3-highgpu-1g")
    assert default_gpu_price("a100-40gb-sxm", "reserved", term_years=3).usd_per_gpu_hour == 1.2857
    # every reserved row has a term, and no other row has one
    for p in gpu_prices():
        assert (p.term_years is not None) == (p.kind == "reserved")


def test_default_gpu_price_errors_name_what_is_known() -> None:
    with pytest.raises(KeyError, match="known GPUs: h100-sxm"):
        default_gpu_price("tpu-v5")
    with pytest.raises(KeyError, match=r"unknown pricing kind 'owned'.*on_demand, spot, reserved"):
        default_gpu_price("h100-sxm", "owned")
    with pytest.raises(
        KeyError,
        match=r"no reserved price for GPU 'h200-sxm'.*kinds priced for h200-sxm: on_demand, "
        r"spot; GPUs with reserved prices: a100-40gb-sxm, h100-sxm, l4\.",
    ):
        default_gpu_price("h200", "reserved")
    with pytest.raises(
        KeyError, match=r"no 2-year reserved price for GPU 'l4'.*terms priced: 1-year, 3-year"
    ):
        default_gpu_price("l4", "reserved", term_years=2)
    with pytest.raises(ValueError, match="term_years applies to reserved prices only"):
        default_gpu_price("l4", "on_demand", term_years=1)


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
    d = api_price("deepinfra/Llama-3.3-70B-Instruct-Turbo")
    assert (d.usd_per_1m_input, d.usd_per_1m_output) == (0.1, 0.32)


def test_api_price_official_rows() -> None:
    opus = api_price("anthropic/claude-opus-4-5")
    assert (opus.usd_per_1m_input, opus.usd_per_1m_output, opus.confidence) == (5.0, 25.0, "high")
    assert api_price("claude-fable-5-1").usd_per_1m_output == 50.0
    # DeepSeek's peak and off-peak prices are two rows; the bare model id names both
    assert api_price("deepseek/deepseek-flash-off-peak").usd_per_1m_output == 0.6
    with pytest.raises(KeyError, match="deepseek/deepseek-flash, deepseek/deepseek-flash-off"):
        api_price("deepseek-flash")


def test_api_price_ambiguous_bare_name_lists_providers() -> None:
    with pytest.raises(KeyError, match="ambiguous") as err:
        api_price("gpt-oss-120b")
    for key in ("together_ai/gpt-oss-120b", "fireworks_ai/gpt-oss-120b", "groq/gpt-oss-120b"):
        assert key in str(err.value)
    with pytest.raises(KeyError, match=re.escape("hyperbolic/Meta-Llama-3.1-8B-Instruct")):
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
    assert keys[0] == "openai/gpt-4.1"
    for key in (
        "openai/gpt-4o-mini",
        "together_ai/Meta-Llama-3.1-8B-Instruct-Turbo",
        "together_ai/Llama-3.3-70B-Instruct-Turbo",  # the scenarios' API models
        "deepinfra/Llama-3.3-70B-Instruct-Turbo",
    ):
        assert key in keys
    assert all("/" in k for k in keys)


def test_docstring_examples() -> None:
    result = doctest.testmod(sim.catalog.prices, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted >= 5
    checks = doctest.testmod(sim.catalog.price_checks, optionflags=doctest.ELLIPSIS)
    assert checks.failed == 0 and checks.attempted >= 8


# --- sanity rules (sim.catalog.price_checks) ------------------------------------------------


def test_shipped_catalogue_passes_every_rule() -> None:
    assert check_catalogue() == []


def test_every_catalog_gpu_has_an_on_demand_quote() -> None:
    for gpu in list_gpus():
        assert any(p.kind == "on_demand" for p in gpu_prices(gpu)), gpu
        assert default_gpu_price(gpu).usd_per_gpu_hour > 0


def test_reserved_is_below_on_demand_at_the_same_provider() -> None:
    reserved = [p for p in gpu_prices() if p.kind == "reserved"]
    assert {p.provider for p in reserved} == {"GCP"}  # the only committed-use source found
    assert len(reserved) == 12  # H100 (3 machine types), A100 40GB (2), L4: 1 and 3 years
    for r in reserved:
        same = [
            p.usd_per_gpu_hour
            for p in gpu_prices(r.gpu)
            if p.kind == "on_demand" and p.provider == r.provider
        ]
        assert same and r.usd_per_gpu_hour < min(same), r


def test_open_weight_output_prices_are_above_the_size_floor() -> None:
    sized = [api_price(k) for k in list_api_models() if api_price(k).active_params_b is not None]
    assert len(sized) >= 50
    for p in sized:
        assert p.active_params_b is not None
        assert p.usd_per_1m_output >= API_OUTPUT_FLOOR_USD_PER_1M_PER_B * p.active_params_b, p.key


def _quote(gpu: str, kind: str, usd: float, provider: str = "P", **kw: object) -> GpuPrice:
    return GpuPrice(gpu, kind, usd, provider, "src", "2026-12-01", "high", **kw)  # type: ignore[arg-type]


def test_check_catalogue_names_each_broken_rule() -> None:
    quotes = [
        _quote("l4", "on_demand", 1.0, sku="a"),
        _quote("l4", "reserved", 1.2, sku="a", term_years=1),  # dearer than on-demand
        _quote("l4", "reserved", 0.9, sku="a", term_years=3),
        _quote("l4", "reserved", 0.8, sku="b", term_years=1),
        _quote("l4", "reserved", 0.85, sku="b", term_years=3),  # 3-year dearer than 1-year
        _quote("l4", "spot", 1.1, sku="a"),  # spot above on-demand
        _quote("l4", "reserved", 0.95, provider="Q", sku="c", term_years=1),  # vs anywhere
        _quote("b200", "reserved", 3.0, sku="d", term_years=1),  # no on-demand for b200
    ]
    problems = check_catalogue(quotes, [], gpus=["l4", "b200"])
    assert problems == [
        "b200: no on_demand quote",
        "l4 reserved 1-year at P a: $1.2 per GPU-hour is not below the cheapest on-demand "
        "at P ($1, P a)",
        "l4 spot at P a: $1.1 per GPU-hour is above the cheapest on-demand at P ($1, P a)",
        "l4 reserved 3-year at P b: $0.85 is dearer than the 1-year term ($0.8)",
    ]
    # a provider with no on-demand quote of its own is held to the cheapest one anywhere
    dear = [_quote("l4", "on_demand", 1.0), _quote("l4", "reserved", 1.0, "Q", term_years=1)]
    assert check_catalogue(dear, [], gpus=["l4"]) == [
        "l4 reserved 1-year at Q: $1 per GPU-hour is not below the cheapest on-demand "
        "anywhere ($1, P )"
    ]


def test_api_floor_catches_the_old_405b_placeholder() -> None:
    def row(key: str, out: float, params: float | None, active: float | None = None) -> ApiPrice:
        return ApiPrice(key, out, out, None, "", "", params_b=params, active_params_b=active)

    rows = [
        row("old/hyperbolic-405b", 0.30, 405.0, 405.0),  # the pre-refresh catalogue row
        row("ok/llama-8b", 0.04, 8.0, 8.0),
        row("ok/moe", 0.20, 671.0, 37.0),  # MoE: judged on its active parameters
        row("closed/model", 0.01, None),  # no size: no floor
    ]
    problems = check_catalogue([_quote("l4", "on_demand", 1.0)], rows, gpus=["l4"])
    assert problems == [
        "old/hyperbolic-405b: $0.3 per 1M output tokens is below the floor $0.405 "
        "(405B active parameters x $0.001)"
    ]


# --- the loader rejects bad rows ------------------------------------------------------------

GPU_HEADER = (
    "gpu,pricing_type,term_years,usd_per_gpu_hour,provider,sku,gpu_count,"
    "usd_per_hour_instance,region,listed_gpu,quote_date,source,confidence,notes\n"
)
API_HEADER = (
    "key,provider,model,model_id,usd_per_1m_input,usd_per_1m_output,usd_per_1m_cached_input,"
    "cache_write_usd_per_1m,cache_ttl_s,cache_min_tokens,batch_discount,params_b,"
    "active_params_b,quote_date,source,confidence,notes\n"
)


@pytest.fixture
def fake_files(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    files: dict[str, str] = {}
    monkeypatch.setattr(sim.catalog.prices, "_read_text", lambda name: files[name])
    sim.catalog.prices._gpu_table.cache_clear()
    sim.catalog.prices._api_table.cache_clear()
    yield files
    sim.catalog.prices._gpu_table.cache_clear()
    sim.catalog.prices._api_table.cache_clear()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("l4,reserved,,1,P,s,1,1,r,L4,2026,src,high,", "term_years is required on reserved"),
        ("l4,on_demand,1,1,P,s,1,1,r,L4,2026,src,high,", "term_years is required on reserved"),
        ("l4,reserved,x,1,P,s,1,1,r,L4,2026,src,high,", "term_years 'x' is not a valid int"),
        ("l4,on_demand,,0,P,s,1,1,r,L4,2026,src,high,", "usd_per_gpu_hour must be > 0"),
        ("l4,on_demand,,1,P,s,0,1,r,L4,2026,src,high,", "gpu_count must be >= 1"),
        ("l4,on_demand,,1,P,s,1,1,r,L4,2026,src,sure,", "confidence 'sure'"),
    ],
)
def test_gpu_loader_rejects_bad_rows(fake_files: dict[str, str], row: str, message: str) -> None:
    fake_files["prices_gpu.csv"] = GPU_HEADER + row + "\n"
    with pytest.raises(ValueError, match=f"prices_gpu.csv line 2: {re.escape(message)}"):
        gpu_prices()


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ("1,2,1.5,,,,,,", "usd_per_1m_cached_input is above the input price"),
        ("1,2,,,,,1,,", "batch_discount must be < 1"),
        ("1,2,,,-5,,,,", "cache_ttl_s must be >= 0"),
        ("1,2,,,,,,,8", "active_params_b needs params_b"),
        ("1,2,,,,,,8,9", "active_params_b needs params_b, and <= it"),
        (",2,,,,,,,", "usd_per_1m_input and usd_per_1m_output are required"),
    ],
)
def test_api_loader_rejects_bad_rows(fake_files: dict[str, str], cells: str, message: str) -> None:
    fake_files["prices_api.csv"] = API_HEADER + f"p/m,p,m,m,{cells},2026,src,high,\n"
    with pytest.raises(ValueError, match=f"prices_api.csv line 2: {re.escape(message)}"):
        list_api_models()


# --- stale and weak quotes ----------------------------------------------------------------

AS_OF = dt.date(2026, 12, 1)


@pytest.mark.parametrize(
    ("text", "day"),
    [
        ("snapshot read 2026-12-01", dt.date(2026, 12, 1)),
        ("2026-07-30 (pricing.yml generated)", dt.date(2026, 7, 30)),
        ("~2024-08 (uncertain)", dt.date(2024, 8, 1)),
        ("valid until 2025-01-01", dt.date(2025, 1, 1)),
        ("2023-07..2025-06", dt.date(2025, 6, 1)),
        ("2026 (undated stored copies)", dt.date(2026, 1, 1)),
        ("2026-12-01 (LiteLLM 1.110.2 snapshot)", dt.date(2026, 12, 1)),
        ("undated", None),
        ("", None),
    ],
)
def test_quote_day_reads_free_text_dates(text: str, day: dt.date | None) -> None:
    assert quote_day(text) == day


def test_price_flags_stale_undated_and_weak() -> None:
    assert price_flags("2026-06-01", "high", as_of=AS_OF) == []  # exactly six months: fine
    assert price_flags("2026-05-31", as_of=AS_OF) == [
        "quoted 2026-05-31, more than 6 months before 2026-12-01"
    ]
    assert price_flags("2026-11", "low-medium", as_of=AS_OF) == ["low-medium confidence"]
    assert price_flags("soon", "medium", as_of=AS_OF) == ["no date in 'soon'"]
    # month arithmetic clamps to the end of a shorter month
    assert price_flags("2026-02-28", as_of=dt.date(2026, 8, 31)) == []
    assert price_flags("2026-02-27", as_of=dt.date(2026, 8, 31)) != []
    # default: judged today, so a quote from two years ago is always stale
    assert price_flags(f"{dt.date.today().year - 2}-01-01") != []


def test_shipped_gpu_quotes_are_current_and_not_weak() -> None:
    # the 2026-12-01 refresh: no GPU quote is stale or weak on the day it was made
    for p in gpu_prices():
        assert price_flags(p.quote_date, p.confidence, as_of=AS_OF) == [], p


def test_scenario_prices_quote_current_catalogue_rows() -> None:
    # every example scenario that states a rented GPU price quotes a row of the catalogue,
    # and its price_date is current on the day of the refresh
    import sim

    root = Path(__file__).resolve().parents[1] / "scenarios"
    quoted = 0
    for path in sorted(root.glob("*.yaml")):
        for fleet in sim.load_scenario(path).pools:
            pricing = fleet.pricing
            if pricing is None or pricing.usd_per_gpu_hour is None:
                continue
            rows = [
                p
                for p in gpu_prices(fleet.gpu)
                if p.kind == pricing.kind and p.usd_per_gpu_hour == pricing.usd_per_gpu_hour
            ]
            assert rows, f"{path.name}: no {pricing.kind} row at ${pricing.usd_per_gpu_hour}"
            flags = price_flags(pricing.price_date, rows[0].confidence, as_of=AS_OF)
            assert flags == [], path.name
            quoted += 1
    assert quoted == 9
