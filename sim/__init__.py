"""crossover: does self-hosting an open-weight LLM beat a pay-per-token API for this workload?

A Monte Carlo, discrete-event simulator of bursty LLM traffic on continuous-batching GPU
replicas. The public API is small and flat::

    import sim
    scenario = sim.load_scenario("scenarios/chat-startup.yaml")
    result = sim.run(scenario, replications=10, seed=1)
    result.summary()
    grid = sim.sweep(scenario, grid={"workload.classes.chat.arrivals.rates_rps.0": [2, 4, 8]})
    sim.crossover(grid, x="workload.classes.chat.arrivals.rates_rps.0")

Every public name is imported on first use (PEP 562), so importing a core module such as
``sim.workload.arrivals`` does not load the edges (jinja2 for reports, matplotlib for plots,
dask for clusters).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim import analytic, plots
    from sim.intervals import Interval, Probability, summarize, t_interval
    from sim.replication.simulate import Outcome, simulate
    from sim.report import report
    from sim.scenario import Scenario
    from sim.scenario_io import ScenarioError, dump_scenario, load_scenario
    from sim.study.capacity import CapacityAtSLO, capacity_at_slo
    from sim.study.crossover import CrossoverResult, crossover, find_crossover
    from sim.study.decide import Decision
    from sim.study.mix import MixPlan, plan_mix
    from sim.study.montecarlo import Precision, RunResult, run
    from sim.study.planning import CapacityPlan, plan_capacity
    from sim.study.sensitivity import tornado, variance_indices
    from sim.study.sweep import SweepResult, sweep

__all__ = [
    "CapacityAtSLO",
    "CapacityPlan",
    "CrossoverResult",
    "Decision",
    "Interval",
    "MixPlan",
    "Outcome",
    "Precision",
    "Probability",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "SweepResult",
    "analytic",
    "capacity_at_slo",
    "crossover",
    "dump_scenario",
    "find_crossover",
    "load_scenario",
    "plan_capacity",
    "plan_mix",
    "plots",
    "report",
    "run",
    "simulate",
    "summarize",
    "sweep",
    "t_interval",
    "tornado",
    "variance_indices",
]

__version__ = "0.1.0"

# where each public name lives ("sim": the name is a submodule, exported as such)
_HOMES = {
    "CapacityAtSLO": "sim.study.capacity",
    "CapacityPlan": "sim.study.planning",
    "CrossoverResult": "sim.study.crossover",
    "Decision": "sim.study.decide",
    "Interval": "sim.intervals",
    "MixPlan": "sim.study.mix",
    "Outcome": "sim.replication.simulate",
    "Precision": "sim.study.montecarlo",
    "Probability": "sim.intervals",
    "RunResult": "sim.study.montecarlo",
    "Scenario": "sim.scenario",
    "ScenarioError": "sim.scenario_io",
    "SweepResult": "sim.study.sweep",
    "analytic": "sim",
    "capacity_at_slo": "sim.study.capacity",
    "crossover": "sim.study.crossover",
    "dump_scenario": "sim.scenario_io",
    "find_crossover": "sim.study.crossover",
    "load_scenario": "sim.scenario_io",
    "plan_capacity": "sim.study.planning",
    "plan_mix": "sim.study.mix",
    "plots": "sim",
    "report": "sim.report",
    "run": "sim.study.montecarlo",
    "simulate": "sim.replication.simulate",
    "summarize": "sim.intervals",
    "sweep": "sim.study.sweep",
    "t_interval": "sim.intervals",
    "tornado": "sim.study.sensitivity",
    "variance_indices": "sim.study.sensitivity",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is not None and home != __name__:
        value = getattr(importlib.import_module(home), name)
    elif home == __name__ or _is_submodule(name):
        # any submodule too, as `import sim; sim.workload.load_trace(...)` always worked
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later look-ups find it without coming here
    return value


def _is_submodule(name: str) -> bool:
    return not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))


class _Package(types.ModuleType):
    """``sim`` itself: ``sim.report`` stays the function.

    Importing a submodule sets it as an attribute of its package; the ``sim.report``
    package shares its name with the function exported here, and would otherwise replace it.
    """

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and _HOMES.get(name, __name__) != __name__:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
