"""Token-length distributions for prompts and outputs.

Every distribution draws ``int64`` lengths ``≥ 1`` and states the exact theory of what it
draws: :meth:`mean`, :meth:`std` and :meth:`cdf` are those of the *discretised and clipped*
distribution (``L = clip(K, min, max)``), not of the continuous one it was built from, so
tests can hold samples to them with standard-error tolerances.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydantic import ConfigDict, Field, field_validator, model_validator
from scipy.special import ndtr

from sim._base import Frozen

__all__ = [
    "EmpiricalLength",
    "FixedLength",
    "GeometricLength",
    "LengthSpec",
    "LognormalLength",
]

#: Lengths are clipped here when no ``max`` is given, so draws always fit in int64 exactly.
HARD_MAX_TOKENS = 2**53
#: z-score of the 90th percentile of the standard normal.
Z90 = 1.2815515655446004
#: Exact grid summation is used up to this many support points; the far tail is integrated.
_GRID_POINTS = 1 << 21


class _Clipped(Frozen):
    """Shared ``min``/``max`` clipping (inclusive) of a length distribution."""

    min: int = Field(default=1, ge=1, description="lengths below are raised to this")
    max: int | None = Field(default=None, ge=1, description="lengths above are cut to this")

    @model_validator(mode="after")
    def _min_le_max(self) -> Self:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self

    def _bounds(self) -> tuple[int, int]:
        return self.min, HARD_MAX_TOKENS if self.max is None else self.max

    def _clip(self, k: NDArray[np.float64] | NDArray[np.int64]) -> NDArray[np.int64]:
        lo, hi = self._bounds()
        return np.clip(k, lo, hi).astype(np.int64)


class FixedLength(_Clipped):
    """Every request has the same length ``clip(value, min, max)``.

    Examples
    --------
    >>> d = FixedLength(value=128)
    >>> d.sample(np.random.default_rng(0), 3), d.mean(), d.std()
    (array([128, 128, 128]), 128.0, 0.0)
    """

    dist: Literal["fixed"] = "fixed"
    value: int = Field(ge=1)

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.int64]:
        """Draw ``n`` lengths (consumes no random numbers)."""
        del rng
        return self._clip(np.full(n, self.value, dtype=np.int64))

    def mean(self) -> float:
        """Exact mean."""
        return float(self._clip(np.array([self.value]))[0])

    def std(self) -> float:
        """Exact standard deviation (0)."""
        return 0.0

    def cdf(self, k: ArrayLike) -> NDArray[np.float64]:
        """``P(L ≤ k)``."""
        return (np.asarray(k, dtype=np.float64) >= self.mean()).astype(np.float64)


class GeometricLength(_Clipped):
    """Geometric lengths on ``1, 2, 3, …`` with the given mean (``p = 1/mean``).

    The memoryless output length of a model that stops with a fixed probability per token.
    Unclipped: mean ``m``, variance ``m(m − 1)``.

    Examples
    --------
    >>> d = GeometricLength(mean=200)
    >>> d.mean(), round(d.std(), 2)
    (200.0, 199.5)
    """

    # The YAML key is ``mean`` but ``mean()`` is the theory method, so the field is stored as
    # ``mean_`` and read/written under its alias.
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    dist: Literal["geometric"] = "geometric"
    mean_: float = Field(alias="mean", ge=1.0, description="mean length, tokens")

    def _q(self) -> float:
        return 1.0 - 1.0 / self.mean_

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.int64]:
        """Draw ``n`` lengths."""
        return self._clip(rng.geometric(1.0 / self.mean_, size=n))

    def _tail_sums(self, a: int) -> tuple[float, float]:
        """``(Σ_{k≥a} q^k, Σ_{k≥a} k q^k)``."""
        m = self.mean_  # multiply by m = 1/p rather than divide by p: fewer rounding errors
        q = self._q()
        qa = q**a
        return qa * m, qa * (a / m + q) * m * m

    def mean(self) -> float:
        """Exact mean of the clipped distribution, ``lo + Σ_{lo≤k<hi} q^k``."""
        lo, hi = self._bounds()
        s0_lo, _ = self._tail_sums(lo)
        s0_hi, _ = self._tail_sums(hi)
        return lo + s0_lo - s0_hi

    def std(self) -> float:
        """Exact standard deviation, from ``E[L²] = lo² + Σ_{lo≤k<hi} (2k+1) q^k``."""
        lo, hi = self._bounds()
        s0_lo, s1_lo = self._tail_sums(lo)
        s0_hi, s1_hi = self._tail_sums(hi)
        second = lo * lo + 2.0 * (s1_lo - s1_hi) + (s0_lo - s0_hi)
        return math.sqrt(max(second - self.mean() ** 2, 0.0))

    def cdf(self, k: ArrayLike) -> NDArray[np.float64]:
        """``P(L ≤ k)``."""
        lo, hi = self._bounds()
        kk = np.floor(np.asarray(k, dtype=np.float64))
        out = 1.0 - self._q() ** np.maximum(kk, 0.0)
        return np.where(kk < lo, 0.0, np.where(kk >= hi, 1.0, out))


class LognormalLength(_Clipped):
    """Lognormal lengths rounded to the nearest integer, then clipped.

    Give exactly one parametrisation: ``{median, p90}`` (of the continuous lognormal, so
    ``mu = ln median`` and ``sigma = ln(p90/median)/z₀.₉``) or ``{mu, sigma}`` (of ``ln X``).
    Rounding moves the discrete median and p90 by at most one token.

    Examples
    --------
    >>> d = LognormalLength(median=1000, p90=3000, max=32000)
    >>> round(d.sigma_(), 4), int(d.sample(np.random.default_rng(1), 5).min()) >= 1
    (0.8573, True)
    """

    dist: Literal["lognormal"] = "lognormal"
    median: float | None = Field(default=None, gt=0.0, description="median length, tokens")
    p90: float | None = Field(default=None, gt=0.0, description="90th percentile, tokens")
    mu: float | None = Field(default=None, description="mean of ln(length)")
    sigma: float | None = Field(default=None, ge=0.0, description="std of ln(length)")

    @model_validator(mode="after")
    def _one_parametrisation(self) -> Self:
        quantiles = (self.median is not None, self.p90 is not None)
        log_params = (self.mu is not None, self.sigma is not None)
        if all(quantiles) and not any(log_params):
            assert self.median is not None and self.p90 is not None
            if self.p90 < self.median:
                raise ValueError(f"p90 ({self.p90}) must be >= median ({self.median})")
            return self
        if all(log_params) and not any(quantiles):
            return self
        raise ValueError("give exactly one of {median, p90} or {mu, sigma}")

    def mu_(self) -> float:
        """Location ``mu`` of ``ln X``."""
        return self.mu if self.mu is not None else math.log(self.median)  # type: ignore[arg-type]

    def sigma_(self) -> float:
        """Scale ``sigma`` of ``ln X``."""
        if self.sigma is not None:
            return self.sigma
        return math.log(self.p90 / self.median) / Z90  # type: ignore[operator]

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.int64]:
        """Draw ``n`` lengths: ``clip(rint(exp(mu + sigma·Z)), min, max)``."""
        lo, hi = self._bounds()
        x = np.exp(self.mu_() + self.sigma_() * rng.standard_normal(n))
        # Clip in float first: exp may overflow to inf, which has no int64 value.
        return np.rint(np.clip(x, lo, hi)).astype(np.int64)

    def _surv_cont(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Continuous survival ``P(X > x)``."""
        mu, s = self.mu_(), self.sigma_()
        with np.errstate(divide="ignore"):
            z = (np.log(x) - mu) / s if s > 0 else np.where(np.log(x) < mu, -np.inf, np.inf)
        return np.asarray(ndtr(-z), dtype=np.float64)

    def cdf(self, k: ArrayLike) -> NDArray[np.float64]:
        """``P(L ≤ k) = P(X < ⌊k⌋ + ½)`` inside ``[min, max)``."""
        lo, hi = self._bounds()
        kk = np.floor(np.asarray(k, dtype=np.float64))
        inner = 1.0 - self._surv_cont(np.maximum(kk, 0.0) + 0.5)
        return np.where(kk < lo, 0.0, np.where(kk >= hi, 1.0, inner))

    def _partial_moments(self, c: float) -> tuple[float, float]:
        """``(E[min(X, c)], E[min(X, c)²])`` of the continuous lognormal."""
        mu, s = self.mu_(), self.sigma_()
        if math.isinf(c):
            return math.exp(mu + s * s / 2), math.exp(2 * mu + 2 * s * s)
        lc = math.log(c)
        surv = float(ndtr(-(lc - mu) / s))
        m1 = math.exp(mu + s * s / 2) * float(ndtr((lc - mu - s * s) / s)) + c * surv
        m2 = math.exp(2 * mu + 2 * s * s) * float(ndtr((lc - mu - 2 * s * s) / s)) + c * c * surv
        return m1, m2

    @functools.cached_property
    def _moments(self) -> tuple[float, float]:
        """``(E[L], E[L²])`` via ``E[L] = Σ_k P(L > k)``, ``E[L²] = Σ_k (2k+1) P(L > k)``."""
        lo, hi = self._bounds()
        if self.sigma_() == 0.0:
            v = float(np.clip(np.rint(math.exp(self.mu_())), lo, hi))
            return v, v * v
        # P(L > k) = P(X ≥ k + ½) for lo ≤ k < hi: sum exactly on a grid ...
        top = min(hi, lo + _GRID_POINTS)
        k = np.arange(lo, top, dtype=np.float64)
        surv = self._surv_cont(k + 0.5)
        m1 = lo + float(surv.sum())
        m2 = float(lo) * lo + float(((2.0 * k + 1.0) * surv).sum())
        if top < hi:
            # ... and the far tail (k ≥ 2M tokens) by the midpoint rule, which is exact to
            # second order there: Σ S(k+½) ≈ ∫ S(x)dx, Σ (2k+1)S(k+½) ≈ ∫ 2x S(x)dx.
            a1, a2 = self._partial_moments(float(top))
            b1, b2 = self._partial_moments(float(hi) if hi < HARD_MAX_TOKENS else math.inf)
            m1 += b1 - a1
            m2 += b2 - a2
        return m1, m2

    def mean(self) -> float:
        """Exact mean of the rounded, clipped distribution (computed numerically)."""
        return self._moments[0]

    def std(self) -> float:
        """Exact standard deviation of the rounded, clipped distribution."""
        m1, m2 = self._moments
        return math.sqrt(max(m2 - m1 * m1, 0.0))


