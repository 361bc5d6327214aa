"""Workload: request classes, arrival processes, token lengths, traces, and sampling.

A :class:`WorkloadSpec` (the ``workload:`` section of a scenario) is turned into one
replication's requests by :func:`sample_workload`, which returns plain numpy arrays.
"""

from sim.workload.arrivals import (
    ClosedLoopArrivals,
    GammaArrivals,
    MMPPArrivals,
    OpenLoopArrivals,
    PoissonArrivals,
)
from sim.workload.lengths import (
    EmpiricalLength,
    FixedLength,
    GeometricLength,
    LengthSpec,
    LognormalLength,
)
from sim.workload.profile import DiurnalProfile, HourlyProfile, ProfileSpec, thin
from sim.workload.sample import ClosedLoopSource, Workload, component_seed, sample_workload
from sim.workload.sessions import SessionArrivals
from sim.workload.spec import ArrivalSpec, ClassSpec, SLOSpec, WorkloadSpec
from sim.workload.trace import Trace, TraceArrivals, TraceColumns, load_trace

__all__ = [
    "ArrivalSpec",
    "ClassSpec",
    "ClosedLoopArrivals",
    "ClosedLoopSource",
    "DiurnalProfile",
    "EmpiricalLength",
    "FixedLength",
    "GammaArrivals",
    "GeometricLength",
    "HourlyProfile",
    "LengthSpec",
    "LognormalLength",
    "MMPPArrivals",
    "OpenLoopArrivals",
    "PoissonArrivals",
    "ProfileSpec",
    "SLOSpec",
    "SessionArrivals",
    "Trace",
    "TraceArrivals",
    "TraceColumns",
    "Workload",
    "WorkloadSpec",
    "component_seed",
    "load_trace",
    "sample_workload",
    "thin",
]
