"""Capacity planning: the cheapest fleet that meets an SLO-attainment target.

:func:`plan_capacity` searches fleets — GPU type × tensor parallelism × replicas × capacity
kind — simulating every candidate with the same replication seeds (common random numbers),
and returns the cheapest whose SLO attainment meets the target, with the evidence: one row
per configuration simulated.

The search is level by level in the replica count: at ``r`` replicas it simulates every
(GPU, tp, kind) not yet meeting the target, so each stops growing at the smallest count that
meets it. For a fixed fleet (no autoscaler, spot or failures) a configuration cannot cost
less than its GPUs around the clock plus the hidden costs, so candidates whose floor is
already dearer than the best feasible plan are not simulated (branch and bound).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import ValidationError

from sim.catalog import get_gpu
from sim.catalog.prices import default_gpu_price
from sim.economics.gpu_bill import resolve_gpu_hourly
from sim.economics.spec import PricedFleetSpec
from sim.intervals import bounded_t_interval, metric_range
from sim.scenario import Scenario
from sim.study.executors import Executor, make_executor, session
from sim.study.montecarlo import Unit, run_unit

__all__ = ["DEFAULT_GPUS", "PLAN_COLUMNS", "CapacityPlan", "plan_capacity"]

#: GPUs searched by default (with the scenario's own), where the model fits.
DEFAULT_GPUS = ("h100-sxm", "h200-sxm", "a100-80gb-sxm", "l40s")
DEFAULT_TP = (1, 2, 4, 8)
HOURS_PER_MONTH = 730.0
Criterion = Literal["mean", "ci_low"]
PLAN_COLUMNS = (
    "gpu",
    "tp",
    "replicas",
    "pricing",
    "usd_per_gpu_hour",
    "price_source",
    "price_date",
    "gpus",
    "cost_per_month",
    "cost_ci_low",
    "cost_ci_high",
    "slo_attainment",
    "slo_ci_low",
    "slo_ci_high",
    "ttft_p99_s",
    "api_only_cost_per_month",
    "feasible",
    "n",
)


@dataclass(frozen=True)
class CapacityPlan:
    """The cheapest fleet meeting the SLO-attainment target, and the evidence.

    Attributes
    ----------
    choice
        The chosen row of :attr:`table` (gpu, tp, replicas, pricing, cost and SLO with CIs),
        or None when no configuration searched meets the target.
    scenario
        The input scenario with the chosen fleet (None without a choice).
    table
        One row per configuration simulated, cheapest first (:data:`PLAN_COLUMNS`):
        ``cost_per_month`` is the mean of ``total_cost_usd_per_month`` with its t-interval,
        ``slo_attainment`` likewise, ``ttft_p99_s`` a mean, ``feasible`` whether it meets the
        target by ``criterion``. ``price_source`` says where ``usd_per_gpu_hour`` comes from:
        ``scenario: …`` (the scenario's own ``fleet.pricing``, for its GPU and kind) or
        ``catalogue: …`` (the catalogue's default quote); ``price_date`` when it held.
    slo_target, criterion
        The target and how it is judged: ``mean`` (mean SLO attainment over replications
        ≥ target) or ``ci_low`` (the lower bound of its 95 % t-interval ≥ target).
    skipped
        Configurations never simulated, with why: the model does not fit, no catalogue
        price, or dearer than the best feasible plan before simulating.
    replications, seed
        Replications per configuration and their root seed (the same seeds everywhere).
    """

    choice: dict[str, Any] | None
    scenario: Scenario | None
    table: pd.DataFrame
    slo_target: float
    criterion: Criterion
    skipped: tuple[str, ...]
    replications: int
    seed: int


@dataclass(frozen=True)
class CandidatePrice:
    """How one (GPU, kind) candidate is priced: the ``fleet.pricing`` it is simulated with,
    its hourly price per GPU (the branch-and-bound floor) and where that comes from."""

    pricing: dict[str, Any]
    usd_per_gpu_hour: float
    source: str
    date: str


def _own_price(fleet: PricedFleetSpec) -> tuple[str, str, CandidatePrice] | None:
    """The fleet's own GPU, kind and price, when ``pricing`` gives one (an hourly price, or
    owned hardware); None when the fleet is priced from the catalogue anyway."""
    current = fleet.pricing
    if current is None or (current.kind != "owned" and current.usd_per_gpu_hour is None):
        return None
    gpu = get_gpu(fleet.gpu)
    resolved = resolve_gpu_hourly(current, gpu)
    price = CandidatePrice(
        current.model_dump(mode="json", exclude_none=True),
        resolved.usd_per_gpu_hour,
        f"scenario: {resolved.source}",
        resolved.date,
    )
    return gpu.name, current.kind, price


def _pricing(fleet: PricedFleetSpec, gpu: str, kind: str) -> CandidatePrice:
    quote = default_gpu_price(gpu, kind)  # KeyError without a quote
    base: dict[str, Any] = {}
    current = fleet.pricing
    if current is not None and current.kind in ("on_demand", "reserved", "spot"):
        base = {"billing_increment_s": current.billing_increment_s,
                "min_billable_s": current.min_billable_s}  # fmt: skip
    source = f"{quote.provider} {quote.sku} (price catalogue)".strip()
    shown = f"catalogue: {quote.provider} {quote.sku}".strip()
    pricing = {
        **base,
        "kind": kind,
        "usd_per_gpu_hour": quote.usd_per_gpu_hour,
        "price_source": source,
        "price_date": quote.quote_date,
    }
    return CandidatePrice(pricing, quote.usd_per_gpu_hour, shown, quote.quote_date)


def check_plan_args(slo_target: float, replications: int, criterion: str) -> None:
    """Raise ``ValueError`` for a target, replication count or criterion a plan cannot use."""
    if not 0 < slo_target <= 1:
        raise ValueError(f"slo_target must be in (0, 1], got {slo_target}")
    if replications < 1:
        raise ValueError(f"replications must be at least 1, got {replications}")
    if criterion not in ("mean", "ci_low"):
        raise ValueError(f"criterion must be 'mean' or 'ci_low', got {criterion!r}")
    if criterion == "ci_low" and replications < 2:
        raise ValueError("criterion 'ci_low' needs at least 2 replications")


def candidate_price(fleet: PricedFleetSpec, gpu: str, kind: str) -> CandidatePrice:
    """How a candidate GPU and capacity kind for ``fleet`` is priced: the fleet's own GPU
    and kind as its ``pricing`` says when that gives a price, every other at the
    catalogue's default quote.

    Raises
    ------
    KeyError
        Without a catalogue quote for the GPU and kind.
    """
    return _price_of(fleet, _own_price(fleet), gpu, kind)


def _price_of(
    fleet: PricedFleetSpec, own: tuple[str, str, CandidatePrice] | None, gpu: str, kind: str
) -> CandidatePrice:
    # the fleet's own GPU and kind at the fleet's price, every other at the catalogue's
    if own is not None and kind == own[1]:
        try:
            same = get_gpu(gpu).name == own[0]
        except KeyError:
            same = False
        if same:
            return own[2]
    return _pricing(fleet, gpu, kind)


def _hidden_usd_per_month(scenario: Scenario) -> float:
    c = scenario.costs
    if c is None:
        return 0.0
    return float(
        c.ops_fte * c.fte_usd_per_year / 12
        + c.monitoring_usd_per_month
        + c.storage_egress_usd_per_month
        + c.model_updates_per_year * c.usd_per_model_update / 12
    )


def plan_capacity(
    scenario: Scenario,
    *,
    slo_target: float = 0.99,
    options: Mapping[str, Sequence[Any]] | None = None,
    replications: int = 5,
    seed: int = 0,
    criterion: Criterion = "mean",
    executor: str | Executor | None = None,
    workers: int | None = None,
    uncertainty: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> CapacityPlan:
    """The cheapest fleet whose SLO attainment meets ``slo_target``.

    Parameters
    ----------
    scenario
        The workload, costs and API to plan for; its fleet is the starting point (engine,
        router, dtype and other settings are kept).
    slo_target
        Required share of requests meeting their SLO (``slo_attainment``), in (0, 1].
    options
        What to search: ``gpu`` (catalogue names; default :data:`DEFAULT_GPUS` and the
        scenario's GPU), ``tp`` (default 1, 2, 4, 8 where the model fits), ``replicas``
        (counts tried in increasing order, default 1–8) and ``pricing`` (capacity kinds,
        default ``on_demand`` and ``reserved``, plus ``spot`` when the scenario models spot
        interruptions with ``fleet.spot``, plus the scenario's own kind when
        ``fleet.pricing`` prices it). The scenario's own GPU and kind are priced as
        ``fleet.pricing`` says when it gives a price (``usd_per_gpu_hour``, or owned
        hardware); every other candidate at the catalogue's default quote
        (:func:`sim.catalog.prices.default_gpu_price`), skipped where there is none.
    replications, seed
        Replications per configuration; replication ``i`` uses child ``i`` of
        ``SeedSequence(seed)`` for every configuration (common random numbers).
    criterion
        ``mean``: the mean SLO attainment meets the target; ``ci_low``: the lower bound of
        its 95 % t-interval does (stricter).
    executor, workers
        Where simulations run, as for :func:`sim.run` (default: in this process;
        ``workers=2``: two local processes; ``executor="dask"``: an embedded
        ``LocalCluster``); one pool or cluster serves every replica count tried. Results do
        not depend on it.
    uncertainty
        Draw the scenario's uncertain parameters in every replication.
    progress
        Called as ``progress(done, total)`` after each simulation (one replication of one
        configuration); ``total`` grows as larger replica counts are tried.

    Raises
    ------
    ValueError
        For bad arguments, or when no configuration of the search is valid.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/chat-startup.yaml").with_overrides(
    ...     {"horizon.duration_s": 300, "horizon.warmup_s": 0})
    >>> plan = plan_capacity(s, options={"gpu": ["h100-sxm"], "tp": [1],
    ...                                  "pricing": ["on_demand"]}, replications=2)
    >>> plan.choice["gpu"], plan.choice["replicas"]
    ('h100-sxm', 1)
    """
    check_plan_args(slo_target, replications, criterion)
    opts = dict(options or {})
    unknown = set(opts) - {"gpu", "tp", "replicas", "pricing"}
    if unknown:
        raise ValueError(f"options: unknown key(s) {', '.join(sorted(unknown))} "
                         "(gpu, tp, replicas, pricing)")  # fmt: skip
    fleet = scenario.single_fleet("crossover plan over GPU types and counts")
    own = _own_price(fleet)
    own_gpu = own[0] if own is not None else fleet.gpu
    gpus = list(opts.get("gpu") or dict.fromkeys((own_gpu, *DEFAULT_GPUS)))
    tps = sorted({int(t) for t in opts.get("tp") or DEFAULT_TP})
    counts = sorted({int(r) for r in opts.get("replicas") or range(1, 9)})
    default_kinds = ["on_demand", "reserved"] + ["spot"] * bool(fleet.spot)
    if own is not None:
        default_kinds.append(own[1])
    kinds = list(opts.get("pricing") or dict.fromkeys(default_kinds))
    if not gpus or not tps or not counts or not kinds or min(counts) < 1 or min(tps) < 1:
        raise ValueError("options: every list must hold at least one value (counts ≥ 1)")
    runner = make_executor(executor, workers=workers)
    draws = uncertainty and bool(scenario.uncertainty)
    bound_ok = not fleet.dynamic
    hidden = _hidden_usd_per_month(scenario)
    skipped: list[str] = []

    # candidates: (gpu, tp, kind) whose fleet is valid at the first count and has a price
    candidates: list[tuple[str, int, str, CandidatePrice]] = []
    for gpu in gpus:
        for tp in tps:
            for kind in kinds:
                try:
                    pricing = _price_of(fleet, own, gpu, kind)
                except KeyError:
                    skipped.append(f"{gpu} tp{tp} {kind}: no catalogue price")
                    continue
                try:
                    _configure(scenario, gpu, tp, counts[0], pricing)
                except (ValidationError, ValueError, KeyError) as exc:
                    reason = " ".join(str(exc).split())[:160]
                    skipped.append(f"{gpu} tp{tp} {kind}: invalid ({reason})")
                    continue
                candidates.append((gpu, tp, kind, pricing))
    if not candidates:
        raise ValueError("no configuration of the search is valid: " + "; ".join(skipped[:3]))

    children = np.random.SeedSequence(seed).spawn(replications)
    rows: list[dict[str, Any]] = []
    best = float("inf")
    open_ = list(candidates)
    done = total = 0
    with session(runner) as live:  # one pool or cluster for every count
        for count in counts:
            level: list[tuple[str, int, str, CandidatePrice]] = []
            for gpu, tp, kind, pricing in open_:
                floor = count * tp * pricing.usd_per_gpu_hour * HOURS_PER_MONTH + hidden
                if bound_ok and floor > best:
                    skipped.append(f"{gpu} tp{tp} {kind} ×{count}+: dearer than the best plan")
                    continue
                level.append((gpu, tp, kind, pricing))
            if not level:
                break
            scenarios = [_configure(scenario, g, t, count, p) for g, t, _, p in level]
            work = [Unit(s, c, draws) for s in scenarios for c in children]
            total += len(work)
            results: dict[int, dict[str, Any]] = {}
            for key, row in live.imap_unordered(run_unit, work):
                results[key] = row
                done += 1
                if progress is not None:
                    progress(done, total)
            open_ = []
            for k, (gpu, tp, kind, pricing) in enumerate(level):
                reps = pd.DataFrame([results[k * replications + i] for i in range(replications)])
                row = _evidence(reps, gpu, tp, count, kind, pricing, slo_target, criterion)
                rows.append(row)
                if row["feasible"]:
                    best = min(best, row["cost_per_month"])
                else:
                    open_.append((gpu, tp, kind, pricing))
            if not open_:
                break

    table = pd.DataFrame(rows, columns=list(PLAN_COLUMNS))
    table = table.sort_values(["cost_per_month", "gpus"], kind="stable").reset_index(drop=True)
    feasible = table[table["feasible"]]
    if feasible.empty:
        return CapacityPlan(
            None, None, table, slo_target, criterion, tuple(skipped), replications, seed
        )
    choice = {str(k): v for k, v in feasible.iloc[0].to_dict().items()}
    chosen = _configure(
        scenario,
        choice["gpu"],
        int(choice["tp"]),
        int(choice["replicas"]),
        _price_of(fleet, own, choice["gpu"], choice["pricing"]),
    )
    return CapacityPlan(
        choice, chosen, table, slo_target, criterion, tuple(skipped), replications, seed
    )


def _configure(
    scenario: Scenario, gpu: str, tp: int, replicas: int, price: CandidatePrice
) -> Scenario:
    overrides: dict[str, Any] = {
        "fleet.gpu": gpu,
        "fleet.tp": tp,
        "fleet.replicas": replicas,
        "fleet.pricing": price.pricing,
    }
    return scenario.with_overrides(overrides)


def _evidence(
    reps: pd.DataFrame,
    gpu: str,
    tp: int,
    replicas: int,
    kind: str,
    price: CandidatePrice,
    slo_target: float,
    criterion: Criterion,
) -> dict[str, Any]:
    return {
        "gpu": gpu,
        "tp": tp,
        "replicas": replicas,
        "pricing": kind,
        "usd_per_gpu_hour": float(price.usd_per_gpu_hour),
        "price_source": price.source,
        "price_date": price.date,
        "gpus": tp * replicas,
        **evidence_stats(reps, slo_target, criterion),
    }


def evidence_stats(reps: pd.DataFrame, slo_target: float, criterion: Criterion) -> dict[str, Any]:
    """What a plan says of one candidate simulated: its monthly cost and SLO attainment
    with their 95 % t-intervals (within their physical range), its mean p99 TTFT, the
    all-API bill of the same requests, whether it meets ``slo_target`` by ``criterion``,
    and the replications."""
    # within their physical range (a cost is not negative, attainment is in [0, 1])
    cost, cost_lo, cost_hi = _bounded(reps, "total_cost_usd_per_month")
    slo, slo_lo, slo_hi = _bounded(reps, "slo_attainment")
    if len(reps) > 1 and reps["slo_attainment"].nunique() == 1:
        slo_lo = slo_hi = slo  # every replication agrees: no spread to bound
    judged = slo if criterion == "mean" else slo_lo
    api = reps.get("api_only_cost_usd_per_month")
    return {
        "cost_per_month": cost,
        "cost_ci_low": cost_lo,
        "cost_ci_high": cost_hi,
        "slo_attainment": slo,
        "slo_ci_low": slo_lo,
        "slo_ci_high": slo_hi,
        "ttft_p99_s": float(np.nanmean(reps["ttft_p99_s"].to_numpy(dtype=float))),
        "api_only_cost_per_month": float(api.mean()) if api is not None else float("nan"),
        "feasible": bool(judged >= slo_target),
        "n": len(reps),
    }


def describe(plan: CapacityPlan) -> str:
    """The answer in a few lines, for the command line: the cheapest fleet, its cost and
    SLO attainment with their CIs, where its price comes from, and whether it beats the
    all-API bill of the same requests."""
    c = plan.choice
    if c is None:
        best = plan.table.sort_values("slo_attainment", ascending=False).head(1)
        top = f"; best SLO attainment {best['slo_attainment'].iloc[0]:.2%}" if len(best) else ""
        lines = [
            f"no configuration searched meets SLO attainment ≥ {plan.slo_target:.2%} "
            f"(by {plan.criterion}){top}: widen the search (--gpus, --tp, --max-replicas)"
        ]
        api = plan.table["api_only_cost_per_month"].mean() if len(plan.table) else np.nan
        if np.isfinite(api):
            lines.append(f"  all-API / month ${api:,.0f} for the same requests")
        return "\n".join(lines)
    date = f", {c['price_date']}" if c.get("price_date") else ""
    lines = [
        f"cheapest fleet meeting SLO attainment ≥ {plan.slo_target:.2%} (by {plan.criterion}): "
        f"{c['replicas']} × {c['tp']} × {c['gpu']} ({c['pricing']}, "
        f"${c['usd_per_gpu_hour']:.2f}/GPU-h)",
        f"  price           {c['price_source']}{date}",
        f"  cost per month  ${c['cost_per_month']:,.0f}  "
        f"(95% CI ${c['cost_ci_low']:,.0f} – ${c['cost_ci_high']:,.0f})",
        f"  SLO attainment  {c['slo_attainment']:.2%}  "
        f"(95% CI {c['slo_ci_low']:.2%} – {c['slo_ci_high']:.2%})",
        f"  TTFT p99        {c['ttft_p99_s']:.3g} s",
    ]
    api = c["api_only_cost_per_month"]
    if np.isfinite(api):
        lines.append(f"  all-API / month ${api:,.0f}")
        lines.append(_versus_api(c, api))
    own = plan.table["price_source"].str.startswith("scenario")
    lines.append(
        "prices: the scenario's fleet.pricing for its own GPU and kind, the catalogue's "
        "default quote for the others"
        if own.any()
        else "prices: the catalogue's default quotes"
    )
    lines.append(
        f"{len(plan.table)} configurations simulated × {plan.replications} replications "
        f"(seed {plan.seed}), {len(plan.skipped)} skipped"
    )
    return "\n".join(lines)


def _bounded(reps: pd.DataFrame, metric: str) -> tuple[float, float, float]:
    return bounded_t_interval(reps[metric].to_numpy(dtype=float), metric_range(metric))


def _versus_api(choice: Mapping[str, Any], api: float) -> str:
    # judged on the fleet's cost interval: the API's bill is a mean over the same requests
    fleet, lo, hi = choice["cost_per_month"], choice["cost_ci_low"], choice["cost_ci_high"]
    both = f"fleet ${fleet:,.0f}/month vs all-API ${api:,.0f}/month"
    if hi < api or (not np.isfinite(hi) and fleet < api):
        return f"verdict: the fleet beats the API by ${api - fleet:,.0f}/month ({both})"
    if lo > api or (not np.isfinite(lo) and fleet > api):
        return (
            f"verdict: the API is cheaper than the best fleet by ${fleet - api:,.0f}/month "
            f"({both}): keep the traffic on the API unless it has to run on your own GPUs"
        )
    return f"verdict: too close to call, the API is within the fleet's 95% CI ({both})"
