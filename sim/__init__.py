"""crossover: does self-hosting an open-weight LLM beat a pay-per-token API for this workload?

A Monte Carlo, discrete-event simulator of bursty LLM traffic on continuous-batching GPU
replicas. The public API is small and flat::

    import sim
    scenario = sim.load_scenario("scenarios/chat-startup.yaml")
    result = sim.run(scenario, replications=10, seed=1)
    result.summary()
    grid = sim.sweep(scenario, grid={"workload.classes.chat.arrivals.rates_rps.0": [2, 4, 8]})
    sim.crossover(grid, x="workload.classes.chat.arrivals.rates_rps.0")
"""

from sim import analytic, plots
from sim.decide import Decision
from sim.decisions import CrossoverResult, crossover, find_crossover
from sim.intervals import Interval, Probability, summarize, t_interval
from sim.io import ScenarioError, dump_scenario, load_scenario
from sim.montecarlo import Precision, RunResult, run
from sim.planning import CapacityPlan, plan_capacity
from sim.report import report
from sim.scenario import Scenario
from sim.sensitivity import tornado, variance_indices
from sim.simulate import Outcome, simulate
from sim.sweep import SweepResult, sweep

__all__ = [
    "CapacityPlan",
    "CrossoverResult",
    "Decision",
    "Interval",
    "Outcome",
    "Precision",
    "Probability",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "SweepResult",
    "analytic",
    "crossover",
    "dump_scenario",
    "find_crossover",
    "load_scenario",
    "plan_capacity",
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
