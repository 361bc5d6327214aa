"""The engine's front door: run a fleet on a workload's requests, get tidy results.

:func:`serve` takes the fleet, the replica it resolves to, the sampled workload (request
arrays), the per-class routing and the random streams, runs the compiled engine through the
horizon, and returns a :class:`Served`: per-request records, the per-replica table, the
fleet's state over time, the replica lifetimes of every kind of fleet, and the requests the
engine routed to the hosted API. Nothing outside :mod:`sim.engine` reads the kernel's array
layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from sim.engine import kernel as K
from sim.engine.fleet import REPLICA_STATES, SAMPLE_COLUMNS, FleetRun, run_fleet
from sim.engine.replica import ReplicaConfig
from sim.engine.routing import RoutingSpec
from sim.engine.spec import FleetSpec, Horizon
from sim.engine.state import FleetState
from sim.workload import Workload
from sim.workload.sample import WorkloadStream

__all__ = [
    "ROUTE_API",
    "ROUTE_EITHER",
    "ROUTE_FLEET_ONLY",
    "ApiOutcome",
    "Retired",
    "Served",
    "ToApi",
    "drain_after_window",
    "replica_table",
    "request_frame",
    "serve",
]

#: Per class: never leaves the fleet.
ROUTE_FLEET_ONLY = K.CR_FLEET_ONLY
#: Per class: the routing policy decides per request.
ROUTE_EITHER = K.CR_ELIGIBLE
#: Per class: always the API, unless the policy is ``self_host_only``.
ROUTE_API = K.CR_API

STATUS_NAMES = ("completed", "rejected", "failed")
# engine status code -> position in STATUS_NAMES
_STATUS_CODE = np.zeros(K.ST_FAILED + 1, dtype=np.int8)
_STATUS_CODE[K.ST_REJECTED] = 1
_STATUS_CODE[K.ST_FAILED] = 2


class ApiOutcome(Protocol):
    """What the hosted API did with the requests the engine sent it, in engine order
    (:class:`sim.hosted_api.ApiResult` is one)."""

    @property
    def status(self) -> np.ndarray: ...  # 0 completed, else failed (rate limited)
    @property
    def ttft_s(self) -> np.ndarray: ...
    @property
    def e2e_s(self) -> np.ndarray: ...
    @property
    def attempts(self) -> np.ndarray: ...
    @property
    def provisioned(self) -> np.ndarray: ...


@dataclass(frozen=True)
class ToApi:
    """The requests the engine routed to the hosted API, in engine order."""

    class_name: np.ndarray
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return len(self.arrival_s)


def drain_after_window(horizon: Horizon, unfinished: bool, last_finish_s: float) -> float:
    """Seconds the fleet worked after the window for the requests that arrived in it: to
    the last one's finish, or to the drain limit when one was left unfinished; 0 if none
    outlived the window."""
    end = horizon.drain_limit_s if unfinished else last_finish_s
    return max(0.0, end - horizon.duration_s)


@dataclass(frozen=True)
class Retired:
    """Requests a streamed run has finished with (or, at the end, abandoned), handed over
    before their engine rows are reused; :meth:`frame` gives their records."""

    rf: np.ndarray = field(repr=False)
    ri: np.ndarray = field(repr=False)
    class_names: tuple[str, ...]
    prefix_tokens: np.ndarray | None = field(repr=False)
    frontend_latency_s: float
    # every request the engine still holds, or will, arrives at or after this time (when
    # handed over; inf at the end)
    watermark: float = math.inf

    def __len__(self) -> int:
        return len(self.rf)

    @property
    def arrival_s(self) -> np.ndarray:
        """Arrival times, s."""
        return self.rf[:, K.ARR]

    @property
    def class_id(self) -> np.ndarray:
        """Class index (into ``class_names``)."""
        return self.ri[:, K.CLS].astype(np.int64)

    @property
    def input_tokens(self) -> np.ndarray:
        """Prompt lengths."""
        return self.ri[:, K.PROMPT].astype(np.int64)

    @property
    def output_tokens(self) -> np.ndarray:
        """Output lengths."""
        return self.ri[:, K.OUT].astype(np.int64)

    def take(self, sel: np.ndarray) -> Retired:
        """The rows at ``sel`` (positions or a mask)."""
        return self._rows(sel)

    @staticmethod
    def stack(parts: Sequence[Retired]) -> Retired:
        """The requests of ``parts``, one after the other (no sort)."""
        first = parts[0]
        return Retired(
            np.concatenate([p.rf for p in parts]),
            np.concatenate([p.ri for p in parts]),
            first.class_names,
            first.prefix_tokens,
            first.frontend_latency_s,
        )

    def _rows(self, sel: np.ndarray) -> Retired:
        return Retired(
            self.rf[sel],
            self.ri[sel],
            self.class_names,
            self.prefix_tokens,
            self.frontend_latency_s,
        )

    def split_api(self) -> tuple[Retired, Retired]:
        """``(on the fleet, routed to the API)``."""
        api = self.ri[:, K.STATUS] == K.ST_API
        return self._rows(~api), self._rows(api)

    def drain(self, warmup_s: float, duration_s: float) -> tuple[bool, float]:
        """Of the requests arriving in ``[warmup_s, duration_s)``: is one neither finished,
        rejected nor sent to the API, and the last finish on the fleet (0 if none); see
        :func:`drain_after_window`."""
        arrival = self.rf[:, K.ARR]
        status = self.ri[:, K.STATUS]
        mine = (arrival >= warmup_s) & (arrival < duration_s)
        ended = np.isin(status, (K.ST_COMPLETED, K.ST_REJECTED, K.ST_FAILED, K.ST_API))
        if (mine & ~ended).any():
            return True, 0.0
        done = mine & (status == K.ST_COMPLETED)
        return False, float(self.rf[done, K.FINISH].max()) if done.any() else 0.0

    @staticmethod
    def concat(parts: Sequence[Retired]) -> Retired:
        """The requests of ``parts``, sorted by arrival (stably)."""
        rf = np.concatenate([p.rf for p in parts])
        ri = np.concatenate([p.ri for p in parts])
        order = np.argsort(rf[:, K.ARR], kind="stable")
        first = parts[0]
        return Retired(
            rf[order], ri[order], first.class_names, first.prefix_tokens, first.frontend_latency_s
        )

    def to_api(self) -> ToApi:
        """Those of these requests routed to the hosted API, in row order, as it takes them."""
        sent = self.ri[:, K.STATUS] == K.ST_API
        return ToApi(
            class_name=np.asarray(self.class_names)[self.ri[sent, K.CLS]],
            arrival_s=self.rf[sent, K.ARR],
            input_tokens=self.ri[sent, K.PROMPT].astype(np.int64),
            output_tokens=self.ri[sent, K.OUT].astype(np.int64),
        )

    def frame(self, api: ApiOutcome | None = None) -> pd.DataFrame:
        """Per-request records in row order (:func:`request_frame`)."""
        return request_frame(
            self.rf,
            self.ri,
            self.class_names,
            prefix_tokens=self.prefix_tokens,
            frontend_latency_s=self.frontend_latency_s,
            api=api,
        )


def _categorical(codes: np.ndarray, names: Sequence[str]) -> pd.Categorical[str]:
    return pd.Categorical.from_codes(codes.astype(np.int64), categories=pd.Index(list(names)))


def request_frame(
    rf: np.ndarray,
    ri: np.ndarray,
    class_names: Sequence[str],
    *,
    prefix_tokens: np.ndarray | None,
    frontend_latency_s: float,
    api: ApiOutcome | None = None,
) -> pd.DataFrame:
    """Per-request records of the engine rows ``rf``, ``ri`` as a tidy DataFrame, in row
    order; a request neither finished nor rejected nor sent to the API has failed (the
    drain limit). ``api`` holds the hosted API's outcome of the rows sent there, in order.
    """
    n = len(rf)
    status = ri[:, K.STATUS].astype(np.int8)
    reason = ri[:, K.REASON].astype(np.int8)
    to_api = status == K.ST_API
    unfinished = (status != K.ST_COMPLETED) & (status != K.ST_REJECTED) & ~to_api
    status[unfinished] = K.ST_FAILED
    reason[unfinished] = K.R_DRAIN
    arrival = np.ascontiguousarray(rf[:, K.ARR])
    # the server's front end adds a constant to what the client sees (not to queueing)
    front = frontend_latency_s
    first = rf[:, K.FIRST] - arrival + front
    e2e = rf[:, K.FINISH] - arrival + front
    queue = rf[:, K.ADMIT] - arrival
    attempts = np.zeros(n, dtype=np.int64)
    provisioned = np.zeros(n, dtype=bool)
    if to_api.any():
        if api is None or len(api.status) != int(to_api.sum()):
            raise ValueError("requests routed to the API need its simulated outcome")
        ok = api.status == 0
        status[to_api] = np.where(ok, K.ST_COMPLETED, K.ST_FAILED)
        reason[to_api] = np.where(ok, K.R_NONE, K.R_RATE)
        first[to_api] = api.ttft_s
        e2e[to_api] = api.e2e_s
        queue[to_api] = np.nan
        attempts[to_api] = api.attempts
        provisioned[to_api] = api.provisioned
    done = status == K.ST_COMPLETED
    out = ri[:, K.OUT]
    pfx_len = prefix_tokens
    prefix = (
        np.zeros(n, dtype=np.int64)
        if pfx_len is None
        else np.asarray(pfx_len, dtype=np.int64)[ri[:, K.CLS]] * ri[:, K.HASPFX]
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where(done & (out > 1), (e2e - first) / (out - 1), np.nan)
    # in place: no second copy of a column the size of the run
    first[~done] = np.nan
    e2e[~done] = np.nan
    finish = arrival + e2e
    frame = pd.DataFrame(
        {
            "arrival_s": arrival,
            "class_name": _categorical(ri[:, K.CLS], class_names),
            "input_tokens": ri[:, K.PROMPT].astype(np.int64),
            "output_tokens": out.astype(np.int64),
            "prefix_tokens": prefix,
            "route": _categorical(to_api.astype(np.int8), ("fleet", "api")),
            "replica": ri[:, K.REP].astype(np.int64),
            "status": _categorical(_STATUS_CODE[status], STATUS_NAMES),
            "reason": _categorical(reason, K.REASONS),
            "queue_s": queue,
            "ttft_s": first,
            "tpot_s": tpot,
            "e2e_s": e2e,
            "finish_s": finish,
            "preemptions": ri[:, K.NPRE].astype(np.int64),
            "recomputed_tokens": ri[:, K.RECOMP].astype(np.int64),
            "cached_tokens": ri[:, K.HIT].astype(np.int64),
            "interruptions": ri[:, K.NINT].astype(np.int64),
            "cold_start": ri[:, K.COLD].astype(bool),
            "api_attempts": attempts,
            "api_provisioned": provisioned,
        },
        copy=False,  # every column is a fresh array: keep them as they are, unstacked
    )
    return frame


def replica_table(
    window: Mapping[str, Mapping[str, np.ndarray]],
    *,
    warmup_s: float,
    duration_s: float,
    kv_blocks: int,
    efficiencies: tuple[float, float] | None = None,
) -> pd.DataFrame:
    """One row per replica: its utilisation inside the measurement window.

    ``window`` holds the engine's cumulative counters at the window's start and end.
    ``efficiencies`` (compute, bandwidth) of a roofline step model turn the engine's summed
    compute and memory terms into model-FLOPs and memory-bandwidth utilisation (MFU, MBU);
    without them those columns are NaN.
    """
    span = duration_s - warmup_s
    start, end = window["start"], window["end"]
    busy = end["busy_s"] - start["busy_s"]
    batch = end["batch_integral"] - start["batch_integral"]
    kv = end["kv_integral"] - start["kv_integral"]
    steps = end["steps"] - start["steps"]
    asked = end["prefix_asked"] - start["prefix_asked"]
    hit = end["prefix_hit"] - start["prefix_hit"]
    eff_c, eff_b = efficiencies if efficiencies is not None else (np.nan, np.nan)
    mfu = (end["compute_s"] - start["compute_s"]) * eff_c / span
    mbu = (end["memory_s"] - start["memory_s"]) * eff_b / span
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "replica": np.arange(len(busy)),
                "gpu_busy_fraction": busy / span,
                "kv_occupancy_mean": kv / (span * kv_blocks),
                "compute_utilisation": mfu,
                "bandwidth_utilisation": mbu,
                "batch_size_mean": np.where(busy > 0, batch / busy, np.nan),
                "iterations": steps,
                "step_time_mean_s": np.where(steps > 0, busy / np.maximum(steps, 1), np.nan),
                "preemptions": end["preemptions"] - start["preemptions"],
                "prefix_hit_rate": np.where(asked > 0, hit / np.maximum(asked, 1), np.nan),
                "prefill_tokens_saved": hit,
            }
        )


@dataclass(frozen=True)
class Served:
    """A finished replication of the fleet, read through tidy accessors.

    Attributes
    ----------
    run
        The raw run (the engine's own tests read its state; nothing else needs to).
    class_names
        The workload's class names, by class id.
    horizon
        The horizon it ran over.
    """

    run: FleetRun
    class_names: tuple[str, ...]
    horizon: Horizon

    @property
    def state(self) -> FleetState:
        """The engine's arrays at the end of the run (for the engine's own tests)."""
        return self.run.state

    @property
    def replica(self) -> ReplicaConfig:
        """The resolved replica every slot runs."""
        return self.run.state.replica

    @property
    def n_requests(self) -> int:
        """Requests materialised (open-loop plus closed-loop) that this fleet took (a pool
        of several holds rows of requests another pool took: they do not count)."""
        state = self.run.state
        n = state.n_requests
        return int(np.count_nonzero(state.ri[:n, K.STATUS] != K.ST_ELSEWHERE))

    @property
    def end_s(self) -> float:
        """When the fleet's last iteration ended (at least the horizon's end)."""
        return self.run.end_s

    @property
    def dynamic(self) -> bool:
        """Replicas started and stopped during the run (autoscaling, spot, failures)."""
        return self.run.lifetimes is not None

    @property
    def lifetimes(self) -> np.ndarray:
        """One ``[start, end]`` row per replica lifetime: a fixed fleet's replicas live from
        0 to the end of the run; a dynamic fleet's rows are its paid lifetimes."""
        if self.run.lifetimes is not None:
            return self.run.lifetimes
        n = self.run.state.fleet.replicas
        return np.tile([0.0, self.end_s], (n, 1))

    @property
    def lifetime_slots(self) -> np.ndarray:
        """The replica slot of each row of :attr:`lifetimes`."""
        if self.run.lifetime_slots is not None:
            return self.run.lifetime_slots
        return np.arange(self.run.state.fleet.replicas)

    @property
    def iterations(self) -> int:
        """Scheduler iterations run by every replica over the whole run."""
        return int(self.run.state.pi[:, K.STEPS].sum())

    @property
    def prefix_hit_tokens(self) -> int:
        """Prompt tokens served from a replica's prefix cache over the whole run."""
        return int(self.run.state.pi[:, K.PFX_HIT].sum())

    @property
    def ready_replicas(self) -> tuple[float, float]:
        """Mean and maximum of the ready replicas over the fleet samples taken in the
        metric window (NaN without one); every sample counts, kept in
        :meth:`timeseries` or not."""
        total, n, most = self.run.ready
        return (total / n, most) if n else (float("nan"), float("nan"))

    @property
    def events(self) -> dict[str, int]:
        """Counts of scale-ups, scale-downs, spot interruptions and failures."""
        return dict(self.run.events)

    @property
    def drain_s(self) -> float:
        """Time after the window until the last request that arrived in it left the fleet.

        From ``duration_s`` to the last finish of a request that arrived in
        ``[warmup_s, duration_s)`` and completed on the fleet, or to the drain limit when one
        of them was still there (failed with reason ``drain_limit``); 0 if none outlived
        the window.
        """
        hz = self.horizon
        unfinished, last = self._rows().drain(hz.warmup_s, hz.duration_s)
        return drain_after_window(hz, unfinished, last)

    def busy_after_window_s(self) -> np.ndarray:
        """Per replica slot: busy time after the window's end (its counters are read at
        ``duration_s``)."""
        return self.run.state.pf[:, K.BUSY] - self.run.window["end"]["busy_s"]

    def to_api(self) -> ToApi:
        """The requests routed to the hosted API, in engine order."""
        return self._rows().to_api()

    def _rows(self) -> Retired:
        return self.taken_rows()[0]

    def taken_rows(self) -> tuple[Retired, np.ndarray | None]:
        """The engine's rows of the requests this fleet took (views, not copies, when it
        took them all), and which of its rows they are: None when all of them; a pool of
        several skips the rows of requests another pool took."""
        state = self.run.state
        n = state.n_requests
        rf, ri = state.rf[:n], state.ri[:n]
        taken = ri[:, K.STATUS] != K.ST_ELSEWHERE
        kept = None
        if not taken.all():
            rf, ri, kept = rf[taken], ri[taken], taken
        rows = Retired(
            rf, ri, self.class_names, state.prefix_tokens, state.fleet.engine.frontend_latency_s
        )
        return rows, kept

    def release_rows(self) -> None:
        """Free the engine's per-request rows once their records have been read (they are
        as large as the request table); :meth:`requests`, :meth:`to_api` and
        :attr:`drain_s` cannot be read after."""
        self.run.state.release_rows()

    def requests(self, api: ApiOutcome | None = None) -> pd.DataFrame:
        """Per-request records as a tidy DataFrame, sorted by arrival (stably).

        ``api`` holds the hosted API's outcome of the requests :meth:`to_api` returned;
        it is required when any request went there.
        """
        frame = self._rows().frame(api)
        n = len(frame)
        arrival = frame["arrival_s"].to_numpy()
        if n > 1 and not bool(np.all(arrival[1:] >= arrival[:-1])):
            # closed-loop requests are added as they are sent, after the open-loop ones
            frame = frame.iloc[np.argsort(arrival, kind="stable")].reset_index(drop=True)
        return frame

    def replicas(self) -> pd.DataFrame:
        """One row per replica slot: utilisation inside the measurement window
        (:func:`replica_table`)."""
        hz = self.horizon
        replica = self.replica
        return replica_table(
            self.run.window,
            warmup_s=hz.warmup_s,
            duration_s=hz.duration_s,
            kv_blocks=replica.kv_blocks,
            efficiencies=replica.coefficients.efficiencies,
        )

    def timeseries(self) -> pd.DataFrame:
        """The fleet's state every ``horizon.sample_interval_s``: per replica slot, its
        lifecycle state, queued and running sequences and KV blocks in use. A run with
        more samples than fit in :data:`sim.engine.fleet.MAX_SAMPLE_ROWS` rows keeps every
        second one, as often as needed (the spacing doubles each time)."""
        ts = pd.DataFrame(self.run.samples, columns=list(SAMPLE_COLUMNS))
        ts = ts.astype({c: "int64" for c in SAMPLE_COLUMNS[1:]})
        ts["state"] = _categorical(ts["state"].to_numpy(), REPLICA_STATES)
        return ts


