"""Calibration: fits recover known coefficients; YAML, CLI errors and profile resolution."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from sim.catalog.profiles import profiles
from sim.cli.calibrate import main
from sim.engine.calibrate import CalibrationResult, fit_step_model
from sim.engine.replica import build_replica
from sim.engine.spec import FleetSpec, LinearStep, RooflineStep
from sim.engine.steptime import resolve_roofline


def _samples(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    d = rng.integers(0, 200, n).astype(float)
    p = np.where(rng.random(n) < 0.5, rng.integers(1, 4000, n), 0).astype(float)
    d[(d == 0) & (p == 0)] = 1.0
    kv = rng.integers(100, 300_000, n).astype(float)
    return pd.DataFrame({"decode_seqs": d, "prefill_tokens": p, "kv_tokens": kv})


def test_linear_fit_recovers_coefficients_exactly() -> None:
    s = _samples()
    true = (0.004, 2e-5, 1e-4, 3e-8)
    s["step_s"] = (
        true[0] + true[1] * s.decode_seqs + true[2] * s.prefill_tokens + true[3] * s.kv_tokens
    )
    r = fit_step_model(s, model="linear")
    assert isinstance(r.spec, LinearStep)
    got = (r.spec.c0_s, r.spec.c_decode_s, r.spec.c_prefill_token_s, r.spec.c_kv_token_s)
    assert got == pytest.approx(true, rel=1e-6)
    assert r.mape < 1e-6


def test_roofline_fit_recovers_constants() -> None:
    fleet = FleetSpec.model_validate({"model": "llama-3.1-8b", "gpu": "h100-sxm", "tp": 2})
    # (the all-reduce latency is collinear with the overhead: it stays at the profile's)
    true = RooflineStep(compute_efficiency=0.45, bandwidth_efficiency=0.7, overhead_s=0.002)
    v = build_replica(fleet.model_copy(update={"step_time": true})).coefficients
    s = _samples(150, seed=1)
    s["step_s"] = [
        v.time_s(a + b, a, b, c, c)
        for a, b, c in zip(s.decode_seqs, s.prefill_tokens, s.kv_tokens, strict=True)
    ]
    r = fit_step_model(s, model="roofline", fleet=fleet)
    assert isinstance(r.spec, RooflineStep)
    assert r.spec.compute_efficiency == pytest.approx(0.45, rel=0.02)
    assert r.spec.bandwidth_efficiency == pytest.approx(0.7, rel=0.02)
    assert r.spec.overhead_s == pytest.approx(0.002, abs=1e-4)
    assert r.mape < 0.5


def test_mape_and_residuals() -> None:
    s = pd.DataFrame(
        {"decode_seqs": [1.0, 1.0], "prefill_tokens": [0.0, 0.0], "kv_tokens": [0.0, 0.0],
         "step_s": [1.0, 3.0]}
    )  # fmt: skip
    r = fit_step_model(s, model="linear")
    # one constant fitted to relative errors: c minimises (c-1)^2 + (c/3-1)^2 -> c = 1.2
    assert r.spec.c0_s + r.spec.c_decode_s == pytest.approx(1.2, rel=1e-6)
    assert list(r.residuals["rel_err"]) == pytest.approx([0.2, -0.6])
    assert r.mape == pytest.approx(40.0)


def test_yaml_round_trips_into_a_valid_step_time() -> None:
    spec = RooflineStep(profile="trtllm", overhead_s=0.0015)
    text = CalibrationResult(spec, 1.0, pd.DataFrame()).to_yaml()
    block = yaml.safe_load(text)
    f = FleetSpec.model_validate({"model": "llama-3.1-8b", "gpu": "h100-sxm", **block})
    assert f.step_time == spec
    lin = LinearStep(model="linear", c0_s=0.01, c_decode_s=1e-4)
    block = yaml.safe_load(CalibrationResult(lin, 1.0, pd.DataFrame()).to_yaml())
    assert FleetSpec.model_validate({"model": "x", "gpu": "h100-sxm", **block}).step_time == lin


def test_main_writes_yaml_and_plot(tmp_path: Path) -> None:
    s = _samples(40)
    s["step_s"] = 0.003 + 1e-5 * s.decode_seqs + 5e-5 * s.prefill_tokens
    src = tmp_path / "steps.csv"
    s.to_csv(src, index=False)
    out, png = tmp_path / "p.yaml", tmp_path / "r.png"
    assert main([str(src), "-o", str(out), "--plot", str(png)]) == 0
    assert yaml.safe_load(out.read_text())["step_time"]["model"] == "linear"
    assert png.stat().st_size > 0


@pytest.mark.parametrize(
    ("content", "name", "words"),
    [
        ("decode_seqs,prefill_tokens,step_s\n1,0,0.01\n", "a.csv", ("a.csv", "kv_tokens")),
        ("decode_seqs,prefill_tokens,kv_tokens,step_s\n1,0,x,0.01\n", "b.csv", ("kv_tokens",)),
        ('{"input_lens": [1]}', "c.json", ("c.json", "scenario")),
        ("not json", "d.json", ("d.json",)),
        (None, "missing.csv", ("missing.csv",)),
    ],
)
def test_main_bad_input_is_one_line_and_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, name: str,
    words: tuple[str, ...],
) -> None:  # fmt: skip
    src = tmp_path / name
    if content is not None:
        src.write_text(content)
    assert main([str(src), "-o", str(tmp_path / "o.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    for w in words:
        assert w in err


def test_main_request_json_missing_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scen = Path(__file__).resolve().parent.parent / "scenarios"
    scenario = sorted(scen.glob("*.yaml"))[0]
    src = tmp_path / "bench.json"
    src.write_text(json.dumps({"input_lens": [10], "output_lens": [5]}))
    assert main([str(src), "-o", str(tmp_path / "o.yaml"), "--scenario", str(scenario)]) == 2
    err = capsys.readouterr().err.strip()
    assert "bench.json" in err and "ttfts" in err and len(err.splitlines()) == 1


def test_default_step_time_resolves_to_vllm_hopper() -> None:
    f = FleetSpec.model_validate({"model": "llama-3.1-8b", "gpu": "h100-sxm"})
    r = resolve_roofline(f.step_time, f.gpu)
    hop = profiles()["vllm"]["hopper"]
    assert (r.profile, r.family) == ("vllm", "hopper")
    for k in ("compute_efficiency", "bandwidth_efficiency", "overhead_s", "allreduce_latency_s"):
        assert getattr(r, k) == pytest.approx(hop[k]["value"])
        assert hop[k]["fitted_on"] and "fit_error" in hop[k]


def test_explicit_field_overrides_profile() -> None:
    r = resolve_roofline(RooflineStep(profile="trtllm", overhead_s=0.0042), "h200-sxm")
    assert r.overhead_s == 0.0042 and r.origin["overhead_s"] == "step_time"
    assert r.compute_efficiency == pytest.approx(
        profiles()["trtllm"]["hopper"]["compute_efficiency"]["value"]
    )
    a100 = resolve_roofline(RooflineStep(), "a100-80gb-sxm")
    assert a100.family == "ampere"
    assert a100.overhead_s == pytest.approx(profiles()["vllm"]["ampere"]["overhead_s"]["value"])


def test_unknown_profile_is_a_validation_error_naming_the_field() -> None:
    from sim.scenario_io import format_validation_error

    with pytest.raises(ValidationError) as exc:
        FleetSpec.model_validate(
            {"model": "llama-3.1-8b", "gpu": "h100-sxm",
             "step_time": {"model": "roofline", "profile": "tgi"}}
        )  # fmt: skip
    line = format_validation_error(exc.value, source="s.yaml")
    assert "step_time.profile" in line and "vllm" in line


def test_calibrate_is_a_crossover_subcommand(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "sim", "calibrate", str(tmp_path / "missing.csv"), "-o", "p.yaml"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "missing.csv" in out.stderr
    assert "Traceback" not in out.stderr


# ---------------------------------------------------------------------------------------------
# a fit judges itself


def _roofline_samples(true: RooflineStep, fleet: FleetSpec) -> pd.DataFrame:
    v = build_replica(fleet.model_copy(update={"step_time": true})).coefficients
    s = _samples(60, seed=1)
    s["step_s"] = [
        v.time_s(a + b, a, b, c, c)
        for a, b, c in zip(s.decode_seqs, s.prefill_tokens, s.kv_tokens, strict=True)
    ]
    return s


FLEET = {"model": "llama-3.1-8b", "gpu": "h100-sxm", "tp": 1}


def _unfollowable(n: int = 60) -> pd.DataFrame:
    # iterations get faster as the batch grows: nothing a roofline can follow
    s = _samples(n, seed=2)
    s["step_s"] = 1.0 / (1.0 + s.decode_seqs + s.prefill_tokens)
    return s


def test_a_good_fit_has_no_problems() -> None:
    fleet = FleetSpec.model_validate(FLEET)
    true = RooflineStep(compute_efficiency=0.5, bandwidth_efficiency=0.75, overhead_s=0.003)
    r = fit_step_model(_roofline_samples(true, fleet), model="roofline", fleet=fleet)
    assert r.ok and r.problems == () and r.mape < 1.0
    s = _samples(40)
    s["step_s"] = 0.003 + 1e-5 * s.decode_seqs + 5e-5 * s.prefill_tokens  # c_kv = 0: fine
    assert fit_step_model(s, model="linear").problems == ()


def test_a_fit_the_model_cannot_follow_lists_its_problems() -> None:
    fleet = FleetSpec.model_validate(FLEET)
    r = fit_step_model(_unfollowable(), model="roofline", fleet=fleet)
    assert not r.ok
    assert r.problems[0].startswith("step_s MAPE") and "above 25%" in r.problems[0]
    assert any("at its" in p and "bound" in p for p in r.problems[1:])
    # a constant pressed against its limit is a problem even when the error is small
    edge = RooflineStep(compute_efficiency=1.0, bandwidth_efficiency=0.75, overhead_s=0.003)
    r = fit_step_model(_roofline_samples(edge, fleet), model="roofline", fleet=fleet)
    assert r.mape < 25 and r.problems == ("compute_efficiency 1 is at its upper bound 1",)


def test_main_refuses_a_bad_fit_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, scen = tmp_path / "steps.csv", tmp_path / "s.yaml"
    _unfollowable().to_csv(src, index=False)
    scen.write_text(
        (Path(__file__).resolve().parents[1] / "scenarios/chat-startup.yaml").read_text()
    )
    out = tmp_path / "p.yaml"
    args = [str(src), "-o", str(out), "--model", "roofline", "--scenario", str(scen)]
    assert main(args) == 2
    got = capsys.readouterr()
    err = got.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("crossover calibrate: not writing")
    assert "MAPE" in err[0] and "above 25%" in err[0] and "bound" in err[0]
    assert "--force" in err[0] and "MAPE" in got.out  # the fit's figures are still shown
    assert not out.exists()
    assert main([*args, "--force"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "WARNING" in err[0] and "--force" in err[0]
    assert yaml.safe_load(out.read_text())["step_time"]["model"] == "roofline"


# ---------------------------------------------------------------------------------------------
# the serving stack's CPU time per sequence


def _stack_samples(seq_cpu_s: float, d: np.ndarray, fleet: FleetSpec) -> pd.DataFrame:
    from sim.engine.steptime import apply_stack_constants

    true = RooflineStep(compute_efficiency=0.5, bandwidth_efficiency=0.75, overhead_s=0.003)
    replica = build_replica(fleet.model_copy(update={"step_time": true}))
    apply_stack_constants(
        replica.coefficients,
        true,
        model=replica.model,
        gpu_name=replica.gpu.name,
        values={"seq_cpu_s": seq_cpu_s},
    )
    v = replica.coefficients
    s = _samples(d.size, seed=3)
    s["decode_seqs"] = d
    s["step_s"] = [
        v.time_s(a + b, a, b, c, c)
        for a, b, c in zip(s.decode_seqs, s.prefill_tokens, s.kv_tokens, strict=True)
    ]
    return s


def test_roofline_fit_recovers_the_cpu_time_per_sequence_when_the_batch_varies() -> None:
    fleet = FleetSpec.model_validate(FLEET)
    d = np.random.default_rng(4).integers(1, 256, 80).astype(float)
    r = fit_step_model(_stack_samples(3e-5, d, fleet), model="roofline", fleet=fleet)
    # closed-form data without noise: recovered to the optimiser's tolerance
    assert r.stack["seq_cpu_s"] == pytest.approx(3e-5, rel=1e-3)
    assert r.spec.overhead_s == pytest.approx(0.003, rel=1e-3)
    assert r.notes == () and r.ok
    # a scenario's step_time block cannot carry it: it follows as a commented profile entry
    text = r.to_yaml()
    assert yaml.safe_load(text) == {"step_time": r.spec.model_dump(mode="json", exclude_none=True)}
    commented = "\n".join(line.removeprefix("#   ") for line in text.splitlines()[-2:])
    assert yaml.safe_load(commented)["seq_cpu_s"]["value"] == pytest.approx(3e-5, rel=1e-2)


def test_a_constant_batch_does_not_determine_the_cpu_time_per_sequence() -> None:
    # every iteration decodes the same number of sequences: seq_cpu_s · D is a constant,
    # exactly collinear with overhead_s; the fit keeps the profile's value and says so
    fleet = FleetSpec.model_validate(FLEET)
    r = fit_step_model(
        _stack_samples(3e-5, np.full(60, 32.0), fleet), model="roofline", fleet=fleet
    )
    assert r.stack == {} and "seq_cpu_s" not in r.to_yaml()
    assert len(r.notes) == 1 and r.notes[0].startswith("seq_cpu_s not determined")
    profile_value = resolve_roofline(RooflineStep(), "h100-sxm").seq_cpu_s
    assert f"{1e6 * profile_value:.1f} µs" in r.notes[0]
    # the overhead absorbs the difference: 32 × (3e-5 − the profile's value)
    assert r.spec.overhead_s == pytest.approx(0.003 + 32 * (3e-5 - profile_value), rel=1e-3)


def test_a_request_benchmark_at_two_rates_determines_the_cpu_time_per_sequence() -> None:
    from sim.engine.calibrate import (
        LOG_NOISE_FLOOR,
        SEQ_CPU_RESOLUTION_S,
        RequestBench,
        _replay,
        fit_from_requests,
    )

    fleet = FleetSpec.model_validate(FLEET)
    rng = np.random.default_rng(5)
    n = 240
    # two load stages (2 and 25 requests/s): the batch grows from a few to ~30 sequences
    gaps = np.concatenate([rng.exponential(1 / 2.0, n // 2), rng.exponential(1 / 25.0, n // 2)])
    arrival = np.cumsum(gaps) - gaps[0]
    inp = rng.integers(100, 800, n)
    out = rng.integers(100, 300, n)
    true = RooflineStep(compute_efficiency=0.5, bandwidth_efficiency=0.75, overhead_s=0.003)
    fr = _replay(
        RequestBench(inp, out, np.ones(n), np.ones(n), np.ones(n), arrival_s=arrival),
        fleet,
        true,
        {"seq_cpu_s": 4e-5},
        0,
    )
    ttft, e2e = fr["ttft_s"].to_numpy(), fr["e2e_s"].to_numpy()
    bench = RequestBench(inp, out, ttft, e2e, fr["tpot_s"].to_numpy(), arrival_s=arrival)
    r = fit_from_requests(bench, fleet=fleet, model="roofline")
    assert r.notes == () and "seq_cpu_s" in r.stack
    assert r.mape < 1.0
    # an exact replay fits within the noise floor, and the constant within the resolution
    # the fit demanded of it (twice its standard error below SEQ_CPU_RESOLUTION_S)
    res = r.residuals["rel_err"].to_numpy()
    assert np.sqrt(np.mean(np.log1p(res) ** 2)) < LOG_NOISE_FLOOR
    assert abs(r.stack["seq_cpu_s"] - 4e-5) < SEQ_CPU_RESOLUTION_S
    # all at once under a fixed client concurrency: the batch is constant, the time per
    # sequence is not determined and keeps the profile's value
    closed = RequestBench(inp[:40], out[:40], ttft[:40], e2e[:40], fr["tpot_s"].to_numpy()[:40],
                          concurrency=8)  # fmt: skip
    r = fit_from_requests(closed, fleet=fleet, model="roofline")
    assert r.stack == {} and r.notes and "two or more request rates" in r.notes[0]
