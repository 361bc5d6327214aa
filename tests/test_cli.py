"""The ``crossover`` command end to end: the files a run writes, and one clear line per bad input.

Commands run as ``python -m sim`` in a subprocess, as a user runs them. Starting the
interpreter costs a couple of seconds (numpy, pandas, scipy, numba), so the failing commands
are started together in one module fixture, every bad scenario file goes through a single
``crossover validate`` (one line per file) and only two commands actually simulate. Every case
also runs in-process through :func:`sim.cli.main`, one at a time, for the exit code of each.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

import sim
from sim.cli import main
from sim.intervals import SUMMARY_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
DATA = Path("tests/data")  # relative to ROOT, as a user would type it
TINY = ("--set", "horizon.duration_s=60", "--set", "horizon.warmup_s=0")
REQUEST_COLUMNS = (
    "arrival_s", "class_name", "input_tokens", "output_tokens", "route", "status", "reason",
    "queue_s", "ttft_s", "tpot_s", "e2e_s", "finish_s",
)  # fmt: skip


def crossover(*args: object) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sim ARGS`` from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "sim", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _at_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # in-process calls of main() see the same relative paths as the subprocesses
    monkeypatch.chdir(ROOT)


# ---------------------------------------------------------------------------------------------
# Bad input: exit 2, exactly one line on stderr naming the file and the field, no traceback.
# ---------------------------------------------------------------------------------------------

# tests/data/bad-CASE.yaml: the field path its error names, and words the line must contain.
BAD_FILE = {
    "yaml-syntax": ("line 11", "not valid YAML"),
    "not-mapping": ("expected a mapping",),
    "unknown-field": ("fleet.replica", "unknown field", "did you mean 'replicas'"),
    "wrong-type": ("fleet.tp", "valid integer", "(got 'two')"),
    "out-of-range": ("fleet.replicas", "Input should be greater than or equal to 1 (got 0)"),
    "arrival-rate": ("workload.classes.0.arrivals.rate_rps", "greater than 0 (got -1)"),
    "length-mean": ("workload.classes.0.output_tokens.mean", "greater than or equal to 1"),
    "unknown-process": ("workload.classes.0.arrivals", "unknown process 'poison'", "'poisson'"),
    "missing-field": ("fleet.gpu", "Field required"),
    "unknown-gpu": ("fleet.gpu", "unknown GPU 'h1000'", "known: h100-sxm"),
    "unknown-model": ("fleet.model", "unknown model 'llama-9b'", "known: llama-3.1-8b"),
    "model-too-big": ("fleet.model", "llama-3.1-405b", "no room for a KV cache on l4"),
    "warmup": ("horizon", "warmup_s (120.0) must be smaller than duration_s (60.0)"),
    "step-time": ("fleet.step_time.c0_s", "Field required"),
    "trace-missing": ("workload.classes.0.arrivals.path", "cannot read trace", "no-such-trace"),
    "trace-columns": ("workload.classes.0.arrivals.path", "column 'Time' not found"),
    "trace-hash-ids": (
        "workload.classes.0.arrivals.path",
        "bad-hash-ids.jsonl: line 3: 'hash_ids' has 2",
    ),
    "config-path": ("fleet.model.config_path", "cannot read", "no-such-config.json"),
    "pool-unknown": ("workload.classes.0.pools.1", "no pool named 'a100'", "pools: h100, l40s"),
    "pool-duplicate": ("fleet.pools.1.name", "two pools are named 'h100'"),
    "pool-context": ("workload.classes.1.pools", "'long-docs'", "at most 8,192"),
}

GOOD = DATA / "good-tiny.yaml"
WITH_SET = f"{GOOD} (with --set)"

# Failing commands: the arguments, the source their line starts with, words it must contain.
# Those marked True also run as a subprocess.
BAD_RUN: dict[str, tuple[bool, Sequence[object], str, tuple[str, ...]]] = {
    "missing-file": (True, ("run", "no-such.yaml"), "no-such.yaml", ("cannot read the file",)),
    "directory": (False, ("validate", DATA), str(DATA), ("cannot read the file",)),
    "bad-file-via-run": (
        False, ("run", DATA / "bad-unknown-gpu.yaml"), str(DATA / "bad-unknown-gpu.yaml"),
        ("fleet.gpu: unknown GPU 'h1000'",),
    ),
    "set-unknown-field": (
        True, ("run", GOOD, "--set", "fleet.replicaz=2"), WITH_SET,
        ("no field 'fleet.replicaz'", "replicas"),
    ),
    "set-unknown-class": (
        False, ("run", GOOD, "--set", "workload.classes.chatt.arrivals.rate_rps=2"), WITH_SET,
        ("no item 'workload.classes.chatt'", "known names: chat"),
    ),
    "set-index-out-of-range": (
        False, ("run", GOOD, "--set", "workload.classes.3.private=true"), WITH_SET,
        ("no item 'workload.classes.3'",),
    ),
    "set-below-a-value": (
        False, ("run", GOOD, "--set", "fleet.replicas.count=2"), WITH_SET,
        ("no field 'fleet.replicas.count'",),
    ),
    "set-out-of-range": (
        True, ("run", GOOD, "--set", "fleet.replicas=0"), WITH_SET,
        ("fleet.replicas: Input should be greater than or equal to 1 (got 0)",),
    ),
    "set-nested-range": (
        False, ("run", GOOD, "--set", "workload.classes.chat.arrivals.rate_rps=-3"), WITH_SET,
        ("workload.classes.0.arrivals.rate_rps: Input should be greater than 0 (got -3)",),
    ),
    "set-unknown-gpu": (
        False, ("run", GOOD, "--set", "fleet.gpu=h1000"), WITH_SET,
        ("fleet.gpu: unknown GPU 'h1000'",),
    ),
    "set-missing-trace": (
        False,
        ("run", GOOD, "--set", "workload.classes.chat.arrivals={process: trace, path: nope.csv}"),
        WITH_SET, ("workload.classes.0.arrivals.path: cannot read trace",),
    ),
    "set-no-equals": (False, ("run", GOOD, "--set", "fleet.replicas"), "--set 'fleet.replicas'",
                      ("expected PATH=VALUE",)),
    "set-bad-yaml-value": (False, ("run", GOOD, "--set", "fleet.tp=[1,"), "--set 'fleet.tp=[1,'",
                           ("not valid YAML",)),
    "out-is-a-file": (False, ("run", GOOD, "--out", GOOD / "x"), f"--out {GOOD / 'x'}",
                      ("cannot write there",)),
}  # fmt: skip

# argparse errors: "crossover: <message> (see crossover --help)"
BAD_USAGE = {
    "zero-replications": (("run", GOOD, "--replications", "0"), "must be at least 1, got 0"),
    "negative-seed": (("run", GOOD, "--seed", "-1"), "must be at least 0, got -1"),
    "no-command": ((), "required: command"),
}


@pytest.fixture(scope="module")
def bad_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scenario replaying a trace whose prompt-token column holds text."""
    d = tmp_path_factory.mktemp("badtrace")
    (d / "trace.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,5\n1,lots,7\n")
    (d / "scenario.yaml").write_text(
        "name: t\nhorizon: {duration_s: 60}\nfleet: {model: llama-3.1-8b, gpu: h100-sxm}\n"
        "workload: {classes: [{name: c, arrivals: {process: trace, path: trace.csv}}]}\n"
    )
    return d / "scenario.yaml"


