"""The hosted pay-per-token API, for the requests the fleet simulation routed to it.

:func:`simulate_api` takes the routed requests and returns one entry per request, in the
order given, in an :class:`ApiResult`. What it models:

**Latency of a successful call.** Each request draws its own time to first token
``T ~ lognormal`` and output rate ``R ~ lognormal`` (tokens/s) from ``spec.latency``, each
given by its median and 90th percentile (``μ = ln median``, ``σ = ln(p90/median)/z₀.₉``;
``median == p90`` makes it a constant). A call sent at ``s`` has its first token at
``s + T`` and its last at ``s + T + (output − 1)/R``; TTFT and E2E are counted from the
arrival, so they include backoff waits and provisioned queueing (``wait_s``). The draws
are independent across requests, one normal per request for each quantity, each quantity
from its own generator spawned from ``rng`` (and the backoff jitter from a third), so the
same ``rng`` gives the same latencies whatever the rate limits and provisioning (common
random numbers), and however the requests are fed in batches (:class:`ApiStream`).

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

import math
from dataclasses import dataclass, field

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from sim.economics.spec import ApiSpec, LatencyDist

__all__ = [
    "COMPLETED",
    "FAILED",
    "ApiResult",
    "ApiStream",
    "lognormal_params",
    "simulate_api",
]

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

    def take(self, index: NDArray[np.int64] | NDArray[np.bool_]) -> ApiResult:
        """The outcomes at ``index`` (positions or a mask)."""
        return ApiResult(**{k: getattr(self, k)[index] for k in _RESULT_COLUMNS})

    @staticmethod
    def concat(parts: list[ApiResult]) -> ApiResult:
        """The outcomes of ``parts``, one after the other."""
        if not parts:
            f = np.empty(0)
            return ApiResult(
                np.empty(0, np.int8), f, f, f, np.empty(0, np.int64), np.empty(0, bool), f
            )
        return ApiResult(
            **{k: np.concatenate([getattr(p, k) for p in parts]) for k in _RESULT_COLUMNS}
        )


_RESULT_COLUMNS = ("status", "ttft_s", "e2e_s", "tpot_s", "attempts", "provisioned", "wait_s")


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
    if arr.ndim != 1 or inp.shape != arr.shape or out.shape != arr.shape:
        raise ValueError("arrival_s, input_tokens and output_tokens must be 1-D of one length")
    # in arrival order (stable: ties keep the order given), results given back in the order
    # given
    order = np.argsort(arr, kind="stable")
    stream = ApiStream(spec, rng)
    parts = [stream.feed(arr[order], inp[order], out[order]), stream.close()]
    ids = np.concatenate([i for i, _ in parts])
    res = ApiResult.concat([r for _, r in parts])
    back = np.empty(arr.size, dtype=np.int64)
    back[order[ids]] = np.arange(arr.size)
    return res.take(back)


class _Normals:
    """Standard normals from ``rng`` drawn in fixed blocks: the ``i``-th value handed out is
    the same however the requests are batched."""

    BLOCK = 65_536

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf = np.empty(0)
        self._pos = 0

    def take(self, n: int) -> NDArray[np.float64]:
        parts = []
        while n > 0:
            if self._pos == self._buf.size:
                self._buf = self._rng.standard_normal(self.BLOCK)
                self._pos = 0
            m = min(n, self._buf.size - self._pos)
            parts.append(self._buf[self._pos : self._pos + m])
            self._pos += m
            n -= m
        return np.concatenate(parts) if parts else np.empty(0)


class ApiStream:
    """One provider's hosted API fed its requests in arrival order, a batch at a time.

    :meth:`feed` takes the next requests (arrival times never below those fed before) and
    gives back the outcome of every request settled by then: accepted or failed calls,
    identified by their position in the whole sequence fed (``0, 1, …``). A request waiting
    to retry after a 429 is held until its retry time is known to come before every later
    arrival; :meth:`close` settles the rest. Memory follows the requests waiting to retry,
    not those fed. The outcome of every request is the same however the sequence is cut
    into batches (:func:`simulate_api` is the one-batch case): the latency normals are drawn
    in fixed blocks from their own generators, and the jitter draws come in the order the
    calls are handled, which batching does not change.
    """

    def __init__(self, spec: ApiSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self._mu_t, self._sig_t = lognormal_params(spec.latency.ttft_s)
        self._mu_r, self._sig_r = lognormal_params(spec.latency.output_tokens_per_s)
        ttft_rng, rate_rng, self._jitter = rng.spawn(3)
        self._z_ttft = _Normals(ttft_rng)
        self._z_rate = _Normals(rate_rng)
        self._fed = 0
        self._last = -math.inf
        # provisioned bucket: level, time of the last admission (NaN: none yet)
        self._prov = (
            np.array([float(spec.provisioned.tokens_per_s), math.nan])
            if (spec.provisioned is not None)
            else None
        )
        rl = spec.rate_limits
        rpm, tpm = rl.requests_per_min, rl.tokens_per_min
        self._limited = rpm is not None or tpm is not None
        self._limits = (
            math.inf if rpm is None else max(1.0, float(rpm)),
            0.0 if rpm is None else rpm / 60.0,
            math.inf if tpm is None else float(tpm),
            0.0 if tpm is None else tpm / 60.0,
        )
        # the token buckets: requests, tokens, time of the last call (NaN: none yet), and
        # the sequence number of the next retry scheduled
        self._rl = np.array([self._limits[0], self._limits[2], math.nan, 0.0])
        # requests waiting to retry: their columns, and the heap of their retries (time,
        # order scheduled, request, retries so far) over those rows
        self._wait = _Waiting.empty()

    def feed(
        self, arrival_s: ArrayLike, input_tokens: ArrayLike, output_tokens: ArrayLike
    ) -> tuple[NDArray[np.int64], ApiResult]:
        """Take the next requests (sorted by arrival, none before those fed already) and
        return ``(ids, outcomes)`` of the requests settled by now."""
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
        if n and (arr[0] < self._last or np.any(arr[1:] < arr[:-1])):
            raise ValueError("requests must be fed in arrival order")
        ids = np.arange(self._fed, self._fed + n, dtype=np.int64)
        self._fed += n
        if n:
            self._last = float(arr[-1])
        # latency draws first, one normal per request for each quantity, whatever the limits
        new = _Waiting(
            ids=ids,
            arr=arr,
            cost=(inp + out).astype(np.float64),
            out=out,
            z_ttft=self._z_ttft.take(n),
            z_rate=self._z_rate.take(n),
        )
        start = arr.copy()
        prov = np.zeros(n, dtype=np.bool_)
        if self._prov is not None and n:
            p = self.spec.provisioned
            assert p is not None
            prov, start = _provisioned(
                arr, new.cost, float(p.tokens_per_s), p.overflow == "queue", self._prov
            )
        settled = [
            _Outcome(new.take(prov), start[prov], np.ones(int(prov.sum()), np.int64), None, True)
        ]
        payg = ~prov
        if not self._limited:
            settled.append(
                _Outcome(new.take(payg), start[payg], np.ones(int(payg.sum()), np.int64), None)
            )
        else:
            settled.append(self._rate_limited(new.take(payg), until=self._last))
        return self._results(settled)

    def close(self) -> tuple[NDArray[np.int64], ApiResult]:
        """Settle every request still waiting to retry (no more requests come)."""
        if not self._limited:
            return self._results([])
        return self._results([self._rate_limited(_Waiting.empty(), until=math.inf)])

    @property
    def waiting(self) -> int:
        """Requests fed and not settled yet (waiting to retry after a 429)."""
        return len(self._wait)

    def _rate_limited(self, new: _Waiting, *, until: float) -> _Outcome:
        w = self._wait
        rows = _Waiting.concat(w, new)
        m = len(rows)
        start = np.full(m, np.nan)
        attempts = np.ones(m, dtype=np.int64)
        failed = np.zeros(m, dtype=np.bool_)
        done = np.zeros(m, dtype=np.bool_)
        heap = np.empty((m, 4))
        size = len(w.heap)
        heap[:size] = w.heap
        rl = self.spec.rate_limits
        size = _rate_limited(
            rows.arr,
            rows.cost,
            len(w),
            until,
            heap,
            size,
            self._rl,
            *self._limits,
            int(rl.max_retries),
            float(rl.backoff_initial_s),
            float(rl.backoff_max_s),
            bool(rl.jitter),
            self._jitter,
            start,
            attempts,
            failed,
            done,
        )
        # the rows still waiting, their heap entries renumbered
        keep = ~done
        renumber = np.cumsum(keep) - 1
        heap = heap[:size].copy()
        heap[:, 2] = renumber[heap[:, 2].astype(np.int64)]
        self._wait = rows.take(keep)
        self._wait.heap = heap
        return _Outcome(rows.take(done), start[done], attempts[done], failed[done])

    def _results(self, parts: list[_Outcome]) -> tuple[NDArray[np.int64], ApiResult]:
        if not parts:
            return np.empty(0, dtype=np.int64), ApiResult.concat([])
        ids = np.concatenate([o.rows.ids for o in parts])
        rows = _Waiting.concat(*[o.rows for o in parts])
        start = np.concatenate([o.start for o in parts])
        attempts = np.concatenate([o.attempts for o in parts])
        failed = np.concatenate(
            [np.zeros(len(o.rows), bool) if o.failed is None else o.failed for o in parts]
        )
        prov = np.concatenate([np.full(len(o.rows), o.provisioned) for o in parts])
        first = np.exp(self._mu_t + self._sig_t * rows.z_ttft)
        rate = np.exp(self._mu_r + self._sig_r * rows.z_rate)
        ok = ~failed
        ttft = np.where(ok, start - rows.arr + first, np.nan)
        e2e = np.where(ok, ttft + (rows.out - 1) / rate, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            tpot = np.where(ok & (rows.out > 1), (e2e - ttft) / (rows.out - 1), np.nan)
        res = ApiResult(
            status=np.where(failed, FAILED, COMPLETED).astype(np.int8),
            ttft_s=ttft,
            e2e_s=e2e,
            tpot_s=tpot,
            attempts=attempts,
            provisioned=prov,
            wait_s=np.where(ok, start - rows.arr, np.nan),
        )
        return ids, res


@dataclass
class _Waiting:
    """Requests of an :class:`ApiStream` by row: id, arrival, tokens, latency normals."""

    ids: NDArray[np.int64]
    arr: NDArray[np.float64]
    cost: NDArray[np.float64]
    out: NDArray[np.int64]
    z_ttft: NDArray[np.float64]
    z_rate: NDArray[np.float64]
    heap: NDArray[np.float64] = field(default_factory=lambda: np.empty((0, 4)))

    def __len__(self) -> int:
        return int(self.ids.size)

    @classmethod
    def empty(cls) -> _Waiting:
        f, i = np.empty(0), np.empty(0, dtype=np.int64)
        return cls(i, f, f, i, f, f)

    def take(self, sel: NDArray[np.bool_]) -> _Waiting:
        return _Waiting(
            self.ids[sel],
            self.arr[sel],
            self.cost[sel],
            self.out[sel],
            self.z_ttft[sel],
            self.z_rate[sel],
        )

    @staticmethod
    def concat(*parts: _Waiting) -> _Waiting:
        return _Waiting(*(np.concatenate([getattr(p, k) for p in parts]) for k in _WAITING_COLUMNS))


_WAITING_COLUMNS = ("ids", "arr", "cost", "out", "z_ttft", "z_rate")


@dataclass
class _Outcome:
    rows: _Waiting
    start: NDArray[np.float64]
    attempts: NDArray[np.int64]
    failed: NDArray[np.bool_] | None
    provisioned: bool = False


@numba.njit(cache=True)
def _provisioned(
    arr: NDArray[np.float64],
    cost: NDArray[np.float64],
    rate: float,
    queue: bool,
    state: NDArray[np.float64],
) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Which requests go under the cap, and when they start (arrival for the others);
    ``state`` holds the bucket's level and the last admission time, carried over batches."""
    cap = rate  # one second of tokens
    prov = np.zeros(arr.size, dtype=np.bool_)
    start = arr.copy()
    level, last = state[0], state[1]
    if np.isnan(last):
        last = arr[0]  # full at the first arrival
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
    state[0], state[1] = level, last
    return prov, start


