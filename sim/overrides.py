"""Dotted-path overrides of a validated config: ``{"fleet.replicas": 4}`` applied to a copy.

Works on any pydantic model (a :class:`~sim.scenario.Scenario` in practice): the path is
walked alongside the validated objects, which know their field names, so a misspelt path is
a ``KeyError`` naming it rather than an "unknown field" later. Lists are indexed by position
or, for lists of named items such as ``workload.classes``, by name.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

__all__ = ["apply_overrides", "list_index"]


def apply_overrides(scenario: BaseModel, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The scenario as a plain mapping with ``overrides`` applied, not yet validated.

    :meth:`Scenario.with_overrides` validates the result; the CLI validates it itself so
    that its error messages can name fields precisely.

    Raises
    ------
    KeyError
        If a path names no field of the scenario.
    """
    data = _thaw(scenario.model_dump(mode="python", by_alias=True))
    for path, value in overrides.items():
        _set_path(data, scenario, str(path), copy.deepcopy(value))
    return data


def _thaw(obj: Any) -> Any:
    # model_dump keeps tuples; the path setter needs mutable lists and dicts.
    if isinstance(obj, dict):
        return {k: _thaw(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_thaw(v) for v in obj]
    return obj


def _field_names(model: BaseModel) -> dict[str, str]:
    """Input key (alias or name) → attribute name of every field of ``model``."""
    out: dict[str, str] = {}
    for name, info in type(model).model_fields.items():
        out[info.alias or name] = name
        out[name] = name
    return out


def _child(obj: Any, key: str | int) -> Any:
    """The object under ``key`` of a model, mapping or sequence (``None`` if unknown)."""
    if isinstance(obj, BaseModel) and isinstance(key, str):
        name = _field_names(obj).get(key)
        return getattr(obj, name) if name is not None else None
    if isinstance(obj, Mapping):
        return obj.get(key)
    if isinstance(obj, list | tuple) and isinstance(key, int):
        return obj[key]
    return None


def _set_path(data: dict[str, Any], root: BaseModel, path: str, value: Any) -> None:
    # ``data`` is walked alongside the validated objects, which know their field names: a
    # misspelt path is a KeyError here rather than an "unknown field" later. Free-form
    # mappings (an inline model config) and sections that were unset accept any key.
    parts = path.split(".")
    node: Any = data
    obj: Any = root
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[: i + 1])
        key: str | int
        if isinstance(node, list):
            key = list_index(node, part, where)
        elif isinstance(node, dict):
            key = part
            if isinstance(obj, BaseModel) and part not in _field_names(obj):
                fields = ", ".join(f.alias or n for n, f in type(obj).model_fields.items())
                parent = ".".join(parts[:i]) or "the scenario"
                raise KeyError(f"no field {where!r} ({parent} has: {fields})")
            if not last and node.get(part) is None:
                node[part] = {}  # an optional section that was unset
        else:
            parent = ".".join(parts[:i])
            raise KeyError(f"no field {where!r} ({parent!r} is a value, not a section)")
        if last:
            node[key] = value
        else:
            node = node[key]
            obj = _child(obj, key)


def list_index(node: list[Any], part: str, where: str) -> int:
    if part.lstrip("-").isdigit():
        idx = int(part)
        if -len(node) <= idx < len(node):
            return idx
        raise KeyError(f"no item {where!r} (index out of range: the list has {len(node)})")
    for idx, item in enumerate(node):
        if isinstance(item, dict) and item.get("name") == part:
            return idx
    names = ", ".join(str(item.get("name")) for item in node if isinstance(item, dict))
    raise KeyError(f"no item {where!r} (known names: {names})")
