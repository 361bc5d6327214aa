"""Arrival processes: who knocks, and when.

Each open-loop process draws sorted arrival times in ``[0, duration_s)`` from a
``numpy.random.Generator`` and states its theory: long-run mean rate, inter-arrival CV and
index of dispersion of counts (IDC, ``Var N(t) / E N(t)``). All open-loop processes start in
their stationary regime, so ``E N[0, T) = rate · T`` exactly, with no warm-up transient.

Times are generated as a *stream* (:meth:`stream`): in fixed batches whose size does not
depend on the horizon or on how far the caller reads, so reading ``[0, T)`` at once or in
any number of pieces gives bit-identical times. :meth:`sample` reads ``[0, T)`` at once.

The closed-loop process has no arrival times of its own: ``users`` clients each send a
request, wait for its response, think, and send the next; the fleet simulation drives it.
"""

from __future__ import annotations

import math
from typing import Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

from sim._base import Frozen

__all__ = [
    "BATCH",
    "ArrivalStream",
    "ClosedLoopArrivals",
    "GammaArrivals",
    "MMPPArrivals",
    "OpenLoopArrivals",
    "PoissonArrivals",
]


# gaps (or sojourns) drawn per batch: fixed, so that the times never depend on how far a
# caller reads at once
BATCH = 4096


class ArrivalStream:
    """Sorted arrival times read forward in time: :meth:`until` returns the arrivals in
    ``[t, t_end)`` where ``t`` is where the previous call stopped (0 at first).

    Subclasses draw a batch at a time (:meth:`_batch`, sorted, after the previous batch);
    the batches are those of one read of the whole horizon, whatever the reads' ends.
    """

    def __init__(self) -> None:
        self._buf = np.empty(0)
        self._pos = 0

    def _batch(self) -> NDArray[np.float64]:  # pragma: no cover - abstract
        raise NotImplementedError

    def until(self, t_end: float) -> NDArray[np.float64]:
        """The next arrivals, up to (not including) ``t_end``."""
        parts = []
        while True:
            buf, i = self._buf, self._pos
            j = i + int(np.searchsorted(buf[i:], t_end, side="left"))
            parts.append(buf[i:j])
            self._pos = j
            if j < buf.size:
                break
            self._buf, self._pos = self._batch(), 0
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class _PoissonStream(ArrivalStream):
    def __init__(self, rng: np.random.Generator, rate: float) -> None:
        super().__init__()
        self._rng, self._mean_gap, self._last = rng, 1.0 / rate, 0.0

    def _batch(self) -> NDArray[np.float64]:
        t = self._last + np.cumsum(self._rng.exponential(self._mean_gap, BATCH))
        self._last = float(t[-1])
        return t


class _GammaStream(ArrivalStream):
    def __init__(self, rng: np.random.Generator, shape: float, scale: float) -> None:
        super().__init__()
        self._rng, self._shape, self._scale = rng, shape, scale
        self._last = math.nan

    def _batch(self) -> NDArray[np.float64]:
        if math.isnan(self._last):
            # equilibrium start: a uniform point of a length-biased gap
            self._last = self._rng.random() * self._rng.gamma(self._shape + 1.0, self._scale)
            return np.array([self._last])
        t = self._last + np.cumsum(self._rng.gamma(self._shape, self._scale, BATCH))
        self._last = float(t[-1])
        return t


