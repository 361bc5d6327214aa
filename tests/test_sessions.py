"""Multi-turn sessions: the structure of the turns (prompts grow by the last message and
reply, arrivals by response time and think time), their prompt identities (checked against
a prefix-reuse ratio computed from the structure alone), theory, validation and merging."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from theory import assert_mean

from sim.cli import main
from sim.workload import WorkloadSpec, sample_workload
from sim.workload.lengths import FixedLength, GeometricLength, LognormalLength
from sim.workload.sessions import SessionArrivals, SessionSample, sample_sessions
from sim.workload.spec import ClassSpec

STREAMS = ("turns", "think_s", "prompt_tokens", "output_tokens", "tenant")


def _spec(**kw: Any) -> SessionArrivals:
    base: dict[str, Any] = {
        "starts": {"process": "poisson", "rate_rps": 0.2},
        "turns": {"dist": "geometric", "mean": 4, "max": 20},
        "think_time_s": 20.0,
        "response_time_s": 3.0,
        "tenants": 3,
        "system_prompt_tokens": 700,
        "block_tokens": 64,
    }
    base.update(kw)
    return SessionArrivals.model_validate(base)


def _sample(spec: SessionArrivals, duration_s: float = 3600.0, seed: int = 0) -> SessionSample:
    rng = np.random.default_rng(seed)
    starts = spec.starts.sample(rng, duration_s)
    return sample_sessions(
        spec,
        starts,
        duration_s=duration_s,
        message_tokens=LognormalLength(median=150, p90=600, max=4000),
        reply_tokens=GeometricLength(mean=250, max=3000),
        rngs={k: np.random.default_rng([seed, i]) for i, k in enumerate(STREAMS)},
        salt=11,
    )


def test_turn_prompts_grow_by_the_last_message_and_reply() -> None:
    s = _sample(_spec())
    assert len(s.arrival_s) > 500
    first = s.turn == 0
    # turn 0: the system prompt and the first message
    np.testing.assert_array_equal(s.input_tokens[first], 700 + s.message_tokens[first])
    # turn k + 1 of the same session: turn k's prompt, its reply, the new message
    nxt = np.flatnonzero(~first)
    prev = nxt - 1
    assert (s.session[prev] == s.session[nxt]).all() and (s.turn[nxt] == s.turn[prev] + 1).all()
    grown = s.input_tokens[prev] + s.output_tokens[prev] + s.message_tokens[nxt]
    np.testing.assert_array_equal(s.input_tokens[nxt], grown)
    # one tenant per session
    assert (s.tenant[prev] == s.tenant[nxt]).all()


def test_turns_arrive_after_response_time_and_think() -> None:
    spec = _spec(think_dist="fixed", turns={"dist": "fixed", "value": 5})
    s = _sample(spec, duration_s=100_000.0)
    nxt = np.flatnonzero(s.turn > 0)
    np.testing.assert_allclose(s.arrival_s[nxt] - s.arrival_s[nxt - 1], 23.0, rtol=1e-9)
    assert (s.arrival_s < 100_000.0).all()
    # exponential think times: gaps minus the response time have the stated mean
    s = _sample(_spec(), duration_s=20_000.0)
    nxt = np.flatnonzero(s.turn > 0)
    assert_mean(s.arrival_s[nxt] - s.arrival_s[nxt - 1] - 3.0, 20.0, 20.0)


def test_identities_follow_the_conversation() -> None:
    s = _sample(_spec())
    b = s.prompt_blocks
    assert b.block_tokens == 64
    np.testing.assert_array_equal(b.counts, -(-s.input_tokens // 64))
    for i in np.flatnonzero(s.turn > 0)[:200]:
        full = s.input_tokens[i - 1] // 64
        # the previous turn's full blocks are this turn's first blocks ...
        np.testing.assert_array_equal(b.of(i)[:full], b.of(i - 1)[:full])
        # ... and its partial last block, if any, is not
        if s.input_tokens[i - 1] % 64:
            assert b.of(i - 1)[-1] not in set(b.of(i).tolist())
    # partial last blocks are unique across the sample
    partial = np.array([b.of(i)[-1] for i in range(len(b)) if s.input_tokens[i] % 64])
    assert np.unique(partial).size == partial.size
    # the system prompt's 700 // 64 = 10 full blocks: one per tenant, shared by its sessions
    heads = {}
    for i in np.flatnonzero(s.turn == 0):
        heads.setdefault(int(s.tenant[i]), set()).add(tuple(b.of(i)[:10].tolist()))
    assert all(len(v) == 1 for v in heads.values()) and len(heads) == 3
    assert len({next(iter(v)) for v in heads.values()}) == 3
    # the 11th block mixes system prompt and message: each session's own
    eleventh = [b.of(i)[10] for i in np.flatnonzero(s.turn == 0)]
    assert len(set(eleventh)) == len(eleventh)


def _reuse_from_hashes(s: SessionSample) -> float:
    # unbounded cache: per request, the longest prefix (in blocks) already sent, in order
    seen: set[int] = set()
    hit = 0
    b = s.prompt_blocks
    for i in np.argsort(s.arrival_s, kind="stable"):
        hs = b.of(int(i)).tolist()
        k = 0
        while k < len(hs) and hs[k] in seen:
            k += 1
        hit += min(k * 64, int(s.input_tokens[i]))
        seen.update(hs)
    return hit / float(s.input_tokens.sum())


def _reuse_from_structure(s: SessionSample) -> float:
    # the same from the conversation alone: a later turn finds its previous turn's full
    # blocks; a first turn finds its tenant's system prompt if a session of the tenant
    # came before
    hit = 0
    tenant_seen: set[int] = set()
    order = np.argsort(s.arrival_s, kind="stable")
    for i in order:
        if s.turn[i] > 0:
            hit += int(s.input_tokens[i - 1] // 64 * 64)
        elif int(s.tenant[i]) in tenant_seen:
            hit += 700 // 64 * 64
        tenant_seen.add(int(s.tenant[i]))
    return hit / float(s.input_tokens.sum())


def test_prefix_reuse_matches_the_structure() -> None:
    s = _sample(_spec())
    ratio = _reuse_from_hashes(s)
    assert ratio == pytest.approx(_reuse_from_structure(s), abs=0, rel=1e-15)
    assert 0.5 < ratio < 1.0


def test_mean_prompt_and_rate_theory() -> None:
    spec = _spec(turns={"dist": "geometric", "mean": 3, "max": 12})
    assert spec.mean_rate_rps() == pytest.approx(0.2 * spec.turns.mean())
    s = _sample(spec, duration_s=200_000.0, seed=2)
    # sessions whose every turn fits the window (the last starts ~1e5 s before its end)
    firsts = s.turn == 0
    keep = np.isin(s.session, s.session[firsts][s.arrival_s[firsts] < 100_000.0])
    msg = LognormalLength(median=150, p90=600, max=4000).mean()
    reply = GeometricLength(mean=250, max=3000).mean()
    # per-turn prompts are correlated within a session: the SE from session totals
    tokens = s.input_tokens[keep].astype(float)
    sessions = s.session[keep]
    per_session = np.bincount(sessions, weights=tokens)[np.unique(sessions)]
    turns = np.bincount(sessions)[np.unique(sessions)]
    expected = spec.mean_input_tokens(msg, reply)
    ratio = per_session.sum() / turns.sum()
    # ratio estimator's SE: sd of (total − expected · turns) / (√n · mean turns)
    resid = per_session - expected * turns
    se = resid.std(ddof=1) / np.sqrt(resid.size) / turns.mean()
    assert abs(ratio - expected) < 4 * se, (ratio, expected, se)


# --- validation -----------------------------------------------------------------------------


def _class(**arrivals: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "process": "sessions",
        "starts": {"process": "poisson", "rate_rps": 0.1},
        "turns": {"dist": "fixed", "value": 3},
        "think_time_s": 10.0,
    }
    base.update(arrivals)
    return {
        "name": "chat",
        "arrivals": base,
        "prompt_tokens": {"dist": "fixed", "value": 100},
        "output_tokens": {"dist": "fixed", "value": 50},
    }


@pytest.mark.parametrize(
    ("arrivals", "field"),
    [
        ({"turns": {"dist": "fixed", "value": 0}}, "arrivals.sessions.turns.fixed.value"),
        ({"think_time_s": -1.0}, "arrivals.sessions.think_time_s"),
        ({"tenants": 0}, "arrivals.sessions.tenants"),
        ({"system_prompt_tokens": -5}, "arrivals.sessions.system_prompt_tokens"),
        ({"block_tokens": 0}, "arrivals.sessions.block_tokens"),
        ({"response_time_s": -0.5}, "arrivals.sessions.response_time_s"),
        ({"starts": {"process": "closed_loop", "users": 3, "think_time_s": 1}}, "starts"),
        ({"turn": 3}, "arrivals.sessions.turn"),
    ],
)
def test_bad_session_fields(arrivals: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        ClassSpec.model_validate(_class(**arrivals))
    assert field in str(err.value)


def test_sessions_reject_a_class_prefix_and_mixed_block_sizes() -> None:
    with pytest.raises(ValidationError, match="system_prompt_tokens instead"):
        ClassSpec.model_validate({**_class(), "prefix": {"tokens": 100}})
    other = {**_class(block_tokens=32), "name": "other"}
    with pytest.raises(ValidationError, match=r"share one arrivals\.block_tokens"):
        WorkloadSpec.model_validate({"classes": [_class(), other]})
    # lengths are required, as for any synthetic process
    bad = _class()
    del bad["output_tokens"]
    with pytest.raises(ValidationError, match="output_tokens is required"):
        ClassSpec.model_validate(bad)


def test_cli_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((root / "scenarios" / "chat-startup.yaml").read_text())
    data["workload"]["classes"] = [_class(tenants=0)]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "workload.classes.0.arrivals" in err and "tenants" in err


# --- merged with other classes --------------------------------------------------------------


def test_sample_workload_merges_identities() -> None:
    spec = WorkloadSpec.model_validate(
        {
            "classes": [
                _class(system_prompt_tokens=300, block_tokens=64),
                {
                    "name": "rag",
                    "arrivals": {"process": "poisson", "rate_rps": 0.5},
                    "prompt_tokens": {"dist": "fixed", "value": 500},
                    "output_tokens": {"dist": "fixed", "value": 20},
                    "prefix": {"tokens": 200, "share": 0.5},
                },
            ]
        }
    )
    w = sample_workload(spec, duration_s=2000.0, seed=np.random.SeedSequence(4))
    b = w.prompt_blocks
    assert b is not None and len(b) == len(w) and b.block_tokens == 64
    np.testing.assert_array_equal(b.counts, -(-w.input_tokens // 64))
    rag = np.flatnonzero(w.class_id == 1)
    assert w.has_prefix is not None
    with_prefix = rag[w.has_prefix[rag]]
    without = rag[~w.has_prefix[rag]]
    # the 200-token prefix: 3 full blocks shared by the rag requests that carry it
    assert len({tuple(b.of(i)[:3].tolist()) for i in with_prefix}) == 1
    firsts = [b.of(i)[0] for i in without]
    assert len(set(firsts)) == len(firsts)
    # every hash of a request without identity is its own
    own = np.concatenate([b.of(i) for i in without])
    assert np.unique(own).size == own.size
    # a workload without sessions carries no identity, and its draws do not move
    alone = WorkloadSpec.model_validate({"classes": [spec.classes[1].model_dump(by_alias=True)]})
    w2 = sample_workload(alone, duration_s=2000.0, seed=np.random.SeedSequence(4))
    assert w2.prompt_blocks is None
    np.testing.assert_array_equal(w2.arrival_s, w.arrival_s[rag])
    np.testing.assert_array_equal(w2.input_tokens, w.input_tokens[rag])


def test_fixed_sessions_by_hand() -> None:
    spec = _spec(
        turns={"dist": "fixed", "value": 3},
        think_dist="fixed",
        think_time_s=10.0,
        response_time_s=2.0,
        tenants=1,
        system_prompt_tokens=100,
    )
    s = sample_sessions(
        spec,
        np.array([0.0, 5.0]),
        duration_s=30.0,
        message_tokens=FixedLength(value=50),
        reply_tokens=FixedLength(value=30),
        rngs={k: np.random.default_rng(0) for k in STREAMS},
        salt=3,
    )
    # session 0: 0, 12, 24; session 1: 5, 17, (29 is inside, 30 would not be)
    assert s.arrival_s.tolist() == [0.0, 12.0, 24.0, 5.0, 17.0, 29.0]
    assert s.input_tokens.tolist() == [150, 230, 310] * 2
    assert s.turn.tolist() == [0, 1, 2] * 2
    b = s.prompt_blocks
    # 100 // 64 = 1 block of system prompt shared by both sessions, then their own
    assert b.of(0)[0] == b.of(3)[0] and b.of(0)[1] != b.of(3)[1]


def test_docstring_examples() -> None:
    import doctest

    import sim.workload.identity
    import sim.workload.sessions

    for module in (sim.workload.sessions, sim.workload.identity):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted >= 3, module


def test_scenario_with_sessions_round_trips(tmp_path: Path) -> None:
    from sim import dump_scenario, load_scenario

    root = Path(__file__).resolve().parents[1]
    data = yaml.safe_load((root / "scenarios" / "chat-startup.yaml").read_text())
    data["workload"]["classes"] = [
        _class(turns={"dist": "geometric", "mean": 4, "max": 20}, tenants=2)
    ]
    data["api"]["prompt_cache"] = {"mode": "explicit", "ttl_s": 3600}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    s = load_scenario(path)
    again = tmp_path / "resolved.yaml"
    again.write_text(dump_scenario(s))
    assert load_scenario(again) == s
