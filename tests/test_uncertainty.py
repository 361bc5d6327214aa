"""Input uncertainty: distributions against their theory, validation of the section, and
draws per replication that leave the simulation's own streams alone."""

from __future__ import annotations

import doctest
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from pandas.testing import assert_frame_equal
from scenario_helpers import priced_scenario_data
from theory import assert_mean, assert_std, assert_within_se

import sim.uncertainty
from sim import Scenario, load_scenario, run
from sim.scenario_io import ScenarioError, dump_scenario, validate_scenario
from sim.uncertainty import (
    ChoiceParam,
    LognormalParam,
    NormalParam,
    TriangularParam,
    UniformParam,
    draw,
)

PRICE = "fleet.pricing.usd_per_gpu_hour"
API_OUT = "api.usd_per_1m_output"
RATE = "workload.classes.chat.arrivals.rate_rps"


def _data(**extra: Any) -> dict[str, Any]:
    return priced_scenario_data(name="uncertain", duration_s=300, warmup_s=30, **extra)


def _scenario(**extra: Any) -> Scenario:
    return Scenario.model_validate(_data(**extra))


UNCERTAIN = {
    PRICE: {"dist": "triangular", "low": 2.0, "mode": 3.0, "high": 4.5},
    API_OUT: {"dist": "lognormal", "median": 0.6, "p90": 0.9},
}

DISTRIBUTIONS = [
    UniformParam(low=2.0, high=5.0),
    TriangularParam(low=1.0, mode=1.5, high=4.0),
    NormalParam(mean=10.0, sd=2.0),
    LognormalParam(median=4.0, p90=9.0),
    ChoiceParam(values=[1, 2, 8], weights=[0.5, 0.3, 0.2]),
]


@pytest.mark.parametrize("dist", DISTRIBUTIONS, ids=lambda d: d.dist)
def test_samples_match_the_stated_theory(dist: Any) -> None:
    rng = np.random.default_rng(11)
    x = np.array([dist.sample(rng) for _ in range(20_000)], dtype=float)
    assert_mean(x, dist.mean(), dist.std())
    assert_std(x, dist.std())


def test_choice_frequencies_match_weights() -> None:
    dist = ChoiceParam(values=["a", "b", "c"], weights=[1, 2, 5])
    rng = np.random.default_rng(3)
    n = 20_000
    got = pd.Series([dist.sample(rng) for _ in range(n)]).value_counts()
    for value, p in zip(dist.values, dist.probabilities(), strict=True):
        assert_within_se(got[value] / n, p, np.sqrt(p * (1 - p) / n), what=str(value))


def test_draws_are_reproducible_and_independent_per_path() -> None:
    seed = np.random.SeedSequence(5).spawn(3)[2]
    one = {PRICE: UniformParam(low=2.0, high=4.0)}
    two = {API_OUT: NormalParam(mean=0.6, sd=0.05), **one}
    a, b = draw(one, seed), draw(two, seed)
    assert a == draw(one, seed)
    # adding a parameter (even before it in the mapping) does not change another's draw
    assert a[PRICE] == b[PRICE]
    assert draw(one, np.random.SeedSequence(5).spawn(3)[1])[PRICE] != a[PRICE]


