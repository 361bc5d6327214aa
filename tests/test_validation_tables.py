"""The error-by-load tables of benchmarks/validate_model.py, on hand-made windows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def _validate_model() -> ModuleType:
    path = REPO / "benchmarks" / "validate_model.py"
    spec = importlib.util.spec_from_file_location("validate_model", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_load_bands_and_tp_table_by_hand() -> None:
    v = _validate_model()
    assert [v.band_name(lo, hi) for lo, hi in v.LOAD_BANDS] == [
        "0–25%",
        "25–50%",
        "50–75%",
        "≥ 75%",
    ]
    errs = {f"{m}_err": [0.10, -0.30, 0.02, -0.50] for m in v.LOAD_METRICS}
    win = pd.DataFrame(
        {"run": ["a", "a", "b", "b"], "tp": [1, 1, 4, 4],
         "band": ["0–25%", "0–25%", "≥ 75%", "≥ 75%"], **errs}
    )  # fmt: skip
    by_band = v.load_table(win, "band")
    assert list(by_band["slot occupancy"]) == ["0–25%", "≥ 75%"]  # empty bands are left out
    assert list(by_band["windows"]) == [2, 2]
    # MAPE of +10 % and −30 % is 20 %, their mean −10 %
    assert by_band["e2e mean MAPE (bias)"].iloc[0] == "20.0% (-10.0%)"
    assert by_band["ttft p99 MAPE (bias)"].iloc[1] == "26.0% (-24.0%)"
    by_tp = v.load_table(win, "tp")
    assert list(by_tp["tp"]) == [1, 4]
    assert list(by_tp["runs"]) == [1, 1]


def test_old_defaults_carry_no_ring_hop() -> None:
    # 'before' figures must not pick up the new ring-hop term from the profile
    v = _validate_model()
    assert v.OLD_DEFAULTS["allreduce_hop_s"] == 0.0
    assert set(v.SPLIT_FREE) == {
        "compute_efficiency", "bandwidth_efficiency", "overhead_s", "allreduce_hop_s"
    }  # fmt: skip
    assert v.SPLIT_FIXED["allreduce_latency_s"] == 0.0
