"""Sweeps: many scenario points × replications, on any executor, optionally resumable.

The unit of work is one (point, replication): the point's scenario simulated with child
``replication`` of ``SeedSequence(seed)`` — the *same* seeds at every point (common random
numbers), so differences between points are paired and their noise largely cancels. A
unit's result depends only on its scenario and seed, never on where or when it ran: every
executor gives identical numbers, and a resumed sweep equals an uninterrupted one.
"""

from __future__ import annotations

import itertools
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import qmc

from sim.intervals import metric_interval
from sim.replication.budget import check_memory, expected_requests
from sim.scenario import Scenario
from sim.study.executors import Executor, local_processes, make_executor
from sim.study.montecarlo import PARAM_PREFIX, Unit, run_unit
from sim.study.store import SweepStore, scenario_hash
from sim.uncertainty import value_at

__all__ = ["SweepResult", "sweep", "sweep_points"]

#: Entropy word mixed with the seed for the Latin hypercube's own stream, apart from the
#: replications' streams (children of ``SeedSequence(seed)``).
LHS_STREAM = 0x4C4853
_RESERVED = ("point", "replication", "metric", "mean", "ci_low", "ci_high", "n")


@dataclass(frozen=True)
class SweepResult:
    """Replications of every point of a sweep.

    Attributes
    ----------
    scenario
        The base scenario; point ``k`` is ``scenario.with_overrides(points.iloc[k])``.
    parameters
        The swept paths, in order: the parameter columns of :attr:`points` and :attr:`runs`.
    points
        One row per point: ``point`` and each parameter's value.
    runs
        Tidy, one row per point × replication: ``point``, the parameters, ``replication``,
        drawn uncertain parameters (``param:<path>``) and every metric.
    seed, replications
        Root seed; replications per point.
    computed, reused
        Units simulated by this call, and units read back from the store.
    requests_simulated
        ``requests_offered`` summed over the units simulated by this call.
    elapsed_s
        Wall time of the call.
    """

    scenario: Scenario
    parameters: tuple[str, ...]
    points: pd.DataFrame
    runs: pd.DataFrame
    seed: int
    replications: int
    computed: int = 0
    reused: int = 0
    requests_simulated: float = 0.0
    elapsed_s: float = 0.0

    def metrics(self) -> list[str]:
        """The numeric result columns of :attr:`runs` (metrics and drawn parameters)."""
        skip = {"point", "replication", *self.parameters}
        return [
            c
            for c in self.runs.columns
            if c not in skip and pd.api.types.is_numeric_dtype(self.runs[c])
        ]

    def summary(self, *, confidence: float = 0.95) -> pd.DataFrame:
        """One row per point × metric: the point's parameters, ``metric``, ``mean``, its
        ``confidence`` interval ``ci_low``/``ci_high`` over replications, ``n`` (finite
        values) and ``note``.

        The intervals are the run summary's (:func:`sim.intervals.metric_interval`): a
        Student-t interval kept inside the metric's physical range (a cost is not negative,
        an attainment is in [0, 1]); with fewer than two finite values, or the same value in
        every replication, NaN bounds and a ``note`` saying why.

        Examples
        --------
        >>> from sim import load_scenario, sweep
        >>> s = load_scenario("scenarios/chat-startup.yaml").with_overrides(
        ...     {"horizon.duration_s": 60, "horizon.warmup_s": 0})
        >>> res = sweep(s, grid={"fleet.replicas": [1, 2]}, replications=2, executor="serial")
        >>> res.summary().query("metric == 'ttft_p99_s'")[["fleet.replicas", "n"]].values.tolist()
        [[1, 2], [2, 2]]
        """
        metrics = self.metrics()
        long = self.runs.melt(
            id_vars=["point"], value_vars=metrics, var_name="metric", value_name="value"
        )
        long["metric"] = pd.Categorical(long["metric"], categories=metrics)
        rows = []
        for (point, metric), group in long.groupby(["point", "metric"], observed=True, sort=True):
            x = group["value"].to_numpy(dtype=float)
            finite = x[~np.isnan(x)]
            mean, lo, hi, note = metric_interval(str(metric), finite, confidence)
            rows.append((point, str(metric), mean, lo, hi, len(finite), note))
        out = pd.DataFrame(
            rows, columns=["point", "metric", "mean", "ci_low", "ci_high", "n", "note"]
        ).astype({"n": np.int64})
        out = self.points.merge(out, on="point", how="right", sort=False)
        return out[["point", *self.parameters, "metric", "mean", "ci_low", "ci_high", "n", "note"]]