@pytest.fixture(scope="module")
def results(bad_csv: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """The failing subprocess commands, run concurrently (none reaches the simulator)."""
    commands: dict[str, Sequence[object]] = {
        "validate": ("validate", *(DATA / f"bad-{k}.yaml" for k in BAD_FILE), bad_csv),
        **{k: v[1] for k, v in BAD_RUN.items() if v[0]},
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {k: pool.submit(crossover, *cmd) for k, cmd in commands.items()}
        return {k: f.result() for k, f in futures.items()}


def _error_lines(proc: subprocess.CompletedProcess[str], n: int = 1) -> list[str]:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == n, proc.stderr
    return lines


def _main_error_line(args: Sequence[object], capsys: pytest.CaptureFixture[str]) -> str:
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.rstrip("\n")


def _check_bad_file(case: str, line: str) -> None:
    where, *words = BAD_FILE[case]
    assert line.startswith(f"error: {DATA / f'bad-{case}.yaml'}: {where}"), line
    for word in words:
        assert word in line, line


def test_validate_gives_one_line_per_bad_file(
    results: dict[str, subprocess.CompletedProcess[str]], bad_csv: Path
) -> None:
    *lines, csv_line = _error_lines(results["validate"], n=len(BAD_FILE) + 1)
    for case, line in zip(BAD_FILE, lines, strict=True):
        _check_bad_file(case, line)
    # a trace whose prompt-token column holds text: the file, the field, the column and row
    assert csv_line.startswith(f"error: {bad_csv}: workload.classes.0.arrivals.path: "), csv_line
    assert "'ContextTokens'" in csv_line and "'lots'" in csv_line, csv_line


@pytest.mark.parametrize("case", list(BAD_FILE))
def test_bad_scenario_file(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    _check_bad_file(case, _main_error_line(("validate", DATA / f"bad-{case}.yaml"), capsys))


def _check_bad_run(case: str, line: str) -> None:
    _, _, source, words = BAD_RUN[case]
    assert line.startswith(f"error: {source}: "), line
    for word in words:
        assert word in line, line


@pytest.mark.parametrize("case", [k for k, v in BAD_RUN.items() if v[0]])
def test_bad_command_in_a_subprocess(
    case: str, results: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    _check_bad_run(case, _error_lines(results[case])[0])


@pytest.mark.parametrize("case", list(BAD_RUN))
def test_bad_command(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    _check_bad_run(case, _main_error_line(BAD_RUN[case][1], capsys))


@pytest.mark.parametrize("case", list(BAD_USAGE))
def test_bad_usage(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    args, words = BAD_USAGE[case]
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("crossover: ") and words in err, err


# Rarer inputs, in-process only.


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\xff\xfe\x00", "not a text file"),
        (b"", "expected a mapping"),
        (b"just a string\n", "expected a mapping"),
    ],
)
def test_unreadable_scenario_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, expected: str
) -> None:
    f = tmp_path / "s.yaml"
    f.write_bytes(content)
    line = _main_error_line(("validate", f), capsys)
    assert line.startswith(f"error: {f}: ") and expected in line, line


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("model: llama-3.1-8b", "model: 5", "fleet.model: Input should be a valid string or a "
         "mapping of fields (got 5)"),
        ("model: llama-3.1-8b", "model: {hidden_size: 4096}", "fleet.model: config for "
         "'custom' is missing required field"),
        ("model: llama-3.1-8b", "model: {config_path: cfg.json}", "fleet.model.config_path: "
         "{dir}/cfg.json should hold a JSON object"),
        ("model: llama-3.1-8b", "model: {config_path: [1]}", "fleet.model.config_path: "
         "should be the path of a config.json"),
        ("{process: poisson, rate_rps: 1.0}", "{rate_rps: 1.0}", "workload.classes.0.arrivals: "
         "the 'process' key is missing"),
        ("{process: poisson, rate_rps: 1.0}", "5", "workload.classes.0.arrivals: Input should "
         "be a mapping of fields (got 5)"),
        ("{process: poisson, rate_rps: 1.0}", "{process: poisson, rate_rps: 1.0}\n"
         "      profile: {kind: diurnal, peak_to_trough: 2, peak_hour: 30}",
         "workload.classes.0.profile.peak_hour: Input should be less than 24 (got 30)"),
        ("{process: poisson, rate_rps: 1.0}", "{process: closed_loop, users: 2, "
         "think_time_s: 1}\n      profile: {kind: diurnal, peak_to_trough: 2}",
         "workload.classes.0.profile: profile is not allowed with process 'closed_loop'"),
        ("    - name: chat", "    - name: chat\n      arrivals: {process: poisson, rate_rps: 1}\n"
         "      prompt_tokens: {dist: fixed, value: 1}\n      output_tokens: {dist: fixed, "
         "value: 1}\n    - name: chat", "workload.classes: class names must be unique"),
        ("  classes:", "  x: 1\n  classes:", "workload.x: unknown field"),
    ],
)  # fmt: skip
def test_rarer_bad_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, expected: str
) -> None:
    (tmp_path / "cfg.json").write_text("[1, 2]")
    text = GOOD.read_text()
    assert old in text
    f = tmp_path / "s.yaml"
    f.write_text(text.replace(old, new, 1))
    line = _main_error_line(("validate", f), capsys)
    assert line.startswith(f"error: {f}: {expected.format(dir=tmp_path)}"), line


