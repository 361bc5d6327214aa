"""Independent replications and their summary with confidence intervals."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from sim.scenario import Scenario
from sim.simulate import Outcome, simulate

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
    """One row per metric: mean with its t-interval, std, and p5/p50/p95 across replications."""
    rows = []
    for col in replications.columns:
        if col == "replication":
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
        One row per replication: ``replication`` (index) and every metric.
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
    first = simulate(scenario, seed=children[0])
    metrics: list[dict[str, float]] = [first.metrics]
    if progress is not None:
        progress(1, replications)
    if n_workers <= 1:
        for i, child in enumerate(children[1:], start=2):
            metrics.append(simulate(scenario, seed=child).metrics)
            if progress is not None:
                progress(i, replications)
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process holding threads
        with ProcessPoolExecutor(n_workers, mp_context=ctx) as pool:
            for i, m in enumerate(
                pool.map(_replication_metrics, [scenario] * (replications - 1), children[1:]),
                start=2,
            ):
                metrics.append(m)
                if progress is not None:
                    progress(i, replications)
    rows = [{"replication": i, **m} for i, m in enumerate(metrics)]
    return RunResult(scenario, pd.DataFrame(rows), first, seed)


def _replication_metrics(scenario: Scenario, seed: np.random.SeedSequence) -> dict[str, float]:
    # top-level so worker processes can import it
    return simulate(scenario, seed=seed).metrics