# (uncertainty section, words the one-line error must contain)
BAD = {
    "unknown path": (
        {"fleet.pricing.usd_per_gpu_hourz": {"dist": "uniform", "low": 1, "high": 2}},
        ["uncertainty.fleet.pricing.usd_per_gpu_hourz", "no field"],
    ),
    "not a number": (
        {"fleet.gpu": {"dist": "uniform", "low": 1, "high": 2}},
        ["uncertainty.fleet.gpu", "not a number", "choice"],
    ),
    "integer field": (
        {"fleet.replicas": {"dist": "uniform", "low": 1, "high": 3}},
        ["uncertainty.fleet.replicas", "integer", "choice"],
    ),
    "tail invalid": (
        {PRICE: {"dist": "normal", "mean": 1.0, "sd": 1.0}},
        [f"uncertainty.{PRICE}", "can draw", "greater than or equal to 0"],
    ),
    "choice value invalid": (
        {"fleet.gpu": {"dist": "choice", "values": ["h100-sxm", "h1000"]}},
        ["uncertainty.fleet.gpu", "h1000", "unknown GPU"],
    ),
    "bad parameters": (
        {PRICE: {"dist": "uniform", "low": 3, "high": 1}},
        [f"uncertainty.{PRICE}", "must be below high"],
    ),
    "unknown dist": (
        {PRICE: {"dist": "beta", "a": 1}},
        [f"uncertainty.{PRICE}", "unknown dist 'beta'"],
    ),
    "weights": (
        {"fleet.replicas": {"dist": "choice", "values": [1, 2], "weights": [1]}},
        ["uncertainty.fleet.replicas", "1 weights for 2 values"],
    ),
    "unset value": (
        {"api.usd_per_1m_cached_input": {"dist": "uniform", "low": 0.1, "high": 0.2}},
        ["uncertainty.api.usd_per_1m_cached_input", "not set"],
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_invalid_sections_are_one_line_naming_the_path(case: str) -> None:
    section, words = BAD[case]
    with pytest.raises(ScenarioError) as info:
        validate_scenario(_data(uncertainty=section), source="s.yaml")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("s.yaml: ")
    for word in words:
        assert word in msg, msg


def test_section_loads_from_yaml_and_round_trips(tmp_path: Any) -> None:
    data = _data(uncertainty={**UNCERTAIN, "fleet.gpu": {"dist": "choice", "values": ["h100-sxm"]}})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    s = load_scenario(path)
    assert s.uncertainty is not None and list(s.uncertainty) == [*UNCERTAIN, "fleet.gpu"]
    assert Scenario.model_validate(yaml.safe_load(dump_scenario(s))) == s


def test_each_replication_draws_and_records_its_parameters() -> None:
    nominal = _scenario()
    s = _scenario(uncertainty=UNCERTAIN)
    res = run(s, replications=4, seed=2)
    reps = res.replications
    assert list(reps.columns[:3]) == ["replication", f"param:{PRICE}", f"param:{API_OUT}"]
    price = reps[f"param:{PRICE}"].to_numpy()
    assert len(set(price)) == 4 and ((price >= 2.0) & (price <= 4.5)).all()
    children = np.random.SeedSequence(2).spawn(4)
    for i, child in enumerate(children):
        drawn = draw(s.uncertainty or {}, child)
        assert reps.loc[i, f"param:{PRICE}"] == drawn[PRICE]
        assert reps.loc[i, f"param:{API_OUT}"] == drawn[API_OUT]
    # the drawn values are what was simulated: a fixed fleet's GPU bill is price × (window
    # + the drain of the window's last requests), to the engine's 1 µs billing increment
    paid_h = (300 - 30 + reps["fleet_drain_s"].to_numpy()) / 3600
    np.testing.assert_allclose(reps["fleet_gpu_usd"], price * paid_h, rtol=1e-6)
    assert res.first.scenario.fleet.pricing.usd_per_gpu_hour == price[0]
    # the workload, router and API streams are untouched: the same requests as without
    base = run(nominal, replications=4, seed=2).replications
    assert (reps["requests_offered"] == base["requests_offered"]).all()
    assert (reps["ttft_p99_s"] == base["ttft_p99_s"]).all()
    # uncertainty=False simulates the nominal values: exactly the run without the section
    off = run(s, replications=4, seed=2, uncertainty=False).replications
    assert_frame_equal(off, base, check_exact=True)


def test_draws_identical_with_worker_processes() -> None:
    s = _scenario(uncertainty=UNCERTAIN)
    serial = run(s, replications=3, seed=4).replications
    parallel = run(s, replications=3, seed=4, workers=2).replications
    assert_frame_equal(serial, parallel, check_exact=True)


def test_choice_of_names_is_recorded_but_not_summarised() -> None:
    s = _scenario(
        uncertainty={"fleet.gpu": {"dist": "choice", "values": ["h100-sxm", "h200-sxm"]}},
        fleet={"model": "llama-3.1-8b", "gpu": "h100-sxm", "replicas": 1},
    )
    res = run(s, replications=4, seed=1)
    gpus = res.replications["param:fleet.gpu"]
    assert set(gpus) <= {"h100-sxm", "h200-sxm"}
    assert "param:fleet.gpu" not in set(res.summary()["metric"])


def test_doctests() -> None:
    assert doctest.testmod(sim.uncertainty, raise_on_error=True).attempted > 0
