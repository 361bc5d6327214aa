"""The crossover: where along a swept quantity self-hosting starts to beat the API.

:func:`crossover` reads a one-dimensional sweep (traffic, a GPU price, an API price, ...)
and estimates the value ``x*`` at which the mean of a paired metric — by default
``savings_vs_api_usd``, the API bill minus the option's cost for the same requests — crosses
zero, with a confidence interval, and per point the probability that self-hosting is
cheaper. :func:`find_crossover` finds the same crossing by bisection, simulating only the
points it needs.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

from sim.intervals import t_interval, wilson_interval
from sim.scenario import Scenario
from sim.study.executors import Executor, make_executor, session
from sim.study.sweep import SweepResult, sweep

__all__ = [
    "CrossoverResult",
    "crossover",
    "describe",
    "estimate_text",
    "find_crossover",
    "metric_unit",
    "unit_of",
    "wilson_interval",
]

Method = Literal["interpolate", "bootstrap"]
POINT_COLUMNS = (
    "x",
    "mean",
    "ci_low",
    "ci_high",
    "n",
    "p_cheaper",
    "p_cheaper_low",
    "p_cheaper_high",
)


@dataclass(frozen=True)
class CrossoverResult:
    """Where the mean of ``metric`` crosses zero along ``x``.

    Attributes
    ----------
    x, metric
        The swept path and the metric.
    estimate
        The crossing: linear interpolation between the two bracketing points of the
        per-point means (the first sign change along increasing ``x``); NaN when the means
        do not change sign within the swept range.
    ci_low, ci_high
        Its confidence interval (see ``method``); NaN where the interval runs past the
        swept range (or, for ``bootstrap``, where resamples lose the crossing).
    confidence
        Confidence level of every interval.
    method
        ``interpolate``: the set of ``x`` where the pointwise Student-t interval of the
        mean contains zero, the interval bounds interpolated linearly between points (an
        inverted test: it holds ``x*`` with probability ``confidence`` when the means are
        linear between points). ``bootstrap``: BCa interval of the estimate over
        replications resampled jointly at every point (pairing kept),
        :func:`scipy.stats.bootstrap`.
    points
        Per point, sorted by ``x``: ``x``, ``mean``, ``ci_low``, ``ci_high``, ``n`` of the
        metric, and ``p_cheaper`` — the share of replications with
        ``self_host_cheaper == 1`` — with its Wilson interval ``p_cheaper_low``,
        ``p_cheaper_high``.
    note
        Why the estimate or a bound is missing, if one is.
    """

    x: str
    metric: str
    estimate: float
    ci_low: float
    ci_high: float
    confidence: float
    method: Method
    points: pd.DataFrame
    note: str = ""

    def __str__(self) -> str:
        return describe(self)

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p>{escape(describe(self))}</p>" + self.points.to_html(index=False)


#: Unit of a path or metric by the suffix of its last name, longest first.
UNITS = (
    ("_per_1m_tokens_usd", "USD per 1M tokens"),
    ("_usd_per_month", "USD/month"),
    ("_usd_per_gpu_hour", "USD/GPU-hour"),
    ("_per_gpu_hour", "USD/GPU-hour"),
    ("_usd_per_1m_input", "USD per 1M input tokens"),
    ("_usd_per_1m_output", "USD per 1M output tokens"),
    ("_per_month", "USD/month"),
    ("_rps", "req/s"),
    ("_gib", "GiB"),
    ("_gb", "GB"),
    ("_usd", "USD"),
    ("_s", "s"),
)


def unit_of(path: str) -> str:
    """The unit a dotted path's last name states by its suffix; ``""`` when none.

    List indices at the end are skipped (``rates_rps.0`` is in req/s).

    Examples
    --------
    >>> unit_of("workload.classes.chat.arrivals.rates_rps.0"), unit_of("fleet.replicas")
    ('req/s', '')
    >>> unit_of("fleet.pricing.usd_per_gpu_hour")
    'USD/GPU-hour'
    """
    names = [p for p in path.split(".") if not p.isdigit()]
    last = "_" + (names[-1] if names else "")
    return next((unit for suffix, unit in UNITS if last.endswith(suffix)), "")


def metric_unit(metric: str) -> str:
    """The unit of a crossover metric's values: a bare ``_usd`` metric is a sum over one
    simulated window (the horizon after warm-up), not per month.

    Examples
    --------
    >>> metric_unit("savings_vs_api_usd"), metric_unit("savings_vs_api_per_1m_tokens_usd")
    ('USD per simulated window', 'USD per 1M tokens')
    """
    unit = unit_of(metric)
    return "USD per simulated window" if unit == "USD" else unit


def _num(value: float, unit: str) -> str:
    return f"{value:.4g} {unit}".rstrip()


def _bound(result: CrossoverResult, value: float, side: Literal["low", "high"]) -> str:
    if math.isfinite(value):
        return _num(value, unit_of(result.x))
    if result.method == "bootstrap":
        return "undetermined (bootstrap resamples lose the crossing)"
    xs = result.points["x"].to_numpy(dtype=float)
    if side == "low":
        return f"below the swept range (min {_num(float(xs.min()), unit_of(result.x))})"
    return f"above the swept range (max {_num(float(xs.max()), unit_of(result.x))})"


def estimate_text(result: CrossoverResult) -> str:
    """The crossing with its unit and interval, each open bound explained: ``29.44 req/s
    (95% CI 25.73 req/s – above the swept range (max 45 req/s))``; for no crossing, why."""
    if not math.isfinite(result.estimate):
        xs = result.points["x"].to_numpy(dtype=float)
        unit = unit_of(result.x)
        where = f"{_num(float(xs.min()), unit)} – {_num(float(xs.max()), unit)}"
        return f"none in the swept range {where}" + (f" ({result.note})" if result.note else "")
    low = _bound(result, result.ci_low, "low")
    high = _bound(result, result.ci_high, "high")
    ci = f"{result.confidence:.0%} CI {low} – {high}"
    return f"{_num(result.estimate, unit_of(result.x))} ({ci})"


def describe(result: CrossoverResult) -> str:
    """One sentence for a :class:`CrossoverResult`, as the command line, the report and
    ``str(result)`` give it.

    Examples
    --------
    >>> pts = pd.DataFrame({"x": [10.0, 45.0], "mean": [-1.0, 2.0]})
    >>> r = CrossoverResult("arrivals.rate_rps", "savings_vs_api_usd", 29.44, 25.73,
    ...                     float("nan"), 0.95, "interpolate", pts)
    >>> print(describe(r))
    savings_vs_api_usd crosses zero at arrivals.rate_rps = 29.44 req/s (95% CI 25.73 req/s – above the swept range (max 45 req/s))
    """  # noqa: E501
    if not math.isfinite(result.estimate):
        return f"{result.metric} does not cross zero along {result.x}: {estimate_text(result)}"
    return f"{result.metric} crosses zero at {result.x} = {estimate_text(result)}"


def _first_root(xs: np.ndarray, ys: np.ndarray) -> float:
    """First zero of the piecewise-linear curve through ``(xs, ys)``; NaN if none."""
    for k in range(len(xs)):
        if ys[k] == 0:
            return float(xs[k])
        if k + 1 < len(xs) and ys[k] * ys[k + 1] < 0:
            return float(xs[k] + (xs[k + 1] - xs[k]) * ys[k] / (ys[k] - ys[k + 1]))
    return float("nan")


def _edge(xs: np.ndarray, lo: np.ndarray, hi: np.ndarray, x0: float, step: int) -> float:
    """Walking from ``x0`` (where ``lo <= 0 <= hi``) left (``step=-1``) or right, the first
    ``x`` where the interval stops containing zero; NaN past the last point."""
    # segment k spans xs[k]..xs[k+1]; start in the one holding x0
    k = int(np.clip(np.searchsorted(xs, x0, side="right") - 1, 0, len(xs) - 2))
    if step < 0 and x0 == xs[k] and k > 0:
        k -= 1
    best = float("nan")
    while 0 <= k < len(xs) - 1:
        a, b = xs[k], xs[k + 1]
        roots = []
        for curve, bad in ((lo, 1.0), (hi, -1.0)):  # lo > 0 or hi < 0 leaves the set
            ya, yb = curve[k], curve[k + 1]
            if ya != yb:
                r = a + (b - a) * ya / (ya - yb)
                # where the curve enters the bad side, moving in the walking direction
                slope_bad = bad * (yb - ya) * step > 0
                if a <= r <= b and slope_bad and (r - x0) * step >= 0:
                    roots.append(r)
        if roots:
            best = min(roots) if step > 0 else max(roots)
            return float(best)
        k += step
    return best


def crossover(
    sweep_result: SweepResult,
    x: str = "workload.classes.chat.arrivals.rate_rps",
    *,
    metric: str = "savings_vs_api_usd",
    confidence: float = 0.95,
    method: Method = "interpolate",
    where: Mapping[str, Any] | None = None,
    n_resamples: int = 2000,
    seed: int = 0,
) -> CrossoverResult:
    """Estimate the ``x`` at which the mean of ``metric`` crosses zero, with a CI.

    Parameters
    ----------
    sweep_result
        A sweep over ``x`` (other swept parameters fixed by ``where``).
    x
        The swept path.
    metric
        A paired metric whose sign is the decision: ``savings_vs_api_usd`` (default),
        ``savings_vs_api_per_1m_tokens_usd``, ...
    confidence
        Level of every interval.
    method
        ``interpolate`` (default) or ``bootstrap``: see :class:`CrossoverResult`.
    where
        Values of the other swept parameters, selecting a one-dimensional slice of a
        larger grid, e.g. ``{"fleet.replicas": 2}``.
    n_resamples, seed
        Bootstrap resamples and their seed (``bootstrap`` only).

    Examples
    --------
    >>> from sim import load_scenario, sweep
    >>> s = load_scenario("scenarios/chat-startup.yaml").with_overrides(
    ...     {"horizon.duration_s": 300, "horizon.warmup_s": 0})
    >>> path = "workload.classes.chat.arrivals.rates_rps.0"
    >>> res = sweep(s, grid={path: [1.0, 3.0]}, replications=2, executor="serial")
    >>> c = crossover(res, x=path)
    >>> c.points[["x", "p_cheaper"]].values.tolist()
    [[1.0, 0.0], [3.0, 0.0]]
    """
    runs = sweep_result.runs
    if x not in sweep_result.parameters:
        swept = ", ".join(sweep_result.parameters)
        raise ValueError(f"{x!r} is not a swept parameter (swept: {swept})")
    if metric not in runs.columns:
        raise ValueError(
            f"no metric {metric!r} in the sweep's runs (cost comparisons need an 'api' section)"
        )
    for path, value in (where or {}).items():
        if path not in sweep_result.parameters or path == x:
            raise ValueError(f"where: {path!r} is not another swept parameter")
        runs = runs[runs[path] == value]
    others = [p for p in sweep_result.parameters if p != x and p not in (where or {})]
    varying = [p for p in others if runs[p].nunique(dropna=False) > 1]
    if varying:
        raise ValueError(
            f"the sweep also varies {', '.join(varying)}: pick a slice with where={{...}}"
        )
    if runs.empty:
        raise ValueError("no runs left after where=")
    if runs.groupby(x)["point"].nunique().max() > 1:
        raise ValueError(f"several points share one value of {x!r}")
    wide = runs.pivot(index=x, columns="replication", values=metric).sort_index()
    xs = wide.index.to_numpy(dtype=float)
    ys = wide.to_numpy(dtype=float)  # points × replications
    if len(xs) < 2:
        raise ValueError(f"a crossover needs at least two values of {x!r}")

    rows = []
    for xi, (_, grp) in zip(xs, runs.sort_values(x).groupby(x, sort=True), strict=True):
        mean, lo, hi = t_interval(grp[metric].to_numpy(dtype=float), confidence)
        cheaper = grp["self_host_cheaper"] if "self_host_cheaper" in grp else grp[metric] > 0
        flags = cheaper.to_numpy(dtype=float)
        flags = flags[~np.isnan(flags)]
        k, n = int((flags == 1).sum()), len(flags)
        p_lo, p_hi = wilson_interval(k, n, confidence)
        finite = int(np.isfinite(grp[metric]).sum())
        rows.append((xi, mean, lo, hi, finite, k / n if n else np.nan, p_lo, p_hi))
    points = pd.DataFrame(rows, columns=list(POINT_COLUMNS))
    means = points["mean"].to_numpy(dtype=float)
    estimate = _first_root(xs, means)
    note = ""
    if math.isnan(estimate):
        side = "above" if np.nanmean(means) > 0 else "below"
        note = f"the mean of {metric} stays {side} zero over the swept range"
        return CrossoverResult(
            x, metric, estimate, np.nan, np.nan, confidence, method, points, note
        )
    if method == "interpolate":
        lo_curve = points["ci_low"].to_numpy(dtype=float)
        hi_curve = points["ci_high"].to_numpy(dtype=float)
        ci_low = _edge(xs, lo_curve, hi_curve, estimate, -1)
        ci_high = _edge(xs, lo_curve, hi_curve, estimate, +1)
    elif method == "bootstrap":
        ci_low, ci_high = _bootstrap(xs, ys, confidence, n_resamples, seed)
    else:
        raise ValueError(f"unknown method {method!r} (interpolate or bootstrap)")
    if math.isnan(ci_low) or math.isnan(ci_high):
        note = (
            "the confidence interval reaches past the swept range: widen it"
            if method == "interpolate"
            else "bootstrap resamples lose the crossing: widen the range or add replications"
        )
    return CrossoverResult(x, metric, estimate, ci_low, ci_high, confidence, method, points, note)


def _bootstrap(
    xs: np.ndarray, ys: np.ndarray, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    # Resample replication indices, the same ones at every point: replication i shares its
    # seed across points (common random numbers), so the pairing must be kept.
    reps = ys.shape[1]
    if reps < 2:
        return float("nan"), float("nan")

    def statistic(idx: np.ndarray) -> float:
        return _first_root(xs, np.nanmean(ys[:, idx.astype(np.int64)], axis=1))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # degenerate resamples give NaN, reported as such
        res = stats.bootstrap(
            (np.arange(reps),),
            statistic,
            vectorized=False,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def find_crossover(
    scenario: Scenario,
    *,
    x: str,
    low: float,
    high: float,
    metric: str = "savings_vs_api_usd",
    replications: int = 5,
    seed: int = 0,
    rel_tol: float = 0.02,
    max_points: int = 12,
    confidence: float = 0.95,
    executor: str | Executor | None = None,
    workers: int | None = None,
) -> CrossoverResult:
    """Find where the mean of ``metric`` crosses zero along ``x`` by bisection.

    The two ends are simulated first (``sweep`` with ``grid={x: [low, high]}``); the mean of
    ``metric`` must change sign between them. Then the midpoint of the bracketing pair is
    simulated and the half where the mean changes sign is kept, until the bracket's width
    divided by its midpoint is below ``rel_tol``, or the midpoint's t-interval of the metric
    contains zero (the crossing cannot be resolved further with this many replications —
    said in ``note``), or ``max_points`` points have been simulated. Every point uses the
    same replication seeds (children of ``SeedSequence(seed)``, common random numbers), and
    the points are combined into one :class:`~sim.study.sweep.SweepResult` read by
    :func:`crossover` (``method="interpolate"``), so the estimate and its interval are
    computed as for a grid.

    Parameters
    ----------
    scenario
        The base scenario (it needs an ``api`` section for the savings metrics).
    x
        A dotted path holding a continuous quantity (midpoints are floats).
    low, high
        The range searched, ``low < high``.
    metric
        A paired metric whose sign is the decision.
    replications, seed
        Replications per point (at least 2) and the root seed.
    rel_tol
        Stop when ``(b - a) / |(a + b) / 2|`` of the bracket ``[a, b]`` falls below it.
    max_points
        Most points simulated, the two ends included (at least 2).
    confidence
        Level of the stopping test and of every interval.
    executor, workers
        Where simulations run, as for :func:`sim.run` (default: in this process;
        ``workers=2``: two local processes; ``executor="dask"``: an embedded
        ``LocalCluster``); one pool or cluster serves every point.

    Returns
    -------
    CrossoverResult
        As :func:`crossover` on the simulated points (``points`` has one row per point);
        the estimate is NaN, with a note, when the mean does not change sign between
        ``low`` and ``high``. ``note`` also says why the bisection stopped when it stopped
        before ``rel_tol`` was met.
    """
    low, high = float(low), float(high)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"need finite low < high, got {low:g}, {high:g}")
    if replications < 2:
        raise ValueError(f"replications must be at least 2 (a t-interval), got {replications}")
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2 (the two ends), got {max_points}")
    if not rel_tol > 0:
        raise ValueError(f"rel_tol must be positive, got {rel_tol}")
    runner = make_executor(executor, workers=workers)

    parts: list[pd.DataFrame] = []
    computed = 0
    reused = 0
    requests = 0.0
    elapsed = 0.0

    def evaluate(values: list[float]) -> dict[float, tuple[float, float, float]]:
        nonlocal computed, reused, requests, elapsed
        res = sweep(
            scenario,
            grid={x: values},
            replications=replications,
            seed=seed,  # the same replication seeds at every point
            executor=live,
            progress=False,
        )
        if metric not in res.runs.columns:
            raise ValueError(
                f"no metric {metric!r} in the sweep's runs (cost comparisons need an 'api' section)"
            )
        computed += res.computed
        reused += res.reused
        requests += res.requests_simulated
        elapsed += res.elapsed_s
        parts.append(res.runs)
        at = res.runs[x].to_numpy(dtype=float)
        ys = res.runs[metric].to_numpy(dtype=float)
        return {v: t_interval(ys[at == v], confidence) for v in values}

    with session(runner) as live:  # one pool or cluster for every point
        ends = evaluate([low, high])
        m_low, m_high = ends[low][0], ends[high][0]
        a, b = low, high
        note = ""
        if m_low * m_high < 0:  # False for NaN too
            while True:
                mid = (a + b) / 2
                if (b - a) / max(abs(mid), np.finfo(float).tiny) < rel_tol:
                    break
                if len(parts) + 1 >= max_points:  # the ends, then one point per part
                    note = f"stopped at max_points={max_points} before rel_tol={rel_tol:g}"
                    break
                m_mid, lo_mid, hi_mid = evaluate([mid])[mid]
                if lo_mid <= 0 <= hi_mid or not math.isfinite(m_mid):
                    note = (
                        f"stopped at {x}={mid:g}: its {confidence:.0%} interval of the mean "
                        f"{metric} contains zero, so the crossing cannot be resolved further "
                        "with this many replications"
                    )
                    break
                if (m_mid < 0) == (m_low < 0):
                    a, m_low = mid, m_mid
                else:
                    b = mid

    runs = pd.concat(parts, ignore_index=True).sort_values([x, "replication"], kind="stable")
    values = sorted(runs[x].unique())
    runs["point"] = runs[x].map({v: k for k, v in enumerate(values)})
    runs = runs.reset_index(drop=True)
    combined = SweepResult(
        scenario=scenario,
        parameters=(x,),
        points=pd.DataFrame({"point": range(len(values)), x: values}),
        runs=runs,
        seed=seed,
        replications=replications,
        computed=computed,
        reused=reused,
        requests_simulated=requests,
        elapsed_s=elapsed,
    )
    result = crossover(combined, x=x, metric=metric, confidence=confidence)
    if math.isnan(result.estimate):
        note = f"no sign change of the mean between {x}={low:g} and {high:g}: {result.note}"
        return replace(result, note=note)
    return replace(result, note="; ".join(n for n in (note, result.note) if n))
