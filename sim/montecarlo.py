"""Independent replications and their summary with confidence intervals."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from sim.scenario import Scenario
from sim.simulate import Outcome, simulate
from sim.uncertainty import realise

# (label, metric of the simulated option, metric of the all-API baseline)
COMPARISONS = (
    ("cost per month (USD)", "total_cost_usd_per_month", "api_only_cost_usd_per_month"),
    ("cost per 1M tokens (USD)", "cost_per_1m_tokens_usd", "api_only_cost_per_1m_tokens_usd"),
    ("TTFT p50 (s)", "ttft_p50_s", "api_only_ttft_p50_s"),
    ("TTFT p99 (s)", "ttft_p99_s", "api_only_ttft_p99_s"),
    ("TPOT p50 (s)", "tpot_p50_s", "api_only_tpot_p50_s"),
    ("E2E p99 (s)", "e2e_p99_s", "api_only_e2e_p99_s"),
    ("SLO attainment", "slo_attainment", "api_only_slo_attainment"),
    ("requests failed", "requests_failed", "api_only_requests_failed"),
)

SUMMARY_COLUMNS = ("metric", "mean", "ci_low", "ci_high", "std", "p5", "p50", "p95", "n")
#: Prefix of the columns that record a replication's drawn uncertain parameters.
PARAM_PREFIX = "param:"


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


def summarize(replications: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """One row per metric: mean with its t-interval, std, and p5/p50/p95 across replications.

    Numeric columns only: a drawn parameter that is a name (``param:fleet.gpu``) is skipped.
    """
    rows = []
    for col in replications.columns:
        if col == "replication" or not pd.api.types.is_numeric_dtype(replications[col]):
            continue
        x = replications[col].to_numpy(dtype=float)
        finite = x[~np.isnan(x)]
        mean, lo, hi = t_interval(finite, confidence)
        if len(finite):
            p5, p50, p95 = np.percentile(finite, [5, 50, 95])
            std = float(finite.std(ddof=1)) if len(finite) > 1 else float("nan")
        else:
            p5 = p50 = p95 = std = float("nan")
        rows.append((col, mean, lo, hi, std, p5, p50, p95, len(finite)))
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


@dataclass(frozen=True)
class RunResult:
    """Independent replications of one scenario.

    Attributes
    ----------
    scenario
        What was simulated.
    replications
        One row per replication: ``replication`` (index), the values drawn for the
        scenario's uncertain parameters (``param:<path>``, when it has an ``uncertainty``
        section) and every metric.
    first
        The full :class:`~sim.simulate.Outcome` of the first replication (per-request
        records, time series).
    seed
        Root seed of the run.
    """

    scenario: Scenario
    replications: pd.DataFrame
    first: Outcome
    seed: int

    def summary(self, *, confidence: float = 0.95) -> pd.DataFrame:
        """Mean, ``confidence`` t-interval, std and p5/p50/p95 of every metric."""
        return summarize(self.replications, confidence=confidence)

    def compare(self, *, confidence: float = 0.95) -> pd.DataFrame:
        """The scenario's option (fleet or hybrid) side by side with sending everything to the
        API, for the same requests in every replication.

        One row per quantity: ``option`` and ``api_only`` means, and their paired difference
        (option − API) with its t-interval over replications; common random numbers make
        that interval much tighter than the two means' intervals suggest. Empty when the
        scenario has no ``api`` section.
        """
        rows = []
        reps = self.replications
        for label, mine, theirs in COMPARISONS:
            if mine not in reps or theirs not in reps:
                continue
            a = reps[mine].to_numpy(dtype=float)
            b = reps[theirs].to_numpy(dtype=float)
            diff, lo, hi = t_interval(a - b, confidence)
            rows.append((label, float(np.nanmean(a)), float(np.nanmean(b)), diff, lo, hi))
        return pd.DataFrame(
            rows,
            columns=["quantity", "option", "api_only", "difference", "diff_ci_low", "diff_ci_high"],
        )

    def _repr_html_(self) -> str:
        table = self.summary().set_index("metric")
        keep = [m for m in table.index if "[" not in m]
        return (
            f"<b>{self.scenario.name}</b>: {len(self.replications)} replications, seed "
            f"{self.seed}" + table.loc[keep].to_html(float_format=lambda v: f"{v:.4g}")
        )


def run(
    scenario: Scenario,
    *,
    replications: int = 10,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
    uncertainty: bool = True,
) -> RunResult:
    """Run ``replications`` independent replications of ``scenario``.

    Replication ``i`` uses the ``i``-th child of ``SeedSequence(seed)``, so results do not
    depend on how many replications run, in which order, or in how many processes.

    Parameters
    ----------
    scenario
        The scenario to simulate.
    replications
        Number of independent replications.
    seed
        Root seed.
    progress
        Called as ``progress(done, total)`` after each replication.
    workers
        Local worker processes (``1``: in this process; ``0``: one per CPU core).
    uncertainty
        Draw the scenario's uncertain parameters (its ``uncertainty`` section) afresh in
        every replication, from the replication's own substream
        (:data:`sim.uncertainty.STREAM_UNCERTAINTY`), and record them as ``param:<path>``
        columns. ``False`` simulates the scenario's nominal values. No effect without
        the section.

    Examples
    --------
    >>> from sim import load_scenario, run
    >>> s = load_scenario("scenarios/chat-startup.yaml").with_overrides(
    ...     {"horizon.duration_s": 120, "horizon.warmup_s": 0})
    >>> res = run(s, replications=2, seed=3)
    >>> list(res.summary().columns)[:4]
    ['metric', 'mean', 'ci_low', 'ci_high']
    """
    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    if workers < 0:
        raise ValueError(f"workers must be 0 (all cores) or more, got {workers}")
    children = np.random.SeedSequence(seed).spawn(replications)
    n_workers = min(workers or (os.cpu_count() or 1), replications)
    draws = uncertainty and bool(scenario.uncertainty)
    first, params = replicate(scenario, children[0], uncertainty=draws)
    rows: list[dict[str, Any]] = [_row(params, first.metrics)]
    if progress is not None:
        progress(1, replications)
    if n_workers <= 1:
        for i, child in enumerate(children[1:], start=2):
            rows.append(replication_row(scenario, child, uncertainty=draws))
            if progress is not None:
                progress(i, replications)
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads
        n = replications - 1
        with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
            for i, row in enumerate(
                pool.map(replication_row, [scenario] * n, children[1:], [draws] * n), start=2
            ):
                rows.append(row)
                if progress is not None:
                    progress(i, replications)
    frame = pd.DataFrame([{"replication": i, **row} for i, row in enumerate(rows)])
    return RunResult(scenario, frame, first, seed)


def replicate(
    scenario: Scenario, seed: np.random.SeedSequence, *, uncertainty: bool = True
) -> tuple[Outcome, dict[str, Any]]:
    """One replication: the outcome, and the uncertain parameters' drawn values by path
    (empty when ``uncertainty`` is off or the scenario has no such section)."""
    params: dict[str, Any] = {}
    if uncertainty and scenario.uncertainty:
        scenario, params = realise(scenario, seed)
    return simulate(scenario, seed=seed), params


def replication_row(
    scenario: Scenario, seed: np.random.SeedSequence, uncertainty: bool = True
) -> dict[str, Any]:
    """One replication as a row: ``param:<path>`` drawn values, then every metric.

    Top-level (and given only picklable values) so that worker processes and Dask workers
    can run it.
    """
    outcome, params = replicate(scenario, seed, uncertainty=uncertainty)
    return _row(params, outcome.metrics)


def _row(params: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    return {**{f"{PARAM_PREFIX}{k}": v for k, v in params.items()}, **metrics}
