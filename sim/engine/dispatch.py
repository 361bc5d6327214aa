"""The fleet around the replicas: which replica steps next, where an arrival goes, and
replicas changing state — each in ``O(log R)`` for a fleet of ``R`` replica slots.

:mod:`sim.engine.kernel` runs one replica's scheduler iteration; this module orders those
iterations and the arrivals in time. No operation scans every replica:

* the next step boundary is the top of a heap: replicas with local work keyed by clock
  (``H_WORK``); when the shared queue holds work, the ready idle replicas compete too, either
  at their own clock (``H_IDLE``: an iteration that ended after the work arrived) or at the
  time the work arrived (``H_FREE``: idle since before, by slot). Ties go to the lowest slot,
  as a scan over every replica would give;
* routing reads the ready replicas from a sorted array (round robin, random, power of two)
  or the top of a heap keyed by outstanding tokens (least loaded, its planned runs'
  iterations counted as they start in a tick heap); the central queue's taker is the top of
  a heap of boundaries where replicas with a free slot may take its head (``_taker``);
* a planned decode run is cut where a request routed to its replica is first seen
  (``_wake``) or where the replica takes shared work, not where every arrival falls;
* closed-loop users wait in a heap keyed by their next send time;
* a replica's entries are re-filed after each of its iterations, each arrival routed to it,
  and each change of its lifecycle state (:func:`set_state`), the only ways they change.
"""

from __future__ import annotations

import numba
import numpy as np

from sim.engine import heaps
from sim.engine.kernel import (
    ARR,
    C_ROUTE,
    CHEAD,
    CLOCK,
    CLS,
    COLD,
    COMP,
    CR_API,
    CR_FLEET_ONLY,
    CSIZE,
    CTAIL,
    E_AFF_SLACK,
    E_AHEAD,
    E_B,
    E_CHUNKED,
    E_COUNT,
    E_IDENT,
    E_LAZY,
    E_MAXLEN,
    E_MAXQ,
    E_MBT,
    E_NOPEN,
    E_POLICY,
    E_ROUTER,
    E_S,
    E_SPILL_Q,
    E_SPILL_TOK,
    E_TOTAL,
    EF_AFF_FRAC,
    EF_PREFILL_S_PER_TOKEN,
    EF_SPILL_TTFT,
    EVICT,
    G_CQHEAD,
    G_CQLEN,
    G_CQTOK,
    G_HN,
    G_NEXT_OPEN,
    G_NREADY,
    G_NREQ,
    G_OUTSUM,
    G_RND,
    G_RR,
    G_UN,
    GEN,
    GF_CQT,
    GF_NOW,
    GF_UMIN,
    H_FREE,
    H_IDLE,
    H_LOAD,
    H_TAKE,
    H_TICK,
    H_WORK,
    N_H,
    NEED_POOL,
    NEED_RANDOM,
    NEED_REQUESTS,
    NINT,
    NRUN,
    OK,
    OSEEN,
    OUT,
    OUTST,
    PEND_C0,
    PEND_K,
    PEND_KV,
    PFT,
    PO_API,
    PO_COLD,
    PO_SELF,
    PO_SPILL,
    PROMPT,
    QHEAD,
    QLEN,
    QTOK,
    R_BUDGET,
    R_KV,
    R_MAXLEN,
    R_NONE,
    R_QUEUE,
    REASON,
    RECOMP,
    REP,
    RS_OFF,
    RS_READY,
    RS_STARTING,
    RT_CENTRAL,
    RT_LL,
    RT_LR,
    RT_P2,
    RT_PA,
    RT_RANDOM,
    RT_RR,
    SHARED,
    ST_API,
    ST_ELSEWHERE,
    ST_QUEUED,
    ST_REJECTED,
    ST_RUNNING,
    STATE,
    STATUS,
    T_KEY,
    TAKEJ,
    THINK,
    TICKED,
    USER,
    WAKE,
    KernelState,
    _cdiv,
    _lookup,
    _q_pop_front,
    _q_push_back,
    _q_push_front,
    _release,
    _unreference,
    cache_limit,
    cut_run,
    settle,
    started_before,
    step_replica,
    user_next,
)
from sim.engine.steptime import decode_run_time


