"""The workload section: validation, and sampling (determinism, stream independence, merge)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from theory import assert_mean, assert_poisson_count

from sim._base import Frozen
from sim.workload import (
    ClassSpec,
    GammaArrivals,
    HourlyProfile,
    MMPPArrivals,
    PoissonArrivals,
    TraceArrivals,
    WorkloadSpec,
    sample_workload,
)

TINY = str(Path(__file__).parent / "data" / "tiny_trace.csv")

YAML = f"""
workload:
  classes:
    - name: chat
      arrivals: {{process: poisson, rate_rps: 5.0}}
      profile: {{kind: diurnal, peak_to_trough: 3.0, peak_hour: 14}}
      prompt_tokens: {{dist: lognormal, median: 1000, p90: 3000, min: 1, max: 32000}}
      output_tokens: {{dist: geometric, mean: 200}}
      slo: {{ttft_s: 1.0, tpot_s: 0.05}}
      private: false
    - name: batch
      arrivals: {{process: gamma, rate_rps: 5.0, cv: 3.0}}
      profile: {{kind: hourly, weights: [{", ".join(["1"] * 12 + ["2"] * 12)}]}}
      prompt_tokens: {{dist: empirical, values: [100, 200], weights: [1, 3]}}
      output_tokens: {{dist: fixed, value: 50}}
    - name: bursty
      arrivals: {{process: mmpp, rates_rps: [1.0, 20.0], mean_dwell_s: [600, 60]}}
      prompt_tokens: {{dist: lognormal, mu: 6.0, sigma: 1.0}}
      output_tokens: {{dist: geometric, mean: 100, max: 400}}
      slo: {{ttft_s: 2.0}}
      private: true
    - name: agents
      arrivals: {{process: closed_loop, users: 32, think_time_s: 5.0, think_dist: fixed}}
      prompt_tokens: {{dist: fixed, value: 2000}}
      output_tokens: {{dist: geometric, mean: 300}}
    - name: replay
      arrivals:
        process: trace
        path: {TINY}
        rate_scale: 1.0
        columns: {{timestamp: TIMESTAMP, input_tokens: ContextTokens,
                   output_tokens: GeneratedTokens}}
