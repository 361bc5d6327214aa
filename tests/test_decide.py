"""The decision: options on identical requests, constraints first, the verdict's rules.

Each hard constraint is shown to flip the recommendation of a small scenario; the
too-close-to-call rule and the payback period are checked on constructed per-option tables
against hand arithmetic.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats

import sim
from sim.cli import main
from sim.study.decide import DECISION_COLUMNS, decide, payback_months
from sim.study.options import Option, resolve_options
from tests.scenario_helpers import priced_scenario_data

CHEAP_API = {"usd_per_1m_input": 0.001, "usd_per_1m_output": 0.001}
DEAR_API = {"usd_per_1m_input": 500.0, "usd_per_1m_output": 500.0}


def scenario(api: dict[str, Any] | None = None, **extra: Any) -> sim.Scenario:
    data = priced_scenario_data(rate_rps=2.0, duration_s=240.0, warmup_s=30.0, **extra)
    if api is not None:
        data["api"] = {**api, "latency": {"ttft_s": {"median": 0.05, "p90": 0.06}}}
    return sim.Scenario.model_validate(data)


def decision(s: sim.Scenario, n: int = 3) -> sim.study.decide.Decision:
    return sim.run(s, replications=n, seed=7).decision()


def with_class(s: sim.Scenario, **fields: Any) -> sim.Scenario:
    return s.with_overrides({f"workload.classes.chat.{k}": v for k, v in fields.items()})


# --- the options -----------------------------------------------------------------------


def test_canonical_options_of_one_and_two_free_classes() -> None:
    s = scenario(CHEAP_API)
    assert [o.name for o in resolve_options(s)] == ["api_only", "self_host_only"]
    data = priced_scenario_data()
    other = {**data["workload"]["classes"][0], "name": "batch"}
    data["workload"]["classes"].append(other)
    two = sim.Scenario.model_validate(data)
    names = [o.name for o in resolve_options(two)]
    assert names == ["api_only", "self_host_only", "hybrid (chat on API)", "hybrid (batch on API)"]
    # a private class is pinned: one split is left, and it is the hybrid
    pinned = two.with_overrides({"workload.classes.chat.private": True})
    opts = resolve_options(pinned)
    assert [o.name for o in opts] == ["api_only", "self_host_only", "hybrid"]
    assert opts[2].api_classes == ("batch",)


def test_without_an_api_only_the_fleet_is_an_option() -> None:
    data = priced_scenario_data()
    del data["api"]
    s = sim.Scenario.model_validate(data)
    assert [o.name for o in resolve_options(s)] == ["self_host_only"]
    d = decision(s, n=2)
    assert d.recommended == "self_host_only"
    assert "API" not in d.verdict
    assert "Cheapest feasible fleet" in d.verdict


def test_options_see_identical_requests_and_reuse_the_run() -> None:
    s = scenario(CHEAP_API)
    res = sim.run(s, replications=3, seed=7)
    runs = res.option_runs()
    offered = runs.pivot(index="replication", columns="option", values="requests_offered")
    assert (offered["api_only"] == offered["self_host_only"]).all()
    # self_host_only is the scenario as run: its rows are the run's replications
    own = runs[runs["option"] == "self_host_only"].drop(columns="option").reset_index(drop=True)
    pd.testing.assert_frame_equal(own[res.replications.columns], res.replications)
    assert (runs.loc[runs["option"] == "api_only", "api_share"] == 1.0).all()


def test_user_options_are_simulated_by_name() -> None:
    s = scenario(DEAR_API).with_overrides(
        {"options": ["self_host_only", {"name": "two", "set": {"fleet.replicas": 2}}]}
    )
    d = decision(s, n=2)
    assert list(d.table["option"]) == ["self_host_only", "two"]
    two = d.table.set_index("option").loc["two"]
    one = d.table.set_index("option").loc["self_host_only"]
    assert two["cost_per_month_usd"] > one["cost_per_month_usd"]
    assert d.recommended == "self_host_only"


# --- each constraint flips the recommendation ----------------------------------------


def test_private_class_rules_the_api_out() -> None:
    s = scenario(CHEAP_API)
    assert decision(s).recommended == "api_only"
    d = decision(with_class(s, private=True))
    row = d.table.set_index("option").loc["api_only"]
    assert not row["feasible"]
    assert "chat is private: the API is not an option for it" in row["reason"]
    assert d.recommended == "self_host_only"
    assert d.verdict.startswith("verdict: chat is private: the API is not an option for it.")


def test_offline_rules_every_api_route_out() -> None:
    s = scenario(CHEAP_API)
    d = decision(s.with_overrides({"constraints.offline": True}))
    assert d.recommended == "self_host_only"
    assert "offline: no API route is allowed" in d.constraints


def test_open_model_failing_the_eval_bar_rules_the_fleet_out() -> None:
    s = scenario(DEAR_API)
    assert decision(s).recommended == "self_host_only"
    d = decision(with_class(s, open_model_ok=False))
    row = d.table.set_index("option").loc["self_host_only"]
    assert not row["feasible"]
    assert "open model fails chat's evaluation bar" in row["reason"]
    assert d.recommended == "api_only"


def test_slo_attainment_target_rules_a_slow_fleet_out() -> None:
    slow = {"model": "constant", "step_s": 0.2}  # TTFT >= 0.2 s on the fleet
    s = scenario(DEAR_API).with_overrides({"fleet.step_time": slow})
    s = with_class(s, slo={"ttft_s": 0.15})
    assert decision(s).recommended == "self_host_only"  # no target: cost decides
    d = decision(with_class(s, slo={"ttft_s": 0.15, "attainment": 0.95}))
    row = d.table.set_index("option").loc["self_host_only"]
    assert not row["feasible"] and "below the 95.0% required" in row["reason"]
    assert d.recommended == "api_only"
    assert "chat must meet its SLO for 95.0% of requests" in d.constraints


def test_a_fleet_that_cannot_keep_up_is_infeasible() -> None:
    # one sequence at a time, 0.05 s a step, ~100 output tokens: ~0.2 req/s of capacity
    tiny = {"fleet.step_time": {"model": "constant", "step_s": 0.05}}
    s = scenario(DEAR_API).with_overrides({**tiny, "fleet.engine.max_num_seqs": 1})
    d = decision(s)
    row = d.table.set_index("option").loc["self_host_only"]
    assert not row["feasible"] and row["reason"].startswith("cannot keep up")
    assert d.recommended == "api_only"
    assert "self_host_only is ruled out: cannot keep up" in d.verdict


def test_nothing_feasible_is_an_answer() -> None:
    s = with_class(scenario(CHEAP_API), open_model_ok=False)
    d = decision(s.with_overrides({"constraints.offline": True}), n=2)
    assert d.recommended is None
    assert not d.table["recommended"].any()
    assert "No option is feasible" in d.verdict


# --- the verdict's rules on constructed tables ------------------------------------------


def _runs(costs: dict[str, list[float]], **params: list[float]) -> pd.DataFrame:
    rows = []
    for name, values in costs.items():
        for i, v in enumerate(values):
            row = {"replication": i, "option": name, "total_cost_usd_per_month": v}
            row.update({f"param:{k}": p[i] for k, p in params.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def test_too_close_to_call_when_the_paired_interval_contains_zero() -> None:
    s = scenario(CHEAP_API)
    opts = resolve_options(s)
    a = [1000.0, 1020.0, 980.0, 1010.0, 990.0]
    tie = [1005.0, 1000.0, 995.0, 1015.0, 985.0]
    d = decide(s, opts, _runs({"api_only": a, "self_host_only": tie}))
    diff = np.array(tie) - np.array(a) if d.recommended == "api_only" else np.array(a) - tie
    mean, lo, hi = d.difference
    assert mean == pytest.approx(diff.mean())
    half = stats.t.ppf(0.975, 4) * diff.std(ddof=1) / math.sqrt(5)
    assert (lo, hi) == pytest.approx((diff.mean() - half, diff.mean() + half))
    assert lo < 0 < hi and d.too_close
    assert "Too close to call" in d.verdict and "what would separate them" in d.verdict
    # separated by a constant gap: not close
    far = [v + 50.0 for v in a]
    d2 = decide(s, opts, _runs({"api_only": a, "self_host_only": far}))
    assert not d2.too_close and d2.recommended == "api_only"
    assert "$50.00/month less than self_host_only" in d2.verdict
    assert d2.table.set_index("option").loc["api_only", "p_cheapest"] == 1.0


def test_too_close_names_the_input_that_moves_the_difference() -> None:
    s = scenario(CHEAP_API)
    price = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    a = [1000.0] * 6
    b = [1000.0 + 40 * (p - 3.5) + e for p, e in zip(price, [3, -2, 1, -1, 2, -3], strict=True)]
    d = decide(s, resolve_options(s), _runs({"api_only": a, "self_host_only": b}, gpu=price))
    assert d.too_close
    assert "pinning down gpu" in d.verdict


def test_payback_is_setup_over_monthly_savings_after_the_months_to_live() -> None:
    assert payback_months(30000.0, 2.0, 4000.0) == 9.5
    assert math.isinf(payback_months(30000.0, 2.0, 0.0))
    setup = {"engineering_weeks": 4, "usd_per_engineering_week": 5000, "evaluation_usd": 10000}
    s = scenario(CHEAP_API, costs={"setup": {**setup, "months_to_live": 2}})
    assert s.costs.setup_usd() == 30000.0
    api = [10000.0, 10100.0, 9900.0, 10050.0]
    fleet = [6000.0, 6050.0, 5990.0, 6010.0]
    d = decide(s, resolve_options(s), _runs({"api_only": api, "self_host_only": fleet}))
    row = d.table.set_index("option").loc["self_host_only"]
    savings = np.array(api) - np.array(fleet)
    half = stats.t.ppf(0.975, 3) * savings.std(ddof=1) / 2
    assert row["payback_months"] == pytest.approx(2 + 30000 / savings.mean())
    assert row["payback_ci_low"] == pytest.approx(2 + 30000 / (savings.mean() + half))
    assert row["payback_ci_high"] == pytest.approx(2 + 30000 / (savings.mean() - half))
    assert row["setup_usd"] == 30000.0
    assert d.recommended == "self_host_only"
    assert f"pays back in {2 + 30000 / savings.mean():.1f} months" in d.verdict


def test_decision_table_has_one_recommended_row() -> None:
    d = decision(scenario(CHEAP_API))
    assert tuple(d.table.columns) == DECISION_COLUMNS
    assert d.table["recommended"].sum() == 1
    assert d.table.loc[d.table["recommended"], "option"].item() == d.recommended
    feasible = d.table[d.table["feasible"]]
    assert feasible["p_cheapest"].sum() == pytest.approx(1.0)


def test_split_option_explains_each_class() -> None:
    data = priced_scenario_data(rate_rps=1.0, duration_s=240.0, warmup_s=30.0)
    data["api"] = DEAR_API
    private = {**data["workload"]["classes"][0], "name": "secret", "private": True}
    data["workload"]["classes"].append(private)
    s = sim.Scenario.model_validate(data)
    d = decision(s, n=2)
    names = list(d.table["option"])
    assert names == ["api_only", "self_host_only", "hybrid"]
    assert d.recommended == "self_host_only"
    why = d.classes.set_index("class_name")
    assert why.loc["secret", "why"] == "private: it may not leave the fleet"
    assert "on the API it would cost" in why.loc["chat", "why"]
    assert "option 'hybrid'" in why.loc["chat", "why"]


# --- the command line -------------------------------------------------------------------


def test_cli_writes_decision_csv_and_prints_the_verdict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    import yaml

    data = priced_scenario_data(rate_rps=2.0, duration_s=120.0, warmup_s=0.0)
    data["workload"]["classes"][0]["private"] = True
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["run", str(path), "-n", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verdict: chat is private: the API is not an option for it." in printed
    table = pd.read_csv(out / "decision.csv")
    assert {"option", "feasible", "reason", "cost_per_month_usd", "ci_low", "ci_high"} <= set(
        table.columns
    )
    assert {"slo_attainment", "p_cheapest", "recommended"} <= set(table.columns)
    assert table["recommended"].sum() == 1
    assert (out / "options.csv").is_file() and (out / "verdict.txt").is_file()
    # the report built from the directory shows the same verdict, first
    assert main(["report", str(out), "-o", str(out / "r.html")]) == 0
    html = (out / "r.html").read_text()
    assert html.index('id="decision"') < html.index('id="costs"')
    assert "chat is private: the API is not an option for it" in html


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("options=[{name: x, set: {workload.classes.nope.private: true}}]", "options.0.set"),
        (
            "options=[{name: x, set: {routing: {policy: class_based, api_classes: [chat]}}}]",
            "options.0.set",
        ),
        ("workload.classes.chat.open_model_ok=false", "open_model_ok"),
    ],
)
def test_bad_options_and_impossible_classes_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], override: str, field: str
) -> None:
    import yaml

    data = priced_scenario_data()
    data["workload"]["classes"][0]["private"] = True
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    code = main(["run", str(path), "-n", "1", "--set", override, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and field in err and "Traceback" not in err


def test_private_class_in_an_option_for_the_api_names_the_reason() -> None:
    s = with_class(scenario(CHEAP_API), private=True)
    to_api = {"routing": {"policy": "class_based", "api_classes": ["chat"]}}
    with pytest.raises(ValidationError, match=r"class 'chat' is private"):
        s.with_overrides({"options": [{"name": "x", "set": to_api}]})


def test_option_dataclass_round_trip() -> None:
    o = Option("x", "custom", "two replicas", {"fleet.replicas": 2})
    assert o.api_classes == ()


@pytest.mark.parametrize(
    "module",
    ["sim.study.decide", "sim.study.verdict", "sim.study.options", "sim.replication.metrics"],
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), raise_on_error=True)
    assert result.attempted > 0


def test_shipped_scenario_with_every_kind_of_constraint() -> None:
    root = Path(__file__).resolve().parents[1]
    s = sim.load_scenario(root / "scenarios/support-desk-constraints.yaml").with_overrides(
        {"horizon.duration_s": 1200, "horizon.warmup_s": 120}
    )
    d = decision(s, n=2)
    table = d.table.set_index("option")
    assert not table.loc["api_only", "feasible"] and not table.loc["self_host_only", "feasible"]
    assert d.recommended is not None and d.recommended.startswith("hybrid")
    where = d.classes.set_index("class_name")["where"]
    assert where["troubleshooting"] == "API" and where["customer-records"] == "fleet"
    assert d.constraints[:2] == (
        "customer-records is private: the API is not an option for it",
        "the open model fails troubleshooting's evaluation bar: the fleet may not serve it",
    )
    # both API providers are priced in the report's assumptions
    from sim.report.tables import assumptions

    keys = set(assumptions(s)["input"])
    assert {"openai/gpt-4.1: output", "deepinfra/Meta-Llama-3.1-8B-Instruct-Turbo: output"} <= keys
