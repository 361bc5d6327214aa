"""What an API provider's prompt cache reads on a trace with prompt identities.

Reads a Mooncake-format trace (``timestamp`` in ms, ``input_length``, ``output_length``,
``hash_ids`` of 512-token blocks), chains its block ids, and replays every request through
the caching rule of a few catalogue models (:mod:`sim.economics.prompt_cache`), one shared
cache per model. Prints, per model: the share of prompt tokens read from the cache, the share
written, the pay-per-token bill with and without the cache, and the replay's time. Also the
trace's prefix-reuse ratio with an unbounded cache (the upper bound of any cached share).

    .venv/bin/python benchmarks/api_prompt_cache.py PATH/mooncake_conversation_trace.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from sim.economics.apis import api_bill, resolve_api_prices
from sim.economics.prompt_cache import replay_prompt_cache, resolve_cache_rule
from sim.economics.spec import ApiSpec
from sim.workload.identity import PromptBlocks, chain_hashes

MODELS = (
    ("openai/gpt-4.1", None),
    ("openai/gpt-5.6", None),
    ("anthropic/claude-sonnet-4-5", None),
    ("anthropic/claude-sonnet-4-5", {"ttl_s": 3600}),
)


def read_trace(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, PromptBlocks]:
    arrival, inp, out, counts, raw = [], [], [], [], []
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            arrival.append(row["timestamp"] / 1000.0)
            inp.append(row["input_length"])
            out.append(row["output_length"])
            counts.append(len(row["hash_ids"]))
            raw.extend(row["hash_ids"])
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    hashes = chain_hashes(offsets, np.asarray(raw, dtype=np.int64))
    return (
        np.asarray(arrival),
        np.asarray(inp, dtype=np.int64),
        np.asarray(out, dtype=np.int64),
        PromptBlocks(512, offsets, hashes),
    )


def unbounded_reuse(tokens: np.ndarray, blocks: PromptBlocks, order: np.ndarray) -> float:
    seen: set[int] = set()
    hit = 0
    for i in order:
        hs = blocks.of(int(i)).tolist()
        k = 0
        while k < len(hs) and hs[k] in seen:
            k += 1
        hit += min(k * blocks.block_tokens, int(tokens[i]))
        seen.update(hs)
    return hit / float(tokens.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trace", type=Path)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    arrival, inp, out, blocks = read_trace(args.trace)
    order = np.argsort(arrival, kind="stable")
    report: dict[str, object] = {
        "requests": len(inp),
        "prompt_tokens": int(inp.sum()),
        "unbounded_reuse": unbounded_reuse(inp, blocks, order),
    }
    print(f"{len(inp):,} requests, {int(inp.sum()):,} prompt tokens over {arrival.max():.0f} s")
    print(f"prefix reuse with an unbounded cache: {report['unbounded_reuse']:.1%}")
    rows = []
    for key, override in MODELS:
        spec = ApiSpec(model=key, prompt_cache=override)
        rule = resolve_cache_rule(spec)
        prices = resolve_api_prices(spec)
        replay_prompt_cache(arrival[:2], inp[:2], blocks.take(np.arange(2)), rule)  # compile
        start = time.perf_counter()
        rep = replay_prompt_cache(arrival, inp, blocks, rule)
        took = time.perf_counter() - start
        with_cache = api_bill(
            inp, rep.cached_tokens, out, prices=prices, cache_write_tokens=rep.write_tokens
        ).sum()
        without = api_bill(inp, np.zeros_like(inp), out, prices=prices).sum()
        row = {
            "model": key + ("" if override is None else f" {override}"),
            "rule": f"{rule.kind}, min {rule.min_tokens}, increment {rule.increment_tokens}, "
            f"ttl {rule.ttl_s:g} s",
            "cached_share": float(rep.cached_tokens.sum() / inp.sum()),
            "write_share": float(rep.write_tokens.sum() / inp.sum()),
            "usd_with_cache": float(with_cache),
            "usd_without_cache": float(without),
            "saved_share": float(1 - with_cache / without),
            "replay_s": took,
        }
        rows.append(row)
        print(
            f"{row['model']:<44} {row['rule']:<46} cached {row['cached_share']:6.1%} "
            f"written {row['write_share']:6.1%}  bill ${with_cache:8.2f} vs ${without:8.2f} "
            f"({row['saved_share']:+.1%} saved)  replay {took * 1e3:.0f} ms"
        )
    report["models"] = rows
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
