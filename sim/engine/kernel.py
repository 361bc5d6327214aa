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
N_PF = 7
# --- per-replica int columns (PI) ---
NRUN, FREE, QHEAD, QTAIL, QLEN, STEPS, OUTST, NPREEMPT, QTOK = range(9)
# evictable cached prefix blocks (counted in FREE), prefix tokens looked up and found
EVICT, PFX_ASKED, PFX_HIT = 9, 10, 11
# lifecycle state of the replica (RS_*)
STATE = 12
N_PI = 13
RS_OFF, RS_STARTING, RS_READY, RS_DRAINING = 0, 1, 2, 3
# --- engine / router int params (EP) ---
E_S, E_MBT, E_B, E_TOTAL, E_CHUNKED, E_MAXLEN, E_ROUTER, E_MAXQ, E_NOPEN = range(9)
E_POLICY, E_SPILL_Q, E_SPILL_TOK = 9, 10, 11
N_EP = 12
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
ROUTERS = ("round_robin", "least_loaded", "power_of_two", "central", "random")
RT_RR, RT_LL, RT_P2, RT_CENTRAL, RT_RANDOM = 0, 1, 2, 3, 4
# --- global int state (G) ---
G_NEXT_OPEN, G_RR, G_NREQ, G_CQHEAD, G_CQTAIL, G_CQLEN, G_RND, G_CQTOK = range(8)
N_G = 8
# --- global float state (GF) ---
GF_NOW, GF_UMIN, GF_STOP = 0, 1, 2
N_GF = 3
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
    rf: np.ndarray,
    ri: np.ndarray,
    pi_r: np.ndarray,
    pc_r: np.ndarray,
    plu_r: np.ndarray,
    q: int,
    t: float,
    ut: np.ndarray,
    gf: np.ndarray,
    duration_s: float,
) -> None:
    rf[q, FINISH] = t
    ri[q, STATUS] = ST_COMPLETED
    _release(ri, pi_r, pc_r, plu_r, q, t)
    _user_next(rf, ri, q, t, ut, gf, duration_s)


@numba.njit(cache=True)
def _user_next(
    rf: np.ndarray,
    ri: np.ndarray,
    q: int,
    t: float,
    ut: np.ndarray,
    gf: np.ndarray,
    duration_s: float,
) -> None:
    # A closed-loop user thinks, then sends its next request (if the horizon allows).
    u = ri[q, USER]
    if u < 0:
        return
    nxt = t + rf[q, THINK]
    ut[u] = nxt if nxt < duration_s else np.inf
    if ut[u] < gf[GF_UMIN]:
        gf[GF_UMIN] = ut[u]


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
def step_replica(r: int, bound: float, st: KernelState, duration_s: float) -> None:
    """Run replica ``r``'s next scheduler iteration (or a run of identical decode iterations
    that all start before ``bound``)."""
    rf, ri, pf, pi, ep, cls = st.rf, st.ri, st.pf, st.pi, st.ep, st.cls
    pc, plu, coeffs, g, gf, ut = st.pc, st.plu, st.coeffs, st.g, st.gf, st.ut
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
            _user_next(rf, ri, q, clock, ut, gf, duration_s)
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
        room = bound - clock
        if k > 1 and decode_run_time(coeffs, n, kv, k - 1) >= room:
            lo, hi = 1, k - 1  # number of iterations that start before bound
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if decode_run_time(coeffs, n, kv, mid - 1) < room:
                    lo = mid
                else:
                    hi = mid - 1
            k = lo
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
        used_after = total_blocks - pi_r[FREE]
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
                _finish(rf, ri, pi_r, pc_r, plu_r, q, t_end, ut, gf, duration_s)
                any_done = True
        if any_done:
            _compact_running(run_r, ri, pi_r)
            if pi_r[STATE] == RS_DRAINING and pi_r[NRUN] == 0 and pi_r[QLEN] == 0:
                pf[r, IDLE_AT] = t_end
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
            _finish(rf, ri, pi_r, pc_r, plu_r, q, t_end, ut, gf, duration_s)
            any_done = True
    used_after = total_blocks - pi_r[FREE]
    pf[r, KV_INT] += 0.5 * (used_before + used_after) * dt
    if any_done:
        _compact_running(run_r, ri, pi_r)
    if pi_r[STATE] == RS_DRAINING and pi_r[NRUN] == 0 and pi_r[QLEN] == 0:
        pf[r, IDLE_AT] = t_end


