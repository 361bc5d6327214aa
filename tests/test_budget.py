"""A replication that cannot fit in memory is refused before anything is allocated."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sim
from sim.cli import main
from sim.replication.budget import BYTES_PER_REQUEST, check_memory, expected_requests
from sim.replication.simulate import sample
from sim.scenario_io import ScenarioError


def _scenario(
    arrivals: dict[str, object], profile: dict[str, object] | None = None
) -> sim.Scenario:
    cls: dict[str, object] = {
        "name": "chat",
        "arrivals": arrivals,
        "prompt_tokens": {"dist": "fixed", "value": 100},
        "output_tokens": {"dist": "fixed", "value": 10},
    }
    if profile is not None:
        cls["profile"] = profile
    return sim.Scenario.model_validate(
        {
            "name": "budget",
            "horizon": {"duration_s": 7200.0, "warmup_s": 0.0},
            "workload": {"classes": [cls]},
            "fleet": {"model": "llama-3.1-8b", "gpu": "h100-sxm", "replicas": 1},
        }
    )


CASES = {
    "poisson": ({"process": "poisson", "rate_rps": 3.0}, None),
    "gamma": ({"process": "gamma", "rate_rps": 2.0, "cv": 2.0}, None),
    "diurnal": (
        {"process": "poisson", "rate_rps": 3.0},
        {"kind": "diurnal", "peak_hour": 1.0, "peak_to_trough": 4.0},
    ),
    "trace": (
        {"process": "trace", "path": "scenarios/traces/AzureLLMInferenceTrace_conv.csv"},
        None,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_expected_requests_match_what_is_drawn(case: str) -> None:
    # the mean count of 20 sampled windows lies within 4 standard errors of the estimate
    arrivals, profile = CASES[case]
    scn = _scenario(arrivals, profile)
    est = expected_requests(scn)
    counts = np.array([len(sample(scn, seed).arrival_s) for seed in range(20)], dtype=float)
    if case == "trace":  # a replay: the same count every time, the trace's mean rate
        assert counts.std() == 0.0
        assert counts.mean() == pytest.approx(est, rel=0.02)
        return
    se = max(counts.std(ddof=1), math.sqrt(est)) / math.sqrt(len(counts))
    assert abs(counts.mean() - est) <= 4 * se, (counts.mean(), est)


def test_closed_loops_are_not_counted() -> None:
    scn = _scenario({"process": "closed_loop", "users": 10, "think_time_s": 1.0})
    assert expected_requests(scn) == 0.0


def test_a_window_too_large_for_memory_is_refused_with_the_numbers() -> None:
    scn = _scenario({"process": "poisson", "rate_rps": 1000.0})  # 7.2 M requests
    check_memory(scn, available_bytes=64 * 2**30)
    with pytest.raises(ScenarioError) as err:
        check_memory(scn, available_bytes=2**30)
    msg = str(err.value)
    assert msg.startswith("horizon.duration_s: one replication holds about 7,200,000 requests")
    assert f"{BYTES_PER_REQUEST} bytes each" in msg and "\n" not in msg


def test_the_cli_refuses_before_simulating(capsys: pytest.CaptureFixture[str]) -> None:
    # a million requests per second for the scenario's window: refused at once, exit 2
    code = main(
        [
            "run",
            "scenarios/steady-api-replacement.yaml",
            "--set",
            "workload.classes.0.arrivals.rate_rps=1000000",
            "--replications",
            "1",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "GiB of memory is available" in err
    assert "Traceback" not in err


def test_replications_running_at_once_must_fit_together(monkeypatch: pytest.MonkeyPatch) -> None:
    # 1.2 M requests ≈ 0.34 GiB per replication: one fits in 0.6 GiB, three at once do not
    import sim.replication.budget as budget
    from sim.study.executors import ProcessExecutor, SerialExecutor, local_processes

    scn = _scenario({"process": "poisson", "rate_rps": 166.0})
    avail = int(0.6 * 2**30)
    check_memory(scn, available_bytes=avail, concurrent=1)
    with pytest.raises(ScenarioError, match="3 replications at once"):
        check_memory(scn, available_bytes=avail, concurrent=3)
    assert local_processes(SerialExecutor(), 9) == 1
    assert local_processes(ProcessExecutor(workers=4), 9) == 4
    assert local_processes(ProcessExecutor(workers=4), 2) == 2
    # sim.run counts its workers and the calling process before starting any of them
    monkeypatch.setattr(budget, "available_memory_bytes", lambda: avail)
    with pytest.raises(ScenarioError, match="3 replications at once"):
        sim.run(scn, replications=5, workers=2)


def test_prompt_identity_adds_its_hashes_to_the_budget() -> None:
    from sim.replication.budget import (
        IDENTITY_BYTES_PER_HASH,
        IDENTITY_BYTES_PER_REQUEST,
        bytes_per_request,
    )

    path = "scenarios/traces/mooncake_conversation_trace.jsonl"
    with_ids = _scenario({"process": "trace", "path": path})
    assert bytes_per_request(with_ids) == BYTES_PER_REQUEST  # lengths drawn: no identity
    data = with_ids.model_dump()
    for cls in data["workload"]["classes"]:
        del cls["prompt_tokens"]
    scn = sim.Scenario.model_validate(data)
    hashes = 288_500 / 12_031  # the trace's prompt blocks per request
    want = BYTES_PER_REQUEST + IDENTITY_BYTES_PER_REQUEST + IDENTITY_BYTES_PER_HASH * hashes
    assert bytes_per_request(scn) == pytest.approx(want)
    off = scn.with_overrides({"workload.classes.0.arrivals.prompt_identity": False})
    assert bytes_per_request(off) == BYTES_PER_REQUEST


def test_a_fleet_of_pools_counts_each_requests_rows_in_every_pool_it_may_use() -> None:
    from sim.replication.budget import ENGINE_ROW_BYTES, bytes_per_request

    s = sim.load_scenario("scenarios/mixed-pools.yaml")
    n = {c.name: expected_for(s, c.name) for c in s.workload.classes}
    # chat may use two pools (one row more each), classify one
    extra = ENGINE_ROW_BYTES * n["chat"] / (n["chat"] + n["classify"])
    assert bytes_per_request(s) == pytest.approx(BYTES_PER_REQUEST + extra, rel=1e-12)
    with pytest.raises(ScenarioError, match="a fleet of several pools keeps every record"):
        check_memory(s.with_overrides({"horizon.duration_s": 1e9}), available_bytes=2**30)


def expected_for(s: sim.Scenario, name: str) -> float:
    only = s.with_overrides({"workload.classes": [c for c in s.model_dump(by_alias=True)[
        "workload"]["classes"] if c["name"] == name]})  # fmt: skip
    return expected_requests(only)
