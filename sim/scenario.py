"""A scenario: the validated, immutable description of one question to simulate."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import Field, model_validator

from sim._base import Frozen
from sim.fleet_spec import FleetSpec, Horizon
from sim.workload.spec import WorkloadSpec


class Scenario(Frozen):
    """Workload + fleet + horizon, validated.

    Build one from a mapping with :meth:`model_validate` or from a YAML file with
    :func:`sim.load_scenario`; derive variants with :meth:`with_overrides`.

    Examples
    --------
    >>> s = Scenario.model_validate({
    ...     "name": "demo",
    ...     "horizon": {"duration_s": 600},
    ...     "workload": {"classes": [{
    ...         "name": "chat", "arrivals": {"process": "poisson", "rate_rps": 2.0},
    ...         "prompt_tokens": {"dist": "fixed", "value": 500},
    ...         "output_tokens": {"dist": "geometric", "mean": 100}}]},
    ...     "fleet": {"model": "llama-3.1-8b", "gpu": "h100-sxm"},
    ... })
    >>> s.with_overrides({"fleet.replicas": 3}).fleet.replicas
    3
    """

    name: str = Field(min_length=1)
    description: str = ""
    horizon: Horizon
    workload: WorkloadSpec
    fleet: FleetSpec

    @model_validator(mode="after")
    def _fleet_resolves(self) -> Scenario:
        # Catalog look-ups and the memory fit are checked here so that a bad scenario fails
        # at load time with the field named, not halfway through a sweep.
        from sim.engine.replica import build_replica

        try:
            build_replica(self.fleet)
        except KeyError as exc:
            raise ValueError(str(exc.args[0]) if exc.args else str(exc)) from None
        return self

    def with_overrides(self, overrides: dict[str, Any]) -> Scenario:
        """A copy with values replaced at dotted paths, re-validated.

        Path parts index into mappings by key and into lists by position or, for lists of
        named items such as ``workload.classes``, by name:
        ``{"workload.classes.chat.arrivals.rate_rps": 8.0, "fleet.replicas": 4}``.

        Raises
        ------
        KeyError
            If a path does not exist in the scenario.
        pydantic.ValidationError
            If the new values are invalid.
        """
        data = self.model_dump(mode="python", exclude_unset=False)
        for path, value in overrides.items():
            _set_path(data, path, copy.deepcopy(value))
        return Scenario.model_validate(data)


def _set_path(data: Any, path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        if isinstance(node, list):
            idx = _list_index(node, part, where)
            if last:
                node[idx] = value
            else:
                node = node[idx]
        elif isinstance(node, dict):
            if last:
                # a key the schema does not know is rejected by validation, with its path
                node[part] = value
            elif node.get(part) is None:
                if part not in node:
                    raise KeyError(f"no field {where!r} in the scenario")
                node[part] = {}  # an optional section that was unset
                node = node[part]
            else:
                node = node[part]
        else:
            raise KeyError(f"{'.'.join(parts[:i])!r} is a value, it has no field {part!r}")


def _list_index(node: list[Any], part: str, where: str) -> int:
    if part.lstrip("-").isdigit():
        idx = int(part)
        if -len(node) <= idx < len(node):
            return idx
        raise KeyError(f"{where!r}: index out of range (the list has {len(node)} items)")
    for idx, item in enumerate(node):
        if isinstance(item, dict) and item.get("name") == part:
            return idx
    names = [item.get("name") for item in node if isinstance(item, dict)]
    raise KeyError(f"{where!r}: no item named {part!r} (known: {names})")