@numba.njit(cache=True)
def _has_work(r: int, pi: np.ndarray, ep: np.ndarray, g: np.ndarray) -> bool:
    state = pi[r, STATE]
    if state < RS_READY:  # off or starting
        return False
    if pi[r, NRUN] > 0 or pi[r, QLEN] > 0:
        return True
    # the shared queue holds requests of the central router, and any request that arrived
    # when no replica was ready; ready replicas pull from it
    return state == RS_READY and g[G_CQLEN] > 0


@numba.njit(cache=True)
def _route(
    q: int, pi: np.ndarray, ep: np.ndarray, g: np.ndarray, rnd: np.ndarray, nrep: int
) -> int:
    # among the ready replicas only; -1 when none is ready
    ready = np.empty(nrep, dtype=np.int64)
    m = 0
    for r in range(nrep):
        if pi[r, STATE] == RS_READY:
            ready[m] = r
            m += 1
    if m == 0:
        return -1
    kind = ep[E_ROUTER]
    if kind == RT_RR:
        r = ready[g[G_RR] % m]
        g[G_RR] += 1
        return r
    if kind == RT_RANDOM:
        r = ready[min(int(rnd[g[G_RND]] * m), m - 1)]
        g[G_RND] += 1
        return r
    if kind == RT_P2:
        if m == 1:
            return ready[0]
        a = min(int(rnd[g[G_RND]] * m), m - 1)
        b = min(int(rnd[g[G_RND] + 1] * (m - 1)), m - 2)
        g[G_RND] += 2
        if b >= a:
            b += 1
        ra, rb = ready[a], ready[b]
        return ra if pi[ra, OUTST] <= pi[rb, OUTST] else rb
    # least outstanding tokens (queued + running work), ties to the lowest index
    best = ready[0]
    for i in range(1, m):
        r = ready[i]
        if pi[r, OUTST] < pi[best, OUTST]:
            best = r
    return best


@numba.njit(cache=True)
def _spill(
    r: int, prompt: int, pi: np.ndarray, ep: np.ndarray, epf: np.ndarray, g: np.ndarray
) -> bool:
    # is the fleet (replica r, or the central queue) past a spillover threshold?
    nrep = pi.shape[0]
    if r >= 0:
        queued = float(pi[r, QLEN])
        outstanding = float(pi[r, OUTST])
        qtok = float(pi[r, QTOK])
    else:  # central queue: its length and work shared over the replicas
        queued = g[G_CQLEN] / nrep
        outstanding = 0.0
        for i in range(nrep):
            outstanding += pi[i, OUTST]
        outstanding = (outstanding + g[G_CQTOK]) / nrep
        qtok = g[G_CQTOK] / nrep
    if ep[E_SPILL_Q] >= 0 and queued >= ep[E_SPILL_Q]:
        return True
    if ep[E_SPILL_TOK] >= 0 and outstanding >= ep[E_SPILL_TOK]:
        return True
    ttft = epf[EF_SPILL_TTFT]
    return ttft > 0.0 and (qtok + prompt) * epf[EF_PREFILL_S_PER_TOKEN] > ttft


