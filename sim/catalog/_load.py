"""The shipped catalog: read the data files, resolve names and aliases, cache the specs.

This is the only place that touches the data files. They are read with
:mod:`importlib.resources`, so the catalog works from a wheel or a zip as well as from a
source checkout, and never depends on the working directory. Each file is parsed once per
process (``functools.lru_cache``) into immutable :class:`~sim.catalog.GpuSpec` /
:class:`~sim.catalog.ModelSpec` values behind read-only mappings.

The spec classes are defined in :mod:`sim.catalog`, which re-exports the lookups below;
they are imported inside the builders so that importing this module never needs the
package to be fully initialised.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any

import yaml

from sim.catalog.specs import GpuSpec, ModelSpec, model_from_hf_config

__all__ = [
    "get_gpu",
    "get_model",
    "list_gpus",
    "list_models",
    "read_gpu_rows",
    "read_model_entries",
]

_PACKAGE = "sim.catalog"


def _read_text(filename: str) -> str:
    return resources.files(_PACKAGE).joinpath(filename).read_text(encoding="utf-8")


def read_gpu_rows() -> list[dict[str, str]]:
    """Return the rows of ``gpus.csv`` as dictionaries of strings (one per GPU).

    Returns
    -------
    list of dict
        Column name → raw cell text; empty cells are empty strings.

    Raises
    ------
    ValueError
        If a row has more or fewer cells than the header.

    Examples
    --------
    >>> rows = read_gpu_rows()
    >>> rows[0]["name"]
    'h100-sxm'
    """
    reader = csv.DictReader(io.StringIO(_read_text("gpus.csv")))
    rows: list[dict[str, str]] = []
    for line_no, row in enumerate(reader, start=2):
        # csv puts surplus cells under the key None and fills missing ones with None.
        if None in row or any(value is None for value in row.values()):
            raise ValueError(f"gpus.csv line {line_no}: cell count does not match the header")
        rows.append(dict(row))
    return rows


def read_model_entries() -> dict[str, dict[str, Any]]:
    """Return the entries of ``models.yaml`` keyed by canonical model name.

    Returns
    -------
    dict
        Model name → mapping with keys ``source``, ``aliases`` (optional) and ``config``.

    Raises
    ------
    ValueError
        If the file is not a mapping of mappings, or an entry lacks ``source`` or ``config``.

    Examples
    --------
    >>> entries = read_model_entries()
    >>> entries["llama-3.1-8b"]["config"]["hidden_size"]
    4096
    """
    data = yaml.safe_load(_read_text("models.yaml"))
    if not isinstance(data, dict):
        raise ValueError("models.yaml: top level must be a mapping of model name -> entry")
    entries: dict[str, dict[str, Any]] = {}
    for name, entry in data.items():
        if not isinstance(entry, dict):
            raise ValueError(f"models.yaml: {name}: entry must be a mapping")
        for key in ("source", "config"):
            if key not in entry:
                raise ValueError(f"models.yaml: {name}.{key} is missing")
        if not isinstance(entry["config"], dict):
            raise ValueError(f"models.yaml: {name}.config must be a mapping")
        entries[str(name)] = entry
    return entries


# --- named lookups ----------------------------------------------------------------------

_GPU_VENDOR_WORDS = frozenset({"nvidia", "amd", "instinct", "tesla"})
_MODEL_SUFFIX_WORDS = frozenset({"instruct", "chat", "hf"})


def _gpu_key(name: str) -> str:
    """Lower-case, vendor words dropped, punctuation and spaces removed."""
    words = re.split(r"[^0-9a-z]+", name.lower())
    return "".join(w for w in words if w not in _GPU_VENDOR_WORDS)


def _model_key(name: str) -> str:
    """Lower-case, org prefix dropped, instruct/chat/hf dropped, punctuation removed."""
    base = name.strip().lower().rsplit("/", 1)[-1]
    words = re.split(r"[-_\s]+", base)
    if words and words[0] == "meta" and len(words) > 1:  # "Meta-Llama-3.1-8B"
        words = words[1:]
    return re.sub(r"[^0-9a-z]", "", "".join(w for w in words if w not in _MODEL_SUFFIX_WORDS))


def _optional_float(row: Mapping[str, str], column: str) -> float | None:
    text = row[column].strip()
    return float(text) if text else None


def _index(
    names: list[str], aliases: Mapping[str, list[str]], key: Callable[[str], str], kind: str
) -> dict[str, str]:
    index: dict[str, str] = {}
    for canonical in names:
        for alias in [canonical, *aliases.get(canonical, [])]:
            k = key(alias)
            if index.get(k, canonical) != canonical:
                raise ValueError(f"{kind} alias {alias!r} is ambiguous ({index[k]}, {canonical})")
            index[k] = canonical
    return index


def _mib_to_gib(mib: float | None) -> float | None:
    return None if mib is None else mib / 1024.0


@lru_cache(maxsize=1)
def _gpu_catalog() -> tuple[Mapping[str, GpuSpec], Mapping[str, str]]:

    specs: dict[str, GpuSpec] = {}
    aliases: dict[str, list[str]] = {}
    for row in read_gpu_rows():
        name = row["name"].strip()
        try:
            specs[name] = GpuSpec(
                name=name,
                memory_gib=float(row["memory_gib"]),
                mem_bandwidth_tb_s=float(row["mem_bandwidth_tb_s"]),
                bf16_tflops=float(row["bf16_tflops"]),
                fp8_tflops=_optional_float(row, "fp8_tflops"),
                interconnect_gb_s=float(row["interconnect_gb_s"]),
                tdp_w=_optional_float(row, "tdp_w"),
                source=row["source"].strip(),
                fp4_tflops=_optional_float(row, "fp4_tflops"),
                memory_reported_gib=_mib_to_gib(_optional_float(row, "memory_reported_mib")),
            )
        except ValueError as err:
            raise ValueError(f"gpus.csv row {name!r}: {err}") from err
        aliases[name] = [a.strip() for a in row["aliases"].split(";") if a.strip()]
    index = _index(list(specs), aliases, _gpu_key, "GPU")
    return MappingProxyType(specs), MappingProxyType(index)


@lru_cache(maxsize=1)
def _model_catalog() -> tuple[Mapping[str, ModelSpec], Mapping[str, str]]:

    specs: dict[str, ModelSpec] = {}
    aliases: dict[str, list[str]] = {}
    for name, entry in read_model_entries().items():
        spec = model_from_hf_config(entry["config"], name=name)
        specs[name] = dataclasses.replace(spec, source=str(entry["source"]))
        aliases[name] = [str(a) for a in entry.get("aliases") or []]
    index = _index(list(specs), aliases, _model_key, "model")
    return MappingProxyType(specs), MappingProxyType(index)


def get_gpu(name: str) -> GpuSpec:
    """Look up a GPU by catalog name or alias.

    Matching ignores case, spaces, punctuation and vendor words, so ``"h100"``,
    ``"H100 SXM5"``, ``"NVIDIA H100 80GB HBM3"`` (nvidia-smi's name) and ``"h100-sxm"`` are
    the same GPU. Bare ``"h100"``/``"h200"`` mean the SXM parts, ``"a100"`` and
    ``"a100-80gb"`` the 80 GB SXM4 part.

    Parameters
    ----------
    name : str
        Catalog name (see :func:`list_gpus`) or alias.

    Returns
    -------
    GpuSpec
        The shared, immutable spec.

    Raises
    ------
    KeyError
        If the name is unknown; the message lists the catalog names.

    Examples
    --------
    >>> get_gpu("H100 SXM5").mem_bandwidth_tb_s
    3.35
    """
    specs, index = _gpu_catalog()
    canonical = index.get(_gpu_key(name))
    if canonical is None:
        raise KeyError(f"unknown GPU {name!r}; known GPUs: {', '.join(specs)}")
    return specs[canonical]


def get_model(name: str) -> ModelSpec:
    """Look up a model by catalog name, alias or Hugging Face repo id.

    Matching ignores case and punctuation, drops an ``org/`` prefix and the words
    instruct / chat / hf, so ``"meta-llama/Llama-3.1-8B-Instruct"`` is ``llama-3.1-8b``
    (instruction tuning does not change the architecture).

    Parameters
    ----------
    name : str
        Catalog name (see :func:`list_models`), alias or Hugging Face repo id.

    Returns
    -------
    ModelSpec
        The shared, immutable spec; ``source`` is the URL of its ``config.json``.

    Raises
    ------
    KeyError
        If the name is unknown; the message lists the catalog names.

    Examples
    --------
    >>> get_model("Qwen/Qwen2.5-7B-Instruct").name
    'qwen-2.5-7b'
    """
    specs, index = _model_catalog()
    canonical = index.get(_model_key(name))
    if canonical is None:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(specs)}")
    return specs[canonical]


def list_gpus() -> list[str]:
    """Catalog GPU names, in file order.

    Examples
    --------
    >>> "h100-sxm" in list_gpus()
    True
    """
    return list(_gpu_catalog()[0])


def list_models() -> list[str]:
    """Catalog model names, in file order.

    Examples
    --------
    >>> list_models()[0]
    'llama-3.1-8b'
    """
    return list(_model_catalog()[0])
