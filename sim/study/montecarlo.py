"""Independent replications and their summary with confidence intervals."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from sim.intervals import (
    Interval,
    Probability,
    bootstrap_interval,
    event_probability,
    relative_half_width,
    summarize,
    t_interval,
)
from sim.replication.budget import check_memory
from sim.replication.simulate import Outcome, simulate
from sim.scenario import Scenario, option_scenario
from sim.seeds import replication_seeds
from sim.study.capacity import CapacityAtSLO, capacity_at_slo, capacity_scenario, gpu_usd_per_month
from sim.study.decide import Decision, decide
from sim.study.executors import (
    Executor,
    SerialExecutor,
    local_processes,
    make_executor,
    session,
)
from sim.study.options import Option, resolve_options
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
    # with prompt identity only: the API's prompt cache
    ("API cached input share", "api_cached_input_share", "api_only_cached_input_share"),
    (
        "API caching saves (USD/month)",
        "api_cache_savings_usd_per_month",
        "api_only_cache_savings_usd_per_month",
    ),
)

#: Metrics whose precision ``run(target_rel_ci=...)`` controls by default.
PRECISION_METRICS = ("total_cost_usd", "ttft_p99_s")
#: Prefix of the columns that record a replication's drawn uncertain parameters.
PARAM_PREFIX = "param:"


@dataclass(frozen=True)
class Precision:
    """Outcome of a run with a precision target (``run(target_rel_ci=...)``).

    Attributes
    ----------
    target_rel_ci
        Target: the ``confidence`` t-interval's half-width divided by ``|mean|``.
    confidence
        Level of those intervals.
    metrics
        The metrics held to the target.
    rel_ci
        The relative half-width each metric reached (metric → value).
    reached
        Whether every metric met the target; ``False`` means ``max_replications`` stopped
        the run first.
    max_replications
        The cap.
    """

    target_rel_ci: float
    confidence: float
    metrics: tuple[str, ...]
    rel_ci: Mapping[str, float]
    reached: bool
    max_replications: int


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
        The full :class:`~sim.replication.simulate.Outcome` of the first replication (per-request
        records, time series).
    seed
        Root seed of the run.
    precision
        With a precision target, whether it was reached (:class:`Precision`); else None.
    uncertainty
        Whether the scenario's uncertain parameters were drawn in every replication.
    executor
        Where the run's replications ran (:func:`sim.study.executors.make_executor` of its
        ``executor`` and ``workers``); :meth:`option_runs` runs there too.
    """

    scenario: Scenario
    replications: pd.DataFrame
    first: Outcome
    seed: int
    precision: Precision | None = None
    uncertainty: bool = True
    executor: Executor = field(default=SerialExecutor(), compare=False)
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def options(self) -> list[Option]:
        """The options the scenario is answered by (:func:`sim.study.options.resolve_options`)."""
        return resolve_options(self.scenario)

    def option_runs(self) -> pd.DataFrame:
        """Every option simulated on the same requests as this run's replications.

        One row per replication and option: ``replication``, ``option``, the drawn
        uncertain parameters and every metric. Replication ``i`` of every option uses the
        seed of replication ``i`` (common random numbers), so differences between options
        are paired. An option that is the scenario as run reuses its replications; the
        others are simulated on first use (on this run's :attr:`executor`) and kept.
        """
        if "option_runs" not in self._cache:
            self._cache["option_runs"] = _option_runs(self)
        frame: pd.DataFrame = self._cache["option_runs"]
        return frame

    def with_option_runs(self, runs: pd.DataFrame) -> RunResult:
        """A copy whose :meth:`option_runs` are ``runs`` (as read back from ``options.csv``)."""
        copy = dataclasses.replace(self, _cache={})
        copy._cache["option_runs"] = runs
        return copy

    @property
    def options_simulated(self) -> bool:
        """Whether :meth:`option_runs` is at hand without simulating."""
        return "option_runs" in self._cache

    def capacity(
        self,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        tolerance: float = 0.1,
        replications: int = 1,
        progress: Callable[[int, float, bool], None] | None = None,
    ) -> CapacityAtSLO:
        """The capacity at the SLO of this run's fleet and workload, and the share of it the
        traffic uses (:func:`sim.study.capacity.capacity_at_slo`, with this run's seed).

        The bill split is this run's mean GPU bill per month. When the capacity scenario is
        the scenario as run (a fixed self-hosted fleet, nominal values), the run's own first
        replications stand for the ``s = 1`` point. Kept after the first call (and
        :meth:`with_capacity`); a call with other settings searches again.
        """
        key = (None if cache_dir is None else str(cache_dir), tolerance, replications)
        held = self._cache.get("capacity")
        if held is not None and (self._cache.get("capacity_key") in (None, key)):
            found: CapacityAtSLO = held
            return found
        base, _ = capacity_scenario(self.scenario)
        nominal = self.scenario.model_copy(update={"options": None, "uncertainty": None})
        same = base == nominal and not self.uncertainty
        known = (
            [{str(k): v for k, v in row.items()} for row in self.replications.to_dict("records")]
            if same
            else None
        )
        found = capacity_at_slo(
            self.scenario,
            seed=self.seed if self.seed >= 0 else 0,
            replications=replications,
            tolerance=tolerance,
            gpu_bill_usd_per_month=gpu_usd_per_month(self.replications),
            known=known,
            cache_dir=cache_dir,
            executor=self.executor,
            progress=progress,
        )
        self._cache["capacity"] = found
        self._cache["capacity_key"] = key
        return found

    def with_capacity(self, capacity: CapacityAtSLO) -> RunResult:
        """A copy whose :meth:`capacity` is ``capacity`` (as read back from ``capacity.json``)."""
        copy = dataclasses.replace(self, _cache=dict(self._cache))
        copy._cache["capacity"] = capacity
        copy._cache["capacity_key"] = None
        return copy

    @property
    def capacity_found(self) -> CapacityAtSLO | None:
        """The capacity at the SLO when it is at hand without simulating, else None."""
        found: CapacityAtSLO | None = self._cache.get("capacity")
        return found

    def decision(self, *, confidence: float = 0.95) -> Decision:
        """Constraints first, then the cheapest feasible option with its CI, P(cheapest)
        and payback; see :func:`sim.study.decide.decide`."""
        return decide(self.scenario, self.options(), self.option_runs(), confidence=confidence)

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
            rows.append((label, _mean(a), _mean(b), diff, lo, hi))
        return pd.DataFrame(
            rows,
            columns=["quantity", "option", "api_only", "difference", "diff_ci_low", "diff_ci_high"],
        )

    def interval(
        self,
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

        See :func:`sim.intervals.bootstrap_interval` (``stat``: ``mean``, ``median``,
        ``pNN`` or a function; ``over``: a ratio with paired resampling).
        """
        return bootstrap_interval(
            self.replications,
            metric,
            stat,
            over=over,
            confidence=confidence,
            method=method,
            n_resamples=n_resamples,
            seed=seed,
        )

    def probability(
        self, event: str | Callable[[pd.DataFrame], pd.Series], *, confidence: float = 0.95
    ) -> Probability:
        """Share of replications in which ``event`` holds, with its Wilson interval.

        See :func:`sim.intervals.event_probability` (``event``: a 0/1 metric such as
        ``"self_host_cheaper"``, ``"slo_attainment >= 0.99"``, or a function).
        """
        return event_probability(self.replications, event, confidence=confidence)

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
    executor: str | Executor | None = None,
    workers: int | None = None,
    uncertainty: bool = True,
    target_rel_ci: float | None = None,
    max_replications: int = 200,
    metrics: Sequence[str] = PRECISION_METRICS,
    confidence: float = 0.95,
    extend: RunResult | None = None,
) -> RunResult:
    """Run ``replications`` independent replications of ``scenario`` (or more, to a precision).

    Replication ``i`` uses the ``i``-th child of ``SeedSequence(seed)``, so results do not
    depend on how many replications run, in which order, or where: the first replication
    (whose full :class:`~sim.replication.simulate.Outcome` is kept) runs in this process,
    the others on ``executor``.

    Parameters
    ----------
    scenario
        The scenario to simulate.
    replications
        Number of independent replications (with ``target_rel_ci``: the first batch).
    seed
        Root seed.
    progress
        Called as ``progress(done, total)`` after each replication (``total`` grows as a
        precision target asks for more).
    executor, workers
        Where the replications run (:mod:`sim.study.executors`): ``"serial"``, ``"processes"``,
        ``"dask"`` or an :class:`~sim.study.executors.Executor`; ``workers`` processes of
        ``processes`` / ``dask`` (``None`` or ``0``: one per core). By default
        (``executor=None``) in this process, or, when ``workers`` is given and not ``1``, in
        that many local processes (``workers=2``). A pool or cluster is started at the first
        batch of two or more replications and kept for later batches.
    uncertainty
        Draw the scenario's uncertain parameters (its ``uncertainty`` section) afresh in
        every replication, from the replication's own substream
        (:data:`sim.uncertainty.STREAM_UNCERTAINTY`), and record them as ``param:<path>``
        columns. ``False`` simulates the scenario's nominal values. No effect without
        the section.
    target_rel_ci
        Keep adding replications until, for every metric in ``metrics``, the
        ``confidence`` t-interval's half-width is at most ``target_rel_ci × |mean|`` (e.g.
        ``0.02``: ±2 %), or ``max_replications`` is reached; :attr:`RunResult.precision`
        says which. Each batch is sized from the current relative half-width (half-widths
        shrink as 1/√n), at least 2 and at most doubling the count — the same whatever
        the executor, so the result does not depend on it.
    max_replications
        Cap on the replications a precision target may ask for.
    metrics
        The metrics held to ``target_rel_ci``.
    confidence
        Level of the intervals ``target_rel_ci`` refers to.
    extend
        An earlier result of this scenario, seed and ``uncertainty``: its replications are
        kept and the new ones continue its indices, so ``run(s, replications=5)`` extended
        to 10 equals ``run(s, replications=10)`` exactly.

    Raises
    ------
    ValueError
        For inconsistent arguments, or an ``extend`` of another scenario, seed or setting.
    KeyError
        If a metric of ``metrics`` is not produced (with ``target_rel_ci``).

    Examples
    --------
    >>> from sim import load_scenario, run
    >>> s = load_scenario("scenarios/chat-startup.yaml").with_overrides(
    ...     {"horizon.duration_s": 120, "horizon.warmup_s": 0})
    >>> res = run(s, replications=2, seed=3)
    >>> list(res.summary().columns)[:4]
    ['metric', 'mean', 'ci_low', 'ci_high']
    >>> more = run(s, replications=3, seed=3, extend=res)
    >>> more.replications["replication"].tolist()
    [0, 1, 2]
    """
    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    runner = make_executor(executor, workers=workers)
    if target_rel_ci is not None:
        if not target_rel_ci > 0:
            raise ValueError(f"target_rel_ci must be above 0, got {target_rel_ci}")
        if max_replications < 2:
            raise ValueError(f"max_replications must be at least 2, got {max_replications}")
        if not metrics:
            raise ValueError("target_rel_ci needs at least one metric")
    # refused before any work when the replications running at once cannot fit in memory
    # (the calling process keeps the first replication's records too)
    at_once = 1 + (local_processes(runner, replications - 1) if replications > 1 else 0)
    check_memory(scenario, concurrent=at_once)
    draws = uncertainty and bool(scenario.uncertainty)
    rows: list[dict[str, Any]] = []
    first: Outcome | None = None
    if extend is not None:
        _check_extend(extend, scenario, seed, draws)
        rows = [
            {str(k): v for k, v in r.items() if k != "replication"}
            for r in extend.replications.to_dict("records")
        ]
        first = extend.first
    goal = max(replications, len(rows))
    precision = None
    with session(runner) as live:

        def grow(total: int) -> None:
            nonlocal first
            children = replication_seeds(seed, len(rows), total)
            if children and children[0].spawn_key == (0,):  # in this process, kept whole
                first, params = replicate(scenario, children[0], uncertainty=draws)
                rows.append(_row(params, first.metrics))
                if progress is not None:
                    progress(len(rows), total)
                children = children[1:]
            work = [Unit(scenario, child, draws) for child in children]
            done = len(rows)

            def count(_: int) -> None:
                nonlocal done
                done += 1
                if progress is not None:
                    progress(done, total)

            rows.extend(_rows(live, work, count))

        grow(goal)
        if target_rel_ci is not None:
            while True:
                frame = pd.DataFrame(rows)
                rel = _relative(frame, metrics, confidence)
                worst = max(rel.values())
                reached = all(v <= target_rel_ci for v in rel.values())
                n = len(rows)
                if reached or n >= max_replications:
                    break
                # half-widths shrink as 1/sqrt(n): ask for what the worst metric needs
                need = n * (worst / target_rel_ci) ** 2 if math.isfinite(worst) else 2 * n
                grow(int(min(max_replications, max(n + 2, min(2 * n, math.ceil(need))))))
            precision = Precision(
                target_rel_ci, confidence, tuple(metrics), rel, reached, max_replications
            )
    assert first is not None
    frame = pd.DataFrame([{"replication": i, **row} for i, row in enumerate(rows)])
    return RunResult(scenario, frame, first, seed, precision, draws, runner)


def _option_runs(result: RunResult) -> pd.DataFrame:
    options = result.options()
    base = result.scenario.model_copy(update={"options": None})
    children = replication_seeds(result.seed, 0, len(result.replications))
    parts = []
    jobs: list[tuple[Option, np.random.SeedSequence]] = []
    for option in options:
        if option_scenario(result.scenario, option.overrides) == base:
            parts.append(result.replications.assign(option=option.name))
        else:
            jobs += [(option, child) for child in children]
    if jobs:
        work = [
            Unit(result.scenario, child, result.uncertainty, dict(option.overrides))
            for option, child in jobs
        ]
        frame = pd.DataFrame(_rows(result.executor, work))
        frame.insert(0, "replication", [child.spawn_key[-1] for _, child in jobs])
        frame["option"] = [option.name for option, _ in jobs]
        parts.append(frame)
    runs = pd.concat(parts, ignore_index=True)
    order = runs["option"].map({o.name: k for k, o in enumerate(options)})
    runs = runs.iloc[np.lexsort((runs["replication"].to_numpy(), order.to_numpy()))]
    rest = [c for c in runs.columns if c not in ("replication", "option")]
    return runs[["replication", "option", *rest]].reset_index(drop=True)


def _check_extend(extend: RunResult, scenario: Scenario, seed: int, draws: bool) -> None:
    if extend.seed != seed:
        raise ValueError(f"extend: the earlier run used seed {extend.seed}, not {seed}")
    if extend.scenario != scenario:
        raise ValueError("extend: the earlier run simulated a different scenario")
    if extend.uncertainty != draws:
        raise ValueError("extend: the earlier run drew uncertain parameters differently")


def _relative(frame: pd.DataFrame, metrics: Sequence[str], confidence: float) -> dict[str, float]:
    out = {}
    for m in metrics:
        if m not in frame:
            raise KeyError(f"no metric {m!r} to hold to target_rel_ci")
        out[m] = relative_half_width(frame[m].to_numpy(dtype=float), confidence)
    # NaN (too few finite values) never meets a target
    return {k: (float("inf") if math.isnan(v) else v) for k, v in out.items()}


def _rows(
    runner: Executor, work: list[Unit], done: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """``run_unit`` of every unit, in order; ``done(i)`` as unit ``i`` finishes. A single
    unit runs in this process: a pool or cluster would cost more than it saves."""
    out: list[dict[str, Any]] = [{}] * len(work)
    for i, row in (runner if len(work) > 1 else SerialExecutor()).imap_unordered(run_unit, work):
        out[i] = row
        if done is not None:
            done(i)
    return out


def replicate(
    scenario: Scenario,
    seed: np.random.SeedSequence,
    *,
    uncertainty: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Outcome, dict[str, Any]]:
    """One replication: the outcome, and the uncertain parameters' drawn values by path
    (empty when ``uncertainty`` is off or the scenario has no such section).

    ``overrides`` (an option's) are applied after the uncertain parameters are drawn, so
    every option of a replication sees the same draws and the option's own values win.
    """
    params: dict[str, Any] = {}
    if uncertainty and scenario.uncertainty:
        scenario, params = realise(scenario, seed)
    if overrides is not None:
        scenario = option_scenario(scenario, overrides)
    return simulate(scenario, seed=seed), params


def replication_row(
    scenario: Scenario,
    seed: np.random.SeedSequence,
    uncertainty: bool = True,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One replication as a row: ``param:<path>`` drawn values, then every metric.

    Top-level (and given only picklable values) so that worker processes and Dask workers
    can run it.
    """
    outcome, params = replicate(scenario, seed, uncertainty=uncertainty, overrides=overrides)
    return _row(params, outcome.metrics)


@dataclass(frozen=True)
class Unit:
    """One unit of work: a scenario, a replication's seed, whether to draw the uncertain
    parameters, and an option's overrides (picklable; see :func:`run_unit`)."""

    scenario: Scenario
    seed: np.random.SeedSequence
    uncertainty: bool
    overrides: Mapping[str, Any] | None = None


def run_unit(unit: Unit) -> dict[str, Any]:
    """:func:`replication_row` of one unit (top-level, for executors' workers)."""
    return replication_row(unit.scenario, unit.seed, unit.uncertainty, unit.overrides)


def _row(params: dict[str, Any], metrics: dict[str, float]) -> dict[str, Any]:
    return {**{f"{PARAM_PREFIX}{k}": v for k, v in params.items()}, **metrics}


def _mean(x: np.ndarray) -> float:
    # np.nanmean, without its warning when every value is NaN
    kept = x[~np.isnan(x)]
    return float(kept.mean()) if kept.size else float("nan")
