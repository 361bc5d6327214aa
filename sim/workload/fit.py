"""Fit a workload class to a request trace: ``crossover fit TRACE -o workload.yaml``.

:func:`fit_workload` turns a parsed :class:`~sim.workload.Trace` into one ``workload:``
class: a rate profile, an arrival process and two length distributions, then samples the
fitted class and compares it with the trace (:attr:`FitResult.report`).

**Rate profile.** Hourly weights (the rate in each clock hour of the trace, hour 0 being the
trace's first hour, as a replay would put it) when the trace spans at least
:data:`PROFILE_MIN_SPAN_S` (two hours); hours the trace does not cover get the overall rate.
Burstiness is then measured in *operational time* (the time change ``Λ(t) = ∫ m``), so a
day/night swing is not mistaken for burstiness.

**Arrival process**, from the gaps' CV and the ``k`` counts in windows of ``window_s``
(their index of dispersion ``IDC = Σ(c − e)² / Σe · k/(k − 1)``, ``e`` the expected counts, and
the lag-1 autocorrelation ``r₁`` of ``c − e``):

* ``poisson`` if ``|CV − 1| ≤`` :data:`POISSON_CV_TOL` (0.1) **and** the counts pass the
  two-sided χ² dispersion test at level :data:`DISPERSION_ALPHA` (0.01): for Poisson counts
  ``(k − 1)·IDC ~ χ²(k − 1)``;
* else ``mmpp`` (2 states) if the counts are over-dispersed and persistent,
  ``r₁ >`` :data:`PERSISTENCE_Z` ``/√k`` (about two standard errors of ``r₁`` under
  independence); the states are fitted by EM on the window counts (a Poisson hidden Markov
  model) and the window-to-window transition matrix ``P = exp(Qw)`` is inverted exactly for
  the two mean dwell times. State switches inside a window are ignored, so dwell times much
  shorter than ``window_s`` are not resolved;
* else ``gamma`` renewal with the measured CV (no state persistence, or an MMPP fit that
  finds none).

**Lengths.** A lognormal through the trace's median and p90 (``max`` = observed maximum)
unless its Kolmogorov–Smirnov distance to the tokens exceeds :data:`KS_MAX` (0.05), then an
empirical distribution (exact values if at most :data:`EMPIRICAL_POINTS` distinct ones, else
that many equally weighted quantiles, also clipped at the observed maximum).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml
from numpy.typing import NDArray
from scipy import stats

from sim.workload.lengths import LognormalLength
from sim.workload.sample import sample_workload
from sim.workload.spec import ClassSpec, WorkloadSpec
from sim.workload.trace import Trace

__all__ = ["FitResult", "fit_workload", "trace_statistics"]

#: A trace at least this long gets an hourly rate profile.
PROFILE_MIN_SPAN_S = 7200.0
#: Poisson needs the inter-arrival CV within this of 1 ...
POISSON_CV_TOL = 0.10
#: ... and window counts not rejected by a two-sided χ² dispersion test at this level.
DISPERSION_ALPHA = 0.01
#: Counts are persistent (MMPP) if the lag-1 autocorrelation exceeds this many ``1/√k``.
PERSISTENCE_Z = 2.0
#: A lognormal whose KS distance to the tokens exceeds this is replaced by an empirical one.
KS_MAX = 0.05
#: Most support points of a fitted empirical length distribution.
EMPIRICAL_POINTS = 256
#: Fewest windows the burstiness statistics are computed from.
MIN_WINDOWS = 8

_HOUR_S = 3600.0


@dataclass(frozen=True, eq=False)
class FitResult:
    """A fitted workload class and how well it reproduces the trace.

    Attributes
    ----------
    spec
        The class as a plain dict (valid :class:`~sim.workload.ClassSpec` input).
    report
        Rows ``mean_rate_rps``, ``interarrival_cv``, ``index_of_dispersion``,
        ``prompt_p50/p90/p99``, ``output_p50/p90/p99``; columns ``trace``, ``fitted`` (the
        mean over the sampled replications, tokens pooled) and ``ratio`` (fitted / trace).
    process
        ``poisson``, ``gamma`` or ``mmpp``.
    reason
        One sentence: the statistics and thresholds that chose ``process``.
    statistics
        The trace statistics behind the choice (operational time): ``rate_rps``,
        ``interarrival_cv``, ``dispersion``, ``lag1_autocorr``, ``n_windows``.
    """

    spec: dict[str, Any]
    report: pd.DataFrame
    process: Literal["poisson", "gamma", "mmpp"]
    reason: str
    statistics: dict[str, float]

    def class_spec(self) -> ClassSpec:
        """:attr:`spec` validated."""
        return ClassSpec.model_validate(self.spec)

    def to_yaml(self) -> str:
        """A ``workload:`` section holding the fitted class, ready to paste into a scenario."""
        body = yaml.safe_dump(
            {"workload": {"classes": [self.spec]}}, sort_keys=False, default_flow_style=None
        )
        return f"# crossover fit: {self.reason}\n{body}"


def trace_statistics(
    arrival_s: NDArray[np.float64], *, duration_s: float, window_s: float
) -> dict[str, float]:
    """Mean rate, inter-arrival CV and index of dispersion of counts in ``window_s`` windows.

    The IDC is ``Var N / E N`` (``ddof = 1``) over the ``⌊duration_s / window_s⌋`` whole
    windows; ``nan`` where there are fewer than two windows or two arrivals.

    Examples
    --------
    >>> t = np.sort(np.random.default_rng(0).uniform(0, 3600, 18000))
    >>> s = trace_statistics(t, duration_s=3600.0, window_s=60.0)
    >>> s["mean_rate_rps"], round(s["interarrival_cv"], 1)
    (5.0, 1.0)
    """
    t = np.asarray(arrival_s, dtype=np.float64)
    gaps = np.diff(t)
    cv = float(gaps.std() / gaps.mean()) if gaps.size > 1 and gaps.mean() > 0 else math.nan
    k = int(duration_s // window_s)
    if k >= 2:
        c = np.bincount((t[t < k * window_s] // window_s).astype(np.intp), minlength=k)
        idc = float(c.var(ddof=1) / c.mean()) if c.mean() > 0 else math.nan
    else:
        idc = math.nan
    return {"mean_rate_rps": t.size / duration_s, "interarrival_cv": cv, "index_of_dispersion": idc}


def _hourly_rates(t: NDArray[np.float64], duration_s: float) -> NDArray[np.float64]:
    """Rate (rps) per clock hour 0..23; hours without 15 covered minutes get the mean rate."""
    n_hours = math.ceil(duration_s / _HOUR_S)
    counts = np.bincount((t // _HOUR_S).astype(np.intp), minlength=n_hours)[:n_hours]
    exposure = np.minimum(_HOUR_S, duration_s - _HOUR_S * np.arange(n_hours))
    use = exposure >= _HOUR_S / 4
    clock = np.arange(n_hours) % 24
    num = np.bincount(clock[use], weights=counts[use], minlength=24)
    den = np.bincount(clock[use], weights=exposure[use], minlength=24)
    overall = t.size / duration_s
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), overall)


def _operational_time(t: NDArray[np.float64], mult: NDArray[np.float64]) -> NDArray[np.float64]:
    """``Λ(t) = ∫₀ᵗ m(s) ds`` for an hourly multiplier ``m`` (clock hour → value)."""
    hour = (t // _HOUR_S).astype(np.intp)
    n_hours = int(hour.max()) + 1 if t.size else 1
    per_hour = mult[np.arange(n_hours) % 24] * _HOUR_S
    before = np.concatenate([[0.0], np.cumsum(per_hour)])[hour]
    return before + mult[hour % 24] * (t - hour * _HOUR_S)


def _poisson_hmm(
    counts: NDArray[np.float64], exposure: NDArray[np.float64], *, iters: int = 500
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """EM (Baum–Welch) for a 2-state hidden Markov chain with ``Poisson(λ_s · exposure_i)``
    counts. Returns the rates ``λ`` (per unit exposure) and the transition matrix."""
    k = counts.size
    med = np.median(counts / exposure)
    low = counts / exposure <= med
    lam = np.array(
        [
            counts[low].sum() / exposure[low].sum(),
            counts[~low].sum() / max(exposure[~low].sum(), 1e-12),
        ]
    )
    lam = np.maximum(lam, 1e-6 * max(lam.max(), 1e-12))
    p = np.array([[0.9, 0.1], [0.1, 0.9]])
    init = np.array([0.5, 0.5])
    prev = -math.inf
    for _ in range(iters):
        logb = stats.poisson.logpmf(counts[:, None], lam[None, :] * exposure[:, None])
        shift = logb.max(axis=1, keepdims=True)
        b = np.exp(logb - shift)
        alpha = np.empty((k, 2))
        scale = np.empty(k)
        a = init * b[0]
        for i in range(k):
            if i:
                a = (alpha[i - 1] @ p) * b[i]
            scale[i] = a.sum()
            alpha[i] = a / scale[i]
        beta = np.ones((k, 2))
        for i in range(k - 2, -1, -1):
            beta[i] = p @ (b[i + 1] * beta[i + 1]) / scale[i + 1]
        gamma = alpha * beta
        gamma /= gamma.sum(axis=1, keepdims=True)
        xi = alpha[:-1, :, None] * p[None] * (b[1:] * beta[1:])[:, None, :] / scale[1:, None, None]
        p = xi.sum(axis=0)
        p /= p.sum(axis=1, keepdims=True)
        init = gamma[0]
        lam = np.maximum((gamma * counts[:, None]).sum(0) / (gamma * exposure[:, None]).sum(0), 0.0)
        loglik = float(np.log(scale).sum() + shift.sum())
        if loglik - prev < 1e-9 * abs(loglik):
            break
        prev = loglik
    order = np.argsort(lam)
    return lam[order], p[np.ix_(order, order)]


def _fit_mmpp(
    counts: NDArray[np.float64], mult: NDArray[np.float64], window_s: float, rate: float
) -> dict[str, Any] | None:
    lam, p = _poisson_hmm(counts, mult * window_s)
    a, b = float(p[0, 1]), float(p[1, 0])
    if not (a > 0 and b > 0 and a + b < 1.0 - 1e-9) or lam[1] <= lam[0]:
        return None  # no persistence (or one state): not an MMPP
    # For a 2-state chain, P(w) = exp(Qw) has p01 + p10 = 1 − e^{−(σ0+σ1)w}, p01 = π1(…).
    s = -math.log(1.0 - a - b) / window_s
    pi1 = a / (a + b)
    dwell = (1.0 / (s * pi1), 1.0 / (s * (1.0 - pi1)))
    lam = lam * rate / float(lam @ np.array([1.0 - pi1, pi1]))  # keep the trace's mean rate
    return {
        "process": "mmpp",
        "rates_rps": [_round(x) for x in lam],
        "mean_dwell_s": [_round(x) for x in dwell],
    }


def _round(x: float, digits: int = 5) -> float:
    return float(f"{float(x):.{digits}g}")


def _ks_distance(x: NDArray[np.int64], cdf: Any) -> float:
    """Kolmogorov–Smirnov distance between integer samples and a discrete CDF."""
    xs = np.sort(x)
    u = np.unique(xs)
    emp = np.searchsorted(xs, u, side="right") / xs.size
    emp_before = np.searchsorted(xs, u, side="left") / xs.size
    return float(max(np.abs(emp - cdf(u)).max(), np.abs(emp_before - cdf(u - 1)).max()))


def _fit_length(x: NDArray[np.int64]) -> dict[str, Any]:
    hi = int(x.max())
    q50, q90 = (float(v) for v in np.percentile(x, [50, 90]))
    logn = {"dist": "lognormal", "median": _round(q50), "p90": _round(max(q90, q50)), "max": hi}
    ks = _ks_distance(x, LognormalLength.model_validate(logn).cdf)
    if ks <= KS_MAX:
        return logn
    values, counts = np.unique(x, return_counts=True)
    if values.size > EMPIRICAL_POINTS:
        probs = (np.arange(EMPIRICAL_POINTS) + 0.5) / EMPIRICAL_POINTS
        q = np.quantile(x, probs, method="inverted_cdf").astype(np.int64)
        values, counts = np.unique(q, return_counts=True)
    return {
        "dist": "empirical",
        "values": [int(v) for v in values],
        "weights": [int(c) for c in counts],
        "max": hi,
    }


def fit_workload(
    trace: Trace,
    *,
    name: str = "fitted",
    window_s: float = 60.0,
    hourly_profile: bool | None = None,
    replications: int = 10,
    seed: int = 0,
) -> FitResult:
    """Fit one workload class (profile, arrival process, lengths) to a trace.

    Parameters
    ----------
    trace
        A parsed trace with both token columns.
    name
        The class name.
    window_s
        Window of the counts behind the index of dispersion and the MMPP fit, seconds.
    hourly_profile
        Fit hourly weights; ``None``: when the trace spans at least two hours.
    replications, seed
        How many horizons of the trace's length to sample from the fit for the report.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        If the trace lacks token counts or spans fewer than :data:`MIN_WINDOWS` windows.

    Examples
    --------
    >>> t = np.sort(np.random.default_rng(1).uniform(0.0, 3600.0, 7200))
    >>> tok = np.full(t.size, 100, dtype=np.int64)
    >>> res = fit_workload(Trace("synthetic", t, tok, tok))
    >>> res.process, round(res.spec["arrivals"]["rate_rps"], 1)
    ('poisson', 2.0)
    """
    if trace.input_tokens is None or trace.output_tokens is None:
        raise ValueError(f"trace {trace.path}: fitting needs both token columns")
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be finite and > 0, got {window_s}")
    t = np.asarray(trace.offset_s, dtype=np.float64)
    duration = trace.period_s()
    k = int(duration // window_s)
    if k < MIN_WINDOWS:
        raise ValueError(
            f"trace {trace.path}: spans {duration:.0f} s, fewer than {MIN_WINDOWS} windows of "
            f"{window_s:g} s"
        )
    rate = trace.n_rows / duration
    spec: dict[str, Any] = {"name": name}
    use_profile = duration >= PROFILE_MIN_SPAN_S if hourly_profile is None else hourly_profile
    if use_profile:
        hourly = _hourly_rates(t, duration)
        rate = float(hourly.mean())  # the daily mean, as HourlyProfile normalises
        mult = hourly / rate
        op = _operational_time(t, mult)
        centres = (np.arange(k) + 0.5) * window_s
        win_mult = mult[(centres // _HOUR_S).astype(np.intp) % 24]
    else:
        mult = np.ones(24)
        op = t
        win_mult = np.ones(k)
    gaps = np.diff(op)
    cv = float(gaps.std() / gaps.mean())
    counts = np.bincount((t[t < k * window_s] // window_s).astype(np.intp), minlength=k).astype(
        np.float64
    )
    expected = counts.sum() * win_mult / win_mult.sum()
    resid = counts - expected
    idc = float((resid**2).sum() / expected.sum() * k / (k - 1))
    r1 = float((resid[:-1] * resid[1:]).sum() / (resid**2).sum()) if resid.any() else 0.0
    lo_q = stats.chi2.ppf(DISPERSION_ALPHA / 2, k - 1) / (k - 1)
    hi_q = stats.chi2.ppf(1 - DISPERSION_ALPHA / 2, k - 1) / (k - 1)
    r1_max = PERSISTENCE_Z / math.sqrt(k)
    facts = (
        f"CV {cv:.3g}, IDC({window_s:g} s) {idc:.3g} (Poisson {lo_q:.2f}–{hi_q:.2f}), "
        f"lag-1 autocorrelation {r1:.2f} (persistent above {r1_max:.2f}, k={k})"
    )
    arrivals: dict[str, Any] | None = None
    if abs(cv - 1.0) <= POISSON_CV_TOL and lo_q <= idc <= hi_q:
        process: Literal["poisson", "gamma", "mmpp"] = "poisson"
        arrivals = {"process": "poisson", "rate_rps": _round(rate)}
        reason = f"poisson: {facts}"
    else:
        if idc > 1.0 and r1 > r1_max:
            arrivals = _fit_mmpp(counts, win_mult, window_s, rate)
        if arrivals is not None:
            process = "mmpp"
            reason = f"mmpp: {facts}"
        else:
            process = "gamma"
            arrivals = {"process": "gamma", "rate_rps": _round(rate), "cv": _round(cv, 4)}
            reason = f"gamma: {facts}"
    spec["arrivals"] = arrivals
    if use_profile:
        spec["profile"] = {"kind": "hourly", "weights": [_round(w, 4) for w in mult]}
    spec["prompt_tokens"] = _fit_length(trace.input_tokens)
    spec["output_tokens"] = _fit_length(trace.output_tokens)
    cls = ClassSpec.model_validate(spec)
    report = _report(trace, cls, duration, window_s, replications, seed)
    statistics = {
        "rate_rps": rate,
        "interarrival_cv": cv,
        "dispersion": idc,
        "lag1_autocorr": r1,
        "n_windows": float(k),
    }
    return FitResult(spec, report, process, reason, statistics)


def _report(
    trace: Trace, cls: ClassSpec, duration: float, window_s: float, reps: int, seed: int
) -> pd.DataFrame:
    assert trace.input_tokens is not None and trace.output_tokens is not None
    workload = WorkloadSpec(classes=(cls,))
    per_rep: list[dict[str, float]] = []
    prompts, outputs = [], []
    for child in np.random.SeedSequence(seed).spawn(max(reps, 1)):
        w = sample_workload(workload, duration_s=duration, seed=child)
        per_rep.append(trace_statistics(w.arrival_s, duration_s=duration, window_s=window_s))
        prompts.append(w.input_tokens)
        outputs.append(w.output_tokens)
    fitted = {key: float(np.nanmean([r[key] for r in per_rep])) for key in per_rep[0]}
    observed = trace_statistics(trace.offset_s, duration_s=duration, window_s=window_s)
    for label, obs, sim in (
        ("prompt", trace.input_tokens, np.concatenate(prompts)),
        ("output", trace.output_tokens, np.concatenate(outputs)),
    ):
        for q in (50, 90, 99):
            observed[f"{label}_p{q}"] = float(np.percentile(obs, q))
            fitted[f"{label}_p{q}"] = float(np.percentile(sim, q)) if sim.size else math.nan
    frame = pd.DataFrame({"trace": observed, "fitted": fitted})
    frame["ratio"] = frame["fitted"] / frame["trace"]
    frame.index.name = "metric"
    return frame
