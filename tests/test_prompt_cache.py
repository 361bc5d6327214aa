"""The API's prompt cache replayed from prompt identities: hand-worked cases of the
automatic (OpenAI-style) and explicit (Anthropic-style) rules, an independent plain-Python
replay on random sessions, the rule's resolution from the catalogue and the scenario, and
the bills that follow."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from sim.catalog.prices import ApiPrice, api_price
from sim.economics import ApiSpec, api_bill, api_providers, cost_metrics
from sim.economics.apis import api_cache_tokens, resolve_api_prices
from sim.economics.prompt_cache import (
    CacheRule,
    replay_options,
    replay_prompt_cache,
    resolve_cache_rule,
)
from sim.workload.identity import PromptBlocks

OPENAI = CacheRule("automatic", min_tokens=1024, increment_tokens=128, ttl_s=600.0)
ANTHROPIC = CacheRule("explicit", min_tokens=1024, ttl_s=300.0)


def _blocks(lists: list[list[int]], block: int = 512) -> PromptBlocks:
    """Chained hashes given as already chained ids (distinct prefixes, distinct ids)."""
    offsets = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum([len(x) for x in lists], out=offsets[1:])
    flat = np.array([h for x in lists for h in x], dtype=np.int64)
    return PromptBlocks(block, offsets, flat)


def _replay(rule: CacheRule, times: list[float], tokens: list[int], lists: list[list[int]],
            block: int = 512) -> tuple[list[int], list[int]]:  # fmt: skip
    r = replay_prompt_cache(times, tokens, _blocks(lists, block), rule)
    return r.cached_tokens.tolist(), r.write_tokens.tolist()


# --- automatic (OpenAI-style) ---------------------------------------------------------------


def test_automatic_reads_the_shared_prefix_in_increments() -> None:
    # 2000 tokens = 3 full blocks + 464; the second prompt shares 3 blocks = 1536 tokens
    cached, written = _replay(OPENAI, [0.0, 60.0], [2000, 2000], [[1, 2, 3, 4], [1, 2, 3, 5]])
    # first: nothing read; writes its cacheable length 2000 // 128 * 128 = 1920
    # second: reads 1536 (12 x 128, >= 1024) and writes 1920 - 1536 = 384
    assert cached == [0, 1536]
    assert written == [1920, 384]


def test_automatic_counts_down_to_the_increment() -> None:
    # blocks of 100 tokens: 11 shared blocks = 1100 tokens -> 1024 (8 x 128)
    shared = list(range(1, 12))
    cached, written = _replay(
        OPENAI, [0.0, 1.0], [1150, 1300], [[*shared, 50], [*shared, 60, 61]], block=100
    )
    assert cached == [0, 1024]
    # cacheable: 1150 // 128 * 128 = 1024; 1300 // 128 * 128 = 1280, of which 1024 read
    assert written == [1024, 256]


def test_automatic_minimum_length() -> None:
    # a 1000-token prompt is never cached, not even when an identical one came before
    cached, written = _replay(OPENAI, [0.0, 1.0], [1000, 1000], [[1, 2], [1, 2]])
    assert cached == [0, 0] and written == [0, 0]
    # a shared prefix of 2 blocks = 1024 tokens is read; one block (512) is not
    cached, _ = _replay(
        OPENAI,
        [0.0, 1.0, 2.0],
        [1100, 1100, 1100],
        [[1, 2, 3], [1, 2, 4], [1, 9, 10]],
    )
    assert cached == [0, 1024, 0]


def test_automatic_ttl_from_last_use() -> None:
    lists = [[1, 2, 3], [1, 2, 3], [1, 2, 3]]
    # 600 s after the last use is still alive, 600.5 s is not
    assert _replay(OPENAI, [0.0, 600.0, 1200.5], [1500] * 3, lists)[0] == [0, 1408, 0]
    # every read refreshes: 550 s apart, each is a hit though the first write is long gone
    assert _replay(OPENAI, [0.0, 550.0, 1100.0], [1500] * 3, lists)[0] == [0, 1408, 1408]


def test_identical_prompt_reads_its_whole_cacheable_length() -> None:
    cached, written = _replay(OPENAI, [0.0, 5.0], [1300, 1300], [[1, 2, 3], [1, 2, 3]])
    assert cached == [0, 1280] and written == [1280, 0]


def test_requests_without_hashes_are_not_cached() -> None:
    cached, written = _replay(OPENAI, [0.0, 1.0], [2000, 2000], [[], []])
    assert cached == [0, 0] and written == [0, 0]


def test_replay_takes_arrival_order_not_row_order() -> None:
    cached, _ = _replay(OPENAI, [60.0, 0.0], [2000, 2000], [[1, 2, 3, 4], [1, 2, 3, 5]])
    assert cached == [1536, 0]


# --- explicit (Anthropic-style) -------------------------------------------------------------

# one tenant's system prompt (blocks 1, 2 = 1024 tokens); session X: turn 1 then turn 2
# (turn 2 repeats turn 1's full blocks; turn 1's partial last block is its own), session Y:
# turn 1 of another conversation of the same tenant
X1 = [1, 2, 3, 4]  # 1800 tokens: 3 full blocks + 264
X2 = [1, 2, 3, 14, 15, 16]  # 2900 tokens: 5 full blocks + 340
Y1 = [1, 2, 20]  # 1300 tokens: 2 full blocks + 276


def test_explicit_breakpoints_at_the_ends_of_shared_segments() -> None:
    cached, written = _replay(ANTHROPIC, [0.0, 100.0, 350.0], [1800, 2900, 1300], [X1, X2, Y1])
    # X1: breakpoints after block 2 (the system prompt, sent by 3 requests) and block 3
    #     (sent by 2); nothing cached yet: writes 3 x 512 = 1536
    # X2: reads the entry at block 3 (100 s old): 1536; its own history is shared with
    #     nobody: no breakpoint beyond, no write; refreshes the entry at block 2
    # Y1: breakpoint after block 2; that entry was refreshed at 100 s, 250 s ago: reads 1024
    assert cached == [0, 1536, 1024]
    assert written == [1536, 0, 0]


def test_explicit_entry_expires_after_its_ttl() -> None:
    # Y1 301 s after X2's refresh: the system prompt's entry is gone; Y1 writes it again
    cached, written = _replay(ANTHROPIC, [0.0, 100.0, 401.0], [1800, 2900, 1300], [X1, X2, Y1])
    assert cached == [0, 1536, 0]
    assert written == [1536, 0, 1024]


def test_explicit_minimum_and_unshared_prompts() -> None:
    rule = CacheRule("explicit", min_tokens=2048, ttl_s=300.0)
    # the only shared prefixes are 1024 and 1536 tokens long: below the minimum
    cached, written = _replay(rule, [0.0, 100.0, 350.0], [1800, 2900, 1300], [X1, X2, Y1])
    assert cached == [0, 0, 0] and written == [0, 0, 0]
    # a prompt nobody else sends is never marked: no write premium on it
    assert _replay(ANTHROPIC, [0.0], [5000], [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]) == ([0], [0])


def test_explicit_one_breakpoint_is_the_deepest() -> None:
    rule = CacheRule("explicit", min_tokens=1024, ttl_s=300.0, max_breakpoints=1)
    cached, written = _replay(rule, [0.0, 100.0, 350.0], [1800, 2900, 1300], [X1, X2, Y1])
    # X1 marks only block 3; Y1 finds no entry at block 2 (none was written there)
    assert cached == [0, 1536, 0]
    assert written == [1536, 0, 1024]


def test_none_caches_nothing() -> None:
    assert _replay(CacheRule("none"), [0.0, 1.0], [2000, 2000], [X1, X1]) == ([0, 0], [0, 0])


# --- an independent plain-Python replay -----------------------------------------------------


def _reference(rule: CacheRule, times, tokens, lists, block):  # type: ignore[no-untyped-def]
    """The rules written again, plainly, from the module's description."""
    last: dict[int, float] = {}
    share = Counter(h for hs in lists for h in hs)
    cached, written = [0] * len(lists), [0] * len(lists)

    def live(h: int, t: float) -> bool:
        return h in last and t - last[h] <= rule.ttl_s

    for i in sorted(range(len(lists)), key=lambda i: (times[i], i)):
        t, n, hs = times[i], tokens[i], lists[i]
        if not hs:
            continue
        if rule.kind == "automatic":
            if n < rule.min_tokens:
                continue
            k = 0
            while k < len(hs) and live(hs[k], t):
                k += 1
            inc = rule.increment_tokens
            hit = min(k * block, n) // inc * inc
            hit = hit if hit >= rule.min_tokens else 0
            whole = n // inc * inc
            whole = whole if whole >= rule.min_tokens else 0
            cached[i], written[i] = hit, whole - hit
            for h in hs:
                last[h] = t
        else:
            ends = [
                p
                for p in range(1, len(hs) + 1)
                if share[hs[p - 1]] >= 2
                and (p == len(hs) or share[hs[p]] < share[hs[p - 1]])
                and min(p * block, n) >= rule.min_tokens
            ]
            if len(ends) > rule.max_breakpoints:
                keep = rule.max_breakpoints - 1
                ends = ([ends[0]] if keep else []) + ends[len(ends) - max(keep, 1) :]
            if not ends:
                continue
            j = next((p for p in range(ends[-1], 0, -1) if live(hs[p - 1], t)), 0)
            read = min(j * block, n) if j else 0
            if j:
                last[hs[j - 1]] = t
            for p in ends:
                last[hs[p - 1]] = t
            deeper = [p for p in ends if p > j]
            cached[i] = read
            written[i] = min(deeper[-1] * block, n) - read if deeper else 0
    return cached, written


