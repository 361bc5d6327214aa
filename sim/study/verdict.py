"""The decision in words: the ``verdict:`` paragraph and its pieces.

Formatting only; every figure comes from a :class:`sim.study.decide.Decision`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd
from scipy import stats

from sim.intervals import NOTE_IDENTICAL, NOTE_ONE, t_interval

if TYPE_CHECKING:
    from sim.scenario import Scenario


class DecisionFacts(Protocol):
    """What the verdict is written from (:class:`sim.study.decide.Decision` is one)."""

    @property
    def table(self) -> pd.DataFrame: ...
    @property
    def recommended(self) -> str | None: ...
    @property
    def runner_up(self) -> str | None: ...
    @property
    def difference(self) -> tuple[float, float, float]: ...
    @property
    def too_close(self) -> bool: ...
    @property
    def constraints(self) -> tuple[str, ...]: ...
    @property
    def classes(self) -> pd.DataFrame: ...
    @property
    def replications(self) -> int: ...
    @property
    def confidence(self) -> float: ...


__all__ = ["calendar_line", "compose_verdict", "number", "pct", "usd", "why_free"]


def calendar_line(scenario: Scenario) -> str:
    """What the window stands for in the monthly figures, in words.

    Examples
    --------
    >>> from sim import load_scenario
    >>> calendar_line(load_scenario("scenarios/chat-startup.yaml"))
    'monthly figures: the 23.5 h window stands for every hour of the month (730 h)'
    """
    cal = scenario.calendar
    window_h = (scenario.horizon.duration_s - scenario.horizon.warmup_s) / 3600
    head = f"monthly figures: the {window_h:.3g} h window stands for"
    if cal.continuous:
        return f"{head} every hour of the month (730 h)"
    return (
        f"{head} {cal.active_hours_per_day:g} h a day on {cal.active_days_per_month:.3g} days "
        f"a month ({cal.active_hours_per_month:.0f} h); capacity paid around the clock is billed "
        "for all 730 h"
    )


def pct(x: float) -> str:
    """A share as a percentage with one decimal (n/a for NaN)."""
    return f"{x:.1%}" if x == x else "n/a"


def number(fmt: str, x: float) -> str:
    """``fmt.format(x)`` with the sign before a leading ``$``: ``-$1,165``, not ``$-1,165``
    (no sign when the negative value rounds to zero).

    Examples
    --------
    >>> number("${:,.0f}", -1165.2), number("${:.3f}", 0.25), number("{:.1%}", -0.5)
    ('-$1,165', '$0.250', '-50.0%')
    """
    if not fmt.startswith("$") or not x < 0:
        return fmt.format(x)
    text = fmt.format(-x)
    return text if text == fmt.format(0.0) else f"-{text}"


def usd(x: float) -> str:
    """Money as a reader expects it: ``$1,234``, ``-$56``, cents below $100, n/a for NaN.

    Examples
    --------
    >>> usd(1234.5), usd(-56.0), usd(0.4)
    ('$1,234', '-$56.00', '$0.40')
    """
    if x != x:
        return "n/a"
    return number("${:,.0f}" if abs(x) >= 100 else "${:,.2f}", x)


def _ci_text(lo: float, hi: float, note: str = "") -> str:
    """The interval of a monthly figure, or why there is none: ``note`` when given (the
    decision table's ``ci_note``), else NaN bounds: one replication; equal bounds: the same
    value in every replication."""
    if isinstance(note, str) and note:
        return note
    if lo != lo or hi != hi:
        return NOTE_ONE
    if lo == hi:
        return NOTE_IDENTICAL
    return f"95% CI {usd(lo)} – {usd(hi)}"


def why_free(
    name: str,
    placed: frozenset[str] | None,
    placements: dict[str, frozenset[str] | None],
    cost: dict[str, np.ndarray],
    reasons: dict[str, list[str]],
    recommended: str,
    confidence: float,
) -> str:
    """Why a free class sits where the recommended option puts it: the paired cost of the
    option that moves only this class to the other side, when one was simulated."""
    if placed is None:
        return "routed per request by the recommended option"
    toggled = placed ^ {name}
    other = next((k for k, v in placements.items() if v == toggled and k != recommended), None)
    side = "the fleet" if name in placed else "the API"
    if other is None:
        return "cheapest as part of the recommended option"
    if reasons[other]:
        return f"on {side} it would not be feasible, {reasons[other][0]} (option '{other}')"
    mean, lo, hi = t_interval(cost[other] - cost[recommended], confidence)
    ci = f", {_ci_text(lo, hi)}" if lo == lo else ""
    return f"on {side} it would cost {usd(mean)}/month more{ci} (option '{other}')"


def _separation_hint(runs: pd.DataFrame, diff: np.ndarray, n: int, confidence: float) -> str:
    """What would separate two options whose difference is not resolved."""
    finite = diff[~np.isnan(diff)]
    parts = []
    if len(finite) >= 2 and finite.std(ddof=1) > 0 and abs(finite.mean()) > 0:
        z = stats.norm.ppf(0.5 + confidence / 2)
        need = math.ceil((z * finite.std(ddof=1) / abs(finite.mean())) ** 2)
        if need > n:
            parts.append(f"about {need} replications if the difference holds")
    elif len(finite) and np.all(finite == 0):
        return "they cost the same in every replication"
    params = [c for c in runs.columns if c.startswith("param:")]
    best, best_r = None, 0.0
    for p in params:
        x = pd.to_numeric(runs[p], errors="coerce").to_numpy(dtype=float)
        ok = ~np.isnan(x) & ~np.isnan(diff)
        if ok.sum() > 2 and x[ok].std() > 0 and diff[ok].std() > 0:
            r = float(np.corrcoef(x[ok], diff[ok])[0, 1])
            if abs(r) > abs(best_r):
                best, best_r = p.removeprefix("param:"), r
    if best is not None:
        parts.append(
            f"pinning down {best}, the uncertain input that moves the difference most "
            f"(correlation {best_r:+.2f})"
        )
    else:
        parts.append("a sensitivity study (sim.tornado) of the inputs that move it")
    return "more replications" if not parts else " or ".join(parts)


def _payback(scenario: Scenario, best: dict[str, Any]) -> list[str]:
    """The setup sentence of a self-hosted recommendation (none without setup costs)."""
    setup = best["setup_usd"]
    if best["kind"] == "api_only" or setup != setup:
        return []
    if setup == 0 and scenario.costs.setup.months_to_live == 0:
        return []
    pay, lo, hi = best["payback_months"], best["payback_ci_low"], best["payback_ci_high"]
    head = f"Setup {usd(setup)}"
    if pay != pay:
        return [f"{head}, with no payback to compute: the API alone is not an option."]
    if math.isinf(pay):
        return [f"{head} is never paid back: the option saves nothing against the API."]
    ci = ""
    if hi == hi and lo == hi:
        ci = f" ({NOTE_IDENTICAL})"
    elif hi == hi:
        ci = f" (95% CI {lo:.1f} – {'never' if math.isinf(hi) else f'{hi:.1f}'})"
    return [f"{head} pays back in {pay:.1f} months{ci}, counted from the decision."]


def compose_verdict(
    scenario: Scenario, d: DecisionFacts, runs: pd.DataFrame, cost: dict[str, np.ndarray]
) -> str:
    """The ``verdict:`` paragraph, in the decision's order: the binding constraints, the
    cheapest feasible option with its CI and the paired difference to the runner-up (or
    "too close to call" and what would separate them), P(cheapest), the payback of setup
    costs, the options ruled out by their results, and where each class should run."""
    rows: dict[str, dict[str, Any]] = {
        str(r["option"]): {str(k): v for k, v in r.items()} for r in d.table.to_dict("records")
    }
    has_api = any(r["kind"] in ("api_only", "hybrid") for r in rows.values())
    parts = []
    if d.constraints:
        parts.append("; ".join(d.constraints) + ".")
    if d.recommended is None:
        why = "; ".join(f"{name} — {row['reason']}" for name, row in rows.items())
        parts.append(f"No option is feasible: {why}.")
        return "verdict: " + " ".join(parts)
    best = rows[d.recommended]
    lead = "Cheapest feasible option" if has_api else "Cheapest feasible fleet"
    description = str(best.get("description") or "")
    described = f" ({description})" if description else ""
    text = (
        f"{lead}: {d.recommended}{described} at {usd(best['cost_per_month_usd'])}"
        f"/month ({_ci_text(best['ci_low'], best['ci_high'], best.get('ci_note', ''))})"
    )
    if d.runner_up is None:
        text += ", the only feasible option."
    else:
        mean, lo, hi = d.difference
        ci = _ci_text(lo, hi)
        if d.too_close:
            diff = cost[d.runner_up] - cost[d.recommended]
            option_runs = runs[runs["option"] == d.recommended].sort_values("replication")
            hint = _separation_hint(option_runs, diff, d.replications, d.confidence)
            text = (
                f"Too close to call: {d.recommended} at {usd(best['cost_per_month_usd'])}/month "
                f"and {d.runner_up} at {usd(rows[d.runner_up]['cost_per_month_usd'])}/month "
                f"differ by {usd(mean)}/month ({ci}), an interval that contains zero; "
                f"what would separate them: {hint}."
            )
        else:
            text += f", {usd(mean)}/month less than {d.runner_up} ({ci})."
    parts.append(text)
    if d.runner_up is not None:
        other = rows[d.runner_up]
        if best["ttft_p99_s"] == best["ttft_p99_s"] and other["ttft_p99_s"] == other["ttft_p99_s"]:
            parts.append(
                f"p99 TTFT {best['ttft_p99_s']:.2f} s with {d.recommended}, "
                f"{other['ttft_p99_s']:.2f} s with {d.runner_up}."
            )
    p = best["p_cheapest"]
    parts.append(
        f"Cheapest in {p:.0%} of {d.replications} replications (95% CI "
        f"{best['p_cheapest_ci_low']:.0%} – {best['p_cheapest_ci_high']:.0%})."
    )
    parts.extend(_payback(scenario, best))
    for name, row in rows.items():
        if row["feasible"]:
            continue
        if (
            not any(row["reason"].startswith(c) for c in d.constraints)
            or "keep up" in row["reason"]
        ):
            parts.append(f"{name} is ruled out: {row['reason']}.")
    if len(d.classes) > 1 or has_api:
        per_class = "; ".join(
            f"{r.class_name} on the {r.where} ({r.why})" for r in d.classes.itertuples()
        )
        parts.append(f"Per class: {per_class}.")
    return "verdict: " + " ".join(parts)
