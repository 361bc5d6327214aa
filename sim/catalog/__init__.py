"""GPU and model catalog: hardware datasheet figures and LLM architectures.

Everything here is an immutable value built from data files shipped inside the package
(``gpus.csv``, ``models.yaml``; where each number comes from is in ``SOURCES.md``).
Parameter counts and KV-cache sizes are *computed* from the architecture, never typed in,
so a user's own Hugging Face ``config.json`` works exactly like a catalog entry.

Conventions
-----------
- GPU memory is ``memory_gib``: a datasheet "80 GB" of HBM is taken as 80 GiB, which is the
  physical capacity of the stacks (nvidia-smi reports about 79.6 GiB usable on an H100 80GB;
  the scenario's memory fraction absorbs the difference). A GDDR card's decimal "24 GB" with
  ECC reports less (an L4: 22.5 GiB): ``memory_reported_gib`` records that total, and
  ``GpuSpec.device_memory_gib`` is the figure the KV-cache sizing uses.
- TFLOPs are dense (no 2:4 sparsity) tensor-core peaks per GPU.
- ``interconnect_gb_s`` is the per-GPU bandwidth in one direction (GB/s, 10^9 bytes/s) of the
  link used for tensor-parallel all-reduce: NVLink / Infinity Fabric where present,
  otherwise PCIe.
"""

from __future__ import annotations

from sim.catalog._load import get_gpu, get_model, list_gpus, list_models
from sim.catalog.specs import DTYPE_BYTES, GpuSpec, ModelSpec, model_from_hf_config

__all__ = [
    "DTYPE_BYTES",
    "GpuSpec",
    "ModelSpec",
    "get_gpu",
    "get_model",
    "list_gpus",
    "list_models",
    "model_from_hf_config",
]