def _sessions(rng: np.random.Generator, n_sessions: int, block: int):  # type: ignore[no-untyped-def]
    # random conversations over a few shared system prompts: prompts are lists of chained
    # ids built by hand (a new id for each new prefix)
    next_id = iter(range(1, 10**9))
    systems = [[next(next_id) for _ in range(rng.integers(1, 20))] for _ in range(3)]
    times, tokens, lists = [], [], []
    for _ in range(n_sessions):
        t = float(rng.uniform(0, 3000))
        history = list(systems[rng.integers(3)])
        for _turn in range(rng.integers(1, 6)):
            new = [next(next_id) for _ in range(rng.integers(1, 12))]
            full = history + new
            partial = int(rng.integers(1, block))
            times.append(t)
            tokens.append((len(full) - 1) * block + partial)
            lists.append([*full[:-1], next(next_id)])  # last block partial: its own id
            history = [*full[:-1], next(next_id)]  # the reply completes that block
            t += float(rng.exponential(200.0))
    return times, tokens, lists


@pytest.mark.parametrize(
    "rule",
    [
        OPENAI,
        CacheRule("automatic", min_tokens=256, increment_tokens=1, ttl_s=120.0),
        ANTHROPIC,
        CacheRule("explicit", min_tokens=64, ttl_s=150.0, max_breakpoints=2),
        CacheRule("explicit", min_tokens=64, ttl_s=3600.0, max_breakpoints=1),
    ],
)
def test_matches_an_independent_replay(rule: CacheRule) -> None:
    block = 64
    times, tokens, lists = _sessions(np.random.default_rng(3), 120, block)
    expected = _reference(rule, times, tokens, lists, block)
    got = _replay(rule, times, tokens, lists, block)
    assert got == expected
    assert sum(got[0]) > 0  # the cases do exercise the cache
    assert all(c + w <= n for c, w, n in zip(*got, tokens, strict=True))


