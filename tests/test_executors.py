"""One executor keyword everywhere: runs, option runs, capacity plans and crossover searches give
identical numbers in this process, in local processes and on a Dask ``LocalCluster``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from scenario_helpers import priced_scenario_data

from sim import Scenario, find_crossover, load_scenario, plan_capacity, run
from sim.study.executors import (
    DaskExecutor,
    ProcessExecutor,
    SerialExecutor,
    make_executor,
    session,
)

ROOT = Path(__file__).resolve().parents[1]
RATE = "workload.classes.chat.arrivals.rate_rps"


@pytest.fixture(scope="module")
def short() -> Scenario:
    return load_scenario(ROOT / "scenarios/chat-startup.yaml").with_overrides(
        {"horizon.duration_s": 60, "horizon.warmup_s": 0}
    )


def _run(scenario: Scenario, **where: object) -> tuple[pd.DataFrame, pd.DataFrame]:
    # an unreachable precision target: a batch of 3, then one of 3 more on the same executor
    res = run(scenario, replications=3, seed=7, target_rel_ci=1e-9, max_replications=6, **where)
    assert len(res.replications) == 6
    return res.replications, res.option_runs()


@pytest.fixture(scope="module")
def serial(short: Scenario) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _run(short, executor="serial")


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_run_and_option_runs_are_identical_on_every_executor(
    executor: str, short: Scenario, serial: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    if executor == "dask":
        pytest.importorskip("dask.distributed")
    reps, options = _run(short, executor=executor, workers=2)
    assert_frame_equal(reps, serial[0], check_exact=True)
    assert_frame_equal(options, serial[1], check_exact=True)


def test_the_run_records_its_executor_for_the_option_runs(short: Scenario) -> None:
    assert run(short, replications=1).executor == SerialExecutor()
    assert run(short, replications=1, workers=2).executor == ProcessExecutor(2)
    on = DaskExecutor(workers=2, scheduler="tcp://nowhere:8786")  # never contacted: 1 replication
    assert run(short, replications=1, executor=on).executor is on
    with pytest.raises(ValueError, match="workers must be 0"):
        run(short, workers=-1)
    with pytest.raises(ValueError, match="unknown executor"):
        run(short, executor="spark")


def test_the_keyword_means_the_same_everywhere() -> None:
    assert make_executor() == make_executor(workers=1) == SerialExecutor()
    assert make_executor(workers=0) == ProcessExecutor(0)  # one per core
    assert make_executor("processes") == make_executor("processes", workers=0)
    assert make_executor("dask", workers=2) == DaskExecutor(2)
    assert make_executor("serial", workers=4) == SerialExecutor()


def test_a_session_keeps_one_pool_for_every_call() -> None:
    with session(ProcessExecutor(2)) as live:
        assert sorted(live.imap_unordered(abs, [-1, -2, -3])) == [(0, 1), (1, 2), (2, 3)]
        pool = live.pool
        assert sorted(live.imap_unordered(abs, [-4, 5])) == [(0, 4), (1, 5)]
        assert pool is not None and live.pool is pool
    assert live.pool is None
    serial = SerialExecutor()
    with session(serial) as live:
        assert live is serial


def test_plan_capacity_and_find_crossover_take_the_executor_keyword(short: Scenario) -> None:
    # one replica misses the target at 12 req/s: both counts are simulated, on one pool
    busy = short.with_overrides({"workload.classes.chat.arrivals.rates_rps": [12.0, 12.0]})
    options = {"gpu": ["h100-sxm"], "tp": [1], "pricing": ["on_demand"], "replicas": [1, 2]}
    kw = {"slo_target": 0.999, "options": options, "replications": 2, "seed": 1}
    plan = plan_capacity(busy, **kw, executor="processes", workers=2)
    assert plan.table["feasible"].tolist() == [False, True]
    assert_frame_equal(plan.table, plan_capacity(busy, **kw).table, check_exact=True)

    s = Scenario.model_validate(
        priced_scenario_data(duration_s=60, warmup_s=0, prompt={"dist": "fixed", "value": 500})
    )
    kw = {"x": RATE, "low": 2.0, "high": 10.0, "replications": 3, "seed": 3, "max_points": 3}
    c = find_crossover(s, **kw, executor="processes", workers=2)
    assert len(c.points) == 3
    assert_frame_equal(c.points, find_crossover(s, **kw).points, check_exact=True)
