"""Fleet dynamics as simpy processes: autoscaling with cold starts, spot interruptions with
notice, replica failures and restarts, and the ledger of paid replica lifetimes.

Each process wakes at its own coarse events, first brings the compiled engine up to
``env.now`` (:meth:`FleetState.advance_to`), then changes replica states. Replicas live in
slots; a slot's lifecycle is ``off → starting → ready → draining → off`` (an interruption or
a failure sends a ready or draining replica to ``off`` or back to ``starting`` at once).
"""

from __future__ import annotations

import math
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from sim.engine import kernel as K
from sim.engine.spec import AutoscalerSpec, FleetSpec
from sim.engine.state import FleetState

GB = 1e9


class Ledger:
    """Paid lifetimes of replicas: one ``[start, end]`` row per lifetime (a slot may have
    several). A lifetime starts when the replica is requested and ends when it is released."""

    def __init__(self) -> None:
        self.rows: list[list[float]] = []
        self.row_slots: list[int] = []
        self._open: dict[int, int] = {}

    def open(self, slot: int, t: float) -> None:
        """Start paying for ``slot`` at ``t``."""
        self._open[slot] = len(self.rows)
        self.rows.append([t, math.nan])
        self.row_slots.append(slot)

    def close(self, slot: int, t: float) -> None:
        """Stop paying for ``slot`` at ``t``."""
        i = self._open.pop(slot)
        self.rows[i][1] = max(t, self.rows[i][0])

    def is_open(self, slot: int) -> bool:
        """Whether ``slot`` is being paid for."""
        return slot in self._open

    def lifetimes(self, end_s: float) -> np.ndarray:
        """All lifetimes, the still-open ones closed at ``end_s``."""
        out = np.array(self.rows, dtype=float).reshape(-1, 2)
        out[np.isnan(out[:, 1]), 1] = end_s
        return out

    def slots(self) -> np.ndarray:
        """The slot of each row of :meth:`lifetimes`."""
        return np.asarray(self.row_slots, dtype=np.int64)


def cold_start_s(spec: AutoscalerSpec | None, weight_gib_per_gpu: float) -> float:
    """Provisioning plus loading the weights (each GPU loads its shard in parallel)."""
    if spec is None:
        return 90.0 + weight_gib_per_gpu * 2**30 / (2.0 * GB)
    if spec.cold_start_s is not None:
        return spec.cold_start_s
    return spec.provisioning_s + weight_gib_per_gpu * 2**30 / (spec.weight_load_gb_per_s * GB)