def test_million_requests_replay_quickly() -> None:
    import time

    rng = np.random.default_rng(0)
    n, per = 1_000_000, 8
    offsets = np.arange(n + 1, dtype=np.int64) * per
    hashes = rng.integers(0, 20_000, size=n * per).astype(np.int64)
    blocks = PromptBlocks(64, offsets, hashes)
    arrival = np.sort(rng.uniform(0, 86400, n))
    tokens = np.full(n, per * 64)
    replay_prompt_cache(arrival[:10], tokens[:10], blocks.take(np.arange(10)), OPENAI)
    start = time.perf_counter()
    replay_prompt_cache(arrival, tokens, blocks, CacheRule("automatic", min_tokens=64))
    assert time.perf_counter() - start < 10.0


# --- rules from the catalogue and the scenario ----------------------------------------------


def test_catalogue_rules() -> None:
    gpt = api_price("openai/gpt-4.1")
    assert (gpt.cache_mode, gpt.cache_increment_tokens, gpt.cache_write_usd_per_1m) == (
        "automatic",
        128,
        None,
    )
    claude = api_price("anthropic/claude-sonnet-4-5")
    assert claude.cache_mode == "explicit" and claude.cache_write_usd_per_1m == 3.75
    assert api_price("hyperbolic/Llama-3.3-70B-Instruct").cache_mode == "none"
    rule = resolve_cache_rule(ApiSpec(model="anthropic/claude-sonnet-4-5"))
    assert rule == CacheRule("explicit", min_tokens=1024, increment_tokens=1, ttl_s=300.0)
    rule = resolve_cache_rule(ApiSpec(model="openai/gpt-5.6"))
    assert (rule.kind, rule.ttl_s) == ("automatic", 1800.0)
    assert resolve_api_prices(ApiSpec(model="openai/gpt-5.6")).cache_write_usd_per_1m == 5.0