# --- the replica heaps --------------------------------------------------------------------
@numba.njit(cache=True)
def _file(
    heap: np.ndarray,
    pos: np.ndarray,
    key: np.ndarray,
    g: np.ndarray,
    s: int,
    r: int,
    value: float,
    member: bool,
) -> None:
    # make replica r a member of a heap with key `value`, or not a member
    if member:
        key[r] = value
        if pos[r] >= 0:
            heaps.fix(heap, pos, key, g, s, r)
        else:
            heaps.push(heap, pos, key, g, s, r)
    elif pos[r] >= 0:
        heaps.remove(heap, pos, key, g, s, r)


@numba.njit(cache=True)
def refile(r: int, st: KernelState) -> None:
    """Bring replica ``r``'s heap entries and the fleet's outstanding-token total up to
    date with its state, counters and clock."""
    pi, pf = st.pi, st.pf
    state = pi[r, STATE]
    work = state >= RS_READY and (pi[r, NRUN] > 0 or pi[r, QLEN] > 0)
    # its next step: where its planned decode run's last iteration starts (see
    # step_replica), or where a request routed to it meanwhile is first seen
    at = min(pf[r, CLOCK], pf[r, WAKE]) if pi[r, PEND_K] > 0 else pf[r, CLOCK]
    _file(st.hh[H_WORK], st.hp[H_WORK], st.hk[H_WORK], st.g, G_HN + H_WORK, r, at, work)
    idle = state == RS_READY and not work
    free = idle and st.hp[H_FREE, r] >= 0 and pf[r, CLOCK] <= st.gf[GF_CQT]
    if not free:  # a free replica stays free while idle, unless it ran an iteration since
        _file(st.hh[H_FREE], st.hp[H_FREE], st.hk[H_FREE], st.g, G_HN + H_FREE, r, float(r), False)
        _file(
            st.hh[H_IDLE], st.hp[H_IDLE], st.hk[H_IDLE], st.g, G_HN + H_IDLE, r, pf[r, CLOCK], idle
        )
    router = st.ep[E_ROUTER]
    if router == RT_LR:  # requests it holds: a planned decode run changes them at its end
        load = float(pi[r, NRUN] + pi[r, QLEN])
        hh, hp, hk = st.hh[H_LOAD], st.hp[H_LOAD], st.hk[H_LOAD]
        _file(hh, hp, hk, st.g, G_HN + H_LOAD, r, load, state == RS_READY)
    if st.ep[E_COUNT] == 1:
        _file_ticks(r, st)
    else:
        st.g[G_OUTSUM] += pi[r, OUTST] - pi[r, OSEEN]
        pi[r, OSEEN] = pi[r, OUTST]
    if router == RT_CENTRAL:
        _file_take(r, st)


@numba.njit(cache=True)
def _file_ticks(r: int, st: KernelState) -> None:
    # counting iterations (E_COUNT): replica r's outstanding tokens once the iterations of
    # its planned decode run counted so far have started (each takes one token from every
    # running sequence) in the load heap (least_loaded) and the fleet's total, and when its
    # next iteration starts in the tick heap
    pi, pf = st.pi, st.pf
    ready = pi[r, STATE] == RS_READY
    k = pi[r, PEND_K]
    n = pi[r, NRUN]
    done = pi[r, TICKED] if k > 0 else 0
    load = pi[r, OUTST] - n * done
    if st.ep[E_ROUTER] == RT_LL:
        hh, hp, hk = st.hh[H_LOAD], st.hp[H_LOAD], st.hk[H_LOAD]
        _file(hh, hp, hk, st.g, G_HN + H_LOAD, r, float(load), ready)
    st.g[G_OUTSUM] += load - pi[r, OSEEN]
    pi[r, OSEEN] = load
    ticks = ready and done < k
    nxt = pf[r, PEND_C0] + decode_run_time(st.coeffs, n, pf[r, PEND_KV], done) if ticks else 0.0
    _file(st.hh[H_TICK], st.hp[H_TICK], st.hk[H_TICK], st.g, G_HN + H_TICK, r, nxt, ticks)


