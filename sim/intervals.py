"""Confidence intervals and probabilities over independent replications.

Student-t intervals of means (the summary table), bootstrap intervals of quantiles and
ratios, and shares of replications with Wilson intervals. Pure functions of a
replications table (one row per replication, one column per metric).

A metric with a physical range (a fraction in [0, 1], a latency, count or cost that cannot
be negative: :data:`METRIC_RANGES`) gets the Student-t interval of its mean intersected
with that range. The true mean lies in the range, so the intersection covers it whenever
the t-interval does: coverage is exactly the t-interval's, the bounds never leave the
range, and the reported arithmetic mean stays inside. (A t-interval on the log or logit
scale would be an interval of the geometric or logit mean, not of the mean reported, and
with two replications its upper bound reaches ~80 times the mean.)
"""

from __future__ import annotations

import fnmatch
import math
import operator
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

SUMMARY_COLUMNS = (
    "metric", "mean", "ci_low", "ci_high", "std", "p5", "p50", "p95", "n", "note",
)  # fmt: skip

_FRACTION = (0.0, 1.0)
_NON_NEGATIVE = (0.0, math.inf)

#: Physical range of a metric's values, by ``fnmatch`` pattern of its name without a
#: ``[class]`` / ``[route=…]`` suffix; the first match wins. ``None``: a signed quantity
#: (plain t-interval); a metric that matches no pattern also keeps the plain interval.
METRIC_RANGES: tuple[tuple[str, tuple[float, float] | None], ...] = (
    ("param:*", None),  # drawn inputs: their own distributions, not a physical quantity
    ("savings_*", None),  # the API bill minus the option's: either sign
    ("*api_cache_savings_*", None),  # write premiums can outweigh the reads: either sign
    ("*api_cached_input_share", _FRACTION),
    ("slo_attainment*", _FRACTION),
    ("api_only_slo_attainment*", _FRACTION),
    ("gpu_busy_fraction*", _FRACTION),
    ("api_share*", _FRACTION),
    ("*_utilisation", _FRACTION),
    ("kv_occupancy_mean", _FRACTION),
    ("prefix_hit_rate", _FRACTION),
    ("prefill_tokens_saved", _NON_NEGATIVE),
    ("self_host_cheaper", _FRACTION),
    ("*_s", _NON_NEGATIVE),  # latencies, durations, tokens per second
    ("*_rps", _NON_NEGATIVE),
    ("*requests*", _NON_NEGATIVE),  # request counts
    ("*_usd", _NON_NEGATIVE),  # costs (savings are matched above)
    ("*_usd_per_month", _NON_NEGATIVE),
    ("cost_per_*", _NON_NEGATIVE),
    ("fleet_gpu_hours_*", _NON_NEGATIVE),
    ("batch_size_mean", _NON_NEGATIVE),
    ("replicas_*", _NON_NEGATIVE),
    ("preemptions", _NON_NEGATIVE),
    ("scale_ups", _NON_NEGATIVE),
    ("scale_downs", _NON_NEGATIVE),
    ("interruptions", _NON_NEGATIVE),
    ("failures", _NON_NEGATIVE),
    ("tokens_recomputed", _NON_NEGATIVE),
    ("api_retries", _NON_NEGATIVE),
    # a fleet of several pools: each pool's own (named <metric>[pool:<name>])
    ("replicas", _NON_NEGATIVE),
    ("gpus", _NON_NEGATIVE),
    ("tokens_served", _NON_NEGATIVE),
    ("gpu_hours_*", _NON_NEGATIVE),
    ("gpu_usd_per_1m_tokens", _NON_NEGATIVE),
)

#: The ``note`` of a summary row without an interval.
NOTE_IDENTICAL = "identical in every replication"
NOTE_ONE = "one replication: no interval"
NOTE_NONE = "no finite value"
#: Said instead of an interval whose bounds print the same as its mean.
NOTE_NARROW = "95% CI narrower than the last digit shown"


