"""Scenario files: YAML in, validated :class:`~sim.scenario.Scenario` out (an edge module)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from sim.scenario import Scenario


class ScenarioError(ValueError):
    """A scenario file or value is invalid; the message names the file and the field."""


def format_validation_error(exc: ValidationError, *, source: str) -> str:
    """One line naming the first offending field (and how many more there are)."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"] if not _is_union_tag(p)) or "(top level)"
    msg = first["msg"]
    if first.get("type") == "extra_forbidden":
        msg = "unknown field (check the spelling)"
    got = first.get("input")
    detail = ""
    if first.get("type") not in ("missing", "extra_forbidden") and _short(got):
        detail = f" (got {got!r})"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{source}: {loc}: {msg}{detail}{more}"


def _is_union_tag(part: object) -> bool:
    # pydantic puts the discriminator value (e.g. 'poisson') or function names in locations
    return isinstance(part, str) and (part.startswith("function-") or "[" in part)


def _short(value: object) -> bool:
    return isinstance(value, int | float | str | bool) and len(repr(value)) <= 60


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    # Relative file references inside a scenario are relative to the scenario file.
    workload = data.get("workload")
    classes = workload.get("classes") if isinstance(workload, dict) else None
    for cls in classes if isinstance(classes, list) else []:
        arrivals = cls.get("arrivals") if isinstance(cls, dict) else None
        if isinstance(arrivals, dict) and isinstance(arrivals.get("path"), str):
            p = Path(arrivals["path"])
            if not p.is_absolute():
                arrivals["path"] = str((base / p).resolve())
    fleet = data.get("fleet")
    model = fleet.get("model") if isinstance(fleet, dict) else None
    if isinstance(model, dict) and "config_path" in model:
        p = Path(str(model.pop("config_path")))
        p = p if p.is_absolute() else base / p
        try:
            hf = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ScenarioError(f"fleet.model.config_path: cannot read {p}: {exc}") from None
        fleet["model"] = {**hf, **model}


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file.

    Relative paths inside the file (trace files, model ``config_path``) are resolved
    against the file's directory.

    Raises
    ------
    ScenarioError
        With a one-line message naming the file and the offending field.

    Examples
    --------
    >>> s = load_scenario("scenarios/chat-startup.yaml")
    >>> s.fleet.gpu
    'h100-sxm'
    """
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read the file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"{p}:{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{p}: expected a mapping with name, horizon, workload and fleet")
    _resolve_paths(data, p.parent)
    return validate_scenario(data, source=str(p))


def validate_scenario(data: dict[str, Any], *, source: str = "scenario") -> Scenario:
    """Validate a mapping into a :class:`Scenario`, raising :class:`ScenarioError`."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(exc, source=source)) from None


def dump_scenario(scenario: Scenario) -> str:
    """The scenario with every default filled in, as YAML (what was actually simulated)."""
    data = scenario.model_dump(mode="json")
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