def sweep(
    scenario: Scenario,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    samples: int | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    replications: int = 5,
    seed: int = 0,
    executor: str | Executor | None = "processes",
    workers: int | None = None,
    store: str | Path | None = None,
    progress: bool | None = None,
    uncertainty: bool = True,
) -> SweepResult:
    """Simulate ``replications`` replications at every point of a grid or Latin hypercube.

    Parameters
    ----------
    scenario
        The base scenario.
    grid
        Dotted path → values; the points are the cartesian product (the last path varies
        fastest). Values may be anything :meth:`Scenario.with_overrides` accepts.
    samples, ranges
        Instead of ``grid``: ``samples`` points of a Latin hypercube
        (:class:`scipy.stats.qmc.LatinHypercube`, seeded from ``seed``) over ``ranges``
        (path → ``(low, high)``). A path holding an integer gets integers, each of
        ``low..high`` equally likely.
    replications
        Replications per point; replication ``i`` of every point uses child ``i`` of
        ``SeedSequence(seed)`` (common random numbers across points).
    seed
        Root seed.
    executor, workers
        Where the units run (:mod:`sim.study.executors`): ``"serial"``, ``"processes"`` (local
        processes, the default), ``"dask"`` (an embedded ``LocalCluster``), an
        :class:`~sim.study.executors.Executor` such as ``DaskExecutor(scheduler="tcp://host:8786")``,
        or ``None`` (this process, or ``workers`` local processes when ``workers`` is given and
        not ``1``, as for :func:`sim.run`); ``workers`` processes of ``processes`` / ``dask``
        (``None`` or ``0``: one per core). Results do not depend on it.
    store
        A directory: each finished unit is written there at once, and a rerun of the same
        sweep computes only the missing units (see :mod:`sim.study.store`).
    progress
        A tqdm bar on stderr (units, ETA, simulated requests per second); ``None``: only
        when stderr is a terminal.
    uncertainty
        Draw the scenario's uncertain parameters in every replication (as :func:`sim.run`).

    Raises
    ------
    KeyError
        If a swept path names no field.
    pydantic.ValidationError
        If a point's scenario is invalid (checked for every point before any work).
    ValueError
        For inconsistent arguments; :class:`sim.study.store.StoreMismatch` if ``store`` holds a
        different sweep.

    Examples
    --------
    >>> from sim import load_scenario, sweep
    >>> s = load_scenario("scenarios/chat-startup.yaml").with_overrides(
    ...     {"horizon.duration_s": 60, "horizon.warmup_s": 0})
    >>> res = sweep(s, grid={"fleet.replicas": [1, 2]}, replications=2, executor="serial")
    >>> res.runs[["point", "fleet.replicas", "replication"]].values.tolist()
    [[0, 1, 0], [0, 1, 1], [1, 2, 0], [1, 2, 1]]
    """
    t0 = time.perf_counter()
    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    runner = make_executor(executor, workers=workers)
    design, params = _design(scenario, grid, samples, ranges, seed)
    paths = tuple(design["grid"] if "grid" in design else design["ranges"])
    draws = uncertainty and bool(scenario.uncertainty)
    scenarios = _point_scenarios(scenario, paths, params, uncertainty=draws)
    # the largest point, as many at once as there are local workers, must fit in memory
    at_once = local_processes(runner, len(params) * replications)
    largest = max(scenarios, key=expected_requests, default=None)
    if largest is not None:
        check_memory(largest, concurrent=at_once)

    box = None
    if store is not None:
        box = SweepStore(
            store,
            {
                "scenario_sha256": scenario_hash(scenario),
                "design": design,
                "points": params,
                "seed": seed,
                "uncertainty": draws,
                "replications": replications,
                "scenario_name": scenario.name,
            },
        )
    units = [(p, r) for p in range(len(params)) for r in range(replications)]
    stored = box.done() if box is not None else set()
    rows: dict[tuple[int, int], dict[str, Any]] = {}
    for p, r in units:
        if (p, r) in stored:
            assert box is not None
            rows[(p, r)] = box.read(p, r)
    reused = len(rows)
    todo = [u for u in units if u not in rows]
    children = np.random.SeedSequence(seed).spawn(replications)
    work = [Unit(scenarios[p], children[r], draws) for p, r in todo]
    bar = _Progress(len(units), reused, len(params), replications, progress)
    for p, _ in rows:
        bar.count(p, None)
    try:
        for i, row in runner.imap_unordered(run_unit, work):
            p, r = todo[i]
            if box is not None:
                box.write(p, r, row)
            rows[(p, r)] = row
            bar.count(p, row)
    finally:
        bar.close()

    records = [{"point": p, **params[p], "replication": r, **rows[(p, r)]} for p, r in units]
    points = pd.DataFrame([{"point": k, **v} for k, v in enumerate(params)])
    return SweepResult(
        scenario=scenario,
        parameters=paths,
        points=points,
        runs=pd.DataFrame(records),
        seed=seed,
        replications=replications,
        computed=len(todo),
        reused=reused,
        requests_simulated=bar.requests,
        elapsed_s=time.perf_counter() - t0,
    )


