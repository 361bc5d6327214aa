"""A hosted API's prompt cache, replayed from the requests' prompt identities.

Providers bill the part of a prompt their cache already holds at a discount, and some bill
writing it at a premium. Which part that is depends on what came before: the prompts sent
earlier, how long ago, and the provider's rule. :func:`replay_prompt_cache` sends the
requests, in arrival order, through one cache shared by every request of one API option and
returns, per request, the input tokens read from the cache and the tokens written to it.

The rule (:class:`CacheRule`) is one of three kinds:

``automatic`` (OpenAI-style)
    Every prompt of at least ``min_tokens`` tokens is cached, block by block, without the
    client asking. A request reads the longest live prefix it shares with earlier prompts,
    counted down to a multiple of ``increment_tokens`` (128 at OpenAI) and read only when
    that is at least ``min_tokens``; whatever of its own cacheable prompt (its length down to
    a multiple of the increment) it did not read, it writes. Writes are free on older OpenAI
    models and 1.25 x input on GPT-5.6 and later: the price decides, not the rule.
``explicit`` (Anthropic-style)
    Only prefixes that end at a client's cache breakpoint are cached, at most
    ``max_breakpoints`` per request. **Assumed client**: it places its breakpoints at the ends
    of the parts of its prompt that other requests share (the system prompt, the
    conversation so far), found here from the hashes of every request the option replays:
    block position ``p`` is a breakpoint when the prefix of ``p`` blocks is sent by at least
    two requests and the prefix of ``p + 1`` blocks by fewer; of these, the shallowest and the
    deepest ``max_breakpoints - 1`` are kept, and only those at least ``min_tokens`` long.
    This is the layout a client that knows its own prompt template chooses; a client that
    marks every prompt's end (Anthropic's top-level automatic mode) writes more. A request
    reads the longest live entry ending at or before its deepest breakpoint (the provider
    looks back from a breakpoint to earlier block boundaries), refreshes the entries at its
    breakpoints inside that read, and writes the tokens from the end of the read to its
    deepest breakpoint.
``none``
    Nothing is cached.

Common assumptions: prefixes match exactly at the granularity of the identity's blocks
(``PromptBlocks.block_tokens``; a shared prefix that ends inside a block counts only up to
the block boundary, and the last, partial block of a prompt matches only an identical
prompt); an entry lives ``ttl_s`` after its last use (a read refreshes it); an entry is
usable from the arrival of the request that wrote it (requests in flight at once already
share); one cache serves every request of the option (providers route by a prefix hash, so
a client's requests meet the same cache); the provider never evicts a live entry early.
Nothing here reads files or draws random numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np
from numpy.typing import ArrayLike, NDArray

from sim.catalog.prices import api_price
from sim.economics.spec import ApiSpec
from sim.workload.identity import PromptBlocks

__all__ = [
    "CacheReplay",
    "CacheRule",
    "replay_options",
    "replay_prompt_cache",
    "resolve_cache_rule",
]

_KINDS = {"none": 0, "automatic": 1, "explicit": 2}

#: Defaults of a caching rule where neither the scenario nor the catalogue says: the most
#: common documented minimum, any prefix length, the shortest documented lifetime.
DEFAULT_CACHE_MIN_TOKENS = 1024
DEFAULT_CACHE_TTL_S = 300.0
#: Anthropic's write premiums: a 5-minute entry costs 1.25 x input, a 1-hour one 2 x.
EXPLICIT_WRITE_MULTIPLIER = 1.25
EXPLICIT_LONG_WRITE_MULTIPLIER = 2.0


@dataclass(frozen=True)
class CacheRule:
    """How one API option caches prompts (see the module doc).

    Attributes
    ----------
    kind : {"automatic", "explicit", "none"}
    min_tokens : int
        Shortest prompt (automatic) or breakpoint prefix (explicit) that is cached.
    increment_tokens : int
        Automatic: cached tokens are counted in multiples of this (1: any length).
    ttl_s : float
        An entry lives this long after its last use.
    max_breakpoints : int
        Explicit: breakpoints per request.

    Examples
    --------
    >>> CacheRule("explicit", min_tokens=1024, ttl_s=300.0).max_breakpoints
    4
    """

    kind: Literal["automatic", "explicit", "none"]
    min_tokens: int = 1024
    increment_tokens: int = 1
    ttl_s: float = 300.0
    max_breakpoints: int = 4

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"kind must be one of {tuple(_KINDS)}, got {self.kind!r}")
        if self.min_tokens < 0 or self.increment_tokens < 1 or self.max_breakpoints < 1:
            raise ValueError("min_tokens must be >= 0, increment_tokens and max_breakpoints >= 1")
        if not self.ttl_s > 0:
            raise ValueError(f"ttl_s must be > 0, got {self.ttl_s}")


@dataclass(frozen=True)
class CacheReplay:
    """Per request, what the provider's cache did.

    Attributes
    ----------
    cached_tokens : ndarray of int64
        Input tokens read from the cache (billed at the cached-input price).
    write_tokens : ndarray of int64
        Input tokens written to the cache (billed at the cache-write price where there is
        one, else as plain input). ``cached + write <= input`` per request.
    """

    cached_tokens: NDArray[np.int64]
    write_tokens: NDArray[np.int64]


def resolve_cache_rule(spec: ApiSpec) -> CacheRule:
    """The prompt-caching rule of an API option: ``prompt_cache`` fields, else the price
    catalogue's, else defaults.

    Without a mode (prices given in the scenario, or a catalogue row without caching), a
    cached-input price below the input price means automatic caching, none otherwise.
    Missing numbers default to a minimum of 1,024 tokens, an increment of 1 token (any
    prefix length) and a 300 s lifetime (the shortest documented).

    Examples
    --------
    >>> r = resolve_cache_rule(ApiSpec(model="openai/gpt-4o-mini"))
    >>> r.kind, r.min_tokens, r.increment_tokens, r.ttl_s
    ('automatic', 1024, 128, 600.0)
    >>> r = resolve_cache_rule(ApiSpec(model="anthropic/claude-sonnet-4-5",
    ...                                prompt_cache={"ttl_s": 3600}))
    >>> r.kind, r.min_tokens, r.ttl_s
    ('explicit', 1024, 3600.0)
    >>> resolve_cache_rule(ApiSpec(usd_per_1m_input=1.0, usd_per_1m_output=2.0)).kind
    'none'
    """
    base = api_price(spec.model) if spec.model is not None else None
    over = spec.prompt_cache
    mode: str | None = over.mode if over is not None else None
    if mode is None and base is not None and base.cache_mode not in (None, "none"):
        mode = base.cache_mode
    if mode is None:  # a discount (the scenario's or the catalogue's) means automatic
        p_in = spec.usd_per_1m_input
        p_in = base.usd_per_1m_input if p_in is None and base is not None else p_in
        p_cached = spec.usd_per_1m_cached_input
        p_cached = base.usd_per_1m_cached_input if p_cached is None and base else p_cached
        discounted = p_cached is not None and p_in is not None and p_cached < p_in
        mode = "automatic" if discounted else "none"
    min_tokens = over.min_tokens if over is not None else None
    if min_tokens is None and base is not None:
        min_tokens = base.cache_min_tokens
    increment = over.increment_tokens if over is not None else None
    if increment is None and base is not None and mode == "automatic":
        increment = base.cache_increment_tokens
    ttl = over.ttl_s if over is not None else None
    if ttl is None and base is not None and base.cache_ttl_s is not None:
        ttl = float(base.cache_ttl_s)
    return CacheRule(
        kind=mode,  # type: ignore[arg-type]
        min_tokens=DEFAULT_CACHE_MIN_TOKENS if min_tokens is None else min_tokens,
        increment_tokens=1 if increment is None or mode != "automatic" else increment,
        ttl_s=DEFAULT_CACHE_TTL_S if ttl is None else float(ttl),
        max_breakpoints=over.max_breakpoints if over is not None else 4,
    )


def replay_prompt_cache(
    arrival_s: ArrayLike,
    input_tokens: ArrayLike,
    prompts: PromptBlocks,
    rule: CacheRule,
) -> CacheReplay:
    """Send requests through one provider cache in arrival order (see the module doc).

    Parameters
    ----------
    arrival_s, input_tokens : array_like
        Per request (any order: ties are taken in the order given).
    prompts : PromptBlocks
        The requests' chained block hashes, aligned with ``arrival_s``; a request with no
        hashes is never cached.
    rule : CacheRule
        The provider's rule.

    Returns
    -------
    CacheReplay

    Examples
    --------
    Two 2,000-token prompts sharing their first three 512-token blocks, one minute apart,
    under OpenAI's rule: the second reads 1,536 tokens (a multiple of 128, at least 1,024)
    and writes the rest of its cacheable 1,920.

    >>> blocks = PromptBlocks(512, np.array([0, 4, 8]), np.array([1, 2, 3, 4, 1, 2, 3, 5]))
    >>> rule = CacheRule("automatic", min_tokens=1024, increment_tokens=128, ttl_s=600.0)
    >>> r = replay_prompt_cache([0.0, 60.0], [2000, 2000], blocks, rule)
    >>> r.cached_tokens.tolist(), r.write_tokens.tolist()
    ([0, 1536], [1920, 384])

    Anthropic-style, the client's breakpoint after the shared three blocks: the first
    request writes 1,536 tokens, the second reads them.

    >>> r = replay_prompt_cache([0.0, 60.0], [2000, 2000], blocks,
    ...                         CacheRule("explicit", min_tokens=1024, ttl_s=300.0))
    >>> r.cached_tokens.tolist(), r.write_tokens.tolist()
    ([0, 1536], [1536, 0])
    """
    arrival = np.asarray(arrival_s, dtype=np.float64)
    tokens = np.asarray(input_tokens, dtype=np.int64)
    n = len(prompts)
    if arrival.shape != (n,) or tokens.shape != (n,):
        raise ValueError(f"arrival_s and input_tokens need one entry per request ({n})")
    cached = np.zeros(n, dtype=np.int64)
    written = np.zeros(n, dtype=np.int64)
    if rule.kind == "none" or prompts.hashes.size == 0:
        return CacheReplay(cached, written)
    # dense ids of the distinct chained hashes: the cache is then a plain array of last uses
    ids, n_ids = _dense_ids(np.asarray(prompts.hashes, dtype=np.int64))
    shared = np.bincount(ids, minlength=n_ids).astype(np.int64)
    order = np.argsort(arrival, kind="stable").astype(np.int64)
    _replay(
        order,
        arrival,
        tokens,
        np.asarray(prompts.offsets, dtype=np.int64),
        ids,
        shared,
        n_ids,
        int(prompts.block_tokens),
        _KINDS[rule.kind],
        int(rule.min_tokens),
        int(rule.increment_tokens),
        float(rule.ttl_s),
        int(rule.max_breakpoints),
        cached,
        written,
    )
    return CacheReplay(cached, written)


@numba.njit(cache=True)
def _dense_ids(hashes: np.ndarray) -> tuple[np.ndarray, int]:  # pragma: no cover - compiled
    # each distinct value -> 0, 1, 2, ... in order of first appearance, through an
    # open-addressing table that doubles when half full (values are well-mixed hashes >= 0,
    # so their low bits index the table directly); O(n), no sort
    n = hashes.size
    cap = 1024
    while cap < n // 4:
        cap *= 2
    keys = np.full(cap, -1, dtype=np.int64)
    vals = np.empty(cap, dtype=np.int64)
    ids = np.empty(n, dtype=np.int64)
    size = 0
    for i in range(n):
        h = hashes[i]
        mask = cap - 1
        j = h & mask
        while keys[j] != -1 and keys[j] != h:
            j = (j + 1) & mask
        if keys[j] == h:
            ids[i] = vals[j]
            continue
        keys[j] = h
        vals[j] = size
        ids[i] = size
        size += 1
        if 2 * size > cap:  # grow: re-insert every key
            old_keys, old_vals = keys, vals
            cap *= 2
            mask = cap - 1
            keys = np.full(cap, -1, dtype=np.int64)
            vals = np.empty(cap, dtype=np.int64)
            for k in range(old_keys.size):
                if old_keys[k] != -1:
                    j = old_keys[k] & mask
                    while keys[j] != -1:
                        j = (j + 1) & mask
                    keys[j] = old_keys[k]
                    vals[j] = old_vals[k]
    return ids, size


@numba.njit(cache=True)
def _replay(
    order: np.ndarray,
    arrival: np.ndarray,
    tokens: np.ndarray,
    offsets: np.ndarray,
    ids: np.ndarray,
    shared: np.ndarray,
    n_ids: int,
    block: int,
    kind: int,
    min_tokens: int,
    inc: int,
    ttl: float,
    max_bp: int,
    cached: np.ndarray,
    written: np.ndarray,
) -> None:  # pragma: no cover - compiled; exercised through replay_prompt_cache
    last = np.full(n_ids, -np.inf)  # last use of each prefix entry; -inf: never written
    longest = 0
    for i in range(offsets.size - 1):
        longest = max(longest, offsets[i + 1] - offsets[i])
    cand = np.empty(longest, dtype=np.int64)  # breakpoint candidates of one request
    chosen = np.empty(max_bp, dtype=np.int64)  # the breakpoints it sets
    for i in order:
        t = arrival[i]
        total = tokens[i]
        lo = offsets[i]
        m = offsets[i + 1] - lo
        if m == 0:
            continue
        if kind == 1:  # automatic
            if total < min_tokens:
                continue
            k = 0
            while k < m and t - last[ids[lo + k]] <= ttl:
                k += 1
            hit = min(k * block, total)
            hit = (hit // inc) * inc
            if hit < min_tokens:
                hit = 0
            cacheable = (total // inc) * inc
            if cacheable < min_tokens:
                cacheable = 0
            cached[i] = hit
            written[i] = max(cacheable - hit, 0)
            for j in range(m):
                last[ids[lo + j]] = t
        else:  # explicit: breakpoints at the ends of shared segments (see the module doc)
            nc = 0
            for p in range(1, m + 1):
                s = shared[ids[lo + p - 1]]
                if s < 2 or (p < m and shared[ids[lo + p]] >= s):
                    continue
                if min(p * block, total) >= min_tokens:
                    cand[nc] = p
                    nc += 1
            if nc == 0:
                continue
            # the shallowest and the deepest max_bp - 1 (just the deepest when max_bp is 1)
            c = 0
            if nc <= max_bp:
                for q in range(nc):
                    chosen[c] = cand[q]
                    c += 1
            else:
                if max_bp > 1:
                    chosen[c] = cand[0]
                    c += 1
                for q in range(nc - (max_bp - c), nc):
                    chosen[c] = cand[q]
                    c += 1
            deepest = chosen[c - 1]
            j = deepest
            while j > 0 and not (t - last[ids[lo + j - 1]] <= ttl):
                j -= 1
            read = min(j * block, total) if j > 0 else 0
            if j > 0:
                last[ids[lo + j - 1]] = t
            upto = 0
            for q in range(c):
                last[ids[lo + chosen[q] - 1]] = t
                if chosen[q] > j:
                    upto = chosen[q]
            cached[i] = read
            written[i] = min(upto * block, total) - read if upto > 0 else 0


def replay_options(
    arrival_s: ArrayLike,
    input_tokens: ArrayLike,
    prompts: PromptBlocks,
    options: dict[str, tuple[CacheRule, NDArray[np.bool_]]],
    sent: ArrayLike,
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Each API option's cache replayed twice: on the requests actually sent to it, and on
    every request of its classes (the all-API alternative).

    Parameters
    ----------
    arrival_s, input_tokens : array_like
        Per request.
    prompts : PromptBlocks
        Aligned with the requests.
    options : dict of str to (CacheRule, ndarray of bool)
        Option name → its rule and the requests of the classes it serves (disjoint).
    sent : array_like of bool
        Requests the API served in this run.

    Returns
    -------
    (cached, written, cached_all, written_all)
        Per request, int64: tokens read from and written to its option's cache among the
        requests sent (0 for the others), and when every request goes to its option.

    Examples
    --------
    >>> blocks = PromptBlocks(512, np.array([0, 4, 8]), np.array([1, 2, 3, 4, 1, 2, 3, 5]))
    >>> rule = CacheRule("automatic", min_tokens=1024, increment_tokens=128)
    >>> c, w, ca, wa = replay_options([0.0, 60.0], [2000, 2000], blocks,
    ...                               {"api": (rule, np.array([True, True]))}, [False, True])
    >>> c.tolist(), w.tolist(), ca.tolist(), wa.tolist()
    ([0, 0], [0, 1920], [0, 1536], [1920, 384])
    """
    arrival = np.asarray(arrival_s, dtype=np.float64)
    tokens = np.asarray(input_tokens, dtype=np.int64)
    went = np.asarray(sent, dtype=bool)
    n = arrival.size
    out = tuple(np.zeros(n, dtype=np.int64) for _ in range(4))
    for rule, rows in options.values():
        for k, mask in enumerate((rows & went, rows)):
            idx = np.flatnonzero(mask)
            if idx.size == 0:
                continue
            rep = replay_prompt_cache(arrival[idx], tokens[idx], prompts.take(idx), rule)
            out[2 * k][idx] = rep.cached_tokens
            out[2 * k + 1][idx] = rep.write_tokens
    return out  # type: ignore[return-value]
