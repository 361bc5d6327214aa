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
    "PROFILE_FIELDS",
    "PROFILE_ONLY_FIELDS",
    "ROOFLINE_FIELDS",
    "gpu_family",
    "profile_entry",
    "profile_families",
    "profile_fitted_range",
    "profile_names",
    "profile_schedules_ahead",
    "profiles",
    "profiles_text",
]

ROOFLINE_FIELDS = (
    "compute_efficiency",
    "bandwidth_efficiency",
    "overhead_s",
    "allreduce_latency_s",
    "allreduce_hop_s",
    "link_efficiency",
    "small_link_efficiency",
    "small_message_mib",
)
# Constants a profile carries that a scenario's ``step_time:`` block does not set, properties
# of the engine, not of a fleet: the serving stack's CPU time per running sequence per
# iteration (scheduler, sampler, detokenisation and streaming of each sequence), and its fixed
# time per transformer layer per iteration (the layer's kernels each take a minimum time
# however small the batch: launch, synchronisation, a latency-bound kernel's floor).
PROFILE_ONLY_FIELDS = ("seq_cpu_s", "layer_s")
PROFILE_FIELDS = ROOFLINE_FIELDS + PROFILE_ONLY_FIELDS
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


def profile_families(name: str) -> tuple[str, ...] | None:
    """The GPU families profile ``name`` was fitted on, or None when it serves every family
    (the default ``vllm``, which falls back to its Hopper values).

    Examples
    --------
    >>> profile_families("splitwise-2023"), profile_families("vllm")
    (('ampere',), None)
    """
    fams = _profiles_file()["profiles"][name].get("families")
    return None if fams is None else tuple(str(f) for f in fams)


def profile_fitted_range(name: str, family: str) -> Mapping[str, Any]:
    """What profile ``name``'s ``family`` entry was fitted on (``gpus``, ``tp`` as
    ``[low, high]``, ``models``); empty when the profile does not say."""
    fitted = _profiles_file()["profiles"][name].get("fitted") or {}
    return MappingProxyType(dict(fitted.get(family) or {}))


def profiles_text() -> str:
    """One line naming every profile and the GPU families it was fitted on.

    Examples
    --------
    >>> "splitwise-2023 (ampere)" in profiles_text()
    True
    """
    parts = []
    for name in profile_names():
        fams = profile_families(name)
        if fams is None:
            prof = _profiles_file()["profiles"][name]
            have = [f for f in ("hopper", "ampere", "ada") if f in prof]
            parts.append(f"{name} (default; fitted on {', '.join(have)}, other GPUs take hopper)")
        else:
            parts.append(f"{name} ({', '.join(fams)})")
    return ", ".join(parts)


def _global_defaults() -> dict[str, float]:
    d = _profiles_file()["defaults"]
    return {k: float(d[k]) for k in PROFILE_FIELDS}


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


def profile_entry(name: str, family: str, key: str) -> tuple[Any, str] | None:
    """Profile ``name``'s value of ``key`` for GPU ``family`` — the family's entry, else the
    profile's ``default`` entry — and which of the two gave it; None when neither does.

    Examples
    --------
    >>> profile_entry("splitwise-2023", "ampere", "schedule_ahead")
    (False, 'ampere')
    """
    prof = _profiles_file()["profiles"][name]
    for fam in (family, "default"):
        entry = (prof.get(fam) or {}).get(key)
        if entry is not None:
            return (entry["value"] if isinstance(entry, dict) else entry), fam
    return None


def profile_schedules_ahead(name: str, gpu_name: str) -> bool:
    """Does profile ``name``'s engine plan the next iteration while one runs (vLLM's
    asynchronous scheduling) on ``gpu_name``'s family? From the profile's entry
    ``schedule_ahead`` (:func:`profile_entry`), else the global default.

    Examples
    --------
    >>> [profile_schedules_ahead("vllm", gpu) for gpu in ("h100-sxm", "a100-80gb-sxm")]
    [True, False]
    """
    found = profile_entry(name, gpu_family(gpu_name), "schedule_ahead")
    if found is not None:
        return bool(found[0])
    return bool(_profiles_file()["defaults"].get("schedule_ahead", False))
