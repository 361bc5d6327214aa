"""Token-length distributions: samples against their stated mean, std and cdf."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
from pydantic import TypeAdapter, ValidationError
from theory import assert_mean, assert_proportion, assert_std

import sim.workload.lengths as lengths
from sim.workload import (
    EmpiricalLength,
    FixedLength,
    GeometricLength,
    LengthSpec,
    LognormalLength,
)

N = 200_000

DISTS: dict[str, FixedLength | GeometricLength | LognormalLength | EmpiricalLength] = {
    "fixed": FixedLength(value=512),
    "fixed-clipped": FixedLength(value=512, max=100),
    "geometric": GeometricLength(mean=200),
    "geometric-clipped": GeometricLength(mean=50, min=10, max=100),
    "geometric-1": GeometricLength(mean=1),
    "lognormal-quantiles": LognormalLength(median=1000, p90=3000, max=32_000),
    "lognormal-clipped": LognormalLength(mu=5.0, sigma=1.5, min=20, max=2000),
    "lognormal-small": LognormalLength(mu=0.0, sigma=1.0),
    "lognormal-degenerate": LognormalLength(mu=math.log(300.0), sigma=0.0),
    "empirical-weighted": EmpiricalLength(values=(10, 100, 1000), weights=(5.0, 3.0, 2.0)),
    "empirical-clipped": EmpiricalLength(values=(1, 5, 50, 500), min=3, max=300),
}


@pytest.mark.parametrize("name", list(DISTS))
def test_samples_match_theory(name: str) -> None:
    dist = DISTS[name]
    x = dist.sample(np.random.default_rng(zlib.crc32(name.encode())), N)
    lo, hi = dist.min, dist.max if dist.max is not None else np.iinfo(np.int64).max
    assert x.dtype == np.int64 and x.shape == (N,)
    assert x.min() >= max(lo, 1) and x.max() <= hi
    assert_mean(x, dist.mean(), dist.std())
    assert_std(x, dist.std())


@pytest.mark.parametrize("name", ["geometric-clipped", "lognormal-clipped", "empirical-clipped"])
def test_cdf_matches_samples(name: str) -> None:
    dist = DISTS[name]
    x = dist.sample(np.random.default_rng(7), N)
    for k in np.unique(np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95]).astype(np.int64)):
        assert_proportion(int((x <= k).sum()), N, float(dist.cdf(k)), what=f"P(L <= {k})")
    assert dist.max is not None
    assert dist.cdf(dist.min - 1) == 0.0 and dist.cdf(dist.min) > 0.0
    assert dist.cdf(dist.max) == 1.0 and dist.cdf(dist.max - 1) < 1.0


def test_lognormal_quantile_parametrisation_gives_median_and_p90() -> None:
    dist = LognormalLength(median=1000, p90=3000)
    assert dist.mu_() == pytest.approx(math.log(1000))
    # the discrete median and p90 are the stated ones (rounding moves them < 1 token) ...
    assert dist.cdf(999) < 0.5 <= dist.cdf(1000)
    assert dist.cdf(2999) < 0.9 <= dist.cdf(3000)
    # ... and the samples put the stated shares below them (binomial SE)
    x = dist.sample(np.random.default_rng(3), N)
    assert_proportion(int((x <= 1000).sum()), N, float(dist.cdf(1000)), what="P(L <= median)")
    assert_proportion(int((x <= 3000).sum()), N, float(dist.cdf(3000)), what="P(L <= p90)")
    assert_proportion(int((x <= 1000).sum()), N, 0.5, what="share below median")
    assert_proportion(int((x <= 3000).sum()), N, 0.9, what="share below p90")


def test_geometric_theory_closed_forms() -> None:
    m = 200.0
    d = GeometricLength(mean=m)
    assert d.mean() == pytest.approx(m, rel=1e-12)
    assert d.std() == pytest.approx(math.sqrt(m * (m - 1)), rel=1e-12)
    # clipping against a brute-force sum over the support
    c = GeometricLength(mean=50, min=10, max=100)
    k = np.arange(1, 5000)
    p = (1 - 1 / 50) ** (k - 1) / 50
    v = np.clip(k, 10, 100)
    assert c.mean() == pytest.approx(float(v @ p), rel=1e-10)
    assert c.std() == pytest.approx(math.sqrt(float(v**2 @ p) - float(v @ p) ** 2), rel=1e-9)


def test_lognormal_far_tail_integral_agrees_with_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tail beyond the summation grid is integrated by the midpoint rule; shrinking the grid
    # must not change the exact moments noticeably.
    dist = LognormalLength(mu=5.0, sigma=1.0)
    mean, std = dist.mean(), dist.std()
    assert mean == pytest.approx(math.exp(5.5), rel=1e-3)  # rounding barely moves the mean
    monkeypatch.setattr(lengths, "_GRID_POINTS", 3000)
    fresh = LognormalLength(mu=5.0, sigma=1.0)  # moments are cached per instance
    assert fresh.mean() == pytest.approx(mean, rel=1e-7)
    assert fresh.std() == pytest.approx(std, rel=1e-7)


def test_lognormal_heavy_tail_without_max_has_finite_theory() -> None:
    dist = LognormalLength(mu=0.0, sigma=3.0)
    # most of the mean sits beyond the grid; the continuous mean is e^{σ²/2}
    assert dist.mean() == pytest.approx(math.exp(4.5), rel=0.02)
    assert math.isfinite(dist.std())


def test_sequential_draws_continue_the_stream() -> None:
    for dist in DISTS.values():
        a, b = np.random.default_rng(1), np.random.default_rng(1)
        joined = np.concatenate([dist.sample(a, 3), dist.sample(a, 2)])
        assert np.array_equal(joined, dist.sample(b, 5))


ADAPTER: TypeAdapter[object] = TypeAdapter(LengthSpec)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"dist": "lognormal", "median": 1000}, "lognormal"),
        ({"dist": "lognormal", "median": 1000, "p90": 3000, "sigma": 1}, "lognormal"),
        ({"dist": "lognormal", "median": 1000, "p90": 500}, "lognormal"),
        ({"dist": "lognormal", "mu": 1.0, "sigma": -1.0}, "sigma"),
        ({"dist": "geometric", "mean": 0.5}, "mean"),
        ({"dist": "fixed", "value": 0}, "value"),
        ({"dist": "fixed", "value": 5, "min": 0}, "min"),
        ({"dist": "fixed", "value": 5, "min": 10, "max": 5}, "fixed"),
        ({"dist": "empirical", "values": [1, 2], "weights": [1.0]}, "empirical"),
        ({"dist": "empirical", "values": [0, 2]}, "values"),
        ({"dist": "empirical", "values": []}, "values"),
        ({"dist": "uniform", "low": 1}, "dist"),
        ({"dist": "geometric", "mean": 5, "median": 3}, "median"),
    ],
)
def test_invalid_length_specs_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ADAPTER.validate_python(data)
    locs = [".".join(map(str, e["loc"])) for e in err.value.errors()]
    assert any(field in loc or field in str(err.value) for loc in locs), locs


def test_geometric_mean_round_trips_under_its_yaml_name() -> None:
    d = GeometricLength(mean=20, max=99)
    dumped = d.model_dump()
    assert dumped["mean"] == 20 and "mean_" not in dumped
    assert GeometricLength.model_validate(dumped) == d
    assert hash(d) == hash(GeometricLength.model_validate(dumped))
