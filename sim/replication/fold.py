"""Request metrics folded a batch of requests at a time.

:class:`RequestStats` holds what the request metrics of a replication need — counts and
sums (exact), and per latency either every value (``exact=True``: quantiles as
``numpy.percentile``) or a :class:`~sim.replication.sketch.QuantileSketch` (relative error
at most :data:`~sim.replication.sketch.ALPHA`). Adding the requests in any number of batches
gives the same counts and values as adding them at once, so a replication can fold its
finished requests as it runs and keep no per-request records.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sim.labels import labels
from sim.replication.sketch import QuantileSketch
from sim.workload.spec import ClassSpec

__all__ = ["LATENCIES", "QUANTILES", "RequestStats", "slo_met"]

LATENCIES = ("ttft_s", "tpot_s", "e2e_s", "queue_s")
QUANTILES = (50, 90, 99)


def slo_met(frame: pd.DataFrame, classes: Sequence[ClassSpec]) -> np.ndarray:
    """Boolean per request: completed and within its class's TTFT and TPOT targets.

    A request with one output token has no TPOT and is judged on TTFT alone; a class without
    an SLO only needs the request to complete.
    """
    ok = (frame["status"] == "completed").to_numpy().copy()
    names = labels(frame["class_name"])
    ttft = frame["ttft_s"].to_numpy(dtype=float)
    tpot = frame["tpot_s"].to_numpy(dtype=float)
    for cls in classes:
        if cls.slo is None:
            continue
        sel = names == cls.name
        if cls.slo.ttft_s is not None:
            ok[sel] &= ttft[sel] <= cls.slo.ttft_s
        if cls.slo.tpot_s is not None:
            ok[sel] &= ~(tpot[sel] > cls.slo.tpot_s)
    return ok


def _column(frame: pd.DataFrame, name: str, default: float) -> np.ndarray:
    if name in frame:
        return frame[name].to_numpy()
    return np.full(len(frame), default)


class _Latencies:
    """Mean and quantiles of each latency over one group of requests."""

    __slots__ = ("exact", "n", "parts", "sketch", "sum")

    def __init__(self, exact: bool) -> None:
        self.exact = exact
        # exact: the columns (as given, not copied) and which of their rows belong here;
        # the values are gathered one latency at a time when written
        self.parts: list[tuple[dict[str, np.ndarray], np.ndarray]] = []
        self.sketch = {c: QuantileSketch() for c in LATENCIES} if not exact else {}
        self.n = dict.fromkeys(LATENCIES, 0)
        self.sum = dict.fromkeys(LATENCIES, 0.0)

    def add(self, cols: dict[str, np.ndarray], sel: np.ndarray) -> None:
        if self.exact:
            self.parts.append((cols, sel))
            return
        for col in LATENCIES:
            v = cols[col][sel]
            v = v[~np.isnan(v)]
            if not v.size:
                continue
            self.sketch[col].add(v)
            self.n[col] += int(v.size)
            self.sum[col] += float(v.sum())

    def write(self, suffix: str, out: dict[str, float], prefix: str = "") -> None:
        for col in LATENCIES:
            base = prefix + col[: -len("_s")]
            values = None
            if self.exact:
                values = np.concatenate([c[col][m] for c, m in self.parts] or [np.empty(0)])
                values = values[~np.isnan(values)]
                self.n[col] = int(values.size)
            if self.n[col] == 0:
                out[f"{base}_mean_s{suffix}"] = float("nan")
                for q in QUANTILES:
                    out[f"{base}_p{q}_s{suffix}"] = float("nan")
                continue
            if values is not None:
                out[f"{base}_mean_s{suffix}"] = float(values.mean())
                qs = np.percentile(values, QUANTILES)
            else:
                out[f"{base}_mean_s{suffix}"] = self.sum[col] / self.n[col]
                qs = self.sketch[col].quantiles(QUANTILES)
            for q, v in zip(QUANTILES, qs, strict=True):
                out[f"{base}_p{q}_s{suffix}"] = float(v)


class RequestStats:
    """The request metrics of one replication, folded from batches of per-request records.

    Parameters
    ----------
    classes
        The workload's classes (their SLOs; per-class metrics when there are several).
    warmup_s, duration_s
        The measurement window: latencies and counts of requests *arriving* in it.
    exact
        Keep every latency (quantiles as ``numpy.percentile``) rather than a sketch.

    Examples
    --------
    >>> reqs = pd.DataFrame({"arrival_s": [0.0, 1.0, 2.0], "class_name": ["a"] * 3,
    ...     "status": ["completed", "completed", "rejected"], "finish_s": [0.5, 1.5, np.nan],
    ...     "input_tokens": [10, 10, 10], "output_tokens": [2, 2, 2],
    ...     "ttft_s": [0.1, 0.3, np.nan], "tpot_s": [0.4, 0.2, np.nan],
    ...     "e2e_s": [0.5, 0.5, np.nan], "queue_s": [0.0, 0.1, np.nan]})
    >>> cls = ClassSpec.model_validate({"name": "a",
    ...     "arrivals": {"process": "poisson", "rate_rps": 1.0},
    ...     "prompt_tokens": {"dist": "fixed", "value": 10},
    ...     "output_tokens": {"dist": "fixed", "value": 2}})
    >>> s = RequestStats([cls], warmup_s=0.0, duration_s=10.0)
    >>> s.add(reqs.iloc[:1]); s.add(reqs.iloc[1:])
    >>> m = s.metrics()
    >>> m["requests_completed"], m["requests_rejected"], m["ttft_mean_s"]
    (2.0, 1.0, 0.2)
    """

    def __init__(
        self,
        classes: Sequence[ClassSpec],
        *,
        warmup_s: float,
        duration_s: float,
        exact: bool = True,
    ) -> None:
        self.classes = tuple(classes)
        self.w0, self.w1 = warmup_s, duration_s
        self.mid = (warmup_s + duration_s) / 2
        self.exact = exact
        names = [c.name for c in self.classes]
        self._names = names
        self._count = {
            k: 0
            for k in (
                "offered",
                "completed",
                "rejected",
                "failed",
                "served",
                "met",
                "backlog_mid",
                "backlog_end",
                "api",
                "api_retries",
                "api_rate_limited",
                "api_failed",
            )
        }
        self._tokens_in = 0
        self._tokens_out = 0
        self._has_route = False
        self._has_attempts = False
        self._lat = _Latencies(exact)
        self._route = {r: _Latencies(exact) for r in ("fleet", "api")}
        self._route_n = dict.fromkeys(("fleet", "api"), 0)
        self._route_met = dict.fromkeys(("fleet", "api"), 0)
        self._cls = {c: _Latencies(exact) for c in names}
        self._cls_n = dict.fromkeys(names, 0)
        self._cls_met = dict.fromkeys(names, 0)
        self._cls_api = dict.fromkeys(names, 0)
        # prompt tokens found in a replica's prefix cache, and prompt tokens, of completed
        # requests per class (requests with prompt identity carry ``cached_tokens``)
        self._cls_cached = dict.fromkeys(names, 0)
        self._cls_prompt = dict.fromkeys(names, 0)
        self._any_cached = False

    def add(self, requests: pd.DataFrame) -> None:
        """Fold a batch of per-request records (the columns of ``Outcome.requests``)."""
        w0, w1 = self.w0, self.w1
        arrival = requests["arrival_s"].to_numpy(dtype=float)
        arrived = (arrival >= w0) & (arrival < w1)
        status = requests["status"]
        completed = (status == "completed").to_numpy()
        failed = (status == "failed").to_numpy()
        rejected = (status == "rejected").to_numpy()
        c = self._count
        c["offered"] += int(arrived.sum())
        c["completed"] += int((completed & arrived).sum())
        c["rejected"] += int((rejected & arrived).sum())
        c["failed"] += int((failed & arrived).sum())
        # an alternative outcome (latency_metrics) may come without finish times or tokens
        fin = _column(requests, "finish_s", np.nan).astype(float)
        served = completed & (fin >= w0) & (fin < w1)
        c["served"] += int(served.sum())
        self._tokens_in += int(_column(requests, "input_tokens", 0)[served].sum())
        self._tokens_out += int(_column(requests, "output_tokens", 0)[served].sum())
        met_all = slo_met(requests, self.classes)
        c["met"] += int(met_all[arrived].sum())
        # the fleet's backlog halfway through the window and at its end: arrived since the
        # window opened, on the fleet, not rejected, not finished by then
        self._has_route = self._has_route or "route" in requests
        api = (requests["route"] == "api").to_numpy() if "route" in requests else None
        on_fleet = ~api if api is not None else np.ones(len(arrival), bool)
        for key, at in (("backlog_mid", self.mid), ("backlog_end", w1)):
            waiting = (arrival >= w0) & (arrival < at) & on_fleet & ~rejected
            c[key] += int((waiting & ~(completed & (fin < at))).sum())
        cols = {col: requests[col].to_numpy(dtype=float) for col in LATENCIES}
        self._lat.add(cols, completed & arrived)
        if api is not None:
            on_api = arrived & api
            c["api"] += int(on_api.sum())
            if "api_attempts" in requests:
                self._has_attempts = True
                attempts = requests["api_attempts"].to_numpy()[on_api]
                c["api_retries"] += int((attempts - 1).clip(min=0).sum())
                c["api_rate_limited"] += int((attempts > 1).sum())
                c["api_failed"] += int((failed & on_api).sum())
            for route, sel in (("fleet", arrived & ~api), ("api", on_api)):
                self._route[route].add(cols, sel & completed)
                self._route_n[route] += int(sel.sum())
                self._route_met[route] += int(met_all[sel].sum())
        if len(self.classes) > 1:
            names = labels(requests["class_name"])
            cached = _column(requests, "cached_tokens", 0)
            prompt = _column(requests, "input_tokens", 0)
            self._any_cached = self._any_cached or bool(cached.any())
            for name in self._names:
                part = arrived & (names == name)
                self._cls[name].add(cols, part & completed)
                self._cls_n[name] += int(part.sum())
                self._cls_met[name] += int(met_all[part].sum())
                if api is not None:
                    self._cls_api[name] += int(api[part].sum())
                self._cls_cached[name] += int(cached[part & completed].sum())
                self._cls_prompt[name] += int(prompt[part & completed].sum())

    def metrics(self) -> dict[str, float]:
        """The request metrics (names in the README's glossary)."""
        span = self.w1 - self.w0
        c = self._count
        nan = float("nan")
        n = c["offered"]
        out: dict[str, float] = {
            "requests_offered": float(n),
            "requests_completed": float(c["completed"]),
            "requests_rejected": float(c["rejected"]),
            "requests_failed": float(c["failed"]),
            "offered_rps": n / span,
            "throughput_rps": c["served"] / span,
            "input_tokens_per_s": float(self._tokens_in) / span,
            "output_tokens_per_s": float(self._tokens_out) / span,
            "slo_attainment": c["met"] / n if n else nan,
            "goodput_rps": float(c["met"]) / span,
            "backlog_mid_requests": float(c["backlog_mid"]),
            "backlog_end_requests": float(c["backlog_end"]),
        }
        self._lat.write("", out)
        if self._has_route and c["api"] > 0:
            out["api_share"] = c["api"] / n
            if self._has_attempts:
                out["api_retries"] = float(c["api_retries"])
                out["api_rate_limited_requests"] = float(c["api_rate_limited"])
                out["api_requests_failed"] = float(c["api_failed"])
            for route in ("fleet", "api"):
                self._route[route].write(f"[route={route}]", out)
                k = self._route_n[route]
                out[f"slo_attainment[route={route}]"] = self._route_met[route] / k if k else 0.0
        if len(self.classes) > 1:
            for name in self._names:
                suffix = f"[{name}]"
                self._cls[name].write(suffix, out)
                k = self._cls_n[name]
                out[f"slo_attainment{suffix}"] = self._cls_met[name] / k if k else nan
                out[f"offered_rps{suffix}"] = k / span
                if self._has_route:
                    out[f"api_share{suffix}"] = self._cls_api[name] / k if k else nan
                if self._any_cached:  # prompt identity, and something was found cached
                    p = self._cls_prompt[name]
                    out[f"prefix_hit_rate{suffix}"] = self._cls_cached[name] / p if p else nan
        return out

    def latency_metrics(self, prefix: str) -> dict[str, float]:
        """Latency and SLO metrics only, named with ``prefix`` (an alternative outcome of
        the same requests, e.g. every request sent to the API)."""
        out: dict[str, float] = {}
        self._lat.write("", out, prefix=prefix)
        n = self._count["offered"]
        out[f"{prefix}slo_attainment"] = self._count["met"] / n if n else float("nan")
        out[f"{prefix}requests_failed"] = float(self._count["failed"])
        return out