"""


class _Scenario(Frozen):
    workload: WorkloadSpec


def _data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(YAML)
    return data


def _errors(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as err:
        _Scenario.model_validate(data)
    return [(".".join(map(str, e["loc"])), e["msg"]) for e in err.value.errors()]


def test_documented_yaml_shape_parses() -> None:
    spec = _Scenario.model_validate(_data()).workload
    assert spec.class_names() == ("chat", "batch", "bursty", "agents", "replay")
    chat, batch, bursty, _, replay = spec.classes
    assert chat.slo.ttft_s == 1.0 and chat.slo.tpot_s == 0.05 and not chat.private
    assert bursty.private and bursty.slo.tpot_s is None
    assert isinstance(batch.arrivals, GammaArrivals) and isinstance(batch.profile, HourlyProfile)
    assert isinstance(bursty.arrivals, MMPPArrivals)
    assert isinstance(replay.arrivals, TraceArrivals) and replay.prompt_tokens is None
    assert replay.arrivals.path == TINY  # kept as given


def test_spec_is_a_hashable_value_that_round_trips() -> None:
    spec = _Scenario.model_validate(_data()).workload
    again = WorkloadSpec.model_validate(spec.model_dump())
    assert again == spec and hash(again) == hash(spec)
    assert WorkloadSpec.model_validate(spec.model_dump(mode="json")) == spec
    with pytest.raises(ValidationError):
        spec.classes[0].arrivals.rate_rps = 3.0  # type: ignore[union-attr]


def _mutated(path: list[str | int], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(_data())
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


_DELETE = object()
C = ["workload", "classes"]


@pytest.mark.parametrize(
    ("path", "value", "loc", "text"),
    [
        ([*C, 1, "name"], "chat", "workload.classes", "unique"),
        ([*C], [], "workload.classes", "at least one"),
        ([*C, 3, "profile"], {"kind": "diurnal", "peak_to_trough": 2}, "classes.3.profile", ""),
        ([*C, 4, "profile"], {"kind": "diurnal", "peak_to_trough": 2}, "classes.4.profile", ""),
        ([*C, 0, "prompt_tokens"], _DELETE, "classes.0.prompt_tokens", "required"),
        ([*C, 3, "output_tokens"], _DELETE, "classes.3.output_tokens", "required"),
        ([*C, 0, "arrivals", "rate_rps"], -1.0, "classes.0.arrivals.poisson.rate_rps", ""),
        ([*C, 0, "arrivals", "rate"], 1.0, "classes.0.arrivals.poisson.rate", "Extra"),
        ([*C, 0, "arrivals", "process"], "hawkes", "classes.0.arrivals", "process"),
        ([*C, 1, "arrivals", "cv"], 0.0, "classes.1.arrivals.gamma.cv", ""),
        ([*C, 3, "arrivals", "users"], 0, "classes.3.arrivals.closed_loop.users", ""),
        ([*C, 3, "arrivals", "think_dist"], "weibull", "closed_loop.think_dist", ""),
        ([*C, 4, "arrivals", "rate_scale"], 0.0, "classes.4.arrivals.trace.rate_scale", ""),
        ([*C, 0, "slo", "ttft_s"], 0.0, "classes.0.slo.ttft_s", ""),
        ([*C, 0, "profile", "kind"], "weekly", "classes.0.profile", "kind"),
        ([*C, 1, "profile", "weights"], [1.0] * 23, "classes.1.profile.hourly.weights", ""),
        ([*C, 0, "shared"], True, "classes.0.shared", "Extra"),
    ],
)
def test_validation_errors_name_the_field(
    path: list[str | int], value: Any, loc: str, text: str
) -> None:
    errors = _errors(_mutated(path, value))
    assert any(loc in where and text in msg for where, msg in errors), errors


def test_profile_with_closed_loop_is_rejected_by_name() -> None:
    errors = _errors(_mutated([*C, 3, "profile"], {"kind": "diurnal", "peak_to_trough": 2}))
    assert errors == [
        ("workload.classes.3.profile", "Value error, profile is not allowed with process "
         "'closed_loop'")
    ]  # fmt: skip


# ---- sampling ----------------------------------------------------------------------------


def _open_spec(*names: str, rate: float = 2.0) -> WorkloadSpec:
    classes = {
        "chat": {
            "name": "chat",
            "arrivals": {"process": "poisson", "rate_rps": rate},
            "prompt_tokens": {"dist": "lognormal", "median": 800, "p90": 2500},
            "output_tokens": {"dist": "geometric", "mean": 150},
        },
        "batch": {
            "name": "batch",
            "arrivals": {"process": "gamma", "rate_rps": 1.0, "cv": 2.0},
            "profile": {"kind": "diurnal", "peak_to_trough": 3.0},
            "prompt_tokens": {"dist": "fixed", "value": 4000},
            "output_tokens": {"dist": "geometric", "mean": 500},
        },
        "bursty": {
            "name": "bursty",
            "arrivals": {"process": "mmpp", "rates_rps": [0.5, 8.0], "mean_dwell_s": [300, 30]},
            "prompt_tokens": {"dist": "empirical", "values": [10, 20, 30]},
            "output_tokens": {"dist": "fixed", "value": 9},
        },
        "agents": {
            "name": "agents",
            "arrivals": {"process": "closed_loop", "users": 3, "think_time_s": 2.0},
            "prompt_tokens": {"dist": "geometric", "mean": 30},
            "output_tokens": {"dist": "geometric", "mean": 40},
        },
    }
    return WorkloadSpec.model_validate({"classes": [classes[n] for n in names]})


SEED = np.random.SeedSequence(20240601)


def _class_rows(w: Any, name: str) -> tuple[np.ndarray, ...]:
    sel = w.class_id == w.class_names.index(name)
    return w.arrival_s[sel], w.input_tokens[sel], w.output_tokens[sel]


def test_sample_shapes_dtypes_and_merge() -> None:
    spec = _open_spec("chat", "batch", "bursty", "agents")
    w = sample_workload(spec, duration_s=7200.0, seed=SEED)
    assert w.arrival_s.dtype == np.float64 and w.class_id.dtype == np.int32
    assert w.input_tokens.dtype == np.int64 and w.output_tokens.dtype == np.int64
    assert np.all(np.diff(w.arrival_s) >= 0) and w.arrival_s.max() < 7200.0
    assert set(np.unique(w.class_id)) == {0, 1, 2}
    assert w.input_tokens.min() >= 1 and w.output_tokens.min() >= 1
    assert w.class_names == ("chat", "batch", "bursty", "agents")
    assert [s.class_id for s in w.closed_loop] == [3] and w.closed_loop[0].users == 3
    with pytest.raises(ValueError):
        w.arrival_s[0] = 1.0  # shared between options: read-only


def test_same_seed_same_sample_and_different_seed_differs() -> None:
    spec = _open_spec("chat", "batch", "bursty")
    a = sample_workload(spec, duration_s=3600.0, seed=np.random.SeedSequence(5))
    b = sample_workload(spec, duration_s=3600.0, seed=np.random.SeedSequence(5))
    c = sample_workload(spec, duration_s=3600.0, seed=np.random.SeedSequence(6))
    for field in ("arrival_s", "input_tokens", "output_tokens", "class_id"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.input_tokens[:100], c.input_tokens[:100])


def test_adding_or_reordering_classes_leaves_other_classes_draws_alone() -> None:
    alone = sample_workload(_open_spec("chat"), duration_s=3600.0, seed=SEED)
    more = sample_workload(_open_spec("bursty", "chat", "batch"), duration_s=3600.0, seed=SEED)
    for x, y in zip(_class_rows(alone, "chat"), _class_rows(more, "chat"), strict=True):
        assert np.array_equal(x, y)


def test_changing_the_rate_keeps_the_length_streams() -> None:
    # common random numbers: the k-th request of a class has the same lengths at any rate
    slow = sample_workload(_open_spec("chat", rate=1.0), duration_s=3600.0, seed=SEED)
    fast = sample_workload(_open_spec("chat", rate=3.0), duration_s=3600.0, seed=SEED)
    n = len(slow)
    assert len(fast) > n
    assert np.array_equal(slow.input_tokens, fast.input_tokens[:n])
    assert np.array_equal(slow.output_tokens, fast.output_tokens[:n])


def test_sampled_rates_and_lengths_match_theory() -> None:
    spec = _open_spec("chat", "batch")
    T = 86_400.0
    w = sample_workload(spec, duration_s=T, seed=SEED)
    chat = spec.classes[0]
    t, inp, out = _class_rows(w, "chat")
    assert isinstance(chat.arrivals, PoissonArrivals)
    assert_poisson_count(t.size, chat.arrivals.mean_rate_rps() * T)
    assert chat.prompt_tokens is not None and chat.output_tokens is not None
    assert_mean(inp, chat.prompt_tokens.mean(), chat.prompt_tokens.std())
    assert_mean(out, chat.output_tokens.mean(), chat.output_tokens.std())


def test_closed_loop_source_streams() -> None:
    spec = _open_spec("chat", "agents")
    src = sample_workload(spec, duration_s=60.0, seed=SEED).closed_loop[0]
    twin = sample_workload(spec, duration_s=60.0, seed=SEED).closed_loop[0]
    first = [np.concatenate(x) for x in zip(src.draw(3), src.draw(2), strict=True)]
    whole = twin.draw(5)
    for x, y in zip(first, whole, strict=True):
        assert np.array_equal(x, y)
    restarted = src.fresh().draw(5)
    for x, y in zip(restarted, whole, strict=True):
        assert np.array_equal(x, y)
    inp, out, think = src.draw(50_000)
    assert inp.dtype == np.int64 and out.dtype == np.int64 and think.dtype == np.float64
    assert_mean(think, 2.0, 2.0)
    assert_mean(out, 40.0, float(np.sqrt(40.0 * 39.0)))
    # other classes do not disturb it
    alone = sample_workload(_open_spec("agents"), duration_s=60.0, seed=SEED).closed_loop[0]
    assert np.array_equal(alone.draw(5)[0], whole[0])


def test_only_closed_loop_classes_give_empty_arrays() -> None:
    w = sample_workload(_open_spec("agents"), duration_s=100.0, seed=SEED)
    assert len(w) == 0 and w.class_id.dtype == np.int32 and len(w.closed_loop) == 1


@pytest.mark.parametrize("duration", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_duration(duration: float) -> None:
    with pytest.raises(ValueError, match="duration_s"):
        sample_workload(_open_spec("chat"), duration_s=duration, seed=SEED)


def test_class_spec_builds_directly() -> None:
    c = ClassSpec.model_validate(_data()["workload"]["classes"][0])
    assert c.name == "chat" and c.profile is not None
