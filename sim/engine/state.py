"""The engine's state for one replication: the kernel's arrays and the buffers it may ask
to grow, with the operations the fleet driver and the fleet dynamics need.

Only :mod:`sim.engine` reads these arrays; everything else gets tidy results from
:func:`sim.engine.serve.serve`.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field

import numpy as np

from sim.engine import dispatch
from sim.engine import kernel as K
from sim.engine.prefix_cache import build_prefix_cache
from sim.engine.replica import ReplicaConfig
from sim.engine.routing import RoutingSpec
from sim.engine.spec import FleetSpec
from sim.workload import Workload

__all__ = ["REPLICA_STATES", "SAMPLE_COLUMNS", "FleetState"]

SAMPLE_COLUMNS = ("t_s", "replica", "state", "queued", "running", "kv_used_blocks")
REPLICA_STATES = ("off", "starting", "ready", "draining")
# routers that read one or two replicas per arrival, or what changes only when a request
# arrives or leaves (least_requests): decode runs are planned to their end and applied early
# only for the replica an arrival is routed to (sim.engine.dispatch).
# least_loaded compares every replica's load at the arrival and the central queue lets the
# first replica at an iteration boundary take it: there every arrival bounds every run.
LAZY_ROUTERS = ("round_robin", "random", "power_of_two", "least_requests")


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
        routing = self.routing
        ep[K.E_POLICY] = K.POLICIES.index(routing.policy)
        spill = routing.spillover
        ep[K.E_SPILL_Q] = -1 if spill is None or spill.max_queue is None else spill.max_queue
        ep[K.E_SPILL_TOK] = (
            -1
            if spill is None or spill.max_outstanding_tokens is None
            else spill.max_outstanding_tokens
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
        for src in self._sources:
            inp, out, think = src.draw(extra)
            pool[src.class_id, old:, 0] = inp
            pool[src.class_id, old:, 1] = out
            pool[src.class_id, old:, 2] = think
        self.pool = pool

    def _grow_requests(self) -> None:
        n = self.rf.shape[0]
        rf = np.full((2 * n, K.N_RF), np.nan)
        rf[:n] = self.rf
        ri = np.zeros((2 * n, K.N_RI), dtype=K.RI_DTYPE)
        ri[:n] = self.ri
        ri[n:, K.REP] = -1
        ri[n:, K.NEXT] = -1
        ri[n:, K.USER] = -1
        self.rf, self.ri = rf, ri

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

    def advance_to(self, t: float) -> None:
        """Run the engine until every busy replica is at or past ``t``."""
        while True:
            code = dispatch.run_until(t, self.kernel())
            if code == K.OK:
                return
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
        return int(self.g[K.G_NREQ])

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
