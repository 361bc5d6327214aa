"""Tests for sim.analytic: textbook values, identities, validation, properties."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sim.analytic
from sim.analytic import (
    QueueMetrics,
    erlang_c,
    geometric_service_scv,
    littles_law,
    md1,
    mg1,
    mm1,
    mmk,
)


def _erlang_c_direct(k: int, a: float) -> float:
    """The textbook closed form, fine for small k."""
    top = a**k / math.factorial(k) * k / (k - a)
    return top / (sum(a**n / math.factorial(n) for n in range(k)) + top)


# --- Erlang C ---------------------------------------------------------------------------


def test_erlang_c_textbook_values() -> None:
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3, rel=1e-12)
    assert erlang_c(1, 0.8) == pytest.approx(0.8, rel=1e-12)  # M/M/1: P(wait) = rho
    assert erlang_c(3, 0.0) == 0.0


@pytest.mark.parametrize("a", [0.1, 0.5, 1.0, 1.5, 1.99])
def test_erlang_c_two_servers_closed_form(a: float) -> None:
    # k = 2: C = a^2 / (2 + a).
    assert erlang_c(2, a) == pytest.approx(a**2 / (2 + a), rel=1e-12)


@pytest.mark.parametrize(("k", "a"), [(3, 2.5), (5, 3.0), (10, 9.0), (20, 15.5)])
def test_erlang_c_matches_direct_formula(k: int, a: float) -> None:
    assert erlang_c(k, a) == pytest.approx(_erlang_c_direct(k, a), rel=1e-10)


def test_erlang_c_published_call_centre_example() -> None:
    # Call Centre Helper, "Erlang C Formula - Made Simple With an Easy Worked Example":
    # 100 calls per 30 min, AHT 180 s -> A = 10 Erlangs. With 11 agents the page gives
    # P(wait) = 68.21 %, average speed of answer 122.8 s and 39.0 % answered within 20 s;
    # with 12 agents 44.94 %, 40.4 s and 64.0 %.
    for agents, p_wait, asa_s, service_level in [
        (11, 0.6821, 122.8, 0.390),
        (12, 0.4494, 40.4, 0.640),
    ]:
        q = mmk(100 / 1800, 1 / 180, agents)
        assert q.prob_wait == pytest.approx(p_wait, abs=5e-5)
        assert q.mean_wait == pytest.approx(asa_s, abs=0.05)
        assert q.wait_cdf(20.0) == pytest.approx(service_level, abs=5e-4)


def test_erlang_c_is_stable_for_many_servers() -> None:
    c = erlang_c(5000, 4900.0)  # a^k / k! would overflow
    assert 0.0 < c < 1.0
    assert math.isfinite(c)


def test_erlang_c_vectorised_and_broadcast() -> None:
    ks = np.array([1, 2, 3, 10])
    got = erlang_c(ks, 0.9)
    assert isinstance(got, np.ndarray) and got.shape == (4,)
    for k, c in zip(ks, got, strict=True):
        assert c == pytest.approx(erlang_c(int(k), 0.9), rel=1e-12)
    grid = erlang_c(np.array([[2], [4]]), np.array([0.5, 1.0, 1.5]))
    assert isinstance(grid, np.ndarray) and grid.shape == (2, 3)
    assert grid[0, 1] == pytest.approx(1 / 3)
    assert isinstance(erlang_c(2, 1.0), float)


@pytest.mark.parametrize(
    ("servers", "load", "match"),
    [
        (0, 0.5, "servers"),
        (2.5, 0.5, "servers"),
        (2, -0.1, "offered_load"),
        (2, float("nan"), "offered_load"),
        (2, 2.0, "offered_load"),
        (2, 3.0, "offered_load"),
    ],
)
def test_erlang_c_rejects_invalid(servers: float, load: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        erlang_c(servers, load)


@given(
    k=st.integers(min_value=1, max_value=200),
    frac=st.floats(min_value=0.0, max_value=0.999, exclude_max=True),
)
def test_erlang_c_property_bounded_and_decreasing_in_servers(k: int, frac: float) -> None:
    a = frac * k
    c = erlang_c(k, a)
    assert 0.0 <= c <= 1.0
    assert erlang_c(k + 1, a) <= c + 1e-12
    # Waiting needs all k servers busy, and P(busy = k) <= E[busy] / k = rho (Markov).
    assert c <= frac + 1e-12


# --- M/M/k, M/M/1 -----------------------------------------------------------------------


def test_mm1_textbook_values() -> None:
    q = mm1(0.8, 1.0)
    assert q.utilisation == pytest.approx(0.8)
    assert q.prob_wait == pytest.approx(0.8)
    assert q.mean_wait == pytest.approx(4.0)
    assert q.mean_sojourn == pytest.approx(5.0)
    assert q.mean_in_system == pytest.approx(4.0)
    assert q.mean_queue_length == pytest.approx(3.2)
    assert q.model == "M/M/1"


def test_mmk_with_one_server_equals_mm1() -> None:
    assert mmk(0.3, 0.5, 1) == mm1(0.3, 0.5)


@pytest.mark.parametrize(("lam", "mu", "k"), [(0.8, 1.0, 1), (2.0, 1.5, 2), (45.0, 1.0, 50)])
def test_littles_law_holds_inside_results(lam: float, mu: float, k: int) -> None:
    q = mmk(lam, mu, k)
    assert q.mean_in_system == pytest.approx(littles_law(lam, q.mean_sojourn))
    assert q.mean_queue_length == pytest.approx(littles_law(lam, q.mean_wait))
    # L = Lq + offered load (mean number in service)
    assert q.mean_in_system == pytest.approx(q.mean_queue_length + lam / mu)
    assert q.mean_sojourn == pytest.approx(q.mean_wait + 1 / mu)


def test_mmk_wait_distribution() -> None:
    q = mmk(2.0, 1.5, 2)
    assert q.wait_cdf(-1.0) == 0.0
    assert q.wait_cdf(0.0) == pytest.approx(1 - q.prob_wait)
    t = np.array([0.0, 0.5, 1.0, 5.0])
    expected = 1 - q.prob_wait * np.exp(-(2 * 1.5 - 2.0) * t)
    np.testing.assert_allclose(q.wait_cdf(t), expected)
    # Mean of the distribution = integral of the survival function = C / (k mu - lam).
    assert q.prob_wait / (2 * 1.5 - 2.0) == pytest.approx(q.mean_wait)
    probs = np.array([0.1, 0.5, 0.9, 0.99])
    np.testing.assert_allclose(
        q.wait_cdf(q.wait_quantile(probs)), np.maximum(probs, 1 - q.prob_wait)
    )
    assert q.wait_quantile(0.0) == 0.0
    with pytest.raises(ValueError, match="p must be"):
        q.wait_quantile(1.0)


def test_mm1_median_wait_textbook() -> None:
    # M/M/1, lam = 0.8, mu = 1: P(Wq > t) = 0.8 exp(-0.2 t); median t = 5 ln(1.6).
    assert mm1(0.8, 1.0).wait_quantile(0.5) == pytest.approx(5 * math.log(1.6))


def test_zero_arrivals() -> None:
    q = mmk(0.0, 1.0, 3)
    assert q.mean_wait == 0.0 and q.prob_wait == 0.0 and q.mean_in_system == 0.0
    assert q.wait_quantile(0.99) == 0.0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1.0, 1.0, 1), "arrival_rate"),  # rho = 1
        ((3.0, 1.0, 2), "arrival_rate"),  # rho > 1
        ((-1.0, 1.0, 1), "arrival_rate"),
        ((0.5, 0.0, 1), "service_rate"),
        ((0.5, float("inf"), 1), "service_rate"),
        ((0.5, 1.0, 0), "servers"),
        ((0.5, 1.0, 1.5), "servers"),
    ],
)
def test_mmk_rejects_invalid(args: tuple[float, float, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mmk(*args)


# --- M/G/1, M/D/1 -----------------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.8, 0.95])
def test_md1_wait_is_half_mm1_wait(rho: float) -> None:
    assert md1(rho, 1.0).mean_wait == pytest.approx(mm1(rho, 1.0).mean_wait / 2)


def test_mg1_exponential_scv_matches_mm1_means() -> None:
    g, m = mg1(0.6, 2.0 / 3.0, 1.0), mm1(0.6, 1.5)
    for field in ("utilisation", "prob_wait", "mean_wait", "mean_sojourn", "mean_in_system"):
        assert getattr(g, field) == pytest.approx(getattr(m, field)), field


def test_mg1_pollaczek_khinchine_value() -> None:
    # lam = 0.5, E[S] = 1, scv = 2 (E[S^2] = 3): Wq = 0.5 * 3 / (2 * 0.5) = 1.5.
    q = mg1(0.5, 1.0, 2.0)
    assert q.mean_wait == pytest.approx(1.5)
    assert q.mean_sojourn == pytest.approx(2.5)
    assert q.mean_in_system == pytest.approx(littles_law(0.5, 2.5))
    assert q.mean_queue_length == pytest.approx(0.75)
    assert q.model == "M/G/1"
    assert md1(0.5, 1.0).model == "M/D/1"


def test_mg1_has_no_wait_distribution() -> None:
    with pytest.raises(NotImplementedError):
        md1(0.5, 1.0).wait_cdf(1.0)
    with pytest.raises(NotImplementedError):
        mg1(0.5, 1.0, 1.0).wait_quantile(0.5)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((1.0, 1.0, 0.0), "arrival_rate"),
        ((-0.1, 1.0, 0.0), "arrival_rate"),
        ((0.5, 0.0, 0.0), "mean_service_s"),
        ((0.5, 1.0, -1.0), "service_scv"),
    ],
)
def test_mg1_rejects_invalid(args: tuple[float, float, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        mg1(*args)


def test_results_are_frozen() -> None:
    q = mm1(0.5, 1.0)
    assert isinstance(q, QueueMetrics)
    with pytest.raises(AttributeError):
        q.mean_wait = 0.0  # type: ignore[misc]


# --- Little's law, geometric scv --------------------------------------------------------


def test_littles_law() -> None:
    assert littles_law(0.8, 5.0) == pytest.approx(4.0)
    np.testing.assert_allclose(littles_law(np.array([1.0, 2.0]), 3.0), [3.0, 6.0])
    with pytest.raises(ValueError, match="arrival_rate"):
        littles_law(-1.0, 1.0)
    with pytest.raises(ValueError, match="mean_sojourn_s"):
        littles_law(1.0, -1.0)


def test_geometric_service_scv() -> None:
    assert geometric_service_scv(1.0) == 0.0  # always exactly one step
    assert geometric_service_scv(2.0) == pytest.approx(0.5)
    assert geometric_service_scv(200.0) == pytest.approx(0.995)
    with pytest.raises(ValueError, match="mean_steps"):
        geometric_service_scv(0.5)


def test_geometric_service_scv_matches_samples() -> None:
    rng = np.random.default_rng(20261127)
    mean = 8.0
    steps = rng.geometric(1 / mean, size=(40, 10_000))  # support {1, 2, ...}
    scv = steps.var() / steps.mean() ** 2
    # Standard error from 40 batch estimates (independent batches).
    batch_scv = steps.var(axis=1) / steps.mean(axis=1) ** 2
    se = batch_scv.std(ddof=1) / math.sqrt(len(batch_scv))
    assert abs(scv - geometric_service_scv(mean)) < 4 * se


def test_docstring_examples() -> None:
    result = doctest.testmod(sim.analytic, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 10