@numba.njit(cache=True)
def _arrive(q: int, t: float, st: KernelState, duration_s: float) -> None:
    rf, ri, pf, pi, ep, epf = st.rf, st.ri, st.pf, st.pi, st.ep, st.epf
    cls, g, gf, ut, rnd = st.cls, st.g, st.gf, st.ut, st.rnd
    nrep = pi.shape[0]
    gf[GF_NOW] = t
    prompt = ri[q, PROMPT]
    out = ri[q, OUT]
    policy = ep[E_POLICY]
    flag = cls[ri[q, CLS], C_ROUTE]
    may_leave = flag != CR_FLEET_ONLY and policy != PO_SELF
    # CR_API: a class the fleet may not serve (or class_based sends away) always leaves
    if may_leave and (policy == PO_API or flag == CR_API):
        ri[q, STATUS] = ST_API
        return
    reason = R_NONE
    if prompt + out > ep[E_MAXLEN]:
        reason = R_MAXLEN
    elif _cdiv(prompt + out - 1, ep[E_B]) > ep[E_TOTAL]:
        reason = R_KV
    elif ep[E_CHUNKED] == 0 and prompt > ep[E_MBT]:
        reason = R_BUDGET
    if reason == R_NONE:
        central = ep[E_ROUTER] == RT_CENTRAL
        r = -1 if central else _route(q, pi, ep, g, rnd, nrep)
        any_ready = r >= 0
        if central:
            for i in range(nrep):
                if pi[i, STATE] == RS_READY:
                    any_ready = True
                    break
        if not any_ready:
            ri[q, COLD] = 1
            if may_leave and policy == PO_COLD:
                ri[q, STATUS] = ST_API  # the fleet is starting: use the API meanwhile
                return
        if may_leave and policy == PO_SPILL and _spill(r, prompt, pi, ep, epf, g):
            ri[q, STATUS] = ST_API
            return
        if central or r < 0:
            if ep[E_MAXQ] >= 0 and g[G_CQLEN] >= ep[E_MAXQ]:
                reason = R_QUEUE
            else:
                ri[q, STATUS] = ST_QUEUED
                _q_push_back(ri, g, G_CQHEAD, q)
                g[G_CQTOK] += prompt
                for i in range(nrep):
                    idle = pi[i, NRUN] == 0 and pi[i, QLEN] == 0
                    if idle and pi[i, STATE] == RS_READY and pf[i, CLOCK] < t:
                        pf[i, CLOCK] = t
                return
        elif ep[E_MAXQ] >= 0 and pi[r, QLEN] >= ep[E_MAXQ]:
            reason = R_QUEUE
        else:
            ri[q, REP] = r
            ri[q, STATUS] = ST_QUEUED
            if pi[r, NRUN] == 0 and pi[r, QLEN] == 0 and pf[r, CLOCK] < t:
                pf[r, CLOCK] = t
            _q_push_back(ri, pi[r], QHEAD, q)
            pi[r, QTOK] += prompt
            pi[r, OUTST] += prompt + out - 1
            return
    if may_leave:
        # what the fleet cannot take, the API can
        ri[q, STATUS] = ST_API
        return
    ri[q, STATUS] = ST_REJECTED
    ri[q, REASON] = reason
    _user_next(rf, ri, q, t, ut, gf, duration_s)


@numba.njit(cache=True)
def interrupt(r: int, t: float, st: KernelState) -> int:
    """Replica ``r`` disappears at ``t`` (spot reclaim, failure): its running and queued
    requests lose their KV cache and go back to the front of the shared queue, oldest first,
    to be recomputed by another replica. Returns how many requests it held."""
    ri, pi, run, pc, plu, g = st.ri, st.pi, st.run, st.pc, st.plu, st.g
    pi_r = pi[r]
    pc_r = pc[r]
    plu_r = plu[r]
    moved = 0
    # running requests (admission order) then queued ones (FCFS), pushed to the front of
    # the shared queue newest first, so that the oldest ends at its head
    held = np.empty(pi_r[NRUN] + pi_r[QLEN], dtype=np.int64)
    n = 0
    for i in range(pi_r[NRUN]):
        held[n] = run[r, i]
        n += 1
    while pi_r[QLEN] > 0:
        q = _q_pop_front(ri, pi_r, QHEAD)
        pi_r[QTOK] -= ri[q, PFT] - ri[q, COMP]
        held[n] = q
        n += 1
    for i in range(n - 1, -1, -1):
        q = held[i]
        if ri[q, STATUS] == ST_RUNNING:
            _release(ri, pi_r, pc_r, plu_r, q, t)
            ri[q, RECOMP] += ri[q, COMP]
            ri[q, NINT] += 1
        ri[q, COMP] = 0
        ri[q, PFT] = ri[q, PROMPT] + ri[q, GEN]
        ri[q, STATUS] = ST_QUEUED
        ri[q, REP] = -1
        _q_push_front(ri, g, G_CQHEAD, q)
        g[G_CQTOK] += ri[q, PFT]
        moved += 1
    pi_r[NRUN] = 0
    pi_r[OUTST] = 0
    # the replica's memory is gone: cached prefixes too
    for c in range(pc_r.shape[0]):
        pc_r[c, PC_BLOCKS] = 0
        pc_r[c, PC_REFS] = 0
    pi_r[EVICT] = 0  # those blocks stay free, no longer holding anything
    pi_r[STATE] = RS_OFF
    return moved


