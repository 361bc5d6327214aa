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
# prefix caching: carries its class's prefix; shared (cached) blocks it uses; holds a ref
HASPFX, SHARED, HOLD = 14, 15, 16
# times its work was lost to an interruption or failure; arrived with no replica ready
NINT, COLD = 17, 18
N_RI = 19
# 32 bits hold every per-request count (tokens, replica, retries) and row index (up to
# 2**31 requests in one replication): 76 bytes a request instead of 152
RI_DTYPE = np.int32
# request status
ST_PENDING, ST_QUEUED, ST_RUNNING, ST_COMPLETED, ST_REJECTED, ST_FAILED, ST_API = range(7)
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
N_PF = 10
# --- per-replica int columns (PI) ---
NRUN, FREE, QHEAD, QTAIL, QLEN, STEPS, OUTST, NPREEMPT, QTOK = range(9)
# evictable cached prefix blocks (counted in FREE), prefix tokens looked up and found
EVICT, PFX_ASKED, PFX_HIT = 9, 10, 11
# lifecycle state of the replica (RS_*)
STATE = 12
# OUTST as last filed in the fleet's running total and load heap (sim.engine.dispatch)
OSEEN = 13
# iterations of the planned decode run (0: none)
PEND_K = 14
N_PI = 15
RS_OFF, RS_STARTING, RS_READY, RS_DRAINING = 0, 1, 2, 3
# --- engine / router int params (EP) ---
E_S, E_MBT, E_B, E_TOTAL, E_CHUNKED, E_MAXLEN, E_ROUTER, E_MAXQ, E_NOPEN = range(9)
E_POLICY, E_SPILL_Q, E_SPILL_TOK = 9, 10, 11
# 1: a decode run is planned and applied when it ends or when an arrival is routed to its
# replica (routers that look at one or two replicas); 0: every arrival bounds every run
E_LAZY = 12
N_EP = 13
# --- float params (EPF) ---
EF_SPILL_TTFT, EF_PREFILL_S_PER_TOKEN = 0, 1
N_EPF = 2
POLICIES = ("self_host_only", "api_only", "class_based", "spillover", "cold_start_spill")
PO_SELF, PO_API, PO_CLASS, PO_SPILL, PO_COLD = range(5)
# per-class routing flag: may the class leave the fleet, and must it (CR_API: unless
# the policy is self_host_only, every request of the class goes to the API)
CR_FLEET_ONLY, CR_ELIGIBLE, CR_API = 0, 1, 2
# per-class int params (CLS array columns): routing flag, prefix length in full blocks
C_ROUTE, C_PFX_BLOCKS = 0, 1
# per replica and class prefix cache (PC array last axis): cached blocks, references
PC_BLOCKS, PC_REFS = 0, 1
ROUTERS = ("round_robin", "least_loaded", "power_of_two", "central", "random", "least_requests")
RT_RR, RT_LL, RT_P2, RT_CENTRAL, RT_RANDOM, RT_LR = 0, 1, 2, 3, 4, 5
# --- global int state (G) ---
G_NEXT_OPEN, G_RR, G_NREQ, G_CQHEAD, G_CQTAIL, G_CQLEN, G_RND, G_CQTOK = range(8)
# sizes of the replica heaps (G_HN + H_*), of the user heap; ready replicas; sum of OUTST
G_HN = 8
G_UN, G_NREADY, G_OUTSUM = 12, 13, 14
N_G = 15
# --- global float state (GF) ---
# now; the next closed-loop send; the end of arrivals (duration_s); the latest time work
# entered the shared queue
GF_NOW, GF_UMIN, GF_STOP, GF_CQT = 0, 1, 2, 3
N_GF = 4
# --- replica heaps (sim.engine.dispatch): with local work, by clock; ready and idle, by
# clock; ready, idle and free since the shared queue last received work, by slot; ready,
# by outstanding tokens (least_loaded router only)
H_WORK, H_IDLE, H_FREE, H_LOAD = 0, 1, 2, 3
N_H = 4
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
    cls: np.ndarray  # per class: routing flag, prefix length in blocks (C_*)
    pc: np.ndarray  # per replica slot and class: cached prefix blocks, references (PC_*)
    plu: np.ndarray  # per replica slot and class: when its cached prefix was last used
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


