"""Queueing-theory oracles: exact textbook results the simulator is checked against.

Degenerate simulator settings reduce to classic queues: a replica with ``max_num_seqs = k``,
a constant step time and geometric output lengths is an M/M/k queue (in the limit of short
steps), a single-slot replica with fixed-length outputs is M/D/1. These functions give the
exact steady-state answers for those queues, so tests can compare simulated means against
them within a few standard errors.

Time is in whatever unit the rates use (seconds when rates are per second).

References
----------
.. [1] D. Gross, J. F. Shortle, J. M. Thompson, C. M. Harris, *Fundamentals of Queueing
   Theory*, 4th ed., Wiley, 2008, sections 2.2 (M/M/1), 2.3 (M/M/c), 5.1 (M/G/1).
.. [2] L. Kleinrock, *Queueing Systems, Volume 1: Theory*, Wiley, 1975.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "QueueMetrics",
    "break_even_rate_rps",
    "erlang_c",
    "fleet_cost_per_1m_tokens",
    "geometric_service_scv",
    "littles_law",
    "md1",
    "mg1",
    "mm1",
    "mmk",
]

FloatOrArray = float | NDArray[np.float64]


def _result(values: NDArray[np.float64]) -> FloatOrArray:
    """Return a Python float for 0-d results, the array otherwise."""
    return float(values) if values.ndim == 0 else values


def _check_positive(value: float, name: str, *, allow_zero: bool = False) -> float:
    value = float(value)
    ok = value >= 0 if allow_zero else value > 0
    if not (math.isfinite(value) and ok):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def _check_servers(servers: int) -> int:
    if isinstance(servers, bool) or int(servers) != servers or servers < 1:
        raise ValueError(f"servers must be an integer >= 1, got {servers!r}")
    return int(servers)


@overload
def erlang_c(servers: int, offered_load: float) -> float: ...
@overload
def erlang_c(servers: ArrayLike, offered_load: ArrayLike) -> FloatOrArray: ...
def erlang_c(servers: ArrayLike, offered_load: ArrayLike) -> FloatOrArray:
    """Probability that an arrival has to wait in an M/M/k queue (Erlang C).

    Computed through the Erlang B recursion ``B(0) = 1``,
    ``B(n) = a·B(n−1) / (n + a·B(n−1))`` and ``C = B / (1 − ρ(1 − B))`` with ρ = a/k,
    which never forms ``a^k / k!`` and so is stable for thousands of servers.

    Parameters
    ----------
    servers : int or array_like of int
        Number of servers k ≥ 1.
    offered_load : float or array_like
        Offered load a = λ/μ in Erlangs, 0 ≤ a < k. Broadcast against ``servers``.

    Returns
    -------
    float or ndarray
        C(k, a) in [0, 1); a float when both inputs are scalars.

    Raises
    ------
    ValueError
        If ``servers`` is not a positive integer, ``offered_load`` is negative or not
        finite, or ``offered_load >= servers`` (utilisation ρ ≥ 1: no steady state).

    Examples
    --------
    >>> erlang_c(2, 1.0)  # doctest: +ELLIPSIS
    0.333333...
    >>> erlang_c([1, 2, 3], 0.5).round(4)
    array([0.5   , 0.1   , 0.0152])
    """
    k_in = np.asarray(servers)
    a_in = np.asarray(offered_load, dtype=np.float64)
    if k_in.dtype == np.bool_ or not np.issubdtype(k_in.dtype, np.number):
        raise ValueError("servers must be integers >= 1")
    if np.any(k_in != np.floor(k_in)) or np.any(k_in < 1):
        raise ValueError(f"servers must be integers >= 1, got {servers!r}")
    if not np.all(np.isfinite(a_in)) or np.any(a_in < 0):
        raise ValueError(f"offered_load must be finite and >= 0, got {offered_load!r}")
    k, a = np.broadcast_arrays(k_in.astype(np.int64), a_in)
    if np.any(a >= k):
        raise ValueError(
            "offered_load must be < servers (utilisation rho = offered_load / servers < 1)"
        )
    b = np.ones(k.shape, dtype=np.float64)
    for n in range(1, int(k.max(initial=0)) + 1):
        step = a * b / (n + a * b)
        b = np.where(n <= k, step, b)
    rho = a / k
    return _result(b / (1.0 - rho * (1.0 - b)))


@dataclass(frozen=True)
class QueueMetrics:
    """Steady-state results of a single-class FCFS queue.

    Attributes
    ----------
    model : str
        Kendall notation of the queue: ``"M/M/1"``, ``"M/M/k"``, ``"M/G/1"`` or ``"M/D/1"``.
    arrival_rate : float
        λ, arrivals per unit time.
    mean_service_s : float
        E[S], mean service time of one job on one server.
    servers : int
        k.
    service_scv : float
        Squared coefficient of variation of the service time (1 for exponential).
    utilisation : float
        ρ = λ·E[S]/k, the long-run fraction of time a server is busy.
    prob_wait : float
        Probability an arrival waits (Erlang C for M/M/k; ρ for M/G/1, by PASTA).
    mean_wait : float
        Wq, mean time in queue before service starts.
    mean_sojourn : float
        W = Wq + E[S], mean time in system.
    mean_queue_length : float
        Lq = λ·Wq (Little's law).
    mean_in_system : float
        L = λ·W (Little's law).
    """

    model: str
    arrival_rate: float
    mean_service_s: float
    servers: int
    service_scv: float
    utilisation: float
    prob_wait: float
    mean_wait: float
    mean_sojourn: float
    mean_queue_length: float
    mean_in_system: float

    def _wait_decay_rate(self) -> float:
        if self.model not in ("M/M/1", "M/M/k"):
            raise NotImplementedError(
                f"the waiting-time distribution is only provided for M/M/k, not {self.model}"
            )
        return self.servers / self.mean_service_s - self.arrival_rate

    def wait_cdf(self, t: ArrayLike) -> FloatOrArray:
        """P(Wq ≤ t) = 1 − C·exp(−(kμ − λ)·t) for t ≥ 0 (M/M/k only).

        There is an atom of 1 − C at zero: arrivals that find a free server.

        Parameters
        ----------
        t : float or array_like
            Waiting times; negative values give 0.

        Returns
        -------
        float or ndarray

        Raises
        ------
        NotImplementedError
            For M/G/1 and M/D/1 results.

        Examples
        --------
        >>> q = mm1(0.8, 1.0)
        >>> round(q.wait_cdf(0.0), 3)  # P(no wait) = 1 - rho
        0.2
        """
        decay = self._wait_decay_rate()
        times = np.asarray(t, dtype=np.float64)
        cdf = 1.0 - self.prob_wait * np.exp(-decay * np.maximum(times, 0.0))
        return _result(np.where(times < 0, 0.0, cdf))

    def wait_quantile(self, p: ArrayLike) -> FloatOrArray:
        """Inverse of :meth:`wait_cdf`: the p-quantile of the waiting time (M/M/k only).

        Zero for p ≤ 1 − C, else ln(C / (1 − p)) / (kμ − λ).

        Parameters
        ----------
        p : float or array_like
            Probabilities in [0, 1).

        Returns
        -------
        float or ndarray

        Raises
        ------
        ValueError
            If any p is outside [0, 1).
        NotImplementedError
            For M/G/1 and M/D/1 results.

        Examples
        --------
        >>> q = mm1(0.8, 1.0)
        >>> round(q.wait_quantile(0.99), 3)  # ln(0.8 / 0.01) / 0.2
        21.91
        """
        decay = self._wait_decay_rate()
        probs = np.asarray(p, dtype=np.float64)
        if np.any(~np.isfinite(probs)) or np.any(probs < 0) or np.any(probs >= 1):
            raise ValueError(f"p must be in [0, 1), got {p!r}")
        c = self.prob_wait
        with np.errstate(divide="ignore"):
            tail = np.log(c / (1.0 - probs)) / decay if c > 0 else np.zeros_like(probs)
        return _result(np.where(probs <= 1.0 - c, 0.0, tail))


def mmk(arrival_rate: float, service_rate: float, servers: int) -> QueueMetrics:
    """Exact steady state of the M/M/k queue.

    With a = λ/μ, ρ = a/k and C = :func:`erlang_c` (k, a):
    Wq = C / (kμ − λ), W = Wq + 1/μ, Lq = λ·Wq, L = λ·W.

    Parameters
    ----------
    arrival_rate : float
        λ ≥ 0.
    service_rate : float
        μ > 0, completions per unit time of one busy server.
    servers : int
        k ≥ 1.

    Returns
    -------
    QueueMetrics

    Raises
    ------
    ValueError
        If an argument is out of range, or ``arrival_rate >= servers * service_rate``
        (ρ ≥ 1: the queue grows without bound).

    Examples
    --------
    >>> q = mmk(2.0, 1.5, 2)
    >>> round(q.utilisation, 4), round(q.prob_wait, 4), round(q.mean_wait, 4)
    (0.6667, 0.5333, 0.5333)
    """
    lam = _check_positive(arrival_rate, "arrival_rate", allow_zero=True)
    mu = _check_positive(service_rate, "service_rate")
    k = _check_servers(servers)
    if lam >= k * mu:
        raise ValueError(
            f"arrival_rate ({lam}) must be < servers * service_rate ({k * mu}): "
            f"utilisation rho = {lam / (k * mu):.4g} >= 1 has no steady state"
        )
    c = erlang_c(k, lam / mu)
    wq = c / (k * mu - lam)
    w = wq + 1.0 / mu
    return QueueMetrics(
        model="M/M/1" if k == 1 else "M/M/k",
        arrival_rate=lam,
        mean_service_s=1.0 / mu,
        servers=k,
        service_scv=1.0,
        utilisation=lam / (k * mu),
        prob_wait=c,
        mean_wait=wq,
        mean_sojourn=w,
        mean_queue_length=lam * wq,
        mean_in_system=lam * w,
    )


def mm1(arrival_rate: float, service_rate: float) -> QueueMetrics:
    """Exact steady state of the M/M/1 queue: :func:`mmk` with one server.

    Wq = ρ / (μ − λ), W = 1 / (μ − λ), L = ρ / (1 − ρ).

    Examples
    --------
    >>> q = mm1(0.8, 1.0)
    >>> round(q.mean_wait, 6), round(q.mean_sojourn, 6), round(q.mean_in_system, 6)
    (4.0, 5.0, 4.0)
    """
    return mmk(arrival_rate, service_rate, 1)


def mg1(arrival_rate: float, mean_service_s: float, service_scv: float) -> QueueMetrics:
    """Mean-value steady state of the M/G/1 queue (Pollaczek–Khinchine).

    Wq = λ·E[S²] / (2(1 − ρ)) with E[S²] = (1 + scv)·E[S]² and ρ = λ·E[S];
    W = Wq + E[S], Lq = λ·Wq, L = λ·W, P(wait) = ρ. Only means are exact; the returned
    object's :meth:`~QueueMetrics.wait_cdf` raises ``NotImplementedError``.

    Parameters
    ----------
    arrival_rate : float
        λ ≥ 0.
    mean_service_s : float
        E[S] > 0.
    service_scv : float
        Var[S] / E[S]² ≥ 0 (0 deterministic, 1 exponential-like).

    Returns
    -------
    QueueMetrics

    Raises
    ------
    ValueError
        If an argument is out of range or ``arrival_rate * mean_service_s >= 1``.

    Examples
    --------
    >>> round(mg1(0.8, 1.0, 1.0).mean_wait, 6)  # scv 1: same mean as M/M/1
    4.0
    """
    lam = _check_positive(arrival_rate, "arrival_rate", allow_zero=True)
    es = _check_positive(mean_service_s, "mean_service_s")
    scv = _check_positive(service_scv, "service_scv", allow_zero=True)
    rho = lam * es
    if rho >= 1:
        raise ValueError(
            f"arrival_rate ({lam}) must be < 1 / mean_service_s ({1.0 / es}): "
            f"utilisation rho = {rho:.4g} >= 1 has no steady state"
        )
    wq = lam * (1.0 + scv) * es**2 / (2.0 * (1.0 - rho))
    w = wq + es
    return QueueMetrics(
        model="M/D/1" if scv == 0 else "M/G/1",
        arrival_rate=lam,
        mean_service_s=es,
        servers=1,
        service_scv=scv,
        utilisation=rho,
        prob_wait=rho,
        mean_wait=wq,
        mean_sojourn=w,
        mean_queue_length=lam * wq,
        mean_in_system=lam * w,
    )


def md1(arrival_rate: float, mean_service_s: float) -> QueueMetrics:
    """Mean-value steady state of the M/D/1 queue: :func:`mg1` with scv = 0.

    Wq = ρ·E[S] / (2(1 − ρ)), half the M/M/1 wait at the same ρ.

    Examples
    --------
    >>> round(md1(0.8, 1.0).mean_wait, 6)
    2.0
    """
    return mg1(arrival_rate, mean_service_s, 0.0)


@overload
def littles_law(arrival_rate: float, mean_sojourn_s: float) -> float: ...
@overload
def littles_law(arrival_rate: ArrayLike, mean_sojourn_s: ArrayLike) -> FloatOrArray: ...
def littles_law(arrival_rate: ArrayLike, mean_sojourn_s: ArrayLike) -> FloatOrArray:
    """Little's law: mean number in a system L = λ·W.

    Parameters
    ----------
    arrival_rate : float or array_like
        Long-run throughput λ ≥ 0 into the system.
    mean_sojourn_s : float or array_like
        Mean time W ≥ 0 an item spends in the system. Broadcast against ``arrival_rate``.

    Returns
    -------
    float or ndarray

    Raises
    ------
    ValueError
        If an input is negative or not finite.

    Examples
    --------
    >>> littles_law(0.8, 5.0)
    4.0
    """
    lam = np.asarray(arrival_rate, dtype=np.float64)
    w = np.asarray(mean_sojourn_s, dtype=np.float64)
    if not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(f"arrival_rate must be finite and >= 0, got {arrival_rate!r}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"mean_sojourn_s must be finite and >= 0, got {mean_sojourn_s!r}")
    return _result(np.asarray(lam * w, dtype=np.float64))


@overload
def geometric_service_scv(mean_steps: float) -> float: ...
@overload
def geometric_service_scv(mean_steps: ArrayLike) -> FloatOrArray: ...
def geometric_service_scv(mean_steps: ArrayLike) -> FloatOrArray:
    """Squared coefficient of variation of a geometric number of steps on {1, 2, …}.

    With success probability p = 1/m (mean m): Var = (1 − p)/p², so
    scv = Var/m² = 1 − p = 1 − 1/m. A replica whose outputs have geometric lengths and
    whose steps take constant time has service-time scv 1 − 1/m: close to exponential
    (scv 1) once the mean output is long, which is why such a replica approaches M/M/k.

    Parameters
    ----------
    mean_steps : float or array_like
        Mean number of steps m ≥ 1.

    Returns
    -------
    float or ndarray
        scv in [0, 1).

    Raises
    ------
    ValueError
        If ``mean_steps`` < 1 or not finite.

    Examples
    --------
    >>> geometric_service_scv(200.0)
    0.995
    """
    m = np.asarray(mean_steps, dtype=np.float64)
    if not np.all(np.isfinite(m)) or np.any(m < 1):
        raise ValueError(f"mean_steps must be finite and >= 1, got {mean_steps!r}")
    return _result(1.0 - 1.0 / m)


# --- break-even of a fixed fleet against a pay-per-token API ------------------------------


def break_even_rate_rps(*, fleet_usd_per_hour: float, api_usd_per_request: float) -> float:
    """Request rate at which a fixed fleet costs the same as the API: λ* = C / (3600 · p).

    A fleet of fixed size costs ``C = fleet_usd_per_hour`` whatever the load; the API costs
    ``p = api_usd_per_request`` per request, i.e. ``3600 · λ · p`` per hour at λ requests
    per second. Above λ* self-hosting is cheaper, below it the API is. This only holds if
    the fleet can actually *serve* λ* within its SLOs: the capacity check (and the fleet
    size that fixes ``C``) is the caller's; the simulator answers it. Hidden costs (ops,
    monitoring) belong in ``C``; ``p`` is the mean API price of a request of the workload's
    mix, e.g. ``(E[input]·p_in + E[output]·p_out) / 1e6``.

    Parameters
    ----------
    fleet_usd_per_hour : float, keyword-only
        C ≥ 0, USD per hour of the whole fleet (GPUs × price per GPU-hour + hidden costs).
    api_usd_per_request : float, keyword-only
        p > 0, mean API price of one request, USD.

    Returns
    -------
    float
        λ*, requests per second.

    Raises
    ------
    ValueError
        If an input is out of range or not finite.

    Examples
    --------
    One H100 at $3.29/h against an API charging $0.001 per request:

    >>> round(break_even_rate_rps(fleet_usd_per_hour=3.29, api_usd_per_request=0.001), 4)
    0.9139
    """
    c = _check_positive(fleet_usd_per_hour, "fleet_usd_per_hour", allow_zero=True)
    p = _check_positive(api_usd_per_request, "api_usd_per_request")
    return c / (3600.0 * p)


def fleet_cost_per_1m_tokens(*, fleet_usd_per_hour: float, tokens_per_s: float) -> float:
    """Cost of a million tokens on a fixed fleet running at ``tokens_per_s``: C / (3600·r) · 1e6.

    Compare with an API's per-1M-token price: the fleet is cheaper when this is lower. The
    throughput ``r`` is what the fleet sustains *at the load it actually sees* (not its peak),
    counted the same way as the API price it is compared with (e.g. input + output tokens
    against a blended price); whether the fleet can sustain it within its SLOs is the
    caller's check.

    Parameters
    ----------
    fleet_usd_per_hour : float, keyword-only
        C ≥ 0, USD per hour of the fleet.
    tokens_per_s : float, keyword-only
        r > 0, tokens per second served.

    Returns
    -------
    float
        USD per million tokens.

    Raises
    ------
    ValueError
        If an input is out of range or not finite.

    Examples
    --------
    >>> round(fleet_cost_per_1m_tokens(fleet_usd_per_hour=3.6, tokens_per_s=2000.0), 6)
    0.5
    """
    c = _check_positive(fleet_usd_per_hour, "fleet_usd_per_hour", allow_zero=True)
    r = _check_positive(tokens_per_s, "tokens_per_s")
    return c / (3600.0 * r) * 1e6