def test_scenario_overrides_the_rule_and_the_write_price() -> None:
    spec = ApiSpec(model="anthropic/claude-sonnet-4-5", prompt_cache={"ttl_s": 3600})
    # the one-hour lifetime is written at 2 x input
    assert resolve_api_prices(spec).cache_write_usd_per_1m == 6.0
    spec = ApiSpec(
        model="openai/gpt-4o",
        prompt_cache={"mode": "none"},
    )
    assert resolve_cache_rule(spec).kind == "none"
    custom = ApiSpec(
        usd_per_1m_input=1.0,
        usd_per_1m_output=2.0,
        usd_per_1m_cached_input=0.1,
        prompt_cache={"mode": "explicit", "min_tokens": 256, "usd_per_1m_cache_write": 1.5},
    )
    assert resolve_cache_rule(custom) == CacheRule("explicit", min_tokens=256)
    assert resolve_api_prices(custom).cache_write_usd_per_1m == 1.5
    # a custom price with a discount but no mode: automatic with the defaults
    auto = ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=2.0, usd_per_1m_cached_input=0.5)
    assert resolve_cache_rule(auto) == CacheRule("automatic", min_tokens=1024, ttl_s=300.0)
    # a catalogue row without caching, given a cached price in the scenario: automatic
    deal = ApiSpec(model="together_ai/Llama-3.3-70B-Instruct-Turbo", usd_per_1m_cached_input=0.5)
    assert resolve_cache_rule(deal).kind == "automatic"
    assert resolve_cache_rule(ApiSpec(model="together_ai/Llama-3.3-70B-Instruct-Turbo")).kind == (
        "none"
    )