@numba.njit(cache=True)
def _release(
    ri: np.ndarray, pi_r: np.ndarray, pc_r: np.ndarray, plu_r: np.ndarray, q: int, t: float
) -> None:
    # give back a sequence's own KV blocks and its reference on the cached prefix; a prefix
    # nobody references stays cached but evictable (counted as free), LRU by last use
    pi_r[FREE] += ri[q, BLK]
    ri[q, BLK] = 0
    if ri[q, HOLD] == 1:
        c = ri[q, CLS]
        pc_r[c, PC_REFS] -= 1
        ri[q, HOLD] = 0
        if pc_r[c, PC_REFS] == 0:
            pi_r[FREE] += pc_r[c, PC_BLOCKS]
            pi_r[EVICT] += pc_r[c, PC_BLOCKS]
            plu_r[c] = t
    ri[q, SHARED] = 0


@numba.njit(cache=True)
def _hold(ri: np.ndarray, pi_r: np.ndarray, pc_r: np.ndarray, q: int) -> None:
    # take a reference on the class prefix; its blocks stop being evictable
    c = ri[q, CLS]
    if pc_r[c, PC_REFS] == 0:
        pi_r[FREE] -= pc_r[c, PC_BLOCKS]
        pi_r[EVICT] -= pc_r[c, PC_BLOCKS]
    pc_r[c, PC_REFS] += 1
    ri[q, HOLD] = 1


@numba.njit(cache=True)
def _allocate(pi_r: np.ndarray, pc_r: np.ndarray, plu_r: np.ndarray, need: int) -> None:
    # take `need` free blocks (caller checked need <= FREE): never-cached blocks first, then
    # evict unreferenced cached prefix blocks, least recently used prefix first
    short = need - (pi_r[FREE] - pi_r[EVICT])
    while short > 0:
        best = -1
        oldest = np.inf
        for c in range(pc_r.shape[0]):
            if pc_r[c, PC_REFS] == 0 and pc_r[c, PC_BLOCKS] > 0 and plu_r[c] < oldest:
                best = c
                oldest = plu_r[c]
        take = min(short, pc_r[best, PC_BLOCKS])
        pc_r[best, PC_BLOCKS] -= take
        pi_r[EVICT] -= take
        short -= take
    pi_r[FREE] -= need


@numba.njit(cache=True)
def _publish_prefix(ri: np.ndarray, pi_r: np.ndarray, pc_r: np.ndarray, q: int, nbp: int) -> None:
    # q has just computed its class prefix (nbp full blocks): the cache gets the blocks it
    # lacks from q, q's copies of blocks the cache already had are freed, and q now shares
    # all nbp blocks (block-level deduplication, as prefix hashing does)
    c = ri[q, CLS]
    if ri[q, HOLD] == 0:
        _hold(ri, pi_r, pc_r, q)
    cur = pc_r[c, PC_BLOCKS]
    own = nbp - ri[q, SHARED]
    pi_r[FREE] += cur - ri[q, SHARED]
    ri[q, BLK] -= own
    pc_r[c, PC_BLOCKS] = nbp
    ri[q, SHARED] = nbp