class Dynamics:
    """The coarse processes that start, drain, interrupt and restart replicas."""

    def __init__(
        self,
        env: simpy.Environment,
        state: FleetState,
        fleet: FleetSpec,
        *,
        rng: np.random.Generator,
        duration_s: float,
        end_s: float,
    ) -> None:
        self.env = env
        self.state = state
        self.fleet = fleet
        self.rng = rng
        self.duration_s = duration_s  # faults happen while requests arrive
        self.end_s = end_s
        self.ledger = Ledger()
        self.generation = np.zeros(fleet.max_slots, dtype=np.int64)
        self.cold_s = cold_start_s(fleet.autoscaler, state.replica.weight_gib_per_gpu)
        self.events: dict[str, int] = {"scale_ups": 0, "scale_downs": 0, "interruptions": 0}
        self.events["failures"] = 0
        self._last_scale = 0.0  # the fleet just started: the cooldown applies from t=0
        for slot in range(fleet.replicas):
            self.ledger.open(slot, 0.0)
            self._arm_faults(slot)
        if fleet.autoscaler is not None:
            env.process(self._autoscaler(fleet.autoscaler))
        if fleet.spot is not None and fleet.spot.interruption_times_s:
            env.process(self._spot_trace(fleet.spot.interruption_times_s))

    # --- replica state changes -------------------------------------------------------
    def _set_state(self, slot: int, new: int) -> None:
        self.state.set_replica_state(slot, new, self.env.now)

    def _free_slot(self) -> int:
        states = self.state.pi[:, K.STATE]
        for slot in range(len(states)):
            if states[slot] == K.RS_OFF and not self.ledger.is_open(slot):
                return slot
        return -1

    def start_replica(self) -> bool:
        """Request a new replica: paid from now, ready after the cold start."""
        slot = self._free_slot()
        if slot < 0:
            return False
        self.ledger.open(slot, self.env.now)
        self._set_state(slot, K.RS_STARTING)
        self.generation[slot] += 1
        self.env.process(self._become_ready(slot, int(self.generation[slot]), self.cold_s))
        return True

    def _become_ready(self, slot: int, gen: int, delay: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(delay)
        if self.generation[slot] != gen or self.state.pi[slot, K.STATE] != K.RS_STARTING:
            return
        self.state.advance_to(self.env.now)
        self._set_state(slot, K.RS_READY)
        self._arm_faults(slot)

    def drain(self, slot: int) -> None:
        """No new work for ``slot``; it is released once it holds nothing."""
        self.state.pf[slot, K.IDLE_AT] = math.nan
        self._set_state(slot, K.RS_DRAINING)
        if self.state.pi[slot, K.NRUN] == 0 and self.state.pi[slot, K.QLEN] == 0:
            self.state.pf[slot, K.IDLE_AT] = self.env.now
        self.release_idle()

    def release_idle(self) -> None:
        """Release draining replicas that have run out of work, at the moment they did."""
        pi, pf = self.state.pi, self.state.pf
        done = (pi[:, K.STATE] == K.RS_DRAINING) & (pi[:, K.NRUN] == 0) & (pi[:, K.QLEN] == 0)
        for slot in np.flatnonzero(done & ~np.isnan(pf[:, K.IDLE_AT])):
            idle_at = float(pf[slot, K.IDLE_AT])
            self.state.set_replica_state(int(slot), K.RS_OFF, idle_at)
            self.generation[slot] += 1
            if self.ledger.is_open(int(slot)):
                self.ledger.close(int(slot), idle_at)

    def _interrupt(self, slot: int, *, restart_s: float | None) -> None:
        # The iteration in progress when the replica goes away completes (the engine only
        # stops at iteration boundaries); what the replica holds is re-queued at that
        # boundary, its KV cache lost.
        st = self.state
        st.advance_to(self.env.now)
        t = max(self.env.now, float(st.pf[slot, K.CLOCK]))
        st.interrupt(slot, t)  # idle ready replicas may pick its work up from t
        self.generation[slot] += 1
        if restart_s is None:
            if self.ledger.is_open(slot):
                self.ledger.close(slot, self.env.now)
            return
        self._set_state(slot, K.RS_STARTING)  # still paid while it restarts
        gen = int(self.generation[slot])
        self.env.process(self._become_ready(slot, gen, restart_s))

    # --- faults -------------------------------------------------------------------------
    def _arm_faults(self, slot: int) -> None:
        if self.env.now >= self.duration_s:
            return
        gen = int(self.generation[slot])
        spot, failures = self.fleet.spot, self.fleet.failures
        if spot is not None and spot.interruptions_per_hour > 0:
            wait = self.rng.exponential(3600.0 / spot.interruptions_per_hour)
            self.env.process(self._spot_timer(slot, gen, wait))
        if failures is not None:
            wait = self.rng.exponential(failures.mtbf_hours * 3600.0)
            self.env.process(self._failure_timer(slot, gen, wait))

    def _alive(self, slot: int, gen: int) -> bool:
        state = self.state.pi[slot, K.STATE]
        return self.generation[slot] == gen and state in (K.RS_READY, K.RS_DRAINING)

    def _spot_timer(self, slot: int, gen: int, wait: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(wait)
        if self._alive(slot, gen) and self.env.now < self.duration_s:
            yield from self._reclaim(slot)

    def _spot_trace(self, times: tuple[float, ...]) -> Generator[Any, Any, None]:
        for t in sorted(times):
            if t > self.env.now:
                yield self.env.timeout(t - self.env.now)
            states = self.state.pi[:, K.STATE]
            ready = np.flatnonzero(states == K.RS_READY)
            if len(ready):
                self.env.process(self._reclaim(int(ready[0])))

    def _reclaim(self, slot: int) -> Generator[Any, Any, None]:
        # warning: stop taking work and ask for a replacement; then the reclaim
        spot = self.fleet.spot
        assert spot is not None
        self.state.advance_to(self.env.now)
        self.events["interruptions"] += 1
        self.drain(slot)
        gen = int(self.generation[slot])
        if spot.replace and self.env.now < self.duration_s:
            self.start_replica()
        yield self.env.timeout(spot.notice_s)
        self.state.advance_to(self.env.now)
        self.release_idle()
        if self.generation[slot] == gen and self.state.pi[slot, K.STATE] == K.RS_DRAINING:
            self._interrupt(slot, restart_s=None)

    def _failure_timer(self, slot: int, gen: int, wait: float) -> Generator[Any, Any, None]:
        yield self.env.timeout(wait)
        failures = self.fleet.failures
        assert failures is not None
        if self._alive(slot, gen) and self.env.now < self.duration_s:
            self.events["failures"] += 1
            self._interrupt(slot, restart_s=failures.restart_s)

    # --- autoscaling --------------------------------------------------------------------
    def _metric(self, spec: AutoscalerSpec, ready: np.ndarray) -> float:
        st = self.state
        n = max(len(ready), 1)
        if spec.metric == "concurrency_per_replica":
            held = st.pi[ready, K.NRUN].sum() + st.pi[ready, K.QLEN].sum() + st.g[K.G_CQLEN]
            return float(held) / n
        if spec.metric == "queue_per_replica":
            return float(st.pi[ready, K.QLEN].sum() + st.g[K.G_CQLEN]) / n
        if spec.metric == "kv_occupancy":
            total = st.replica.kv_blocks
            used = total - st.pi[ready, K.FREE] + st.pi[ready, K.EVICT]
            return float(used.mean() / total) if len(ready) else 0.0
        queued = float(st.pi[ready, K.QTOK].sum() + st.g[K.G_CQTOK])
        return queued / n * float(st.epf[K.EF_PREFILL_S_PER_TOKEN])

    def _floor(self, spec: AutoscalerSpec) -> int:
        if not spec.schedule:
            return spec.min_replicas
        hour = (self.env.now % 86400.0) / 3600.0
        entries = sorted(spec.schedule, key=lambda e: e.hour)
        current = entries[-1].replicas  # wraps around midnight
        for e in entries:
            if e.hour <= hour:
                current = e.replicas
        return max(spec.min_replicas, current)

    def _autoscaler(self, spec: AutoscalerSpec) -> Generator[Any, Any, None]:
        while self.env.now < self.end_s:
            self.state.advance_to(self.env.now)
            self.release_idle()
            if self.env.now >= self.duration_s and self.state.all_done():
                return  # traffic over and served: the fleet stays as it is until the end
            states = self.state.pi[:, K.STATE]
            ready = np.flatnonzero(states == K.RS_READY)
            starting = int((states == K.RS_STARTING).sum())
            value = self._metric(spec, ready)
            waiting = self.state.g[K.G_CQLEN] > 0
            if len(ready):
                desired = math.ceil(len(ready) * value / spec.target - 1e-9)
            else:
                desired = 1 if waiting else 0
            desired = min(max(desired, self._floor(spec)), spec.max_replicas)
            have = len(ready) + starting
            if desired > have:
                for _ in range(desired - have):
                    if self.start_replica():
                        self.events["scale_ups"] += 1
                self._last_scale = self.env.now
            elif desired < len(ready) and self.env.now - self._last_scale >= (
                spec.scale_down_cooldown_s
            ):
                # drain the least-loaded ready replica: one per cooldown, so that a lull does
                # not take away capacity the next burst needs (scale-down stabilisation)
                order = ready[np.argsort(self.state.pi[ready, K.OUTST], kind="stable")]
                self.drain(int(order[0]))
                self.events["scale_downs"] += 1
                self._last_scale = self.env.now
            yield self.env.timeout(spec.interval_s)
