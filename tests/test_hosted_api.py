"""The hosted API: exact small cases (rate limits, retries, provisioned throughput), latency
samples against the lognormal theory, and invariants of the token buckets (hypothesis)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from theory import assert_mean, assert_proportion, assert_within_se

from sim.economics.spec import (
    ApiLatencySpec,
    ApiSpec,
    LatencyDist,
    ProvisionedSpec,
    RateLimitSpec,
)
from sim.hosted_api import (
    COMPLETED,
    FAILED,
    ApiResult,
    ApiStream,
    lognormal_params,
    simulate_api,
)

PRICES: dict[str, Any] = {"usd_per_1m_input": 0.15, "usd_per_1m_output": 0.6}
#: A degenerate latency: first token 0.5 s after the call, then 10 tokens/s.
FIXED = ApiLatencySpec(
    ttft_s=LatencyDist(median=0.5, p90=0.5),
    output_tokens_per_s=LatencyDist(median=10.0, p90=10.0),
)


def api(**kw: Any) -> ApiSpec:
    return ApiSpec(**PRICES, **kw)


def limits(**kw: Any) -> RateLimitSpec:
    return RateLimitSpec(**{"jitter": False, **kw})


def run(arrival: Any, inp: Any, out: Any, spec: ApiSpec, seed: int = 0) -> ApiResult:
    return simulate_api(
        np.asarray(arrival, dtype=float),
        np.asarray(inp),
        np.asarray(out),
        spec,
        rng=np.random.default_rng(seed),
    )


def assert_started(res: ApiResult, arrival: Any, out: Any, wait: list[float]) -> None:
    """With the FIXED latency, each completed call's TTFT and E2E follow from its wait."""
    w = np.asarray(wait)
    np.testing.assert_allclose(res.wait_s, w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.ttft_s, w + 0.5, rtol=1e-12)
    np.testing.assert_allclose(res.e2e_s, w + 0.5 + (np.asarray(out) - 1) / 10.0, rtol=1e-12)


# --- latency without limits ------------------------------------------------------------


def test_no_limits_latency_matches_lognormal_theory() -> None:
    n = 200_000
    gen = np.random.default_rng(11)
    arrival = np.sort(gen.uniform(0.0, 3600.0, n))
    out = gen.integers(1, 400, n)
    lat = ApiLatencySpec(
        ttft_s=LatencyDist(median=0.4, p90=1.5),
        output_tokens_per_s=LatencyDist(median=70.0, p90=130.0),
    )
    res = run(arrival, gen.integers(0, 2000, n), out, api(latency=lat), seed=12)

    assert np.all(res.status == COMPLETED) and np.all(res.attempts == 1)
    assert not res.provisioned.any() and np.all(res.wait_s == 0.0)
    assert res.n_rate_limited() == 0 and res.n_429() == 0
    # TTFT quantiles: the share below the stated median / p90 (binomial SE)
    assert_proportion(int((res.ttft_s <= 0.4).sum()), n, 0.5, what="share TTFT <= median")
    assert_proportion(int((res.ttft_s <= 1.5).sum()), n, 0.9, what="share TTFT <= p90")
    # decode time (out − 1)/R given the lengths: E[1/R] = exp(−μ + σ²/2) for the lognormal
    z90 = float(stats.norm.ppf(0.9))
    mu, sigma = math.log(70.0), math.log(130.0 / 70.0) / z90
    assert lognormal_params(lat.output_tokens_per_s) == pytest.approx((mu, sigma), rel=1e-12)
    m1 = math.exp(-mu + sigma**2 / 2)
    var1 = math.exp(-2 * mu + sigma**2) * (math.exp(sigma**2) - 1.0)
    k = (out - 1).astype(float)
    decode = res.e2e_s - res.ttft_s
    assert_within_se(
        float(decode.sum()),
        float(k.sum()) * m1,
        math.sqrt(float((k**2).sum()) * var1),
        what="total decode time",
    )
    # TPOT is 1/R, NaN for one-token outputs
    many = out > 1
    assert np.all(np.isnan(res.tpot_s[~many]))
    assert_mean(res.tpot_s[many], m1, math.sqrt(var1))


