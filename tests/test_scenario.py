"""Scenarios: validation messages, overrides, and the YAML round trip."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import sim
from sim import Scenario, ScenarioError, dump_scenario, load_scenario
from sim.scenario_io import format_validation_error, validate_scenario
from sim.workload.trace import TraceArrivals

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
EXAMPLES = sorted((ROOT / "scenarios").glob("*.yaml"))


def tiny(**fleet: Any) -> dict[str, Any]:
    """A small valid scenario as a plain mapping."""
    return {
        "name": "tiny",
        "horizon": {"duration_s": 60},
        "workload": {
            "classes": [
                {
                    "name": "chat",
                    "arrivals": {"process": "poisson", "rate_rps": 1.0},
                    "prompt_tokens": {"dist": "fixed", "value": 100},
                    "output_tokens": {"dist": "geometric", "mean": 20},
                },
                {
                    "name": "batch",
                    "arrivals": {"process": "gamma", "rate_rps": 0.5, "cv": 2.0},
                    "prompt_tokens": {"dist": "lognormal", "median": 500, "p90": 2000},
                    "output_tokens": {"dist": "fixed", "value": 50},
                },
            ]
        },
        "fleet": {"model": "llama-3.1-8b", "gpu": "h100-sxm", **fleet},
    }


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Scenario.model_validate(tiny())


# ---------------------------------------------------------------------------------------------
# with_overrides
# ---------------------------------------------------------------------------------------------


def test_override_nested_path(scenario: Scenario) -> None:
    s = scenario.with_overrides({"fleet.replicas": 3, "fleet.engine.max_num_seqs": 64})
    assert (s.fleet.replicas, s.fleet.engine.max_num_seqs) == (3, 64)
    # everything else is unchanged
    assert s.workload == scenario.workload
    assert s.fleet.engine.block_tokens == scenario.fleet.engine.block_tokens


def test_override_list_item_by_index_and_by_name(scenario: Scenario) -> None:
    by_index = scenario.with_overrides({"workload.classes.1.arrivals.rate_rps": 4.0})
    by_name = scenario.with_overrides({"workload.classes.batch.arrivals.rate_rps": 4.0})
    by_negative = scenario.with_overrides({"workload.classes.-1.arrivals.rate_rps": 4.0})
    assert by_index == by_name == by_negative
    assert by_name.workload.classes[1].arrivals.mean_rate_rps() == 4.0
    assert by_name.workload.classes[0] == scenario.workload.classes[0]


def test_override_aliased_field(scenario: Scenario) -> None:
    # a geometric length's field is stored as ``mean_`` but written ``mean``
    s = scenario.with_overrides({"workload.classes.chat.output_tokens.mean": 80})
    assert s.workload.classes[0].output_tokens is not None
    assert s.workload.classes[0].output_tokens.mean() == pytest.approx(80.0)


def test_override_whole_section_and_unset_section(scenario: Scenario) -> None:
    s = scenario.with_overrides(
        {
            "fleet.step_time": {"model": "constant", "step_s": 0.02},
            "workload.classes.chat.profile.kind": "diurnal",  # profile was unset (None)
            "workload.classes.chat.profile.peak_to_trough": 2.0,
            "fleet.max_queue": 10,  # an optional value that was None
        }
    )
    assert s.fleet.step_time.model == "constant"
    assert s.workload.classes[0].profile is not None
    assert s.workload.classes[0].profile.kind == "diurnal"
    assert s.fleet.max_queue == 10


def test_override_inline_model_accepts_new_keys() -> None:
    cfg = {
        "name": "mini", "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 8, "intermediate_size": 4096, "vocab_size": 32000,
        "max_position_embeddings": 4096,
    }  # fmt: skip
    s = Scenario.model_validate({**tiny(), "fleet": {"model": cfg, "gpu": "h100-sxm"}})
    t = s.with_overrides(
        {"fleet.model.num_hidden_layers": 8, "fleet.model.tie_word_embeddings": True}
    )
    assert isinstance(t.fleet.model, dict)
    assert t.fleet.model["num_hidden_layers"] == 8 and t.fleet.model["tie_word_embeddings"]


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("fleet.replicaz", ("'fleet.replicaz'", "replicas")),
        ("fleets.replicas", ("'fleets'", "fleet")),
        ("fleet.engine.max_seqs", ("'fleet.engine.max_seqs'", "max_num_seqs")),
        ("workload.classes.chatt.private", ("'workload.classes.chatt'", "chat, batch")),
        ("workload.classes.2.private", ("'workload.classes.2'", "out of range")),
        ("fleet.replicas.value", ("'fleet.replicas.value'", "is a value")),
        ("fleet.step_time.step_s", ("'fleet.step_time.step_s'", "compute_efficiency")),
    ],
)
def test_override_unknown_path_is_a_key_error_naming_it(
    scenario: Scenario, path: str, words: tuple[str, ...]
) -> None:
    with pytest.raises(KeyError) as exc:
        scenario.with_overrides({path: 1})
    message = exc.value.args[0]
    for word in words:
        assert word in message


@pytest.mark.parametrize(
    ("overrides", "loc"),
    [
        ({"fleet.replicas": 0}, ("fleet", "replicas")),
        ({"fleet.tp": "two"}, ("fleet", "tp")),
        ({"workload.classes.chat.arrivals.rate_rps": -1.0}, None),
        ({"fleet.gpu": "h1000"}, ("fleet", "gpu")),
        ({"fleet.model": "llama-9b"}, ("fleet", "model")),
        ({"fleet.model": "llama-3.1-405b", "fleet.gpu": "l4"}, ("fleet", "model")),
    ],
)
def test_override_invalid_value_is_a_validation_error(
    scenario: Scenario, overrides: dict[str, Any], loc: tuple[str, ...] | None
) -> None:
    with pytest.raises(ValidationError) as exc:
        scenario.with_overrides(overrides)
    if loc is not None:
        assert exc.value.errors()[0]["loc"] == loc


def test_overrides_leave_the_original_unchanged(scenario: Scenario) -> None:
    before = scenario.model_dump()
    value = [3.0, 9.0]
    s = scenario.with_overrides(
        {"fleet.replicas": 5, "workload.classes.chat.arrivals":
         {"process": "mmpp", "rates_rps": value, "mean_dwell_s": [10.0, 1.0]}}
    )  # fmt: skip
    value.append(1.0)  # the caller's value is copied, not shared
    assert scenario.model_dump() == before
    assert s.workload.classes[0].arrivals.rates_rps == (3.0, 9.0)  # type: ignore[union-attr]
    with pytest.raises(ValidationError):
        scenario.fleet.replicas = 7  # type: ignore[misc]  # frozen


# ---------------------------------------------------------------------------------------------
# Validation at the Scenario level: catalog names and the memory fit
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fleet", "loc", "words"),
    [
        ({"gpu": "h1000"}, ("fleet", "gpu"), ("unknown GPU 'h1000'", "h100-sxm", "b200")),
        ({"model": "llama-9b"}, ("fleet", "model"), ("unknown model 'llama-9b'", "qwen-2.5-7b")),
        ({"model": "llama-3.1-70b", "gpu": "l4"}, ("fleet", "model"), ("no room for a KV cache",)),
        ({"model": {"hidden_size": 64}}, ("fleet", "model"), ("missing required field",)),
    ],
)
def test_fleet_errors_name_the_field(
    fleet: dict[str, Any], loc: tuple[str, ...], words: tuple[str, ...]
) -> None:
    data = tiny()
    data["fleet"].update(fleet)
    with pytest.raises(ValidationError) as exc:
        Scenario.model_validate(data)
    (err,) = exc.value.errors()
    assert err["loc"] == loc
    for word in words:
        assert word in err["msg"]


def test_catalog_aliases_are_accepted() -> None:
    s = Scenario.model_validate(tiny(gpu="H100 SXM5"))
    assert s.fleet.gpu == "H100 SXM5"  # kept as written; resolved when the fleet is built


# ---------------------------------------------------------------------------------------------
# Error messages
# ---------------------------------------------------------------------------------------------


def _error(data: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        Scenario.model_validate(data)
    return exc.value


@pytest.mark.parametrize("with_data", [True, False])
def test_union_member_names_are_left_out_of_field_paths(with_data: bool) -> None:
    data = tiny()
    data["workload"]["classes"][1]["arrivals"]["cv"] = -1
    data["fleet"]["step_time"] = {"model": "linear", "c0_s": -1}
    exc = _error(data)
    assert "gamma" in exc.errors()[0]["loc"]  # what pydantic reports
    line = format_validation_error(exc, source="s.yaml", data=data if with_data else None)
    assert line == (
        "s.yaml: workload.classes.1.arrivals.cv: Input should be greater than 0 (got -1) "
        "(and 1 more)"
    )


def test_union_alternatives_are_joined() -> None:
    data = tiny(model=["llama"])
    line = format_validation_error(_error(data), source="s.yaml", data=data)
    assert line == "s.yaml: fleet.model: Input should be a valid string or a mapping of fields"


def test_value_error_prefix_is_dropped() -> None:
    data = tiny()
    data["horizon"]["warmup_s"] = 100
    line = format_validation_error(_error(data), source="s.yaml", data=data)
    assert line == "s.yaml: horizon: warmup_s (100.0) must be smaller than duration_s (60.0)"


def test_validate_scenario_raises_scenario_error() -> None:
    with pytest.raises(ScenarioError, match=r"^demo: fleet\.replicas: .*\(got 0\)$"):
        validate_scenario(tiny(replicas=0), source="demo")
    assert issubclass(ScenarioError, ValueError)


# ---------------------------------------------------------------------------------------------
# Files: loading, relative paths, round trip
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    s = load_scenario(path)
    assert s.name == path.stem


def test_mooncake_prefix_caching_caches_on_both_sides() -> None:
    # the trace's prompt identities reach the fleet's prefix cache and each API's caching rule
    s = load_scenario(ROOT / "scenarios" / "mooncake-prefix-caching.yaml").with_overrides(
        {"horizon.duration_s": 300.0, "horizon.warmup_s": 60.0}
    )
    result = sim.run(s, replications=1, seed=0)
    runs = result.option_runs().set_index("option")
    assert list(runs.index) == ["api_only", "self_host_only", "api_only (claude-haiku-5-5)"]
    fleet = runs.loc["self_host_only"]
    assert fleet["prefix_hit_rate"] > 0 and fleet["prefill_tokens_saved"] > 0
    for api in ("api_only", "api_only (claude-haiku-5-5)"):
        assert 0 < runs.loc[api, "api_cached_input_share"] < 1
        assert runs.loc[api, "api_cache_savings_usd_per_month"] > 0
    assert result.decision().recommended is not None
    # without prompt identity neither side finds anything cached
    off = sim.simulate(
        s.with_overrides({"workload.classes.conversation.arrivals.prompt_identity": False}), seed=0
    ).metrics
    assert math.isnan(off.get("prefix_hit_rate", math.nan))
    assert off.get("api_only_cached_input_share", 0.0) == 0.0
    assert off["api_only_cost_usd_per_month"] > fleet["api_only_cost_usd_per_month"]


def test_trace_path_is_relative_to_the_scenario_file() -> None:
    s = load_scenario(DATA / "good-trace.yaml")
    arrivals = s.workload.classes[0].arrivals
    assert isinstance(arrivals, TraceArrivals)
    assert Path(arrivals.path) == ROOT / "scenarios" / "traces" / "AzureLLMInferenceTrace_code.csv"


def test_config_path_is_read_relative_to_the_scenario_file(tmp_path: Path) -> None:
    cfg = {
        "hidden_size": 1024, "num_hidden_layers": 4, "num_attention_heads": 8,
        "num_key_value_heads": 8, "intermediate_size": 4096, "vocab_size": 32000,
        "max_position_embeddings": 4096,
    }  # fmt: skip
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "config.json").write_text(json.dumps(cfg))
    data = tiny()
    data["fleet"]["model"] = {"config_path": "models/config.json", "name": "mini"}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    s = load_scenario(f)
    assert s.fleet.model == {**cfg, "name": "mini"}


@pytest.mark.parametrize(
    "path", [*EXAMPLES, DATA / "good-tiny.yaml", DATA / "good-trace.yaml"], ids=lambda p: p.name
)
def test_dump_and_load_round_trip(path: Path, tmp_path: Path) -> None:
    s = load_scenario(path)
    f = tmp_path / "resolved.yaml"
    f.write_text(dump_scenario(s))
    assert load_scenario(f) == s


def test_round_trip_keeps_infinity_and_every_default(tmp_path: Path) -> None:
    s = Scenario.model_validate(tiny()).with_overrides({"horizon.drain_s": math.inf})
    text = dump_scenario(s)
    data = yaml.safe_load(text)
    assert data["horizon"]["drain_s"] == math.inf
    assert data["fleet"]["engine"]["max_num_seqs"] == 256  # defaults are written out
    assert data["workload"]["classes"][0]["output_tokens"]["mean"] == 20  # alias, not mean_
    f = tmp_path / "s.yaml"
    f.write_text(text)
    assert load_scenario(f) == s


def test_closed_loop_example_runs() -> None:
    s = load_scenario(ROOT / "scenarios" / "closed-loop-benchmark.yaml").with_overrides(
        {"horizon.duration_s": 30, "horizon.warmup_s": 0}
    )
    res = sim.run(s, replications=1, seed=0)
    table = res.summary().set_index("metric")
    assert table.loc["throughput_rps", "mean"] > 0
