"""The engine's state for one replication: the kernel's arrays and the buffers it may ask
to grow, with the operations the fleet driver and the fleet dynamics need.

Only :mod:`sim.engine` reads these arrays; everything else gets tidy results from
:func:`sim.engine.serve.serve`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import InitVar, dataclass, field

import numpy as np

from sim.engine import dispatch
from sim.engine import kernel as K
from sim.engine.prefix_cache import (
    build_prefix_cache,
    class_prefix_hashes,
    empty_tables,
    identity_rows,
    table_size,
)
from sim.engine.replica import ReplicaConfig
from sim.engine.routing import RoutingSpec
from sim.engine.spec import FleetSpec
from sim.workload import Workload
from sim.workload.sample import ClosedLoopSource, WorkloadStream

__all__ = ["REPLICA_STATES", "SAMPLE_COLUMNS", "FleetState"]

SAMPLE_COLUMNS = ("t_s", "replica", "state", "queued", "running", "kv_used_blocks")
REPLICA_STATES = ("off", "starting", "ready", "draining")
# Decode runs are planned to their end and cut only where something needs them
# (sim.engine.dispatch) under routers that read one or two replicas per arrival, what
# changes only when a request arrives or leaves (least_requests), loads kept exact by
# counting the planned runs' iterations as they start (least_loaded), or the first boundary
# where a replica may take the shared queue's head (central).
# prefix_affinity reads every replica: there every arrival bounds every run.
LAZY_ROUTERS = (
    "round_robin",
    "random",
    "power_of_two",
    "least_requests",
    "least_loaded",
    "central",
)


# a row's identity columns when it carries none: no offset, one token per hash, no
# cacheable block (sim.engine.prefix_cache)
_NO_IDENTITY = (0, 1, 0)


def _no_retire(rf: np.ndarray, ri: np.ndarray, watermark: float) -> None:  # pragma: no cover
    raise RuntimeError("rows retired without a stream")


@dataclass
class FleetState:
    """The engine's arrays for one replication, plus the buffers it may ask to grow."""

    fleet: FleetSpec
    replica: ReplicaConfig
    # copied into the arrays, not kept: its per-request arrays are freed with the caller's
    workload: InitVar[Workload]
    duration_s: float
    router_rng: np.random.Generator
    routing: RoutingSpec = field(default_factory=RoutingSpec)
    class_route: np.ndarray | None = None  # per class: K.CR_* (default: all fleet-only)
    prefix_tokens: np.ndarray | None = None  # per class: shared prefix length (0: none)
    rf: np.ndarray = field(init=False)
    ri: np.ndarray = field(init=False)
    pf: np.ndarray = field(init=False)
    pi: np.ndarray = field(init=False)
    run: np.ndarray = field(init=False)
    chunk: np.ndarray = field(init=False)
    ep: np.ndarray = field(init=False)
    epf: np.ndarray = field(init=False)
    cls: np.ndarray = field(init=False)
    ct: np.ndarray = field(init=False)
    idh: np.ndarray = field(init=False)
    ido: np.ndarray = field(init=False)
    idb: np.ndarray = field(init=False)
    idn: np.ndarray = field(init=False)
    g: np.ndarray = field(init=False)
    gf: np.ndarray = field(init=False)
    ut: np.ndarray = field(init=False)
    ucls: np.ndarray = field(init=False)
    pool: np.ndarray = field(init=False)
    pool_ptr: np.ndarray = field(init=False)
    rnd: np.ndarray = field(init=False)
    hh: np.ndarray = field(init=False)
    hp: np.ndarray = field(init=False)
    hk: np.ndarray = field(init=False)
    rdy: np.ndarray = field(init=False)
    scratch: np.ndarray = field(init=False)
    uh: np.ndarray = field(init=False)
    up: np.ndarray = field(init=False)

    def __post_init__(self, workload: Workload) -> None:
        wl = workload
        fleet = self.fleet
        self._n_classes = len(wl.class_names)
        n_open = len(wl.arrival_s)
        users = sum(src.users for src in wl.closed_loop)
        # restart each closed-loop stream so every option simulated on this workload sees
        # the same requests (common random numbers)
        self._sources = tuple(src.fresh() for src in wl.closed_loop)
        cap = n_open + 8 * users
        self.rf = np.full((max(cap, 1), K.N_RF), np.nan)
        self.ri = np.zeros((max(cap, 1), K.N_RI), dtype=K.RI_DTYPE)
        self.rf[:n_open, K.ARR] = wl.arrival_s
        self.ri[:n_open, K.PROMPT] = wl.input_tokens
        self.ri[:n_open, K.OUT] = wl.output_tokens
        self.ri[:n_open, K.PFT] = wl.input_tokens
        self.ri[:n_open, K.CLS] = wl.class_id
        if wl.has_prefix is not None:
            self.ri[:n_open, K.HASPFX] = wl.has_prefix
        self.ri[:, K.REP] = -1
        self.ri[:, K.NEXT] = -1
        self.ri[:, K.USER] = -1
        nrep = fleet.max_slots
        s = fleet.engine.max_num_seqs
        self.pf = np.zeros((nrep, K.N_PF))
        self.pi = np.zeros((nrep, K.N_PI), dtype=np.int64)
        self.pi[:, K.FREE] = self.replica.kv_blocks
        self.pi[:, K.QHEAD] = -1
        self.pi[:, K.QTAIL] = -1
        self.pi[: fleet.replicas, K.STATE] = K.RS_READY
        self.run = np.full((nrep, s), -1, dtype=np.int64)
        self.chunk = np.zeros((nrep, s), dtype=np.int64)
        ep = np.zeros(K.N_EP, dtype=np.int64)
        ep[K.E_S] = s
        ep[K.E_MBT] = fleet.engine.max_num_batched_tokens
        ep[K.E_B] = self.replica.block_tokens
        ep[K.E_TOTAL] = self.replica.kv_blocks
        ep[K.E_CHUNKED] = int(fleet.engine.chunked_prefill)
        ep[K.E_MAXLEN] = self.replica.max_model_len
        ep[K.E_ROUTER] = K.ROUTERS.index(fleet.router)
        ep[K.E_MAXQ] = -1 if fleet.max_queue is None else fleet.max_queue
        ep[K.E_NOPEN] = n_open
        ep[K.E_LAZY] = int(fleet.router in LAZY_ROUTERS)
        ep[K.E_AHEAD] = int(self.replica.schedule_ahead)
        routing = self.routing
        ep[K.E_POLICY] = K.POLICIES.index(routing.policy)
        spill = routing.spillover
        ep[K.E_SPILL_Q] = -1 if spill is None or spill.max_queue is None else spill.max_queue
        ep[K.E_SPILL_TOK] = (
            -1
            if spill is None or spill.max_outstanding_tokens is None
            else spill.max_outstanding_tokens
        )
        # iterations counted as they start where a load must be exact at each arrival: the
        # least_loaded router's, and the fleet's outstanding tokens when central spills on them
        spills_on_tokens = routing.policy == "spillover" and ep[K.E_SPILL_TOK] >= 0
        ep[K.E_COUNT] = int(
            fleet.router == "least_loaded" or (fleet.router == "central" and spills_on_tokens)
        )
        self.ep = ep
        self.epf = np.zeros(K.N_EPF)
        if spill is not None and spill.max_predicted_ttft_s is not None:
            self.epf[K.EF_SPILL_TTFT] = spill.max_predicted_ttft_s
        # prefill throughput of one full-budget iteration, for the predicted TTFT
        mbt = fleet.engine.max_num_batched_tokens
        self.epf[K.EF_PREFILL_S_PER_TOKEN] = (
            self.replica.coefficients.time_s(mbt, 0, mbt, mbt, mbt * (mbt + 1) / 2) / mbt
        )
        n_classes = len(wl.class_names)
        self.cls = np.zeros((n_classes, 1), dtype=np.int64)
        if self.class_route is not None:
            self.cls[:, K.C_ROUTE] = self.class_route
        self._init_prefix_cache(wl)
        self.g = np.zeros(K.N_G, dtype=np.int64)
        self.g[K.G_NREQ] = n_open
        self.g[K.G_CQHEAD] = -1
        self.g[K.G_CQTAIL] = -1
        self.gf = np.zeros(K.N_GF)
        self.gf[K.GF_STOP] = self.duration_s
        # closed-loop users: each starts after a staggered fraction of one think time
        n_cls = len(wl.class_names)
        self.ut = np.full(users, np.inf)
        self.ucls = np.zeros(users, dtype=np.int64)
        self.pool = np.zeros((n_cls, 0, 3))
        self.pool_ptr = np.zeros(n_cls, dtype=np.int64)
        self._grow_pool(max(64, 4 * users))
        u = 0
        for src in wl.closed_loop:
            for _ in range(src.users):
                self.ucls[u] = src.class_id
                u += 1
        if users:
            first = self.router_rng.random(users) * self._first_think()
            self.ut[:] = np.where(first < self.duration_s, first, np.inf)
        self.gf[K.GF_UMIN] = self.ut.min() if users else np.inf
        self.rnd = self.router_rng.random(2 * n_open + 1024)
        self.hh = np.full((K.N_H, nrep), -1, dtype=np.int64)
        self.hp = np.full((K.N_H, nrep), -1, dtype=np.int64)
        self.hk = np.zeros((K.N_H, nrep))
        self.rdy = np.zeros(nrep, dtype=np.int64)
        self.scratch = np.zeros(nrep, dtype=np.int64)
        self.uh = np.zeros(users, dtype=np.int64)
        self.up = np.full(users, -1, dtype=np.int64)
        dispatch.init_heaps(self.kernel())
        self._blocks = wl.prompt_blocks is not None
        self._class_names = tuple(wl.class_names)
        self._stream: WorkloadStream | None = None
        self._window_s = math.inf
        self._retire: Callable[[np.ndarray, np.ndarray, float], None] = _no_retire

    def _init_prefix_cache(self, wl: Workload) -> None:
        # prompt identity and the replicas' prefix-cache tables (sim.engine.prefix_cache)
        pc = build_prefix_cache(
            wl,
            prefix_tokens=self.prefix_tokens,
            block_tokens=self.replica.block_tokens,
            kv_blocks=self.replica.kv_blocks,
            slots=self.fleet.max_slots,
        )
        self.ct = pc.ct
        self.idh, self.ido, self.idb, self.idn = pc.idh, pc.ido, pc.idb, pc.idn
        self.ep[K.E_IDENT] = int(pc.enabled)
        self.ep[K.E_CMASK] = pc.mask
        self.ep[K.E_NID] = len(wl) if pc.enabled else 0
        self.ep[K.E_AFF_SLACK] = self.fleet.affinity.slack_tokens
        self.epf[K.EF_AFF_FRAC] = self.fleet.affinity.slack_fraction
        self.pi[:, K.CHEAD] = -1
        self.pi[:, K.CTAIL] = -1

    def _first_think(self) -> np.ndarray:
        # one think-time draw per user, from the head of its class pool
        out = np.empty(len(self.ut))
        for u, c in enumerate(self.ucls):
            p = self.pool_ptr[c]
            out[u] = self.pool[c, p % self.pool.shape[1], 2]
        return out

    def _grow_pool(self, extra: int) -> None:
        n_cls = self._n_classes
        old = self.pool.shape[1]
        pool = np.zeros((n_cls, old + extra, 3))
        pool[:, :old] = self.pool
        self.pool = pool
        for src in self._sources:
            self._draw_pool(src, old)

    def _draw_pool(self, src: ClosedLoopSource, start: int) -> None:
        # the class's pool from ``start`` to its end: its source's next draws
        row = self.pool[src.class_id, start:]
        row[:, 0], row[:, 1], row[:, 2] = src.draw(len(row))

    def _grow_requests(self) -> None:
        self._resize(2 * self.rf.shape[0])

    def kernel(self) -> K.KernelState:
        """The arrays as the kernel takes them (built per call: a grown buffer replaces its
        array)."""
        return K.KernelState(
            rf=self.rf,
            ri=self.ri,
            pf=self.pf,
            pi=self.pi,
            run=self.run,
            chunk=self.chunk,
            ep=self.ep,
            epf=self.epf,
            cls=self.cls,
            ct=self.ct,
            idh=self.idh,
            ido=self.ido,
            idb=self.idb,
            idn=self.idn,
            coeffs=self.replica.coefficients.vector,
            g=self.g,
            gf=self.gf,
            ut=self.ut,
            ucls=self.ucls,
            pool=self.pool,
            pool_ptr=self.pool_ptr,
            rnd=self.rnd,
            hh=self.hh,
            hp=self.hp,
            hk=self.hk,
            rdy=self.rdy,
            scratch=self.scratch,
            uh=self.uh,
            up=self.up,
        )

    # --- streaming: arrivals read as the clock advances, finished rows handed back --------
    def stream_from(
        self,
        stream: WorkloadStream,
        *,
        window_s: float,
        retire: Callable[[np.ndarray, np.ndarray, float], None],
    ) -> None:
        """Read the open-loop arrivals from ``stream`` as the clock advances, ``window_s``
        seconds of them at a time (the state must have been built with the stream's first
        window), and hand every finished request's rows to ``retire(rf_rows, ri_rows)``
        before reusing them; :meth:`retire_all` hands over the rest at the end.

        The engine stops at the same times whatever ``window_s`` (a window is read before
        the clock needs it, never by stopping the clock), and rows are renumbered keeping
        their order, so the simulation is bit-identical to one with every arrival loaded.
        """
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self._stream = stream
        self._window_s = window_s
        self._retire = retire
        self._stream_identity()

    def _stream_identity(self) -> None:
        # every row may carry a class prefix's identity (set when its window is read);
        # closed-loop rows and free rows carry none (no cacheable block). Prompt blocks of
        # traces or sessions are not streamed: the caller refuses them.
        if self._blocks:
            raise ValueError("a streamed run cannot carry prompt blocks (records: all)")
        pfx = self.prefix_tokens
        if pfx is None or not bool((np.asarray(pfx) > 0).any()):
            return
        rows = self.rf.shape[0]
        n0 = int(self.ep[K.E_NOPEN])
        ido, idb, idn = (np.full(rows, v, dtype=np.int64) for v in _NO_IDENTITY)
        if self.ep[K.E_IDENT] == 1:
            ido[:n0], idb[:n0], idn[:n0] = self.ido[:n0], self.idb[:n0], self.idn[:n0]
        self.ido, self.idb, self.idn = ido, idb, idn
        self.idh = class_prefix_hashes(self._class_names)
        bt = self.replica.block_tokens
        distinct = int((np.asarray(pfx, dtype=np.int64) // bt).sum()) + 1
        size = table_size(self.replica.kv_blocks, distinct)
        self.ct = empty_tables(self.fleet.max_slots, size)
        self.ep[K.E_IDENT] = 1
        self.ep[K.E_CMASK] = size - 1
        self.ep[K.E_NID] = rows

    def _identity_of(self, wl: Workload, at: int) -> None:
        # the window's rows [at, at + len(wl)): their class prefixes' identity
        if self.ep[K.E_IDENT] == 0 or not len(wl):
            return
        rows = identity_rows(
            wl, prefix_tokens=self.prefix_tokens, block_tokens=self.replica.block_tokens
        )
        sl = slice(at, at + len(wl))
        if rows is None:
            self.ido[sl], self.idb[sl], self.idn[sl] = _NO_IDENTITY
        else:
            _, self.ido[sl], self.idb[sl], self.idn[sl] = rows

    def _feed(self, t: float) -> None:
        stream = self._stream
        if stream is None or stream.read_s >= min(t, stream.duration_s):
            return
        self._relayout(retire=True)
        wl = stream.until(max(t, stream.read_s + self._window_s))
        n0, m = int(self.ep[K.E_NOPEN]), len(wl)
        need = n0 + m + 8 * len(self.ut) + 1
        if need > self.rf.shape[0]:
            self._resize(need + need // 2)
        sl = slice(n0, n0 + m)
        self.rf[sl, K.ARR] = wl.arrival_s
        self.ri[sl, K.PROMPT] = wl.input_tokens
        self.ri[sl, K.OUT] = wl.output_tokens
        self.ri[sl, K.PFT] = wl.input_tokens
        self.ri[sl, K.CLS] = wl.class_id
        if wl.has_prefix is not None:
            self.ri[sl, K.HASPFX] = wl.has_prefix
        self._identity_of(wl, n0)
        self.ep[K.E_NOPEN] = n0 + m
        self.g[K.G_NREQ] = n0 + m

    def _relayout(self, *, retire: bool) -> None:
        # rows: [arrived, kept, in order][open-loop not yet arrived]; finished rows are
        # handed to the retire callback first; request indices held elsewhere renumbered
        n, n_open, nxt = int(self.g[K.G_NREQ]), int(self.ep[K.E_NOPEN]), int(self.g[K.G_NEXT_OPEN])
        ri, rf = self.ri, self.rf
        idx = np.arange(n)
        arrived = (idx < nxt) | (idx >= n_open)
        done = np.zeros(n, dtype=bool)
        if retire:
            st = ri[:n, K.STATUS]
            done = arrived & ((st == K.ST_COMPLETED) | (st == K.ST_REJECTED) | (st == K.ST_API))
            if done.any():
                self._retire(rf[:n][done], ri[:n][done], self._watermark(arrived & ~done))
        kept = np.flatnonzero(arrived & ~done)
        order = np.concatenate([kept, np.arange(nxt, n_open)])
        k = order.size
        new = np.full(n + 1, -1, dtype=np.int64)  # new[-1] = -1 maps "no request" to itself
        new[order] = np.arange(k)
        rf[:k] = rf[order]
        ri[:k] = ri[order]
        if self._identity_streamed():
            for a in (self.ido, self.idb, self.idn):
                a[:k] = a[order]
        self._blank(k, n)
        ri[:k, K.NEXT] = new[ri[:k, K.NEXT]]
        self.run[:] = new[self.run]
        for col in (K.QHEAD, K.QTAIL):
            self.pi[:, col] = new[self.pi[:, col]]
        for col in (K.G_CQHEAD, K.G_CQTAIL):
            self.g[col] = new[self.g[col]]
        self.g[K.G_NEXT_OPEN] = kept.size
        self.ep[K.E_NOPEN] = k
        self.g[K.G_NREQ] = k
        # router random numbers and closed-loop draws already used
        self.rnd = self.rnd[self.g[K.G_RND] :].copy()
        self.g[K.G_RND] = 0
        for src in self._sources:
            c, used = src.class_id, int(self.pool_ptr[src.class_id])
            if used:
                self.pool[c, :-used] = self.pool[c, used:]
                self._draw_pool(src, self.pool.shape[1] - used)
                self.pool_ptr[c] = 0

    def _watermark(self, held: np.ndarray) -> float:
        # every request the engine holds (rows `held`, arrivals not yet reached, closed-loop
        # sends to come, windows not yet read) arrives at or after this time
        stream = self._stream
        t = stream.read_s if stream is not None else math.inf
        if held.any():
            t = min(t, float(self.rf[: held.size][held, K.ARR].min()))
        nxt, n_open = int(self.g[K.G_NEXT_OPEN]), int(self.ep[K.E_NOPEN])
        if nxt < n_open:
            t = min(t, float(self.rf[nxt, K.ARR]))
        if len(self.ut):
            t = min(t, float(self.gf[K.GF_NOW]), float(self.gf[K.GF_UMIN]))
        return t

    def _resize(self, rows: int) -> None:
        n = min(self.rf.shape[0], rows)
        rf = np.empty((rows, K.N_RF))
        rf[:n] = self.rf[:n]
        ri = np.empty((rows, K.N_RI), dtype=K.RI_DTYPE)
        ri[:n] = self.ri[:n]
        self.rf, self.ri = rf, ri
        if self._identity_streamed():
            # identity rows follow the request rows
            grown = [np.empty(rows, dtype=np.int64) for _ in range(3)]
            for a, b in zip((self.ido, self.idb, self.idn), grown, strict=True):
                b[:n] = a[:n]
            self.ido, self.idb, self.idn = grown
            self.ep[K.E_NID] = rows
        self._blank(n, rows)

    def _blank(self, lo: int, hi: int) -> None:
        # rows [lo, hi) hold no request (and, streamed, no prompt identity)
        self.rf[lo:hi] = np.nan
        self.ri[lo:hi] = 0
        self.ri[lo:hi, K.REP] = -1
        self.ri[lo:hi, K.NEXT] = -1
        self.ri[lo:hi, K.USER] = -1
        if self._identity_streamed():
            self.ido[lo:hi], self.idb[lo:hi], self.idn[lo:hi] = _NO_IDENTITY

    def _identity_streamed(self) -> bool:
        # every row has its identity columns (a streamed run with class prefixes)
        return self._stream is not None and bool(self.ep[K.E_IDENT] == 1)

    def retire_all(self) -> None:
        """Hand every row left (finished or not) to the retire callback, in row order."""
        n = int(self.g[K.G_NREQ])
        if self._stream is not None and n:
            self._retire(self.rf[:n].copy(), self.ri[:n].copy(), math.inf)
            self.g[K.G_NREQ] = self.g[K.G_NEXT_OPEN] = self.ep[K.E_NOPEN] = 0

    def advance_to(self, t: float) -> None:
        """Run the engine until every busy replica is at or past ``t``."""
        self._feed(t)
        while True:
            code = dispatch.run_until(t, self.kernel())
            if code == K.OK:
                return
            self.grow(code)

    def grow(self, code: int) -> None:
        """Grow the buffer a kernel call asked for with ``code`` (``K.NEED_*``)."""
        if code == K.NEED_REQUESTS:
            self._grow_requests()
        elif code == K.NEED_POOL:
            self._grow_pool(self.pool.shape[1])
        else:
            self.rnd = np.concatenate([self.rnd, self.router_rng.random(len(self.rnd))])

    def set_replica_state(self, slot: int, new: int, now: float) -> None:
        """Replica ``slot`` moves to lifecycle state ``new`` (``K.RS_*``) at ``now``."""
        dispatch.set_state(slot, new, now, self.kernel())

    def interrupt(self, slot: int, t: float) -> int:
        """Replica ``slot`` disappears at ``t``; its work goes back to the shared queue."""
        return int(dispatch.interrupt(slot, t, self.kernel()))

    @property
    def n_requests(self) -> int:
        """Requests materialised so far (open-loop plus closed-loop)."""
        if self.rf.shape[0] == 0 and self.g[K.G_NREQ] > 0:
            raise RuntimeError("the per-request rows were released after their records were read")
        return int(self.g[K.G_NREQ])

    def release_rows(self) -> None:
        """Free the per-request rows (the run is over and its records were read)."""
        self.rf = np.empty((0, K.N_RF))
        self.ri = np.empty((0, K.N_RI), dtype=K.RI_DTYPE)

    def all_done(self) -> bool:
        """No arrival left and no replica holding work."""
        no_open = self.g[K.G_NEXT_OPEN] >= self.ep[K.E_NOPEN]
        no_users = not np.isfinite(self.gf[K.GF_UMIN]) if len(self.ut) else True
        idle = (self.pi[:, K.NRUN].sum() + self.pi[:, K.QLEN].sum() + self.g[K.G_CQLEN]) == 0
        return bool(no_open and no_users and idle)

    def counters(self, t: float) -> dict[str, np.ndarray]:
        """Per-replica cumulative counters at time ``t`` (copies), for window differences.

        The engine stops at the first iteration boundary at or after ``t``; the busy time of
        an iteration that straddles ``t`` is cut at ``t`` exactly (the other integrals keep
        that one iteration whole).
        """
        overshoot = np.maximum(self.pf[:, K.CLOCK] - t, 0.0)
        return {
            "busy_s": self.pf[:, K.BUSY] - overshoot,
            "batch_integral": self.pf[:, K.BATCH_INT].copy(),
            "kv_integral": self.pf[:, K.KV_INT].copy(),
            "compute_s": self.pf[:, K.COMPUTE_INT].copy(),
            "memory_s": self.pf[:, K.MEMORY_INT].copy(),
            "steps": self.pi[:, K.STEPS].copy(),
            "preemptions": self.pi[:, K.NPREEMPT].copy(),
            "prefix_asked": self.pi[:, K.PFX_ASKED].copy(),
            "prefix_hit": self.pi[:, K.PFX_HIT].copy(),
        }
