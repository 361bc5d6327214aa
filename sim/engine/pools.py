"""A fleet of several pools: each pool its own engine, advanced in step, and a dispatcher
that sends each request to a pool at its arrival.

Every pool is a fleet of one kind of replica (model, GPU, engine settings, router,
autoscaler, spot and failures) run by its own :class:`~sim.engine.fleet.FleetDriver`. A
pool's engine holds every open-loop request that may go to it, in arrival order:

* a request of a class with one pool is that pool's alone and never needs the dispatcher;
* a request of a class with several pools is decided at its arrival ``t``: each of the
  class's pools is run up to ``t`` (every event before ``t``, and the arrivals at ``t``
  ahead of it), the dispatcher reads their loads (:func:`sim.engine.dispatch.load_at`),
  the chosen pool routes the request at once, and the others mark their row taken
  elsewhere (``ST_ELSEWHERE``), skipped at its arrival.

The coarse events of every pool (samples, the metric window, autoscalers, spot and
failures: simpy) run in Python; between two of them, every request is dispatched in one
compiled call (:func:`_dispatch`) over the pools' states. A coarse event at a request's
arrival time runs after it.

So a request sees exactly the state a single engine would show it at its arrival, and a
pool whose classes are its own runs exactly as a fleet of one pool would. A closed loop of
users belongs to one pool (its requests are made inside that pool's engine).

What happens inside a pool — the pool's router, the scenario's API routing (spillover,
private classes), the KV cache, the autoscaler — is the single-pool engine unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numba
import numpy as np
import pandas as pd

from sim.engine import dispatch
from sim.engine import kernel as K
from sim.engine.fleet import FleetDriver
from sim.engine.kernel import KernelState
from sim.engine.replica import ReplicaConfig
from sim.engine.routing import RoutingSpec
from sim.engine.serve import ApiOutcome, Retired, Served, ToApi
from sim.engine.spec import FleetSpec, Horizon
from sim.workload import Workload
from sim.workload.identity import PromptBlocks

__all__ = ["PoolLayout", "PooledServed", "serve_pools"]

PoolChoice = Literal["ordered", "least_loaded"]


@dataclass(frozen=True)
class PoolLayout:
    """The pools of a fleet and how a request picks one.

    Attributes
    ----------
    names, fleets, replicas
        Per pool: its name, its fleet section and the replica it resolves to.
    candidates
        Per class: the pools that may serve it (indices), in the order they are tried.
    choice
        ``ordered``: the first candidate with room, else the least loaded;
        ``least_loaded``: the candidate whose ready replicas hold the fewest outstanding
        tokens for their KV cache.
    max_queue_per_replica, max_outstanding_tokens_per_replica
        Room thresholds (mean over a pool's ready replicas); with neither, a pool has room
        when a ready replica has a sequence slot free of running and waiting requests. An
        autoscaled pool that may still start replicas always has room.
    """

    names: tuple[str, ...]
    fleets: tuple[FleetSpec, ...]
    replicas: tuple[ReplicaConfig, ...]
    candidates: tuple[tuple[int, ...], ...]
    choice: PoolChoice = "ordered"
    max_queue_per_replica: float | None = None
    max_outstanding_tokens_per_replica: float | None = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The layout as :func:`_dispatch` takes it: per class its candidates (padded with
        -1) and their count; per pool its KV cache in tokens; the parameters
        ``[choice (0 ordered, 1 least_loaded), max queue, max tokens]`` (-1: unset); per
        pool the replicas its autoscaler may run (0 without one)."""
        width = max(len(c) for c in self.candidates)
        cands = np.full((len(self.candidates), width), -1, dtype=np.int64)
        for c, pools in enumerate(self.candidates):
            cands[c, : len(pools)] = pools
        ncand = np.array([len(c) for c in self.candidates], dtype=np.int64)
        kv = np.array([r.kv_blocks * r.block_tokens for r in self.replicas], dtype=np.float64)
        qmax, tmax = self.max_queue_per_replica, self.max_outstanding_tokens_per_replica
        params = np.array(
            [
                0.0 if self.choice == "ordered" else 1.0,
                -1.0 if qmax is None else qmax,
                -1.0 if tmax is None else tmax,
            ]
        )
        grow = np.array(
            [0.0 if f.autoscaler is None else f.autoscaler.max_replicas for f in self.fleets]
        )
        return cands, ncand, kv, params, grow


@numba.njit(cache=True)
def _has_room(load: np.ndarray, params: np.ndarray, grow_to: float) -> bool:
    # a pool has room: an autoscaled pool that may still start replicas (its autoscaler
    # sizes it to what it is sent); else a ready replica, and either a sequence slot free
    # of running and waiting requests (no thresholds) or mean waiting requests and
    # outstanding tokens per ready replica below the thresholds set
    if load[4] < grow_to:
        return True
    ready = load[0]
    if ready == 0:
        return False
    qmax, tmax = params[1], params[2]
    if qmax < 0 and tmax < 0:
        return load[3] > 0
    if qmax >= 0 and load[1] / ready >= qmax:
        return False
    return not (tmax >= 0 and load[2] / ready >= tmax)


@numba.njit(cache=True)
def _choose(
    loads: np.ndarray, pools: np.ndarray, kv: np.ndarray, params: np.ndarray, grow: np.ndarray
) -> int:
    # the position among ``pools`` of the pool a request goes to: the first with room
    # (ordered), else (or under least_loaded) the one with the fewest outstanding tokens
    # per token of its ready replicas' KV cache; ties and none ready: the first
    k = pools.size
    if params[0] == 0.0:
        for j in range(k):
            if _has_room(loads[j], params, grow[pools[j]]):
                return j
    best, share = 0, np.inf
    for j in range(k):
        if loads[j, 0] > 0:
            s = loads[j, 2] / (loads[j, 0] * kv[pools[j]])
            if s < share:
                best, share = j, s
    return best


@numba.njit(cache=True)
def _dispatch(
    i: int,
    t_stop: float,
    rows: np.ndarray,
    arrival: np.ndarray,
    cls_id: np.ndarray,
    where: np.ndarray,
    cands: np.ndarray,
    ncand: np.ndarray,
    kv: np.ndarray,
    params: np.ndarray,
    grow: np.ndarray,
    states: tuple[KernelState, ...],
) -> tuple[int, int, int]:
    # the requests rows[i:] arriving at or before t_stop, each to its pool; returns (the
    # next to do, the pool whose buffer must grow, its code), or (len(rows), -1, OK)
    loads = np.empty((cands.shape[1], 5))
    while i < rows.size:
        d = rows[i]
        t = arrival[d]
        if t > t_stop:
            return i, -1, K.OK
        c = cls_id[d]
        pools = cands[c, : ncand[c]]
        for j in range(pools.size):
            p = pools[j]
            code, load = dispatch.load_at(t, where[p, d] - 1, grow[p] > 0, states[p])
            if code != K.OK:
                return i, p, code
            loads[j] = load
        pick = pools[_choose(loads, pools, kv, params, grow)]
        code = dispatch.arrive_through(where[pick, d], states[pick])
        if code != K.OK:
            return i, pick, code
        for j in range(pools.size):
            if pools[j] != pick:
                states[pools[j]].ri[where[pools[j], d], K.STATUS] = K.ST_ELSEWHERE
        i += 1
    return i, -1, K.OK


def _take_blocks(blocks: PromptBlocks | None, rows: np.ndarray) -> PromptBlocks | None:
    if blocks is None:
        return None
    lo, hi = blocks.offsets[rows], blocks.offsets[rows + 1]
    counts = hi - lo
    offsets = np.zeros(rows.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    # the hashes of each row, one after the other
    idx = np.repeat(lo - offsets[:-1], counts) + np.arange(offsets[-1])
    return PromptBlocks(blocks.block_tokens, offsets, blocks.hashes[idx])


def _take(wl: Workload, rows: np.ndarray, closed: Sequence[int]) -> Workload:
    # the workload's open-loop requests at ``rows`` and its closed loops of classes ``closed``
    return Workload(
        arrival_s=wl.arrival_s[rows],
        input_tokens=wl.input_tokens[rows],
        output_tokens=wl.output_tokens[rows],
        class_id=wl.class_id[rows],
        class_names=wl.class_names,
        closed_loop=tuple(src for src in wl.closed_loop if src.class_id in closed),
        has_prefix=None if wl.has_prefix is None else wl.has_prefix[rows],
        prompt_blocks=_take_blocks(wl.prompt_blocks, rows),
    )


def serve_pools(
    layout: PoolLayout,
    workload: Workload,
    horizon: Horizon,
    *,
    router_rngs: Sequence[np.random.Generator],
    fault_rngs: Sequence[np.random.Generator],
    routing: RoutingSpec | None = None,
    class_route: np.ndarray | None = None,
    prefix_tokens: np.ndarray | None = None,
) -> PooledServed:
    """Simulate ``workload`` on the pools of ``layout`` over ``horizon`` (each pool with its
    own router and fault streams), each request in the pool chosen at its arrival.

    Raises
    ------
    ValueError
        If a closed loop of users may go to several pools.
    """
    n_pools = len(layout.names)
    n = len(workload)
    cls_id = workload.class_id.astype(np.int64)
    cands = layout.candidates
    many = np.array([len(c) > 1 for c in cands], dtype=bool)
    for src in workload.closed_loop:
        if many[src.class_id]:
            name = workload.class_names[src.class_id]
            raise ValueError(f"class {name!r} is a closed loop of users: it needs one pool")
    member = np.zeros((len(cands), n_pools), dtype=bool)
    for c, pools in enumerate(cands):
        member[c, list(pools)] = True
    rows: list[np.ndarray] = []
    where = np.full((n_pools, n), -1, dtype=np.int64)  # a request's row in each pool
    drivers: list[FleetDriver] = []
    for p in range(n_pools):
        mine = np.flatnonzero(member[cls_id, p]) if n else np.zeros(0, dtype=np.int64)
        rows.append(mine)
        where[p, mine] = np.arange(mine.size)
        closed = [src.class_id for src in workload.closed_loop if cands[src.class_id] == (p,)]
        drivers.append(
            FleetDriver(
                layout.fleets[p],
                layout.replicas[p],
                _take(workload, mine, closed),
                horizon,
                router_rng=router_rngs[p],
                routing=routing,
                class_route=class_route,
                prefix_tokens=prefix_tokens,
                fault_rng=fault_rngs[p],
            )
        )
    dyn = np.flatnonzero(many[cls_id]) if n else np.zeros(0, dtype=np.int64)
    arrival = np.ascontiguousarray(workload.arrival_s, dtype=np.float64)
    cand_arr, ncand, kv, params, grow = layout.arrays()
    i = 0
    while i < dyn.size:
        # every pool's coarse events (samples, metric window, autoscaler, faults) before
        # the next request; the requests up to the next such event are then dispatched in
        # one compiled call (an event at a request's arrival runs after it)
        t = float(arrival[dyn[i]])
        for drv in drivers:
            env = drv.env
            while env.peek() < t:  # (stepped, not run(until=t): no stop event left behind)
                env.step()
        t_stop = min(drv.env.peek() for drv in drivers)
        states = tuple(drv.state.kernel() for drv in drivers)
        i, p, code = _dispatch(
            i, t_stop, dyn, arrival, cls_id, where, cand_arr, ncand, kv, params, grow, states
        )
        if code != K.OK:
            drivers[p].state.grow(code)
    runs = [drv.finish() for drv in drivers]
    names = tuple(workload.class_names)
    served = tuple(Served(run, names, horizon) for run in runs)
    return PooledServed(layout.names, served, tuple(rows), n, horizon)


@dataclass(frozen=True)
class PooledServed:
    """A finished replication of a fleet of pools: each pool's :class:`Served` and the
    fleet's tidy results, replica slots numbered across pools (pool by pool, in order).

    Attributes
    ----------
    names
        Pool names.
    pools
        Per pool, its run (its requests are those it served or sent to the API).
    open_rows
        Per pool, the workload's open-loop requests its engine held (taken there or not).
    n_open
        The workload's open-loop requests.
    horizon
        The horizon it ran over.
    """

    names: tuple[str, ...]
    pools: tuple[Served, ...]
    open_rows: tuple[np.ndarray, ...] = field(repr=False)
    n_open: int
    horizon: Horizon

    @property
    def slot_offsets(self) -> np.ndarray:
        """The first fleet-wide replica slot of each pool."""
        sizes = [s.state.pf.shape[0] for s in self.pools]
        return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    def _taken(self, p: int) -> tuple[Retired, np.ndarray]:
        # pool p's requests (rows taken elsewhere dropped) and their order keys: the open
        # ones by workload position, closed-loop ones after every open one at a tie
        served = self.pools[p]
        rows, kept = served.taken_rows()
        n = served.state.n_requests  # every row, taken or not
        opened = self.open_rows[p]
        key = np.concatenate([opened, self.n_open + np.arange(n - opened.size, dtype=np.int64)])
        return rows, key if kept is None else key[kept]

    @staticmethod
    def _sent(taken: list[tuple[Retired, np.ndarray]]) -> tuple[list[int], np.ndarray]:
        # per pool, how many of its requests went to the API; the order that puts them,
        # pool after pool, in workload order (the one the API is simulated in)
        keys = [key[rows.ri[:, K.STATUS] == K.ST_API] for rows, key in taken]
        return [k.size for k in keys], np.argsort(np.concatenate(keys), kind="stable")

    def to_api(self) -> ToApi:
        """The requests the pools routed to the hosted API, in workload order."""
        taken = [self._taken(p) for p in range(len(self.pools))]
        _, order = self._sent(taken)
        parts = [rows.to_api() for rows, _ in taken]
        return ToApi(
            *(np.concatenate([getattr(a, f) for a in parts])[order] for f in _TO_API_FIELDS)
        )

    def requests(self, api: ApiOutcome | None = None) -> pd.DataFrame:
        """Per-request records of every pool, sorted by arrival (stably, in workload order),
        with the ``pool`` that took each request and fleet-wide replica slots; ``api`` as
        :meth:`Served.requests` takes it, for the requests of :meth:`to_api`."""
        taken = [self._taken(p) for p in range(len(self.pools))]
        sent, order = self._sent(taken)
        # position of each pool's API rows in the merged order
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size)
        frames, keys, start = [], [], 0
        offsets = self.slot_offsets
        for p, (rows, key) in enumerate(taken):
            m = sent[p]
            part = None if api is None or m == 0 else _take_api(api, rank[start : start + m])
            start += m
            frame = rows.frame(part)
            on_fleet = frame["replica"].to_numpy() >= 0
            frame.loc[on_fleet, "replica"] += offsets[p]
            frame["pool"] = p
            frames.append(frame)
            keys.append(key)
        out = pd.concat(frames, ignore_index=True)
        key = np.concatenate(keys)
        order = np.lexsort((key, out["arrival_s"].to_numpy()))
        out = out.iloc[order].reset_index(drop=True)
        out["pool"] = pd.Categorical.from_codes(
            out["pool"].to_numpy(), categories=pd.Index(list(self.names))
        )
        return out

    def replicas(self) -> pd.DataFrame:
        """One row per replica slot of every pool (:meth:`Served.replicas`), with its pool;
        slots numbered across pools."""
        frames = []
        for p, (served, off) in enumerate(zip(self.pools, self.slot_offsets, strict=True)):
            frame = served.replicas()
            frame["replica"] += off
            frame.insert(1, "pool", self.names[p])
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True)
        out["pool"] = pd.Categorical(out["pool"], categories=list(self.names))
        return out

    def timeseries(self) -> pd.DataFrame:
        """Every pool's state over time (:meth:`Served.timeseries`), with its pool."""
        frames = []
        for p, (served, off) in enumerate(zip(self.pools, self.slot_offsets, strict=True)):
            frame = served.timeseries()
            frame["replica"] += off
            frame["pool"] = self.names[p]
            frames.append(frame)
        out = pd.concat(frames, ignore_index=True)
        out["pool"] = pd.Categorical(out["pool"], categories=list(self.names))
        return out.sort_values(["t_s", "replica"], kind="stable").reset_index(drop=True)

    def release_rows(self) -> None:
        """Free every pool's per-request rows (see :meth:`Served.release_rows`)."""
        for served in self.pools:
            served.release_rows()

    @property
    def n_requests(self) -> int:
        """Requests simulated across the pools."""
        return sum(s.n_requests for s in self.pools)

    @property
    def dynamic(self) -> bool:
        """Some pool's replicas start and stop during the run."""
        return any(s.dynamic for s in self.pools)

    @property
    def lifetimes(self) -> np.ndarray:
        """Every pool's replica lifetimes (:attr:`Served.lifetimes`), pool by pool."""
        return np.concatenate([s.lifetimes.reshape(-1, 2) for s in self.pools])

    @property
    def lifetime_slots(self) -> np.ndarray:
        """The fleet-wide slot of each row of :attr:`lifetimes`."""
        return np.concatenate(
            [s.lifetime_slots + off for s, off in zip(self.pools, self.slot_offsets, strict=True)]
        ).astype(np.int64)

    @property
    def ready_replicas(self) -> tuple[float, float]:
        """Mean and maximum of the ready replicas of the whole fleet over the samples in
        the metric window (every pool samples at the same times; the maximum is read from
        the kept samples)."""
        means = [s.ready_replicas[0] for s in self.pools]
        if any(np.isnan(m) for m in means):
            return float("nan"), float("nan")
        ts = self.timeseries()
        hz = self.horizon
        inside = ts[(ts["t_s"] >= hz.warmup_s) & (ts["t_s"] < hz.duration_s)]
        ready = (inside["state"] == "ready").groupby(inside["t_s"]).sum()
        return float(sum(means)), float(ready.max()) if len(ready) else float("nan")

    @property
    def events(self) -> dict[str, int]:
        """Scale-ups, scale-downs, spot interruptions and failures, over every pool."""
        out: dict[str, int] = {}
        for served in self.pools:
            for key, value in served.events.items():
                out[key] = out.get(key, 0) + value
        return out


_TO_API_FIELDS = ("class_name", "arrival_s", "input_tokens", "output_tokens")


@dataclass(frozen=True)
class _ApiPart:
    status: np.ndarray
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    attempts: np.ndarray
    provisioned: np.ndarray


def _take_api(api: ApiOutcome, idx: np.ndarray) -> _ApiPart:
    return _ApiPart(
        api.status[idx], api.ttft_s[idx], api.e2e_s[idx], api.attempts[idx], api.provisioned[idx]
    )
