"""crossover: does self-hosting an open-weight LLM beat a pay-per-token API for this workload?

A Monte Carlo, discrete-event simulator of bursty LLM traffic on continuous-batching GPU
replicas. The public API is small and flat::

    import sim
    scenario = sim.load_scenario("scenarios/chat-startup.yaml")
    result = sim.run(scenario, replications=10, seed=1)
    result.summary()
"""

from sim import analytic
from sim.io import ScenarioError, dump_scenario, load_scenario
from sim.montecarlo import RunResult, run, summarize, t_interval
from sim.scenario import Scenario
from sim.simulate import Outcome, simulate

__all__ = [
    "Outcome",
    "RunResult",
    "Scenario",
    "ScenarioError",
    "analytic",
    "dump_scenario",
    "load_scenario",
    "run",
    "simulate",
    "summarize",
    "t_interval",
]

__version__ = "0.1.0"
