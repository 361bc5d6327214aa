"""Sensitivity: which inputs move the answer, and by how much.

Two measures, both returning tidy DataFrames (plots live elsewhere):

- :func:`tornado` — one at a time: each chosen parameter set to a low and a high value, the
  rest at the base scenario, every run with the same replication seeds as the base (common
  random numbers), so each change is a paired difference with its own t-interval.
- :func:`variance_indices` — from a run whose scenario has an ``uncertainty:`` section: the
  share of a metric's variance across replications explained by each drawn parameter
  (``param:<path>`` columns): the squared correlation (linear) and a first-order index
  estimated by binning (any monotone or non-monotone effect).

:func:`ishigami` is the standard analytic test function with known first-order indices,
used by the tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from sim.intervals import t_interval
from sim.scenario import Scenario
from sim.study.executors import Executor, make_executor
from sim.study.montecarlo import PARAM_PREFIX, RunResult, Unit, run_unit
from sim.uncertainty import value_at

__all__ = ["ISHIGAMI_FIRST_ORDER", "ishigami", "tornado", "tornado_bars", "variance_indices"]

DEFAULT_METRICS = ("cost_per_1m_tokens_usd", "savings_vs_api_usd")
TORNADO_COLUMNS = (
    "metric",
    "parameter",
    "side",
    "value",
    "base_value",
    "mean",
    "base_mean",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "swing",
    "n",
)


def _levels(scenario: Scenario, path: str, spec: float | tuple[Any, Any]) -> tuple[Any, Any, Any]:
    base = value_at(scenario, path)  # KeyError if no such field
    if isinstance(spec, tuple | list):
        low, high = spec
        return base, low, high
    if isinstance(base, bool) or not isinstance(base, int | float):
        raise ValueError(f"{path}: holds {base!r}; give (low, high) instead of a fraction")
    frac = float(spec)
    if not 0 < frac < 1:
        raise ValueError(f"{path}: a relative change must be in (0, 1), got {frac}")
    low, high = base * (1 - frac), base * (1 + frac)
    if isinstance(base, int):  # integers move at least one step
        low = min(round(low), base - 1)
        high = max(round(high), base + 1)
    return base, low, high


def tornado(
    scenario: Scenario,
    parameters: Mapping[str, float | tuple[Any, Any]],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    replications: int = 5,
    seed: int = 0,
    executor: str | Executor | None = None,
    workers: int | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One-at-a-time sensitivity of ``metrics`` to each parameter, with common random numbers.

    Parameters
    ----------
    scenario
        The base point. Simulated at its nominal values (its ``uncertainty`` section, if
        any, is not drawn), so each change is the effect of that parameter alone.
    parameters
        Dotted path → ``(low, high)`` values, or a fraction ``x`` for ``±x`` of the base
        value (an integer path moves at least one step).
    metrics
        Metrics to report (default ``cost_per_1m_tokens_usd`` and ``savings_vs_api_usd``).
    replications, seed
        Replications per run; replication ``i`` of every run uses child ``i`` of
        ``SeedSequence(seed)``.
    executor, workers
        Where simulations run, as for :func:`sim.run` (default: in this process;
        ``workers=2``: two local processes; ``executor="dask"``: an embedded
        ``LocalCluster``).
    confidence
        Level of the paired-difference intervals.

    Returns
    -------
    pandas.DataFrame
        Tidy, one row per metric × parameter × side (``low``/``high``): the parameter's
        ``value`` and ``base_value``, the metric's ``mean`` there and ``base_mean``,
        ``delta`` (mean paired difference from the base) with ``delta_ci_low`` /
        ``delta_ci_high``, ``swing`` (|Δhigh − Δlow|, the bar's length) and ``n``; sorted by
        metric, then swing, largest first.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/chat-startup.yaml").with_overrides(
    ...     {"horizon.duration_s": 120, "horizon.warmup_s": 0})
    >>> t = tornado(s, {"fleet.replicas": 0.5}, replications=2)
    >>> t.query("metric == 'cost_per_1m_tokens_usd'")[["side", "value"]].values.tolist()
    [['low', 1], ['high', 3]]
    """
    if not parameters:
        raise ValueError("parameters: give at least one path")
    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    levels = {str(p): _levels(scenario, str(p), spec) for p, spec in parameters.items()}
    runs: list[tuple[str, str, Any, Scenario]] = [("", "base", None, scenario)]
    for path, (_, low, high) in levels.items():
        for side, value in (("low", low), ("high", high)):
            runs.append((path, side, value, scenario.with_overrides({path: value})))
    children = np.random.SeedSequence(seed).spawn(replications)
    work = [Unit(s, c, False) for *_, s in runs for c in children]
    results = dict(make_executor(executor, workers=workers).imap_unordered(run_unit, work))
    frames = [
        pd.DataFrame([results[k * replications + i] for i in range(replications)])
        for k in range(len(runs))
    ]
    base = frames[0]
    missing = [m for m in metrics if m not in base]
    if missing:
        raise KeyError(f"no metric {missing[0]!r} (cost comparisons need an 'api' section)")
    rows = []
    for metric in metrics:
        b = base[metric].to_numpy(dtype=float)
        for (path, side, value, _), frame in zip(runs[1:], frames[1:], strict=True):
            x = frame[metric].to_numpy(dtype=float)
            delta, lo, hi = t_interval(x - b, confidence)
            rows.append(
                {
                    "metric": metric,
                    "parameter": path,
                    "side": side,
                    "value": value,
                    "base_value": levels[path][0],
                    "mean": float(np.nanmean(x)),
                    "base_mean": float(np.nanmean(b)),
                    "delta": delta,
                    "delta_ci_low": lo,
                    "delta_ci_high": hi,
                    "n": int(np.isfinite(x - b).sum()),
                }
            )
    out = pd.DataFrame(rows)
    pivot = out.pivot_table(index=["metric", "parameter"], columns="side", values="delta")
    swing = (pivot["high"] - pivot["low"]).abs().rename("swing")
    out = out.merge(swing.reset_index(), on=["metric", "parameter"], how="left")
    order = {m: i for i, m in enumerate(metrics)}
    out["_m"] = out["metric"].map(order)
    out["_s"] = out["side"].map({"low": 0, "high": 1})
    out = out.sort_values(["_m", "swing", "parameter", "_s"], ascending=[True, False, True, True])
    return out[list(TORNADO_COLUMNS)].reset_index(drop=True)