class _MMPPStream(ArrivalStream):
    # arrivals are drawn a time block at a time (blocks of about BATCH expected arrivals:
    # a sojourn can be far longer than the horizon), the sojourns BATCH at a time
    def __init__(
        self,
        rng: np.random.Generator,
        rates: NDArray[np.float64],
        dwell: NDArray[np.float64],
        state0: int,
        mean_rate: float,
    ) -> None:
        super().__init__()
        self._rng, self._rates, self._dwell = rng, rates, dwell
        self._block_s = BATCH / mean_rate
        self._t0 = 0.0  # start of the next block
        self._state = state0  # state of the sojourn after the last one drawn
        self._ends = np.empty(0)  # sojourns not yet left behind: their ends and states
        self._states = np.empty(0, dtype=np.intp)
        self._start = 0.0  # start of the first of them

    def _sojourns(self) -> None:
        rng, m = self._rng, self._rates.size
        # the next state is the current one plus a uniform shift in 1..m-1 (mod m)
        shifts = rng.integers(1, m, size=BATCH)
        shifts[0] = 0
        s = (self._state + np.cumsum(shifts)) % m
        last = self._ends[-1] if self._ends.size else self._start
        ends = last + np.cumsum(rng.exponential(1.0, BATCH) * self._dwell[s])
        self._state = int((s[-1] + rng.integers(1, m)) % m)
        self._ends = np.concatenate([self._ends, ends])
        self._states = np.concatenate([self._states, s])

    def _batch(self) -> NDArray[np.float64]:
        a, b = self._t0, self._t0 + self._block_s
        self._t0 = b
        while not self._ends.size or self._ends[-1] < b:
            self._sojourns()
        # the pieces of the sojourns that overlap [a, b)
        i1 = int(np.searchsorted(self._ends, b, side="left"))
        ends = np.minimum(self._ends[: i1 + 1], b)
        starts = np.maximum(np.concatenate([[self._start], self._ends[:i1]]), a)
        length = ends - starts
        counts = self._rng.poisson(self._rates[self._states[: i1 + 1]] * length)
        total = int(counts.sum())
        t = np.repeat(starts, counts) + self._rng.random(total) * np.repeat(length, counts)
        # sojourns that ended inside this block are left behind
        if i1 > 0:
            self._start = float(self._ends[i1 - 1])
            self._ends, self._states = self._ends[i1:], self._states[i1:]
        return np.sort(t)


class PoissonArrivals(Frozen):
    """Homogeneous Poisson arrivals: independent exponential gaps, CV 1, IDC 1.

    Examples
    --------
    >>> a = PoissonArrivals(rate_rps=5.0)
    >>> t = a.sample(np.random.default_rng(0), duration_s=100.0)
    >>> bool(np.all(np.diff(t) >= 0)), a.mean_rate_rps(), a.interarrival_cv()
    (True, 5.0, 1.0)
    """

    process: Literal["poisson"] = "poisson"
    rate_rps: float = Field(gt=0.0, description="mean arrival rate, requests/s")

    def mean_rate_rps(self) -> float:
        """Long-run mean rate, requests/s."""
        return self.rate_rps

    def interarrival_cv(self) -> float:
        """Coefficient of variation of the gaps between arrivals (1)."""
        return 1.0

    def index_of_dispersion(self, window_s: float = math.inf) -> float:
        """``Var N / E N`` of counts in a window of ``window_s`` seconds (1 for any window)."""
        del window_s
        return 1.0

    def stream(self, rng: np.random.Generator, *, rate_factor: float = 1.0) -> ArrivalStream:
        """Arrival times at ``rate_rps · rate_factor``: cumulative exponential gaps."""
        return _PoissonStream(rng, self.rate_rps * rate_factor)

    def sample(
        self, rng: np.random.Generator, duration_s: float, *, rate_factor: float = 1.0
    ) -> NDArray[np.float64]:
        """Sorted arrival times in ``[0, duration_s)`` at ``rate_rps · rate_factor``."""
        return self.stream(rng, rate_factor=rate_factor).until(duration_s)


class GammaArrivals(Frozen):
    """A renewal process with gamma-distributed gaps: one knob (``cv``) for burstiness.

    Gaps have mean ``1/rate_rps`` and coefficient of variation ``cv`` (shape ``1/cv²``);
    ``cv = 1`` is Poisson, ``cv > 1`` bursty, ``cv < 1`` smoother than Poisson. The process is
    started in equilibrium: the first arrival is at ``U · G`` where ``G`` is the length-biased
    gap (``Gamma(shape + 1)``), so counts in ``[0, T)`` have mean exactly ``rate · T``.

    Examples
    --------
    >>> a = GammaArrivals(rate_rps=2.0, cv=3.0)
    >>> a.mean_rate_rps(), a.interarrival_cv(), a.index_of_dispersion()
    (2.0, 3.0, 9.0)
    """

    process: Literal["gamma"] = "gamma"
    rate_rps: float = Field(gt=0.0, description="mean arrival rate, requests/s")
    cv: float = Field(gt=0.0, description="coefficient of variation of inter-arrival gaps")

    def mean_rate_rps(self) -> float:
        """Long-run mean rate, requests/s."""
        return self.rate_rps

    def interarrival_cv(self) -> float:
        """Coefficient of variation of the gaps."""
        return self.cv

    def index_of_dispersion(self, window_s: float = math.inf) -> float:
        """Asymptotic IDC of counts, ``cv²`` (renewal CLT: ``Var N(t) ~ cv² · t/mean gap``).

        Only the limit ``window_s → ∞`` has a closed form; a finite window raises.
        """
        if math.isfinite(window_s):
            raise ValueError("GammaArrivals only states the asymptotic IDC (window_s=inf)")
        return self.cv**2

    def stream(self, rng: np.random.Generator, *, rate_factor: float = 1.0) -> ArrivalStream:
        """Arrival times at ``rate_rps · rate_factor``, started in equilibrium."""
        shape = 1.0 / self.cv**2
        return _GammaStream(rng, shape, 1.0 / (self.rate_rps * rate_factor * shape))

    def sample(
        self, rng: np.random.Generator, duration_s: float, *, rate_factor: float = 1.0
    ) -> NDArray[np.float64]:
        """Sorted arrival times in ``[0, duration_s)`` at ``rate_rps · rate_factor``."""
        return self.stream(rng, rate_factor=rate_factor).until(duration_s)