@numba.njit(cache=True)
def _file_take(r: int, st: KernelState) -> None:
    # central: replica r, in a planned decode run with a free sequence slot, in the take
    # heap at its boundary TAKEJ (1 when the run is planned, raised by _taker). Its key is
    # never later than the first boundary where it may take the shared queue's head
    pi = st.pi
    k, j = pi[r, PEND_K], pi[r, TAKEJ]
    room = pi[r, STATE] == RS_READY and j < k and pi[r, NRUN] < st.ep[E_S]
    key = 0.0
    if room:
        key = st.pf[r, PEND_C0] + decode_run_time(st.coeffs, pi[r, NRUN], st.pf[r, PEND_KV], j)
    _file(st.hh[H_TAKE], st.hp[H_TAKE], st.hk[H_TAKE], st.g, G_HN + H_TAKE, r, key, room)


@numba.njit(cache=True)
def _count_ticks(t: float, st: KernelState) -> None:
    # count every planned decode run's iterations that start before t (E_COUNT): the load
    # heap and the fleet's outstanding total are then exact at t, and
    # the tick heap's top is the first iteration boundary at or after t. It costs
    # O(log R) per replica that started an iteration since the last call, not a look at
    # every replica
    hh, hp, hk, pi, pf, g = st.hh[H_TICK], st.hp[H_TICK], st.hk[H_TICK], st.pi, st.pf, st.g
    ll = st.ep[E_ROUTER] == RT_LL
    while g[G_HN + H_TICK] > 0 and hk[hh[0]] < t:
        r = hh[0]
        k, n, c0, kv = pi[r, PEND_K], pi[r, NRUN], pf[r, PEND_C0], pf[r, PEND_KV]
        j = pi[r, TICKED] + 1
        nxt = np.inf
        while j < k:
            nxt = c0 + decode_run_time(st.coeffs, n, kv, j)
            if nxt >= t:
                break
            j += 1
        # what _file_ticks would file, updated in place: the load falls by n a start (the
        # hot path of a large fleet: calling _file_ticks here measured a third slower)
        fall = n * (j - pi[r, TICKED])
        pi[r, TICKED] = j
        pi[r, OSEEN] -= fall
        g[G_OUTSUM] -= fall
        if ll:
            st.hk[H_LOAD, r] -= fall
            heaps.fix(st.hh[H_LOAD], st.hp[H_LOAD], st.hk[H_LOAD], g, G_HN + H_LOAD, r)
        if j < k:
            hk[r] = nxt
            heaps.fix(hh, hp, hk, g, G_HN + H_TICK, r)
        else:
            heaps.remove(hh, hp, hk, g, G_HN + H_TICK, r)


@numba.njit(cache=True)
def _forget_cache(r: int, st: KernelState) -> None:
    # replica r's memory is gone: its cached blocks stay free, holding nothing
    st.ct[r, :, T_KEY] = -1
    st.pi[r, CHEAD] = -1
    st.pi[r, CTAIL] = -1
    st.pi[r, CSIZE] = 0
    st.pi[r, EVICT] = 0


@numba.njit(cache=True)
def set_state(r: int, new: int, now: float, st: KernelState) -> None:
    """Replica ``r`` moves to lifecycle state ``new`` at ``now`` (a replica becoming ready
    is at ``now`` or later). A replica switched off loses its prefix cache: a later
    replica in the same slot starts empty."""
    pi, g, rdy = st.pi, st.g, st.rdy
    old = pi[r, STATE]
    pi[r, STATE] = new
    if new == RS_OFF and old != RS_OFF and st.ep[E_IDENT] == 1:
        _forget_cache(r, st)
    if new == RS_READY and st.pf[r, CLOCK] < now:
        st.pf[r, CLOCK] = now
    n = g[G_NREADY]
    if new == RS_READY and old != RS_READY:
        i = np.searchsorted(rdy[:n], r)
        rdy[i + 1 : n + 1] = rdy[i:n].copy()
        rdy[i] = r
        g[G_NREADY] = n + 1
    elif old == RS_READY and new != RS_READY:
        i = np.searchsorted(rdy[:n], r)
        rdy[i : n - 1] = rdy[i + 1 : n].copy()
        g[G_NREADY] = n - 1
    refile(r, st)


