"""The decision: hard constraints first, then the cheapest feasible option, then how sure.

The order is the one a careful buyer follows. (1) A hard constraint — data that may not
leave (``private``), no connectivity (``constraints.offline``), a task the open model fails
(``open_model_ok: false``), an SLO attainment target, capacity that cannot keep up — makes
an option infeasible, with the reason in words. (2) Among the feasible options, all
simulated on the identical requests of every replication, the cheapest by monthly total
cost of ownership, with the paired difference to the runner-up, its confidence interval
and the probability of being cheapest; "too close to call" when that interval contains
zero. (3) The one-off setup cost and the months until a fleet serves give each
self-hosted option a payback period against the API.

Pure functions of the per-option replications table (one row per replication and option,
from :meth:`sim.study.montecarlo.RunResult.option_runs`); nothing here simulates or reads files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.intervals import (
    NOTE_IDENTICAL,
    bounded_t_interval,
    metric_interval,
    metric_range,
    t_interval,
    wilson_interval,
)
from sim.scenario import Scenario, option_scenario
from sim.study.options import Option, class_has_api, fleet_pinned
from sim.study.verdict import compose_verdict, pct, why_free

__all__ = ["DECISION_COLUMNS", "Decision", "decide", "payback_months"]

#: Columns of :attr:`Decision.table` (and of ``decision.csv``), in order.
DECISION_COLUMNS = (
    "option",
    "kind",
    "description",
    "feasible",
    "reason",
    "cost_per_month_usd",
    "ci_low",
    "ci_high",
    "ci_note",
    "fleet_cost_per_month_usd",
    "api_cost_per_month_usd",
    "slo_attainment",
    "slo_ci_low",
    "slo_ci_high",
    "slo_ci_note",
    "ttft_p99_s",
    "api_share",
    "p_cheapest",
    "p_cheapest_ci_low",
    "p_cheapest_ci_high",
    "setup_usd",
    "payback_months",
    "payback_ci_low",
    "payback_ci_high",
    "recommended",
)

#: A backlog at the end of the window above this share of the window's requests, and
#: growing since the window's midpoint, means the option cannot keep up.
BACKLOG_SHARE = 0.01


@dataclass(frozen=True)
class Decision:
    """What to do, and why.

    Attributes
    ----------
    table
        One row per option (:data:`DECISION_COLUMNS`): feasibility with the reason, monthly
        total cost of ownership with its t-interval, the fleet/API split, SLO attainment
        with its interval, p99 TTFT, API share, P(cheapest) among the feasible options with
        its Wilson interval, setup cost and payback period against the API. Exactly one row
        has ``recommended`` True, or none when no option is feasible.
    recommended
        Name of the cheapest feasible option, or None.
    runner_up
        The next cheapest feasible option, or None.
    difference
        Runner-up minus recommended monthly cost, paired over replications: (mean, low,
        high) of its t-interval; NaN without a runner-up.
    too_close
        The interval of ``difference`` contains zero (or cannot be formed).
    constraints
        The binding constraints, in words, in the order they rule options out.
    classes
        Per class of the recommended option: ``class_name``, ``where`` (fleet, API, or
        both) and ``why``.
    verdict
        One paragraph beginning ``verdict:``.
    replications
        Replications behind every figure.
    confidence
        Level of every interval.
    """

    table: pd.DataFrame
    recommended: str | None
    runner_up: str | None
    difference: tuple[float, float, float]
    too_close: bool
    constraints: tuple[str, ...]
    classes: pd.DataFrame
    verdict: str
    replications: int
    confidence: float = 0.95

    def _repr_html_(self) -> str:
        return f"<p>{self.verdict}</p>" + self.table.to_html(
            index=False, float_format="{:.4g}".format
        )


def payback_months(setup_usd: float, months_to_live: float, savings_per_month: float) -> float:
    """Months from the decision until a self-hosted option has paid for itself.

    The API is paid until the fleet serves (``months_to_live``); from then on the option
    saves ``savings_per_month`` against the API, which repays ``setup_usd``::

        payback = months_to_live + setup_usd / savings_per_month

    Infinite when the option saves nothing (it never pays back).

    Examples
    --------
    >>> payback_months(30000.0, 2.0, 5000.0)
    8.0
    >>> payback_months(30000.0, 2.0, -100.0)
    inf
    """
    if not savings_per_month > 0:
        return math.inf
    return months_to_live + setup_usd / savings_per_month


def _per_class(metric: str, class_name: str, scenario: Scenario) -> str:
    # metrics.request_metrics names per-class figures only when there are several classes
    return f"{metric}[{class_name}]" if len(scenario.workload.classes) > 1 else metric


def _column(runs: pd.DataFrame, name: str) -> np.ndarray:
    if name not in runs:
        return np.full(len(runs), np.nan)
    return runs[name].to_numpy(dtype=float)


def _mean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if len(finite) else math.nan


def _private(name: str) -> str:
    return f"{name} is private: the API is not an option for it"


def _eval_bar(name: str) -> str:
    return f"the open model fails {name}'s evaluation bar: the fleet may not serve it"


def _static_reasons(scenario: Scenario, option: Option) -> list[str]:
    """Reasons an option is ruled out before any simulation: where its routing sends
    classes that may not go there."""
    reasons = []
    if option.kind == "api_only":
        for c in scenario.workload.classes:
            if c.private:
                reasons.append(_private(c.name))
            elif c.arrivals.process == "closed_loop":
                reasons.append(f"{c.name} is a closed loop of the fleet's own users")
            elif not class_has_api(scenario, c.name):
                reasons.append(f"{c.name} has no API to go to")
    policy = option_scenario(scenario, option.overrides).routing.policy
    if scenario.constraints.offline and policy != "self_host_only":
        reasons.append("offline: no API route is allowed")
    if policy == "self_host_only":
        for c in scenario.workload.classes:
            if not c.open_model_ok:
                reasons.append(_eval_bar(c.name))
    return reasons


def _dynamic_reasons(
    scenario: Scenario, runs: pd.DataFrame, confidence: float, already: Sequence[str]
) -> list[str]:
    """Reasons read from the simulated replications of one option."""
    reasons: list[str] = []
    for c in scenario.workload.classes:
        share = _column(runs, _per_class("api_share", c.name, scenario))
        share = np.nan_to_num(share, nan=0.0)
        private = _private(c.name)
        if c.private and share.max(initial=0.0) > 0 and private not in already:
            reasons.append(private)
        eval_bar = _eval_bar(c.name)
        if not c.open_model_ok and share.min(initial=1.0) < 1 and eval_bar not in already:
            reasons.append(eval_bar)
        target = c.slo.attainment
        if target is not None:
            att = _column(runs, _per_class("slo_attainment", c.name, scenario))
            mean, lo, hi = bounded_t_interval(att, metric_range("slo_attainment"), confidence)
            upper = hi if hi == hi else mean
            if upper < target:
                ci = f" (95% CI {pct(lo)} – {pct(hi)})" if hi == hi else ""
                if hi == hi and lo == hi:
                    ci = f" ({NOTE_IDENTICAL})"
                reasons.append(
                    f"{c.name} meets its SLO for {pct(mean)} of requests{ci}, "
                    f"below the {pct(target)} required"
                )
    end = _column(runs, "backlog_end_requests")
    mid = _column(runs, "backlog_mid_requests")
    offered = _column(runs, "requests_offered")
    growth_mean, growth_lo, _ = t_interval(end - mid, confidence)
    grows = growth_lo > 0 if growth_lo == growth_lo else growth_mean > 0
    if _mean(end) > BACKLOG_SHARE * _mean(offered) and grows:
        reasons.append(
            f"cannot keep up: {_mean(end):,.0f} requests still waiting at the end of the "
            f"window, up from {_mean(mid):,.0f} halfway (the backlog grows with the window)"
        )
    return reasons


def _placement(scenario: Scenario, option: Option) -> frozenset[str] | None:
    """Classes the option sends to the API whatever the load; None when routing decides
    per request."""
    if option.kind == "self_host_only":
        return frozenset()
    if option.kind == "api_only" or option.api_classes:
        pinned = set(fleet_pinned(scenario)) - {
            c.name for c in scenario.workload.classes if c.private
        }
        return frozenset(set(option.api_classes) - pinned)
    return None


def decide(
    scenario: Scenario,
    options: Sequence[Option],
    runs: pd.DataFrame,
    *,
    confidence: float = 0.95,
) -> Decision:
    """Turn the per-option replications of a scenario into a decision.

    Parameters
    ----------
    scenario
        The scenario as written (its classes' constraints and setup costs).
    options
        Its options (:func:`sim.study.options.resolve_options`).
    runs
        One row per replication and option: ``replication``, ``option`` and the metrics
        of :func:`sim.replication.simulate.simulate` (``total_cost_usd_per_month``,
        ``slo_attainment``, ``api_share[...]``, ``backlog_*_requests``, ...).
    confidence
        Level of every interval.

    Returns
    -------
    Decision

    Examples
    --------
    >>> import pandas as pd
    >>> from sim import load_scenario
    >>> from sim.study.options import resolve_options
    >>> s = load_scenario("scenarios/chat-startup.yaml")
    >>> runs = pd.DataFrame({"replication": [0, 1, 0, 1],
    ...     "option": ["api_only", "api_only", "self_host_only", "self_host_only"],
    ...     "total_cost_usd_per_month": [2700.0, 2650.0, 9700.0, 9690.0]})
    >>> d = decide(s, resolve_options(s), runs)
    >>> d.recommended, d.too_close
    ('api_only', False)
    """
    names = [o.name for o in options]
    if not names:
        raise ValueError("a decision needs at least one option")
    reps = sorted(runs["replication"].unique())
    n = len(reps)
    by_option = {
        name: runs[runs["option"] == name].set_index("replication").reindex(reps) for name in names
    }
    cost = {name: _column(by_option[name], "total_cost_usd_per_month") for name in names}
    reasons: dict[str, list[str]] = {}
    for o in options:
        static = _static_reasons(scenario, o)
        reasons[o.name] = static + _dynamic_reasons(scenario, by_option[o.name], confidence, static)
    feasible = [o.name for o in options if not reasons[o.name]]

    # P(cheapest): the share of replications in which the option is the cheapest feasible one
    wins = dict.fromkeys(names, 0)
    if feasible:
        matrix = np.vstack([cost[name] for name in feasible])
        valid = ~np.isnan(matrix).any(axis=0)
        for j in np.flatnonzero(valid):
            wins[feasible[int(np.argmin(matrix[:, j]))]] += 1
        n_valid = int(valid.sum())
    else:
        n_valid = 0
    # an option whose cost is unknown (no price for its GPU) ranks after every priced one
    ranked = sorted(
        feasible,
        key=lambda name: (math.isnan(_mean(cost[name])), _mean(cost[name]), names.index(name)),
    )
    recommended = ranked[0] if ranked else None
    runner_up = ranked[1] if len(ranked) > 1 else None
    difference = (math.nan, math.nan, math.nan)
    if recommended is not None and runner_up is not None:
        difference = t_interval(cost[runner_up] - cost[recommended], confidence)
    too_close = runner_up is not None and not (difference[1] > 0)

    setup = scenario.costs.setup_usd()
    live = scenario.costs.setup.months_to_live
    api_ref = next((o.name for o in options if o.kind == "api_only"), None)
    rows = []
    for o in options:
        r = by_option[o.name]
        # as the run's summary has them: within their physical range (a cost is not
        # negative, attainment is in [0, 1]); NaN bounds and a note saying why when the
        # replications are one or identical
        mean, lo, hi, cost_note = metric_interval(
            "total_cost_usd_per_month", cost[o.name], confidence
        )
        slo, slo_lo, slo_hi, slo_note = metric_interval(
            "slo_attainment", _column(r, "slo_attainment"), confidence
        )
        k = wins[o.name] if o.name in feasible else 0
        p_lo, p_hi = wilson_interval(k, n_valid, confidence) if o.name in feasible else (0.0, 0.0)
        fleet_cost = _mean(_column(r, "fleet_cost_usd_per_month"))
        pay = (math.nan, math.nan, math.nan)
        option_setup = math.nan
        if o.kind != "api_only":
            option_setup = setup
            if api_ref is not None and not reasons.get(api_ref):
                s_mean, s_lo, s_hi = t_interval(cost[api_ref] - cost[o.name], confidence)
                pay = (
                    payback_months(setup, live, s_mean),
                    payback_months(setup, live, s_hi) if s_hi == s_hi else math.nan,
                    payback_months(setup, live, s_lo) if s_lo == s_lo else math.nan,
                )
        rows.append(
            {
                "option": o.name,
                "kind": o.kind,
                "description": o.description,
                "feasible": o.name in feasible,
                "reason": "; ".join(reasons[o.name]),
                "cost_per_month_usd": mean,
                "ci_low": lo,
                "ci_high": hi,
                "ci_note": cost_note,
                "fleet_cost_per_month_usd": fleet_cost,
                "api_cost_per_month_usd": _mean(_column(r, "api_cost_usd_per_month")),
                "slo_attainment": slo,
                "slo_ci_low": slo_lo,
                "slo_ci_high": slo_hi,
                "slo_ci_note": slo_note,
                "ttft_p99_s": _mean(_column(r, "ttft_p99_s")),
                "api_share": _mean(np.nan_to_num(_column(r, "api_share"))),
                "p_cheapest": k / n_valid if n_valid and o.name in feasible else 0.0,
                "p_cheapest_ci_low": p_lo,
                "p_cheapest_ci_high": p_hi,
                "setup_usd": option_setup,
                "payback_months": pay[0],
                "payback_ci_low": pay[1],
                "payback_ci_high": pay[2],
                "recommended": o.name == recommended,
            }
        )
    table = pd.DataFrame(rows, columns=list(DECISION_COLUMNS))
    constraints = _constraints(scenario, options, reasons)
    classes = _classes(scenario, options, recommended, by_option, cost, reasons, confidence)
    decision = Decision(
        table=table,
        recommended=recommended,
        runner_up=runner_up,
        difference=difference,
        too_close=too_close,
        constraints=constraints,
        classes=classes,
        verdict="",
        replications=n,
        confidence=confidence,
    )
    verdict = compose_verdict(scenario, decision, runs, cost)
    return Decision(**{**decision.__dict__, "verdict": verdict})


def _constraints(
    scenario: Scenario, options: Sequence[Option], reasons: dict[str, list[str]]
) -> tuple[str, ...]:
    """The constraints that rule at least one option out, each once, in words."""
    seen: list[str] = []
    for o in options:
        for r in reasons[o.name]:
            if r.startswith("cannot keep up"):
                continue
            if " meets its SLO for " in r:
                cls = r.split(" meets its SLO")[0]
                target = next(c.slo.attainment for c in scenario.workload.classes if c.name == cls)
                r = f"{cls} must meet its SLO for {pct(target or 0.0)} of requests"
            if r not in seen:
                seen.append(r)
    return tuple(seen)


def _classes(
    scenario: Scenario,
    options: Sequence[Option],
    recommended: str | None,
    by_option: dict[str, pd.DataFrame],
    cost: dict[str, np.ndarray],
    reasons: dict[str, list[str]],
    confidence: float,
) -> pd.DataFrame:
    rows: list[tuple[str, str, str]] = []
    if recommended is None:
        return pd.DataFrame(rows, columns=["class_name", "where", "why"])
    best = next(o for o in options if o.name == recommended)
    placed = _placement(scenario, best)
    placements = {o.name: _placement(scenario, o) for o in options}
    for c in scenario.workload.classes:
        share = float(
            np.nanmean(
                np.nan_to_num(
                    _column(by_option[recommended], _per_class("api_share", c.name, scenario))
                )
            )
        )
        where = (
            "fleet"
            if share == 0
            else "API"
            if share == 1
            else f"fleet and API ({share:.0%} on the API)"
        )
        if c.private:
            why = "private: it may not leave the fleet"
        elif c.arrivals.process == "closed_loop":
            why = "a closed loop of the fleet's own users"
        elif not class_has_api(scenario, c.name):
            why = "no API is given for it"
        elif not c.open_model_ok:
            why = "the open model fails its evaluation bar"
        elif scenario.constraints.offline:
            why = "offline: no API route"
        else:
            why = why_free(c.name, placed, placements, cost, reasons, recommended, confidence)
        rows.append((c.name, where, why))
    return pd.DataFrame(rows, columns=["class_name", "where", "why"])
