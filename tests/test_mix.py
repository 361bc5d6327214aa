"""The cheapest mix of pools: the search against a brute-force grid, the analytic capacity
estimate it prunes with against simulated saturation, and its bad input."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from sim import simulate
from sim.engine.replica import build_replica
from sim.replication.pooled import replica_capacity_rps
from sim.scenario import Scenario
from sim.study.mix import OPTIMISM, describe_mix, plan_mix
from sim.study.montecarlo import Unit, run_unit


def _data(rate: float = 14.0) -> dict[str, Any]:
    return {
        "name": "mix",
        "horizon": {"duration_s": 150.0, "warmup_s": 20.0},
        "workload": {
            "classes": [
                {
                    "name": "chat",
                    "arrivals": {"process": "poisson", "rate_rps": rate},
                    "prompt_tokens": {"dist": "lognormal", "median": 500, "p90": 1500},
                    "output_tokens": {"dist": "geometric", "mean": 150},
                    "slo": {"ttft_s": 0.5},
                }
            ]
        },
        "fleet": {
            "policy": "cheapest",
            "pools": [
                {
                    "name": "big",
                    "model": "llama-3.1-8b",
                    "gpu": "h100-sxm",
                    "engine": {"max_num_seqs": 16},
                    "pricing": {"usd_per_gpu_hour": 3.0},
                },
                {
                    "name": "small",
                    "model": "llama-3.1-8b",
                    "gpu": "l40s",
                    "engine": {"max_num_seqs": 16},
                    "pricing": {"usd_per_gpu_hour": 1.0},
                },
            ],
        },
        "api": {"usd_per_1m_input": 0.2, "usd_per_1m_output": 0.6},
    }


def test_the_search_finds_the_optimum_of_a_brute_force_grid() -> None:
    s = Scenario.model_validate(_data())
    target, reps, seed = 0.95, 2, 4
    plan = plan_mix(
        s, slo_target=target, max_replicas=3, replications=reps, seed=seed, decide=False
    )
    # every composition simulated with the same seeds
    children = np.random.SeedSequence(seed).spawn(reps)
    grid = []
    for big, small in itertools.product(range(4), range(4)):
        if big + small == 0:
            continue
        pools = [
            dict(p, replicas=n)
            for p, n in zip(_data()["fleet"]["pools"], (big, small), strict=True)
            if n
        ]
        data = _data()
        data["fleet"]["pools"] = pools
        scen = Scenario.model_validate(data)
        rows = pd.DataFrame([run_unit(Unit(scen, c, False)) for c in children])
        grid.append(
            (
                float(rows["total_cost_usd_per_month"].mean()),
                float(rows["slo_attainment"].mean()),
                big,
                small,
            )
        )
    feasible = sorted(g for g in grid if g[1] >= target)
    assert feasible, grid
    cost, _, big, small = feasible[0]
    assert plan.choice is not None
    assert (plan.choice["big.replicas"], plan.choice["small.replicas"]) == (big, small)
    assert plan.choice["cost_per_month"] == pytest.approx(cost, rel=1e-12)
    # the optimum is not a corner: some cheaper composition fails, and the search did not
    # simulate the whole grid
    assert any(g[0] < cost and g[1] < target for g in grid)
    assert len(plan.table) < len(grid)
    by_bound, by_dominance, by_cost = plan.ruled_out
    assert len(plan.table) + by_bound + by_dominance + by_cost == plan.searched == len(grid)
    text = describe_mix(plan)
    assert "cheapest mix meeting SLO attainment ≥ 95.00%" in text
    assert f"of {len(grid)} compositions simulated" in text


@pytest.mark.parametrize(
    ("model", "gpu", "tp", "dtype", "seqs", "prompt", "out"),
    [
        ("llama-3.1-8b", "h100-sxm", 1, "bf16", 16, 500, 150),
        ("llama-3.1-8b", "l40s", 1, "bf16", 256, 300, 8),
        ("llama-3.3-70b", "h100-sxm", 2, "fp8", 256, 600, 250),
        ("llama-3.1-8b", "a100-80gb-sxm", 1, "bf16", 256, 2000, 100),
    ],
)
def test_capacity_estimate_is_within_the_search_margin_of_simulated_saturation(
    model: str, gpu: str, tp: int, dtype: str, seqs: int, prompt: int, out: int
) -> None:
    # three times as many users as sequence slots, no think time: the replica saturated
    fleet = {"model": model, "gpu": gpu, "tp": tp, "dtype": dtype,
             "engine": {"max_num_seqs": seqs}}  # fmt: skip
    s = Scenario.model_validate(
        {
            "name": "saturated",
            "horizon": {"duration_s": 90.0, "warmup_s": 30.0},
            "workload": {
                "classes": [
                    {
                        "name": "x",
                        "arrivals": {
                            "process": "closed_loop",
                            "users": 3 * seqs,
                            "think_time_s": 0.0,
                        },
                        "prompt_tokens": {"dist": "fixed", "value": prompt},
                        "output_tokens": {"dist": "fixed", "value": out},
                    }
                ]
            },
            "fleet": fleet,
        }
    )
    r = simulate(s, seed=1).requests
    done = r[(r["status"] == "completed") & (r["finish_s"] >= 30.0) & (r["finish_s"] < 90.0)]
    measured = len(done) / 60.0
    estimate = replica_capacity_rps(build_replica(s.pools[0]), seqs, prompt, out)
    # the bound is safe when saturation never exceeds the estimate taken OPTIMISM times;
    # measured here within -20 % to +8 %
    assert measured <= OPTIMISM * estimate
    assert 0.75 <= measured / estimate <= 1.2


def test_plan_mix_refuses_what_it_cannot_search() -> None:
    single = Scenario.model_validate({**_data(), "fleet": {"model": "llama-3.1-8b", "gpu": "l40s"}})
    with pytest.raises(ValueError, match="needs a fleet of several pools"):
        plan_mix(single)
    with pytest.raises(ValueError, match="options: no pool named huge"):
        plan_mix(Scenario.model_validate(_data()), options={"huge": {"gpu": ["l4"]}})


def test_an_autoscaled_pool_is_sized_by_its_maximum_against_a_brute_force_grid() -> None:
    # the L40S pool scales from zero: its cost floor is 0, so branch and bound prunes less;
    # the answer is still the grid's
    data = _data(rate=10.0)
    data["fleet"]["pools"][1].update(
        replicas=0,
        autoscaler={"min_replicas": 0, "max_replicas": 1, "metric": "queue_per_replica",
                    "target": 1.0, "interval_s": 10.0, "cold_start_s": 20.0},
    )  # fmt: skip
    s = Scenario.model_validate(data)
    target, reps, seed = 0.9, 2, 5
    plan = plan_mix(s, slo_target=target, max_replicas=2, replications=reps, seed=seed,
                    decide=False)  # fmt: skip
    children = np.random.SeedSequence(seed).spawn(reps)
    grid = []
    for big, small in itertools.product(range(3), range(3)):
        if big + small == 0:
            continue
        d = _data(rate=10.0)
        pools = []
        for pool, n in zip(d["fleet"]["pools"], (big, small), strict=True):
            if n == 0:
                continue
            if pool["name"] == "small":
                auto = dict(data["fleet"]["pools"][1]["autoscaler"], max_replicas=n)
                pool = dict(pool, replicas=0, autoscaler=auto)
            else:
                pool = dict(pool, replicas=n)
            pools.append(pool)
        d["fleet"]["pools"] = pools
        rows = pd.DataFrame(
            [run_unit(Unit(Scenario.model_validate(d), c, False)) for c in children]
        )
        grid.append(
            (float(rows["total_cost_usd_per_month"].mean()),
             float(rows["slo_attainment"].mean()), big, small)
        )  # fmt: skip
    feasible = sorted(g for g in grid if g[1] >= target)
    assert feasible and plan.choice is not None
    cost, _, big, small = feasible[0]
    assert (plan.choice["big.replicas"], plan.choice["small.replicas"]) == (big, small)
    assert plan.choice["cost_per_month"] == pytest.approx(cost, rel=1e-12)
    if small:
        assert "small: up to" in plan.choice["layout"]


def test_crossover_plan_on_pools_writes_the_evidence_and_its_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sim.cli import main
    from sim.report import report_directory
    from sim.scenario_io import dump_scenario

    path = tmp_path / "mix.yaml"
    path.write_text(dump_scenario(Scenario.model_validate(_data())), encoding="utf-8")
    out = tmp_path / "plan"
    args = ["plan", str(path), "--slo", "0.95", "--max-replicas", "2", "-n", "2", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("cheapest mix meeting SLO attainment ≥ 95.00% (by mean): ")
    table = pd.read_csv(out / "plan.csv")
    assert table.columns[0] == "layout"
    assert {"big.gpu", "small.replicas", "cost_per_month", "feasible"} <= set(table.columns)
    assert table["feasible"].any()
    # the scenario's options with the mix as their fleet: the API alone among them
    decision = pd.read_csv(out / "decision.csv")
    assert {"api_only", "self_host_only"} <= set(decision["option"])
    assert "the scenario's options with this mix as the fleet" in text
    html = report_directory(out).read_text(encoding="utf-8")
    assert f"{len(table)} compositions simulated" in html