class EmpiricalLength(_Clipped):
    """Lengths drawn from a list of values with optional weights (uniform if omitted).

    Examples
    --------
    >>> d = EmpiricalLength(values=[10, 20], weights=[3, 1])
    >>> d.mean(), round(d.std(), 3)
    (12.5, 4.33)
    """

    dist: Literal["empirical"] = "empirical"
    values: tuple[int, ...] = Field(min_length=1)
    weights: tuple[float, ...] | None = None

    @field_validator("values")
    @classmethod
    def _positive_values(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if min(v) < 1:
            raise ValueError("values must be >= 1")
        return v

    @model_validator(mode="after")
    def _weights_match(self) -> Self:
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(
                    f"weights has {len(self.weights)} entries but values has {len(self.values)}"
                )
            if any(not math.isfinite(w) or w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be finite, non-negative and not all zero")
        return self

    def _support(self) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
        vals = self._clip(np.asarray(self.values, dtype=np.int64))
        w = np.ones(len(self.values)) if self.weights is None else np.asarray(self.weights)
        return vals, w / w.sum()

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.int64]:
        """Draw ``n`` lengths (one uniform per draw, inverse-CDF lookup)."""
        vals, p = self._support()
        cum = np.cumsum(p)
        idx = np.searchsorted(cum, rng.random(n) * cum[-1], side="right")
        return vals[np.minimum(idx, vals.size - 1)]

    def mean(self) -> float:
        """Exact mean."""
        vals, p = self._support()
        return float(vals @ p)

    def std(self) -> float:
        """Exact standard deviation."""
        vals, p = self._support()
        m = vals @ p
        return float(math.sqrt(max(float(((vals - m) ** 2) @ p), 0.0)))

    def cdf(self, k: ArrayLike) -> NDArray[np.float64]:
        """``P(L ≤ k)``."""
        vals, p = self._support()
        kk = np.asarray(k, dtype=np.float64)
        return np.asarray((vals[None, :] <= kk.reshape(-1, 1)) @ p, dtype=np.float64).reshape(
            kk.shape
        )


LengthSpec = Annotated[
    FixedLength | GeometricLength | LognormalLength | EmpiricalLength,
    Field(discriminator="dist"),
]
