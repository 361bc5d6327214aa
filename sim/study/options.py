"""The options a scenario is answered by, and the hard constraints that rule options out.

A scenario asks "which way of serving this traffic is cheapest, among the ways allowed?".
Each way is an **option**: the scenario with a set of overrides (the same dotted paths as
``--set``). Every option is simulated on the identical requests of every replication
(common random numbers), and :mod:`sim.study.decide` turns the results into a verdict.

Without an ``options:`` section the canonical options are:

- ``api_only``: every request on the API (private flags lifted to price it; an option that
  sends a private class to the API is infeasible, but its cost is still worth showing);
- ``self_host_only``: every request on the fleet;
- ``hybrid``: the scenario's own routing when it mixes the two (spillover, class_based,
  cold_start_spill); and the per-class splits — classes that must stay on the fleet stay,
  classes that need the API go there, and each free class goes to one side or the other
  (every split is simulated when there are at most :data:`MAX_SPLIT_CLASSES` free classes;
  beyond that, all free classes on the fleet and all on the API).

A scenario without any API has no API options.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from sim.decision_spec import CANONICAL_OPTIONS, ConstraintsSpec, OptionSpec
from sim.scenario import Scenario

__all__ = [
    "CANONICAL_OPTIONS",
    "MAX_SPLIT_CLASSES",
    "ConstraintsSpec",
    "Option",
    "OptionSpec",
    "class_has_api",
    "fleet_pinned",
    "resolve_options",
]

#: Up to this many free classes every fleet/API split is an option of its own.
MAX_SPLIT_CLASSES = 3

OptionKind = Literal["api_only", "self_host_only", "hybrid", "custom"]


@dataclass(frozen=True)
class Option:
    """One option, resolved against a scenario.

    Attributes
    ----------
    name
        Unique within the scenario.
    kind
        ``api_only``, ``self_host_only``, ``hybrid`` (the scenario's own mixed routing or a
        per-class split) or ``custom`` (an ``options:`` item).
    description
        In words, for the report.
    overrides
        Dotted path → value, applied to the scenario (after its uncertain parameters are
        drawn, so the option's values win).
    api_classes
        Classes the option sends to the API whatever the load (``api_only`` and splits);
        empty when routing decides per request.
    """

    name: str
    kind: OptionKind
    description: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    api_classes: tuple[str, ...] = ()


def class_has_api(scenario: Scenario, class_name: str) -> bool:
    """Whether a class has an API to go to: its own ``api_model`` or the ``api`` section."""
    return scenario.providers().spec_of(class_name) is not None


def fleet_pinned(scenario: Scenario) -> list[str]:
    """Classes that may only run on the fleet: private ones, closed loops of users (they
    model the fleet's own clients) and classes without an API."""
    return [
        c.name
        for c in scenario.workload.classes
        if c.private or c.arrivals.process == "closed_loop" or not class_has_api(scenario, c.name)
    ]


def _api_pinned(scenario: Scenario) -> list[str]:
    return [c.name for c in scenario.workload.classes if not c.open_model_ok]


def _any_api(scenario: Scenario) -> bool:
    return any(class_has_api(scenario, c.name) for c in scenario.workload.classes)


def _api_only(scenario: Scenario) -> Option:
    overrides: dict[str, Any] = {"routing": {"policy": "api_only"}}
    for c in scenario.workload.classes:
        if c.private:
            overrides[f"workload.classes.{c.name}.private"] = False
    names = tuple(c.name for c in scenario.workload.classes)
    return Option("api_only", "api_only", "every request on the API", overrides, names)


def _self_host_only() -> Option:
    return Option("self_host_only", "self_host_only", "every request on the fleet", {"routing": {}})


def _splits(scenario: Scenario) -> list[Option]:
    pinned_fleet = set(fleet_pinned(scenario))
    pinned_api = set(_api_pinned(scenario))
    names = [c.name for c in scenario.workload.classes]
    free = [n for n in names if n not in pinned_fleet and n not in pinned_api]
    if len(free) <= MAX_SPLIT_CLASSES:
        subsets = [set(s) for k in range(len(free) + 1) for s in itertools.combinations(free, k)]
    else:
        subsets = [set(), set(free)]
    out = []
    for subset in subsets:
        to_api = [n for n in names if n in pinned_api or n in subset]
        on_fleet = [n for n in names if n not in to_api]
        if not to_api or not on_fleet:
            continue  # the same as self_host_only or api_only
        routing = {"policy": "class_based", "api_classes": to_api}
        label = ", ".join(to_api)
        out.append(
            Option(
                f"hybrid ({label} on API)",
                "hybrid",
                f"{label} on the API, {', '.join(on_fleet)} on the fleet",
                {"routing": routing},
                tuple(to_api),
            )
        )
    return out


def _hybrids(scenario: Scenario) -> list[Option]:
    out = []
    policy = scenario.routing.policy
    if policy not in ("self_host_only", "api_only"):
        words = {
            "spillover": "the fleet first, spilling to the API when it is loaded",
            "class_based": f"{', '.join(scenario.routing.api_classes)} on the API",
            "cold_start_spill": "the API while no replica is ready",
        }[policy]
        # a class_based routing places every class whatever the load: say where
        placed: tuple[str, ...] = ()
        if policy == "class_based":
            to_api = set(scenario.routing.api_classes) | set(_api_pinned(scenario))
            placed = tuple(c.name for c in scenario.workload.classes if c.name in to_api)
        out.append(Option("hybrid", "hybrid", f"as routed by the scenario: {words}", {}, placed))
    for split in _splits(scenario):
        same = policy == "class_based" and set(split.api_classes) == set(
            scenario.routing.api_classes
        )
        if not same:
            out.append(split)
    if len(out) == 1 and out[0].name != "hybrid":
        out[0] = Option(
            "hybrid", "hybrid", out[0].description, out[0].overrides, out[0].api_classes
        )
    return out


def resolve_options(scenario: Scenario) -> list[Option]:
    """The options of a scenario, in order: its ``options:`` items, or the canonical ones.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/chat-startup.yaml")
    >>> [o.name for o in resolve_options(s)]
    ['api_only', 'self_host_only']
    >>> private = s.with_overrides({"workload.classes.chat.private": True})
    >>> [o.name for o in resolve_options(private)]
    ['api_only', 'self_host_only']
    """
    items: tuple[str | OptionSpec, ...] = scenario.options or CANONICAL_OPTIONS
    out: list[Option] = []
    for item in items:
        if isinstance(item, OptionSpec):
            out.append(Option(item.name, "custom", item.description, dict(item.overrides)))
        elif item == "api_only":
            if _any_api(scenario):
                out.append(_api_only(scenario))
        elif item == "self_host_only":
            out.append(_self_host_only())
        elif _any_api(scenario):
            out.extend(_hybrids(scenario))
    return out