def tornado_bars(table: pd.DataFrame, *, metric: str | None = None) -> pd.DataFrame:
    """One metric of a :func:`tornado` table as bars: ``parameter``, ``low``, ``high`` (the
    metric's mean with the parameter at its low / high value) and ``base`` (its mean at the
    base scenario), the shape :func:`sim.plots.tornado` draws.

    A table already in that shape is returned as it is.

    Parameters
    ----------
    table
        What :func:`tornado` returned (or ``tornado.csv``).
    metric
        The metric (default: ``savings_vs_api_usd`` when present, else the first).

    Examples
    --------
    >>> t = pd.DataFrame({"metric": "m", "parameter": "p", "side": ["low", "high"],
    ...                   "mean": [1.0, 3.0], "base_mean": 2.0})
    >>> tornado_bars(t).values.tolist()
    [['p', 1.0, 3.0, 2.0]]
    """
    if {"parameter", "low", "high", "base"} <= set(table.columns):
        return table
    missing = {"metric", "parameter", "side", "mean", "base_mean"} - set(table.columns)
    if missing:
        raise ValueError(
            "a sensitivity table needs the columns of sim.tornado (metric, parameter, side, "
            f"mean, base_mean) or parameter, low, high, base; missing {', '.join(sorted(missing))}"
        )
    metrics = list(dict.fromkeys(table["metric"]))
    if metric is None:
        metric = "savings_vs_api_usd" if "savings_vs_api_usd" in metrics else metrics[0]
    elif metric not in metrics:
        raise ValueError(f"no metric {metric!r} in the table (it has {', '.join(metrics)})")
    rows = table[table["metric"] == metric]
    wide = rows.pivot_table(index="parameter", columns="side", values="mean", sort=False)
    base = rows.groupby("parameter", sort=False)["base_mean"].first()
    out = pd.DataFrame(
        {
            "parameter": wide.index.astype(str),
            "low": wide["low"].to_numpy(dtype=float),
            "high": wide["high"].to_numpy(dtype=float),
            "base": base.reindex(wide.index).to_numpy(dtype=float),
        }
    )
    return out.reset_index(drop=True)


