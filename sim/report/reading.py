"""Reading a ``crossover run`` directory back: the run, its scenario, its decision and its
capacity at the SLO, so that a report from disk is the report from memory."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from sim.engine.replica import build_replica
from sim.replication.simulate import Outcome
from sim.scenario import Scenario
from sim.scenario_io import ScenarioError, validate_scenario
from sim.study.capacity import CapacityAtSLO
from sim.study.decide import Decision
from sim.study.montecarlo import RunResult

__all__ = ["RUN_FILES", "decision_of", "load_run", "read_capacity", "read_scenario"]

RUN_FILES = ("replications.csv", "requests.parquet", "scenario.resolved.yaml")


def load_run(directory: str | Path) -> RunResult:
    """Read a ``crossover run`` output directory back into a :class:`RunResult`.

    ``replications.csv``, ``requests.parquet`` and ``scenario.resolved.yaml`` are required;
    ``timeseries.csv`` and ``replicas.csv`` are read when present, and the root seed from
    ``run.json`` (``-1`` when the directory has none).

    Raises
    ------
    ScenarioError
        With one line naming the directory or the file at fault.
    """
    d = Path(directory)
    if not d.is_dir():
        raise ScenarioError(f"{d}: not a directory (give what `crossover run` wrote)")
    missing = [name for name in RUN_FILES if not (d / name).is_file()]
    if missing:
        raise ScenarioError(f"{d}: missing {', '.join(missing)} (is it a `crossover run` output?)")
    source = d / "scenario.resolved.yaml"
    scenario = read_scenario(source)
    try:
        reps = pd.read_csv(d / "replications.csv")
        requests = pd.read_parquet(d / "requests.parquet")
        ts = _optional_csv(d / "timeseries.csv")
        replicas = _optional_csv(d / "replicas.csv")
    except (OSError, ValueError) as exc:
        raise ScenarioError(
            f"{d}: cannot read the results ({' '.join(str(exc).split())})"
        ) from None
    if reps.empty:
        raise ScenarioError(f"{d / 'replications.csv'}: no replications")
    metrics = {
        str(k): float(v)
        for k, v in reps.iloc[0].items()
        if k != "replication" and isinstance(v, int | float | np.number)
    }
    try:
        replica = build_replica(scenario.pools[0])
    except (ValueError, KeyError) as exc:
        raise ScenarioError(f"{source}: fleet: {exc}") from None
    seed = -1  # older directories, or written by hand: the report omits the seed
    n_requests = -1  # unless run.json says so, the table holds every request
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        info = json.loads((d / "run.json").read_text(encoding="utf-8"))
        seed = int(info["seed"])
        n_requests = int(info.get("requests", -1))
    first = Outcome(scenario, requests, metrics, ts, replicas, replica, n_requests=n_requests)
    result = RunResult(scenario, reps, first, seed)
    if (d / "options.csv").is_file():
        try:
            result = result.with_option_runs(pd.read_csv(d / "options.csv"))
        except (OSError, ValueError) as exc:
            raise ScenarioError(f"{d / 'options.csv'}: cannot read it ({exc})") from None
    capacity = read_capacity(d)  # after the options: a copy with option runs starts afresh
    if capacity is not None:
        result = result.with_capacity(capacity)
    return result


def read_capacity(directory: Path) -> CapacityAtSLO | None:
    """The capacity at the SLO a ``crossover run`` directory holds (``capacity.json`` and
    ``capacity.csv``); None when it has none (``--no-capacity``) or cannot be read."""
    try:
        data = json.loads((directory / "capacity.json").read_text(encoding="utf-8"))
        if not isinstance(data, dict) or "scale" not in data:
            return None
        path = directory / "capacity.csv"
        evaluations = pd.read_csv(path) if path.is_file() else pd.DataFrame()
        return CapacityAtSLO.from_dict(data, evaluations)
    except (OSError, ValueError, TypeError):
        return None


def read_scenario(source: Path) -> Scenario:
    """The scenario an output directory was written from (its ``scenario.resolved.yaml``).

    Raises
    ------
    ScenarioError
        With one line naming the file.
    """
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{source}: cannot read it ({' '.join(str(exc).split())})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: expected a scenario mapping")
    return validate_scenario(data, source=str(source))


def _optional_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def decision_of(result: RunResult) -> Decision | None:
    """The run's decision; None when its options were not simulated and cannot be (a run
    directory without ``options.csv`` or a seed)."""
    if not result.options_simulated and result.seed < 0:
        return None
    return result.decision()
