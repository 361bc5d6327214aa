"""Prompt caching and the self-host vs API verdict on the Mooncake conversation trace.

Answers ``scenarios/mooncake-prefix-caching.yaml`` twice on the same requests (common random
numbers, fixed seed):

* **caching on**: the trace's prompt identities (``hash_ids``) drive the fleet's prefix cache
  (``prefix_affinity`` router) and each API's caching rule from the price catalogue;
* **caching off**: ``prompt_identity: false`` on the trace's arrivals (no prefix is ever found
  in a replica's cache) and ``api.prompt_cache: {mode: none}`` (the APIs bill every prompt
  token at the full input price).

For each, the fleet is first sized to the SLO: the smallest number of replicas (from
``--min-replicas`` up) for which ``self_host_only`` is feasible (the class's SLO attainment
target met, the backlog not growing), one replication each; the trace replays identically
in every replication, so one tells. Then every option of the scenario is simulated at that
size (``--replications``, seed ``--seed``) and the decision taken as ``crossover run`` takes
it. Printed, as Markdown: per option and setting, the monthly cost, what caching saves it,
the share of prompt tokens its cache served (the fleet's prefix hit rate; the API's cached
input share), TTFT p99 and SLO attainment; then the verdict of each setting.

Run ``.venv/bin/python benchmarks/prefix_verdict.py`` (``--help`` for the options): about half
a minute on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import sim

SCENARIO = Path(__file__).parents[1] / "scenarios" / "mooncake-prefix-caching.yaml"
SETTINGS: dict[str, dict[str, Any]] = {
    "on": {},
    "off": {
        "workload.classes.conversation.arrivals.prompt_identity": False,
        "api.prompt_cache": {"mode": "none"},
    },
}


def self_host_feasible(scenario: sim.Scenario, replicas: int, seed: int) -> tuple[bool, str]:
    """Whether ``self_host_only`` meets the scenario's constraints with ``replicas``."""
    scn = scenario.with_overrides({"fleet.replicas": replicas, "options": ["self_host_only"]})
    table = sim.run(scn, replications=1, seed=seed).decision().table
    row = table.loc[table["option"] == "self_host_only"].iloc[0]
    return bool(row["feasible"]), str(row["reason"] or "")


def smallest_fleet(scenario: sim.Scenario, lo: int, hi: int, seed: int) -> int:
    """The fewest replicas in ``[lo, hi]`` for which the fleet alone is feasible."""
    for replicas in range(lo, hi + 1):
        ok, why = self_host_feasible(scenario, replicas, seed)
        print(f"  {replicas} replicas: {'feasible' if ok else why}", flush=True)
        if ok:
            return replicas
    raise SystemExit(f"no fleet of {lo} to {hi} replicas meets the constraints")


def _mean(runs: Any, column: str) -> float:
    """Mean of a metric over replications; NaN when no run has it (no prompt identity)."""
    return float(runs[column].mean()) if column in runs else float("nan")


def answer(scenario: sim.Scenario, replications: int, seed: int) -> dict[str, Any]:
    """The decision on ``scenario``, and per option the figures of the table."""
    result = sim.run(scenario, replications=replications, seed=seed)
    decision = result.decision()
    runs = result.option_runs()
    options: dict[str, dict[str, Any]] = {}
    for row in decision.table.to_dict("records"):
        mine = runs.loc[runs["option"] == row["option"]]
        on_fleet = row["kind"] == "self_host_only"
        served = "prefix_hit_rate" if on_fleet else "api_cached_input_share"
        options[str(row["option"])] = {
            "kind": row["kind"],
            "feasible": bool(row["feasible"]),
            "cost_usd_per_month": float(row["cost_per_month_usd"]),
            "cache_served_share": _mean(mine, served),
            "prefill_tokens_saved": _mean(mine, "prefill_tokens_saved") if on_fleet else 0.0,
            "api_cache_savings_usd_per_month": 0.0
            if on_fleet
            else _mean(mine, "api_cache_savings_usd_per_month"),
            "ttft_p99_s": float(row["ttft_p99_s"]),
            "slo_attainment": float(row["slo_attainment"]),
        }
    return {
        "recommended": decision.recommended,
        "runner_up": decision.runner_up,
        "difference_usd_per_month": decision.difference[0],
        "too_close": decision.too_close,
        "verdict": decision.verdict,
        "options": options,
    }


def _pct(x: float) -> str:
    return "–" if x != x else f"{x:.1%}"


def _usd(x: float) -> str:
    return f"${x:,.0f}"


def table(report: dict[str, Any]) -> str:
    """The Markdown table and the verdict lines of ``report``."""
    on, off = report["on"], report["off"]
    lines = [
        "| option | caching | $ / month | saved by caching | cache served | TTFT p99 | SLO met |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, a in on["options"].items():
        b = off["options"][name]
        fleet = a["kind"] == "self_host_only"
        label = f"{name} ({on['replicas']} / {off['replicas']} × H100)" if fleet else name
        saved = b["cost_usd_per_month"] - a["cost_usd_per_month"]
        for setting, row in (("on", a), ("off", b)):
            lines.append(
                f"| {label if setting == 'on' else ''} | {setting} | "
                f"{_usd(row['cost_usd_per_month'])}{'' if row['feasible'] else ' (infeasible)'}"
                f" | {_usd(saved) if setting == 'on' else ''} | "
                f"{_pct(row['cache_served_share']) if setting == 'on' else '–'} | "
                f"{row['ttft_p99_s']:.2f} s | {_pct(row['slo_attainment'])} |"
            )
    lines.append("")
    for setting in ("on", "off"):
        r = report[setting]
        lines.append(
            f"caching {setting}: cheapest feasible {r['recommended']}, "
            f"{_usd(r['difference_usd_per_month'])}/month less than {r['runner_up']}"
            + (" (too close to call)" if r["too_close"] else "")
        )
    fleet = next(n for n, o in on["options"].items() if o["kind"] == "self_host_only")
    for setting in ("on", "off"):
        opts = report[setting]["options"]
        for name, o in opts.items():
            if name == fleet:
                continue
            gap = opts[fleet]["cost_usd_per_month"] - o["cost_usd_per_month"]
            lines.append(
                f"caching {setting}: {fleet} vs {name}: "
                + (
                    f"the API {_usd(gap)}/month cheaper"
                    if gap > 0
                    else f"the fleet {_usd(-gap)}/month cheaper"
                )
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", type=Path, default=SCENARIO)
    ap.add_argument("--replications", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-replicas", type=int, default=4)
    ap.add_argument("--max-replicas", type=int, default=12)
    ap.add_argument(
        "--fixed-fleet", action="store_true", help="keep the scenario's replicas in both settings"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    base = sim.load_scenario(args.scenario)
    report: dict[str, Any] = {}
    for setting, overrides in SETTINGS.items():
        scn = base.with_overrides(overrides)
        if args.fixed_fleet:
            replicas = base.fleet.replicas
        else:
            print(f"caching {setting}: the smallest fleet that meets the SLO", flush=True)
            replicas = smallest_fleet(scn, args.min_replicas, args.max_replicas, args.seed)
        report[setting] = {
            "replicas": replicas,
            **answer(
                scn.with_overrides({"fleet.replicas": replicas}), args.replications, args.seed
            ),
        }
    print()
    print(table(report))
    print(
        f"\n{args.replications} replications, seed {args.seed}, {time.perf_counter() - start:.0f} s"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