def t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of independent replications.

    Examples
    --------
    >>> m, lo, hi = t_interval(np.array([1.0, 2.0, 3.0]))
    >>> round(m, 3), round(lo, 3), round(hi, 3)
    (2.0, -0.484, 4.484)
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if n == 1:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * x.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion (NaN for no trials).

    Examples
    --------
    >>> lo, hi = wilson_interval(0, 10)
    >>> lo, round(hi, 4)
    (0.0, 0.2775)
    """
    if trials == 0:
        return float("nan"), float("nan")
    ci = stats.binomtest(successes, trials).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def relative_half_width(values: np.ndarray, confidence: float = 0.95) -> float:
    """Half-width of the Student-t interval of the mean divided by ``|mean|``.

    0 when every value is the same (including all zeros); infinite when the mean is 0 but
    the values vary; NaN with fewer than two finite values.

    Examples
    --------
    >>> round(relative_half_width(np.array([9.0, 10.0, 11.0])), 4)
    0.2484
    """
    mean, lo, hi = t_interval(values, confidence)
    if math.isnan(lo):
        return float("nan")
    half = (hi - lo) / 2
    if half == 0:
        return 0.0
    return half / abs(mean) if mean != 0 else float("inf")


def metric_range(metric: str) -> tuple[float, float] | None:
    """The physical range of ``metric``'s values (:data:`METRIC_RANGES`); None if signed
    or not listed.

    Examples
    --------
    >>> metric_range("slo_attainment[chat]"), metric_range("ttft_p99_s")
    ((0.0, 1.0), (0.0, inf))
    >>> metric_range("savings_vs_api_usd") is None, metric_range("unlisted") is None
    (True, True)
    """
    base = metric.partition("[")[0]
    for pattern, bounds in METRIC_RANGES:
        if fnmatch.fnmatchcase(base, pattern):
            return bounds
    return None


def bounded_t_interval(
    values: np.ndarray,
    bounds: tuple[float, float] | None,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """:func:`t_interval` intersected with ``bounds`` (a physical range of the values).

    The true mean lies in the range, so the intersection covers it whenever the
    t-interval does. The range is applied only when every finite value lies in it (data
    outside it are not what the range describes: plain interval); ``None``: plain interval.

    Examples
    --------
    >>> m, lo, hi = bounded_t_interval(np.array([0.97, 0.99, 1.0]), (0.0, 1.0))
    >>> round(m, 3), round(lo, 3), hi
    (0.987, 0.949, 1.0)
    """
    mean, lo, hi = t_interval(values, confidence)
    if bounds is None or math.isnan(lo):
        return mean, lo, hi
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    low, high = bounds
    if np.all((x >= low) & (x <= high)):
        lo, hi = max(lo, low), min(hi, high)
    return mean, lo, hi


def interval_note(values: np.ndarray) -> str:
    """Why the values have no interval: fewer than two finite values, or all identical;
    ``""`` when they have one.

    Examples
    --------
    >>> interval_note(np.array([2.0, 2.0])), interval_note(np.array([2.0, np.nan]))
    ('identical in every replication', 'one replication: no interval')
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return NOTE_NONE
    if len(x) == 1:
        return NOTE_ONE
    return NOTE_IDENTICAL if np.ptp(x) == 0 else ""


def metric_interval(
    metric: str, values: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float, str]:
    """Mean, interval and note of one metric over replications, as :func:`summarize` has
    them: the t-interval within the metric's range (:func:`bounded_t_interval`), NaN
    bounds and a note (:func:`interval_note`) when there is no interval.

    Examples
    --------
    >>> metric_interval("gpu_busy_fraction", np.array([0.95, 0.99]))[2]
    1.0
    >>> metric_interval("ttft_p50_s", np.array([0.25, 0.25, 0.25]))
    (0.25, nan, nan, 'identical in every replication')
    """
    note = interval_note(values)
    mean, lo, hi = bounded_t_interval(values, metric_range(metric), confidence)
    if note:
        return mean, math.nan, math.nan, note
    return mean, lo, hi, note


