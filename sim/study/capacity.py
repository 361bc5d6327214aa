"""Capacity at the SLO: how much of what the fleet could serve within its SLO the traffic uses.

GPU occupancy (``gpu_busy_fraction``) says how often a GPU had *any* work; with continuous
batching a GPU running a batch of 3 is as "busy" as one running 200. The share the guide
means is another: the offered load divided by the load at which the SLO would just hold,
for this fleet and this workload's shape. :func:`capacity_at_slo` finds that load by
simulation. It scales the traffic by a factor ``s`` (:func:`sim.workload.scale.scale_workload`:
the same arrival process, burstiness, profile and window, only faster), and searches for the
largest ``s`` at which every class still meets its SLO attainment target:

1. ``s = 1`` first, then doubling (or halving) until the target fails (or holds): a bracket
   ``[lo, hi]`` with the target holding at ``lo`` and failing at ``hi``;
2. bisection in ``log s`` until ``hi / lo ≤ 1 + tolerance``.

``s* = lo``, the largest factor seen to hold (so the capacity is never overstated by more
than the noise of the replications); ``used_share = 1 / s*``.

What is held fixed: the fleet at the scenario's size (an autoscaled fleet at its
``max_replicas``, said in :attr:`CapacityAtSLO.note`), every class the open model may serve on
the fleet (``routing: self_host_only``; classes with ``open_model_ok: false`` never reach it
and are left out), the scenario's nominal values (its uncertain parameters are not drawn),
and the replications' seeds (replication ``i`` uses child ``i`` of ``SeedSequence(seed)`` at
every ``s``: common random numbers, so the target's verdict moves with ``s``, not with the
draws). A class's target is its ``slo.attainment``, or :data:`DEFAULT_ATTAINMENT` when it
has none; it holds when the mean attainment over the replications meets it.

Results can be cached on disk (``cache_dir``): one JSON file per search, keyed by a hash of
the resolved scenario, the seed, the search's settings and the package's version; a hit
returns the same numbers without simulating.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.replication.simulate import simulate
from sim.scenario import Scenario
from sim.seeds import replication_seeds
from sim.study.executors import Executor, SerialExecutor, make_executor, session
from sim.study.store import scenario_hash
from sim.workload.scale import scale_workload

__all__ = [
    "DEFAULT_ATTAINMENT",
    "CapacityAtSLO",
    "capacity_at_slo",
    "capacity_scenario",
    "gpu_usd_per_month",
]

#: The attainment target of a class whose SLO states none.
DEFAULT_ATTAINMENT = 0.99
#: Bump when the cache's contents change meaning.
CACHE_FORMAT = 1


@dataclass(frozen=True)
class CapacityAtSLO:
    """The load at which the SLO would just hold, and the share of it the traffic uses.

    Attributes
    ----------
    scale
        ``s*``: the largest traffic multiplier at which every class met its target (the
        lower end of the final bracket); NaN when the target failed even at ``min_scale``.
    scale_high
        The smallest multiplier at which a target failed (``inf`` when none failed up to
        ``max_scale``: the capacity is at least ``scale``).
    offered_rps
        The traffic the fleet would carry, requests/s: the mean ``offered_rps`` of the
        ``s = 1`` replications.
    capacity_rps
        ``scale × offered_rps``, requests/s: the capacity at the SLO.
    used_share
        ``1 / scale``: the share of the capacity at the SLO the traffic uses.
    gpu_usd_per_month
        The fleet's GPU bill per month (NaN when unknown).
    used_usd_per_month, unused_usd_per_month
        The bill split on that basis: ``bill × used_share`` of capacity used and the rest
        paid for but unused (``used_share`` capped at 1 for the split).
    targets
        Class name → the attainment target judged.
    replicas
        The fleet size the capacity is for.
    note
        What a reader must know: an autoscaled fleet judged at its maximum, default
        targets, classes left out, an open bound.
    evaluations
        One row per multiplier simulated, in the order tried: ``scale``, ``holds``,
        ``offered_rps``, ``gpu_usd_per_month`` and each class's mean ``slo_attainment``.
    tolerance, replications, seed, max_scale
        The search's settings.
    cached
        Whether the result was read from the cache (nothing simulated).
    """

    scale: float
    scale_high: float
    offered_rps: float
    capacity_rps: float
    used_share: float
    gpu_usd_per_month: float
    used_usd_per_month: float
    unused_usd_per_month: float
    targets: Mapping[str, float]
    replicas: int
    note: str
    evaluations: pd.DataFrame = field(repr=False)
    tolerance: float
    replications: int
    seed: int
    max_scale: float
    cached: bool = False

    def with_bill(self, bill: float) -> CapacityAtSLO:
        """The same capacity with ``bill`` (USD per month) split on its basis."""
        used, unused = _split(bill, self.used_share)
        return replace(
            self, gpu_usd_per_month=bill, used_usd_per_month=used, unused_usd_per_month=unused
        )

    def describe(self) -> str:
        """One sentence: the capacity at the SLO, the share used and the bill's split.

        Examples
        --------
        >>> c = CapacityAtSLO(2.0, 2.2, 3.0, 6.0, 0.5, 100.0, 50.0, 50.0, {"chat": 0.99}, 1,
        ...                   "", pd.DataFrame(), 0.1, 1, 0, 64.0)
        >>> c.describe()  # doctest: +NORMALIZE_WHITESPACE
        'the traffic uses 50% of the capacity at the SLO: the SLO holds up to ×2 the traffic
        (6 req/s; it fails at ×2.2); GPU bill $100/month: $50 used, $50 paid for but unused'
        """
        if self.used_share == 0.0:
            return "no request arrived in the window: the traffic uses none of the capacity" + (
                f"; GPU bill ${self.gpu_usd_per_month:,.0f}/month, all paid for but unused"
                if math.isfinite(self.gpu_usd_per_month)
                else ""
            )
        if not math.isfinite(self.scale):
            return (
                f"the SLO fails even at ×{self.scale_high:.3g} of the traffic: no load meets it "
                "on this fleet"
            )
        bound = (
            f"it fails at ×{self.scale_high:.3g}"
            if math.isfinite(self.scale_high)
            else f"searched up to ×{self.max_scale:g}: at least this"
        )
        text = (
            f"the traffic uses {self.used_share:.0%} of the capacity at the SLO: the SLO holds "
            f"up to ×{self.scale:.3g} the traffic ({self.capacity_rps:.3g} req/s; {bound})"
        )
        if math.isfinite(self.gpu_usd_per_month):
            text += (
                f"; GPU bill ${self.gpu_usd_per_month:,.0f}/month: "
                f"${self.used_usd_per_month:,.0f} used, "
                f"${self.unused_usd_per_month:,.0f} paid for but unused"
            )
        return text

    def to_dict(self) -> dict[str, Any]:
        """The scalar fields, JSON-ready (NaN as null, infinity as ``"inf"``; the
        evaluations are :attr:`evaluations`)."""
        return {
            "scale": _json(self.scale),
            "scale_high": _json(self.scale_high),
            "offered_rps": _json(self.offered_rps),
            "capacity_rps": _json(self.capacity_rps),
            "used_share": _json(self.used_share),
            "gpu_usd_per_month": _json(self.gpu_usd_per_month),
            "used_usd_per_month": _json(self.used_usd_per_month),
            "unused_usd_per_month": _json(self.unused_usd_per_month),
            "targets": dict(self.targets),
            "replicas": self.replicas,
            "note": self.note,
            "tolerance": self.tolerance,
            "replications": self.replications,
            "seed": self.seed,
            "max_scale": self.max_scale,
            "cached": self.cached,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], evaluations: pd.DataFrame) -> CapacityAtSLO:
        """The inverse of :meth:`to_dict` (as read back from ``capacity.json``)."""
        floats = ("scale", "scale_high", "offered_rps", "capacity_rps", "used_share",
                  "gpu_usd_per_month", "used_usd_per_month", "unused_usd_per_month",
                  "tolerance", "max_scale")  # fmt: skip
        values = {k: _float(data.get(k)) for k in floats}
        return cls(
            **values,
            targets={str(k): float(v) for k, v in dict(data.get("targets") or {}).items()},
            replicas=int(data.get("replicas", 0)),
            note=str(data.get("note", "")),
            evaluations=evaluations,
            replications=int(data.get("replications", 1)),
            seed=int(data.get("seed", 0)),
            cached=bool(data.get("cached", False)),
        )


def _json(value: float) -> float | str | None:
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def _float(value: Any) -> float:
    # JSON has no inf/NaN: they travel as null or as the strings Python writes
    if value is None:
        return math.nan
    return float(value)


def capacity_scenario(scenario: Scenario) -> tuple[Scenario, str]:
    """The scenario whose capacity is searched, and what was changed to get it.

    The fleet at its size (an autoscaler's ``max_replicas``, autoscaler removed), routing
    ``self_host_only``, classes the open model may not serve left out, no options and no
    uncertain parameters.

    Raises
    ------
    ValueError
        When no class may run on the fleet.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/diurnal-autoscaled-spot.yaml")
    >>> fixed, note = capacity_scenario(s)
    >>> fixed.fleet.autoscaler is None, fixed.fleet.replicas == s.fleet.autoscaler.max_replicas
    (True, True)
    """
    data = scenario.model_dump(mode="python", exclude={"options", "uncertainty"})
    notes = []
    pooled = scenario.pooled
    sections = data["fleet"]["pools"] if pooled else [data["fleet"]]
    for name, fleet, section in zip(scenario.pool_names, scenario.pools, sections, strict=True):
        if fleet.autoscaler is None:
            continue
        section["replicas"] = fleet.autoscaler.max_replicas
        section["autoscaler"] = None
        what = f"pool {name}" if pooled else "fleet"
        notes.append(
            f"autoscaled {what}: judged at its maximum size, {fleet.autoscaler.max_replicas} "
            "replicas"
        )
    kept = [c for c in data["workload"]["classes"] if c["open_model_ok"]]
    left = [c["name"] for c in data["workload"]["classes"] if not c["open_model_ok"]]
    if not kept:
        raise ValueError("no class may run on the fleet (open_model_ok: false everywhere)")
    if left:
        notes.append(f"left out (the open model may not serve them): {', '.join(left)}")
    data["workload"]["classes"] = kept
    if scenario.routing.policy != "self_host_only":
        notes.append(f"every class on the fleet (the scenario routes {scenario.routing.policy})")
    data["routing"] = {"policy": "self_host_only"}
    return Scenario.model_validate(data), "; ".join(notes)


def month_factor(replications: pd.DataFrame) -> np.ndarray | None:
    """Per replication, what turns a window's USD into USD per month: the run's own
    ``*_per_month`` over the window total (the calendar's scale); ``None`` without them."""
    for total in ("total_cost_usd", "api_only_cost_usd"):
        monthly = f"{total}_per_month"
        if total in replications and monthly in replications:
            a = replications[monthly].to_numpy(dtype=float)
            b = replications[total].to_numpy(dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                f = np.where(b > 0, a / b, np.nan)
            if np.isfinite(f).any():
                return np.where(np.isfinite(f), f, np.nanmean(f))
    return None


def gpu_usd_per_month(replications: pd.DataFrame) -> float:
    """Mean GPU bill per month over replications: ``fleet_gpu_usd`` scaled to a month as
    the run's own totals are (``total_cost_usd_per_month / total_cost_usd``, as the report's
    cost breakdown does); NaN without those columns."""
    if "fleet_gpu_usd" not in replications:
        return math.nan
    gpu = replications["fleet_gpu_usd"].to_numpy(dtype=float)
    factor = month_factor(replications)
    values = gpu * (np.full(len(gpu), math.nan) if factor is None else factor)
    return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan


@dataclass(frozen=True)
class _Point:
    """One replication at one multiplier (picklable, for executors' workers)."""

    scenario: Scenario
    seed: np.random.SeedSequence


def _point_metrics(point: _Point) -> dict[str, float]:
    return simulate(point.scenario, seed=point.seed).metrics


def _attainment_columns(scenario: Scenario) -> dict[str, str]:
    names = scenario.workload.class_names()
    if len(names) == 1:
        return {names[0]: "slo_attainment"}
    return {n: f"slo_attainment[{n}]" for n in names}


def _cache_key(scenario: Scenario, settings: Mapping[str, Any]) -> str:
    try:
        version = importlib.metadata.version("crossover-sim")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    text = json.dumps(
        {
            "format": CACHE_FORMAT,
            "version": version,
            "scenario": scenario_hash(scenario),
            **settings,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _read_cache(path: Path) -> list[dict[str, Any]] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows = data["evaluations"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rows if isinstance(rows, list) and rows else None


def _write_cache(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"format": CACHE_FORMAT, "evaluations": rows}, f)
    os.replace(tmp, path)


def capacity_at_slo(
    scenario: Scenario,
    *,
    seed: int = 0,
    replications: int = 1,
    tolerance: float = 0.1,
    max_scale: float = 64.0,
    min_scale: float = 1.0 / 64.0,
    default_attainment: float = DEFAULT_ATTAINMENT,
    gpu_bill_usd_per_month: float | None = None,
    known: Sequence[Mapping[str, Any]] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    executor: str | Executor | None = None,
    workers: int | None = None,
    progress: Callable[[int, float, bool], None] | None = None,
) -> CapacityAtSLO:
    """The load at which every class's SLO attainment target would just hold, found by
    simulation, and the share of it the scenario's traffic uses.

    Parameters
    ----------
    scenario
        The scenario; its capacity is searched as :func:`capacity_scenario` says.
    seed, replications
        Replication ``i`` at every multiplier uses child ``i`` of ``SeedSequence(seed)`` (the
        same seeds as :func:`sim.run` with that seed).
    tolerance
        The search stops when the bracket's ends are within ``1 + tolerance`` of each other
        (``0.1``: the capacity is known to within 10 %).
    max_scale, min_scale
        How far the bracket may grow or shrink (powers of two from 1).
    default_attainment
        The target of a class whose SLO states no ``attainment``.
    gpu_bill_usd_per_month
        The bill to split into used and unused capacity; default: the GPU bill of the
        ``s = 1`` replications (:func:`gpu_usd_per_month`).
    known
        Rows of metrics already simulated for the capacity scenario at ``s = 1`` with
        replications ``0 .. replications − 1`` (a run's own, when it is that scenario):
        used instead of simulating them again.
    cache_dir
        Where to keep the search (one small JSON file per scenario, seed and setting);
        ``None``: no cache.
    executor, workers
        Where the replications of one multiplier run, as for :func:`sim.run`.
    progress
        Called as ``progress(evaluations_done, scale, holds)`` after each multiplier.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/chat-startup.yaml").with_overrides(
    ...     {"horizon.duration_s": 600, "horizon.warmup_s": 60})
    >>> cap = capacity_at_slo(s, tolerance=0.25)
    >>> cap.scale > 1, round(cap.used_share * cap.scale, 9)
    (True, 1.0)
    """
    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be above 0, got {tolerance}")
    if not (0 < min_scale <= 1 <= max_scale and math.isfinite(max_scale)):
        raise ValueError("need 0 < min_scale ≤ 1 ≤ max_scale < inf")
    if not 0 < default_attainment <= 1:
        raise ValueError(f"default_attainment must be in (0, 1], got {default_attainment}")
    base, note = capacity_scenario(scenario)
    columns = _attainment_columns(base)
    targets = {
        c.name: (c.slo.attainment if c.slo.attainment is not None else default_attainment)
        for c in base.workload.classes
    }
    defaulted = [c.name for c in base.workload.classes if c.slo.attainment is None]
    if defaulted:
        names = ", ".join(defaulted)
        said = f"attainment target {default_attainment:.0%} for {names} (none stated)"
        note = "; ".join(x for x in (note, said) if x)
    settings = {"seed": seed, "replications": replications, "tolerance": tolerance,
                "max_scale": max_scale, "min_scale": min_scale, "targets": targets}  # fmt: skip
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"capacity-{_cache_key(base, settings)[:24]}.json"
    cached_rows = _read_cache(cache_path) if cache_path is not None else None
    children = replication_seeds(seed, 0, replications)
    runner = make_executor(executor, workers=workers)
    rows: list[dict[str, Any]] = []
    by_scale: dict[float, bool] = {}

    def judge(metrics: pd.DataFrame) -> tuple[bool, dict[str, float]]:
        means = {}
        for name, col in columns.items():
            x = metrics[col].to_numpy(dtype=float) if col in metrics else np.array([np.nan])
            means[name] = float(np.nanmean(x)) if np.isfinite(x).any() else math.nan
        ok = all(not (means[n] < targets[n]) for n in columns)  # NaN: no request to fail
        return ok, means

    def record(s: float, metrics: pd.DataFrame) -> bool:
        ok, means = judge(metrics)
        offered = metrics["offered_rps"].to_numpy(dtype=float)
        rows.append(
            {
                "scale": s,
                "holds": ok,
                "offered_rps": float(np.nanmean(offered)),
                "gpu_usd_per_month": gpu_usd_per_month(metrics),
                **{f"slo_attainment[{n}]": v for n, v in means.items()},
            }
        )
        by_scale[s] = ok
        if progress is not None:
            progress(len(rows), s, ok)
        return ok

    if cached_rows is not None:
        rows = cached_rows
        by_scale = {float(r["scale"]): bool(r["holds"]) for r in rows}
    else:
        with session(runner) as live:

            def evaluate(s: float) -> bool:
                if s in by_scale:
                    return by_scale[s]
                if s == 1.0 and known is not None and len(known) >= replications:
                    return record(s, pd.DataFrame(list(known)[:replications]))
                scaled = base.model_copy(update={"workload": scale_workload(base.workload, s)})
                work = [_Point(scaled, child) for child in children]
                pool = live if len(work) > 1 else SerialExecutor()
                out: list[dict[str, Any]] = [{}] * len(work)
                for i, row in pool.imap_unordered(_point_metrics, work):
                    out[i] = row
                return record(s, pd.DataFrame(out))

            # no request in the window at ×1: no multiple of it can reach the fleet's limit
            evaluate(1.0)
            if rows[0]["offered_rps"] > 0:
                _search(evaluate, tolerance=tolerance, max_scale=max_scale, min_scale=min_scale)
        if cache_path is not None:
            _write_cache(cache_path, rows)
    return _result(
        rows,
        targets=targets,
        replicas=sum(p.replicas for p in base.pools),
        note=note,
        bill=gpu_bill_usd_per_month,
        settings=(tolerance, replications, seed, max_scale),
        cached=cached_rows is not None,
    )


def _search(
    evaluate: Callable[[float], bool], *, tolerance: float, max_scale: float, min_scale: float
) -> None:
    """Bracket from ``s = 1`` by doubling or halving, then bisect in ``log s``."""
    lo, hi = 0.0, math.inf
    s = 1.0
    if evaluate(s):
        lo = s
        while s < max_scale:
            s = min(2.0 * s, max_scale)
            if not evaluate(s):
                hi = s
                break
            lo = s
    else:
        hi = s
        while s > min_scale:
            s = max(s / 2.0, min_scale)
            if evaluate(s):
                lo = s
                break
            hi = s
    if lo == 0.0 or not math.isfinite(hi):
        return  # holds nowhere, or everywhere searched
    while hi / lo > 1.0 + tolerance:
        mid = math.sqrt(lo * hi)
        if evaluate(mid):
            lo = mid
        else:
            hi = mid


def _split(bill: float, used_share: float) -> tuple[float, float]:
    # the bill split into capacity used and paid for but unused (the share capped at 1)
    share = min(used_share, 1.0) if math.isfinite(used_share) else math.nan
    return bill * share, bill * (1.0 - share)


def _result(
    rows: list[dict[str, Any]],
    *,
    targets: Mapping[str, float],
    replicas: int,
    note: str,
    bill: float | None,
    settings: tuple[float, int, int, float],
    cached: bool,
) -> CapacityAtSLO:
    tolerance, replications, seed, max_scale = settings
    frame = pd.DataFrame(rows)
    holds = frame["holds"].astype(bool)
    scales = frame["scale"].to_numpy(dtype=float)
    lo = float(scales[holds.to_numpy()].max()) if holds.any() else math.nan
    failed = scales[~holds.to_numpy()]
    if math.isfinite(lo):
        failed = failed[failed > lo]
    hi = float(failed.min()) if failed.size else math.inf
    one = frame[frame["scale"] == 1.0]
    offered = float(one["offered_rps"].iloc[0]) if len(one) else math.nan
    if bill is None:
        bill = float(one["gpu_usd_per_month"].iloc[0]) if len(one) else math.nan
    used_share = 1.0 / lo if math.isfinite(lo) else math.nan
    if not offered > 0:  # nothing arrived: none of the capacity is used, whatever it is
        lo = hi = math.nan
        used_share = 0.0
        note = "; ".join(x for x in (note, "no request arrived in the window") if x)
    elif not math.isfinite(hi) and math.isfinite(lo):
        note = "; ".join(x for x in (note, f"the SLO holds at every load up to ×{lo:g}") if x)
    used, unused = _split(bill, used_share)
    return CapacityAtSLO(
        scale=lo,
        scale_high=hi,
        offered_rps=offered,
        capacity_rps=lo * offered,
        used_share=used_share,
        gpu_usd_per_month=bill,
        used_usd_per_month=used,
        unused_usd_per_month=unused,
        targets=dict(targets),
        replicas=replicas,
        note=note,
        evaluations=frame,
        tolerance=tolerance,
        replications=replications,
        seed=seed,
        max_scale=max_scale,
        cached=cached,
    )


def _search_in_child(
    conn: Any, scenario: Scenario, seed: int, cache_dir: str | None
) -> None:  # pragma: no cover - runs in a child process (its outcome is tested)
    try:
        found: CapacityAtSLO | BaseException = capacity_at_slo(
            scenario, seed=seed, cache_dir=cache_dir
        )
    except BaseException as exc:  # sent back and raised by the parent
        found = exc
    conn.send(found)
    conn.close()


class BackgroundCapacity:
    """:func:`capacity_at_slo` of a scenario searched in a child process while the caller
    runs its replications: on a machine with two cores or more the search then adds little
    to a run's time. The numbers are those of :meth:`RunResult.capacity
    <sim.study.montecarlo.RunResult.capacity>` with the same seed (the child simulates the
    ``s = 1`` point itself, with the run's first seed).

    Examples
    --------
    >>> from sim import load_scenario, run
    >>> s = load_scenario("scenarios/chat-startup.yaml").with_overrides(
    ...     {"horizon.duration_s": 300, "horizon.warmup_s": 0})
    >>> search = BackgroundCapacity(s, seed=1)
    >>> result = run(s, replications=2, seed=1)
    >>> cap = search.result(result)
    >>> cap.used_share == result.capacity().used_share
    True
    """

    def __init__(
        self, scenario: Scenario, *, seed: int, cache_dir: str | os.PathLike[str] | None = None
    ) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=False)
        where = None if cache_dir is None else str(cache_dir)
        self._proc = ctx.Process(
            target=_search_in_child, args=(child, scenario, seed, where), daemon=True
        )
        self._proc.start()
        child.close()

    def result(self, run: Any) -> CapacityAtSLO:
        """Wait for the search; the bill is split as ``run`` (a :class:`RunResult` of the
        same scenario and seed) bills it. Raises what the search raised."""
        try:
            found = self._conn.recv()
        except EOFError:
            raise RuntimeError("the capacity search's process ended without a result") from None
        finally:
            self._proc.join()
        if isinstance(found, BaseException):
            raise found
        return found.with_bill(gpu_usd_per_month(run.replications))

    def cancel(self) -> None:
        """Stop the search (a search stopped early caches nothing)."""
        if self._proc.is_alive():
            self._proc.terminate()
        self._proc.join()
