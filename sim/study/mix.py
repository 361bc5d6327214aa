"""The cheapest mix of pools: GPU type, tensor parallelism, capacity kind and replica count
per pool of a fleet of several (``fleet.pools``), meeting the SLO-attainment target.

The pools, their models and which classes each may serve are the scenario's; the search
sizes them. A *composition* gives every pool a configuration (GPU, tp, pricing kind) and a
replica count (0 drops the pool, where no class needs it alone). The search is:

1. **Analytic bound.** Each configuration's tokens per second at saturation is estimated
   from the step-time model (:func:`sim.replication.pooled.replica_capacity_rps`, at the
   mix of the classes it may serve). A composition is simulated only if, for every set of
   pools, the classes that can go nowhere else fit in those pools' estimated capacity taken
   :data:`OPTIMISM` times (Hall's condition for serving every class; the margin keeps the
   bound a necessary condition, not a guess that could prune the answer).
2. **Cost order and branch and bound.** A composition cannot cost less than the GPUs it
   pays for whatever the traffic (a fixed pool's every replica, an autoscaled pool's
   minimum) around the clock plus the hidden costs (the API's bill only adds), so
   compositions are simulated cheapest floor first, and the search stops once the next
   floor is dearer than the best feasible composition's simulated cost. An autoscaled
   pool is sized by its autoscaler's ``max_replicas``.
3. **Dominance.** More replicas of the same configurations never serve the SLO worse: a
   composition below one that failed (every pool's count no larger) is not simulated.
4. **Runners-up.** After the winner, the next compositions by cost floor are simulated
   too, for the evidence, until ``runners_up`` of them meet the target (at most three
   times as many tried, none dearer than twice the winner, none that only adds replicas
   to a composition that met it).

Every composition is simulated with the same replication seeds (common random numbers), so
their costs and SLO attainments are compared on identical requests. Then the scenario's
options (the API alone, the hybrids) are simulated with the chosen mix as their fleet, on
the same seeds, and decided among (:attr:`MixPlan.decision`): constraints first, as
``crossover run`` does.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from sim.economics.spec import HOURS_PER_MONTH, PooledFleetSpec, PricedFleetSpec
from sim.engine.replica import build_replica
from sim.replication.pooled import NOMINAL_LENGTHS, class_mix, replica_capacity_rps
from sim.scenario import Scenario
from sim.study.decide import Decision
from sim.study.executors import Executor, make_executor, session
from sim.study.montecarlo import Unit, run, run_unit
from sim.study.planning import (
    CandidatePrice,
    Criterion,
    _hidden_usd_per_month,
    _versus_api,
    candidate_price,
    check_plan_args,
    evidence_stats,
)

__all__ = ["MIX_COLUMNS", "OPTIMISM", "MixPlan", "describe_mix", "plan_mix"]

#: The analytic capacity estimate is taken this many times larger before it may rule a
#: composition out (its error against simulated saturation, measured in the tests, is
#: well inside it).
OPTIMISM = 1.5

#: Columns of :attr:`MixPlan.table` after the per-pool ones (``<pool>.gpu``, ``<pool>.tp``,
#: ``<pool>.pricing``, ``<pool>.replicas``, ``<pool>.usd_per_gpu_hour``).
MIX_COLUMNS = (
    "layout",
    "gpus",
    "floor_per_month",
    "cost_per_month",
    "cost_ci_low",
    "cost_ci_high",
    "slo_attainment",
    "slo_ci_low",
    "slo_ci_high",
    "ttft_p99_s",
    "api_only_cost_per_month",
    "estimated_load",
    "feasible",
    "n",
)


@dataclass(frozen=True)
class _Config:
    gpu: str
    tp: int
    kind: str
    price: CandidatePrice
    tokens_per_s: float  # one replica's estimated capacity at its classes' mix
    autoscaled: bool = False  # sized by its autoscaler's max_replicas
    # replicas paid whatever happens, per replica searched (1: all of them; autoscaled: the
    # autoscaler's minimum, as a share; spot without replacement: none)
    floor_share: float = 1.0
    floor_min: int = 0  # an autoscaled pool's min_replicas, always paid


@dataclass(frozen=True)
class MixPlan:
    """The cheapest composition of the pools meeting the SLO-attainment target.

    Attributes
    ----------
    choice
        The chosen row of :attr:`table`, or None when no composition searched meets it.
    scenario
        The scenario with the chosen composition (None without a choice).
    table
        One row per composition simulated, cheapest first: per pool its GPU, tp, pricing,
        replicas and hourly GPU price, then :data:`MIX_COLUMNS` (costs and SLO attainment
        with their 95 % t-intervals; ``estimated_load`` the analytic demand over capacity;
        ``feasible`` whether it meets the target by ``criterion``).
    slo_target, criterion
        As for :func:`sim.study.planning.plan_capacity`.
    searched
        Compositions in the search space.
    ruled_out
        ``(by the analytic bound, by dominance, by cost)``: compositions never simulated.
    skipped
        Configurations left out, with why (no price, the model does not fit).
    replications, seed
        Replications per composition and their root seed.
    decision
        The decision (:meth:`sim.study.montecarlo.RunResult.decision`) for the chosen
        composition, on the same seeds: the mix against the API alone and the hybrids of
        the scenario's options; None without a choice or when not asked for.
    """

    choice: dict[str, Any] | None
    scenario: Scenario | None
    table: pd.DataFrame
    slo_target: float
    criterion: Criterion
    searched: int
    ruled_out: tuple[int, int, int]
    skipped: tuple[str, ...]
    replications: int
    seed: int
    decision: Decision | None = None


def _class_demand(scenario: Scenario) -> list[tuple[float, float, float]]:
    # per class: (tokens per second, mean prompt, mean output); 0 where unknown (a closed
    # loop, a trace without stated lengths): the bound then only gets weaker
    out = []
    for cls, (rate, p, o) in zip(scenario.workload.classes, class_mix(scenario), strict=True):
        if not (math.isfinite(p) and math.isfinite(o)):
            out.append((0.0, *NOMINAL_LENGTHS))
            continue
        if not (math.isfinite(rate) and cls.open_model_ok):
            rate = 0.0  # a closed loop's rate is not known; a class the fleet never serves
        out.append((rate * (p + o), p, o))
    return out


def _pool_mix(
    demand: list[tuple[float, float, float]], classes: Sequence[int]
) -> tuple[float, float]:
    # the token-weighted mean prompt and output of the classes a pool may serve
    w = np.array([demand[c][0] for c in classes])
    p = np.array([demand[c][1] for c in classes])
    o = np.array([demand[c][2] for c in classes])
    if w.sum() <= 0:
        return float(p.mean()), float(o.mean())
    return float(w @ p / w.sum()), float(w @ o / w.sum())


def _configure(base: Scenario, comp: Sequence[tuple[_Config, int]]) -> Scenario:
    # the scenario with each pool configured and sized; pools of 0 replicas dropped (from
    # the fleet, its order and every class's list)
    fleet = base.fleet
    assert isinstance(fleet, PooledFleetSpec)
    data = base.model_dump(mode="python", exclude={"options", "uncertainty"})
    pools, kept = [], []
    for section, (cfg, n) in zip(data["fleet"]["pools"], comp, strict=True):
        if n == 0:
            continue
        section.update(gpu=cfg.gpu, tp=cfg.tp, pricing=cfg.price.pricing)
        if section.get("autoscaler"):
            # an autoscaled pool is sized by the most replicas its autoscaler may run
            section["autoscaler"]["max_replicas"] = n
            section["replicas"] = min(section["replicas"], n)
        else:
            section["replicas"] = n
        pools.append(section)
        kept.append(section["name"])
    data["fleet"]["pools"] = pools
    data["fleet"]["order"] = [n for n in data["fleet"]["order"] if n in kept]
    for cls in data["workload"]["classes"]:
        if cls.get("pools"):
            cls["pools"] = [n for n in cls["pools"] if n in kept]
    return Scenario.model_validate(data)


def _floor(cfg: _Config, n: int) -> float:
    # a pool's GPU cost per month that no traffic can lower
    paid = 0.0 if n == 0 else n * cfg.floor_share + min(cfg.floor_min, n)
    return paid * cfg.tp * cfg.price.usd_per_gpu_hour * HOURS_PER_MONTH


def _layout_text(names: Sequence[str], comp: Sequence[tuple[_Config, int]]) -> str:
    return ", ".join(
        f"{name}: {'up to ' if cfg.autoscaled else ''}{n} × {cfg.tp} × {cfg.gpu} ({cfg.kind})"
        for name, (cfg, n) in zip(names, comp, strict=True)
        if n > 0
    )


def plan_mix(
    scenario: Scenario,
    *,
    slo_target: float = 0.99,
    options: Mapping[str, Mapping[str, Sequence[Any]]] | None = None,
    max_replicas: int = 8,
    replications: int = 5,
    seed: int = 0,
    criterion: Criterion = "mean",
    runners_up: int = 2,
    decide: bool = True,
    executor: str | Executor | None = None,
    workers: int | None = None,
    uncertainty: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> MixPlan:
    """The cheapest composition of the scenario's pools meeting ``slo_target``.

    Parameters
    ----------
    scenario
        A scenario whose fleet has several pools (``fleet.pools``). A pool with an
        autoscaler is sized by its ``max_replicas`` (its cost floor is its
        ``min_replicas``, always paid); a fixed pool by its ``replicas``.
    options
        Per pool name, what to search: ``gpu``, ``tp``, ``pricing`` (capacity kinds) and
        ``replicas`` (counts; 0 drops the pool). Default: the pool's own GPU, tp and kind,
        and 1 to ``max_replicas`` replicas, or 0 to ``max_replicas`` for a pool that no
        class needs alone. A pool's own GPU and kind are priced as its ``pricing`` says,
        every other at the catalogue's default quote.
    replications, seed, criterion, executor, workers, uncertainty, progress
        As for :func:`sim.study.planning.plan_capacity`.
    runners_up
        Feasible compositions to find after the winner, for the evidence.
    decide
        Also simulate the scenario's options (the API alone, the hybrids, its own) with
        the chosen composition as the fleet, on the same seeds, and decide among them.

    Raises
    ------
    ValueError
        For bad arguments, a fleet of one pool, or no valid configuration.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/mixed-pools.yaml").with_overrides(
    ...     {"horizon.duration_s": 120, "horizon.warmup_s": 10})
    >>> plan = plan_mix(s, max_replicas=3, replications=2)
    >>> plan.choice is not None
    True
    """
    fleet = scenario.fleet
    if not isinstance(fleet, PooledFleetSpec):
        raise ValueError("plan_mix needs a fleet of several pools (fleet.pools)")
    check_plan_args(slo_target, replications, criterion)
    if max_replicas < 1:
        raise ValueError(f"max_replicas must be at least 1, got {max_replicas}")
    names = fleet.names
    opts = {str(k): dict(v) for k, v in (options or {}).items()}
    unknown = set(opts) - set(names)
    if unknown:
        raise ValueError(f"options: no pool named {', '.join(sorted(unknown))} "
                         f"(pools: {', '.join(names)})")  # fmt: skip
    cands = scenario.class_pools()
    alone = {c[0] for c in cands if len(c) == 1}
    demand = _class_demand(scenario)
    skipped: list[str] = []
    configs: list[list[_Config]] = []
    counts: list[list[int]] = []
    for p, pool in enumerate(fleet.pools):
        o = opts.get(pool.name, {})
        bad = set(o) - {"gpu", "tp", "pricing", "replicas"}
        if bad:
            raise ValueError(f"options.{pool.name}: unknown key(s) {', '.join(sorted(bad))} "
                             "(gpu, tp, pricing, replicas)")  # fmt: skip
        own_kind = pool.pricing.kind if pool.pricing is not None else "on_demand"
        gpus = list(dict.fromkeys([str(g) for g in o.get("gpu") or [pool.gpu]]))
        tps = sorted({int(t) for t in o.get("tp") or [pool.tp]})
        kinds = list(dict.fromkeys([str(k) for k in o.get("pricing") or [own_kind]]))
        auto = pool.autoscaler
        least = 1 if auto is None else max(1, auto.min_replicas)
        low = least if p in alone else 0
        sizes = sorted({int(n) for n in o.get("replicas") or [0, *range(least, max_replicas + 1)]})
        sizes = [n for n in sizes if n >= low]
        if any(n < 0 for n in sizes) or (p in alone and 0 in sizes) or not sizes:
            raise ValueError(
                f"options.{pool.name}.replicas: counts must be ≥ 0, and ≥ 1 for a pool a "
                "class needs alone"
            )
        sizes = [n for n in sizes if n == 0 or n >= least]
        served_classes = [c for c, ps in enumerate(cands) if p in ps]
        prompt, out = _pool_mix(demand, served_classes)
        mine: list[_Config] = []
        for gpu, tp, kind in itertools.product(gpus, tps, kinds):
            where = f"{pool.name}: {gpu} tp{tp} {kind}"
            try:
                price = candidate_price(pool, gpu, kind)
            except KeyError:
                skipped.append(f"{where}: no catalogue price")
                continue
            try:
                spec = PricedFleetSpec.model_validate(
                    {**pool.model_dump(exclude={"name"}), "gpu": gpu, "tp": tp}
                )
                rep = build_replica(spec)
            except (ValidationError, ValueError, KeyError) as exc:
                skipped.append(f"{where}: invalid ({' '.join(str(exc).split())[:160]})")
                continue
            rps = replica_capacity_rps(rep, spec.engine.max_num_seqs, prompt, out)
            # what is paid whatever the traffic: a fixed pool's every replica (a failed one
            # is paid while it restarts; a spot one is replaced before it is reclaimed), an
            # autoscaled pool's minimum; spot without replacement, nothing sure
            share, floor_min = 1.0, 0
            if auto is not None:
                share, floor_min = 0.0, 0 if pool.spot is not None else auto.min_replicas
            elif pool.spot is not None and not pool.spot.replace:
                share = 0.0
            mine.append(
                _Config(rep.gpu.name, tp, kind, price, rps * (prompt + out),
                        autoscaled=auto is not None, floor_share=share, floor_min=floor_min)
            )  # fmt: skip
        if not mine:
            raise ValueError(f"pool {pool.name}: no configuration of the search is valid: "
                             + "; ".join(skipped[-3:]))  # fmt: skip
        configs.append(mine)
        counts.append(sizes)

    hidden = _hidden_usd_per_month(scenario)
    # every composition with its floor (GPUs around the clock plus hidden costs)
    space: list[tuple[float, tuple[int, ...], tuple[int, ...]]] = []
    for pick in itertools.product(*[range(len(c)) for c in configs]):
        for ns in itertools.product(*counts):
            # a dropped pool has no configuration: one composition, not one per config
            if not any(ns) or any(n == 0 and k > 0 for k, n in zip(pick, ns, strict=True)):
                continue
            floor = hidden + sum(
                _floor(configs[p][k], n) for p, (k, n) in enumerate(zip(pick, ns, strict=True))
            )
            space.append((floor, tuple(pick), tuple(ns)))
    space.sort(key=lambda x: (x[0], sum(x[2])))

    def load(pick: tuple[int, ...], ns: tuple[int, ...]) -> float:
        # the largest demand / capacity over sets of pools (inf: a class has no pool left)
        worst = 0.0
        n_pools = len(ns)
        for r in range(1, n_pools + 1):
            for subset in itertools.combinations(range(n_pools), r):
                need = sum(
                    demand[c][0]
                    for c, ps in enumerate(cands)
                    if all(p in subset or ns[p] == 0 for p in ps)
                )
                if need <= 0:
                    continue
                cap = sum(ns[p] * configs[p][pick[p]].tokens_per_s for p in subset)
                worst = max(worst, need / cap if cap > 0 else math.inf)
        return worst

    children = np.random.SeedSequence(seed).spawn(replications)
    draws = uncertainty and bool(scenario.uncertainty)
    runner = make_executor(executor, workers=workers)
    rows: list[dict[str, Any]] = []
    simulated: dict[str, list[tuple[_Config, int]]] = {}  # by layout: each composition run
    failed: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    passed: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    best = math.inf  # the cheapest feasible composition's simulated cost so far
    settled = False  # every floor left is dearer than best: the winner is known
    runners = tried_after = 0  # feasible and simulated compositions once settled
    by_bound = by_dominance = by_cost = 0
    done = total = 0
    with session(runner) as live:
        for floor, pick, ns in space:
            if not settled and floor > best:
                settled = True
            # once settled, only runners-up: the next compositions by cost that are not
            # a feasible one with replicas added
            if settled and (
                runners >= runners_up
                or tried_after >= 3 * runners_up
                or floor > 2 * best
                or any(
                    fp == pick and all(a >= b for a, b in zip(ns, fn, strict=True))
                    for fp, fn in passed
                )
            ):
                by_cost += 1
                continue
            est = load(pick, ns)
            if est > OPTIMISM:
                by_bound += 1
                continue
            if any(
                fp == pick and all(a <= b for a, b in zip(ns, fn, strict=True)) for fp, fn in failed
            ):
                by_dominance += 1
                continue
            comp = [(configs[p][k], n) for p, (k, n) in enumerate(zip(pick, ns, strict=True))]
            try:
                candidate = _configure(scenario, comp)
            except (ValidationError, ValueError) as exc:
                skipped.append(f"{_layout_text(names, comp)}: invalid ({str(exc)[:120]})")
                continue
            work = [Unit(candidate, c, draws) for c in children]
            total += len(work)
            results: dict[int, dict[str, Any]] = {}
            for key, row in live.imap_unordered(run_unit, work):
                results[key] = row
                done += 1
                if progress is not None:
                    progress(done, total)
            reps = pd.DataFrame([results[i] for i in range(replications)])
            row = _evidence(names, comp, reps, floor, est, slo_target, criterion)
            rows.append(row)
            simulated[row["layout"]] = comp
            tried_after += settled
            if not row["feasible"]:
                failed.append((pick, ns))
                continue
            passed.append((pick, ns))
            runners += settled
            if not settled and row["cost_per_month"] < best:
                best = row["cost_per_month"]
    table = pd.DataFrame(rows)
    choice: dict[str, Any] | None = None
    chosen = None
    if not table.empty:
        table = table.sort_values(["cost_per_month", "gpus"], kind="stable")
        # the composition in words first, then its pools' columns, then the evidence
        per_pool = [c for c in table.columns if c not in MIX_COLUMNS]
        table = table[["layout", *per_pool, *MIX_COLUMNS[1:]]].reset_index(drop=True)
        feasible = table[table["feasible"]]
        if not feasible.empty:
            choice = {str(k): v for k, v in feasible.iloc[0].to_dict().items()}
            chosen = _configure(scenario, simulated[choice["layout"]])
    decision = None
    if decide and chosen is not None:
        # the options as the scenario states them, with the mix as their fleet
        data = chosen.model_dump(mode="python", by_alias=True, exclude={"uncertainty"})
        data["options"] = (
            None if scenario.options is None else [
                o if isinstance(o, str) else o.model_dump(by_alias=True) for o in scenario.options
            ]
        )  # fmt: skip
        data["uncertainty"] = scenario.uncertainty and {
            k: v.model_dump(by_alias=True) for k, v in scenario.uncertainty.items()
        }
        try:
            decided = Scenario.model_validate(data)
        except ValidationError:
            # an option of the scenario sets a pool the mix dropped: the canonical options
            decided = Scenario.model_validate({**data, "options": None})
        result = run(
            decided,
            replications=replications,
            seed=seed,
            executor=executor,
            workers=workers,
            uncertainty=uncertainty,
        )
        decision = result.decision()
    return MixPlan(
        choice,
        chosen,
        table,
        slo_target,
        criterion,
        len(space),
        (by_bound, by_dominance, by_cost),
        tuple(skipped),
        replications,
        seed,
        decision,
    )


def _evidence(
    names: Sequence[str],
    comp: Sequence[tuple[_Config, int]],
    reps: pd.DataFrame,
    floor: float,
    est: float,
    slo_target: float,
    criterion: Criterion,
) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name, (cfg, n) in zip(names, comp, strict=True):
        row[f"{name}.gpu"] = cfg.gpu
        row[f"{name}.tp"] = cfg.tp
        row[f"{name}.pricing"] = cfg.kind
        row[f"{name}.replicas"] = n
        row[f"{name}.usd_per_gpu_hour"] = float(cfg.price.usd_per_gpu_hour)
    row.update(
        layout=_layout_text(names, comp),
        gpus=sum(cfg.tp * n for cfg, n in comp),
        floor_per_month=floor,
        estimated_load=est,
        **evidence_stats(reps, slo_target, criterion),
    )
    return row


def describe_mix(plan: MixPlan) -> str:
    """The answer in a few lines: the cheapest composition with its cost and SLO attainment
    (95 % CIs), the runners-up, the all-API bill of the same requests, and how much of
    the search was simulated."""
    by_bound, by_dominance, by_cost = plan.ruled_out
    n_sim = len(plan.table)
    tail = (
        f"{n_sim} of {plan.searched} compositions simulated × {plan.replications} "
        f"replications (seed {plan.seed}); ruled out without simulating: {by_bound} by the "
        f"capacity estimate, {by_dominance} below one that failed, {by_cost} by cost"
    )
    c = plan.choice
    if c is None:
        lines = [
            f"no composition searched meets SLO attainment ≥ {plan.slo_target:.2%} "
            f"(by {plan.criterion}): widen the search (--gpus, --tp, --max-replicas)"
        ]
        if n_sim:
            api = plan.table["api_only_cost_per_month"].mean()
            if np.isfinite(api):
                lines.append(f"  all-API / month ${api:,.0f} for the same requests")
        return "\n".join([*lines, tail])
    lines = [
        f"cheapest mix meeting SLO attainment ≥ {plan.slo_target:.2%} (by {plan.criterion}): "
        f"{c['layout']}",
        f"  cost per month  ${c['cost_per_month']:,.0f}  "
        f"(95% CI ${c['cost_ci_low']:,.0f} – ${c['cost_ci_high']:,.0f})",
        f"  SLO attainment  {c['slo_attainment']:.2%}  "
        f"(95% CI {c['slo_ci_low']:.2%} – {c['slo_ci_high']:.2%})",
        f"  TTFT p99        {c['ttft_p99_s']:.3g} s",
    ]
    api = float(c["api_only_cost_per_month"])
    if np.isfinite(api):
        lines.append(f"  all-API / month ${api:,.0f}")
        if plan.decision is None:  # (with it, the decision below answers, constraints first)
            lines.append(_versus_api(c, api))
    others = plan.table[plan.table["feasible"] & (plan.table["layout"] != c["layout"])]
    for r in others.head(3).to_dict("records"):
        lines.append(
            f"  runner-up       {r['layout']}: ${r['cost_per_month']:,.0f}/month "
            f"(95% CI ${r['cost_ci_low']:,.0f} – ${r['cost_ci_high']:,.0f}), "
            f"SLO {r['slo_attainment']:.2%}"
        )
    cheaper = plan.table[
        ~plan.table["feasible"] & (plan.table["cost_per_month"] < c["cost_per_month"])
    ]
    if len(cheaper):
        r = cheaper.iloc[-1]
        lines.append(
            f"  cheaper, fails  {r['layout']}: SLO {r['slo_attainment']:.2%} "
            f"(95% CI {r['slo_ci_low']:.2%} – {r['slo_ci_high']:.2%})"
        )
    if plan.decision is not None:
        lines.append("the scenario's options with this mix as the fleet, on the same requests:")
        lines.append(textwrap.fill(plan.decision.verdict, width=100, break_on_hyphens=False))
    return "\n".join([*lines, tail])
