"""The report's tables and its number formats: the side-by-side and per-class tables, the
verdict, the utilisation rows, the assumptions and scenario inputs, money and intervals."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
import yaml

from sim import plots
from sim.catalog import get_gpu
from sim.catalog.price_checks import price_flags
from sim.catalog.prices import default_gpu_price
from sim.economics.cost import resolve_api_prices, resolve_gpu_hourly
from sim.engine.replica import resolve_model
from sim.engine.spec import ConstantStep, LinearStep
from sim.engine.steptime import resolve_roofline
from sim.intervals import NOTE_IDENTICAL, NOTE_NARROW, NOTE_ONE
from sim.replication.simulate import scenario_apis
from sim.scenario import Scenario
from sim.scenario_io import dump_scenario
from sim.study.decide import Decision
from sim.study.montecarlo import RunResult
from sim.study.verdict import number

__all__ = [
    "GROUPED",
    "SIDE_BY_SIDE",
    "UTILISATION_TERMS",
    "assumptions",
    "capacity_bill_rows",
    "format_number",
    "grouped_table",
    "latency_table",
    "money",
    "plain",
    "scenario_inputs",
    "table_records",
    "utilisation_rows",
    "verdict_context",
    "with_ci",
]

#: (label, option metric, API-only metric, format), the side-by-side table.
SIDE_BY_SIDE = (
    ("cost per month", "total_cost_usd_per_month", "api_only_cost_usd_per_month", "${:,.0f}"),
    ("cost per 1M tokens", "cost_per_1m_tokens_usd", "api_only_cost_per_1m_tokens_usd", "${:.3f}"),
    ("TTFT p50", "ttft_p50_s", "api_only_ttft_p50_s", "{:.3f} s"),
    ("TTFT p99", "ttft_p99_s", "api_only_ttft_p99_s", "{:.3f} s"),
    ("TPOT p50", "tpot_p50_s", "api_only_tpot_p50_s", "{:.4f} s"),
    ("TPOT p99", "tpot_p99_s", "api_only_tpot_p99_s", "{:.4f} s"),
    ("E2E p50", "e2e_p50_s", "api_only_e2e_p50_s", "{:.2f} s"),
    ("E2E p99", "e2e_p99_s", "api_only_e2e_p99_s", "{:.2f} s"),
    ("SLO attainment", "slo_attainment", "api_only_slo_attainment", "{:.1%}"),
    ("requests failed", "requests_failed", "api_only_requests_failed", "{:,.0f}"),
    # with prompt identity only: what the API's prompt cache read and saved
    ("API cached input", "api_cached_input_share", "api_only_cached_input_share", "{:.1%}"),
    (
        "API caching saves per month",
        "api_cache_savings_usd_per_month",
        "api_only_cache_savings_usd_per_month",
        "${:,.0f}",
    ),
)

#: Per class / route metrics shown in the breakdown table.
GROUPED = (
    ("ttft_p50_s", "{:.3f} s"),
    ("ttft_p99_s", "{:.3f} s"),
    ("tpot_p50_s", "{:.4f} s"),
    ("tpot_p99_s", "{:.4f} s"),
    ("e2e_p99_s", "{:.2f} s"),
    ("slo_attainment", "{:.1%}"),
)


def format_number(fmt: str, value: float) -> str:
    """``value`` in ``fmt`` as the report writes numbers (:func:`sim.study.verdict.number`);
    ``–`` when it is not finite.

    Examples
    --------
    >>> format_number("${:,.0f}", -1165.0), format_number("{:.1%}", float("nan"))
    ('-$1,165', '–')
    """
    return number(fmt, value) if math.isfinite(value) else "–"


def with_ci(fmt: str, mean: float, lo: float, hi: float, note: str = "") -> str:
    """``mean (lo – hi)``; instead of an interval, ``note`` (why there is none), or the
    note of equal bounds: the same value in every replication."""
    text = format_number(fmt, mean)
    if note:
        text += f" ({note})"
    elif math.isfinite(lo) and math.isfinite(hi):
        low, high = format_number(fmt, lo), format_number(fmt, hi)
        if lo == hi:
            text += f" ({NOTE_IDENTICAL})"
        elif low == high:  # a real interval, narrower than the digits shown
            text += f" ({NOTE_NARROW})"
        else:
            text += f" ({low} – {high})"
    return text


#: The utilisation measures, in the order the report gives them: (metric, name, meaning).
UTILISATION_TERMS = (
    (
        "gpu_busy_fraction",
        "busy (occupancy)",
        "the share of paid GPU time with any work at all (one running sequence counts as "
        "much as two hundred): it says nothing about how much more the GPU could take",
    ),
    (
        "compute_utilisation",
        "MFU",
        "model FLOPs utilisation: the share of the GPU's peak FLOP/s the model's arithmetic used",
    ),
    (
        "bandwidth_utilisation",
        "MBU",
        "memory-bandwidth utilisation: the share of the GPU's peak memory bandwidth used "
        "(weights and KV cache read every step)",
    ),
)


def utilisation_rows(result: RunResult) -> list[list[str]]:
    """The report's utilisation table: the share of the capacity at the SLO first (when
    searched), then occupancy, MFU and MBU, each with its value and one sentence on what it
    means."""
    rows: list[list[str]] = []
    cap = result.capacity_found
    if cap is not None and math.isfinite(cap.scale):
        bound = (
            f"fails at ×{cap.scale_high:.3g}"
            if math.isfinite(cap.scale_high)
            else f"at least this: it holds at every load searched, up to ×{cap.max_scale:g}"
        )
        meaning = (
            "the utilisation a cost comparison needs: the offered load divided by the load at "
            f"which every class's SLO attainment target would just hold on this fleet "
            f"(×{cap.scale:.3g} the traffic, {cap.capacity_rps:.3g} req/s; {bound}; found by "
            f"simulation to within {cap.tolerance:.0%})"
        )
        if cap.note:
            meaning += f"; {cap.note}"
        rows.append(["share of capacity at the SLO", f"{cap.used_share:.1%}", meaning])
    elif cap is not None:  # no traffic (0 %), or the SLO fails at every load (–)
        shown = f"{cap.used_share:.1%}" if math.isfinite(cap.used_share) else "–"
        rows.append(["share of capacity at the SLO", shown, cap.describe()])
    summary = {str(r["metric"]): r for r in result.summary().to_dict("records")}
    for metric, name, meaning in UTILISATION_TERMS:
        if metric not in summary:
            continue
        r = summary[metric]
        value = with_ci(
            "{:.1%}", float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]), _text(r["note"])
        )
        rows.append([name, value, meaning])
    return rows


def capacity_bill_rows(result: RunResult) -> list[list[str]]:
    """The GPU bill split on the capacity at the SLO: used and paid for but unused."""
    cap = result.capacity_found
    if cap is None or not math.isfinite(cap.gpu_usd_per_month) or not math.isfinite(cap.used_share):
        return []
    return [
        ["capacity used (bill × share of capacity at the SLO)", money(cap.used_usd_per_month)],
        ["capacity paid for but unused", money(cap.unused_usd_per_month)],
        ["GPU bill", money(cap.gpu_usd_per_month)],
    ]


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def verdict_context(d: Decision | None) -> dict[str, Any]:
    """The decision for the report: the verdict paragraph, one row per option and where
    each class should run (empty without a decision)."""
    if d is None:
        return {}
    rows = []
    one = NOTE_ONE if d.replications < 2 else ""
    for r in d.table.to_dict("records"):
        rows.append(
            {
                "option": r["option"],
                "description": r["description"],
                "feasible": "yes" if r["feasible"] else "no",
                "reason": r["reason"],
                "cost": with_ci(
                    "${:,.0f}",
                    r["cost_per_month_usd"],
                    r["ci_low"],
                    r["ci_high"],
                    _text(r.get("ci_note")) or one,
                ),
                "slo": with_ci(
                    "{:.1%}",
                    r["slo_attainment"],
                    r["slo_ci_low"],
                    r["slo_ci_high"],
                    _text(r.get("slo_ci_note")) or one,
                ),
                "p_cheapest": f"{r['p_cheapest']:.0%}" if r["feasible"] else "–",
                "payback": _payback_text(
                    r["payback_months"], r["payback_ci_low"], r["payback_ci_high"]
                ),
                "recommended": bool(r["recommended"]),
            }
        )
    headline = (
        f"Recommended: {d.recommended}, the cheapest feasible option"
        if d.recommended is not None and not d.too_close
        else f"Too close to call: {d.recommended} or {d.runner_up}"
        if d.recommended is not None
        else "No option is feasible"
    )
    return {
        "headline": headline,
        "line": d.verdict.removeprefix("verdict: "),
        "options": rows,
        "classes": table_records(d.classes),
        "option": d.recommended or "option",
    }


def _payback_text(months: float, lo: float, hi: float) -> str:
    if months != months:
        return "–"
    if math.isinf(months):
        return "never"
    text = f"{months:.1f} months"
    if lo == lo and hi == hi:
        text += f" ({lo:.1f} – {'never' if math.isinf(hi) else f'{hi:.1f}'})"
    return text


def latency_table(result: RunResult) -> pd.DataFrame:
    """The option and the API-only baseline side by side: mean (95 % CI) per quantity."""
    table = result.summary().set_index("metric")
    rows = []
    for label, mine, theirs, fmt in SIDE_BY_SIDE:
        if mine not in table.index:
            continue
        cells = [label]
        for metric in (mine, theirs):
            if metric in table.index:
                m, lo, hi = plots.ci_row(table, metric)
                note = table.loc[metric].get("note", "")
                cells.append(with_ci(fmt, m, lo, hi, note if isinstance(note, str) else ""))
            else:
                cells.append("–")
        rows.append(cells)
    return pd.DataFrame(rows, columns=["quantity", "option", "api_only"])


#: The per-pool table's columns: (metric, header, format).
POOL_COLUMNS = (
    ("requests_served", "requests served", "{:,.0f}"),
    ("gpu_busy_fraction", "GPU busy", "{:.1%}"),
    ("compute_utilisation", "MFU", "{:.1%}"),
    ("bandwidth_utilisation", "MBU", "{:.1%}"),
    ("gpu_usd_per_month", "GPU cost per month", "${:,.0f}"),
    ("gpu_usd_per_1m_tokens", "GPU cost per 1M tokens served", "${:,.3f}"),
)


def pool_table(result: RunResult) -> pd.DataFrame:
    """A fleet of several pools: one row per pool, its hardware and pricing, then each of
    :data:`POOL_COLUMNS` as mean (95 % CI) over replications (the mean alone when every
    replication gave the same value); empty for one pool."""
    s = result.scenario
    if not s.pooled:
        return pd.DataFrame()
    table = result.summary().set_index("metric")
    rows = []
    for name, pool in zip(s.pool_names, s.pools, strict=True):
        kind = pool.pricing.kind if pool.pricing is not None else "on_demand"
        cells = {
            "pool": name,
            "hardware": f"{pool.size_text} × {pool.tp} × {pool.gpu}, {pool.model}"
            if isinstance(pool.model, str)
            else f"{pool.size_text} × {pool.tp} × {pool.gpu}",
            "pricing": kind.replace("_", "-"),
        }
        for metric, header, fmt in POOL_COLUMNS:
            key = f"{metric}[pool:{name}]"
            if key not in table.index:
                cells[header] = "–"
                continue
            # compact: the interval when there is one, else the value alone
            m, lo, hi = plots.ci_row(table, key)
            low, high = format_number(fmt, lo), format_number(fmt, hi)
            shown = math.isfinite(lo) and math.isfinite(hi) and low != high
            text = format_number(fmt, m)
            cells[header] = f"{text} ({low} – {high})" if shown else text
        rows.append(cells)
    return pd.DataFrame(rows)


def grouped_table(result: RunResult) -> pd.DataFrame:
    """Latency and SLO attainment per class and per route (means over replications)."""
    table = result.summary().set_index("metric")
    groups: dict[str, dict[str, str]] = {}
    for metric in table.index:
        base, sep, rest = str(metric).partition("[")
        if not sep:
            continue
        for name, fmt in GROUPED:
            if base == name:
                group = rest.removesuffix("]")
                groups.setdefault(group, {})[name] = format_number(
                    fmt, float(table.loc[metric, "mean"])
                )
    rows = [
        {"group": g, **{name: cells.get(name, "–") for name, _ in GROUPED}}
        for g, cells in groups.items()
    ]
    return pd.DataFrame(rows, columns=["group", *[name for name, _ in GROUPED]])


def plain(x: float) -> str:
    """A number for the assumptions table: thousands separators, at most five significant
    digits, no scientific notation unless the value is tiny or huge.

    Examples
    --------
    >>> plain(220000.0), plain(0.25), plain(1978.9), plain(8030261248), plain(2.75e-05)
    ('220,000', '0.25', '1,978.9', '8,030,261,248', '2.75e-05')
    """
    if not math.isfinite(x):
        return "–"
    size = abs(x)
    if x == int(x) and size < 1e15:
        return f"{int(x):,}"
    if size < 1e-3 or size >= 1e15:
        return f"{x:.3g}"
    decimals = max(0, 4 - math.floor(math.log10(size)))
    text = f"{x:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def money(x: float) -> str:
    """USD for the assumptions table: ``$220,000``, ``$300``, ``$4.29``, ``$0.075``.

    Examples
    --------
    >>> money(220000.0), money(300.0), money(4.29), money(2.1), money(0.075)
    ('$220,000', '$300', '$4.29', '$2.10', '$0.075')
    """
    if not math.isfinite(x):
        return "–"
    size = abs(x)
    whole = size >= 1000 or size == int(size)
    text = f"{size:,.0f}" if whole else f"{size:,.2f}" if size >= 1 else plain(size)
    return f"-${text}" if x < 0 else f"${text}"


def _input_value(key: str, value: float) -> str:
    """A scenario cost input by its name: USD amounts as money, the rest as plain numbers."""
    return money(value) if "usd" in key.split("_") else plain(value)


def _check(date: str, confidence: str, as_of: dt.date | None) -> str:
    return "; ".join(price_flags(date, confidence, as_of=as_of))


def assumptions(scenario: Scenario, *, as_of: dt.date | None = None) -> pd.DataFrame:
    """Every priced or catalogued input with its source and date: ``group``, ``input``,
    ``value``, ``source``, ``date``, ``flag``.

    ``flag`` says why a GPU or API price row should be checked
    (:func:`sim.catalog.price_checks.price_flags`): quoted more than six months before
    ``as_of`` (default today), undated, or of low confidence in the price catalogue; empty
    otherwise and on every other row.
    """
    rows: list[tuple[str, str, str, str, str]] = []
    flags: dict[int, str] = {}  # row index -> why to check that price
    pooled = scenario.pooled
    for pool_name, fleet in zip(scenario.pool_names, scenario.pools, strict=True):
        gpu = get_gpu(fleet.gpu)
        who = f"{pool_name}: " if pooled else ""
        price = resolve_gpu_hourly(fleet.pricing, gpu)
        rows.append(
            (
                "GPU price",
                f"{who}{gpu.name}, {price.kind}",
                f"{money(price.usd_per_gpu_hour)} per GPU-hour",
                price.source,
                price.date,
            )
        )
        given = fleet.pricing
        from_catalogue = given is None or (given.kind != "owned" and given.usd_per_gpu_hour is None)
        level = default_gpu_price(gpu.name, price.kind).confidence if from_catalogue else ""
        flags[len(rows) - 1] = _check(price.date, level, as_of)
        for key, value in price.breakdown.items():
            rows.append(("GPU price", f"{who}{key}", money(value), price.source, price.date))
        rows.append(
            (
                "GPU price",
                f"{who}billing increment / minimum",
                f"{plain(price.billing_increment_s)} s / {plain(price.min_billable_s)} s",
                "scenario",
                "",
            )
        )
    providers = scenario_apis(scenario)
    used = set(providers.of_class.values())
    for name, api_spec in providers.specs.items():
        if name not in used:
            continue
        api = resolve_api_prices(api_spec)
        prices: tuple[tuple[str, float | None, float | None], ...] = (
            ("input", api.usd_per_1m_input, api_spec.usd_per_1m_input),
            ("output", api.usd_per_1m_output, api_spec.usd_per_1m_output),
            ("cached input", api.usd_per_1m_cached_input, api_spec.usd_per_1m_cached_input),
        )
        for label, usd, override in prices:
            if usd is None:
                continue
            rows.append(
                (
                    "API price",
                    f"{api.key}: {label}",
                    f"{money(usd)} per 1M tokens",
                    api.source,
                    api.quote_date,
                )
            )
            # the catalogue's confidence holds for the prices the scenario did not override
            level = api.confidence if override is None else ""
            flags[len(rows) - 1] = _check(api.quote_date, level, as_of)
        rows.append(
            (
                "API price",
                f"{api.key}: batch discount",
                f"{api_spec.batch_discount:.0%}",
                "scenario",
                "",
            )
        )
        if api_spec.provisioned is not None:
            p = api_spec.provisioned
            rows.append(
                (
                    "API price",
                    f"{api.key}: provisioned throughput",
                    f"{money(p.usd_per_hour)}/h for {plain(p.tokens_per_s)} tok/s ({p.overflow})",
                    "scenario",
                    "",
                )
            )
    seen: set[tuple[str, str, str]] = set()
    for fleet in scenario.pools:
        gpu = get_gpu(fleet.gpu)
        model = resolve_model(fleet.model)
        if (gpu.name, model.name, repr(fleet.step_time)) in seen:
            continue
        seen.add((gpu.name, model.name, repr(fleet.step_time)))
        for key in (
            "memory_gib",
            "mem_bandwidth_tb_s",
            "bf16_tflops",
            "fp8_tflops",
            "fp4_tflops",
            "interconnect_gb_s",
            "tdp_w",
        ):
            value = getattr(gpu, key)
            if value is not None:
                rows.append(("GPU spec", f"{gpu.name}: {key}", plain(value), gpu.source, "catalog"))
        for key in (
            "num_layers",
            "hidden_size",
            "num_heads",
            "num_kv_heads",
            "head_dim",
            "intermediate_size",
            "vocab_size",
            "num_experts",
            "experts_per_token",
        ):
            rows.append(
                (
                    "model",
                    f"{model.name}: {key}",
                    f"{getattr(model, key):,}",
                    model.source,
                    "catalog",
                )
            )
        rows.append(
            (
                "model",
                f"{model.name}: parameters",
                f"{model.total_params:,}",
                model.source,
                "computed",
            )
        )
        spec = fleet.step_time
        if isinstance(spec, LinearStep | ConstantStep):
            for key, value in spec.model_dump().items():
                if key != "model":
                    rows.append(("step time", f"{spec.model}: {key}", plain(value), "scenario", ""))
        else:
            roof = resolve_roofline(spec, gpu.name)
            for key, value in roof.as_dict().items():
                rows.append(
                    (
                        "step time",
                        f"roofline: {key}",
                        plain(value),
                        f"{roof.origin[key]} (family {roof.family})",
                        "profiles.yaml",
                    )
                )
    for key, value in scenario.costs.model_dump(exclude={"setup"}).items():
        rows.append(("hidden costs", key, _input_value(key, value), "scenario", ""))
    for key, value in scenario.costs.setup.model_dump().items():
        if value is not None:
            rows.append(("setup costs", key, _input_value(key, value), "scenario", ""))
    table = pd.DataFrame(rows, columns=["group", "input", "value", "source", "date"])
    table["flag"] = [flags.get(i, "") for i in range(len(rows))]
    return table


def scenario_inputs(scenario: Scenario) -> pd.DataFrame:
    """Every value of the resolved scenario, one row per dotted path (``path``, ``value``)."""
    rows: list[tuple[str, str]] = []

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(node, list) and node and any(isinstance(v, dict | list) for v in node):
            for i, v in enumerate(node):
                name = v.get("name") if isinstance(v, dict) else None
                walk(f"{prefix}.{name if name is not None else i}", v)
        else:
            rows.append((prefix, "" if node is None else str(node)))

    walk("", yaml.safe_load(dump_scenario(scenario)))
    return pd.DataFrame(rows, columns=["path", "value"])


def table_records(frame: pd.DataFrame) -> list[list[str]]:
    """The rows of ``frame`` as text cells for the template (floats to 4 significant
    digits, ``–`` when not finite)."""
    return [[_cell(v) for v in row] for row in frame.itertuples(index=False)]


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else "–"
    return str(value)
