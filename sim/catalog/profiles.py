"""Named step-time profiles (``profiles.yaml``): the roofline constants fitted per serving
stack and GPU family, with the global defaults, read from the catalogue's data file.

Catalogue data like the GPU and model tables: the engine and the scenario's validation
read it from here, and nothing below reads files.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any

import yaml

__all__ = [
    "DEFAULT_PROFILE",
    "GLOBAL_DEFAULTS",
    "ROOFLINE_FIELDS",
    "gpu_family",
    "profile_names",
    "profiles",
]

ROOFLINE_FIELDS = (
    "compute_efficiency",
    "bandwidth_efficiency",
    "overhead_s",
    "allreduce_latency_s",
)
DEFAULT_PROFILE = "vllm"


@lru_cache(maxsize=1)
def _profiles_file() -> dict[str, Any]:
    text = resources.files("sim.catalog").joinpath("profiles.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "profiles" not in data or "defaults" not in data:
        raise ValueError("sim/catalog/profiles.yaml: needs 'defaults' and 'profiles' sections")
    return data


def profiles() -> Mapping[str, Any]:
    """The named step-time profiles of ``sim/catalog/profiles.yaml`` (read-only)."""
    return MappingProxyType(_profiles_file()["profiles"])


def profile_names() -> list[str]:
    """Names of the step-time profiles, sorted."""
    return sorted(_profiles_file()["profiles"])


def _global_defaults() -> dict[str, float]:
    d = _profiles_file()["defaults"]
    return {k: float(d[k]) for k in ROOFLINE_FIELDS}


GLOBAL_DEFAULTS: Mapping[str, float] = MappingProxyType(_global_defaults())
"""Roofline constants used where neither the scenario nor the profile gives a value."""


def gpu_family(gpu_name: str) -> str:
    """The profile family of a catalog GPU name (``hopper``, ``ampere``, ``ada`` or
    ``default``).

    Examples
    --------
    >>> gpu_family("h100-sxm"), gpu_family("a100-80gb-sxm"), gpu_family("mi300x")
    ('hopper', 'ampere', 'default')
    """
    name = gpu_name.lower()
    for family, prefixes in _profiles_file()["families"].items():
        if any(name.startswith(str(p)) for p in prefixes):
            return str(family)
    return "default"
