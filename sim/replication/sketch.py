"""A mergeable quantile sketch for latencies: relative error bounded, memory fixed.

Values are counted in logarithmic buckets ``(γ^(i−1), γ^i]`` with ``γ = (1 + α)/(1 − α)``
(the scheme of DDSketch, Masson et al., VLDB 2019); a quantile is answered with the
bucket's relative midpoint ``2γ^i / (γ + 1)``, which lies within a relative ``α`` of every
value in the bucket. The ``q``-th percentile interpolates linearly between the order
statistics of ranks ``⌊h⌋`` and ``⌊h⌋ + 1``, ``h = q/100 · (n − 1)``, as ``numpy.percentile``
does by default, so the answer is within ``α`` (relative) of ``numpy.percentile`` of the
same values, for any data. Two sketches merge by adding counts: exactly the sketch of the
pooled values.

Buckets span ``[MIN_VALUE, MAX_VALUE]`` (1 ns to about 31 years); values below are counted
as 0 and answered as 0, values above clipped to the last bucket.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["ALPHA", "MAX_VALUE", "MIN_VALUE", "QuantileSketch"]

ALPHA = 0.005
MIN_VALUE = 1e-9
MAX_VALUE = 1e9
_GAMMA = (1.0 + ALPHA) / (1.0 - ALPHA)
_LOG_GAMMA = math.log(_GAMMA)
_I0 = math.ceil(math.log(MIN_VALUE) / _LOG_GAMMA)  # index of the first bucket
_NB = math.ceil(math.log(MAX_VALUE) / _LOG_GAMMA) - _I0 + 2  # + the zero bucket (0)


class QuantileSketch:
    """Counts of values in logarithmic buckets (see the module doc).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.lognormal(0.0, 1.0, 100_000)
    >>> s = QuantileSketch()
    >>> s.add(x[:40_000]); s.add(x[40_000:])
    >>> exact = np.percentile(x, 99)
    >>> bool(abs(s.quantile(99) / exact - 1) <= ALPHA)
    True
    """

    __slots__ = ("counts", "n")

    def __init__(self) -> None:
        self.counts = np.zeros(_NB, dtype=np.int64)
        self.n = 0

    def add(self, values: ArrayLike) -> None:
        """Count ``values`` (NaN ignored; non-negative values expected)."""
        v = np.asarray(values, dtype=np.float64)
        v = v[~np.isnan(v)]
        if v.size == 0:
            return
        if np.any(v < 0):
            raise ValueError("QuantileSketch counts non-negative values")
        idx = np.zeros(v.size, dtype=np.int64)
        pos = v >= MIN_VALUE
        with np.errstate(divide="ignore"):
            b = np.ceil(np.log(np.minimum(v[pos], MAX_VALUE)) / _LOG_GAMMA).astype(np.int64)
        idx[pos] = np.clip(b - _I0 + 1, 1, _NB - 1)
        self.counts += np.bincount(idx, minlength=_NB)
        self.n += int(v.size)

    def merge(self, other: QuantileSketch) -> None:
        """Add ``other``'s counts to this sketch."""
        self.counts += other.counts
        self.n += other.n

    def quantiles(self, qs: ArrayLike) -> NDArray[np.float64]:
        """Percentiles ``qs`` (0–100) of the values counted; NaN when there are none."""
        q = np.asarray(qs, dtype=np.float64)
        if self.n == 0:
            return np.full(q.shape, np.nan)
        h = q / 100.0 * (self.n - 1)
        lo = np.floor(h).astype(np.int64)
        hi = np.minimum(lo + 1, self.n - 1)
        cum = np.cumsum(self.counts)
        v_lo, v_hi = (
            self._value(np.searchsorted(cum, lo, side="right")),
            self._value(np.searchsorted(cum, hi, side="right")),
        )
        return v_lo + (h - lo) * (v_hi - v_lo)

    @staticmethod
    def _value(bucket: NDArray[np.intp]) -> NDArray[np.float64]:
        value = 2.0 * _GAMMA ** (bucket + _I0 - 1).astype(np.float64) / (_GAMMA + 1.0)
        return np.where(bucket == 0, 0.0, value)

    def quantile(self, q: float) -> float:
        """One percentile (0–100)."""
        return float(self.quantiles([q])[0])
