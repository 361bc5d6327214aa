"""The hosted pay-per-token API, for the requests the fleet simulation routed to it.

:func:`simulate_api` takes the routed requests and returns one entry per request, in the
order given, in an :class:`ApiResult`. What it models:

**Latency of a successful call.** Each request draws its own time to first token
``T ~ lognormal`` and output rate ``R ~ lognormal`` (tokens/s) from ``spec.latency``, each
given by its median and 90th percentile (``μ = ln median``, ``σ = ln(p90/median)/z₀.₉``;
``median == p90`` makes it a constant). A call sent at ``s`` has its first token at
``s + T`` and its last at ``s + T + (output − 1)/R``; TTFT and E2E are counted from the
arrival, so they include backoff waits and provisioned queueing (``wait_s``). The draws
are independent across requests and made up front, one normal per request for each
quantity, so the same ``rng`` gives the same latencies whatever the rate limits and
provisioning (common random numbers); the jitter draws come after them.

**Rate limits** (``spec.rate_limits``; pay-as-you-go calls only). Two token buckets, full
at the first arrival and refilled continuously: requests (capacity ``requests_per_min``,
at least 1 so that a limit under one a minute still lets calls through; refill
``requests_per_min/60`` per second) and tokens (capacity ``tokens_per_min``, refill
``tokens_per_min/60`` per second). A call costs one request and ``input + output`` tokens
(the actual output; real providers reserve ``max_tokens``, at least as many). A call at
``t`` is accepted if both buckets hold enough (up to rounding, relative 1e-9), and both
are debited; otherwise it gets HTTP 429 at once (a 429 takes no time and debits nothing)
and the client retries ``min(backoff_max_s, backoff_initial_s·2^k)`` later on its
``k``-th retry (``k = 0, 1, …``), times ``U[0, 1)`` with ``jitter`` ("full jitter"). A
429 after ``max_retries`` retries makes the request fail (``attempts = max_retries + 1``).
A call needing more tokens than ``tokens_per_min`` can never be accepted: it fails on its
first 429, without retries (``attempts = 1``). Calls are handled in time order across
requests, so retries interleave with later arrivals; at equal times retries go before
new arrivals, and retries in the order they were scheduled. An unset limit is not
checked; with neither set every call is accepted at its arrival.

**Provisioned throughput** (``spec.provisioned``, optional). A third token bucket with
refill ``tokens_per_s`` and capacity one second of tokens (``tokens_per_s``; so a burst
of up to one second's worth passes at once), full at the first arrival. Provisioned calls
do not count against the pay-as-you-go rate limits and are never rate limited: providers
apply those limits to pay-as-you-go traffic, and the cap is the provisioned bucket itself.
Overflow:

* ``payg``: at its arrival, a request whose ``input + output`` tokens are in the bucket is
  debited and served under the cap at once (``provisioned = True``); otherwise it goes
  pay-as-you-go at once, subject to the rate limits. The choice is made once: retries
  after a 429 stay pay-as-you-go. A request larger than the capacity is always
  pay-as-you-go.
* ``queue``: every request is served under the cap, first come first served: it waits
  until the bucket holds its tokens (or is full, for a request larger than the capacity,
  which then overdraws the bucket and delays the ones behind it), so the long-run
  provisioned throughput never exceeds ``tokens_per_s``. Nothing is rate limited.

Requests served under the cap are not billed per token; neither are 429s
(:attr:`ApiResult.billed_per_token`).
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from sim.economics.spec import ApiSpec, LatencyDist

__all__ = ["COMPLETED", "FAILED", "ApiResult", "lognormal_params", "simulate_api"]

COMPLETED = 0
FAILED = 1
#: z-score of the 90th percentile of the standard normal.
_Z90 = 1.2815515655446004
#: Relative slack when comparing a bucket level with what a call needs: refills such as
#: ``rate · Δt`` that should land exactly on the need must not miss it by one ulp.
_REL_TOL = 1e-9


@dataclass(frozen=True)
class ApiResult:
    """Per-request outcome of the hosted API, in the order the requests were given.

    Attributes
    ----------
    status
        ``int8``: :data:`COMPLETED` (0) or :data:`FAILED` (1, gave up after rate limiting).
    ttft_s
        Arrival to first token, including 429 backoff waits and provisioned queueing, s
        (NaN if failed).
    e2e_s
        Arrival to last token, s (NaN if failed).
    tpot_s
        Time per output token after the first, ``(e2e − ttft)/(output − 1)``, s (NaN for
        one-token outputs and failures).
    attempts
        Calls made, ``int64`` (1 = no retry).
    provisioned
        Served under the provisioned-throughput cap (not billed per token).
    wait_s
        Arrival to the call that was accepted: backoff waits plus provisioned queueing, s
        (NaN if failed).
    """

    status: NDArray[np.int8]
    ttft_s: NDArray[np.float64]
    e2e_s: NDArray[np.float64]
    tpot_s: NDArray[np.float64]
    attempts: NDArray[np.int64]
    provisioned: NDArray[np.bool_]
    wait_s: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.status.size)

    @property
    def completed(self) -> NDArray[np.bool_]:
        """Requests that completed."""
        return self.status == COMPLETED

    @property
    def billed_per_token(self) -> NDArray[np.bool_]:
        """Completed pay-as-you-go requests (429s and provisioned calls are not billed)."""
        return (self.status == COMPLETED) & ~self.provisioned

    def n_completed(self) -> int:
        """Requests that completed."""
        return int(np.count_nonzero(self.status == COMPLETED))

    def n_failed(self) -> int:
        """Requests that gave up after rate limiting."""
        return int(np.count_nonzero(self.status == FAILED))

    def n_rate_limited(self) -> int:
        """Requests that got at least one 429."""
        return int(np.count_nonzero((self.attempts > 1) | (self.status == FAILED)))

    def n_429(self) -> int:
        """429 responses in all: every call but the accepted one of each completed request."""
        return int(self.attempts.sum()) - self.n_completed()

    def n_provisioned(self) -> int:
        """Requests served under the provisioned-throughput cap."""
        return int(np.count_nonzero(self.provisioned))


def lognormal_params(dist: LatencyDist) -> tuple[float, float]:
    """``(μ, σ)`` of ``ln X`` for the lognormal with ``dist``'s median and p90.

    Examples
    --------
    >>> mu, sigma = lognormal_params(LatencyDist(median=1.0, p90=1.0))
    >>> (mu, sigma)
    (0.0, 0.0)
    """
    return math.log(dist.median), math.log(dist.p90 / dist.median) / _Z90


def simulate_api(
    arrival_s: ArrayLike,
    input_tokens: ArrayLike,
    output_tokens: ArrayLike,
    spec: ApiSpec,
    *,
    rng: np.random.Generator,
) -> ApiResult:
    """Simulate the hosted API for the requests routed to it (see the module docstring).

    Parameters
    ----------
    arrival_s
        Arrival times, s: usually sorted (the order of the result is that given; requests
        arriving together are handled in the order given).
    input_tokens, output_tokens
        Prompt and output lengths per request (``output ≥ 1``, ``input ≥ 0``).
    spec
        The API: latency, rate limits and provisioned throughput are used here.
    rng
        Source of every random draw; the result is a function of ``rng``'s state.

    Returns
    -------
    ApiResult
        One entry per request, in the order given.

    Examples
    --------
    One request per minute, three at once: the bucket (one request) takes the first; the
    others retry after 1, 2, 4, … s (at 1, 3, 7, 15, 31, 63 s) until the bucket has refilled,
    and the third backs off ``backoff_max_s = 60`` once more.

    >>> from sim.economics.spec import ApiSpec, RateLimitSpec
    >>> spec = ApiSpec(
    ...     usd_per_1m_input=0.15,
    ...     usd_per_1m_output=0.6,
    ...     rate_limits=RateLimitSpec(requests_per_min=1, max_retries=7, jitter=False),
    ... )
    >>> res = simulate_api([0.0, 0.0, 0.0], [100] * 3, [50] * 3, spec,
    ...                    rng=np.random.default_rng(0))
    >>> res.attempts.tolist(), res.wait_s.tolist()
    ([1, 7, 8], [0.0, 63.0, 123.0])
    """
    arr = np.ascontiguousarray(arrival_s, dtype=np.float64)
    inp = np.asarray(input_tokens, dtype=np.int64)
    out = np.asarray(output_tokens, dtype=np.int64)
    n = arr.size
    if arr.ndim != 1 or inp.shape != arr.shape or out.shape != arr.shape:
        raise ValueError("arrival_s, input_tokens and output_tokens must be 1-D of one length")
    if not np.all(np.isfinite(arr)):
        raise ValueError("arrival_s must be finite")
    if n and (inp.min() < 0 or out.min() < 1):
        raise ValueError("need input_tokens >= 0 and output_tokens >= 1")

    # latency draws first, so they do not depend on limits (common random numbers)
    mu_t, sig_t = lognormal_params(spec.latency.ttft_s)
    mu_r, sig_r = lognormal_params(spec.latency.output_tokens_per_s)
    first = np.exp(mu_t + sig_t * rng.standard_normal(n))
    rate = np.exp(mu_r + sig_r * rng.standard_normal(n))

    # admission in arrival order (stable: ties keep the order given), results given back
    # in the order given
    order = np.argsort(arr, kind="stable")
    back = np.empty_like(order)
    back[order] = np.arange(n)
    cost = (inp + out).astype(np.float64)
    start, attempts, failed, prov = _admit(arr[order], cost[order], spec, rng)
    start, attempts, failed, prov = start[back], attempts[back], failed[back], prov[back]

    ok = ~failed
    ttft = np.where(ok, start - arr + first, np.nan)
    e2e = np.where(ok, ttft + (out - 1) / rate, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(ok & (out > 1), (e2e - ttft) / (out - 1), np.nan)
    return ApiResult(
        status=np.where(failed, FAILED, COMPLETED).astype(np.int8),
        ttft_s=ttft,
        e2e_s=e2e,
        tpot_s=tpot,
        attempts=attempts,
        provisioned=prov,
        wait_s=np.where(ok, start - arr, np.nan),
    )


def _admit(
    arr: NDArray[np.float64], cost: NDArray[np.float64], spec: ApiSpec, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.bool_], NDArray[np.bool_]]:
    """Provisioned cap, then rate limits, for requests sorted by arrival: when the accepted
    call is sent, calls made, failed, served under the cap."""
    n = arr.size
    start = arr.copy()
    attempts = np.ones(n, dtype=np.int64)
    failed = np.zeros(n, dtype=np.bool_)
    prov = np.zeros(n, dtype=np.bool_)
    if spec.provisioned is not None:
        p = spec.provisioned
        prov, start = _provisioned(arr, cost, float(p.tokens_per_s), p.overflow == "queue")
    rl = spec.rate_limits
    rpm, tpm = rl.requests_per_min, rl.tokens_per_min
    if rpm is not None or tpm is not None:
        idx = np.flatnonzero(~prov)
        start[idx], attempts[idx], failed[idx] = _rate_limited(
            arr[idx],
            cost[idx],
            math.inf if rpm is None else max(1.0, float(rpm)),
            0.0 if rpm is None else rpm / 60.0,
            math.inf if tpm is None else float(tpm),
            0.0 if tpm is None else tpm / 60.0,
            int(rl.max_retries),
            float(rl.backoff_initial_s),
            float(rl.backoff_max_s),
            bool(rl.jitter),
            rng,
        )
    return start, attempts, failed, prov


@numba.njit(cache=True)
def _provisioned(
    arr: NDArray[np.float64], cost: NDArray[np.float64], rate: float, queue: bool
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Which requests go under the cap, and when they start (arrival for the others)."""
    cap = rate  # one second of tokens
    prov = np.zeros(arr.size, dtype=np.bool_)
    start = arr.copy()
    level, last = cap, arr[0] if arr.size else 0.0
    for i in range(arr.size):
        # FIFO: a request is not admitted before the one ahead of it
        t = max(arr[i], last)
        level = min(cap, level + rate * (t - last))
        c = cost[i]
        if queue:
            need = min(c, cap)
            if level < need * (1.0 - _REL_TOL):
                t += (need - level) / rate
                level = need
            level -= c
            prov[i] = True
            start[i] = t
        elif level >= c * (1.0 - _REL_TOL):
            level -= c
            prov[i] = True
        last = t
    return prov, start