def test_latency_draws_do_not_depend_on_limits() -> None:
    """Common random numbers: the same rng gives the same per-request latencies."""
    n = 2000
    arrival = np.sort(np.random.default_rng(1).uniform(0, 60, n))
    inp, out = np.full(n, 200), np.full(n, 100)
    free = run(arrival, inp, out, api(), seed=5)
    tight = run(arrival, inp, out, api(rate_limits=RateLimitSpec(requests_per_min=600)), seed=5)
    assert tight.n_rate_limited() > 0
    ok = tight.completed
    np.testing.assert_allclose((tight.ttft_s - tight.wait_s)[ok], free.ttft_s[ok], rtol=1e-12)
    np.testing.assert_allclose((tight.e2e_s - tight.ttft_s)[ok], (free.e2e_s - free.ttft_s)[ok])


def test_same_rng_same_result() -> None:
    n = 3000
    arrival = np.sort(np.random.default_rng(2).uniform(0, 30, n))
    spec = api(rate_limits=RateLimitSpec(requests_per_min=1200, tokens_per_min=4e5))
    a = run(arrival, np.full(n, 300), np.full(n, 50), spec, seed=9)
    b = run(arrival, np.full(n, 300), np.full(n, 50), spec, seed=9)
    for field in ("status", "ttft_s", "e2e_s", "tpot_s", "attempts", "provisioned", "wait_s"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


# --- rate limits: exact cases ----------------------------------------------------------


def test_request_bucket_by_hand() -> None:
    """60/min: 62 calls at t=0 (jitter off, backoff 1 s, 2 s, …).

    The full bucket (60) takes the first 60. Both others get 429 and retry at 1.0, the 61st
    first (retries run in the order scheduled): one request has refilled, it is accepted;
    the 62nd gets 429 again and retries 2 s later, at 3.0, when the bucket holds 2.
    """
    n = 62
    out = np.full(n, 21)
    res = run(
        np.zeros(n),
        np.full(n, 100),
        out,
        api(latency=FIXED, rate_limits=limits(requests_per_min=60, backoff_initial_s=1.0)),
    )
    assert res.attempts.tolist() == [1] * 60 + [2, 3]
    assert_started(res, np.zeros(n), out, [0.0] * 60 + [1.0, 3.0])
    np.testing.assert_allclose(res.tpot_s, 0.1)
    assert res.n_rate_limited() == 2 and res.n_429() == 3 and res.n_failed() == 0


def test_retry_goes_before_an_arrival_at_the_same_time() -> None:
    """60/min, 61 calls at t=0 and one at t=1.0: the 61st retries at 1.0 and, scheduled
    first, takes the one refilled request; the newcomer gets 429 and retries at 2.0."""
    arrival = np.r_[np.zeros(61), 1.0]
    out = np.full(62, 3)
    spec = api(latency=FIXED, rate_limits=limits(requests_per_min=60))
    res = run(arrival, np.full(62, 10), out, spec)
    assert res.attempts.tolist() == [1] * 60 + [2, 2]
    assert_started(res, arrival, out, [0.0] * 60 + [1.0, 1.0])


@pytest.mark.parametrize(
    ("max_retries", "status", "attempts", "wait"),
    [
        # retries at 1, 3, 7, 15, 31 s; the bucket holds 31/60 < 1 request: both give up
        (5, [0, 1, 1], [1, 6, 6], [0.0, math.nan, math.nan]),
        # one more retry, at 63 s: 63/60 ≥ 1, the second is accepted, the third gives up
        (6, [0, 0, 1], [1, 7, 7], [0.0, 63.0, math.nan]),
        # the third backs off min(60, 64) = 60 s more: at 123 s the bucket holds 1.05
        (7, [0, 0, 0], [1, 7, 8], [0.0, 63.0, 123.0]),
    ],
)
def test_one_per_minute_backoff_by_hand(
    max_retries: int, status: list[int], attempts: list[int], wait: list[float]
) -> None:
    out = [5, 5, 5]
    spec = api(latency=FIXED, rate_limits=limits(requests_per_min=1, max_retries=max_retries))
    res = run([0.0, 0.0, 0.0], [10, 10, 10], out, spec)
    assert res.status.tolist() == status
    assert res.attempts.tolist() == attempts
    assert_started(res, [0.0] * 3, out, wait)
    assert res.n_failed() == status.count(FAILED)
    assert res.billed_per_token.tolist() == [s == COMPLETED for s in status]


@pytest.mark.parametrize(("backoff_s", "status"), [(100.0, FAILED), (120.0, COMPLETED)])
def test_under_one_request_per_minute(backoff_s: float, status: int) -> None:
    """0.5/min: the bucket still holds one request (else nothing would pass); after the
    first call it takes 120 s to refill one."""
    spec = api(
        latency=FIXED,
        rate_limits=limits(
            requests_per_min=0.5, max_retries=1, backoff_initial_s=backoff_s, backoff_max_s=1e3
        ),
    )
    res = run([0.0, 0.0], [10, 10], [5, 5], spec)
    assert res.status.tolist() == [COMPLETED, status] and res.attempts.tolist() == [1, 2]
    assert res.wait_s[1] == 120.0 or status == FAILED


@pytest.mark.parametrize("jitter", [False, True])
def test_gives_up_after_max_retries(jitter: bool) -> None:
    """max_retries=2 against an exhausted bucket (1/min, drained at t=0): the retries come
    within 1 + 2 = 3 s, long before the 60 s refill, so the call fails after 3 attempts."""
    spec = api(rate_limits=limits(requests_per_min=1, max_retries=2, jitter=jitter))
    res = run([0.0, 0.0], [10, 10], [5, 5], spec)
    assert res.status.tolist() == [COMPLETED, FAILED]
    assert res.attempts.tolist() == [1, 3]
    for field in (res.ttft_s, res.e2e_s, res.tpot_s, res.wait_s):
        assert math.isnan(field[1]) and not math.isnan(field[0])
    assert res.n_rate_limited() == 1 and res.n_429() == 3


def test_token_bucket_by_hand() -> None:
    """1000 tokens/min: two 600-token calls at t=0. The second waits for 600 tokens: 429 at
    0, 1, 3, 7 s (400 + t·1000/60 < 600), accepted at 15 s (650)."""
    out = [100, 100]
    res = run(
        [0.0, 0.0], [500, 500], out, api(latency=FIXED, rate_limits=limits(tokens_per_min=1000))
    )
    assert res.attempts.tolist() == [1, 5]
    assert_started(res, [0.0, 0.0], out, [0.0, 15.0])


def test_call_larger_than_token_limit_fails_at_once() -> None:
    """1100 tokens against a 1000-token bucket fail on the first 429, debiting nothing; a
    call of exactly the bucket size fits."""
    spec = api(latency=FIXED, rate_limits=limits(tokens_per_min=1000, max_retries=5))
    res = run([0.0, 0.0], [1000, 900], [100, 100], spec)
    assert res.status.tolist() == [FAILED, COMPLETED]
    assert res.attempts.tolist() == [1, 1]
    assert res.wait_s[1] == 0.0 and math.isnan(res.ttft_s[0])
    assert res.n_rate_limited() == 1 and res.n_429() == 1


def test_full_jitter_spreads_the_first_retry_uniformly() -> None:
    """Groups of 61 calls, 1000 s apart, against 60/min with a 100 s first backoff: the 61st
    of a group retries after 100·U; it is accepted if 100·U ≥ 1 s (one request refilled),
    so P(2 attempts) = 0.99 and then its wait is uniform on [1, 100)."""
    groups = 5000
    arrival = np.repeat(np.arange(groups) * 1000.0, 61)
    n = arrival.size
    spec = api(
        rate_limits=RateLimitSpec(
            requests_per_min=60, backoff_initial_s=100.0, backoff_max_s=1000.0, jitter=True
        )
    )
    res = run(arrival, np.full(n, 10), np.full(n, 10), spec, seed=3)
    last = res.attempts[60::61]
    assert np.all(res.attempts.reshape(groups, 61)[:, :60] == 1)
    assert_proportion(int((last == 2).sum()), groups, 0.99, what="accepted on first retry")
    wait = res.wait_s[60::61][last == 2]
    assert wait.min() >= 1.0 and wait.max() < 100.0
    assert_mean(wait, 50.5, 99.0 / math.sqrt(12.0))


# --- provisioned throughput ------------------------------------------------------------

BURST = ([0.0, 0.0, 0.0, 0.0, 1.0], [300] * 5, [100] * 5)  # five calls of 400 tokens


def test_provisioned_payg_overflow_by_hand() -> None:
    """1000 tokens/s, bucket of 1000: at t=0 two calls fit (600 then 200 left), two go
    pay-as-you-go at once; by t=1 the bucket is full again."""
    spec = api(latency=FIXED, provisioned=ProvisionedSpec(usd_per_hour=10, tokens_per_s=1000))
    res = run(*BURST, spec)
    assert res.provisioned.tolist() == [True, True, False, False, True]
    assert res.billed_per_token.tolist() == [False, False, True, True, False]
    assert_started(res, BURST[0], BURST[2], [0.0] * 5)
    assert res.n_provisioned() == 3


def test_provisioned_queue_overflow_by_hand() -> None:
    """Same burst, overflow queue: the third waits (400 − 200)/1000 = 0.2 s, the fourth
    0.6 s (FIFO, from an empty bucket), the fifth finds 400 tokens at t=1."""
    spec = api(
        latency=FIXED,
        provisioned=ProvisionedSpec(usd_per_hour=10, tokens_per_s=1000, overflow="queue"),
    )
    res = run(*BURST, spec)
    assert res.provisioned.all() and np.all(res.attempts == 1)
    assert_started(res, BURST[0], BURST[2], [0.0, 0.0, 0.2, 0.6, 0.0])


def test_provisioned_calls_skip_the_rate_limits() -> None:
    """With 1 request/min, the two calls under the cap leave the request bucket alone: the
    first overflow call is accepted, the second is rate limited."""
    spec = api(
        latency=FIXED,
        provisioned=ProvisionedSpec(usd_per_hour=10, tokens_per_s=1000),
        rate_limits=limits(requests_per_min=1, max_retries=1),
    )
    res = run(*BURST, spec)
    assert res.provisioned.tolist() == [True, True, False, False, True]
    assert res.status.tolist() == [COMPLETED, COMPLETED, COMPLETED, FAILED, COMPLETED]
    assert res.attempts.tolist() == [1, 1, 1, 2, 1]


def test_provisioned_call_larger_than_the_bucket() -> None:
    """2500 tokens against a 1000-token bucket: pay-as-you-go under payg; under queue it
    takes the full bucket, overdraws it to −1500 and the next call waits 1.6 s."""
    arrival, inp, out = [0.0, 0.0], [2400, 50], [100, 50]
    payg = run(
        arrival, inp, out, api(provisioned=ProvisionedSpec(usd_per_hour=1, tokens_per_s=1000))
    )
    assert payg.provisioned.tolist() == [False, True]
    queue = run(
        arrival,
        inp,
        out,
        api(
            latency=FIXED,
            provisioned=ProvisionedSpec(usd_per_hour=1, tokens_per_s=1000, overflow="queue"),
        ),
    )
    assert_started(queue, arrival, out, [0.0, 1.6])


# --- inputs ----------------------------------------------------------------------------


def test_docstring_examples() -> None:
    import doctest

    import sim.hosted_api

    assert doctest.testmod(sim.hosted_api, raise_on_error=True).attempted > 0


def test_empty_input() -> None:
    res = run([], [], [], api(rate_limits=RateLimitSpec(requests_per_min=1)))
    assert len(res) == 0 and res.n_429() == 0


@pytest.mark.parametrize(
    ("arrival", "inp", "out"),
    [([np.nan, 0.0], [1, 1], [1, 1]), ([0.0, 1.0], [1, 1], [1, 0]), ([0.0], [1, 1], [1, 1])],
)
def test_rejects_bad_input(arrival: list[float], inp: list[int], out: list[int]) -> None:
    with pytest.raises(ValueError):
        run(arrival, inp, out, api())


def test_unsorted_input_is_admitted_in_arrival_order() -> None:
    """Admission depends on arrival order only; results come back in the order given."""
    n = 500
    gen = np.random.default_rng(4)
    arrival = np.sort(gen.uniform(0, 20, n))
    inp, out = gen.integers(0, 800, n), gen.integers(1, 200, n)
    spec = api(rate_limits=RateLimitSpec(requests_per_min=120, tokens_per_min=1e5))
    ref = run(arrival, inp, out, spec, seed=8)
    perm = gen.permutation(n)
    res = run(arrival[perm], inp[perm], out[perm], spec, seed=8)
    assert ref.n_rate_limited() > 0 and ref.n_completed() > 0
    np.testing.assert_array_equal(res.attempts, ref.attempts[perm])
    np.testing.assert_array_equal(res.wait_s, ref.wait_s[perm])


# --- invariants (hypothesis) -----------------------------------------------------------


def _max_in_window(t: np.ndarray, w: np.ndarray, window_s: float) -> float:
    """Largest total weight ``w`` of events at sorted times ``t`` in any ``[a, a + window]``
    (a window starting at an event is the worst)."""
    if t.size == 0:
        return 0.0
    csum = np.concatenate([[0.0], np.cumsum(w)])
    hi = np.searchsorted(t, t + window_s, side="right")
    return float((csum[hi] - csum[np.arange(t.size)]).max())


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ApiSpec, np.ndarray, np.ndarray, np.ndarray, int]:
    n = draw(st.integers(0, 60))
    gaps = draw(st.lists(st.sampled_from([0.0, 0.01, 0.5, 1.0, 3.0, 20.0]), min_size=n, max_size=n))
    arrival = np.cumsum(np.asarray(gaps, dtype=float))
    inp = np.asarray(draw(st.lists(st.integers(0, 600), min_size=n, max_size=n)), dtype=int)
    out = np.asarray(draw(st.lists(st.integers(1, 300), min_size=n, max_size=n)), dtype=int)
    rl = RateLimitSpec(
        requests_per_min=draw(st.none() | st.floats(0.5, 40.0)),
        tokens_per_min=draw(st.none() | st.floats(200.0, 6000.0)),
        max_retries=draw(st.integers(0, 6)),
        backoff_initial_s=draw(st.floats(0.05, 5.0)),
        backoff_max_s=draw(st.floats(0.5, 40.0)),
        jitter=draw(st.booleans()),
    )
    prov = draw(
        st.none()
        | st.builds(
            ProvisionedSpec,
            usd_per_hour=st.just(1.0),
            tokens_per_s=st.floats(20.0, 1000.0),
            overflow=st.sampled_from(["payg", "queue"]),
        )
    )
    spec = api(rate_limits=rl, provisioned=prov)
    return spec, arrival, inp, out, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_invariants(case: tuple[ApiSpec, np.ndarray, np.ndarray, np.ndarray, int]) -> None:
    spec, arrival, inp, out, seed = case
    res = run(arrival, inp, out, spec, seed=seed)
    rl, prov = spec.rate_limits, spec.provisioned
    ok = res.completed
    assert np.all(res.attempts >= 1) and np.all(res.attempts <= rl.max_retries + 1)
    assert np.all(res.wait_s[ok] >= 0) and np.all(res.ttft_s[ok] >= res.wait_s[ok])
    assert np.all(res.e2e_s[ok] >= res.ttft_s[ok])
    for field in (res.ttft_s, res.e2e_s, res.tpot_s, res.wait_s):
        assert np.all(np.isnan(field[~ok]))
    # provisioned calls are never rate limited; failures need a limit
    assert np.all(res.attempts[res.provisioned] == 1) and np.all(ok[res.provisioned])
    if rl.requests_per_min is None and rl.tokens_per_min is None:
        assert ok.all() and np.all(res.attempts == 1)
    if rl.tokens_per_min is not None:
        assert not np.any(ok & ~res.provisioned & (inp + out > rl.tokens_per_min))

    # token buckets: what is accepted in any window of W seconds is at most the bucket
    # size plus the refill over W (capacity + rate·W)
    cost = (inp + out).astype(float)
    payg = ok & ~res.provisioned
    start = (arrival + res.wait_s)[payg]
    order = np.argsort(start, kind="stable")
    t, c = start[order], cost[payg][order]
    for window in (0.0, 1.0, 10.0, 60.0):
        if rl.requests_per_min is not None:
            rpm = rl.requests_per_min  # the bucket holds at least one request
            bound = max(1.0, rpm) + rpm * window / 60.0
            assert _max_in_window(t, np.ones_like(t), window) <= bound + 1e-6
        if rl.tokens_per_min is not None:
            bound = rl.tokens_per_min * (1.0 + window / 60.0)
            assert _max_in_window(t, c, window) <= bound * (1 + 1e-6)
        if prov is not None:
            # a queued call larger than the bucket may overdraw it by its excess
            p = prov.tokens_per_s
            ps = (arrival + res.wait_s)[res.provisioned]
            pc = cost[res.provisioned]
            slack = max(0.0, float(pc.max()) - p) if pc.size else 0.0
            bound = p * (1.0 + window) + slack
            assert _max_in_window(ps, pc, window) <= bound * (1 + 1e-6)
    if prov is not None and prov.overflow == "queue":
        assert res.provisioned.all()
        assert np.all(np.diff(arrival + res.wait_s) >= -1e-9)  # FIFO