def variance_indices(
    result: RunResult | pd.DataFrame,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    bins: int | None = None,
) -> pd.DataFrame:
    """Share of each metric's variance explained by each drawn uncertain parameter.

    Parameters
    ----------
    result
        A :class:`~sim.study.montecarlo.RunResult` of a scenario with an ``uncertainty:`` section
        (or any frame with ``param:<path>`` columns and the metrics), one row per
        replication.
    metrics
        The outputs.
    bins
        Equal-count bins for a numeric parameter (default ``⌊√n⌋``, at least 2); a
        parameter that takes names or few distinct values is grouped by value.

    Returns
    -------
    pandas.DataFrame
        One row per metric × parameter: ``r2`` (squared Pearson correlation: the share a
        straight line explains), ``first_order`` (Var(E[Y | X]) / Var(Y) by binning —
        the correlation ratio with the bias correction of ε², clipped to [0, 1]; for
        independent inputs this is Sobol's first-order index), ``bins`` and ``n``; sorted
        by metric, then ``first_order``, largest first. With few replications (under ~50)
        both are rough.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-np.pi, np.pi, (4000, 3))
    >>> df = pd.DataFrame({"param:x1": x[:, 0], "param:x2": x[:, 1], "param:x3": x[:, 2],
    ...                    "y": ishigami(x)})
    >>> t = variance_indices(df, metrics=["y"]).set_index("parameter")
    >>> round(float(t.loc["x2", "first_order"]), 1), round(float(t.loc["x3", "first_order"]), 1)
    (0.4, 0.0)
    """
    frame = result.replications if isinstance(result, RunResult) else result
    params = [c for c in frame.columns if str(c).startswith(PARAM_PREFIX)]
    if not params:
        raise ValueError("no param:<path> columns: run a scenario with an 'uncertainty:' section")
    rows = []
    for metric in metrics:
        if metric not in frame:
            raise KeyError(f"no metric {metric!r} in the replications")
        for col in params:
            pair = frame[[col, metric]].dropna()
            y = pair[metric].to_numpy(dtype=float)
            n = len(y)
            x = pair[col]
            numeric = pd.api.types.is_numeric_dtype(x) and not pd.api.types.is_bool_dtype(x)
            k = bins or max(2, math.isqrt(n))
            if numeric and x.nunique() > k:
                groups = pd.qcut(x.rank(method="first"), k, labels=False)
            else:
                groups = pd.Series(pd.factorize(x)[0], index=x.index)
            r2 = float("nan")
            if numeric and n > 2 and np.ptp(y) > 0 and x.nunique() > 1:
                r2 = float(np.corrcoef(x.to_numpy(dtype=float), y)[0, 1] ** 2)
            rows.append(
                {
                    "metric": metric,
                    "parameter": str(col)[len(PARAM_PREFIX) :],
                    "r2": r2,
                    "first_order": _correlation_ratio(y, groups.to_numpy()),
                    "bins": int(groups.nunique()),
                    "n": n,
                }
            )
    out = pd.DataFrame(rows, columns=["metric", "parameter", "r2", "first_order", "bins", "n"])
    order = {m: i for i, m in enumerate(metrics)}
    out["_m"] = out["metric"].map(order)
    out = out.sort_values(["_m", "first_order"], ascending=[True, False], na_position="last")
    return out.drop(columns="_m").reset_index(drop=True)


def _correlation_ratio(y: np.ndarray, groups: np.ndarray) -> float:
    """ε² = (SS_between − (k − 1)·MS_within) / SS_total, clipped to [0, 1]."""
    n = len(y)
    labels, inverse = np.unique(groups, return_inverse=True)
    k = len(labels)
    total = float(((y - y.mean()) ** 2).sum())
    if n <= k or total == 0 or k < 2:
        return float("nan")
    sums = np.bincount(inverse, weights=y)
    counts = np.bincount(inverse)
    between = float((sums**2 / counts).sum() - y.sum() ** 2 / n)
    within = total - between
    eps2 = (between - (k - 1) * within / (n - k)) / total
    return float(min(max(eps2, 0.0), 1.0))


#: First-order Sobol indices of :func:`ishigami` with ``a = 7``, ``b = 0.1``.
ISHIGAMI_FIRST_ORDER = (0.3139, 0.4424, 0.0)


def ishigami(x: np.ndarray, a: float = 7.0, b: float = 0.1) -> np.ndarray:
    """The Ishigami function of three inputs uniform on ``[−π, π]`` (rows of ``x``).

    ``sin x1 + a sin² x2 + b x3⁴ sin x1``; its first-order indices are known in closed form
    (:data:`ISHIGAMI_FIRST_ORDER` for the defaults), and ``x3`` acts only through its
    interaction with ``x1``.

    Examples
    --------
    >>> float(ishigami(np.array([[0.0, np.pi / 2, 1.0]])).round(6)[0])
    7.0
    """
    x = np.atleast_2d(x)
    return np.sin(x[:, 0]) + a * np.sin(x[:, 1]) ** 2 + b * x[:, 2] ** 4 * np.sin(x[:, 0])
