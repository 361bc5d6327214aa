"""Capacity planning: the cheapest fleet meeting an SLO target, against brute force."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sim import Scenario, load_scenario, run
from sim.cli.plan import main
from sim.study.planning import plan_capacity

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"gpu": ["h100-sxm", "l40s"], "tp": [1], "pricing": ["on_demand"], "replicas": [1, 2, 3]}


@pytest.fixture(scope="module")
def short() -> Scenario:
    return load_scenario(ROOT / "scenarios/chat-startup.yaml").with_overrides(
        {"horizon.duration_s": 400, "horizon.warmup_s": 50}
    )


def test_plan_matches_brute_force(short: Scenario) -> None:
    plan = plan_capacity(short, slo_target=0.97, options=SMALL, replications=3, seed=1)
    assert plan.choice is not None and plan.scenario is not None
    # every configuration of the grid simulated with the same seeds: the cheapest feasible
    brute = []
    for gpu in SMALL["gpu"]:
        for r in SMALL["replicas"]:
            s = short.with_overrides(
                {"fleet.gpu": gpu, "fleet.replicas": r, "fleet.pricing": plan_pricing(plan, gpu)}
            )
            reps = run(s, replications=3, seed=1).replications
            brute.append(
                (reps["total_cost_usd_per_month"].mean(), gpu, r, reps["slo_attainment"].mean())
            )
    feasible = sorted(b for b in brute if b[3] >= 0.97)
    cost, gpu, r, _ = feasible[0]
    assert (plan.choice["gpu"], plan.choice["replicas"]) == (gpu, r)
    assert plan.choice["cost_per_month"] == pytest.approx(cost)
    assert plan.scenario.fleet.gpu == gpu and plan.scenario.fleet.replicas == r


def plan_pricing(plan: object, gpu: str) -> dict[str, object]:
    from sim.catalog.prices import default_gpu_price

    q = default_gpu_price(gpu, "on_demand")
    return {"kind": "on_demand", "usd_per_gpu_hour": q.usd_per_gpu_hour}


def test_replicas_stop_growing_once_the_target_is_met(short: Scenario) -> None:
    plan = plan_capacity(short, slo_target=0.97, options=SMALL, replications=3, seed=1)
    for _, grp in plan.table.groupby(["gpu", "tp", "pricing"]):
        grp = grp.sort_values("replicas")
        feasible = grp["feasible"].to_numpy()
        assert not feasible[:-1].any()  # only the last count tried may meet it
    # the stricter criterion never picks a cheaper fleet
    strict = plan_capacity(
        short, slo_target=0.97, options=SMALL, replications=3, seed=1, criterion="ci_low"
    )
    if strict.choice is not None:
        assert strict.choice["cost_per_month"] >= plan.choice["cost_per_month"] - 1e-6


def test_unfit_and_unpriced_configurations_are_skipped(short: Scenario) -> None:
    big = short.with_overrides({"fleet.model": "llama-3.1-70b", "fleet.tp": 4})
    plan = plan_capacity(
        big,
        options={
            "gpu": ["l40s", "h100-sxm"],
            "tp": [1, 4],
            "replicas": [1],
            "pricing": ["on_demand", "reserved"],
        },
        replications=1,
    )
    reasons = " | ".join(plan.skipped)
    assert "l40s tp1 on_demand: invalid" in reasons
    assert "l40s tp4 reserved: no catalogue price" in reasons  # GCP sells no L40S
    assert set(plan.table["tp"]) <= {4}


def test_impossible_target_gives_no_choice(short: Scenario) -> None:
    plan = plan_capacity(
        short, slo_target=1.0, options={**SMALL, "gpu": ["l40s"], "replicas": [1]},
        replications=2,
    )  # fmt: skip
    assert plan.choice is None and len(plan.table) == 1


def test_cli_writes_plan_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scen = tmp_path / "s.yaml"
    text = (ROOT / "scenarios/chat-startup.yaml").read_text()
    scen.write_text(
        text.replace("duration_s: 86400, warmup_s: 1800", "duration_s: 300, warmup_s: 0")
    )
    code = main([str(scen), "--gpus", "h100-sxm", "--tp", "1", "--max-replicas", "2",
                 "-n", "2", "--out", str(tmp_path / "out")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "cheapest fleet" in out
    table = pd.read_csv(tmp_path / "out" / "plan.csv")
    assert {"gpu", "cost_per_month", "slo_ci_low", "feasible"} <= set(table.columns)
    assert main([str(scen), "--tp", "x", "--out", str(tmp_path)]) == 2
    assert main([str(scen), "--gpus", "nope-gpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("crossover plan:") for line in err)