@numba.njit(cache=True)
def _finish(
    q: int, t: float, pi_r: np.ndarray, pc_r: np.ndarray, plu_r: np.ndarray, st: KernelState
) -> None:
    st.rf[q, FINISH] = t
    st.ri[q, STATUS] = ST_COMPLETED
    _release(st.ri, pi_r, pc_r, plu_r, q, t)
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
    pc_r, plu_r, run_r, coeffs = st.pc[r], st.plu[r], st.run[r], st.coeffs
    bt = st.ep[E_B]
    n = pi_r[NRUN]
    dt = decode_run_time(coeffs, n, kv, k)
    grown = 0
    for j in range(n):
        q = run_r[j]
        ri[q, COMP] += k
        ri[q, GEN] += k
        nb = _cdiv(ri[q, COMP], bt) - ri[q, SHARED]
        grown += nb - ri[q, BLK]
        ri[q, BLK] = nb
    _allocate(pi_r, pc_r, plu_r, grown)
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
            _finish(q, t_end, pi_r, pc_r, plu_r, st)
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
def step_replica(r: int, bound: float, st: KernelState) -> None:
    """Run replica ``r``'s next scheduler iteration (or a run of identical decode iterations
    that all start before ``bound``, or planned to run until it ends: see ``E_LAZY``); a
    planned run is applied at its end."""
    if st.pi[r, PEND_K] > 0:
        # the planned run's last iteration starts now: apply the run; the next iteration
        # follows at once unless something (the bound, a closed-loop request its finishes
        # sent) comes first
        settle(r, np.inf, st)
        if st.pf[r, CLOCK] >= bound or st.gf[GF_UMIN] <= st.pf[r, CLOCK]:
            return
        if st.pi[r, NRUN] == 0 and st.pi[r, QLEN] == 0:
            return  # nothing left: the dispatcher decides whether it pulls shared work
    rf, ri, pf, pi, ep, cls = st.rf, st.ri, st.pf, st.pi, st.ep, st.cls
    pc, plu, coeffs, g = st.pc, st.plu, st.coeffs, st.g
    run = st.run
    chunk = st.chunk[r]
    pi_r = pi[r]
    pc_r = pc[r]
    plu_r = plu[r]
    run_r = run[r]
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
            _release(ri, pi_r, pc_r, plu_r, v, clock)
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
        _allocate(pi_r, pc_r, plu_r, need)
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
            # automatic prefix caching: skip the prefix blocks this replica holds
            cached = 0
            if ri[q, HASPFX] == 1:
                cached = pc_r[ri[q, CLS], PC_BLOCKS]
            hit = cached * bt
            c = min(ri[q, PFT] - hit, budget)
            if ep[E_CHUNKED] == 0 and c < ri[q, PFT] - hit and ri[q, GEN] == 0:
                # without chunked prefill a prompt runs whole; a recompute after preemption
                # (prompt + generated tokens) may exceed the budget and is then chunked
                break
            need = _cdiv(hit + c, bt) - cached
            pinned = cached if cached > 0 and pc_r[ri[q, CLS], PC_REFS] == 0 else 0
            if need + pinned > pi_r[FREE]:
                break
            if from_central:
                _q_pop_front(ri, g, G_CQHEAD)
                g[G_CQTOK] -= ri[q, PFT] - ri[q, COMP]
                ri[q, REP] = r
                pi_r[OUTST] += ri[q, PROMPT] + ri[q, OUT] - 1
            else:
                _q_pop_front(ri, pi_r, QHEAD)
                pi_r[QTOK] -= ri[q, PFT] - ri[q, COMP]
            if ri[q, HASPFX] == 1:
                pi_r[PFX_ASKED] += cls[ri[q, CLS], C_PFX_BLOCKS] * bt
                pi_r[PFX_HIT] += hit
            if cached > 0:
                _hold(ri, pi_r, pc_r, q)
                ri[q, SHARED] = cached
                ri[q, COMP] = hit
                pi_r[OUTST] -= hit
            _allocate(pi_r, pc_r, plu_r, need)
            ri[q, BLK] = need
            ri[q, STATUS] = ST_RUNNING
            if np.isnan(rf[q, ADMIT]):
                rf[q, ADMIT] = clock
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
        k = k_fin
        if k > 1 and n * ((k - 1) // bt + 1) > pi_r[FREE]:
            lo, hi = 1, k  # largest k with need(k) <= free
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if _kv_need(run_r, ri, n, mid, bt) <= pi_r[FREE]:
                    lo = mid
                else:
                    hi = mid - 1
            k = lo
        if ep[E_LAZY] == 1:
            # planned now, applied when its last iteration starts (as an engine stepping
            # every iteration would) or when an arrival needs this replica before that
            pi_r[PEND_K] = k
            pf[r, PEND_C0] = clock
            pf[r, PEND_KV] = kv
            pf[r, PEND_USED] = used_before
            pf[r, CLOCK] = clock + decode_run_time(coeffs, n, kv, k - 1)
            return
        k = started_before(coeffs, n, kv, k, bound - clock)
        _apply_decode_run(r, k, clock, kv, used_before, st)
        return
    # a general iteration
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
        nbp = cls[ri[q, CLS], C_PFX_BLOCKS]
        if ri[q, HASPFX] == 1 and ri[q, SHARED] < nbp and ri[q, COMP] >= nbp * bt:
            _publish_prefix(ri, pi_r, pc_r, q, nbp)
        if was_prefill:
            if ri[q, COMP] == ri[q, PFT]:
                if ri[q, GEN] == 0:
                    rf[q, FIRST] = t_end
                ri[q, GEN] += 1
        else:
            ri[q, GEN] += 1
        if ri[q, GEN] >= ri[q, OUT]:
            _finish(q, t_end, pi_r, pc_r, plu_r, st)
            any_done = True
    used_after = total_blocks - pi_r[FREE]
    pf[r, KV_INT] += 0.5 * (used_before + used_after) * dt
    if any_done:
        _compact_running(run_r, ri, pi_r)
    if pi_r[STATE] == RS_DRAINING and pi_r[NRUN] == 0 and pi_r[QLEN] == 0:
        pf[r, IDLE_AT] = t_end