# ---------------------------------------------------------------------------------------------
# Good input
# ---------------------------------------------------------------------------------------------


def test_validate_accepts_the_shipped_scenarios() -> None:
    files = sorted((ROOT / "scenarios").glob("*.yaml")) + sorted((ROOT / DATA).glob("good-*.yaml"))
    proc = crossover("validate", *files)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert [line.split()[0] for line in proc.stdout.splitlines()] == ["ok:"] * len(files)


@pytest.fixture(scope="module")
def run_dir(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("run") / "out"
    proc = crossover(
        "run", "scenarios/chat-startup.yaml", "--replications", 2, "--seed", 3, "--out", out,
        *TINY, "--set", "fleet.replicas=1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_run_writes_every_output(run_dir: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, proc = run_dir
    names = {"summary.csv", "replications.csv", "requests.parquet", "timeseries.csv",
             "scenario.resolved.yaml"}  # fmt: skip
    assert names <= {p.name for p in out.iterdir()}
    assert "Traceback" not in proc.stderr
    assert "chat-startup: 2 replications × 60 s" in proc.stdout
    assert f"wrote {out}/" in proc.stdout


def test_run_outputs_are_consistent(run_dir: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, _ = run_dir
    summary = pd.read_csv(out / "summary.csv")
    reps = pd.read_csv(out / "replications.csv")
    requests = pd.read_parquet(out / "requests.parquet")
    timeseries = pd.read_csv(out / "timeseries.csv")

    assert tuple(summary.columns) == SUMMARY_COLUMNS
    assert len(reps) == 2 and reps["replication"].tolist() == [0, 1]
    # every replication metric is summarised, its mean is the mean over replications
    assert set(summary["metric"]) == set(reps.columns) - {"replication"}
    table = summary.set_index("metric")
    for metric in ("throughput_rps", "requests_offered", "gpu_busy_fraction"):
        assert table.loc[metric, "mean"] == pytest.approx(reps[metric].mean())
        assert table.loc[metric, "n"] == 2
        assert (
            table.loc[metric, "ci_low"] <= table.loc[metric, "mean"] <= table.loc[metric, "ci_high"]
        )

    # the per-request records are those of replication 0 (no warm-up: every request counts)
    assert set(REQUEST_COLUMNS) <= set(requests.columns)
    assert len(requests) == reps.loc[0, "requests_offered"] > 0
    assert (requests["status"] == "completed").sum() == reps.loc[0, "requests_completed"]
    assert requests["arrival_s"].between(0, 60, inclusive="left").all()
    assert set(requests["class_name"]) == {"chat"}
    assert len(timeseries) > 0


def test_resolved_scenario_is_what_ran(
    run_dir: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    out, _ = run_dir
    resolved = sim.load_scenario(out / "scenario.resolved.yaml")
    expected = sim.load_scenario(ROOT / "scenarios/chat-startup.yaml").with_overrides(
        {"horizon.duration_s": 60, "horizon.warmup_s": 0, "fleet.replicas": 1}
    )
    assert resolved == expected


def test_trace_example_runs_through_the_console_script(tmp_path: Path) -> None:
    # the installed ``crossover`` script is the same command as ``python -m sim``
    script = Path(sys.executable).with_name("crossover")
    if not script.exists():
        pytest.skip("console script not installed next to the interpreter")
    proc = subprocess.run(
        [str(script), "run", "scenarios/code-assistant-trace.yaml", "-n", "1", "--quiet",
         "--out", str(tmp_path), *TINY],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # --quiet
    requests = pd.read_parquet(tmp_path / "requests.parquet")
    assert set(requests["class_name"]) == {"code"} and len(requests) > 0
    # token counts come from the trace, so they are not one fixed value
    assert requests["input_tokens"].nunique() > 1
