"""A replication that keeps no per-request records (``horizon.records: sample`` or ``none``).

The workload is generated as the clock advances (:class:`~sim.workload.sample.WorkloadStream`)
and every request is folded into the replication's metrics once it has finished
(:class:`StreamFold`), its engine rows then reused: memory follows the requests in flight,
not the horizon. The simulation itself is bit-identical to a replication with every record
kept (same seed); what differs is only what is remembered:

* counts, sums, means and bills are exact (sums may differ in the last bits: they are
  added in another order);
* latency quantiles come from a :class:`~sim.replication.sketch.QuantileSketch`, within
  0.5 % (relative) of the exact order statistic;
* ``records: sample`` keeps every request whose hash of its arrival time, class and sizes
  falls below ``records_sample`` — the same requests whatever the window, executor or
  number of workers — as ``Outcome.requests``;
* requests routed to the hosted API are fed to each provider's
  :class:`~sim.hosted_api.ApiStream` as they are routed and folded once their call is
  settled (only those waiting to retry after a 429 are held); the every-request-to-the-API
  alternative (``api_only_*`` latency metrics) gets every request in arrival order, each
  once no request arriving earlier is still on the fleet (the engine hands over that time
  with its finished requests).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sim.economics.apis import MAIN_API, ApiProviders
from sim.engine.replica import ReplicaConfig
from sim.engine.serve import Retired, Served, drain_after_window
from sim.hosted_api import ApiResult, ApiStream
from sim.replication.billing import replication_costs
from sim.replication.fold import RequestStats
from sim.replication.metrics import fleet_metrics
from sim.replication.parts import (
    api_baseline_frame,
    api_baseline_names,
    api_cached_tokens,
    check_progress,
    completed_by_replica,
    dynamics_metrics,
    dynamics_sums,
    progress_counts,
    scenario_apis,
    serve_scenario,
)
from sim.scenario import Scenario
from sim.scenario_io import ScenarioError
from sim.seeds import (
    STREAM_API_BASELINE,
    STREAM_WORKLOAD,
    SeedLike,
    provider_stream,
    routed_api_stream,
    substream,
)
from sim.workload.sample import WorkloadStream
from sim.workload.trace import TraceArrivals

__all__ = [
    "WINDOW_REQUESTS",
    "StreamFold",
    "refuse_prompt_identity",
    "sample_mask",
    "stream_window_s",
]

# requests generated at a time (on average): the window of arrivals read ahead of the clock
WINDOW_REQUESTS = 50_000

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def sample_mask(
    arrival_s: np.ndarray, class_id: np.ndarray, prompt: np.ndarray, fraction: float
) -> np.ndarray:
    """Which requests a ``records: sample`` run keeps: a 64-bit hash (splitmix64) of the
    arrival time's bits, the class and the prompt length below ``fraction · 2⁶⁴``. A
    function of the request alone, so the sample does not depend on the order requests
    finish in."""
    with np.errstate(over="ignore"):
        z = np.ascontiguousarray(arrival_s, dtype=np.float64).view(np.uint64).copy()
        z ^= np.asarray(class_id).astype(np.uint64) * _M2
        z ^= np.asarray(prompt).astype(np.uint64) * _M3
        z += _M1
        z = (z ^ (z >> np.uint64(30))) * _M2
        z = (z ^ (z >> np.uint64(27))) * _M3
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) < fraction * 2.0**53


def refuse_prompt_identity(scenario: Scenario) -> None:
    """A streamed run cannot carry prompt blocks (traces with ``hash_ids``, sessions): one
    line naming the class, exit 2."""
    for i, cls in enumerate(scenario.workload.classes):
        arrivals = cls.arrivals
        carries = getattr(arrivals, "process", "") == "sessions"
        if (
            isinstance(arrivals, TraceArrivals)
            and arrivals.prompt_identity
            and cls.prompt_tokens is None
        ):
            trace = arrivals.load(read_input_tokens=True, read_output_tokens=False)
            carries = trace.prompt_blocks is not None
        if carries:
            raise ScenarioError(
                f"horizon.records: {scenario.horizon.records} folds requests as they finish, "
                f"but workload.classes.{i} ({cls.name}) carries prompt identity (hash ids or "
                "sessions), which needs every request: set horizon.records: all"
            )


def stream_window_s(scenario: Scenario, expected_requests: float) -> float:
    """Seconds of arrivals generated at a time: about :data:`WINDOW_REQUESTS` requests."""
    duration = scenario.horizon.duration_s
    if expected_requests <= WINDOW_REQUESTS:
        return duration
    return max(duration * WINDOW_REQUESTS / expected_requests, 1e-3)


class StreamFold:
    """Everything a replication's metrics need of its requests, folded as they finish.

    :meth:`retire` takes the requests the engine has finished with
    (:class:`~sim.engine.serve.Retired`); :meth:`finish_api` folds the requests the API
    served once it has been simulated.
    """

    def __init__(
        self,
        scenario: Scenario,
        replica: ReplicaConfig,
        slots: int,
        providers: ApiProviders | None = None,
        seed: SeedLike = 0,
    ) -> None:
        hz = scenario.horizon
        self.scenario = scenario
        self.names = scenario.workload.class_names()
        self.w0, self.w1 = hz.warmup_s, hz.duration_s
        self.stats = RequestStats(
            scenario.workload.classes, warmup_s=hz.warmup_s, duration_s=hz.duration_s, exact=False
        )
        self.requests = 0
        self.completed_by_replica = np.zeros(slots, dtype=np.int64)
        self.fleet_used = False
        self.dynamics = np.zeros(5)
        self.progress: dict[str, tuple[int, int, dict[str, int]]] = {}
        # counted requests (completed, arrived in the window) by class, route and
        # provisioning: count and token sums (every bill is linear in them)
        self._costs: dict[tuple[str, str, bool], np.ndarray] = {}
        # each provider's API, fed the requests of the classes it serves as they come; and
        # the every-request-to-the-API alternative (when every class has an API), fed every
        # request in arrival order once no earlier one can still come
        self._apis: dict[str, _ApiFeed] = {}
        self._baseline: dict[str, _ApiFeed] = {}
        self._base_stats: RequestStats | None = None
        self._reorder: list[Retired] = []
        self._provider_of = np.full(len(self.names), "", dtype=object)
        if providers is not None:
            routed = routed_api_stream(scenario.routing.policy)
            for name, spec in providers.specs.items():
                rng = np.random.default_rng(provider_stream(seed, routed, name))
                self._apis[name] = _ApiFeed(ApiStream(spec, rng))
            self._provider_of[:] = [providers.of_class.get(c, MAIN_API) or "" for c in self.names]
            if providers.used() and providers.complete:
                for name, spec in providers.specs.items():
                    rng = np.random.default_rng(provider_stream(seed, STREAM_API_BASELINE, name))
                    self._baseline[name] = _ApiFeed(ApiStream(spec, rng))
                self._base_stats = RequestStats(
                    scenario.workload.classes,
                    warmup_s=hz.warmup_s,
                    duration_s=hz.duration_s,
                    exact=False,
                )
        self._kept: list[pd.DataFrame] = []
        self._sample = hz.records_sample if hz.records == "sample" else 0.0
        # drain: the last finish of a request arriving in the window, or the drain limit
        self._unfinished = False
        self._last_finish = 0.0

    # --- the engine's callback ------------------------------------------------------------
    def retire(self, done: Retired) -> None:
        """Fold requests the engine has finished with."""
        self.requests += len(done)
        unfinished, last = done.drain(self.w0, self.w1)
        self._unfinished = self._unfinished or unfinished
        self._last_finish = max(self._last_finish, last)
        fleet, api = done.split_api()
        if len(api):
            for rows, res in self._send(self._apis, api):
                self._fold(rows.frame(res))
        if len(fleet):
            self.fleet_used = True
            self._fold(fleet.frame())
        if self._base_stats is not None:
            self._reorder.append(done)
            self._baseline_until(done.watermark)

    def finish_api(self) -> None:
        """Settle the calls still waiting to retry after a 429 and fold them."""
        for feed in self._apis.values():
            settled = feed.close()
            if settled is not None:
                self._fold(settled[0].frame(settled[1]))
        if self._base_stats is not None:
            self._baseline_until(math.inf)
            for feed in self._baseline.values():
                settled = feed.close()
                if settled is not None:
                    self._fold_baseline(*settled)

    def baseline_metrics(self) -> dict[str, float]:
        """Latency of the every-request-to-the-API alternative (``api_only_*``)."""
        assert self._base_stats is not None
        return self._base_stats.latency_metrics("api_only_")

    def _send(self, feeds: dict[str, _ApiFeed], rows: Retired) -> list[tuple[Retired, ApiResult]]:
        # each provider's requests to its API; what each has settled by now
        provider = self._provider_of[rows.class_id]
        out = []
        for name in np.unique(provider):
            feed = feeds.get(str(name))
            if feed is None:
                raise ValueError(f"requests were sent to an API that does not exist ({name!r})")
            settled = feed.feed(rows.take(provider == name))
            if settled is not None:
                out.append(settled)
        return out

    def _baseline_until(self, watermark: float) -> None:
        # every request arriving before `watermark` has been handed over: send them, in
        # arrival order, to the all-API alternative
        if not self._reorder:
            return
        held = Retired.stack(self._reorder)
        early = held.arrival_s < watermark
        self._reorder = [held.take(~early)] if not early.all() else []
        if early.any():
            for rows, res in self._send(self._baseline, held.take(early)):
                self._fold_baseline(rows, res)

    def _fold_baseline(self, rows: Retired, res: ApiResult) -> None:
        assert self._base_stats is not None
        names = pd.Categorical.from_codes(rows.class_id, categories=pd.Index(list(self.names)))
        self._base_stats.add(api_baseline_frame(rows.arrival_s, names, res))

    # --- folding ----------------------------------------------------------------------------
    def _fold(self, frame: pd.DataFrame) -> None:
        scenario = self.scenario
        frame["cached_input_tokens"] = api_cached_tokens(frame, scenario)
        self.stats.add(frame)
        self.completed_by_replica += completed_by_replica(frame, len(self.completed_by_replica))
        self.dynamics += dynamics_sums(frame, self.w0, self.w1)
        for name, (n, rej, reasons) in progress_counts(scenario, frame).items():
            n0, rej0, reasons0 = self.progress.get(name, (0, 0, {}))
            merged = dict(reasons0)
            for k, v in reasons.items():
                merged[k] = merged.get(k, 0) + v
            self.progress[name] = (n0 + n, rej0 + rej, merged)
        arrival = frame["arrival_s"].to_numpy()
        counted = (
            (arrival >= self.w0) & (arrival < self.w1) & (frame["status"] == "completed").to_numpy()
        )
        if counted.any():
            part = frame.loc[
                counted,
                [
                    "class_name",
                    "route",
                    "api_provisioned",
                    "input_tokens",
                    "cached_input_tokens",
                    "output_tokens",
                ],
            ]
            sums = part.groupby(
                ["class_name", "route", "api_provisioned"], observed=True, sort=False
            ).agg(
                n=("input_tokens", "size"),
                inp=("input_tokens", "sum"),
                cached=("cached_input_tokens", "sum"),
                out=("output_tokens", "sum"),
            )
            for idx, row in zip(sums.index, sums.to_numpy(dtype=np.int64), strict=True):
                key = (str(idx[0]), str(idx[1]), bool(idx[2]))
                if key in self._costs:
                    self._costs[key] += row
                else:
                    self._costs[key] = row.copy()
        if self._sample > 0:
            keep = sample_mask(
                arrival,
                frame["class_name"].cat.codes.to_numpy(),
                frame["input_tokens"].to_numpy(),
                self._sample,
            )
            if keep.any():
                self._kept.append(frame[keep])

    # --- results ----------------------------------------------------------------------------
    @property
    def drain_s(self) -> float:
        """As :attr:`sim.engine.serve.Served.drain_s`."""
        return drain_after_window(self.scenario.horizon, self._unfinished, self._last_finish)

    def cost_rows(self) -> pd.DataFrame:
        """The counted requests, one row per class, route and provisioning, with their
        count (``n_requests``) and summed tokens, as :func:`sim.economics.cost_metrics`
        takes them."""
        keys = sorted(self._costs)
        values = np.array([self._costs[k] for k in keys], dtype=np.int64).reshape(-1, 4)
        return pd.DataFrame(
            {
                "arrival_s": np.full(len(keys), self.w0),
                "status": "completed",
                "class_name": pd.Categorical([k[0] for k in keys], categories=self.names),
                "route": [k[1] for k in keys],
                "api_provisioned": [k[2] for k in keys],
                "n_requests": values[:, 0],
                "input_tokens": values[:, 1],
                "cached_input_tokens": values[:, 2],
                "output_tokens": values[:, 3],
            }
        )

    def sample(self) -> pd.DataFrame:
        """The recorded requests, sorted by arrival (empty with ``records: none``)."""
        if not self._kept:
            return pd.DataFrame(columns=list(_EMPTY_COLUMNS))
        frame = pd.concat(self._kept, ignore_index=True)
        order = np.argsort(frame["arrival_s"].to_numpy(), kind="stable")
        return frame.iloc[order].reset_index(drop=True)


class _ApiFeed:
    """One provider's API in a streamed run: its :class:`~sim.hosted_api.ApiStream` and the
    engine rows of the requests waiting on it (to retry after a 429)."""

    def __init__(self, stream: ApiStream) -> None:
        self.stream = stream
        self.waiting: Retired | None = None
        self.ids = np.empty(0, dtype=np.int64)
        self.fed = 0

    def feed(self, rows: Retired) -> tuple[Retired, ApiResult] | None:
        """Send ``rows`` (requests routed to this API) in arrival order; the requests
        settled since, with their outcomes."""
        rows = rows.take(np.argsort(rows.arrival_s, kind="stable"))
        ids, res = self.stream.feed(rows.arrival_s, rows.input_tokens, rows.output_tokens)
        new_ids = np.arange(self.fed, self.fed + len(rows), dtype=np.int64)
        self.fed += len(rows)
        if self.waiting is not None:
            rows = Retired.stack([self.waiting, rows])
            new_ids = np.concatenate([self.ids, new_ids])
        return self._settle(rows, new_ids, ids, res)

    def close(self) -> tuple[Retired, ApiResult] | None:
        ids, res = self.stream.close()
        if self.waiting is None:
            return None
        return self._settle(self.waiting, self.ids, ids, res)

    def _settle(
        self, rows: Retired, row_ids: np.ndarray, ids: np.ndarray, res: ApiResult
    ) -> tuple[Retired, ApiResult] | None:
        # row_ids ascend: the stream's ids of the settled requests find their rows
        at = np.searchsorted(row_ids, ids)
        left = np.ones(len(rows), dtype=bool)
        left[at] = False
        self.waiting = rows.take(left) if left.any() else None
        self.ids = row_ids[left]
        return (rows.take(at), res) if len(ids) else None


_EMPTY_COLUMNS = (
    "arrival_s",
    "class_name",
    "input_tokens",
    "output_tokens",
    "prefix_tokens",
    "route",
    "replica",
    "status",
    "reason",
    "queue_s",
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "finish_s",
    "preemptions",
    "recomputed_tokens",
    "interruptions",
    "cold_start",
    "api_attempts",
    "api_provisioned",
    "cached_input_tokens",
)


def simulate_streamed(
    scenario: Scenario, seed: SeedLike, replica: ReplicaConfig, expected_requests: float
) -> tuple[pd.DataFrame, dict[str, Any], pd.DataFrame, pd.DataFrame]:
    """One replication without per-request records: ``(sample, metrics, timeseries,
    replicas)`` as :func:`sim.replication.simulate.simulate` puts them in its Outcome."""
    hz = scenario.horizon
    refuse_prompt_identity(scenario)
    stream = WorkloadStream(
        scenario.workload, duration_s=hz.duration_s, seed=substream(seed, STREAM_WORKLOAD)
    )
    providers = scenario_apis(scenario)
    fleet = scenario.single_fleet("a streamed run (records: sample or none)")
    fold = StreamFold(scenario, replica, fleet.max_slots, providers, seed)
    served: Served = serve_scenario(
        scenario,
        stream,
        seed,
        replica,
        window_s=stream_window_s(scenario, expected_requests),
        retire=fold.retire,
    )
    fold.finish_api()
    check_progress(scenario, fold.progress)
    metrics: dict[str, Any] = dict(fold.stats.metrics())
    replicas = served.replicas()
    replicas["requests_completed"] = fold.completed_by_replica[: len(replicas)]
    metrics.update(fleet_metrics(replicas))
    metrics.update(
        replication_costs(
            scenario,
            fold.cost_rows(),
            replicas,
            served,
            providers,
            fleet_used=fold.fleet_used,
            drain_s=fold.drain_s,
        )
    )
    if providers.used():
        if providers.complete:
            metrics.update(fold.baseline_metrics())
        else:
            metrics.update(dict.fromkeys(api_baseline_names(scenario), math.nan))
    ts = served.timeseries()
    if fleet.dynamic:
        metrics.update(
            dynamics_metrics(served, fold.dynamics, replicas, hz.warmup_s, hz.duration_s)
        )
    metrics["requests_simulated"] = float(fold.requests)
    return fold.sample(), metrics, ts, replicas
