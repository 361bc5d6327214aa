"""Several API providers: each class billed and simulated at its own provider, classes
without an API kept on the fleet, classes the open model cannot serve sent to the API, and
an ``api_only`` policy that pays for no fleet."""

from __future__ import annotations

import doctest
import importlib
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scenario_helpers import priced_scenario_data

import sim.economics.apis
import sim.replication.billing
from sim import Scenario, simulate
from sim.economics import MAIN_API, ApiSpec, api_providers
from sim.engine import kernel as K
from sim.replication.simulate import class_routes, scenario_apis
from sim.seeds import STREAM_API, STREAM_API_BASELINE, provider_stream, substream

IN, OUT = 500, 100
FIXED_LATENCY = {
    "ttft_s": {"median": 0.4, "p90": 0.4},
    "output_tokens_per_s": {"median": 100, "p90": 100},
}


def _class(name: str, rate_rps: float = 1.0, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "arrivals": {"process": "poisson", "rate_rps": rate_rps},
        "prompt_tokens": {"dist": "fixed", "value": IN},
        "output_tokens": {"dist": "fixed", "value": OUT},
        **kw,
    }


def _scenario(classes: list[dict[str, Any]], **extra: Any) -> Scenario:
    data = priced_scenario_data(name="providers", duration_s=900, warmup_s=60, **extra)
    data["workload"] = {"classes": classes}
    return Scenario.model_validate(data)


def _two_providers(policy: str = "api_only") -> Scenario:
    # chat on the api section: $0.2/$0.6 per 1M, 600 calls a minute (never binds at 1/s);
    # code on "slow": $1/$3 per 1M, 6 calls a minute, no retry (binds hard at 1/s)
    return _scenario(
        [_class("chat"), _class("code", api_model="slow")],
        api={
            "usd_per_1m_input": 0.2,
            "usd_per_1m_output": 0.6,
            "rate_limits": {"requests_per_min": 600, "max_retries": 0, "jitter": False},
            "latency": FIXED_LATENCY,
        },
        apis={
            "slow": {
                "usd_per_1m_input": 1.0,
                "usd_per_1m_output": 3.0,
                "rate_limits": {"requests_per_min": 6, "max_retries": 0, "jitter": False},
                "latency": FIXED_LATENCY,
            }
        },
        routing={"policy": policy},
    )


def _in_window(df: pd.DataFrame) -> pd.DataFrame:
    return df[(df["arrival_s"] >= 60) & (df["arrival_s"] < 900)]


def test_each_provider_bills_its_own_class_at_its_own_prices() -> None:
    out = simulate(_two_providers(), seed=3)
    m, df = out.metrics, _in_window(out.requests)
    assert (df["route"] == "api").all()
    chat, code = df[df["class_name"] == "chat"], df[df["class_name"] == "code"]
    # the slow provider's limit binds only its own class
    assert (chat["status"] == "completed").all() and (chat["api_attempts"] == 1).all()
    code_failed = code["status"] == "failed"
    assert code_failed.any() and (code.loc[code_failed, "reason"] == "rate_limited").all()
    # 6 calls a minute: at most one more than 6 per minute of the window's 14 minutes
    code_done = int((~code_failed).sum())
    assert 0 < code_done <= 6 * 15 + 1
    # the bill is the hand sum per provider over the completed requests
    chat_usd = len(chat) * (IN * 0.2 + OUT * 0.6) / 1e6
    code_usd = code_done * (IN * 1.0 + OUT * 3.0) / 1e6
    assert m["api_cost_usd"] == pytest.approx(chat_usd + code_usd, rel=1e-12)
    assert m["api_only_cost_usd"] == pytest.approx(chat_usd + code_usd, rel=1e-12)
    per_month = 730 * 3600 / 840
    assert m["api_cost_usd_per_month[chat]"] == pytest.approx(chat_usd * per_month, rel=1e-12)
    assert m["api_cost_usd_per_month[code]"] == pytest.approx(code_usd * per_month, rel=1e-12)
    assert m["api_only_cost_usd_per_month[code]"] == pytest.approx(code_usd * per_month, rel=1e-12)
    # api_only and no request on the fleet: no fleet is paid for
    assert m["fleet_cost_usd"] == m["fleet_gpu_usd"] == 0.0
    assert m["total_cost_usd"] == m["api_cost_usd"]
    # the all-API baseline simulates each class at its own provider too: the same failures
    # (no jitter, no retries: admission depends only on the arrivals and the limits)
    assert m["api_only_requests_failed"] == float(code_failed.sum())