@numba.njit(cache=True)
def init_heaps(st: KernelState) -> None:
    """File every replica slot and closed-loop user (the arrays are otherwise built)."""
    st.hh[:] = -1
    st.hp[:] = -1
    for h in range(N_H):
        st.g[G_HN + h] = 0
    st.g[G_NREADY] = 0
    for r in range(st.pi.shape[0]):
        state = st.pi[r, STATE]
        st.pi[r, STATE] = RS_OFF
        set_state(r, state, st.pf[r, CLOCK], st)
    st.up[:] = -1
    st.g[G_UN] = 0
    for u in range(st.ut.shape[0]):
        heaps.push(st.uh, st.up, st.ut, st.g, G_UN, u)
    st.gf[GF_UMIN] = st.ut[st.uh[0]] if st.ut.shape[0] > 0 else np.inf


@numba.njit(cache=True)
def _consider(r: int, c: float, rmin: int, cmin: float, c2: float) -> tuple[int, float, float]:
    # (earliest replica, its time, second earliest time) after seeing replica r at time c
    if c < cmin or (c == cmin and r < rmin):
        return r, c, cmin
    if c < c2:
        return rmin, cmin, c
    return rmin, cmin, c2


@numba.njit(cache=True)
def _earliest(st: KernelState) -> tuple[int, float, float]:
    # the replica with the earliest step boundary, that time, and the second earliest
    hh, hk, g = st.hh, st.hk, st.g
    rmin, cmin, c2 = -1, np.inf, np.inf
    for h in (H_WORK, H_IDLE, H_FREE):
        if h != H_WORK and g[G_CQLEN] == 0:
            break  # idle replicas have work only when the shared queue holds some
        if h == H_IDLE:
            # idle since before the shared queue last received work: they start then
            t_cq = st.gf[GF_CQT]
            while g[G_HN + H_IDLE] > 0 and hk[H_IDLE, hh[H_IDLE, 0]] <= t_cq:
                r = hh[H_IDLE, 0]
                heaps.remove(hh[H_IDLE], st.hp[H_IDLE], hk[H_IDLE], g, G_HN + H_IDLE, r)
                hk[H_FREE, r] = float(r)
                heaps.push(hh[H_FREE], st.hp[H_FREE], hk[H_FREE], g, G_HN + H_FREE, r)
        if g[G_HN + h] == 0:
            continue
        top = hh[h, 0]
        nxt = heaps.second(hh[h], hk[h], g, G_HN + h)
        if h == H_FREE:
            t_cq = st.gf[GF_CQT]
            rmin, cmin, c2 = _consider(top, t_cq, rmin, cmin, c2)
            if nxt >= 0:
                rmin, cmin, c2 = _consider(nxt, t_cq, rmin, cmin, c2)
        else:
            rmin, cmin, c2 = _consider(top, hk[h, top], rmin, cmin, c2)
            if nxt >= 0:
                rmin, cmin, c2 = _consider(nxt, hk[h, nxt], rmin, cmin, c2)
    if g[G_CQLEN] > 0 and st.ep[E_ROUTER] == RT_CENTRAL and g[G_HN + H_TAKE] > 0:
        # central queue: a replica in a planned decode run with a free sequence slot may
        # take the shared work at one of its boundaries (run_until cuts the run there); a
        # full one cannot before its run ends
        r, t = _taker(rmin, cmin, st)
        if r >= 0:
            rmin, cmin, c2 = _consider(r, t, rmin, cmin, c2)
    return rmin, cmin, c2


@numba.njit(cache=True)
def _sees(head: float, c0: float, n: int, kv: float, j: int, st: KernelState) -> bool:
    # may boundary j of a planned run from c0 take a request that arrived at `head`? Any
    # boundary at or after it may; planning ahead, only one that ends an iteration that
    # began after it (the scheduler saw it)
    if st.ep[E_AHEAD] == 1:
        return c0 + decode_run_time(st.coeffs, n, kv, j - 1) > head
    return c0 + decode_run_time(st.coeffs, n, kv, j) >= head