@pytest.mark.parametrize(
    ("cache", "field"),
    [
        ({"mode": "explicit", "increment_tokens": 128}, "increment_tokens applies"),
        ({"mode": "none", "ttl_s": 60}, "mode none caches nothing"),
        ({"mode": "sometimes"}, "prompt_cache.mode"),
        ({"ttl_s": 0}, "prompt_cache.ttl_s"),
        ({"min_tokens": -1}, "prompt_cache.min_tokens"),
        ({"max_breakpoints": 0}, "prompt_cache.max_breakpoints"),
        ({"ttl": 60}, "prompt_cache.ttl"),
    ],
)
def test_bad_prompt_cache_fields(cache: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ApiSpec.model_validate({"model": "openai/gpt-4o", "prompt_cache": cache})
    text = str(err.value)
    assert field.split(".")[-1] in text


# --- the bill -------------------------------------------------------------------------------


def test_bill_by_hand_with_writes() -> None:
    # claude-sonnet-4-5: input 3, cached 0.3, write 3.75, output 15 per 1M tokens
    prices = resolve_api_prices(ApiSpec(model="anthropic/claude-sonnet-4-5"))
    rep = replay_prompt_cache(
        [0.0, 100.0, 350.0], [1800, 2900, 1300], _blocks([X1, X2, Y1]), ANTHROPIC
    )
    usd = api_bill(
        [1800, 2900, 1300],
        rep.cached_tokens,
        [100, 100, 100],
        prices=prices,
        cache_write_tokens=rep.write_tokens,
    )
    expected = [
        (264 * 3 + 1536 * 3.75 + 100 * 15) / 1e6,
        ((2900 - 1536) * 3 + 1536 * 0.3 + 100 * 15) / 1e6,
        ((1300 - 1024) * 3 + 1024 * 0.3 + 100 * 15) / 1e6,
    ]
    np.testing.assert_allclose(usd, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="cached \\+ written <= input"):
        api_bill([10], [6], [0], prices=prices, cache_write_tokens=[5])


def _frame(route: list[str]) -> pd.DataFrame:
    n = len(route)
    return pd.DataFrame(
        {
            "arrival_s": [0.0, 100.0, 350.0][:n],
            "class_name": ["chat"] * n,
            "input_tokens": [1800, 2900, 1300][:n],
            "output_tokens": [100] * n,
            "route": route,
            "status": ["completed"] * n,
        }
    )


def test_cost_metrics_from_the_replay() -> None:
    spec = ApiSpec(model="anthropic/claude-sonnet-4-5")
    providers = api_providers(spec, {}, {"chat": None})
    blocks = _blocks([X1, X2, Y1])
    frame = _frame(["api", "fleet", "api"])
    tokens = api_cache_tokens(frame, blocks, providers)
    # served: X1 and Y1 only (X2 stayed on the fleet): they share just the system prompt,
    # X1 marks it and writes 1024; Y1 finds that entry 350 s old, gone, and writes it again.
    # All-API: as in the hand-worked case above
    assert [a.tolist() for a in tokens] == [
        [0, 0, 0],
        [1024, 0, 1024],
        [0, 1536, 1024],
        [1536, 0, 0],
    ]
    m = cost_metrics(frame, window=(0.0, 3600.0), fleet=None, api=providers, cache_tokens=tokens)
    routed = (776 * 3 + 1024 * 3.75 + 1500 + 276 * 3 + 1024 * 3.75 + 1500) / 1e6
    assert m["api_cost_usd"] == pytest.approx(routed, rel=1e-12)
    everything = (
        264 * 3 + 1536 * 3.75 + (2900 - 1536) * 3 + 1536 * 0.3 + 276 * 3 + 1024 * 0.3 + 4500
    ) / 1e6
    assert m["api_only_cost_usd"] == pytest.approx(everything, rel=1e-12)
    assert m["api_cached_input_share"] == 0.0
    assert m["api_only_cached_input_share"] == pytest.approx((1536 + 1024) / 6000)
    month = 730.0  # one hour of window stands for 730 hours
    no_cache_routed = (3100 * 3 + 3000) / 1e6
    assert m["api_cache_savings_usd_per_month"] == pytest.approx(
        (no_cache_routed - routed) * month, rel=1e-9
    )
    no_cache_all = (6000 * 3 + 4500) / 1e6
    assert m["api_only_cache_savings_usd_per_month"] == pytest.approx(
        (no_cache_all - everything) * month, rel=1e-9
    )


def test_without_identity_the_bill_is_unchanged() -> None:
    spec = ApiSpec(model="anthropic/claude-sonnet-4-5")
    frame = _frame(["api", "api", "api"]).assign(cached_input_tokens=[0, 1000, 500])
    m = cost_metrics(frame, window=(0.0, 3600.0), fleet=None, api=spec)
    # today's rule: the declared cached tokens at the cached price, no writes, no new metrics
    by_hand = (1800 * 3 + 1900 * 3 + 1000 * 0.3 + 800 * 3 + 500 * 0.3 + 4500) / 1e6
    assert m["api_cost_usd"] == pytest.approx(by_hand, rel=1e-12)
    assert "api_cached_input_share" not in m
    # the same numbers passed as a replay without writes give the same bill
    n = len(frame)
    same = (np.array([0, 1000, 500]), np.zeros(n, np.int64)) * 2
    m2 = cost_metrics(frame, window=(0.0, 3600.0), fleet=None, api=spec, cache_tokens=same)
    assert m2["api_cost_usd"] == m["api_cost_usd"]
    assert m2["api_only_cost_usd"] == m["api_only_cost_usd"]


def test_replay_options_keeps_providers_apart() -> None:
    lists = [[1, 2, 3, 4], [1, 2, 3, 5]]
    blocks = _blocks(lists)
    # the two requests on two options: neither sees the other's cache
    c, w, ca, wa = replay_options(
        [0.0, 60.0],
        [2000, 2000],
        blocks,
        {"a": (OPENAI, np.array([True, False])), "b": (OPENAI, np.array([False, True]))},
        [True, True],
    )
    assert c.tolist() == ca.tolist() == [0, 0]
    assert w.tolist() == wa.tolist() == [1920, 1920]
    assert math.isfinite(float(c.sum()))


def test_catalogue_rows_with_a_discount_have_a_caching_mode() -> None:
    from sim.catalog.prices import list_api_models

    for key in list_api_models():
        p: ApiPrice = api_price(key)
        discounted = (
            p.usd_per_1m_cached_input is not None and p.usd_per_1m_cached_input < p.usd_per_1m_input
        )
        assert p.cache_mode in ("automatic", "explicit", "none"), key
        assert discounted == (p.cache_mode != "none"), key


# --- one replication end to end -------------------------------------------------------------


def test_simulate_bills_the_api_from_the_replayed_cache() -> None:
    from sim import load_scenario, simulate
    from sim.replication.simulate import sample

    sessions = {
        "name": "chat",
        "arrivals": {
            "process": "sessions",
            "starts": {"process": "poisson", "rate_rps": 0.3},
            "turns": {"dist": "geometric", "mean": 4, "max": 20},
            "think_time_s": 30.0,
            "response_time_s": 4.0,
            "tenants": 2,
            "system_prompt_tokens": 1200,
            "block_tokens": 64,
        },
        "prompt_tokens": {"dist": "lognormal", "median": 200, "p90": 700, "max": 4000},
        "output_tokens": {"dist": "geometric", "mean": 150, "max": 1000},
    }
    s = load_scenario("scenarios/chat-startup.yaml").with_overrides(
        {
            "horizon.duration_s": 1200,
            "horizon.warmup_s": 200,
            "workload.classes": [sessions],
            "api.model": "openai/gpt-4.1-mini",
            "routing.policy": "api_only",
        }
    )
    out = simulate(s, seed=5)
    w = sample(s, 5)
    assert w.prompt_blocks is not None
    req = out.requests
    assert (req["route"] == "api").all() and (req["status"] == "completed").all()
    # the independent replay over every request, in the workload's order (= the table's)
    b = w.prompt_blocks
    lists = [b.of(i).tolist() for i in range(len(b))]
    rule = resolve_cache_rule(s.api)  # type: ignore[arg-type]
    cached, written = _reference(rule, w.arrival_s.tolist(), w.input_tokens.tolist(), lists, 64)
    np.testing.assert_array_equal(req["cached_input_tokens"], cached)
    np.testing.assert_array_equal(req["cache_write_tokens"], written)
    # the bill by hand: gpt-4.1-mini, 0.4 input, 0.1 cached, 1.6 output, writes free
    counted = (w.arrival_s >= 200) & (w.arrival_s < 1200)
    inp = w.input_tokens[counted]
    c = np.asarray(cached)[counted]
    usd = ((inp - c) * 0.4 + c * 0.1 + w.output_tokens[counted] * 1.6).sum() / 1e6
    assert out.metrics["api_cost_usd"] == pytest.approx(usd, rel=1e-12)
    assert out.metrics["api_cached_input_share"] == pytest.approx(c.sum() / inp.sum())
    assert 0.3 < out.metrics["api_cached_input_share"] < 1.0
    saved = (c * (0.4 - 0.1)).sum() / 1e6 * (730 * 3600 / 1000)
    assert out.metrics["api_cache_savings_usd_per_month"] == pytest.approx(saved, rel=1e-9)


def test_docstring_examples() -> None:
    import doctest

    import sim.economics.prompt_cache

    for module in (sim.economics.prompt_cache,):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted >= 4, module


def test_catalogue_rule_on_cache_writes() -> None:
    from sim.catalog.price_checks import check_catalogue

    bad = ApiPrice("x/y", 3.0, 15.0, 0.3, "", "", cache_write_usd_per_1m=0.3)
    ok = ApiPrice("x/z", 3.0, 15.0, 0.3, "", "", cache_write_usd_per_1m=3.75)
    assert check_catalogue(api=[bad, ok]) == [
        "x/y: cache-write price $0.3 is below the input price $3"
    ]
    assert check_catalogue() == []


def test_dense_ids_number_distinct_hashes_in_order_of_appearance() -> None:
    from sim.economics.prompt_cache import _dense_ids

    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**63 - 1, size=50_000, dtype=np.int64)
    hashes = values[rng.integers(0, values.size, size=300_000)]  # the table grows many times
    ids, n = _dense_ids(hashes)
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    assert n == first.size
    # equal ids exactly for equal hashes, numbered by first appearance
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first)] = np.arange(first.size)
    np.testing.assert_array_equal(ids, rank[inverse.ravel()])