def summarize(replications: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """One row per metric: mean with its t-interval, std, p5/p50/p95 across replications,
    ``n`` finite values and a ``note``.

    The interval of a metric with a physical range stays inside it (:func:`metric_interval`,
    :data:`METRIC_RANGES`); a metric with fewer than two finite values, or the same value in
    every replication, has NaN bounds and its ``note`` says why (``""`` otherwise). Numeric
    columns only: a drawn parameter that is a name (``param:fleet.gpu``) is skipped.
    """
    rows = []
    for col in replications.columns:
        if col == "replication" or not pd.api.types.is_numeric_dtype(replications[col]):
            continue
        x = replications[col].to_numpy(dtype=float)
        finite = x[~np.isnan(x)]
        mean, lo, hi, note = metric_interval(str(col), finite, confidence)
        if len(finite):
            p5, p50, p95 = np.percentile(finite, [5, 50, 95])
            std = float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")
        else:
            p5 = p50 = p95 = std = float("nan")
        rows.append((col, mean, lo, hi, std, p5, p50, p95, len(finite), note))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


@dataclass(frozen=True)
class Interval:
    """An estimate with its confidence interval (:func:`bootstrap_interval`)."""

    metric: str
    stat: str
    estimate: float
    low: float
    high: float
    confidence: float
    method: str
    n: int


@dataclass(frozen=True)
class Probability:
    """A share of replications with its Wilson interval (:func:`event_probability`)."""

    event: str
    estimate: float
    low: float
    high: float
    successes: int
    trials: int
    confidence: float


def bootstrap_interval(
    replications: pd.DataFrame,
    metric: str,
    stat: str | Callable[[np.ndarray], float] = "median",
    *,
    over: str | None = None,
    confidence: float = 0.95,
    method: str = "BCa",
    n_resamples: int = 9999,
    seed: int = 0,
) -> Interval:
    """Bootstrap confidence interval of a statistic of ``metric`` across replications.

    For what a t-interval does not cover: quantiles across replications (is the
    monthly cost below X in 90 % of worlds?) and ratios of means.

    Parameters
    ----------
    metric
        A column of ``replications``.
    stat
        ``"mean"``, ``"median"``, ``"pNN"`` (the NN-th percentile, e.g. ``"p90"``), or a
        function of a 1-D array.
    over
        Another metric: the statistic is then ``stat(metric) / stat(over)`` with the
        replications resampled in pairs (common random numbers kept), e.g.
        ``bootstrap_interval(reps, "total_cost_usd", "mean", over="api_only_cost_usd")``.
    confidence, method, n_resamples, seed
        Passed to :func:`scipy.stats.bootstrap` (``method``: ``BCa``, ``percentile``,
        ``basic``); ``seed`` seeds its resampling.

    Examples
    --------
    >>> reps = pd.DataFrame({"replication": range(5), "x": [1.0, 2.0, 3.0, 4.0, 50.0]})
    >>> iv = bootstrap_interval(reps, "x", "median")
    >>> iv.estimate, iv.low <= 3.0 <= iv.high
    (3.0, True)
    """
    fn, name = _statistic(stat)
    cols = [metric] if over is None else [metric, over]
    for c in cols:
        if c not in replications:
            raise KeyError(f"no metric {c!r} in the replications")
    data = replications[cols].to_numpy(dtype=float)
    data = data[~np.isnan(data).any(axis=1)]
    n = len(data)

    def statistic(*columns: np.ndarray) -> float:
        value = fn(columns[0])
        return value if over is None else value / fn(columns[1])

    estimate = statistic(*data.T) if n else float("nan")
    low = high = float("nan")
    if n >= 2 and np.ptp(data, axis=0).any():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a degenerate resample gives NaN, kept as such
            res = stats.bootstrap(
                tuple(data.T),
                statistic,
                paired=True,
                vectorized=False,
                confidence_level=confidence,
                n_resamples=n_resamples,
                method=method,
                rng=np.random.default_rng(seed),
            )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
        boot = res.bootstrap_distribution
        if np.allclose(boot, estimate, rtol=1e-12, atol=0):  # every resample agrees
            low = high = estimate
    elif n >= 1:
        low = high = estimate  # every replication agrees
    label = name if over is None else f"{name} ratio over {over}"
    return Interval(metric, label, float(estimate), low, high, confidence, method, n)


def event_probability(
    replications: pd.DataFrame,
    event: str | Callable[[pd.DataFrame], pd.Series],
    *,
    confidence: float = 0.95,
) -> Probability:
    """Share of replications in which ``event`` holds, with its Wilson interval.

    Parameters
    ----------
    event
        A 0/1 metric (``"self_host_cheaper"``: P(self-hosting is cheaper than the
        API)), a comparison ``"METRIC OP NUMBER"`` with ``OP`` one of ``>= > <= < ==``
        (``"slo_attainment >= 0.99"``: P(the SLO target is met)), or a function of
        ``replications`` returning a boolean Series. Replications where the metric
        is NaN are left out of the trials.
    confidence
        Level of the Wilson interval.

    Examples
    --------
    >>> reps = pd.DataFrame({"replication": range(4), "slo_attainment": [1, 0.98, 0.995, 1]})
    >>> p = event_probability(reps, "slo_attainment >= 0.99")
    >>> p.successes, p.trials
    (3, 4)
    """
    reps = replications
    if callable(event):
        label = getattr(event, "__name__", "event")
        mask = pd.Series(event(reps), index=reps.index)
        valid = mask.notna()
        hits = mask[valid].astype(bool)
    else:
        label = event
        m = _COMPARISON.match(event.strip())
        if m:
            metric, op, number = m.group(1).strip(), m.group(2), float(m.group(3))
        elif event.strip() in reps:
            metric, op, number = event.strip(), "==", 1.0
        else:
            raise KeyError(
                f"event {event!r}: expected a 0/1 metric or 'METRIC OP NUMBER', "
                "e.g. 'slo_attainment >= 0.99'"
            )
        if metric not in reps:
            raise KeyError(f"event {event!r}: no metric {metric!r} in the replications")
        values = reps[metric].to_numpy(dtype=float)
        valid = pd.Series(~np.isnan(values), index=reps.index)
        hits = pd.Series(_OPS[op](values[valid.to_numpy()], number))
    k, n = int(hits.sum()), int(valid.sum())
    if n == 0:
        return Probability(label, float("nan"), float("nan"), float("nan"), 0, 0, confidence)
    low, high = wilson_interval(k, n, confidence)
    return Probability(label, k / n, low, high, k, n, confidence)


_OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
_COMPARISON = re.compile(r"^(.+?)\s*(>=|<=|==|>|<)\s*([-+0-9.eE]+)$")
_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")


def _statistic(stat: str | Callable[[np.ndarray], float]) -> tuple[Callable[..., float], str]:
    if callable(stat):
        return stat, getattr(stat, "__name__", "statistic")
    if stat == "mean":
        return lambda x: float(np.mean(x)), stat
    if stat == "median":
        return lambda x: float(np.median(x)), stat
    m = _PERCENTILE.match(stat)
    if m and 0 <= float(m.group(1)) <= 100:
        q = float(m.group(1))
        return lambda x: float(np.percentile(x, q)), stat
    raise ValueError(f"unknown statistic {stat!r} (mean, median, pNN such as p90, or a function)")