@numba.njit(cache=True)
def _taker(rmin: int, cmin: float, st: KernelState) -> tuple[int, float]:
    # central: the replica in a planned decode run with a free slot that takes the shared
    # queue's head first, and when (ties to the lowest slot), when that comes before
    # (cmin, rmin); (-1, inf) otherwise. The take heap's keys are boundaries no later
    # than where each replica may take the head (a later head, or time passing, only moves
    # that boundary on), so its top, once it may, is the first: a top that may not is
    # moved to its first boundary that may, found by bisection. Each move passes at least
    # one boundary, so the moves cost no more than counting every iteration would
    hh, hp, hk, g, pi, pf = st.hh[H_TAKE], st.hp[H_TAKE], st.hk[H_TAKE], st.g, st.pi, st.pf
    head = st.rf[g[G_CQHEAD], ARR]
    while g[G_HN + H_TAKE] > 0:
        r = hh[0]
        key = hk[r]
        if key > cmin or (key == cmin and r > rmin):
            return -1, np.inf
        k, n, c0, kv = pi[r, PEND_K], pi[r, NRUN], pf[r, PEND_C0], pf[r, PEND_KV]
        j = pi[r, TAKEJ]
        if _sees(head, c0, n, kv, j, st):
            return r, key
        # the first boundary after j that may take the head, k when none before the end
        lo, hi = j + 1, k
        if lo < k and not _sees(head, c0, n, kv, lo, st):
            lo += 1
            while lo < hi:
                mid = (lo + hi) // 2
                if _sees(head, c0, n, kv, mid, st):
                    hi = mid
                else:
                    lo = mid + 1
        if lo >= k:  # it takes the head at its run's end, if at all (the work heap)
            heaps.remove(hh, hp, hk, g, G_HN + H_TAKE, r)
        else:
            pi[r, TAKEJ] = lo
            hk[r] = c0 + decode_run_time(st.coeffs, n, kv, lo)
            heaps.fix(hh, hp, hk, g, G_HN + H_TAKE, r)
    return -1, np.inf


# --- arrivals -----------------------------------------------------------------------------
@numba.njit(cache=True)
def _look(r: int, t: float, st: KernelState) -> int:
    # an arrival goes to replica r at t: its planned decode run is applied up to t first,
    # unless the scheduler plans ahead (see _wake); the loads that routers and spillover
    # read meanwhile count the run's iterations started by then (_outstanding, ticks)
    if st.pi[r, PEND_K] > 0 and st.ep[E_AHEAD] == 0:
        settle(r, t, st)
        refile(r, st)
    return r


@numba.njit(cache=True)
def _wake(r: int, t: float, st: KernelState) -> None:
    # planning ahead, a request that joins replica r's queue at t while its planned decode
    # run goes on is first seen by the scheduler of the iteration after the one that starts
    # next (the one after that was planned already): the run is cut at that boundary
    # (run_until), and the iteration in between needs no step of its own
    pi, pf = st.pi, st.pf
    k = pi[r, PEND_K]
    if k == 0:
        return
    n, c0, kv = pi[r, NRUN], pf[r, PEND_C0], pf[r, PEND_KV]
    w = started_before(st.coeffs, n, kv, k, t - c0) + 1
    if w < k:  # otherwise the run ends first, at a boundary that sees the request
        pf[r, WAKE] = min(pf[r, WAKE], c0 + decode_run_time(st.coeffs, n, kv, w))


@numba.njit(cache=True)
def _outstanding(r: int, t: float, st: KernelState) -> int:
    # replica r's outstanding tokens at t, its planned decode run applied up to t
    pi, pf = st.pi, st.pf
    k = pi[r, PEND_K]
    if k == 0:
        return pi[r, OUTST]
    n = pi[r, NRUN]
    return pi[r, OUTST] - n * started_before(st.coeffs, n, pf[r, PEND_KV], k, t - pf[r, PEND_C0])


@numba.njit(cache=True)
def _least_loaded(t: float, st: KernelState) -> int:
    # fewest outstanding tokens at t, ties to the lowest slot: the load heap's top once
    # every planned decode run's iterations that start before t are counted
    _count_ticks(t, st)
    return _look(st.hh[H_LOAD, 0], t, st)


