"""A study on a real Dask cluster: a scheduler and two workers in their own processes (as they
would run on other machines), the sweep's store on storage the client owns, resumed after
the client stopped half-way, and the same numbers as a serial run."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pandas.testing import assert_frame_equal
from scenario_helpers import priced_scenario_data

from sim import Scenario, sweep
from sim.cli import main

ROOT = Path(__file__).resolve().parents[1]
DASK = Path(sys.executable).with_name("dask")
RATE = "workload.classes.chat.arrivals.rate_rps"

pytestmark = pytest.mark.skipif(not DASK.exists(), reason="the dask command is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_workers(address: str, n: int, timeout_s: float = 60.0) -> None:
    from dask.distributed import Client

    with Client(address, timeout=timeout_s) as client:
        client.wait_for_workers(n, timeout=timeout_s)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"

    def start(*args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(DASK), *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    procs = [start("scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard")]
    try:
        for _ in range(2):
            procs.append(start("worker", address, "--nthreads", "1", "--no-dashboard"))
        _wait_for_workers(address, 2)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_sweep_on_a_cluster_resumes_and_matches_a_serial_run(
    cluster: str, tmp_path: Path
) -> None:
    data = priced_scenario_data(name="cluster", rate_rps=4.0, duration_s=120, warmup_s=10)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    shared = tmp_path / "shared" / "study"  # e.g. a network file system the client mounts
    base = ["sweep", str(path), "--grid", f"{RATE}=2,4,8", "--seed", "3", "--quiet"]
    cluster_args = ["--executor", "dask", "--scheduler", cluster, "--out", str(shared)]
    # the client stops after two replications per point ...
    assert main([*base, "-n", "2", *cluster_args]) == 0
    runs = shared / "store" / "runs"
    first = {f.name: f.stat().st_mtime_ns for f in runs.glob("p*.parquet")}
    assert len(first) == 6
    # ... and the same command with more replications computes only the missing ones
    time.sleep(0.01)
    assert main([*base, "-n", "4", *cluster_args]) == 0
    after = {f.name: f.stat().st_mtime_ns for f in runs.glob("p*.parquet")}
    assert len(after) == 12
    assert all(after[name] == mtime for name, mtime in first.items())
    on_cluster = pd.read_parquet(shared / "runs.parquet")
    serial = sweep(
        Scenario.model_validate(data),
        grid={RATE: [2, 4, 8]},
        replications=4,
        seed=3,
        executor="serial",
    )
    assert_frame_equal(on_cluster, serial.runs, check_exact=True)
