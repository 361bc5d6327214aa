"""Trace replay: parsing Azure-format CSVs, time compression, repetition, errors, caching."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from sim.workload import TraceArrivals, TraceColumns, WorkloadSpec, load_trace, sample_workload

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_trace.csv"
TRACES = Path(__file__).parents[1] / "scenarios" / "traces"


def _expected_offsets(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Offsets and tokens parsed by hand (exact decimal seconds), independent of pandas."""
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    secs = []
    for stamp, _, _ in rows:
        hms = stamp.split(" ")[1]
        h, m, s = hms.split(":")
        secs.append(int(h) * 3600 + int(m) * 60 + Decimal(s))
    t = np.array([float(x - secs[0]) for x in secs])
    return t, np.array([int(r[1]) for r in rows]), np.array([int(r[2]) for r in rows])


def test_parses_azure_columns_and_datetimes() -> None:
    tr = load_trace(TINY)
    t, inp, out = _expected_offsets(TINY)
    assert tr.n_rows == 20
    np.testing.assert_allclose(tr.offset_s, t, rtol=0, atol=1e-9)  # 100 ns resolution
    assert tr.input_tokens is not None and tr.output_tokens is not None
    assert tr.input_tokens.dtype == np.int64
    assert np.array_equal(tr.input_tokens, inp) and np.array_equal(tr.output_tokens, out)
    assert not tr.offset_s.flags.writeable


def test_rate_scale_and_repetition() -> None:
    tr = load_trace(TINY)
    n, span = tr.n_rows, float(tr.offset_s[-1])
    period = span * n / (n - 1)
    assert tr.period_s() == pytest.approx(period)
    assert tr.mean_rate_rps(2.0) == pytest.approx(2 * n / period)
    # rate_scale=2: every arrival at half the time
    t1, row1 = tr.replay(span, rate_scale=1.0)
    t2, row2 = tr.replay(span / 2, rate_scale=2.0)
    assert np.allclose(t2, t1 / 2) and np.array_equal(row1, row2)
    # three passes back to back, each shifted by one period
    t, row = tr.replay(3 * period)
    assert t.size == 3 * n and np.all(np.diff(t) > 0)
    assert np.array_equal(row, np.tile(np.arange(n), 3))
    assert np.allclose(t[n : 2 * n], tr.offset_s + period)
    # a partial pass stops at the horizon
    t, row = tr.replay(period + 1.0)
    assert t.max() < period + 1.0 and t.size == n + int((tr.offset_s < 1.0).sum())


def test_numeric_timestamps_unsorted_rows_and_custom_columns(tmp_path: Path) -> None:
    f = tmp_path / "log.csv"
    f.write_text("t,prompt,completion,extra\n10.5,7,3,x\n10.0,5,2,y\n12.0,9,0,z\n")
    cols = TraceColumns(timestamp="t", input_tokens="prompt", output_tokens="completion")
    tr = load_trace(f, columns=cols)
    assert tr.offset_s.tolist() == [0.0, 0.5, 2.0]
    assert tr.input_tokens is not None and tr.input_tokens.tolist() == [5, 7, 9]
    assert tr.output_tokens is not None and tr.output_tokens.tolist() == [2, 3, 1]  # 0 → 1


def test_unneeded_token_columns_are_not_required(tmp_path: Path) -> None:
    f = tmp_path / "times.csv"
    f.write_text("TIMESTAMP\n0\n1\n3\n")
    tr = load_trace(f, read_input_tokens=False, read_output_tokens=False)
    assert tr.input_tokens is None and tr.n_rows == 3
    with pytest.raises(ValueError, match="ContextTokens"):
        load_trace(f)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("TIMESTAMP,ContextTokens\n0,1\n1,2\n", "GeneratedTokens"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nnot-a-time,1,2\n1,2,3\n", "TIMESTAMP"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,2\n1,abc,3\n", "ContextTokens"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,2\n1,2,3.5\n", "GeneratedTokens"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,2\n1,-2,3\n", "ContextTokens"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,2\n,2,3\n", "TIMESTAMP"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,2\n", "TIMESTAMP"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n5,1,2\n5,2,3\n", "TIMESTAMP"),
    ],
)
def test_bad_traces_name_the_file_and_column(tmp_path: Path, text: str, column: str) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(ValueError) as err:
        load_trace(f)
    assert str(f) in str(err.value) and repr(column) in str(err.value)