@numba.njit(cache=True)
def _prefix_affinity(q: int, t: float, st: KernelState) -> int:
    # the longest cached prefix among the replicas within the load allowance of the least
    # loaded one (sim.engine.spec.AffinitySpec); it reads every ready replica, O(R) per
    # arrival plus a lookup per candidate (the router is not lazy: loads are exact)
    g, rdy, pi, loads = st.g, st.rdy, st.pi, st.scratch
    m = g[G_NREADY]
    best = rdy[0]
    least = np.iinfo(np.int64).max
    for i in range(m):
        r = rdy[i]
        v = pi[r, OUTST] if pi[r, PEND_K] == 0 else _outstanding(r, t, st)
        loads[i] = v
        if v < least:
            least, best = v, r
    limit = cache_limit(q, st)
    if limit > 0:
        allowance = max(float(st.ep[E_AFF_SLACK]), st.epf[EF_AFF_FRAC] * least)
        best_hit, best_load = 0, least
        for i in range(m):
            if loads[i] > least + allowance:
                continue
            hit, _ = _lookup(q, rdy[i], limit, st)
            if hit > best_hit or (hit == best_hit and hit > 0 and loads[i] < best_load):
                best, best_hit, best_load = rdy[i], hit, loads[i]
    return _look(best, t, st)


@numba.njit(cache=True)
def _route(q: int, t: float, st: KernelState) -> int:
    # among the ready replicas only; -1 when none is ready
    g, rnd, rdy = st.g, st.rnd, st.rdy
    m = g[G_NREADY]
    if m == 0:
        return -1
    kind = st.ep[E_ROUTER]
    if kind == RT_RR:
        r = rdy[g[G_RR] % m]
        g[G_RR] += 1
        return _look(r, t, st)
    if kind == RT_RANDOM:
        r = rdy[min(int(rnd[g[G_RND]] * m), m - 1)]
        g[G_RND] += 1
        return _look(r, t, st)
    if kind == RT_P2:
        if m == 1:
            return _look(rdy[0], t, st)
        a = min(int(rnd[g[G_RND]] * m), m - 1)
        b = min(int(rnd[g[G_RND] + 1] * (m - 1)), m - 2)
        g[G_RND] += 2
        if b >= a:
            b += 1
        ra, rb = rdy[a], rdy[b]
        return _look(ra if _outstanding(ra, t, st) <= _outstanding(rb, t, st) else rb, t, st)
    if kind == RT_LR:  # fewest requests held (running + queued), ties to the lowest slot
        return _look(st.hh[H_LOAD, 0], t, st)
    if kind == RT_PA:
        return _prefix_affinity(q, t, st)
    # least outstanding tokens (queued + running work), ties to the lowest slot
    return _least_loaded(t, st)


@numba.njit(cache=True)
def _spill(r: int, prompt: int, t: float, st: KernelState) -> bool:
    # is the fleet (replica r, or the central queue) past a spillover threshold at t?
    pi, ep, epf, g = st.pi, st.ep, st.epf, st.g
    nrep = pi.shape[0]
    if r >= 0:
        queued = float(pi[r, QLEN])
        outstanding = float(_outstanding(r, t, st))
        qtok = float(pi[r, QTOK])
    else:  # central queue: its length and work shared over the replica slots
        queued = g[G_CQLEN] / nrep
        outstanding = (g[G_OUTSUM] + g[G_CQTOK]) / nrep
        qtok = g[G_CQTOK] / nrep
    if ep[E_SPILL_Q] >= 0 and queued >= ep[E_SPILL_Q]:
        return True
    if ep[E_SPILL_TOK] >= 0 and outstanding >= ep[E_SPILL_TOK]:
        return True
    ttft = epf[EF_SPILL_TTFT]
    return ttft > 0.0 and (qtok + prompt) * epf[EF_PREFILL_S_PER_TOKEN] > ttft


@numba.njit(cache=True)
def _arrive(q: int, t: float, st: KernelState) -> None:
    ri, pf, pi, ep, cls, g, gf = st.ri, st.pf, st.pi, st.ep, st.cls, st.g, st.gf
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
        if central and ep[E_COUNT] == 1:
            _count_ticks(t, st)  # the fleet's outstanding total, exact at t
        r = -1 if central else _route(q, t, st)
        if g[G_NREADY] == 0:
            ri[q, COLD] = 1
            if may_leave and policy == PO_COLD:
                ri[q, STATUS] = ST_API  # the fleet is starting: use the API meanwhile
                return
        if may_leave and policy == PO_SPILL and _spill(r, prompt, t, st):
            ri[q, STATUS] = ST_API
            return
        if central or r < 0:
            if ep[E_MAXQ] >= 0 and g[G_CQLEN] >= ep[E_MAXQ]:
                reason = R_QUEUE
            else:
                ri[q, STATUS] = ST_QUEUED
                _q_push_back(ri, g, G_CQHEAD, q)
                g[G_CQTOK] += prompt
                # idle ready replicas may start on it now (see _earliest)
                if gf[GF_CQT] < t:
                    gf[GF_CQT] = t
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
            _wake(r, t, st)
            refile(r, st)
            return
    if may_leave:
        # what the fleet cannot take, the API can
        ri[q, STATUS] = ST_API
        return
    ri[q, STATUS] = ST_REJECTED
    ri[q, REASON] = reason
    user_next(q, t, st)


