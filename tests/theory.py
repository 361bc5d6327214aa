"""Checks of samples against a stated theory, with tolerances from the standard error.

Every check passes when the estimate is within ``z`` standard errors of the theory
(``z = 4`` by default: about one false alarm in 16,000 checks, and with fixed seeds a test
either always passes or always fails). Standard errors come from the theory or from the
sample itself, never from rounding.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

Z = 4.0


def assert_within_se(
    estimate: float, theory: float, se: float, *, z: float = Z, what: str = "estimate"
) -> None:
    """``|estimate − theory| ≤ z·se`` (exact equality required when ``se`` is 0)."""
    err = abs(estimate - theory)
    tol = z * se + 1e-12 * max(1.0, abs(theory))
    assert err <= tol, (
        f"{what}: {estimate:.6g} vs theory {theory:.6g} differs by {err / se if se else err:.2f}"
        f"{' SE' if se else ''} (allowed {z} SE, SE = {se:.3g})"
    )


def assert_mean(samples: ArrayLike, mean: float, std: float | None = None, *, z: float = Z) -> None:
    """Sample mean of iid draws vs ``mean``; SE = ``std/√n`` (theory std, else sample std)."""
    x = np.asarray(samples, dtype=np.float64)
    s = float(x.std(ddof=1)) if std is None else std
    assert_within_se(float(x.mean()), mean, s / math.sqrt(x.size), z=z, what="mean")


def assert_std(
    samples: ArrayLike, std: float, *, excess_kurtosis: float | None = None, z: float = Z
) -> None:
    """Sample variance of iid draws vs ``std²``.

    ``Var(s²) ≈ (μ₄ − σ⁴)/n`` with ``μ₄ = σ⁴(κ + 3)``; ``κ`` is the theory's excess kurtosis
    if given, otherwise the fourth central moment is estimated from the sample.
    """
    x = np.asarray(samples, dtype=np.float64)
    n = x.size
    var = float(x.var(ddof=1))
    if excess_kurtosis is not None:
        mu4 = std**4 * (excess_kurtosis + 3.0)
    else:
        mu4 = float(np.mean((x - x.mean()) ** 4))
    se = math.sqrt(max(mu4 - std**4, 0.0) / n)
    assert_within_se(var, std**2, se, z=z, what="variance")


def batch_means(values: ArrayLike, n_batches: int = 20) -> tuple[float, float]:
    """Mean of per-batch estimates and its SE, for correlated sequences (batch means method).

    ``values`` is a 1-D array of per-batch estimates *or* raw data; either way the batch
    averages are treated as independent, which holds when batches are much longer than the
    correlation time.
    """
    v = np.asarray(values, dtype=np.float64)
    batches = np.array([b.mean() for b in np.array_split(v, n_batches)])
    return float(batches.mean()), float(batches.std(ddof=1) / math.sqrt(n_batches))


def assert_proportion(hits: int, n: int, p: float, *, z: float = Z, what: str = "share") -> None:
    """Observed share ``hits/n`` vs probability ``p``, binomial SE ``√(p(1 − p)/n)``."""
    assert_within_se(hits / n, p, math.sqrt(p * (1.0 - p) / n), z=z, what=what)


def assert_poisson_count(count: int, expected: float, *, idc: float = 1.0, z: float = Z) -> None:
    """A count vs its expectation, SE ``√(idc·expected)`` (``idc = 1`` for Poisson)."""
    assert_within_se(count, expected, math.sqrt(idc * expected), z=z, what="count")


def assert_counts_follow(
    observed: ArrayLike, expected: ArrayLike, *, z: float = Z, alpha: float = 1e-4
) -> None:
    """Independent Poisson bin counts vs their expectations.

    Each bin must be within ``z`` Poisson SE, and the Pearson chi-square statistic must not
    be significant at level ``alpha``. Bins with zero expectation must be empty.
    """
    obs = np.asarray(observed, dtype=np.float64)
    exp = np.asarray(expected, dtype=np.float64)
    empty = exp == 0
    assert np.all(obs[empty] == 0), "counts in bins whose expectation is 0"
    o, e = obs[~empty], exp[~empty]
    zs = (o - e) / np.sqrt(e)
    worst = int(np.argmax(np.abs(zs)))
    msg = f"bin {worst}: {o[worst]:.0f} vs {e[worst]:.1f} ({zs[worst]:.2f} SE)"
    assert abs(zs[worst]) <= z, msg
    chi2 = float(np.sum(zs**2))
    p = float(stats.chi2.sf(chi2, df=o.size))
    assert p > alpha, f"chi-square {chi2:.1f} on {o.size} bins, p = {p:.2g}"