@numba.njit(cache=True)
def _rate_limited(
    arr: NDArray[np.float64],
    cost: NDArray[np.float64],
    r_cap: float,
    r_rate: float,
    t_cap: float,
    t_rate: float,
    max_retries: int,
    b0: float,
    bmax: float,
    jitter: bool,
    rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.bool_]]:
    """Token-bucket admission with retries: accepted-call times, attempts and failures.

    ``r_cap``/``t_cap`` are the bucket sizes (``inf`` for no limit) and ``r_rate``/``t_rate``
    their refill rates per second. Arrivals are merged with a heap of pending retries so that
    calls are handled in time order; the buckets are refilled lazily when a call looks.
    """
    m = arr.size
    start = np.full(m, np.nan)
    attempts = np.ones(m, dtype=np.int64)
    failed = np.zeros(m, dtype=np.bool_)
    r_need = 1.0 - _REL_TOL
    heap = [(0.0, 0, 0, 0)]  # (time, seq, request, retries so far); seeded for typing
    heap.pop()
    seq = 0
    r_lvl, t_lvl, last = r_cap, t_cap, arr[0] if m else 0.0
    ai = 0
    while ai < m or len(heap) > 0:
        if len(heap) > 0 and (ai == m or heap[0][0] <= arr[ai]):
            t, _, i, k = heapq.heappop(heap)
        else:
            t, i, k = arr[ai], ai, 0
            ai += 1
            if cost[i] > t_cap:  # can never fit: fails on its first 429
                failed[i] = True
                continue
        dt = t - last
        last = t
        # inf + 0·dt stays inf: an unset limit always has room
        r_lvl = min(r_cap, r_lvl + r_rate * dt)
        t_lvl = min(t_cap, t_lvl + t_rate * dt)
        if r_lvl >= r_need and t_lvl >= cost[i] * (1.0 - _REL_TOL):
            r_lvl -= 1.0
            t_lvl -= cost[i]
            start[i] = t
            attempts[i] = k + 1
        elif k >= max_retries:
            failed[i] = True
            attempts[i] = k + 1
        else:
            delay = min(bmax, b0 * 2.0 ** min(k, 1023))  # 2.0**k overflows past 1023
            if jitter:
                delay *= rng.random()
            heapq.heappush(heap, (t + delay, seq, i, k + 1))
            seq += 1
    return start, attempts, failed