# --- interruptions ------------------------------------------------------------------------
@numba.njit(cache=True)
def interrupt(r: int, t: float, st: KernelState) -> int:
    """Replica ``r`` disappears at ``t`` (spot reclaim, failure): its running and queued
    requests lose their KV cache and go back to the front of the shared queue, oldest first,
    to be recomputed by another replica, which may start on them from ``t``. Returns how
    many requests it held."""
    ri, pi, run, g = st.ri, st.pi, st.run, st.g
    pi_r = pi[r]
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
            if ri[q, SHARED] > 0:
                _unreference(q, r, st)
            _release(ri, pi_r, q)
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
    # the replica's memory is gone: its cached blocks too (set_state below forgets them)
    if st.gf[GF_CQT] < t:
        st.gf[GF_CQT] = t
    set_state(r, RS_OFF, t, st)
    return moved


@numba.njit(cache=True)
def _takes_shared(r: int, st: KernelState) -> bool:
    # central: replica r has a free slot while the shared queue holds work
    return (
        st.ep[E_ROUTER] == RT_CENTRAL
        and st.g[G_CQLEN] > 0
        and st.pi[r, NRUN] < st.ep[E_S]
        and st.pi[r, STATE] == RS_READY
    )


# --- the event loop -----------------------------------------------------------------------
@numba.njit(cache=True)
def run_until(t_end: float, st: KernelState) -> int:
    """Advance the whole fleet until every busy replica's clock is at or past ``t_end`` and
    every arrival before ``t_end`` has been routed. Returns ``OK`` or a code asking the
    caller to grow a buffer (closed-loop requests, their pre-drawn lengths, router random
    numbers) and call again; the state is consistent at every return."""
    code = _advance(t_end, st)
    if code == OK and st.ep[E_LAZY] == 1:
        # planned decode runs that span t_end stop at their first boundary after it, so
        # that the caller reads every replica's counters as they stand at t_end
        for r in range(st.pi.shape[0]):
            if st.pi[r, PEND_K] > 0:
                settle(r, t_end, st)
                refile(r, st)
    return code


@numba.njit(cache=True)
def _advance(t_end: float, st: KernelState) -> int:
    # run_until without settling the planned decode runs that span t_end (the event loop's
    # own state: what an arrival at t_end sees)
    rf, ri, pf, ep, g, gf = st.rf, st.ri, st.pf, st.ep, st.g, st.gf
    ut, ucls, pool, pool_ptr, rnd = st.ut, st.ucls, st.pool, st.pool_ptr, st.rnd
    n_open = ep[E_NOPEN]
    closed = ut.shape[0] > 0
    draws = ep[E_ROUTER] == RT_P2 or ep[E_ROUTER] == RT_RANDOM
    lazy = ep[E_LAZY] == 1
    while True:
        # next arrival: open-loop list or a closed-loop user
        t_open = rf[g[G_NEXT_OPEN], ARR] if g[G_NEXT_OPEN] < n_open else np.inf
        t_user = gf[GF_UMIN] if closed else np.inf
        t_arr = min(t_open, t_user)
        rmin, cmin, c2 = _earliest(st)
        horizon = min(t_arr, t_end)
        if rmin >= 0 and cmin < horizon:
            bound = horizon
            if closed and not lazy and c2 < bound:
                # a finish may create an arrival: keep replicas in step with each other
                bound = c2 if c2 > cmin else cmin + 1e-12
            if draws and g[G_RND] + 2 > rnd.shape[0]:
                return NEED_RANDOM
            if st.pi[rmin, PEND_K] > 1 and (
                cmin < pf[rmin, CLOCK] or pf[rmin, WAKE] <= cmin or _takes_shared(rmin, st)
            ):
                # its planned run stops at this boundary for a request it has seen or shared
                # work it may take (even where its last iteration would start: the request
                # may join that one)
                cut_run(rmin, cmin, st)
            pf[rmin, CLOCK] = cmin
            step_replica(rmin, bound, st)
            refile(rmin, st)
            continue
        if t_arr < t_end:
            if draws and g[G_RND] + 2 > rnd.shape[0]:
                return NEED_RANDOM
            if t_open <= t_user:
                q = g[G_NEXT_OPEN]
                g[G_NEXT_OPEN] += 1
                if ri[q, STATUS] == ST_ELSEWHERE:
                    continue
            else:
                # materialise the closed-loop user's request from its class pool
                u = st.uh[0]
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
                heaps.fix(st.uh, st.up, ut, g, G_UN, u)
                gf[GF_UMIN] = ut[st.uh[0]]
            _arrive(q, rf[q, ARR], st)
            continue
        return OK


