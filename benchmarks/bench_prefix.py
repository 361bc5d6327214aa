"""Prefix caching on the Mooncake conversation trace: hit rate vs KV-cache size and router.

The shipped trace (one hour, 12,031 requests, prompts of 12,035 tokens on average, each
carrying the hashes of its 512-token blocks) is replayed once on a fleet of Llama-3.1-8B
replicas on H100 SXM GPUs (tp 1, engine defaults, roofline step time), for each KV-cache
size per replica and each router:

* ``round_robin``, ``least_loaded`` (fewest outstanding tokens) and ``power_of_two`` look at
  load only;
* ``prefix_affinity`` sends a request to the replica holding its longest cached prefix among
  those within a load allowance of the least loaded (``fleet.affinity``).

Reported per run, over the requests arriving after a 300 s warm-up: the prefix hit rate
(prompt tokens found in a replica's cache at a request's first admission / prompt tokens),
the prefill tokens the cache saved (every admission, recomputes after preemption
included), preemptions, TTFT p50 and p99, the SLO attainment (TTFT ≤ 2 s, TPOT ≤ 50 ms),
the GPU busy fraction and the fleet's cost per million tokens (the catalogue's on-demand
H100 price; a fixed fleet costs the same under every router, so caching shows in latency
and in the fleet size an SLO needs, not in this column).

The trace's own reuse — the share of prompt tokens in whole leading 512-token blocks that an
earlier request carried, an unbounded cache serving one request at a time — is printed first
as the ceiling.

Run ``.venv/bin/python benchmarks/bench_prefix.py`` (``--help`` for the options); about
a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import sim

TRACE = Path(__file__).parents[1] / "scenarios" / "traces" / "mooncake_conversation_trace.jsonl"
ROUTERS = ("round_robin", "least_loaded", "power_of_two", "prefix_affinity")
BLOCK = 16  # engine block, tokens


def trace_reuse(path: Path = TRACE, block: int = 512) -> float:
    """Share of prompt tokens in whole leading blocks that an earlier request carried."""
    seen: set[tuple[int, ...]] = set()
    hit = total = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        ids = tuple(row["hash_ids"])
        m = 0
        while m < len(ids) and ids[: m + 1] in seen:
            m += 1
        hit += min(m * block, row["input_length"])
        total += row["input_length"]
        seen.update(ids[: k + 1] for k in range(len(ids)))
    return hit / total


def scenario(router: str, kv_tokens: int | None, replicas: int) -> sim.Scenario:
    """The trace on ``replicas`` H100s with ``kv_tokens`` of KV cache each (None: sized by
    memory, as vLLM does)."""
    engine: dict[str, Any] = {}
    if kv_tokens is not None:
        engine["kv_blocks"] = kv_tokens // BLOCK
    return sim.Scenario.model_validate(
        {
            "name": "bench-prefix",
            "horizon": {"duration_s": 3600.0, "warmup_s": 300.0},
            "workload": {
                "classes": [
                    {
                        "name": "conversation",
                        "arrivals": {"process": "trace", "path": str(TRACE)},
                        "slo": {"ttft_s": 2.0, "tpot_s": 0.05},
                    }
                ]
            },
            "fleet": {
                "model": "llama-3.1-8b",
                "gpu": "h100-sxm",
                "replicas": replicas,
                "router": router,
                "engine": engine,
            },
        }
    )


def run_one(router: str, kv_tokens: int | None, replicas: int) -> dict[str, Any]:
    """One replication of the trace; the figures of the table."""
    scn = scenario(router, kv_tokens, replicas)
    t0 = time.perf_counter()
    out = sim.simulate(scn, seed=1)
    wall = time.perf_counter() - t0
    m = out.metrics
    req = out.requests
    window = (req["arrival_s"] >= 300.0) & (req["status"] == "completed")
    return {
        "router": router,
        "kv_tokens_per_replica": out.replica.kv_blocks * out.replica.block_tokens,
        "hit_rate": float(req["cached_tokens"][window].sum() / req["input_tokens"][window].sum()),
        "prefill_tokens_saved": m.get("prefill_tokens_saved", 0.0),
        "preemptions": m["preemptions"],
        "slo_attainment": m["slo_attainment"],
        "ttft_p50_s": m["ttft_p50_s"],
        "ttft_p99_s": m["ttft_p99_s"],
        "gpu_busy_fraction": m["gpu_busy_fraction"],
        "cost_per_1m_tokens_usd": m["cost_per_1m_tokens_usd"],
        "wall_s": wall,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicas", type=int, default=8, help="replicas in the fleet")
    ap.add_argument(
        "--kv-tokens",
        type=int,
        nargs="+",
        default=[150_000, 0, 2_000_000],
        help="KV-cache tokens per replica (0: sized by GPU memory)",
    )
    ap.add_argument("--routers", nargs="+", default=list(ROUTERS), choices=ROUTERS)
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    print(f"trace reuse (unbounded cache, whole 512-token blocks): {trace_reuse():.1%}")
    rows = []
    print(
        "| KV tokens / replica | router | hit rate | prefill tokens saved | preemptions | "
        "TTFT p50 | TTFT p99 | SLO met | GPU busy | $ / 1M tokens |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kv in args.kv_tokens:
        for router in args.routers:
            row = run_one(router, kv or None, args.replicas)
            rows.append(row)
            print(
                f"| {row['kv_tokens_per_replica']:,} | `{router}` | {row['hit_rate']:.1%} | "
                f"{row['prefill_tokens_saved'] / 1e6:.1f} M | {row['preemptions']:,.0f} | "
                f"{row['ttft_p50_s']:.2f} s | {row['ttft_p99_s']:.2f} s | "
                f"{row['slo_attainment']:.1%} | {row['gpu_busy_fraction']:.2f} | "
                f"{row['cost_per_1m_tokens_usd']:.3f} |",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
