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
                {"fleet.gpu": gpu, "fleet.replicas": r, "fleet.pricing": plan_pricing(short, gpu)}
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


def plan_pricing(scenario: Scenario, gpu: str) -> dict[str, object]:
    from sim.catalog.prices import default_gpu_price

    if gpu == scenario.fleet.gpu:  # the scenario's own GPU at the scenario's price
        assert scenario.fleet.pricing is not None
        return scenario.fleet.pricing.model_dump(exclude_none=True)
    q = default_gpu_price(gpu, "on_demand")
    return {"kind": "on_demand", "usd_per_gpu_hour": q.usd_per_gpu_hour}


def test_own_gpu_at_the_scenario_price_others_from_the_catalogue(short: Scenario) -> None:
    from sim.catalog.prices import default_gpu_price

    assert short.fleet.gpu == "h100-sxm" and short.fleet.pricing is not None
    own = short.fleet.pricing.usd_per_gpu_hour
    opts = {**SMALL, "replicas": [1], "pricing": ["on_demand", "reserved"]}
    plan = plan_capacity(short, slo_target=0.5, options=opts, replications=1)
    rows = {(g, k): r for g, k, r in zip(
        plan.table["gpu"], plan.table["pricing"], plan.table.to_dict("records"), strict=True
    )}  # fmt: skip
    h100 = rows[("h100-sxm", "on_demand")]
    assert h100["usd_per_gpu_hour"] == own != default_gpu_price("h100-sxm").usd_per_gpu_hour
    assert h100["price_source"].startswith("scenario: Lambda")
    assert h100["price_date"] == short.fleet.pricing.price_date
    for (gpu, kind), row in rows.items():
        if (gpu, kind) != ("h100-sxm", "on_demand"):  # another kind or GPU: the catalogue
            assert row["price_source"].startswith("catalogue: ")
            assert row["usd_per_gpu_hour"] == default_gpu_price(gpu, kind).usd_per_gpu_hour
    # the chosen scenario keeps the scenario's pricing section as it was
    if plan.choice is not None and (plan.choice["gpu"], plan.choice["pricing"]) == (
        "h100-sxm",
        "on_demand",
    ):
        assert plan.scenario is not None and plan.scenario.fleet.pricing == short.fleet.pricing
    # a scenario priced from the catalogue: every row says so
    bare = short.with_overrides({"fleet.pricing": {"kind": "on_demand"}})
    plan = plan_capacity(bare, slo_target=0.5, options=opts, replications=1)
    assert plan.table["price_source"].str.startswith("catalogue: ").all()


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
    got = capsys.readouterr()
    out = got.out
    assert code == 0 and "cheapest fleet" in out
    assert got.err == ""  # no progress when stderr is not a terminal
    assert "scenario: Lambda" in out and "fleet.pricing" in out
    verdict = [line for line in out.splitlines() if line.startswith("verdict:")]
    assert len(verdict) == 1 and "all-API $" in verdict[0] and "fleet $" in verdict[0]
    table = pd.read_csv(tmp_path / "out" / "plan.csv")
    assert {"gpu", "cost_per_month", "slo_ci_low", "feasible", "price_source"} <= set(table.columns)
    raw = (tmp_path / "out" / "plan.csv").read_text()
    header, *rows = raw.splitlines()
    cols = header.split(",")
    for line in rows:
        cells = dict(zip(cols, line.split(","), strict=False))
        for col, places in (("cost_per_month", 2), ("api_only_cost_per_month", 2),
                            ("slo_attainment", 4)):  # fmt: skip
            assert len(cells[col].partition(".")[2]) <= places, (col, cells[col])
        assert len(cells["ttft_p99_s"].replace(".", "").lstrip("0")) <= 4
    assert main([str(scen), "--tp", "x", "--out", str(tmp_path)]) == 2
    assert main([str(scen), "--gpus", "nope-gpu", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("crossover plan:") for line in err)


def test_cli_set_quiet_and_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scen = tmp_path / "s.yaml"
    text = (ROOT / "scenarios/chat-startup.yaml").read_text()
    scen.write_text(
        text.replace("duration_s: 86400, warmup_s: 1800", "duration_s: 300, warmup_s: 0")
    )
    args = [str(scen), "--gpus", "h100-sxm", "--tp", "1", "--pricing", "on_demand",
            "--max-replicas", "1", "-n", "1", "--out", str(tmp_path / "out")]  # fmt: skip
    # --set reaches the plan: the scenario's own price
    assert main([*args, "--set", "fleet.pricing.usd_per_gpu_hour=1.25", "-q"]) == 0
    got = capsys.readouterr()
    assert got.out == "" and got.err == ""  # --quiet: nothing printed
    table = pd.read_csv(tmp_path / "out" / "plan.csv")
    assert table["usd_per_gpu_hour"].tolist() == [1.25]
    assert main([*args, "--set", "fleet.nope=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("crossover plan:") and "fleet.nope" in err
    # on a terminal, progress on stderr
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert main(args) == 0
    got = capsys.readouterr()
    assert "\rplan: 1/1 simulations" in got.err and got.err.endswith("\n")
    assert "cheapest fleet" in got.out
