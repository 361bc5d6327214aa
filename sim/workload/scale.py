"""Scaling a workload's traffic by a factor, keeping its shape and its window.

:func:`scale_workload` returns a copy of a :class:`~sim.workload.spec.WorkloadSpec` whose every
class offers ``factor`` times the traffic: the same arrival process, profile, token lengths
and SLOs, only faster. The horizon is not part of the workload and is never touched, so a
diurnal workload keeps its whole day. Per arrival process:

============  =================================================================================
process       what changes (``s`` = factor)
============  =================================================================================
poisson       ``rate_rps × s``
gamma         ``rate_rps × s`` (same ``cv``: the same burstiness)
mmpp          every ``rates_rps[i] × s`` (same dwell times: bursts last as long)
closed_loop   ``users → ceil(users · s)`` and ``think_time_s × ceil(users · s) / (users · s)``,
              so the think-limited rate ``users / think_time_s`` is exactly ``s×``; with no
              think time, ``users → max(1, round(users · s))``
trace         ``rate_scale × s``: the trace is replayed time-compressed (a pattern inside the
              trace, such as its own daily cycle, is compressed with it; a horizon longer
              than the compressed trace replays it back to back, as without scaling)
sessions      the session starts scaled as their own process above (more conversations, each
              as long, as far apart in time)
============  =================================================================================

A time-of-day ``profile`` multiplies whatever base rate the class has (its daily mean is 1),
so it is kept as it is.
"""

from __future__ import annotations

import math

from sim.workload.arrivals import (
    ClosedLoopArrivals,
    GammaArrivals,
    MMPPArrivals,
    PoissonArrivals,
)
from sim.workload.sessions import SessionArrivals
from sim.workload.spec import ArrivalSpec, ClassSpec, WorkloadSpec
from sim.workload.trace import TraceArrivals

__all__ = ["nominal_rate_rps", "scale_arrivals", "scale_workload"]


def _check(factor: float) -> float:
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"factor must be finite and above 0, got {factor}")
    return float(factor)


def scale_arrivals(arrivals: ArrivalSpec, factor: float) -> ArrivalSpec:
    """A copy of ``arrivals`` offering ``factor`` times the traffic (see the module's table).

    Examples
    --------
    >>> scale_arrivals(PoissonArrivals(rate_rps=2.0), 1.5).rate_rps
    3.0
    >>> c = scale_arrivals(ClosedLoopArrivals(users=4, think_time_s=2.0), 0.5)
    >>> c.users, c.think_time_s
    (2, 2.0)
    """
    s = _check(factor)
    if isinstance(arrivals, PoissonArrivals | GammaArrivals):
        return arrivals.model_copy(update={"rate_rps": arrivals.rate_rps * s})
    if isinstance(arrivals, MMPPArrivals):
        return arrivals.model_copy(update={"rates_rps": tuple(r * s for r in arrivals.rates_rps)})
    if isinstance(arrivals, ClosedLoopArrivals):
        want = arrivals.users * s
        if arrivals.think_time_s > 0:
            users = max(1, math.ceil(want - 1e-9))
            think = arrivals.think_time_s * users / want
        else:
            users, think = max(1, round(want)), 0.0
        return arrivals.model_copy(update={"users": users, "think_time_s": think})
    if isinstance(arrivals, TraceArrivals):
        return arrivals.model_copy(update={"rate_scale": arrivals.rate_scale * s})
    if isinstance(arrivals, SessionArrivals):  # more sessions, each as long
        return arrivals.model_copy(update={"starts": scale_arrivals(arrivals.starts, s)})
    raise TypeError(f"cannot scale arrivals of type {type(arrivals).__name__}")


def scale_workload(workload: WorkloadSpec, factor: float) -> WorkloadSpec:
    """A copy of ``workload`` with every class's arrivals scaled by ``factor``.

    Examples
    --------
    >>> w = WorkloadSpec.model_validate({"classes": [{
    ...     "name": "chat",
    ...     "arrivals": {"process": "mmpp", "rates_rps": [1.0, 4.0], "mean_dwell_s": [60, 10]},
    ...     "profile": {"kind": "diurnal", "peak_to_trough": 3.0},
    ...     "prompt_tokens": {"dist": "fixed", "value": 100},
    ...     "output_tokens": {"dist": "fixed", "value": 10}}]})
    >>> scaled = scale_workload(w, 2.0)
    >>> scaled.classes[0].arrivals.rates_rps, scaled.classes[0].profile == w.classes[0].profile
    ((2.0, 8.0), True)
    """
    _check(factor)
    classes = tuple(_scale_class(c, factor) for c in workload.classes)
    # validated again: a scaled spec is as checked as one read from a file
    return WorkloadSpec.model_validate({"classes": [c.model_dump(mode="python") for c in classes]})


def _scale_class(cls: ClassSpec, factor: float) -> ClassSpec:
    return cls.model_copy(update={"arrivals": scale_arrivals(cls.arrivals, factor)})


def nominal_rate_rps(arrivals: ArrivalSpec) -> float | None:
    """The long-run mean rate an arrival spec states, requests/s, without sampling; for a
    closed loop the think-limited rate ``users / think_time_s`` (an upper bound: responses
    take time); ``None`` where the spec alone does not say (a trace, a closed loop with no
    think time).

    Examples
    --------
    >>> round(nominal_rate_rps(MMPPArrivals(rates_rps=[1.0, 10.0], mean_dwell_s=[90.0, 10.0])), 6)
    1.9
    """
    if isinstance(arrivals, PoissonArrivals | GammaArrivals | MMPPArrivals | SessionArrivals):
        return arrivals.mean_rate_rps()
    if isinstance(arrivals, ClosedLoopArrivals) and arrivals.think_time_s > 0:
        return arrivals.users / arrivals.think_time_s
    return None
