"""Drive a fleet of replicas through one replication.

simpy owns the clock and the coarse processes (here: sampling the fleet's state and the
metric-window boundaries); each of them first brings the compiled engine up to ``env.now``
(:meth:`FleetState.advance_to`) and then does its job. Requests never become simpy
processes or events: they are rows of preallocated arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from sim.engine import kernel as K
from sim.engine.dynamics import Dynamics
from sim.engine.replica import ReplicaConfig
from sim.engine.routing import RoutingSpec
from sim.engine.spec import FleetSpec, Horizon
from sim.engine.state import REPLICA_STATES, SAMPLE_COLUMNS, FleetState
from sim.workload import Workload
from sim.workload.sample import WorkloadStream

__all__ = [
    "MAX_SAMPLE_ROWS",
    "REPLICA_STATES",
    "SAMPLE_COLUMNS",
    "FleetDriver",
    "FleetRun",
    "FleetState",
    "run_fleet",
]

# the fleet time series keeps at most about this many rows (one per replica slot and
# sample): past it, every other sample is dropped and the spacing doubles, so its memory
# does not grow with the horizon (the ready-replica metrics see every sample)
MAX_SAMPLE_ROWS = 1_000_000


@dataclass(frozen=True)
class FleetRun:
    """Raw result of one replication of the fleet.

    ``lifetimes`` holds one ``[start, end]`` row per paid replica lifetime, or is ``None``
    for a fixed fleet (always on); ``events`` counts scale-ups, scale-downs, spot
    interruptions and failures.
    """

    state: FleetState
    window: dict[str, dict[str, np.ndarray]]
    samples: np.ndarray  # rows of SAMPLE_COLUMNS
    end_s: float
    # ready replicas over the samples in [warmup_s, duration_s): sum, samples, maximum
    ready: tuple[float, int, float] = (0.0, 0, float("nan"))
    lifetimes: np.ndarray | None = None
    lifetime_slots: np.ndarray | None = None
    events: dict[str, int] = field(default_factory=dict)


class FleetDriver:
    """One replication of a fleet, advanced by its caller: its simpy environment
    (:attr:`env`: the coarse processes) and engine state (:attr:`state`) may be stepped
    from outside, and :meth:`finish` runs the rest of the horizon.

    :func:`run_fleet` runs it in one go; a fleet of several pools (:mod:`sim.engine.pools`)
    advances one driver per pool, in step, so that a request can pick its pool on the
    pools' state at its arrival.
    """

    def __init__(
        self,
        fleet: FleetSpec,
        replica: ReplicaConfig,
        workload: Workload | WorkloadStream,
        horizon: Horizon,
        *,
        router_rng: np.random.Generator,
        routing: RoutingSpec | None = None,
        class_route: np.ndarray | None = None,
        prefix_tokens: np.ndarray | None = None,
        fault_rng: np.random.Generator | None = None,
        window_s: float | None = None,
        retire: Callable[[np.ndarray, np.ndarray, float], None] | None = None,
    ) -> None:
        stream = None
        if isinstance(workload, WorkloadStream):
            if window_s is None or retire is None:
                raise ValueError("a streamed workload needs window_s and retire")
            stream, workload = workload, workload.until(window_s)
        state = FleetState(
            fleet,
            replica,
            workload,
            horizon.duration_s,
            router_rng,
            routing=routing or RoutingSpec(),
            class_route=class_route,
            prefix_tokens=prefix_tokens,
        )
        if stream is not None:
            assert window_s is not None and retire is not None
            state.stream_from(stream, window_s=window_s, retire=retire)
        self.state = state
        self.horizon = horizon
        self.env = env = simpy.Environment()
        self.window: dict[str, dict[str, np.ndarray]] = {}
        self.samples: list[np.ndarray] = []
        self.dynamics: Dynamics | None = None
        if fleet.dynamic:
            self.dynamics = Dynamics(
                env,
                state,
                fleet,
                rng=fault_rng or np.random.default_rng(0),
                duration_s=horizon.duration_s,
                end_s=horizon.drain_limit_s,
            )
        self._nrep = fleet.max_slots
        self._kv_blocks = replica.kv_blocks
        self.ready = [0.0, 0, float("nan")]
        env.process(self._boundaries())
        env.process(self._sampler())

    def _boundaries(self) -> Any:
        # metric window: counters at warm-up end and at the horizon
        env, state, horizon = self.env, self.state, self.horizon
        yield env.timeout(horizon.warmup_s)
        state.advance_to(env.now)
        self.window["start"] = state.counters(env.now)
        yield env.timeout(horizon.duration_s - horizon.warmup_s)
        state.advance_to(env.now)
        self.window["end"] = state.counters(env.now)

    def _sampler(self) -> Any:
        env, state, horizon, dynamics = self.env, self.state, self.horizon, self.dynamics
        nrep, samples, ready = self._nrep, self.samples, self.ready
        slots = np.arange(nrep, dtype=float)
        keep = max(16, MAX_SAMPLE_ROWS // nrep)  # samples kept before thinning
        i, stride = 0, 1  # sample number; every stride-th is kept
        while env.now <= horizon.drain_limit_s:
            state.advance_to(env.now)
            if dynamics is not None:
                dynamics.release_idle()
            if horizon.warmup_s <= env.now < horizon.duration_s:
                n_ready = float(np.count_nonzero(state.pi[:, K.STATE] == K.RS_READY))
                ready[0] += n_ready
                ready[1] += 1
                if not ready[2] >= n_ready:  # (NaN before the first)
                    ready[2] = n_ready
            if i % stride == 0:
                row = np.empty((nrep, len(SAMPLE_COLUMNS)))
                row[:, 0] = env.now
                row[:, 1] = slots
                row[:, 2:5] = state.pi[:, [K.STATE, K.QLEN, K.NRUN]]
                row[:, 5] = self._kv_blocks - state.pi[:, K.FREE]
                samples.append(row)
                if len(samples) == 2 * keep + 1:
                    # kept: samples 0, stride, ..., 2·keep·stride (this one); keep every other
                    del samples[1::2]
                    stride *= 2
            if env.now >= horizon.duration_s and state.all_done():
                return
            i += 1
            yield env.timeout(horizon.sample_interval_s)

    def finish(self) -> FleetRun:
        """Run to the end of the horizon (the drain limit) and return the run."""
        horizon, state, dynamics = self.horizon, self.state, self.dynamics
        self.env.run(until=horizon.drain_limit_s + 1e-9)
        state.advance_to(horizon.drain_limit_s)
        samples = self.samples
        arr = np.concatenate(samples) if samples else np.empty((0, len(SAMPLE_COLUMNS)))
        end = float(max(np.nanmax(state.pf[:, K.CLOCK]), horizon.duration_s))
        state.retire_all()
        seen = (self.ready[0], int(self.ready[1]), self.ready[2])
        window = self.window
        if dynamics is None:
            return FleetRun(state=state, window=window, samples=arr, end_s=end, ready=seen)
        dynamics.release_idle()
        return FleetRun(
            state=state,
            window=window,
            samples=arr,
            end_s=end,
            ready=seen,
            lifetimes=dynamics.ledger.lifetimes(min(end, horizon.drain_limit_s)),
            lifetime_slots=dynamics.ledger.slots(),
            events=dict(dynamics.events),
        )


def run_fleet(
    fleet: FleetSpec,
    replica: ReplicaConfig,
    workload: Workload | WorkloadStream,
    horizon: Horizon,
    *,
    router_rng: np.random.Generator,
    routing: RoutingSpec | None = None,
    class_route: np.ndarray | None = None,
    prefix_tokens: np.ndarray | None = None,
    fault_rng: np.random.Generator | None = None,
    window_s: float | None = None,
    retire: Callable[[np.ndarray, np.ndarray, float], None] | None = None,
) -> FleetRun:
    """Simulate one replication of ``workload`` on ``fleet`` over ``horizon``.

    ``routing`` and ``class_route`` (per class, one of ``kernel.CR_FLEET_ONLY``,
    ``CR_ELIGIBLE``, ``CR_API``) decide which requests leave for the API; those end with
    engine status ``ST_API`` and are simulated by :mod:`sim.hosted_api` afterwards.

    A :class:`~sim.workload.sample.WorkloadStream` is read ``window_s`` seconds at a time as
    the clock advances, and each request's rows go to ``retire`` once it has finished (the
    rest at the end): memory follows the requests in flight, not the horizon.
    """
    return FleetDriver(
        fleet,
        replica,
        workload,
        horizon,
        router_rng=router_rng,
        routing=routing,
        class_route=class_route,
        prefix_tokens=prefix_tokens,
        fault_rng=fault_rng,
        window_s=window_s,
        retire=retire,
    ).finish()
