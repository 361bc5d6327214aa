"""Scenario files: YAML in, validated :class:`~sim.scenario.Scenario` out (an edge module).

Everything that reads files for a scenario lives here: the YAML itself, a model's
``config_path`` and the trace files it replays, so that a broken input is reported when the
scenario is loaded, as one line naming the file and the field.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import PydanticUserError, ValidationError
from pydantic_core import ErrorDetails

from sim._base import ScenarioError
from sim.scenario import Scenario
from sim.workload.trace import TraceArrivals

__all__ = [
    "ScenarioError",
    "check_trace_files",
    "dump_scenario",
    "format_validation_error",
    "load_scenario",
    "validate_scenario",
]


def format_validation_error(
    exc: ValidationError, *, source: str, data: object | None = None
) -> str:
    """One line naming the first offending field (and how many other fields are wrong).

    Parameters
    ----------
    exc
        The error from validating a :class:`~sim.scenario.Scenario`.
    source
        What was validated (a file name), put first on the line.
    data
        The mapping that was validated. With it, the names pydantic inserts into error
        locations for union members (``poisson``, ``str``, ``function-after[...]``) are told
        apart from field names exactly; without it they are recognised by their spelling.

    Examples
    --------
    >>> try:
    ...     Scenario.model_validate({"name": "x"})
    ... except ValidationError as exc:
    ...     print(format_validation_error(exc, source="x.yaml"))
    x.yaml: horizon: Field required (and 2 more)
    """
    errors = exc.errors(include_url=False)
    groups: dict[str, list[ErrorDetails]] = {}
    for err in errors:
        path = _field_path(err["loc"], data)
        groups.setdefault(path, []).append(err)
    path, group = next(iter(groups.items()))
    msg = _message(group[0])
    # Several errors at one place are the alternatives of a union (``str | dict``).
    for other in group[1:]:
        alt = _message(other).removeprefix("Input should be ")
        if alt not in msg:
            msg += f" or {alt}"
    got = group[0].get("input")
    # (numbers are always shown: "greater than 1 (got 1)" must not lose its "got 1")
    shown = group[0]["type"] in ("missing", "extra_forbidden") or (
        isinstance(got, str) and got in msg
    )
    if _short(got) and not shown:
        msg += f" (got {got!r})"
    more = f" (and {len(groups) - 1} more)" if len(groups) > 1 else ""
    return f"{source}: {path or '(top level)'}: {msg}{more}"


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        name = str(err["loc"][-1]) if err["loc"] else ""
        close = difflib.get_close_matches(name, _schema_names()[0], n=1)
        return f"unknown field (did you mean {close[0]!r}?)" if close else "unknown field"
    if kind == "union_tag_invalid":
        disc = str(ctx.get("discriminator", "kind")).strip("'")
        return f"unknown {disc} {ctx.get('tag')!r} (expected one of {ctx.get('expected_tags')})"
    if kind == "union_tag_not_found":
        disc = str(ctx.get("discriminator", "kind")).strip("'")
        return f"the {disc!r} key is missing (it says which kind of {disc} this is)"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "Input should be a mapping of fields"
    if kind in ("tuple_type", "list_type"):
        return "Input should be a list"
    msg = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def _field_path(loc: Sequence[int | str], data: object | None) -> str:
    """``loc`` as a dotted field path, without the names of union members."""
    parts: list[str] = []
    node = data
    known = data is not None  # whether ``node`` is the input at ``parts``
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(part, int):
            parts.append(str(part))
            if known and isinstance(node, list | tuple) and -len(node) <= part < len(node):
                node = node[part]
            else:
                known = False
            continue
        if not known:
            if not _looks_like_tag(part):
                parts.append(part)
            continue
        if isinstance(node, dict):
            if part in node:
                parts.append(part)
                node = node[part]
                continue
            # Not in the input: either a missing field (always the last part) or the member
            # of a union that pydantic tried, named by its tag (one of the values here).
            tags = {v for v in node.values() if isinstance(v, str)}
            if last and part not in tags and not _looks_like_tag(part):
                parts.append(part)
            continue
        # A value where a section was expected: what follows names union members tried.
    return ".".join(parts)


def _looks_like_tag(part: str) -> bool:
    # Names pydantic gives union members in locations: the discriminator value of a tagged
    # union ('poisson'), or the type or validator for a plain one ('str', 'function-after[…]').
    return (
        part.startswith("function-")
        or "[" in part
        or part in ("str", "int", "float", "bool", "none")
        or part in _schema_names()[1]
    )


@functools.cache
def _schema_names() -> tuple[tuple[str, ...], frozenset[str]]:
    """Every field name of a scenario, and every tag of its tagged unions."""
    fields: set[str] = set()
    tags: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            disc = node.get("discriminator")
            if isinstance(disc, dict):
                tags.update(disc.get("mapping", {}))
            props = node.get("properties")
            if isinstance(props, dict):
                fields.update(props)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    # a field type without a JSON schema costs the hints, never the message itself
    with contextlib.suppress(PydanticUserError):
        walk(Scenario.model_json_schema())
    return tuple(sorted(fields)), frozenset(tags)


def _short(value: object) -> bool:
    return isinstance(value, int | float | str | bool) and len(repr(value)) <= 60


def _resolve_paths(data: dict[str, Any], base: Path, source: str) -> None:
    # Relative file references inside a scenario are relative to the scenario file.
    workload = data.get("workload")
    classes = workload.get("classes") if isinstance(workload, dict) else None
    for cls in classes if isinstance(classes, list) else []:
        arrivals = cls.get("arrivals") if isinstance(cls, dict) else None
        if isinstance(arrivals, dict) and isinstance(arrivals.get("path"), str):
            p = Path(arrivals["path"]).expanduser()
            if not p.is_absolute():
                arrivals["path"] = str((base / p).resolve())
    fleet = data.get("fleet")
    model = fleet.get("model") if isinstance(fleet, dict) else None
    if isinstance(fleet, dict) and isinstance(model, dict) and "config_path" in model:
        where = f"{source}: fleet.model.config_path"
        raw = model.pop("config_path")
        if not isinstance(raw, str) or not raw:
            raise ScenarioError(f"{where}: should be the path of a config.json (got {raw!r})")
        p = Path(raw).expanduser()
        p = p if p.is_absolute() else base / p
        try:
            hf = json.loads(p.read_text())
        except OSError as exc:
            raise ScenarioError(f"{where}: cannot read {p} ({exc.strerror})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{where}: {p} is not valid JSON ({exc})") from None
        if not isinstance(hf, dict):
            raise ScenarioError(f"{where}: {p} should hold a JSON object of config fields")
        fleet["model"] = {**hf, **model}


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file.

    Relative paths inside the file (trace files, model ``config_path``) are resolved
    against the file's directory, and the trace files a class replays are read (and
    cached), so that a missing or malformed trace is reported here.

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
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not a text file (not UTF-8)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise ScenarioError(f"{p}:{where}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{p}: expected a mapping with name, horizon, workload and fleet")
    _resolve_paths(data, p.parent, str(p))
    scenario = validate_scenario(data, source=str(p))
    check_trace_files(scenario, source=str(p))
    return scenario


def validate_scenario(data: dict[str, Any], *, source: str = "scenario") -> Scenario:
    """Validate a mapping into a :class:`Scenario`, raising :class:`ScenarioError`.

    Examples
    --------
    >>> validate_scenario({"name": ""}, source="demo")
    Traceback (most recent call last):
    ...
    sim.scenario_io.ScenarioError: demo: name: String should have at least 1 character (and 3 more)
    """
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(format_validation_error(exc, source=source, data=data)) from None


def check_trace_files(scenario: Scenario, *, source: str = "scenario") -> None:
    """Read every trace the scenario replays, raising :class:`ScenarioError` if one is bad.

    The traces are parsed exactly as a run parses them (the same columns), so the run then
    finds them in the per-process cache.
    """
    for i, cls in enumerate(scenario.workload.classes):
        arrivals = cls.arrivals
        if not isinstance(arrivals, TraceArrivals):
            continue
        where = f"{source}: workload.classes.{i}.arrivals.path"
        try:
            arrivals.load(
                read_input_tokens=cls.prompt_tokens is None,
                read_output_tokens=cls.output_tokens is None,
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ScenarioError(f"{where}: cannot read trace {arrivals.path} ({reason})") from None
        except ValueError as exc:
            raise ScenarioError(f"{where}: {exc}") from None


def dump_scenario(scenario: Scenario) -> str:
    """The scenario with every default filled in, as YAML (what was actually simulated).

    :func:`load_scenario` reads it back into an equal scenario.

    Examples
    --------
    >>> s = load_scenario("scenarios/chat-startup.yaml")
    >>> Scenario.model_validate(yaml.safe_load(dump_scenario(s))) == s
    True
    """
    # Python mode keeps inf as a float (JSON mode would write null); tuples become lists.
    data = _plain(scenario.model_dump(mode="python", by_alias=True))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