@numba.njit(cache=True, inline="always")
def _before(heap: NDArray[np.float64], a: int, b: int) -> bool:
    # retries by time, then in the order they were scheduled
    return heap[a, 0] < heap[b, 0] or (heap[a, 0] == heap[b, 0] and heap[a, 1] < heap[b, 1])


@numba.njit(cache=True)
def _swap(heap: NDArray[np.float64], a: int, b: int) -> None:
    for c in range(heap.shape[1]):
        heap[a, c], heap[b, c] = heap[b, c], heap[a, c]


@numba.njit(cache=True)
def _heap_push(heap: NDArray[np.float64], size: int, row: NDArray[np.float64]) -> int:
    i = size
    heap[i] = row
    while i > 0:
        parent = (i - 1) >> 1
        if not _before(heap, i, parent):
            break
        _swap(heap, i, parent)
        i = parent
    return size + 1


@numba.njit(cache=True)
def _heap_pop(heap: NDArray[np.float64], size: int) -> int:
    # drop the top (read it first); returns the new size
    size -= 1
    heap[0] = heap[size]
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(heap, child + 1, child):
            child += 1
        if not _before(heap, child, i):
            break
        _swap(heap, i, child)
        i = child
    return size


@numba.njit(cache=True)
def _rate_limited(
    arr: NDArray[np.float64],
    cost: NDArray[np.float64],
    first_new: int,
    until: float,
    heap: NDArray[np.float64],
    size: int,
    state: NDArray[np.float64],
    r_cap: float,
    r_rate: float,
    t_cap: float,
    t_rate: float,
    max_retries: int,
    b0: float,
    bmax: float,
    jitter: bool,
    rng: np.random.Generator,
    start: NDArray[np.float64],
    attempts: NDArray[np.int64],
    failed: NDArray[np.bool_],
    done: NDArray[np.bool_],
) -> int:
    """Token-bucket admission with retries: accepted-call times, attempts and failures.

    Rows ``[0, first_new)`` wait to retry (their entries are in ``heap``: time, order
    scheduled, row, retries so far); rows from ``first_new`` arrive, sorted. Calls are
    handled in time order, arrivals merged with the retries (a retry at an arrival's time
    goes first), and retries are handled up to ``until`` (none later can come before a
    future arrival). ``r_cap``/``t_cap`` are the bucket sizes (``inf`` for no limit) and
    ``r_rate``/``t_rate`` their refill rates per second; ``state`` carries the buckets'
    levels, the last call's time and the retry counter over calls. The buckets are refilled
    lazily when a call looks. Returns the heap's new size.
    """
    m = arr.size
    r_need = 1.0 - _REL_TOL
    r_lvl, t_lvl, last, seq = state[0], state[1], state[2], state[3]
    entry = np.empty(4)
    ai = first_new
    while True:
        if size > 0 and (heap[0, 0] <= arr[ai] if ai < m else heap[0, 0] <= until):
            t, i, k = heap[0, 0], int(heap[0, 2]), int(heap[0, 3])
            size = _heap_pop(heap, size)
        elif ai < m:
            t, i, k = arr[ai], ai, 0
            ai += 1
            if cost[i] > t_cap:  # can never fit: fails on its first 429
                failed[i] = True
                done[i] = True
                continue
        else:
            break
        if np.isnan(last):
            last = t  # full at the first call
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
            done[i] = True
        elif k >= max_retries:
            failed[i] = True
            attempts[i] = k + 1
            done[i] = True
        else:
            delay = min(bmax, b0 * 2.0 ** min(k, 1023))  # 2.0**k overflows past 1023
            if jitter:
                delay *= rng.random()
            entry[0], entry[1], entry[2], entry[3] = t + delay, seq, i, k + 1
            seq += 1.0
            size = _heap_push(heap, size, entry)
    state[0], state[1], state[2], state[3] = r_lvl, t_lvl, last, seq
    return size