def test_one_provider_for_both_classes_limits_both() -> None:
    s = _two_providers().with_overrides({"workload.classes.code.api_model": None})
    s = s.with_overrides({"api.rate_limits.requests_per_min": 6})
    df = _in_window(simulate(s, seed=3).requests)
    for name in ("chat", "code"):
        assert (df.loc[df["class_name"] == name, "status"] == "failed").any()


def test_the_api_section_keeps_its_streams() -> None:
    assert (
        provider_stream(11, STREAM_API, MAIN_API).spawn_key == substream(11, STREAM_API).spawn_key
    )
    other = provider_stream(11, STREAM_API_BASELINE, "apis.slow")
    assert other.spawn_key[:1] == (STREAM_API_BASELINE,) and len(other.spawn_key) == 2
    # naming a provider that no class uses changes nothing
    s = _two_providers().with_overrides({"workload.classes.code.api_model": None})
    base = simulate(s, seed=4).metrics
    more = simulate(
        s.with_overrides({"apis.unused": {"usd_per_1m_input": 9.0, "usd_per_1m_output": 9.0}}),
        seed=4,
    ).metrics
    pd.testing.assert_series_equal(pd.Series(base), pd.Series(more), check_exact=True)


def test_catalogue_key_takes_the_api_sections_limits_and_latency() -> None:
    s = _two_providers().with_overrides({"workload.classes.code.api_model": "openai/gpt-4o-mini"})
    providers = scenario_apis(s)
    assert providers.of_class["code"] == "catalogue.openai/gpt-4o-mini"
    spec = providers.spec_of("code")
    assert spec is not None and s.api is not None
    assert spec.model == "openai/gpt-4o-mini" and spec.usd_per_1m_input is None
    assert spec.rate_limits == s.api.rate_limits and spec.latency == s.api.latency
    assert spec.provisioned is None
    # without an api section: the defaults
    alone = api_providers(None, {}, {"a": "openai/gpt-4o-mini"}).spec_of("a")
    assert alone is not None and alone.rate_limits == ApiSpec(model="x/y").rate_limits


def test_class_without_an_api_stays_on_the_fleet() -> None:
    s = _scenario(
        [_class("chat", api_model="cheap"), _class("docs", rate_rps=0.5)],
        api=None,
        apis={"cheap": {"usd_per_1m_input": 0.1, "usd_per_1m_output": 0.4}},
        routing={"policy": "api_only"},
    )
    assert class_routes(s).tolist() == [K.CR_ELIGIBLE, K.CR_FLEET_ONLY]
    out = simulate(s, seed=2)
    m, df = out.metrics, _in_window(out.requests)
    assert (df.loc[df["class_name"] == "docs", "route"] == "fleet").all()
    assert (df.loc[df["class_name"] == "chat", "route"] == "api").all()
    # the fleet served docs: it is paid for; there is no all-API alternative
    assert m["fleet_gpu_usd"] > 0
    for name in (
        "api_only_cost_usd",
        "api_only_cost_usd_per_month",
        "savings_vs_api_usd",
        "api_only_ttft_p99_s",
        "api_only_slo_attainment",
        "self_host_cheaper",
        "api_only_cost_usd_per_month[docs]",
    ):
        assert math.isnan(m[name]), name
    assert m["api_only_cost_usd_per_month[chat]"] > 0
    chat = df[(df["class_name"] == "chat") & (df["status"] == "completed")]
    assert m["api_cost_usd"] == pytest.approx(len(chat) * (IN * 0.1 + OUT * 0.4) / 1e6)


def test_open_model_not_ok_goes_to_the_api_unless_self_host_only() -> None:
    spill = {"policy": "spillover", "spillover": {"max_queue": 1000}}
    s = _scenario(
        [_class("chat"), _class("legal", open_model_ok=False)],
        routing=spill,
        api={"usd_per_1m_input": 0.2, "usd_per_1m_output": 0.6},
    )
    assert class_routes(s).tolist() == [K.CR_ELIGIBLE, K.CR_API]
    df = _in_window(simulate(s, seed=1).requests)
    assert (df.loc[df["class_name"] == "legal", "route"] == "api").all()
    assert (df.loc[df["class_name"] == "chat", "route"] == "fleet").all()
    for policy in ({"policy": "cold_start_spill"}, {"policy": "api_only"}):
        df = _in_window(simulate(s.with_overrides({"routing": policy}), seed=1).requests)
        assert (df.loc[df["class_name"] == "legal", "route"] == "api").all()
    own = _in_window(simulate(s.with_overrides({"routing": {}}), seed=1).requests)
    assert (own["route"] == "fleet").all()