class MMPPArrivals(Frozen):
    """Markov-modulated Poisson process: Poisson at ``rates_rps[i]`` while in state ``i``.

    The hidden state stays in ``i`` for an exponential time with mean ``mean_dwell_s[i]``, then
    jumps uniformly to one of the other states. Because the jump chain is uniform, the
    stationary probability of state ``i`` is ``π_i ∝ mean_dwell_s[i]`` and the long-run rate
    is ``Σ π_i λ_i``. The process starts with the state drawn from ``π`` (stationary).

    Examples
    --------
    >>> a = MMPPArrivals(rates_rps=[1.0, 20.0], mean_dwell_s=[600.0, 60.0])
    >>> round(a.mean_rate_rps(), 4), a.stationary_probs().round(4).tolist()
    (2.7273, [0.9091, 0.0909])
    """

    process: Literal["mmpp"] = "mmpp"
    rates_rps: tuple[float, ...] = Field(min_length=2, description="Poisson rate per state")
    mean_dwell_s: tuple[float, ...] = Field(min_length=2, description="mean time per visit")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(self.rates_rps) != len(self.mean_dwell_s):
            raise ValueError(
                f"rates_rps has {len(self.rates_rps)} states but mean_dwell_s has "
                f"{len(self.mean_dwell_s)}"
            )
        if any(not math.isfinite(r) or r < 0 for r in self.rates_rps) or max(self.rates_rps) <= 0:
            raise ValueError("rates_rps must be finite, non-negative and not all zero")
        if any(not math.isfinite(d) or d <= 0 for d in self.mean_dwell_s):
            raise ValueError("mean_dwell_s must be finite and > 0")
        return self

    def stationary_probs(self) -> NDArray[np.float64]:
        """Long-run fraction of time in each state, ``π_i ∝ mean_dwell_s[i]``."""
        d = np.asarray(self.mean_dwell_s, dtype=np.float64)
        return d / d.sum()

    def generator(self) -> NDArray[np.float64]:
        """Generator matrix ``Q`` of the hidden state (rows sum to 0)."""
        m = len(self.rates_rps)
        leave = 1.0 / np.asarray(self.mean_dwell_s, dtype=np.float64)
        q = np.repeat((leave / (m - 1))[:, None], m, axis=1)
        np.fill_diagonal(q, -leave)
        return q

    def mean_rate_rps(self) -> float:
        """Long-run mean rate ``Σ π_i λ_i``, requests/s."""
        return float(self.stationary_probs() @ np.asarray(self.rates_rps))

    def index_of_dispersion(self, window_s: float = math.inf) -> float:
        """IDC ``Var N(t)/E N(t)`` of counts in a window of ``window_s`` seconds.

        For a Cox process with rate ``λ(X_t)``, ``Var N(t) = λ̄t + 2∫₀ᵗ (t − τ) C(τ) dτ`` with
        ``C`` the autocovariance of ``λ(X_t)``. The jump chain here is reversible
        (``π_i q_ij`` is constant), so ``Q`` has real eigenvalues ``−θ_k`` and
        ``C(τ) = Σ_k c_k e^{−θ_k τ}``, giving
        ``IDC(t) = 1 + (2/λ̄) Σ_k c_k [1/θ_k − (1 − e^{−θ_k t})/(θ_k² t)]``.
        For two states and ``t → ∞`` this is the closed form of Fischer & Meier-Hellstern,
        "The Markov-modulated Poisson process (MMPP) cookbook", Performance Evaluation 18
        (1993), ``1 + 2σ₁σ₂(λ₁ − λ₂)² / ((σ₁ + σ₂)²(λ₁σ₂ + λ₂σ₁))`` with ``σ_i`` the rate of
        leaving state ``i``.
        """
        pi = self.stationary_probs()
        lam = np.asarray(self.rates_rps, dtype=np.float64)
        mean = float(pi @ lam)
        root = np.sqrt(pi)
        sym = root[:, None] * self.generator() / root[None, :]
        eigval, eigvec = np.linalg.eigh((sym + sym.T) / 2.0)
        theta = -eigval
        c = (eigvec.T @ (root * lam)) ** 2
        keep = theta > 1e-12 * float(np.max(np.abs(theta)))  # drop the stationary mode
        theta, c = theta[keep], c[keep]
        if math.isinf(window_s):
            term = 1.0 / theta
        else:
            x = theta * window_s
            term = (1.0 - (-np.expm1(-x)) / x) / theta
        return 1.0 + 2.0 / mean * float(np.sum(c * term))

    def interarrival_cv(self) -> float:
        """CV of the stationary gap between arrivals.

        An MMPP is a Markovian arrival process with ``D0 = Q − Λ``, ``D1 = Λ``; the phase at an
        arrival is ``φ = πΛ/λ̄`` and ``E[Xᵏ] = k! φ (−D0)⁻ᵏ 1`` (Neuts). Gaps are correlated.
        """
        lam = np.asarray(self.rates_rps, dtype=np.float64)
        pi = self.stationary_probs()
        phi = pi * lam / float(pi @ lam)
        inv = np.linalg.inv(np.diag(lam) - self.generator())
        ones = np.ones(lam.size)
        m1 = float(phi @ inv @ ones)
        m2 = 2.0 * float(phi @ inv @ inv @ ones)
        return math.sqrt(m2 - m1 * m1) / m1

    def stream(self, rng: np.random.Generator, *, rate_factor: float = 1.0) -> ArrivalStream:
        """Arrival times with every state's rate times ``rate_factor``, the first state
        drawn from the stationary distribution."""
        m = len(self.rates_rps)
        state0 = min(int(np.searchsorted(np.cumsum(self.stationary_probs()), rng.random())), m - 1)
        return _MMPPStream(
            rng,
            np.asarray(self.rates_rps, dtype=np.float64) * rate_factor,
            np.asarray(self.mean_dwell_s, dtype=np.float64),
            state0,
            self.mean_rate_rps() * rate_factor,
        )

    def sample(
        self, rng: np.random.Generator, duration_s: float, *, rate_factor: float = 1.0
    ) -> NDArray[np.float64]:
        """Sorted arrival times in ``[0, duration_s)``, all state rates times ``rate_factor``."""
        return self.stream(rng, rate_factor=rate_factor).until(duration_s)


