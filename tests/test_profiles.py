"""Engine versions as step-time profiles: the tp-dependent ring all-reduce cost, a profile
refused on a GPU family it was not fitted on (one line, exit 2), and the warning when a named
profile is used outside the data it was fitted on."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from sim.catalog import get_gpu, get_model
from sim.catalog.profiles import profile_families, profile_names, profiles, profiles_text
from sim.cli import main
from sim.engine.spec import RooflineStep
from sim.engine.steptime import (
    AR_STEP,
    OVERHEAD,
    ResolvedRoofline,
    profile_extrapolation,
    resolve_roofline,
    roofline_coefficients,
)
from sim.scenario import Scenario

DATA = Path(__file__).resolve().parent / "data"
GOOD = DATA / "good-tiny.yaml"


def _coeffs(spec: RooflineStep, gpu: str, tp: int):  # type: ignore[no-untyped-def]
    return roofline_coefficients(
        spec, model=get_model("llama-2-70b"), gpu=get_gpu(gpu), tp=tp, dtype="bf16",
        kv_dtype="bf16",
    )  # fmt: skip


def test_ring_allreduce_fixed_cost_grows_with_tp() -> None:
    spec = RooflineStep(overhead_s=0.01, allreduce_latency_s=2e-5, allreduce_hop_s=5e-6)
    for tp in (2, 4, 8):
        v = _coeffs(spec, "a100-80gb-sxm", tp).vector
        # 2 all-reduces per layer × 80 layers, each latency + 2(tp − 1) hops
        assert v[AR_STEP] == pytest.approx(2 * 80 * (2e-5 + 2 * (tp - 1) * 5e-6))
        # the profile's time per layer adds to the fixed cost (80 layers)
        layer = resolve_roofline(spec, "a100-80gb-sxm").layer_s
        assert v[OVERHEAD] == pytest.approx(0.01 + 80 * layer, rel=1e-12)
    assert _coeffs(spec, "a100-80gb-sxm", 1).vector[AR_STEP] == 0.0


def test_engine_version_profiles_exist_with_their_families() -> None:
    names = profile_names()
    assert {"vllm", "vllm-2026", "splitwise-2023", "trtllm"} <= set(names)
    assert profile_families("vllm-2026") == ("hopper",)
    assert profile_families("splitwise-2023") == ("ampere",)
    assert profile_families("vllm") is None
    # the default takes, per family, the engine version measured on it
    table = profiles()
    assert table["vllm"]["hopper"] == table["vllm-2026"]["hopper"]
    assert table["vllm"]["ampere"] == table["splitwise-2023"]["ampere"]
    # the 2023 stack pays several times the current one's fixed cost per iteration
    hop = resolve_roofline(RooflineStep(profile="vllm-2026"), "h100-sxm")
    amp = resolve_roofline(RooflineStep(profile="splitwise-2023"), "a100-80gb-sxm")

    # (one iteration of the same 80-layer model at batch 1, all-reduces aside)
    def fixed(r: ResolvedRoofline) -> float:
        return r.overhead_s + 80 * r.layer_s + r.seq_cpu_s

    assert fixed(amp) > 3 * fixed(hop)
    assert amp.allreduce_hop_s > 0.0


def test_profile_on_another_family_is_refused_naming_what_exists() -> None:
    with pytest.raises(ValueError, match="fitted on ampere GPUs, not on h100-sxm") as err:
        resolve_roofline(RooflineStep(profile="splitwise-2023"), "h100-sxm")
    assert profiles_text() in str(err.value)
    with pytest.raises(ValidationError) as verr:
        Scenario.model_validate(
            {
                "name": "t",
                "horizon": {"duration_s": 60},
                "workload": {"classes": [{
                    "name": "c", "arrivals": {"process": "poisson", "rate_rps": 1.0},
                    "prompt_tokens": {"dist": "fixed", "value": 100},
                    "output_tokens": {"dist": "fixed", "value": 10},
                }]},
                "fleet": {"model": "llama-3.1-8b", "gpu": "h100-sxm",
                          "step_time": {"model": "roofline", "profile": "splitwise-2023"}},
            }
        )  # fmt: skip
    errs = verr.value.errors()
    assert len(errs) == 1
    assert errs[0]["loc"] == ("fleet", "step_time", "profile")


@pytest.mark.parametrize(
    ("profile", "words"),
    [
        ("splitwise-2023", ("fleet.step_time.profile", "fitted on ampere GPUs",
                            "vllm-2026 (hopper)")),
        ("vllm-2099", ("fleet.step_time.profile", "unknown step-time profile 'vllm-2099'",
                       "splitwise-2023 (ampere)")),
    ],
)  # fmt: skip
def test_cli_bad_profile_is_one_line_exit_2(
    profile: str, words: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", str(GOOD), "--set", f"fleet.step_time.profile={profile}"])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0]


def test_named_profile_outside_its_data_warns() -> None:
    r = resolve_roofline(RooflineStep(profile="vllm-2026"), "h100-sxm")
    assert profile_extrapolation(r, gpu="h100-sxm", tp=4) == []
    assert profile_extrapolation(r, gpu="h100-sxm", tp=8) == [
        "step-time profile 'vllm-2026' was fitted at tp 1-4, not tp 8: extrapolating"
    ]
    with pytest.warns(UserWarning, match="fitted on h100-sxm, not h200-sxm"):
        _coeffs(RooflineStep(profile="vllm-2026"), "h200-sxm", 2)
    # inside the data, or with the default profile: silent
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _coeffs(RooflineStep(profile="splitwise-2023"), "a100-80gb-sxm", 4)
        _coeffs(RooflineStep(), "h200-sxm", 8)


def test_cpu_per_sequence_is_a_profile_constant_with_its_origin() -> None:
    hop = resolve_roofline(RooflineStep(), "h100-sxm")
    assert hop.seq_cpu_s == profiles()["vllm-2026"]["hopper"]["seq_cpu_s"]["value"] > 0.0
    assert hop.origin["seq_cpu_s"] == "profile vllm/hopper"
    assert hop.as_dict()["seq_cpu_s"] == hop.seq_cpu_s
    # the 2023 A100 stack pays far more per sequence; the stack fitted without it holds it
    # at 0 rather than take the Hopper default
    amp = resolve_roofline(RooflineStep(), "a100-80gb-sxm")
    assert amp.seq_cpu_s == profiles()["splitwise-2023"]["ampere"]["seq_cpu_s"]["value"]
    assert amp.seq_cpu_s > 10 * hop.seq_cpu_s
    assert resolve_roofline(RooflineStep(profile="trtllm"), "h100-sxm").seq_cpu_s == 0.0
    # a family with no data takes the global default (the vllm/hopper fit)
    other = resolve_roofline(RooflineStep(), "l40s")
    assert other.seq_cpu_s == hop.seq_cpu_s
    # an engine property: a scenario's step_time block does not set it
    with pytest.raises(ValidationError):
        RooflineStep.model_validate({"seq_cpu_s": 1e-5})


def test_time_per_layer_is_a_profile_constant_with_its_origin() -> None:
    hop = resolve_roofline(RooflineStep(), "h100-sxm")
    assert hop.layer_s == profiles()["vllm-2026"]["hopper"]["layer_s"]["value"] > 0.0
    assert hop.origin["layer_s"] == "profile vllm/hopper"
    assert resolve_roofline(RooflineStep(profile="trtllm"), "h100-sxm").layer_s == 0.0
    assert resolve_roofline(RooflineStep(), "l40s").layer_s == hop.layer_s
    with pytest.raises(ValidationError):
        RooflineStep.model_validate({"layer_s": 1e-5})


def test_schedule_ahead_comes_from_the_engine_profile_unless_the_scenario_says() -> None:
    from sim.engine.replica import build_replica
    from sim.engine.spec import FleetSpec

    def ahead(**kw: object) -> bool:
        data: dict[str, object] = {"model": "llama-3.1-8b", "gpu": "h100-sxm", **kw}
        return build_replica(FleetSpec.model_validate(data)).schedule_ahead

    assert ahead()  # vllm on Hopper: the 2026 vLLM, asynchronous scheduling
    assert not ahead(gpu="a100-80gb-sxm", model="llama-2-7b")  # the 2023 stack
    assert ahead(step_time={"model": "roofline", "profile": "trtllm"})
    assert not ahead(engine={"schedule_ahead": False})
    assert not ahead(step_time={"model": "constant", "step_s": 0.01})  # queueing anchor
    assert ahead(step_time={"model": "constant", "step_s": 0.01}, engine={"schedule_ahead": True})
