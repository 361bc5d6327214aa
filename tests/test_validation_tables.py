"""The error-by-load tables of benchmarks/validate_model.py, on hand-made windows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

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
    assert v.OLD_DEFAULTS["layer_s"] == 0.0
    assert set(v.SPLIT_FREE) == {
        "compute_efficiency", "layer_s", "allreduce_hop_s", "seq_cpu_s"
    }  # fmt: skip
    assert v.SPLIT_FIXED["allreduce_latency_s"] == 0.0
    # every constant of a fit is either free or held
    for free, fixed in [(v.SPLIT_FREE, v.SPLIT_FIXED), *v.SPLIT_FORMER.values()]:
        assert not set(free) & set(fixed)
        assert set(free) | set(fixed) | {"compute_efficiency"} >= set(v.PROFILE_KEYS) - {
            "compute_efficiency"
        }
    assert set(v.VLLM_FREE) | set(v.VLLM_FIXED) == set(v.PROFILE_KEYS) - {"compute_efficiency"}


def test_cpu_per_sequence_is_passed_around_the_scenario_block() -> None:
    # seq_cpu_s is no field of a scenario's step_time block: step_spec leaves it out and
    # replica_of writes it into the coefficient vector
    from sim.engine.spec import RooflineStep
    from sim.engine.steptime import OVERHEAD, SEQ_CPU, resolve_roofline

    v = _validate_model()
    assert v.OLD_DEFAULTS["seq_cpu_s"] == 0.0
    params = {"overhead_s": 1e-3, "seq_cpu_s": 3e-5, "layer_s": 1e-5}
    assert v.step_spec(params) == {"model": "roofline", "overhead_s": 1e-3}
    fleet = v.splitwise_fleet("llama2-70b", "a100-80gb", 2, params)
    vec = v.replica_of(fleet, params).coefficients.vector
    assert vec[SEQ_CPU] == 3e-5
    assert vec[OVERHEAD] == pytest.approx(1e-3 + 80 * 1e-5, rel=1e-12)  # 80 layers
    # not given: the profile's values
    amp = resolve_roofline(RooflineStep(), "a100-80gb-sxm")
    vec = v.replica_of(fleet, {"overhead_s": 1e-3}).coefficients.vector
    assert vec[SEQ_CPU] == amp.seq_cpu_s
    assert vec[OVERHEAD] == pytest.approx(1e-3 + 80 * amp.layer_s, rel=1e-12)


def test_shipped_profiles_are_the_reported_in_sample_fits_rounded() -> None:
    # benchmarks/validation.md (written by validate_model.py --fit) prints the in-sample fits;
    # profiles.yaml ships them rounded
    import yaml

    from sim.catalog.profiles import profiles

    text = (REPO / "benchmarks" / "validation.md").read_text(encoding="utf-8")
    block = text.split("In-sample fits:", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    fitted = yaml.safe_load(block)
    for key in ("vllm/hopper", "vllm/ampere"):
        name, family = key.split("/")
        shipped = profiles()[name][family]
        for field, value in fitted[key].items():
            assert shipped[field]["value"] == pytest.approx(value, rel=0.01, abs=1e-9), (
                key,
                field,
            )


def test_leave_one_out_fits_on_the_rest_and_evaluates_on_the_held_out_part() -> None:
    from sim.engine.fit_steptime import StepFit

    v = _validate_model()
    rows = pd.DataFrame({"model": ["a", "a", "b", "c"], "x": [1.0, 2.0, 3.0, 4.0]})
    splits = v.frame_splits(rows, "model", "model {}")
    assert [held for held, _, _ in splits] == ["model a", "model b", "model c"]
    for _, train, test in splits:
        assert set(train["model"]).isdisjoint(test["model"])
        assert len(train) + len(test) == len(rows)

    def fit(train: pd.DataFrame) -> StepFit:
        return StepFit({"overhead_s": float(train["x"].sum())}, ("overhead_s",), 0.0, 1)

    def evaluate(test: pd.DataFrame, p: object) -> str:
        return f"{list(test['x'])} {dict(p)['overhead_s']:g}"  # type: ignore[call-overload]

    out = v.leave_one_out(splits, fit, evaluate)
    # fitted on the others' x (sum), evaluated on the held-out rows, old defaults first
    assert [(h, f.params["overhead_s"], after) for h, f, _, after in out] == [
        ("model a", 7.0, "[1.0, 2.0] 7"),
        ("model b", 7.0, "[3.0] 7"),
        ("model c", 6.0, "[4.0] 6"),
    ]
    assert out[0][2] == f"[1.0, 2.0] {v.OLD_DEFAULTS['overhead_s']:g}"