def test_empty_file_names_the_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.csv"
    f.write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv"):
        load_trace(f)


def test_cache_returns_the_parsed_trace_until_the_file_changes(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,2\n1,2,3\n")
    first = load_trace(f)
    assert load_trace(str(f)) is first
    f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,2\n4,2,3\n")
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # coarse clocks: force a change
    assert load_trace(f).offset_s.tolist() == [0.0, 4.0]


@pytest.mark.parametrize(
    ("name", "rows"),
    [("AzureLLMInferenceTrace_code.csv", 8819), ("AzureLLMInferenceTrace_conv.csv", 19366)],
)
def test_shipped_azure_traces_load(name: str, rows: int) -> None:
    tr = load_trace(TRACES / name)
    assert tr.n_rows == rows
    assert 3000 < tr.offset_s[-1] < 3600  # about an hour
    assert tr.input_tokens is not None and tr.input_tokens.min() >= 1


def _trace_class(**extra: object) -> WorkloadSpec:
    arrivals = {"process": "trace", "path": str(TINY), "rate_scale": 4.0}
    return WorkloadSpec.model_validate(
        {"classes": [{"name": "log", "arrivals": arrivals, **extra}]}
    )


def test_trace_class_in_a_workload() -> None:
    tr = load_trace(TINY)
    duration = 10 * tr.period_s(4.0)
    w = sample_workload(_trace_class(), duration_s=duration, seed=np.random.SeedSequence(0))
    t, row = tr.replay(duration, rate_scale=4.0)
    assert np.allclose(w.arrival_s, t)
    assert tr.input_tokens is not None
    assert np.array_equal(w.input_tokens, tr.input_tokens[row])
    assert len(w) == 10 * tr.n_rows


def test_trace_class_lengths_can_be_overridden() -> None:
    spec = _trace_class(output_tokens={"dist": "fixed", "value": 77})
    w = sample_workload(spec, duration_s=5.0, seed=np.random.SeedSequence(0))
    assert np.all(w.output_tokens == 77)
    tr = load_trace(TINY)
    _, row = tr.replay(5.0, rate_scale=4.0)
    assert tr.input_tokens is not None
    assert np.array_equal(w.input_tokens, tr.input_tokens[row])


MOONCAKE = DATA / "tiny_mooncake.jsonl"


def test_mooncake_jsonl_is_detected_and_read_in_milliseconds() -> None:
    tr = load_trace(MOONCAKE)
    assert tr.offset_s.tolist() == [0.0, 0.0, 3.052, 3.052, 6.104, 7.5, 9.0, 12.25]
    assert tr.input_tokens is not None and tr.output_tokens is not None
    assert tr.input_tokens.tolist() == [6955, 6472, 8375, 1302, 2811, 980, 512, 4096]
    assert tr.output_tokens.tolist()[6] == 1  # 0 → 1; hash_ids and blank lines ignored
    spec = TraceArrivals(path=str(MOONCAKE))
    assert spec.resolved_format() == "mooncake_jsonl" and spec.load() is tr


def test_explicit_format_and_time_unit(tmp_path: Path) -> None:
    f = tmp_path / "log.txt"  # no telling extension: the format must be given
    f.write_text(
        '{"timestamp": 5, "input_length": 3, "output_length": 4}\n'
        '{"timestamp": 7, "input_length": 5, "output_length": 6}\n'
    )
    tr = TraceArrivals(path=str(f), format="mooncake_jsonl", time_unit="s").load()
    assert tr.offset_s.tolist() == [0.0, 2.0]
    g = tmp_path / "us.csv"
    g.write_text("ts,p,o\n1000000,1,1\n3500000,2,2\n")
    cols = {"timestamp": "ts", "input_tokens": "p", "output_tokens": "o"}
    spec = TraceArrivals.model_validate(
        {"path": str(g), "format": "csv", "columns": cols, "time_unit": "us"}
    )
    assert spec.load().offset_s.tolist() == [0.0, 2.5]
    assert load_trace(g, columns=TraceColumns(**cols), time_unit="ms").offset_s[-1] == 2500.0


def test_columns_only_with_generic_csv() -> None:
    cols = {"timestamp": "t"}
    with pytest.raises(ValueError, match="columns only apply to format 'csv'"):
        TraceArrivals.model_validate({"path": "a.csv", "format": "azure_csv", "columns": cols})
    with pytest.raises(ValueError, match="mooncake_jsonl"):
        TraceArrivals.model_validate({"path": "a.jsonl", "columns": cols})
    with pytest.raises(ValueError, match="bootstrap_block_s"):
        TraceArrivals.model_validate({"path": "a.csv", "bootstrap_block_s": 0})


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{"timestamp": 0, "input_length": 1}\n', "'output_length' missing on line 1"),
        ('{"timestamp": 0, "input_length": 1, "output_length": 1}\nnot json\n', "line 2"),
        ("[1, 2]\n", "line 1 is not a JSON object"),
        ('{"timestamp": 0, "input_length": 1, "output_length": 1}\n', "at least two rows"),
        (
            '{"timestamp": 0, "input_length": 1, "output_length": 1}\n'
            '{"timestamp": 1, "input_length": -1, "output_length": 1}\n',
            "'input_length'",
        ),
    ],
)
def test_bad_jsonl_names_the_file_and_the_problem(tmp_path: Path, text: str, what: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(text)
    with pytest.raises(ValueError) as err:
        load_trace(f)
    assert str(f) in str(err.value) and what in str(err.value)


def _bootstrap_class(block_s: float, path: Path = MOONCAKE) -> WorkloadSpec:
    arrivals = {"process": "trace", "path": str(path), "bootstrap_block_s": block_s}
    return WorkloadSpec.model_validate({"classes": [{"name": "log", "arrivals": arrivals}]})


def test_bootstrap_replications_differ_and_repeat_per_seed() -> None:
    spec = _bootstrap_class(4.0)
    draw = [
        sample_workload(spec, duration_s=200.0, seed=np.random.SeedSequence(s)) for s in (1, 1, 2)
    ]
    assert np.array_equal(draw[0].arrival_s, draw[1].arrival_s)
    assert not np.array_equal(draw[0].arrival_s, draw[2].arrival_s)
    assert np.all(np.diff(draw[0].arrival_s) >= 0) and draw[0].arrival_s.max() < 200.0
    # each request keeps its own row's token pair
    tr = load_trace(MOONCAKE)
    assert tr.input_tokens is not None and tr.output_tokens is not None
    pairs = set(zip(tr.input_tokens.tolist(), tr.output_tokens.tolist(), strict=True))
    w = draw[2]
    assert set(zip(w.input_tokens.tolist(), w.output_tokens.tolist(), strict=True)) <= pairs


def test_bootstrap_keeps_timing_inside_blocks() -> None:
    tr = load_trace(TRACES / "AzureLLMInferenceTrace_conv.csv")
    block, scale = 30.0, 2.0
    t, row = tr.bootstrap(600.0, np.random.default_rng(4), block_s=block, rate_scale=scale)
    same = (t[1:] * scale // block) == (t[:-1] * scale // block)
    period = tr.period_s()
    trace_gap = np.mod(tr.offset_s[row[1:]] - tr.offset_s[row[:-1]], period)
    np.testing.assert_allclose(np.diff(t)[same] * scale, trace_gap[same], atol=1e-6)
    # consecutive arrivals inside a block are consecutive rows of the (circular) trace
    assert np.all(((row[1:] - row[:-1]) % tr.n_rows)[same] == 1)


def test_bootstrap_mean_rate_matches_the_trace_within_se() -> None:
    tr = load_trace(TRACES / "AzureLLMInferenceTrace_code.csv")
    duration, reps = 900.0, 400
    rng = np.random.default_rng(8)
    n = np.array([tr.bootstrap(duration, rng, block_s=60.0)[0].size for _ in range(reps)])
    # circular blocks cover every instant equally: E N = n_rows · duration / period exactly
    expected = tr.mean_rate_rps() * duration
    assert abs(n.mean() - expected) <= 4 * n.std(ddof=1) / np.sqrt(reps)
    # and replications really differ (a code-trace hour is very bursty)
    assert n.std() > 0.05 * expected


# --- prompt identity ------------------------------------------------------------------------
def test_mooncake_hash_ids_become_chained_prompt_blocks() -> None:
    tr = load_trace(MOONCAKE)
    pb = tr.prompt_blocks
    assert pb is not None and pb.block_tokens == 512 and len(pb) == tr.n_rows
    # rows in time order; ceil(input / 512) hashes each
    assert tr.input_tokens is not None
    assert pb.counts.tolist() == [-(-n // 512) for n in tr.input_tokens.tolist()]
    # rows 0 and 2 (ids 0..13 and 0..16) share 14 blocks, then differ; row 7 (ids 0..7)
    # shares 8 with both
    a, b, c = pb.of(0), pb.of(2), pb.of(7)
    assert np.array_equal(a, b[:14]) and np.array_equal(c, a[:8])
    assert not np.isin(pb.of(1), a).any()
    assert (pb.hashes >= 0).all()
    # off: no identity, and the same arrays as a trace without it
    off = TraceArrivals(path=str(MOONCAKE), prompt_identity=False).load()
    assert off.prompt_blocks is None and np.array_equal(off.offset_s, tr.offset_s)


def test_hash_block_tokens_is_settable(tmp_path: Path) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text(
        '{"timestamp": 0, "input_length": 300, "output_length": 1, "hash_ids": [1, 2, 3]}\n'
        '{"timestamp": 1, "input_length": 250, "output_length": 1, "hash_ids": [1, 2, 4]}\n'
    )
    tr = TraceArrivals(path=str(f), hash_block_tokens=100).load()
    assert tr.prompt_blocks is not None and tr.prompt_blocks.block_tokens == 100
    h = tr.prompt_blocks.hashes
    assert h[0] == h[3] and h[1] == h[4] and h[2] != h[5]
    with pytest.raises(ValueError, match="line 1: 'hash_ids' has 3 block ids"):
        TraceArrivals(path=str(f)).load()  # 512-token blocks: one id each


@pytest.mark.parametrize(
    ("ids", "what"),
    [
        ('"3"', "'hash_ids' must be a list of integers"),
        ("[1, 2.5]", "'hash_ids' must be a list of integers"),
        ("[1, true]", "'hash_ids' must be a list of integers"),
        ("[1]", "'hash_ids' has 1 block ids, but 700 input tokens in blocks of 512 need exactly 2"),
        ("[1, 2, 3]", "'hash_ids' has 3 block ids"),
    ],
)
def test_bad_hash_ids_name_the_file_line_and_field(tmp_path: Path, ids: str, what: str) -> None:
    f = tmp_path / "bad.jsonl"
    f.write_text(
        '{"timestamp": 0, "input_length": 10, "output_length": 1, "hash_ids": [7]}\n\n'
        f'{{"timestamp": 1, "input_length": 700, "output_length": 1, "hash_ids": {ids}}}\n'
    )
    with pytest.raises(ValueError) as err:
        load_trace(f)
    assert str(err.value).startswith(f"trace {f}: line 3: {what}")


def test_csv_hash_list_column(tmp_path: Path) -> None:
    f = tmp_path / "h.csv"
    f.write_text('t,p,o,blocks\n1,20,1,"[5, 6]"\n0,16,1,5 6\n2,9,1,5\n')
    cols = TraceColumns(timestamp="t", input_tokens="p", output_tokens="o", hash_ids="blocks")
    tr = TraceArrivals(path=str(f), columns=cols, hash_block_tokens=10).load()
    pb = tr.prompt_blocks
    assert pb is not None and pb.counts.tolist() == [2, 2, 1]  # sorted by time
    assert np.array_equal(pb.of(0), pb.of(1)) and pb.of(2)[0] == pb.of(0)[0]
    g = tmp_path / "bad.csv"
    g.write_text('t,p,o,blocks\n0,16,1,"[5, 6]"\n1,20,1,five\n')
    with pytest.raises(ValueError, match=r"bad\.csv: line 3: 'blocks' must be a list of integers"):
        TraceArrivals(path=str(g), columns=cols, hash_block_tokens=10).load()


def test_csv_prefix_id_and_length(tmp_path: Path) -> None:
    f = tmp_path / "p.csv"
    f.write_text("t,p,o,sys,sys_len\n0,100,1,a,40\n1,90,1,a,40\n2,100,1,b,40\n3,50,1,,\n")
    cols = TraceColumns(
        timestamp="t", input_tokens="p", output_tokens="o", prefix_id="sys", prefix_tokens="sys_len"
    )
    tr = TraceArrivals(path=str(f), columns=cols).load()
    pb = tr.prompt_blocks
    assert pb is not None and pb.block_tokens == 16  # an engine block by default
    assert pb.counts.tolist() == [7, 6, 7, 4]
    # 40 prefix tokens: two whole 16-token blocks shared by the two 'a' requests only
    assert np.array_equal(pb.of(0)[:2], pb.of(1)[:2]) and (pb.of(0)[:2] >= 0).all()
    assert not np.isin(pb.of(2)[:2], pb.of(0)).any()
    assert (pb.of(0)[2:] < 0).all() and (pb.of(3) < 0).all()
    assert np.unique(pb.hashes[pb.hashes < 0]).size == int((pb.hashes < 0).sum())
    g = tmp_path / "long.csv"
    g.write_text("t,p,o,sys,sys_len\n0,100,1,a,40\n1,30,1,a,40\n")
    with pytest.raises(ValueError, match=r"long\.csv: line 3: 'sys_len' is 40 tokens, longer"):
        TraceArrivals(path=str(g), columns=cols).load()
    with pytest.raises(ValueError, match="go together"):
        TraceColumns(prefix_id="sys")


def test_workload_mixes_classes_with_and_without_identity() -> None:
    spec = WorkloadSpec.model_validate(
        {
            "classes": [
                {"name": "log", "arrivals": {"process": "trace", "path": str(MOONCAKE)}},
                {
                    "name": "chat",
                    "arrivals": {"process": "poisson", "rate_rps": 2.0},
                    "prompt_tokens": {"dist": "fixed", "value": 600},
                    "output_tokens": {"dist": "fixed", "value": 5},
                    "prefix": {"tokens": 1100, "share": 0.5},
                },
            ]
        }
    )
    w = sample_workload(spec, duration_s=30.0, seed=np.random.SeedSequence(3))
    pb = w.prompt_blocks
    assert pb is not None and len(pb) == len(w)
    assert pb.counts.tolist() == (-(-w.input_tokens // 512)).tolist()
    log = np.flatnonzero(w.class_id == 0)
    chat = np.flatnonzero(w.class_id == 1)
    tr = load_trace(MOONCAKE)
    assert tr.prompt_blocks is not None
    assert np.array_equal(pb.of(int(log[0])), tr.prompt_blocks.of(0))
    assert all((pb.of(int(q)) >= 0).all() for q in log)
    # the class prefix's two whole 512-token blocks are shared, everything else is unique
    assert w.has_prefix is not None
    with_p = chat[w.has_prefix[chat]]
    assert with_p.size >= 2
    assert np.array_equal(pb.of(int(with_p[0]))[:2], pb.of(int(with_p[1]))[:2])
    neg = pb.hashes[pb.hashes < 0]
    assert np.unique(neg).size == neg.size
    no_p = chat[~w.has_prefix[chat]]
    assert all((pb.of(int(q)) < 0).all() for q in no_p)