# --- a fleet of several pools (sim.engine.pools) ------------------------------------------
@numba.njit(cache=True)
def arrive_through(q_last: int, st: KernelState) -> int:
    """Route the open-loop arrivals up to row ``q_last`` (inclusive) that are still to come;
    every event before their arrival time must have been run (:func:`run_until`). Returns
    ``OK`` or ``NEED_RANDOM``."""
    ri, rf, g = st.ri, st.rf, st.g
    draws = st.ep[E_ROUTER] == RT_P2 or st.ep[E_ROUTER] == RT_RANDOM
    while g[G_NEXT_OPEN] <= q_last:
        if draws and g[G_RND] + 2 > st.rnd.shape[0]:
            return NEED_RANDOM
        q = g[G_NEXT_OPEN]
        g[G_NEXT_OPEN] += 1
        if ri[q, STATUS] == ST_ELSEWHERE:
            continue
        _arrive(q, rf[q, ARR], st)
    return OK


@numba.njit(cache=True)
def load_at(t: float, q_before: int, alive: bool, st: KernelState) -> tuple[int, np.ndarray]:
    """:func:`run_until` ``t``, then the open-loop arrivals at ``t`` up to row ``q_before``
    (:func:`arrive_through`), then :func:`pool_load` (``alive``: with the replicas ready
    or starting counted): a pool's state as a request arriving at ``t`` after those rows
    sees it, in one call. Returns ``(code, load)``; on a code other than ``OK`` the caller
    grows the buffer asked for and calls again."""
    code = _advance(t, st)  # planned runs left planned: arrivals read them as they are
    if code == OK:
        code = arrive_through(q_before, st)
    if code != OK:
        return code, np.zeros(5)
    return OK, pool_load(t, alive, st)


@numba.njit(cache=True)
def pool_load(t: float, alive: bool, st: KernelState) -> np.ndarray:
    """The fleet's load at ``t`` as a pool dispatcher reads it: ready replicas, waiting
    requests, outstanding tokens, whether a ready replica has a sequence slot no running
    or waiting request holds (under ``central``: the ready replicas together), and, with
    ``alive`` (a look at every replica slot, which only an autoscaled pool needs), the
    replicas ready or starting (else 0)."""
    pi, g, rdy = st.pi, st.g, st.rdy
    m = g[G_NREADY]
    queued = 0.0
    outstanding = 0.0
    free = 0.0
    slots = st.ep[E_S]
    held = 0
    for i in range(m):
        r = rdy[i]
        queued += pi[r, QLEN]
        outstanding += _outstanding(r, t, st)
        claimed = pi[r, NRUN] + pi[r, QLEN]
        held += claimed
        if claimed < slots:
            free = 1.0
    if st.ep[E_ROUTER] == RT_CENTRAL:
        queued += g[G_CQLEN]
        outstanding += g[G_CQTOK]
        free = 1.0 if held + g[G_CQLEN] < slots * m else 0.0
    up = 0
    if alive:
        for r in range(pi.shape[0]):
            if pi[r, STATE] == RS_READY or pi[r, STATE] == RS_STARTING:
                up += 1
    out = np.empty(5)
    out[0], out[1], out[2], out[3], out[4] = m, queued, outstanding, free, up
    return out