def serve(
    fleet: FleetSpec,
    replica: ReplicaConfig,
    workload: Workload | WorkloadStream,
    horizon: Horizon,
    *,
    router_rng: np.random.Generator,
    routing: RoutingSpec | None = None,
    class_route: Sequence[int] | np.ndarray | None = None,
    prefix_tokens: Sequence[int] | np.ndarray | None = None,
    fault_rng: np.random.Generator | None = None,
    window_s: float | None = None,
    retire: Callable[[Retired], None] | None = None,
) -> Served:
    """Simulate ``workload``'s requests on ``fleet`` over ``horizon``.

        Parameters
        ----------
        fleet, replica
            The fleet section and the replica it resolves to
            (:func:`sim.engine.replica.build_replica`).
        workload
            The sampled requests (:func:`sim.workload.sample_workload`).
        horizon
            Arrivals in ``[0, duration_s)``, metrics over ``[warmup_s, duration_s)``, then the
            drain.
        router_rng, fault_rng
            The router's random stream; the fleet dynamics' (spot reclaims, failures).
        routing
            The routing policy (default: everything on the fleet).
        class_route
            Per class, :data:`ROUTE_FLEET_ONLY`, :data:`ROUTE_EITHER` or :data:`ROUTE_API`
            (default: every class fleet-only).
        prefix_tokens
            Per class, the shared prefix length its requests carry (0: none).
        window_s, retire
            With a :class:`~sim.workload.sample.WorkloadStream`: seconds of arrivals read at a
            time, and what receives the finished requests (:class:`Retired`) before their rows
            are reused; the :class:`Served` then holds no requests.

        Returns
        -------
        Served

        Examples
        --------
        >>> from sim.engine.replica import build_replica
        >>> from sim.workload import Workload
    from sim.workload.sample import WorkloadStream
        >>> spec = FleetSpec.model_validate({"model": "llama-3.1-8b", "gpu": "h100-sxm",
        ...     "step_time": {"model": "constant", "step_s": 0.1}})
        >>> wl = Workload(arrival_s=np.array([0.0]), input_tokens=np.array([10]),
        ...     output_tokens=np.array([3]), class_id=np.array([0], dtype=np.int32),
        ...     class_names=("chat",), closed_loop=())
        >>> out = serve(spec, build_replica(spec), wl, Horizon(duration_s=10),
        ...             router_rng=np.random.default_rng(0))
        >>> out.requests()[["status", "output_tokens"]].values.tolist()
        [['completed', 3]]
    """
    names = tuple(workload.class_names)
    pfx = None if prefix_tokens is None else np.asarray(prefix_tokens)
    on_rows = None
    if retire is not None:
        hand_over = retire

        def on_rows(rf: np.ndarray, ri: np.ndarray, watermark: float) -> None:
            hand_over(Retired(rf, ri, names, pfx, fleet.engine.frontend_latency_s, watermark))

    run = run_fleet(
        fleet,
        replica,
        workload,
        horizon,
        router_rng=router_rng,
        routing=routing,
        class_route=None if class_route is None else np.asarray(class_route, dtype=np.int64),
        prefix_tokens=None if prefix_tokens is None else np.asarray(prefix_tokens),
        fault_rng=fault_rng,
        window_s=window_s,
        retire=on_rows,
    )
    return Served(run, tuple(workload.class_names), horizon)
