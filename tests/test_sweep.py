"""Sweeps: points, common random numbers, identical results on every executor, and a store
that survives being killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pandas.testing import assert_frame_equal
from pydantic import ValidationError
from scenario_helpers import priced_scenario_data

from sim import Scenario, run, sweep, t_interval
from sim.cli import main
from sim.study.store import StoreMismatch
from sim.study.sweep import sweep_points

ROOT = Path(__file__).resolve().parents[1]
RATE = "workload.classes.chat.arrivals.rate_rps"
REPLICAS = "fleet.replicas"


def _data(rate: float = 3.0, duration_s: float = 200, **extra: Any) -> dict[str, Any]:
    return priced_scenario_data(
        name="sweepy", rate_rps=rate, duration_s=duration_s, warmup_s=20, **extra
    )


def _scenario(**kw: Any) -> Scenario:
    return Scenario.model_validate(_data(**kw))


GRID = {RATE: [2.0, 6.0], REPLICAS: [1, 2]}


def test_grid_is_the_cartesian_product_with_tidy_runs() -> None:
    res = sweep(_scenario(), grid=GRID, replications=2, executor="serial", seed=1)
    assert res.parameters == (RATE, REPLICAS)
    assert res.points.values.tolist() == [[0, 2.0, 1], [1, 2.0, 2], [2, 6.0, 1], [3, 6.0, 2]]
    runs = res.runs
    assert list(runs.columns[:4]) == ["point", RATE, REPLICAS, "replication"]
    assert len(runs) == 8 and not runs.duplicated(["point", "replication"]).any()
    assert runs[["point", "replication"]].values.tolist() == [
        [p, r] for p in range(4) for r in (0, 1)
    ]
    assert {"ttft_p99_s", "savings_vs_api_usd", "requests_offered"} <= set(runs.columns)
    assert (res.computed, res.reused) == (8, 0)
    assert res.requests_simulated == runs["requests_offered"].sum()


def test_every_point_uses_the_same_replication_seeds() -> None:
    s = _scenario()
    res = sweep(s, grid={REPLICAS: [1, 2, 3]}, replications=3, executor="serial", seed=9)
    # the fleet does not change the requests: replication i offers the same ones everywhere
    offered = res.runs.pivot(index="replication", columns="point", values="requests_offered")
    assert (offered.nunique(axis=1) == 1).all()
    # and point k, replication i is exactly replication i of run() on the point's scenario
    for k, n in enumerate([1, 2, 3]):
        alone = run(s.with_overrides({REPLICAS: n}), replications=3, seed=9).replications
        mine = res.runs[res.runs["point"] == k].drop(columns=["point", REPLICAS])
        assert_frame_equal(mine.reset_index(drop=True), alone, check_exact=True)


def test_summary_is_a_t_interval_per_point_and_metric() -> None:
    res = sweep(_scenario(), grid={RATE: [2.0, 4.0]}, replications=3, executor="serial")
    table = res.summary()
    assert list(table.columns) == [
        "point", RATE, "metric", "mean", "ci_low", "ci_high", "n", "note"
    ]  # fmt: skip
    assert len(table) == 2 * len(res.metrics())
    row = table[(table["point"] == 1) & (table["metric"] == "ttft_p99_s")].iloc[0]
    mean, lo, hi = t_interval(res.runs.loc[res.runs["point"] == 1, "ttft_p99_s"].to_numpy())
    assert (row[RATE], row["n"]) == (4.0, 3)
    assert row["mean"] == pytest.approx(mean) and row["ci_low"] == pytest.approx(lo)
    assert row["ci_high"] == pytest.approx(hi)


def test_latin_hypercube_is_stratified_reproducible_and_rounds_integers() -> None:
    s = _scenario()
    ranges = {RATE: (1.0, 9.0), REPLICAS: (1, 4)}
    pts = pd.DataFrame(sweep_points(s, samples=8, ranges=ranges, seed=3))
    # one sample in each eighth of the rate's range
    strata = np.floor((pts[RATE] - 1.0) / 8.0 * 8).astype(int)
    assert sorted(strata) == list(range(8))
    # integers for an integer field, each of 1..4 equally often (8 samples: twice each)
    assert pts[REPLICAS].map(type).eq(int).all()
    assert sorted(pts[REPLICAS].value_counts().tolist()) == [2, 2, 2, 2]
    assert sweep_points(s, samples=8, ranges=ranges, seed=3) == pts.to_dict("records")
    assert sweep_points(s, samples=8, ranges=ranges, seed=4) != pts.to_dict("records")


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"grid": GRID, "samples": 3, "ranges": {RATE: (1, 2)}}, ValueError, "either grid"),
        ({}, ValueError, "either grid"),
        ({"samples": 3}, ValueError, "needs ranges"),
        ({"samples": 3, "ranges": {RATE: (2, 1)}}, ValueError, "low < high"),
        ({"samples": 3, "ranges": {"fleet.gpu": (1, 2)}}, ValueError, "not a number"),
        ({"grid": {"fleet.replicaz": [1]}}, KeyError, "no field 'fleet.replicaz'"),
        ({"grid": {REPLICAS: 3}}, ValueError, "a list of values"),
        ({"grid": {REPLICAS: [1, 0]}}, ValidationError, "greater than or equal to 1"),
    ],
)
def test_bad_designs_fail_before_any_work(kwargs: dict[str, Any], error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        sweep(_scenario(), executor="serial", **kwargs)


def test_a_path_cannot_be_both_swept_and_uncertain() -> None:
    s = _scenario(uncertainty={RATE: {"dist": "uniform", "low": 1.0, "high": 2.0}})
    with pytest.raises(ValueError, match="both swept and uncertain"):
        sweep(s, grid={RATE: [1.0]}, executor="serial")
    # the uncertain values are drawn per replication, the same at every point
    res = sweep(s, grid={REPLICAS: [1, 2]}, replications=2, executor="serial")
    drawn = res.runs.pivot(index="replication", columns="point", values=f"param:{RATE}")
    assert (drawn.nunique(axis=1) == 1).all() and drawn[0].nunique() == 2


# ---------------------------------------------------------------------------------------------
# Executors: identical numbers wherever the units run.
# ---------------------------------------------------------------------------------------------

TINY = {RATE: [2.0, 5.0]}


@pytest.fixture(scope="module")
def serial_runs() -> pd.DataFrame:
    return sweep(_scenario(), grid=TINY, replications=2, seed=5, executor="serial").runs


def test_processes_give_identical_results(serial_runs: pd.DataFrame) -> None:
    res = sweep(_scenario(), grid=TINY, replications=2, seed=5, executor="processes", workers=2)
    assert_frame_equal(res.runs, serial_runs, check_exact=True)


def test_dask_local_cluster_gives_identical_results(serial_runs: pd.DataFrame) -> None:
    pytest.importorskip("dask.distributed")
    res = sweep(_scenario(), grid=TINY, replications=2, seed=5, executor="dask", workers=2)
    assert_frame_equal(res.runs, serial_runs, check_exact=True)


# ---------------------------------------------------------------------------------------------
# The store: resumes without duplicating or losing a unit; refuses another sweep.
# ---------------------------------------------------------------------------------------------


def _files(store: Path) -> list[Path]:
    return sorted((store / "runs").glob("p*-r*.parquet"))


def test_store_resumes_only_missing_units(tmp_path: Path) -> None:
    s, store = _scenario(), tmp_path / "store"
    full = sweep(s, grid=GRID, replications=2, executor="serial", store=store)
    meta = json.loads((store / "sweep.json").read_text())
    assert meta["seed"] == 0 and meta["replications"] == 2 and len(meta["points"]) == 4
    assert meta["design"] == {"grid": {RATE: [2.0, 6.0], REPLICAS: [1, 2]}}
    files = _files(store)
    assert len(files) == 8
    files[1].unlink()
    files[6].unlink()
    (store / "runs" / ".tmp-half-written.parquet").write_bytes(b"PAR1")  # killed mid-write
    again = sweep(s, grid=GRID, replications=2, executor="serial", store=store)
    assert (again.computed, again.reused) == (2, 6)
    assert_frame_equal(again.runs, full.runs, check_exact=True)
    assert len(_files(store)) == 8 and not list((store / "runs").glob(".tmp-*"))
    # more replications extend the store (replication i's seed never changes) ...
    more = sweep(s, grid=GRID, replications=3, executor="serial", store=store)
    assert (more.computed, more.reused) == (4, 8)
    assert_frame_equal(more.runs[more.runs["replication"] < 2].reset_index(drop=True), full.runs)
    # ... and fewer read a prefix of it
    fewer = sweep(s, grid=GRID, replications=2, executor="serial", store=store)
    assert fewer.computed == 0
    assert_frame_equal(fewer.runs, full.runs, check_exact=True)


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"seed": 1}, "seed"),
        ({"grid": {RATE: [2.0, 7.0], REPLICAS: [1, 2]}}, "points"),
        ({"scenario": _scenario(rate=4.0)}, "scenario_sha256"),
    ],
)
def test_store_refuses_a_different_sweep(
    tmp_path: Path, change: dict[str, Any], differs: str
) -> None:
    store = tmp_path / "store"
    sweep(_scenario(), grid=GRID, replications=1, executor="serial", store=store)
    kw: dict[str, Any] = {"grid": GRID, "seed": 0, "scenario": _scenario(), **change}
    with pytest.raises(StoreMismatch, match=f"different sweep.*{differs}"):
        sweep(kw.pop("scenario"), replications=1, executor="serial", store=store, **kw)
    assert len(_files(store)) == 4  # nothing was touched


def test_store_refuses_a_directory_that_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(StoreMismatch, match="not a store"):
        sweep(_scenario(), grid=TINY, replications=1, executor="serial", store=tmp_path)


def test_killed_cli_sweep_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    # heavy enough units (≈0.1 s each) that the kill lands mid-sweep
    data = _data(rate=60.0, duration_s=300, fleet={**_data()["fleet"], "replicas": 2})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    args = ["sweep", str(path), "--grid", f"{RATE}=40,60,80", "-n", "8"]
    args += ["--seed", "4", "--executor", "serial", "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "sim", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    runs_dir = out / "store" / "runs"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if runs_dir.is_dir() and len(list(runs_dir.glob("p*.parquet"))) >= 3:
            break
        time.sleep(0.005)
    assert proc.poll() is None, "the sweep finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    before = {f.name: f.stat().st_mtime_ns for f in runs_dir.glob("p*.parquet")}
    assert 3 <= len(before) < 24 and not (out / "runs.parquet").exists()

    assert main(["sweep", *args[1:], "--quiet"]) == 0
    after = {f.name: f.stat().st_mtime_ns for f in runs_dir.glob("p*.parquet")}
    assert len(after) == 24
    assert all(after[name] == mtime for name, mtime in before.items())  # never recomputed
    resumed = pd.read_parquet(out / "runs.parquet")
    s = Scenario.model_validate(data)
    fresh = sweep(s, grid={RATE: [40, 60, 80]}, replications=8, seed=4, executor="serial")
    assert_frame_equal(resumed, fresh.runs, check_exact=True)
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 3 * len(fresh.metrics())


# ---------------------------------------------------------------------------------------------
# The command line: bad input is one line naming the option, exit 2.
# ---------------------------------------------------------------------------------------------

BAD_CLI = [
    (["--grid", "fleet.replicas"], "--grid 'fleet.replicas': expected PATH=V1,V2"),
    (["--grid", "fleet.replicaz=1,2"], "--grid: no field 'fleet.replicaz'"),
    (["--grid", "fleet.replicas=0,1"], "(with --grid): fleet.replicas: Input should be greater"),
    ([], "--grid: give --grid"),
    (["--lhs", "3"], "--range: --lhs needs"),
    (["--range", "fleet.replicas=1:3"], "--lhs: --range goes with --lhs"),
    (["--lhs", "3", "--range", "fleet.replicas=a:3"], "--range 'fleet.replicas=a:3': expected"),
    (["--lhs", "3", "--range", "fleet.gpu=1:3"], "--range: range fleet.gpu: it holds"),
    (["--grid", "fleet.replicas=1", "--lhs", "2"], "--grid: use either"),
    (["--grid", "fleet.replicas=1", "--scheduler", "tcp://h:8786"], "--scheduler: a scheduler"),
    (["--grid", "fleet.replicas=1", "--executor", "spark"], "--executor: invalid choice"),
    (["--grid", "fleet.replicas=1", "--workers", "-1"], "--workers/-j: must be at least 0"),
]


@pytest.mark.parametrize(("extra", "words"), BAD_CLI)
def test_bad_sweep_options_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], words: str
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_data()))
    with pytest.raises(SystemExit) as info:
        code = main(["sweep", str(path), *extra, "--out", str(tmp_path / "out")])
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert words in err, err


def test_cli_refuses_a_different_sweep_in_the_same_out(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_data()))
    base = ["sweep", str(path), "--executor", "serial", "-n", "1", "--out", str(tmp_path)]
    assert main([*base, "--grid", "fleet.replicas=1", "-q"]) == 0
    assert main([*base, "--grid", "fleet.replicas=2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {tmp_path}: ") and "different sweep" in err


def test_doctests(monkeypatch: pytest.MonkeyPatch) -> None:
    import doctest

    import sim.study.executors
    import sim.study.store

    monkeypatch.chdir(ROOT)
    sweep_module = sys.modules["sim.study.sweep"]  # ``sim.sweep`` is the function
    for module in (sweep_module, sim.study.executors):
        assert doctest.testmod(module, raise_on_error=True).attempted > 0
