"""Arrival processes: who knocks, and when.

Each open-loop process draws sorted arrival times in ``[0, duration_s)`` from a
``numpy.random.Generator`` and states its theory: long-run mean rate, inter-arrival CV and
index of dispersion of counts (IDC, ``Var N(t) / E N(t)``). All open-loop processes start in
their stationary regime, so ``E N[0, T) = rate · T`` exactly, with no warm-up transient.

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
    "ClosedLoopArrivals",
    "GammaArrivals",
    "MMPPArrivals",
    "OpenLoopArrivals",
    "PoissonArrivals",
]


def _below(t: NDArray[np.float64], duration_s: float) -> NDArray[np.float64]:
    # u·T with u < 1 can still round up to T in floating point.
    return t[t < duration_s]


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

    def sample(
        self, rng: np.random.Generator, duration_s: float, *, rate_factor: float = 1.0
    ) -> NDArray[np.float64]:
        """Sorted arrival times in ``[0, duration_s)`` at ``rate_rps · rate_factor``.

        Draws ``N ~ Poisson(rate·T)`` and sorts ``N`` uniforms (the order statistics property).
        """
        n = rng.poisson(self.rate_rps * rate_factor * duration_s)
        return _below(np.sort(rng.random(n) * duration_s), duration_s)


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

    def sample(
        self, rng: np.random.Generator, duration_s: float, *, rate_factor: float = 1.0
    ) -> NDArray[np.float64]:
        """Sorted arrival times in ``[0, duration_s)`` at ``rate_rps · rate_factor``."""
        shape = 1.0 / self.cv**2
        scale = 1.0 / (self.rate_rps * rate_factor * shape)
        first = rng.random() * rng.gamma(shape + 1.0, scale)
        chunks = [np.array([first])]
        last = first
        while last < duration_s:
            remaining = (duration_s - last) / (scale * shape)
            size = int(remaining + 6.0 * self.cv * math.sqrt(remaining + 1.0) + 16)
            t = last + np.cumsum(rng.gamma(shape, scale, size))
            chunks.append(t)
            last = float(t[-1])
        return _below(np.concatenate(chunks), duration_s)


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

    def sample(
        self, rng: np.random.Generator, duration_s: float, *, rate_factor: float = 1.0
    ) -> NDArray[np.float64]:
        """Sorted arrival times in ``[0, duration_s)``, all state rates times ``rate_factor``."""
        m = len(self.rates_rps)
        dwell = np.asarray(self.mean_dwell_s, dtype=np.float64)
        rates = np.asarray(self.rates_rps, dtype=np.float64) * rate_factor
        state0 = min(int(np.searchsorted(np.cumsum(self.stationary_probs()), rng.random())), m - 1)
        states: list[NDArray[np.intp]] = []
        ends: list[NDArray[np.float64]] = []
        now, current = 0.0, state0
        mean_visit = float(dwell.mean())  # the jump chain visits states uniformly
        while now < duration_s:
            size = int((duration_s - now) / mean_visit * 1.2 + 16)
            # The next state is the current one plus a uniform shift in 1..m-1 (mod m).
            shifts = rng.integers(1, m, size=size)
            shifts[0] = 0
            s = (current + np.cumsum(shifts)) % m
            t = now + np.cumsum(rng.exponential(1.0, size) * dwell[s])
            states.append(s)
            ends.append(t)
            now = float(t[-1])
            current = int((s[-1] + rng.integers(1, m)) % m)
        state = np.concatenate(states)
        end = np.minimum(np.concatenate(ends), duration_s)
        start = np.concatenate([[0.0], end[:-1]])
        length = end - start
        counts = rng.poisson(rates[state] * length)
        total = int(counts.sum())
        t = np.repeat(start, counts) + rng.random(total) * np.repeat(length, counts)
        return _below(np.sort(t), duration_s)


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