@numba.njit(cache=True)
def run_until(t_end: float, st: KernelState, duration_s: float) -> int:
    """Advance the whole fleet until every busy replica's clock is at or past ``t_end`` and
    every arrival before ``t_end`` has been routed. Returns ``OK`` or a code asking the
    caller to grow a buffer (closed-loop requests, their pre-drawn lengths, router random
    numbers) and call again; the state is consistent at every return."""
    rf, ri, pf, pi, ep, g, gf = st.rf, st.ri, st.pf, st.pi, st.ep, st.g, st.gf
    ut, ucls, pool, pool_ptr, rnd = st.ut, st.ucls, st.pool, st.pool_ptr, st.rnd
    nrep = pi.shape[0]
    n_open = ep[E_NOPEN]
    closed = ut.shape[0] > 0
    while True:
        # next arrival: open-loop list or a closed-loop user
        t_open = rf[g[G_NEXT_OPEN], ARR] if g[G_NEXT_OPEN] < n_open else np.inf
        t_user = gf[GF_UMIN] if closed else np.inf
        t_arr = min(t_open, t_user)
        # the replica with the earliest step boundary (and the second earliest)
        rmin = -1
        cmin = np.inf
        c2 = np.inf
        for r in range(nrep):
            if _has_work(r, pi, ep, g):
                c = pf[r, CLOCK]
                if c < cmin:
                    c2 = cmin
                    cmin = c
                    rmin = r
                elif c < c2:
                    c2 = c
        horizon = min(t_arr, t_end)
        if rmin >= 0 and cmin < horizon:
            bound = horizon
            if closed and c2 < bound:
                # a finish may create an arrival: keep replicas in step with each other
                bound = c2 if c2 > cmin else cmin + 1e-12
            if (ep[E_ROUTER] == RT_P2 or ep[E_ROUTER] == RT_RANDOM) and g[G_RND] + 2 > rnd.shape[0]:
                return NEED_RANDOM
            step_replica(rmin, bound, st, duration_s)
            continue
        if t_arr < t_end:
            if (ep[E_ROUTER] == RT_P2 or ep[E_ROUTER] == RT_RANDOM) and g[G_RND] + 2 > rnd.shape[0]:
                return NEED_RANDOM
            if t_open <= t_user:
                q = g[G_NEXT_OPEN]
                g[G_NEXT_OPEN] += 1
            else:
                # materialise the closed-loop user's request from its class pool
                u = 0
                for j in range(ut.shape[0]):
                    if ut[j] == t_user:
                        u = j
                        break
                c = ucls[u]
                if g[G_NREQ] >= rf.shape[0]:
                    return NEED_REQUESTS
                if pool_ptr[c] >= pool.shape[1]:
                    return NEED_POOL
                q = g[G_NREQ]
                g[G_NREQ] += 1
                p = pool_ptr[c]
                pool_ptr[c] += 1
                rf[q, ARR] = t_user
                rf[q, THINK] = pool[c, p, 2]
                ri[q, PROMPT] = int(pool[c, p, 0])
                ri[q, OUT] = int(pool[c, p, 1])
                ri[q, PFT] = ri[q, PROMPT]
                ri[q, CLS] = c
                ri[q, USER] = u
                ut[u] = np.inf
                m = np.inf
                for j in range(ut.shape[0]):
                    if ut[j] < m:
                        m = ut[j]
                gf[GF_UMIN] = m
            _arrive(q, rf[q, ARR], st, duration_s)
            continue
        return OK
