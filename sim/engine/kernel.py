"""The compiled core: continuous-batching replicas and the router, advanced event by event.

Everything lives in a handful of preallocated numpy arrays (one row per request, one row per
replica), so that a replication is a plain value that can be built in any process. The
Python driver (:mod:`sim.engine.fleet`) calls :func:`run_until` between the coarse events
that simpy owns (metric windows, samples of the fleet state); inside, the loop below is an
exact discrete-event simulation at iteration granularity:

* the replica with the earliest step boundary runs its next scheduler iteration, unless the
  next arrival comes first (an arrival exactly at a boundary joins that boundary's batch);
* an iteration follows vLLM's scheduler: running sequences first in admission order (decode
  one token, or the next prefill chunk), preempting the newest running sequence by recompute
  when KV blocks run out; then waiting requests FCFS while sequence slots, the token budget
  and KV blocks allow (no admission in an iteration that preempted);
* when an iteration is pure decode and nothing can join, the batch is fixed until the first
  sequence finishes, KV blocks run out, or the next arrival: those ``k`` iterations are
  advanced at once, their total time in closed form (:func:`decode_run_time`). The cost
  therefore grows with the number of requests, not decode steps.

**Automatic prefix caching** (when requests carry prompt identity, ``E_IDENT``) follows
vLLM's: a replica's KV blocks are content-addressed. Block ``j`` of a request (its tokens
``[j·b, (j+1)·b)``, ``b`` the engine's block size) is cacheable when it is a whole block of
the prompt covered by the request's identity; its key mixes ``j`` with the request's chained
hash of the identity block holding the block's last token (``_key``), so two
requests share a key exactly when they share the prompt up to the end of that block. Each
replica keeps one open-addressing hash table (linear probing, backward-shift deletion, at
least twice as many slots as KV blocks) from key to block, with a reference count per
block, shared by every class and request on the replica:

* a block is published when the iteration that computed it ends; a block some request
  already published is shared instead (the request's own copy is freed);
* admission looks up the leading blocks that are cached, at most ``(tokens − 1) // b`` of
  them (the last token is always computed, as in vLLM), references them and prefills only
  the rest;
* a finished or preempted request drops its references, last block first; an unreferenced
  block stays cached but counts as free, in an LRU list (oldest release first, a request's
  deeper blocks before its shallower ones). Taking a free block takes one without cached
  content while any is left, else evicts the head of that list (vLLM takes its least
  recently freed block, cached or not).

A class-level shared prefix is the same mechanism: its requests' identity is one synthetic
hash for the class covering the prefix's tokens. Without prompt identity the cache is
empty and none of this runs.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from sim.engine import heaps
from sim.engine.steptime import decode_run_parts, decode_run_time, step_parts, step_time

# --- per-request float columns (RF) ---
ARR, ADMIT, FIRST, FINISH, THINK = 0, 1, 2, 3, 4
N_RF = 5
# --- per-request int columns (RI) ---
PROMPT, OUT, CLS, REP, STATUS, REASON, COMP, GEN, PFT, BLK, NPRE, RECOMP, NEXT, USER = range(14)
# prefix caching: carries its class's prefix; leading cached blocks it references; prompt
# tokens it found in the cache at its first admission (its prompt's reuse; a recompute after
# a preemption or an interruption looks up again, counted in the replica's PFX_HIT only)
HASPFX, SHARED, HIT = 14, 15, 16
# times its work was lost to an interruption or failure; arrived with no replica ready
NINT, COLD = 17, 18
N_RI = 19
# 32 bits hold every per-request count (tokens, replica, retries) and row index (up to
# 2**31 requests in one replication): 76 bytes a request instead of 152
RI_DTYPE = np.int32
# request status
ST_PENDING, ST_QUEUED, ST_RUNNING, ST_COMPLETED, ST_REJECTED, ST_FAILED, ST_API = range(7)
# a fleet of several pools: a request another pool took (each pool's engine holds the
# requests that may go to it; this one skips the row at its arrival)
ST_ELSEWHERE = 7
# reasons
R_NONE, R_KV, R_MAXLEN, R_QUEUE, R_DRAIN, R_BUDGET, R_UNSCHEDULABLE, R_RATE = range(8)
REASONS = (
    "",
    "exceeds_kv_capacity",
    "exceeds_max_model_len",
    "queue_full",
    "drain_limit",
    "exceeds_max_num_batched_tokens",
    "unschedulable",
    "rate_limited",
)
# --- per-replica float columns (PF) ---
CLOCK, BUSY, BATCH_INT, KV_INT, COMPUTE_INT, MEMORY_INT = 0, 1, 2, 3, 4, 5
# when a draining replica ran out of work (it can be released then)
IDLE_AT = 6
# a planned decode run not yet applied (PEND_K iterations, see step_replica): its start,
# the KV tokens of its first iteration, the KV blocks in use before it
PEND_C0, PEND_KV, PEND_USED = 7, 8, 9
# with schedule-ahead (E_AHEAD): the next iteration's scheduler sees the requests that
# arrived before this time (the start of the iteration running when it was planned)
SEEN = 10
# with schedule-ahead, planning runs: the boundary of the planned decode run where a request
# routed to the replica meanwhile is first seen (the run is cut there; inf: none)
WAKE = 11
N_PF = 12
# --- per-replica int columns (PI) ---
NRUN, FREE, QHEAD, QTAIL, QLEN, STEPS, OUTST, NPREEMPT, QTOK = range(9)
# evictable cached blocks (counted in FREE); prompt tokens looked up in the prefix cache at
# admissions and those found there
EVICT, PFX_ASKED, PFX_HIT = 9, 10, 11
# lifecycle state of the replica (RS_*)
STATE = 12
# OUTST as last filed in the fleet's running total and load heap (sim.engine.dispatch)
OSEEN = 13
# iterations of the planned decode run (0: none)
PEND_K = 14
# prefix cache: head and tail of the LRU list of unreferenced cached blocks (hash-table
# slots, -1: empty), cached blocks
CHEAD, CTAIL, CSIZE = 15, 16, 17
# iterations of the planned decode run counted as started in the load heap (least_loaded:
# its key is OUTST - NRUN · TICKED, exact at the last arrival)
TICKED = 18
# central: the boundary of the planned decode run filed as where the replica may take the
# shared queue's head (sim.engine.dispatch; never later than the boundary where it can)
TAKEJ = 19
N_PI = 20
# --- prefix-cache hash table (CT array last axis): the block's key (-1: empty slot), the
# references to it, its previous and next slots in the LRU list (-1: none) ---
T_KEY, T_REF, T_PRV, T_NXT = 0, 1, 2, 3
N_T = 4
RS_OFF, RS_STARTING, RS_READY, RS_DRAINING = 0, 1, 2, 3
# --- engine / router int params (EP) ---
E_S, E_MBT, E_B, E_TOTAL, E_CHUNKED, E_MAXLEN, E_ROUTER, E_MAXQ, E_NOPEN = range(9)
E_POLICY, E_SPILL_Q, E_SPILL_TOK = 9, 10, 11
# 1: a decode run is planned to its end and cut where a request routed to its replica is
# first seen, or where it may take shared work (LAZY_ROUTERS in sim.engine.state); 0:
# every arrival bounds every run
E_LAZY = 12
# 1: requests carry prompt identity (the prefix cache runs); hash-table slots - 1 (a power
# of two minus one); requests with identity arrays (the open-loop ones)
E_IDENT, E_CMASK, E_NID = 13, 14, 15
# prefix_affinity router: load allowance in tokens over the least loaded replica
E_AFF_SLACK = 16
# 1: the scheduler plans iteration i + 1 while iteration i runs (vLLM's asynchronous
# scheduling): a request that arrives while the replica runs joins no earlier than the
# iteration after the next boundary's
E_AHEAD = 17
# 1: the iterations of planned decode runs are counted as they start, so that loads are
# exact at every arrival (least_loaded; central when it spills on outstanding tokens)
E_COUNT = 18
N_EP = 19
# --- float params (EPF) ---
EF_SPILL_TTFT, EF_PREFILL_S_PER_TOKEN = 0, 1
# prefix_affinity router: load allowance as a share of the least loaded replica's load
EF_AFF_FRAC = 2
N_EPF = 3
POLICIES = ("self_host_only", "api_only", "class_based", "spillover", "cold_start_spill")
PO_SELF, PO_API, PO_CLASS, PO_SPILL, PO_COLD = range(5)
# per-class routing flag: may the class leave the fleet, and must it (CR_API: unless
# the policy is self_host_only, every request of the class goes to the API)
CR_FLEET_ONLY, CR_ELIGIBLE, CR_API = 0, 1, 2
# per-class int params (CLS array columns): routing flag
C_ROUTE = 0
ROUTERS = (
    "round_robin",
    "least_loaded",
    "power_of_two",
    "central",
    "random",
    "least_requests",
    "prefix_affinity",
)
RT_RR, RT_LL, RT_P2, RT_CENTRAL, RT_RANDOM, RT_LR, RT_PA = 0, 1, 2, 3, 4, 5, 6
# --- global int state (G) ---
G_NEXT_OPEN, G_RR, G_NREQ, G_CQHEAD, G_CQTAIL, G_CQLEN, G_RND, G_CQTOK = range(8)
# sizes of the replica heaps (G_HN + H_*), of the user heap; ready replicas; sum of OUTST
G_HN = 8
G_UN, G_NREADY, G_OUTSUM = 15, 16, 17
N_G = 18
# --- global float state (GF) ---
# now; the next closed-loop send; the end of arrivals (duration_s); the latest time work
# entered the shared queue
GF_NOW, GF_UMIN, GF_STOP, GF_CQT = 0, 1, 2, 3
N_GF = 4
# --- replica heaps (sim.engine.dispatch): with local work, by clock; ready and idle, by
# clock; ready, idle and free since the shared queue last received work, by slot; ready,
# by outstanding tokens (least_loaded and least_requests only); ready with a planned decode
# run, by the start of its next iteration not yet counted (E_COUNT); ready in a planned
# decode run with a free sequence slot, by a boundary no later than the first where it may
# take the shared queue's head (central)
H_WORK, H_IDLE, H_FREE, H_LOAD, H_TICK, H_TAKE = 0, 1, 2, 3, 4, 5
N_H = 6
# a closed-loop user whose request was rejected or failed sends again after its think
# time, and at least this long (a client that backs off; it also bounds the loop)
RETRY_MIN_S = 1.0
# return codes of run_until
OK, NEED_REQUESTS, NEED_POOL, NEED_RANDOM = 0, 1, 2, 3


class KernelState(NamedTuple):
    """Every array the kernel reads and writes, by name (one argument instead of twenty).

    The tables are 2-D arrays indexed by the column constants above: plain contiguous rows
    are the fastest layout numba offers here (named record fields and per-column views both
    measured slower on the engine's access pattern), so the names live in the constants.
    """

    rf: np.ndarray  # per request, floats: ARR, ADMIT, FIRST, FINISH, THINK
    ri: np.ndarray  # per request, ints: PROMPT, OUT, CLS, REP, STATUS, REASON, ... (RI)
    pf: np.ndarray  # per replica slot, floats: CLOCK, BUSY and the utilisation integrals
    pi: np.ndarray  # per replica slot, ints: running/free/queue/steps/... counters, STATE
    run: np.ndarray  # per replica slot: its running requests, in admission order
    chunk: np.ndarray  # per replica slot: tokens each running request computes this step
    ep: np.ndarray  # engine and router int parameters (E_*)
    epf: np.ndarray  # float parameters (EF_*)
    cls: np.ndarray  # per class: routing flag (C_*)
    ct: np.ndarray  # per replica slot and hash-table slot: key, references, LRU links (T_*)
    idh: np.ndarray  # prompt identity: chained block hashes, flat
    ido: np.ndarray  # per request with identity: offset of its hashes in idh
    idb: np.ndarray  # per request with identity: tokens per hashed block
    idn: np.ndarray  # per request with identity: its cacheable blocks (whole prompt blocks)
    coeffs: np.ndarray  # the step-time coefficient vector (sim.engine.steptime)
    g: np.ndarray  # global ints: next arrival, round-robin pointer, shared queue (G_*)
    gf: np.ndarray  # global floats: now, next closed-loop arrival, stop (GF_*)
    ut: np.ndarray  # per closed-loop user: when it sends next
    ucls: np.ndarray  # per closed-loop user: its class
    pool: np.ndarray  # per class: pre-drawn (prompt, output, think) of closed-loop requests
    pool_ptr: np.ndarray  # per class: next unused row of its pool
    rnd: np.ndarray  # the router's pre-drawn uniform numbers
    hh: np.ndarray  # replica heaps (H_*): items, one row per heap (sim.engine.heaps)
    hp: np.ndarray  # replica heaps: position of each replica slot, -1 when absent
    hk: np.ndarray  # replica heaps: key of each replica slot
    rdy: np.ndarray  # ready replica slots in increasing order (the first G_NREADY)
    scratch: np.ndarray  # per replica slot: working space (the least-loaded search)
    uh: np.ndarray  # closed-loop users by next send time (key: ut): items
    up: np.ndarray  # closed-loop users: position in uh


@numba.njit(cache=True)
def _cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


@numba.njit(cache=True)
def _q_push_back(ri: np.ndarray, head_tail_len: np.ndarray, ih: int, q: int) -> None:
    # head_tail_len[ih], [ih+1], [ih+2] = head, tail, len of a linked FCFS queue
    ri[q, NEXT] = -1
    if head_tail_len[ih + 2] == 0:
        head_tail_len[ih] = q
    else:
        ri[head_tail_len[ih + 1], NEXT] = q
    head_tail_len[ih + 1] = q
    head_tail_len[ih + 2] += 1


@numba.njit(cache=True)
def _q_push_front(ri: np.ndarray, head_tail_len: np.ndarray, ih: int, q: int) -> None:
    if head_tail_len[ih + 2] == 0:
        ri[q, NEXT] = -1
        head_tail_len[ih + 1] = q
    else:
        ri[q, NEXT] = head_tail_len[ih]
    head_tail_len[ih] = q
    head_tail_len[ih + 2] += 1


@numba.njit(cache=True)
def _q_pop_front(ri: np.ndarray, head_tail_len: np.ndarray, ih: int) -> int:
    q = head_tail_len[ih]
    head_tail_len[ih] = ri[q, NEXT]
    head_tail_len[ih + 2] -= 1
    if head_tail_len[ih + 2] == 0:
        head_tail_len[ih] = -1
        head_tail_len[ih + 1] = -1
    ri[q, NEXT] = -1
    return q


_MIX_A = np.uint64(0x9E3779B97F4A7C15)
_MIX_B = np.uint64(0xBF58476D1CE4E5B9)
_MIX_C = np.uint64(0x94D049BB133111EB)


@numba.njit(cache=True)
def _mix(h: int, j: int) -> int:
    # splitmix64 of a chained hash and a block index, as a non-negative int64
    z = np.uint64(h) + (np.uint64(j) + np.uint64(1)) * _MIX_A
    z = (z ^ (z >> np.uint64(30))) * _MIX_B
    z = (z ^ (z >> np.uint64(27))) * _MIX_C
    z = z ^ (z >> np.uint64(31))
    return np.int64(z >> np.uint64(1))  # type: ignore[return-value]


@numba.njit(cache=True)
def _key(idh: np.ndarray, o: int, b: int, bt: int, j: int) -> int:
    # engine block j of a request whose hashes start at idh[o] and cover b tokens each
    # (scattered over the table: consecutive keys would cluster under linear probing)
    return _mix(idh[o + ((j + 1) * bt - 1) // b], j)


@numba.njit(cache=True)
def cache_find(ct_r: np.ndarray, mask: int, key: int) -> int:
    """The hash-table slot holding ``key`` on one replica (its rows of ``ct``), -1 if it
    is not cached."""
    s = key & mask
    while True:
        k = ct_r[s, T_KEY]
        if k == key:
            return s
        if k == -1:
            return -1
        s = (s + 1) & mask


# The functions below take a replica's table (its rows of ``ct``, one 32-byte row per slot:
# key, references and LRU links share a cache line) rather than the whole state: a call
# that takes the state costs a reference count per array, and these run per block.
@numba.njit(cache=True)
def _lru_push(pi_r: np.ndarray, ct_r: np.ndarray, s: int) -> None:
    # append slot s (now unreferenced) to the tail of the replica's LRU list
    tail = pi_r[CTAIL]
    ct_r[s, T_PRV] = tail
    ct_r[s, T_NXT] = -1
    if tail >= 0:
        ct_r[tail, T_NXT] = s
    else:
        pi_r[CHEAD] = s
    pi_r[CTAIL] = s


@numba.njit(cache=True)
def _lru_unlink(pi_r: np.ndarray, ct_r: np.ndarray, s: int) -> None:
    p, n = ct_r[s, T_PRV], ct_r[s, T_NXT]
    if p >= 0:
        ct_r[p, T_NXT] = n
    else:
        pi_r[CHEAD] = n
    if n >= 0:
        ct_r[n, T_PRV] = p
    else:
        pi_r[CTAIL] = p


@numba.njit(cache=True)
def _cache_delete(pi_r: np.ndarray, ct_r: np.ndarray, mask: int, s: int) -> None:
    # remove slot s's entry (unlinked already) by backward shift: later entries of its probe
    # run move back, keeping their place in the LRU list
    i = s
    j = s
    while True:
        j = (j + 1) & mask
        k = ct_r[j, T_KEY]
        if k == -1:
            break
        home = k & mask
        stays = (i < home <= j) if i <= j else (home > i or home <= j)
        if stays:
            continue
        ct_r[i, T_KEY] = k
        ct_r[i, T_REF] = ct_r[j, T_REF]
        if ct_r[j, T_REF] == 0:  # in the LRU list: the neighbours point at its new slot
            p, n = ct_r[j, T_PRV], ct_r[j, T_NXT]
            ct_r[i, T_PRV] = p
            ct_r[i, T_NXT] = n
            if p >= 0:
                ct_r[p, T_NXT] = i
            else:
                pi_r[CHEAD] = i
            if n >= 0:
                ct_r[n, T_PRV] = i
            else:
                pi_r[CTAIL] = i
        i = j
    ct_r[i, T_KEY] = -1
    ct_r[i, T_REF] = 0  # an empty slot holds no reference (it may have held a moved entry's)
    pi_r[CSIZE] -= 1


@numba.njit(cache=True)
def _release(ri: np.ndarray, pi_r: np.ndarray, q: int) -> None:
    # give back a sequence's own KV blocks (its cached blocks: _unreference first)
    pi_r[FREE] += ri[q, BLK]
    ri[q, BLK] = 0


@numba.njit(cache=True)
def _unreference(q: int, r: int, st: KernelState) -> None:
    # q drops its references on cached blocks, deepest first; a block nobody references
    # stays cached but evictable (counted as free). The engine's per-sequence paths call
    # this and _evict only when the prefix cache has work (see the note above _lru_push).
    ri, pi_r, ct_r = st.ri, st.pi[r], st.ct[r]
    mask, idh, o, b, bt = st.ep[E_CMASK], st.idh, st.ido[q], st.idb[q], st.ep[E_B]
    for j in range(ri[q, SHARED] - 1, -1, -1):
        s = cache_find(ct_r, mask, _key(idh, o, b, bt, j))
        ct_r[s, T_REF] -= 1
        if ct_r[s, T_REF] == 0:
            _lru_push(pi_r, ct_r, s)
            pi_r[FREE] += 1
            pi_r[EVICT] += 1
    ri[q, SHARED] = 0


@numba.njit(cache=True)
def _evict(r: int, short: int, st: KernelState) -> None:
    # evict `short` unreferenced cached blocks, least recently released first
    pi_r, ct_r, mask = st.pi[r], st.ct[r], st.ep[E_CMASK]
    for _ in range(short):
        s = pi_r[CHEAD]
        _lru_unlink(pi_r, ct_r, s)
        _cache_delete(pi_r, ct_r, mask, s)
        pi_r[EVICT] -= 1


@numba.njit(cache=True)
def _lookup(q: int, r: int, limit: int, st: KernelState) -> tuple[int, int]:
    # leading cached blocks of q on replica r (at most `limit`), and how many of them are
    # unreferenced (counted as free: taking them takes free blocks)
    ct_r, mask = st.ct[r], st.ep[E_CMASK]
    idh, o, b, bt = st.idh, st.ido[q], st.idb[q], st.ep[E_B]
    m = 0
    pinned = 0
    while m < limit:
        s = cache_find(ct_r, mask, _key(idh, o, b, bt, m))
        if s < 0:
            break
        if ct_r[s, T_REF] == 0:
            pinned += 1
        m += 1
    return m, pinned


@numba.njit(cache=True)
def cache_limit(q: int, st: KernelState) -> int:
    """How many leading blocks request ``q`` may find cached: its cacheable blocks, short
    of its last token to compute (0 without identity)."""
    if st.ep[E_IDENT] == 0 or q >= st.ep[E_NID]:
        return 0
    lim = (st.ri[q, PFT] - 1) // st.ep[E_B]
    n = st.idn[q]
    return n if n < lim else lim


@numba.njit(cache=True)
def _reference(q: int, r: int, m: int, st: KernelState) -> None:
    # q takes a reference on its first m blocks, all cached on r
    pi_r, ct_r = st.pi[r], st.ct[r]
    mask, idh, o, b, bt = st.ep[E_CMASK], st.idh, st.ido[q], st.idb[q], st.ep[E_B]
    for j in range(m):
        s = cache_find(ct_r, mask, _key(idh, o, b, bt, j))
        if ct_r[s, T_REF] == 0:
            _lru_unlink(pi_r, ct_r, s)
            pi_r[FREE] -= 1
            pi_r[EVICT] -= 1
        ct_r[s, T_REF] += 1


@numba.njit(cache=True)
def _publish(q: int, r: int, upto: int, st: KernelState) -> None:
    # q has computed its cacheable blocks SHARED..upto-1: each becomes a cached block, or,
    # when another request published it first, q shares that one and frees its own copy
    ri, pi_r, ct_r = st.ri, st.pi[r], st.ct[r]
    mask, idh, o, b, bt = st.ep[E_CMASK], st.idh, st.ido[q], st.idb[q], st.ep[E_B]
    for j in range(ri[q, SHARED], upto):
        key = _key(idh, o, b, bt, j)
        s = key & mask
        while ct_r[s, T_KEY] != key and ct_r[s, T_KEY] != -1:
            s = (s + 1) & mask
        if ct_r[s, T_KEY] == key:
            if ct_r[s, T_REF] == 0:
                _lru_unlink(pi_r, ct_r, s)
                pi_r[EVICT] -= 1
            else:
                pi_r[FREE] += 1
        else:  # an empty slot: the end of the key's probe run
            ct_r[s, T_KEY] = key
            ct_r[s, T_REF] = 0
            pi_r[CSIZE] += 1
        ct_r[s, T_REF] += 1
        ri[q, BLK] -= 1
    ri[q, SHARED] = upto


@numba.njit(cache=True)
def _finish(q: int, r: int, t: float, st: KernelState) -> None:
    st.rf[q, FINISH] = t
    st.ri[q, STATUS] = ST_COMPLETED
    if st.ri[q, SHARED] > 0:
        _unreference(q, r, st)
    _release(st.ri, st.pi[r], q)
    user_next(q, t, st)


@numba.njit(cache=True)
def user_next(q: int, t: float, st: KernelState) -> None:
    """A closed-loop user thinks, then sends its next request (if the horizon allows); after
    a rejection or a failure it waits at least ``RETRY_MIN_S``."""
    ri, rf, ut, gf = st.ri, st.rf, st.ut, st.gf
    u = ri[q, USER]
    if u < 0:
        return
    wait = rf[q, THINK]
    if ri[q, STATUS] != ST_COMPLETED and wait < RETRY_MIN_S:
        wait = RETRY_MIN_S
    nxt = t + wait
    ut[u] = nxt if nxt < gf[GF_STOP] else np.inf
    heaps.fix(st.uh, st.up, ut, st.g, G_UN, u)
    gf[GF_UMIN] = ut[st.uh[0]]


@numba.njit(cache=True)
def _compact_running(run: np.ndarray, ri: np.ndarray, pi_r: np.ndarray) -> None:
    # drop finished sequences, keep admission order
    j = 0
    for i in range(pi_r[NRUN]):
        q = run[i]
        if ri[q, STATUS] == ST_RUNNING:
            run[j] = q
            j += 1
    pi_r[NRUN] = j


@numba.njit(cache=True)
def _kv_need(run: np.ndarray, ri: np.ndarray, n: int, k: int, bt: int) -> int:
    # extra blocks the batch needs to run iterations 1..k-1 (iteration 0 is allocated)
    need = 0
    for i in range(n):
        q = run[i]
        need += _cdiv(ri[q, COMP] + k, bt) - ri[q, SHARED] - ri[q, BLK]
    return need


@numba.njit(cache=True)
def started_before(v: np.ndarray, n: int, kv: float, k: int, room: float) -> int:
    """How many of a decode run's ``k`` iterations start within ``room`` seconds of its
    start (at least one)."""
    if k > 1 and decode_run_time(v, n, kv, k - 1) >= room:
        lo, hi = 1, k - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if decode_run_time(v, n, kv, mid - 1) < room:
                lo = mid
            else:
                hi = mid - 1
        return lo
    return k


@numba.njit(cache=True)
def _apply_decode_run(
    r: int, k: int, clock: float, kv: float, used_before: int, st: KernelState
) -> None:
    # k identical decode iterations of replica r's fixed batch, from `clock`
    ri, pf, pi_r = st.ri, st.pf, st.pi[r]
    run_r, coeffs = st.run[r], st.coeffs
    bt = st.ep[E_B]
    n = pi_r[NRUN]
    dt = decode_run_time(coeffs, n, kv, k)
    # the scheduler of the iteration after the run saw what arrived before its last began
    pf[r, SEEN] = clock + decode_run_time(coeffs, n, kv, k - 1)
    grown = 0
    for j in range(n):
        q = run_r[j]
        ri[q, COMP] += k
        ri[q, GEN] += k
        nb = _cdiv(ri[q, COMP], bt) - ri[q, SHARED]
        grown += nb - ri[q, BLK]
        ri[q, BLK] = nb
    # take the blocks: never-cached ones first, then evict cached ones nobody references
    if grown > pi_r[FREE] - pi_r[EVICT]:
        _evict(r, grown - (pi_r[FREE] - pi_r[EVICT]), st)
    pi_r[FREE] -= grown
    pi_r[OUTST] -= n * k
    used_after = st.ep[E_TOTAL] - pi_r[FREE]
    pi_r[STEPS] += k
    t_end = clock + dt
    pf[r, BUSY] += dt
    pf[r, BATCH_INT] += n * dt
    c_s, m_s = decode_run_parts(coeffs, n, kv, k)
    pf[r, COMPUTE_INT] += c_s
    pf[r, MEMORY_INT] += m_s
    pf[r, KV_INT] += 0.5 * (used_before + used_after) * dt
    pf[r, CLOCK] = t_end
    any_done = False
    for j in range(n):
        q = run_r[j]
        if ri[q, GEN] >= ri[q, OUT]:
            _finish(q, r, t_end, st)
            any_done = True
    if any_done:
        _compact_running(run_r, ri, pi_r)
        if pi_r[STATE] == RS_DRAINING and pi_r[NRUN] == 0 and pi_r[QLEN] == 0:
            pf[r, IDLE_AT] = t_end


@numba.njit(cache=True)
def settle(r: int, t: float, st: KernelState) -> None:
    """Apply replica ``r``'s planned decode run up to ``t``: the iterations that start
    before ``t`` (all of them when it ends by ``t``). Its state is then that of an engine
    that stopped at the first iteration boundary at or after ``t``."""
    k = st.pi[r, PEND_K]
    if k == 0:
        return
    st.pi[r, PEND_K] = 0
    pf = st.pf
    c0, kv = pf[r, PEND_C0], pf[r, PEND_KV]
    k = started_before(st.coeffs, st.pi[r, NRUN], kv, k, t - c0)
    _apply_decode_run(r, k, c0, kv, int(pf[r, PEND_USED]), st)


@numba.njit(cache=True)
def cut_run(r: int, t: float, st: KernelState) -> bool:
    """Apply the iterations of replica ``r``'s planned decode run that end by ``t`` (one of
    its boundaries) and drop the rest: its state is then that of an engine at that
    boundary. False (nothing done) when none ends by then."""
    pf, k = st.pf, st.pi[r, PEND_K]
    c0, n, kv = pf[r, PEND_C0], st.pi[r, NRUN], pf[r, PEND_KV]
    j = max(max(st.pi[r, TICKED], st.pi[r, TAKEJ]) - 1, 0)  # no later than t's boundary
    while j < k and c0 + decode_run_time(st.coeffs, n, kv, j + 1) <= t:
        j += 1
    if j == 0:
        return False
    st.pi[r, PEND_K] = 0
    _apply_decode_run(r, j, c0, kv, int(pf[r, PEND_USED]), st)
    return True


@numba.njit(cache=True)
def step_replica(r: int, bound: float, st: KernelState) -> None:
    """Run replica ``r``'s next scheduler iteration (or a run of identical decode iterations
    that all start before ``bound``, or planned to run until it ends: see ``E_LAZY``); a
    planned run is applied at its end."""
    if st.pi[r, PEND_K] > 0:
        # the planned run's last iteration starts now: apply the run; the next iteration
        # follows at once unless something (the bound, a closed-loop request its finishes
        # sent, another replica's boundary that may take shared work first) comes first
        settle(r, np.inf, st)
        if st.pf[r, CLOCK] >= bound or st.gf[GF_UMIN] <= st.pf[r, CLOCK]:
            return
        if st.g[G_CQLEN] > 0:
            return  # the dispatcher orders the replicas' turns at the shared queue
        if st.pi[r, NRUN] == 0 and st.pi[r, QLEN] == 0:
            return  # nothing left: the dispatcher decides whether it pulls shared work
    rf, ri, pf, pi, ep = st.rf, st.ri, st.pf, st.pi, st.ep
    coeffs, g = st.coeffs, st.g
    run = st.run
    chunk = st.chunk[r]
    pi_r = pi[r]
    run_r = run[r]
    ident = ep[E_IDENT] == 1
    bt = ep[E_B]
    total_blocks = ep[E_TOTAL]
    clock = pf[r, CLOCK]
    budget = ep[E_MBT]
    preempted = False
    tok = 0.0
    dec = 0.0
    pfl = 0.0
    kv = 0.0
    ap = 0.0
    # 1. running sequences, in admission order
    i = 0
    while i < pi_r[NRUN]:
        q = run_r[i]
        if budget == 0:
            chunk[i] = 0
            i += 1
            continue
        rem = ri[q, PFT] - ri[q, COMP]
        c = min(rem, budget) if rem > 0 else 1
        need = _cdiv(ri[q, COMP] + c, bt) - ri[q, SHARED] - ri[q, BLK]
        victim_is_self = False
        while need > pi_r[FREE]:
            v = run_r[pi_r[NRUN] - 1]
            # preempt the newest running sequence by recompute
            if ri[v, SHARED] > 0:
                _unreference(v, r, st)
            _release(ri, pi_r, v)
            ri[v, RECOMP] += ri[v, COMP]
            pi_r[OUTST] += ri[v, COMP]
            ri[v, COMP] = 0
            ri[v, PFT] = ri[v, PROMPT] + ri[v, GEN]
            ri[v, NPRE] += 1
            ri[v, STATUS] = ST_QUEUED
            pi_r[NPREEMPT] += 1
            pi_r[NRUN] -= 1
            _q_push_front(ri, pi_r, QHEAD, v)
            pi_r[QTOK] += ri[v, PFT]
            preempted = True
            if v == q:
                victim_is_self = True
                break
        if victim_is_self:
            break
        ri[q, BLK] += need
        if need > pi_r[FREE] - pi_r[EVICT]:
            _evict(r, need - (pi_r[FREE] - pi_r[EVICT]), st)
        pi_r[FREE] -= need
        chunk[i] = c
        budget -= c
        tok += c
        kv += ri[q, COMP] + c
        if rem > 0:
            pfl += c
            ap += c * ri[q, COMP] + c * (c + 1) / 2.0
        else:
            dec += 1.0
            ap += ri[q, COMP] + 1
        i += 1
    n_sched_running = i
    # 2. admissions (none in an iteration that preempted)
    admitted = 0
    # schedule-ahead: while sequences run, this iteration was planned when the previous one
    # began, so it admits only what had arrived by then (the rest waits one iteration)
    ahead = ep[E_AHEAD] == 1 and n_sched_running > 0
    unseen = False
    held = False  # admissions stopped at the shared queue's head (unseen or not fitting)
    if not preempted:
        pulls = pi_r[STATE] == RS_READY  # a draining replica takes no new work
        while pi_r[NRUN] < ep[E_S] and budget > 0:
            from_central = False
            if pi_r[QLEN] > 0:
                q = pi_r[QHEAD]
            elif pulls and g[G_CQLEN] > 0:
                q = g[G_CQHEAD]
                from_central = True
            else:
                break
            held = from_central
            if ahead and rf[q, ARR] >= pf[r, SEEN]:
                unseen = True
                break
            # automatic prefix caching: skip the leading blocks this replica holds
            cached = 0
            pinned = 0
            if ident:
                limit = cache_limit(q, st)
                if limit > 0:
                    cached, pinned = _lookup(q, r, limit, st)
            hit = cached * bt
            c = min(ri[q, PFT] - hit, budget)
            if ep[E_CHUNKED] == 0 and c < ri[q, PFT] - hit and ri[q, GEN] == 0:
                # without chunked prefill a prompt runs whole; a recompute after preemption
                # (prompt + generated tokens) may exceed the budget and is then chunked
                break
            need = _cdiv(hit + c, bt) - cached
            if need + pinned > pi_r[FREE]:
                break
            held = False
            if from_central:
                _q_pop_front(ri, g, G_CQHEAD)
                g[G_CQTOK] -= ri[q, PFT] - ri[q, COMP]
                ri[q, REP] = r
                pi_r[OUTST] += ri[q, PROMPT] + ri[q, OUT] - 1
            else:
                _q_pop_front(ri, pi_r, QHEAD)
                pi_r[QTOK] -= ri[q, PFT] - ri[q, COMP]
            if ident:
                pi_r[PFX_ASKED] += ri[q, PFT]
                pi_r[PFX_HIT] += hit
            if cached > 0:
                _reference(q, r, cached, st)
                ri[q, SHARED] = cached
                ri[q, COMP] = hit
                pi_r[OUTST] -= hit
            if need > pi_r[FREE] - pi_r[EVICT]:
                _evict(r, need - (pi_r[FREE] - pi_r[EVICT]), st)
            pi_r[FREE] -= need
            ri[q, BLK] = need
            ri[q, STATUS] = ST_RUNNING
            if np.isnan(rf[q, ADMIT]):
                rf[q, ADMIT] = clock
                ri[q, HIT] = hit
            n = pi_r[NRUN]
            run_r[n] = q
            chunk[n] = c
            pi_r[NRUN] = n + 1
            admitted += 1
            budget -= c
            tok += c
            pfl += c
            kv += hit + c
            ap += c * hit + c * (c + 1) / 2.0
    if tok == 0.0:
        if pi_r[NRUN] == 0 and not preempted:
            # an empty replica that cannot admit the head of its queue never will: fail it
            # rather than stall (arrival checks make this unreachable; kept as a guard)
            if pi_r[QLEN] > 0:
                q = _q_pop_front(ri, pi_r, QHEAD)
                pi_r[QTOK] -= ri[q, PFT] - ri[q, COMP]
            else:
                q = _q_pop_front(ri, g, G_CQHEAD)
                g[G_CQTOK] -= ri[q, PFT] - ri[q, COMP]
            ri[q, STATUS] = ST_FAILED
            ri[q, REASON] = R_UNSCHEDULABLE
            user_next(q, clock, st)
        return
    used_before = total_blocks - pi_r[FREE]
    nrun = pi_r[NRUN]
    if pfl == 0.0 and not preempted and n_sched_running == nrun:
        # pure decode of a fixed batch: jump over k identical iterations
        n = nrun
        k_fin = 1 << 62
        for j in range(n):
            q = run_r[j]
            left = ri[q, OUT] - ri[q, GEN]
            if left < k_fin:
                k_fin = left
        # a request waiting to be seen joins after one iteration; the shared queue's head
        # may be taken by another replica meanwhile, and the next behind it may fit here.
        # Planning runs, the central queue's dispatcher cuts the run where this replica may
        # take the head (sim.engine.dispatch); otherwise the replica stops at each boundary
        k = k_fin
        if unseen or held:
            k = k_fin if ep[E_LAZY] == 1 and ep[E_ROUTER] == RT_CENTRAL and held else 1
        if k > 1 and n * ((k - 1) // bt + 1) > pi_r[FREE]:
            lo, hi = 1, k  # largest k with need(k) <= free
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if _kv_need(run_r, ri, n, mid, bt) <= pi_r[FREE]:
                    lo = mid
                else:
                    hi = mid - 1
            k = lo
        if ep[E_LAZY] == 1 and k > 1:
            # planned now, applied when its last iteration starts (as an engine stepping
            # every iteration would) or when an arrival needs this replica before that; a
            # single iteration (one starting now) is applied at once
            pi_r[PEND_K] = k
            pi_r[TICKED] = 1  # the first iteration starts now
            pi_r[TAKEJ] = 1
            pf[r, WAKE] = np.inf
            pf[r, PEND_C0] = clock
            pf[r, PEND_KV] = kv
            pf[r, PEND_USED] = used_before
            pf[r, CLOCK] = clock + decode_run_time(coeffs, n, kv, k - 1)
            return
        k = started_before(coeffs, n, kv, k, bound - clock)
        _apply_decode_run(r, k, clock, kv, used_before, st)
        return
    # a general iteration
    pf[r, SEEN] = clock
    dt = step_time(coeffs, tok, dec, pfl, kv, ap)
    t_end = clock + dt
    n = pi_r[NRUN]
    pi_r[STEPS] += 1
    pi_r[OUTST] -= int(tok)
    pf[r, BUSY] += dt
    pf[r, BATCH_INT] += n * dt
    c_s, m_s = step_parts(coeffs, tok, dec, pfl, kv, ap)
    pf[r, COMPUTE_INT] += c_s
    pf[r, MEMORY_INT] += m_s
    pf[r, CLOCK] = t_end
    any_done = False
    for j in range(n):
        q = run_r[j]
        c = chunk[j]
        if c == 0:
            continue
        was_prefill = ri[q, COMP] < ri[q, PFT]
        ri[q, COMP] += c
        if ident and q < ep[E_NID]:
            upto = min(st.idn[q], ri[q, COMP] // bt)
            if ri[q, SHARED] < upto:
                _publish(q, r, upto, st)
        if was_prefill:
            if ri[q, COMP] == ri[q, PFT]:
                if ri[q, GEN] == 0:
                    rf[q, FIRST] = t_end
                ri[q, GEN] += 1
        else:
            ri[q, GEN] += 1
        if ri[q, GEN] >= ri[q, OUT]:
            _finish(q, r, t_end, st)
            any_done = True
    used_after = total_blocks - pi_r[FREE]
    pf[r, KV_INT] += 0.5 * (used_before + used_after) * dt
    if any_done:
        _compact_running(run_r, ri, pi_r)
    if pi_r[STATE] == RS_DRAINING and pi_r[NRUN] == 0 and pi_r[QLEN] == 0:
        pf[r, IDLE_AT] = t_end