# --- fed in batches ----------------------------------------------------------------------
STREAM_SPECS = {
    "rate limits with jitter": api(
        rate_limits=RateLimitSpec(requests_per_min=30, tokens_per_min=40_000, max_retries=4)
    ),
    "provisioned, overflow pay-as-you-go and limited": api(
        provisioned=ProvisionedSpec(tokens_per_s=300.0, usd_per_hour=1.0),
        rate_limits=RateLimitSpec(requests_per_min=20, max_retries=3),
    ),
    "provisioned, queued": api(
        provisioned=ProvisionedSpec(tokens_per_s=300.0, usd_per_hour=1.0, overflow="queue")
    ),
}


@pytest.mark.parametrize("name", list(STREAM_SPECS))
@pytest.mark.parametrize("cuts", [[1], [7, 8, 9], [100, 2000, 2001], list(range(0, 3000, 97))])
def test_an_api_fed_in_batches_gives_every_request_its_one_batch_outcome(
    name: str, cuts: list[int]
) -> None:
    # Bursty arrivals against tight limits: many calls wait to retry across the batch
    # boundaries, some at the very time of the next arrival (integer seconds). Each request's
    # outcome is the same whatever the batches, and at most the requests waiting to retry
    # are held between batches.
    spec = STREAM_SPECS[name]
    rng = np.random.default_rng(11)
    n = 3000
    arrival = np.sort(np.floor(rng.exponential(0.5, n).cumsum()))
    inp = rng.integers(10, 2000, n)
    out = rng.integers(1, 500, n)
    whole = run(arrival, inp, out, spec, seed=5)
    assert whole.n_rate_limited() > 50 or name == "provisioned, queued"
    stream = ApiStream(spec, np.random.default_rng(5))
    ids, parts = [], []
    for a, b in zip([0, *cuts], [*cuts, n], strict=True):
        i, res = stream.feed(arrival[a:b], inp[a:b], out[a:b])
        ids.append(i)
        parts.append(res)
        assert stream.waiting == b - sum(len(x) for x in ids)
    i, res = stream.close()
    ids.append(i)
    parts.append(res)
    assert stream.waiting == 0
    got = ApiResult.concat(parts).take(np.argsort(np.concatenate(ids)))
    for col in ("status", "ttft_s", "e2e_s", "tpot_s", "attempts", "provisioned", "wait_s"):
        np.testing.assert_array_equal(getattr(got, col), getattr(whole, col), err_msg=col)


def test_an_api_stream_refuses_requests_out_of_arrival_order() -> None:
    stream = ApiStream(api(), np.random.default_rng(0))
    stream.feed([1.0, 2.0], [10, 10], [5, 5])
    with pytest.raises(ValueError, match="arrival order"):
        stream.feed([1.5], [10], [5])