def test_listed_api_classes_only_matter_under_class_based() -> None:
    s = _scenario(
        [_class("chat"), _class("bulk")],
        routing={"policy": "spillover", "spillover": {"max_queue": 1000}, "api_classes": ["bulk"]},
    )
    assert class_routes(s).tolist() == [K.CR_ELIGIBLE, K.CR_ELIGIBLE]
    based = s.with_overrides({"routing.policy": "class_based"})
    assert class_routes(based).tolist() == [K.CR_ELIGIBLE, K.CR_API]


def test_api_only_keeps_paying_for_a_fleet_that_serves_a_pinned_class() -> None:
    s = _scenario(
        [_class("chat"), _class("hr", rate_rps=0.2, private=True)],
        routing={"policy": "api_only"},
        costs={"ops_fte": 0.5, "fte_usd_per_year": 175_200.0},
    )
    m = simulate(s, seed=6).metrics
    window_h = 840 / 3600
    assert m["fleet_gpu_usd"] >= 3.29 * window_h
    assert m["fleet_ops_usd"] == pytest.approx(10.0 * window_h, rel=1e-12)
    # and with nothing pinned, no fleet at all: no GPU, no staff
    m = simulate(s.with_overrides({"workload.classes.hr.private": False}), seed=6).metrics
    assert m["fleet_cost_usd"] == m["fleet_ops_usd"] == m["fleet_gpu_hours_paid"] == 0.0


def test_simulate_apis_merges_providers_in_request_order() -> None:
    fast = ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=1.0, latency=FIXED_LATENCY)
    slow_latency = {
        "ttft_s": {"median": 2.0, "p90": 2.0},
        "output_tokens_per_s": {"median": 10, "p90": 10},
    }
    slow = ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=1.0, latency=slow_latency)
    providers = api_providers(fast, {"slow": slow}, {"a": None, "b": "slow"})
    res = sim.replication.billing.simulate_apis(
        providers,
        ["a", "b", "a", "b"],
        [0.0, 0.5, 1.0, 1.5],
        [10, 10, 10, 10],
        [11, 11, 11, 11],
        rng_of=lambda name: np.random.default_rng(0),
    )
    np.testing.assert_allclose(res.ttft_s, [0.4, 2.0, 0.4, 2.0])
    np.testing.assert_allclose(res.e2e_s, [0.5, 3.0, 0.5, 3.0])
    with pytest.raises(ValueError, match="has none"):
        sim.replication.billing.simulate_apis(
            api_providers(None, {}, {"a": None}),
            ["a"],
            [0.0],
            [1],
            [1],
            rng_of=lambda name: np.random.default_rng(0),
        )


def test_docstring_examples() -> None:
    # sim.simulate the module (the package re-exports a function of that name)
    simulate_module = importlib.import_module("sim.replication.simulate")
    for module in (sim.economics.apis, sim.replication.billing, simulate_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted >= 2, module


@pytest.mark.parametrize("records", ["all", "none"])
def test_the_all_api_option_is_the_all_api_alternative_of_any_option(records: str) -> None:
    # The same requests, every one sent to its class's API: whether a run routes them there
    # (policy api_only) or computes the alternative beside the fleet, the API's latencies
    # are the same draws, so the report shows one figure for one thing
    s = _scenario(
        [_class("chat"), _class("docs", rate_rps=0.5)],
        api={"usd_per_1m_input": 0.2, "usd_per_1m_output": 0.6},
    ).with_overrides({"horizon.records": records})
    fleet = simulate(s, seed=4).metrics
    api = simulate(s.with_overrides({"routing": {"policy": "api_only"}}), seed=4).metrics
    assert api["api_share"] == 1.0
    for q in ("ttft_p50_s", "ttft_p99_s", "e2e_p99_s", "tpot_p50_s", "slo_attainment"):
        assert api[q] == fleet[f"api_only_{q}"], q
        assert api[f"api_only_{q}"] == api[q], q