class ClosedLoopArrivals(Frozen):
    """``users`` clients, each sending its next request ``think`` seconds after a response.

    Think times are exponential (CV 1) or fixed (CV 0) with mean ``think_time_s``. The
    offered rate is not fixed: by Little's law it is ``users / (think_time_s + response
    time)``, so it falls as the system slows down.

    Examples
    --------
    >>> c = ClosedLoopArrivals(users=32, think_time_s=5.0)
    >>> c.mean_think_s(), c.think_cv(), c.max_rate_rps(response_s=1.0)
    (5.0, 1.0, 5.333333333333333)
    """

    process: Literal["closed_loop"] = "closed_loop"
    users: int = Field(ge=1, description="number of concurrent clients")
    think_time_s: float = Field(ge=0.0, description="mean think time between requests")
    think_dist: Literal["exponential", "fixed"] = "exponential"

    def mean_think_s(self) -> float:
        """Mean think time, seconds."""
        return self.think_time_s

    def think_cv(self) -> float:
        """Coefficient of variation of think times (1 exponential, 0 fixed)."""
        return 1.0 if self.think_dist == "exponential" and self.think_time_s > 0 else 0.0

    def max_rate_rps(self, *, response_s: float) -> float:
        """Request rate if every response takes ``response_s`` (Little's law)."""
        return self.users / (self.think_time_s + response_s)

    def sample_think(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """``n`` think times, seconds (fixed ones consume no random numbers)."""
        if self.think_dist == "fixed":
            return np.full(n, self.think_time_s, dtype=np.float64)
        return rng.exponential(self.think_time_s, n)


OpenLoopArrivals = PoissonArrivals | GammaArrivals | MMPPArrivals