def sweep_points(
    scenario: Scenario,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    samples: int | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    seed: int = 0,
    uncertainty: bool = True,
) -> list[dict[str, Any]]:
    """The points :func:`sweep` would simulate (path → value each), every one validated.

    Raises what :func:`sweep` raises for bad input, without simulating anything.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/chat-startup.yaml")
    >>> sweep_points(s, grid={"fleet.replicas": [1, 2], "fleet.tp": [1]})
    [{'fleet.replicas': 1, 'fleet.tp': 1}, {'fleet.replicas': 2, 'fleet.tp': 1}]
    """
    design, params = _design(scenario, grid, samples, ranges, seed)
    paths = tuple(design["grid"] if "grid" in design else design["ranges"])
    _point_scenarios(
        scenario, paths, params, uncertainty=uncertainty and bool(scenario.uncertainty)
    )
    return params


def _point_scenarios(
    scenario: Scenario, paths: tuple[str, ...], params: list[dict[str, Any]], *, uncertainty: bool
) -> list[Scenario]:
    both = set(paths) & set(scenario.uncertainty or {}) if uncertainty else set()
    if both:
        raise ValueError(f"{', '.join(sorted(both))}: both swept and uncertain; remove one")
    clash = [p for p in paths if p in _RESERVED or p.startswith(PARAM_PREFIX)]
    if clash:
        raise ValueError(f"{clash[0]!r} cannot name a swept parameter (a reserved column)")
    return [scenario.with_overrides(p) for p in params]  # every point valid before any work


def _plain(value: Any) -> Any:
    # numpy scalars (from np.linspace, say) as Python values: stored and compared as JSON
    return value.item() if isinstance(value, np.generic) else value


def _design(
    scenario: Scenario,
    grid: Mapping[str, Sequence[Any]] | None,
    samples: int | None,
    ranges: Mapping[str, tuple[float, float]] | None,
    seed: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The sweep's description (for the store) and its points."""
    if (grid is None) == (samples is None):
        raise ValueError("give either grid= or samples= (with ranges=)")
    if grid is not None:
        if ranges is not None:
            raise ValueError("ranges= goes with samples= (a Latin hypercube), not grid=")
        if not grid:
            raise ValueError("grid= is empty: give at least one path and its values")
        axes: dict[str, list[Any]] = {}
        for path, values in grid.items():
            if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
                raise ValueError(f"grid {path}: expected a list of values, got {values!r}")
            if len(values) == 0:
                raise ValueError(f"grid {path}: no values")
            axes[str(path)] = [_plain(v) for v in values]
        points = [
            dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())
        ]
        return {"grid": axes}, points
    assert samples is not None
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if not ranges:
        raise ValueError("samples= needs ranges= (path -> (low, high))")
    bounds: dict[str, list[float]] = {}
    integer: list[bool] = []
    for path, pair in ranges.items():
        lo, hi = (float(x) for x in pair)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"range {path}: need finite low < high, got {lo:g}:{hi:g}")
        current = value_at(scenario, path)  # KeyError if no such field
        if isinstance(current, bool) or not isinstance(current, int | float):
            raise ValueError(f"range {path}: it holds {current!r}, not a number")
        if isinstance(current, int) and math.ceil(lo) > math.floor(hi):
            raise ValueError(f"range {path}: it holds integers, and none lie in {lo:g}:{hi:g}")
        bounds[str(path)] = [lo, hi]
        integer.append(isinstance(current, int))
    rng = np.random.default_rng(np.random.SeedSequence([seed, LHS_STREAM]))
    unit = qmc.LatinHypercube(d=len(bounds), rng=rng).random(samples)
    points = []
    for u in unit:
        point: dict[str, Any] = {}
        for (path, (lo, hi)), x, is_int in zip(bounds.items(), u, integer, strict=True):
            if is_int:  # each integer of lo..hi gets an equal share of the unit interval
                a, b = math.ceil(lo), math.floor(hi)
                point[path] = int(min(a + math.floor(x * (b - a + 1)), b))
            else:
                point[path] = float(lo + x * (hi - lo))
        points.append(point)
    return {"samples": samples, "ranges": bounds}, points


class _Progress:
    """tqdm on stderr: units done, ETA, points complete, simulated requests per second."""

    def __init__(
        self, total: int, initial: int, n_points: int, replications: int, show: bool | None
    ) -> None:
        self.per_point = replications
        self.n_points = n_points
        self.done_per_point = [0] * n_points
        self.complete = 0
        self.requests = 0.0
        self.t0 = time.perf_counter()
        self.bar: Any = None
        if show is None:
            show = sys.stderr.isatty()
        if show:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, initial=initial, unit="run", file=sys.stderr, dynamic_ncols=True
            )

    def count(self, point: int, row: Mapping[str, Any] | None) -> None:
        self.done_per_point[point] += 1
        if self.done_per_point[point] == self.per_point:
            self.complete += 1
        if row is None:  # read back from the store
            return
        offered = row.get("requests_offered", 0.0)
        self.requests += offered if offered == offered else 0.0
        if self.bar is not None:
            rate = self.requests / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix_str(
                f"points {self.complete}/{self.n_points}, {rate:,.0f} simulated req/s",
                refresh=False,
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
