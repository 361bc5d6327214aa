"""Arrival processes and rate profiles: samples against their stated theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError
from theory import (
    assert_counts_follow,
    assert_mean,
    assert_poisson_count,
    assert_std,
    assert_within_se,
    batch_means,
)

from sim.workload import (
    ClosedLoopArrivals,
    DiurnalProfile,
    GammaArrivals,
    HourlyProfile,
    MMPPArrivals,
    PoissonArrivals,
    thin,
)

DAY = 86_400.0


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


@pytest.mark.parametrize(
    "proc",
    [
        PoissonArrivals(rate_rps=3.0),
        GammaArrivals(rate_rps=3.0, cv=3.0),
        GammaArrivals(rate_rps=3.0, cv=0.3),
        MMPPArrivals(rates_rps=(1.0, 20.0), mean_dwell_s=(60.0, 6.0)),
    ],
)
def test_samples_are_sorted_and_inside_the_horizon(
    proc: PoissonArrivals | GammaArrivals | MMPPArrivals,
) -> None:
    t = proc.sample(rng(1), 500.0)
    assert t.dtype == np.float64
    assert np.all(np.diff(t) >= 0) and t.min() >= 0 and t.max() < 500.0
    assert proc.sample(rng(2), 1e-9).size <= 1


def test_poisson_rate_and_gaps() -> None:
    p = PoissonArrivals(rate_rps=5.0)
    T = 40_000.0
    t = p.sample(rng(11), T)
    assert_poisson_count(t.size, p.mean_rate_rps() * T)
    gaps = np.diff(t)
    # exponential gaps: mean 1/λ, std 1/λ, excess kurtosis 6
    assert_mean(gaps, 1 / 5.0, 1 / 5.0)
    assert_std(gaps, p.interarrival_cv() / 5.0, excess_kurtosis=6.0)


def test_rate_factor_scales_the_rate() -> None:
    p = PoissonArrivals(rate_rps=2.0)
    t = p.sample(rng(12), 20_000.0, rate_factor=2.5)
    assert_poisson_count(t.size, 5.0 * 20_000.0)


@pytest.mark.parametrize("cv", [0.3, 1.0, 3.0])
def test_gamma_renewal_rate_and_cv(cv: float) -> None:
    g = GammaArrivals(rate_rps=4.0, cv=cv)
    T = 50_000.0
    t = g.sample(rng(13), T)
    # counts of a renewal process: Var N(T) ~ cv² · E N(T)
    assert_poisson_count(t.size, g.mean_rate_rps() * T, idc=g.index_of_dispersion())
    gaps = np.diff(t)
    assert_mean(gaps, 1 / 4.0, cv / 4.0)
    # gamma gaps: excess kurtosis 6/shape = 6 cv²
    assert_std(gaps, g.interarrival_cv() / 4.0, excess_kurtosis=6.0 * cv**2)


def test_gamma_starts_in_equilibrium() -> None:
    # Started in equilibrium, E N[0, T) = λT even for short T. An ordinary renewal process
    # started at 0 would give about λT + (cv² − 1)/2 = 14 here instead of 10.
    g = GammaArrivals(rate_rps=2.0, cv=3.0)
    r = rng(14)
    counts = [g.sample(r, 5.0).size for _ in range(4000)]
    assert_mean(counts, 2.0 * 5.0)


def test_gamma_idc_needs_an_infinite_window() -> None:
    with pytest.raises(ValueError, match="asymptotic"):
        GammaArrivals(rate_rps=1.0, cv=2.0).index_of_dispersion(60.0)


MMPP2 = MMPPArrivals(rates_rps=(0.5, 5.0), mean_dwell_s=(100.0, 20.0))


def test_mmpp_theory_closed_forms() -> None:
    pi = MMPP2.stationary_probs()
    assert pi.tolist() == pytest.approx([100 / 120, 20 / 120])
    assert MMPP2.mean_rate_rps() == pytest.approx((100 * 0.5 + 20 * 5.0) / 120)
    q = MMPP2.generator()
    assert np.allclose(q.sum(axis=1), 0.0) and np.allclose(pi @ q, 0.0)
    # Fischer & Meier-Hellstern (1993): IDC(∞) = 1 + 2σ₁σ₂(λ₁−λ₂)²/((σ₁+σ₂)²(λ₁σ₂+λ₂σ₁))
    s1, s2, l1, l2 = 1 / 100, 1 / 20, 0.5, 5.0
    closed = 1 + 2 * s1 * s2 * (l1 - l2) ** 2 / ((s1 + s2) ** 2 * (l1 * s2 + l2 * s1))
    assert MMPP2.index_of_dispersion() == pytest.approx(closed, rel=1e-12)
    # finite windows: IDC(t) = 1 + (IDC∞ − 1)(1 − (1 − e^{−θt})/(θt)), θ = σ₁ + σ₂
    theta, w = s1 + s2, 50.0
    finite = 1 + (closed - 1) * (1 - (1 - math.exp(-theta * w)) / (theta * w))
    assert MMPP2.index_of_dispersion(w) == pytest.approx(finite, rel=1e-10)
    assert MMPP2.index_of_dispersion(1e-6) == pytest.approx(1.0, abs=1e-5)
    # equal rates: a plain Poisson process
    flat = MMPPArrivals(rates_rps=(2.0, 2.0, 2.0), mean_dwell_s=(1.0, 5.0, 9.0))
    assert flat.index_of_dispersion() == pytest.approx(1.0)
    assert flat.interarrival_cv() == pytest.approx(1.0)


def test_mmpp_mean_rate_and_dispersion_of_counts() -> None:
    window, n_windows = 400.0, 2000
    T = window * n_windows
    t = MMPP2.sample(rng(21), T)
    idc_T = MMPP2.index_of_dispersion(T)
    assert_poisson_count(t.size, MMPP2.mean_rate_rps() * T, idc=idc_T)
    counts = np.bincount((t // window).astype(np.intp), minlength=n_windows)
    # IDC per batch of 100 windows; batch means give an honest SE despite correlated windows
    per_batch = [c.var(ddof=1) / c.mean() for c in np.array_split(counts, 20)]
    est, se = batch_means(per_batch, 20)
    theory = MMPP2.index_of_dispersion(window)
    assert theory > 5  # the test has teeth: a Poisson process would give 1
    assert_within_se(est, theory, se, what="IDC")


def test_mmpp_interarrival_cv() -> None:
    t = MMPP2.sample(rng(22), 400_000.0)
    gaps = np.diff(t)
    # gaps are correlated: batch means over long stretches
    pieces = np.array_split(gaps, 20)
    cvs = [g.std() / g.mean() for g in pieces]
    est, se = batch_means(cvs, 20)
    assert_within_se(est, MMPP2.interarrival_cv(), se, what="gap CV")


def test_mmpp_three_states_mean_rate() -> None:
    m = MMPPArrivals(rates_rps=(1.0, 4.0, 0.0), mean_dwell_s=(30.0, 10.0, 20.0))
    assert m.mean_rate_rps() == pytest.approx((30 + 40 + 0) / 60)
    T = 300_000.0
    t = m.sample(rng(23), T)
    assert_poisson_count(t.size, m.mean_rate_rps() * T, idc=m.index_of_dispersion(T))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rates_rps": [1.0, 2.0], "mean_dwell_s": [1.0, 2.0, 3.0]}, "mean_dwell_s has 3"),
        ({"rates_rps": [0.0, 0.0], "mean_dwell_s": [1.0, 1.0]}, "rates_rps"),
        ({"rates_rps": [1.0, -2.0], "mean_dwell_s": [1.0, 1.0]}, "rates_rps"),
        ({"rates_rps": [1.0, 2.0], "mean_dwell_s": [1.0, 0.0]}, "mean_dwell_s"),
        ({"rates_rps": [1.0], "mean_dwell_s": [1.0]}, "rates_rps"),
    ],
)
def test_mmpp_validation(kwargs: dict[str, list[float]], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MMPPArrivals.model_validate(kwargs)


@pytest.mark.parametrize("dist", ["exponential", "fixed"])
def test_closed_loop_think_times(dist: str) -> None:
    c = ClosedLoopArrivals.model_validate({"users": 4, "think_time_s": 3.0, "think_dist": dist})
    x = c.sample_think(rng(31), 100_000)
    assert_mean(x, c.mean_think_s(), c.think_cv() * c.mean_think_s())
    if dist == "exponential":
        assert_std(x, c.think_cv() * 3.0, excess_kurtosis=6.0)
    else:
        assert np.all(x == 3.0) and c.think_cv() == 0.0
    assert c.max_rate_rps(response_s=1.0) == pytest.approx(1.0)


# ---- profiles ----------------------------------------------------------------------------

PROFILES: dict[str, DiurnalProfile | HourlyProfile] = {
    "diurnal": DiurnalProfile(peak_to_trough=3.0, peak_hour=14),
    "hourly": HourlyProfile(weights=(0.0,) * 6 + (1.0,) * 6 + (4.0,) * 6 + (2.0,) * 6),
}


@pytest.mark.parametrize("name", list(PROFILES))
def test_profile_is_normalised(name: str) -> None:
    p = PROFILES[name]
    hm = p.hour_means()
    assert hm.mean() == pytest.approx(1.0)
    # exact hour means agree with fine numerical integration of the multiplier
    grid = (np.arange(86_400 * 4) + 0.5) / 4
    assert np.allclose(p.multiplier(grid).reshape(24, -1).mean(axis=1), hm, atol=1e-6)
    assert p.peak_multiplier() == pytest.approx(float(p.multiplier(grid).max()), rel=1e-6)


def test_diurnal_peak_to_trough() -> None:
    p = DiurnalProfile(peak_to_trough=4.0, peak_hour=9.5)
    m = p.multiplier(np.array([9.5, 21.5]) * 3600.0)
    assert m[0] / m[1] == pytest.approx(4.0)
    assert p.multiplier(9.5 * 3600.0 + DAY) == pytest.approx(m[0])  # wraps every day


@pytest.mark.parametrize("name", list(PROFILES))
def test_thinned_poisson_follows_the_profile(name: str) -> None:
    profile = PROFILES[name]
    rate, days = 0.25, 20
    T = days * DAY
    base = PoissonArrivals(rate_rps=rate)
    t = thin(base.sample(rng(41), T, rate_factor=profile.peak_multiplier()), profile, rng(42))
    # the daily mean rate is rate_rps ...
    assert_poisson_count(t.size, rate * T)
    # ... and hour-of-day counts (independent Poisson) follow the profile
    hour = ((t % DAY) // 3600).astype(np.intp)
    observed = np.bincount(hour, minlength=24)
    assert_counts_follow(observed, rate * 3600.0 * days * profile.hour_means())


def test_thinned_gamma_keeps_the_daily_mean_rate() -> None:
    # Thinning changes a renewal process's CV, but not its mean: check the count over one day
    # across independent replications (SE from their spread).
    profile = DiurnalProfile(peak_to_trough=5.0, peak_hour=3)
    g = GammaArrivals(rate_rps=0.05, cv=2.0)
    r1, r2 = rng(43), rng(44)
    counts = [
        thin(g.sample(r1, DAY, rate_factor=profile.peak_multiplier()), profile, r2).size
        for _ in range(400)
    ]
    assert_mean(counts, 0.05 * DAY)


def test_profile_validation() -> None:
    with pytest.raises(ValidationError, match="weights"):
        HourlyProfile(weights=(1.0,) * 23)
    with pytest.raises(ValidationError, match="non-negative"):
        HourlyProfile(weights=(1.0,) * 23 + (-1.0,))
    with pytest.raises(ValidationError, match="all be zero"):
        HourlyProfile(weights=(0.0,) * 24)
    with pytest.raises(ValidationError, match="peak_to_trough"):
        DiurnalProfile(peak_to_trough=0.5)
    with pytest.raises(ValidationError, match="peak_hour"):
        DiurnalProfile(peak_to_trough=2.0, peak_hour=24)
