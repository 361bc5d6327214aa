"""How wrong is the DEFAULT roofline performance model? Measured against public data, end to end.

Three checks, each run with the simulator's default step time (``step_time: {model:
roofline}``, i.e. the ``vllm`` profile of ``sim/catalog/profiles.yaml``) and, for comparison,
the constants shipped before the profiles (compute efficiency 0.55, bandwidth efficiency 0.80,
overhead 3 ms, all-reduce latency 8 µs):

1. **Per-iteration latency vs the Splitwise A100 profile** (Llama-2-70B TP 2/4/8 and BLOOM-176B
   TP 8 on A100-80GB; MIT, Mutinifni/splitwise-sim ``data/perf_model.csv``): prefill of
   ``batch_size`` prompts and the mean decode iteration (:func:`decode_run_time`).
2. **End-to-end replay of nine measured vLLM H100 runs** (inference-sim/training; no licence:
   only derived figures are written), on one replica with the run's engine settings and KV
   size; every request generates the run's configured output length. The client cycles
   through a fixed set of prompts, so each distinct prompt becomes a workload class whose
   prefix is the prompt minus its last token, and the engine's automatic prefix cache serves
   the repeats as vLLM's did. The same replays are also run with each request's prompt
   identity read from a trace column instead (:func:`identity_workload`: a CSV trace with
   ``prefix_id`` / ``prefix_tokens`` columns loaded by :func:`sim.workload.trace.load_trace`).
3. **Offline saturation throughput vs TensorRT-LLM's published figures** (Apache-2.0) for
   Llama 3.1 8B / 3.3 70B / 3.1 405B in FP8 on H100 / H200.

Section 2 also gives the error by load (one-minute windows banded by slot occupancy) and by
TP; section 5, the KV-cache capacity against vLLM startup logs, comes from
``benchmarks/validate_kv_memory.py`` (its data is shipped in ``benchmarks/data``).

``--fit`` adds the ``scipy.optimize.least_squares`` fits behind the profiles, with
leave-one-model-out errors (and leave-one-TP-out for the A100 profile). Reference data is
read from optional paths (defaults: ``../shared/data/calibration/…``); a section whose data
is missing is skipped. The report goes to stdout and to ``--out`` (default
``benchmarks/validation.md``).

Run ``.venv/bin/python benchmarks/validate_model.py [--fit]``; ``--help`` lists the options.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.catalog.profiles import PROFILE_ONLY_FIELDS
from sim.engine.fit_steptime import PARAMS, PROFILE_KEYS, Residuals, StepFit, fit_constants
from sim.engine.replica import ReplicaConfig, build_replica
from sim.engine.serve import serve
from sim.engine.spec import EngineSpec, FleetSpec, Horizon, RooflineStep
from sim.engine.steptime import (
    COUNT_COEFFS,
    apply_stack_constants,
    decode_run_time,
    resolve_roofline,
)
from sim.workload import Workload
from sim.workload.trace import TraceColumns, load_trace

REPO = Path(__file__).resolve().parent.parent
CALIBRATION = REPO.parent / "shared" / "data" / "calibration"
DEFAULT_VLLM = CALIBRATION / "vllm_h100_runs"
DEFAULT_SPLITWISE = CALIBRATION / "splitwise_a100_step_times.csv"
DEFAULT_TRTLLM = CALIBRATION / "trtllm_offline_throughput.csv"
DEFAULT_OUT = REPO / "benchmarks" / "validation.md"


# BLOOM-176B (bigscience/bloom config.json: hidden_size 14336, n_layer 70, n_head 112,
# vocab_size 250880, tied embeddings, MHA, ALiBi, seq_length 2048). Its MLP is two h×4h
# matrices (GELU, not gated); the catalog counts a gated MLP as 3·h·f, so f = 8h/3 gives the
# same parameters and FLOPs (8h² per layer; 176.2 B parameters in all).
BLOOM_176B: dict[str, Any] = {
    "name": "bloom-176b",
    "hidden_size": 14336,
    "num_hidden_layers": 70,
    "num_attention_heads": 112,
    "num_key_value_heads": 112,
    "intermediate_size": round(8 * 14336 / 3),
    "vocab_size": 250880,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}
SPLITWISE_MODELS: dict[str, str | dict[str, Any]] = {
    "llama2-70b": "llama-2-70b",
    "bloom-176b": BLOOM_176B,
}
SPLITWISE_GPUS = {"a100-80gb": "a100-80gb-sxm"}

VLLM_MODELS = {
    "meta-llama/Llama-2-7b-hf": "llama-2-7b",
    "meta-llama/Llama-2-70b-hf": "llama-2-70b",
    "mistralai/Mixtral-8x7B-v0.1": "mixtral-8x7b",
}
VLLM_MAX_MODEL_LEN = 4096  # exp-config.yaml of every run

TRT_MODELS = {
    "Llama 3.1 8B": "llama-3.1-8b",
    "Llama 3.3 70B": "llama-3.3-70b",
    "Llama 3.1 405B": "llama-3.1-405b",
}
TRT_GPUS = {"H100": "h100-sxm", "H200": "h200-sxm"}
TRT_DTYPES = {"FP8": "fp8", "BF16": "bf16", "FP16": "fp16"}
OFFLINE_MAX_NUM_SEQS = 2048
OFFLINE_MAX_BATCHED = 8192

METRICS = ("ttft_mean", "ttft_p90", "ttft_p99", "e2e_mean", "e2e_p90", "e2e_p99", "itl_mean")
FIT_METRICS = ("e2e_mean", "e2e_p90", "itl_mean")


Params = Mapping[str, Any] | None
"""Roofline fields to set (``profile`` and / or the constants, ``seq_cpu_s`` included); None:
the defaults."""

# The coefficients the simulator shipped before profiles existed (the "before" figures).
OLD_DEFAULTS: dict[str, Any] = {
    "compute_efficiency": 0.55,
    "bandwidth_efficiency": 0.80,
    "overhead_s": 0.003,
    "allreduce_latency_s": 8e-6,
    "allreduce_hop_s": 0.0,
    "link_efficiency": 1.0,
    "small_link_efficiency": 1.0,
    "small_message_mib": 0.0,
    "seq_cpu_s": 0.0,
    "layer_s": 0.0,
}
DEFAULT_PARAMS: Params = None


def step_spec(params: Params) -> dict[str, Any]:
    """A ``step_time:`` mapping: the roofline with ``params`` over its profile (the
    profile-only constants ``seq_cpu_s`` and ``layer_s`` are left out: :func:`replica_of`
    sets them)."""
    given = {k: v for k, v in (params or {}).items() if k not in PROFILE_ONLY_FIELDS}
    return {"model": "roofline", **given}


def replica_of(fleet: FleetSpec, params: Params) -> ReplicaConfig:
    """``build_replica(fleet)`` with ``params``' profile-only constants (``seq_cpu_s``,
    ``layer_s``: a scenario's ``step_time:`` block cannot set them) applied to its
    coefficients when given."""
    replica = build_replica(fleet)
    given = params or {}
    stack = {k: float(given[k]) for k in PROFILE_ONLY_FIELDS if given.get(k) is not None}
    if stack and isinstance(fleet.step_time, RooflineStep):
        apply_stack_constants(
            replica.coefficients,
            fleet.step_time,
            model=replica.model,
            gpu_name=replica.gpu.name,
            values=stack,
        )
    return replica


def mape(err: pd.Series | np.ndarray) -> float:
    """Mean absolute relative error, in percent, of an array of relative errors."""
    a = np.abs(np.asarray(err, dtype=float))
    return float(100.0 * a.mean()) if a.size else math.nan


def pct(x: float) -> str:
    """A relative error as a signed percentage."""
    return "n/a" if not np.isfinite(x) else f"{100.0 * x:+.1f}%"


def md_table(frame: pd.DataFrame) -> str:
    """A pandas frame as a GitHub Markdown table (values already formatted as strings)."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# 1. Splitwise A100 per-iteration profile


def splitwise_rows(path: Path) -> pd.DataFrame:
    """The profile averaged over its repeats: one row per (model, tp, prompt, batch, tokens)."""
    raw = pd.read_csv(path)
    keys = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"]
    g = raw.groupby(keys, as_index=False).agg(
        prompt_ms=("prompt_time", "mean"),
        token_ms=("token_time", "mean"),
        repeats=("prompt_time", "size"),
        prompt_cv=("prompt_time", lambda x: float(np.std(x, ddof=1) / np.mean(x))),
    )
    # A prefill that gets *faster* when the batch doubles at the same prompt size is not a
    # measurement of the same work (Llama-2-70B TP2, 64 × 512 tokens: 796 ms after 6607 ms at
    # batch 32; most likely an out-of-memory fallback). Flag such rows and keep them out of
    # the prefill error figures.
    g = g.sort_values(keys).reset_index(drop=True)
    g["prefill_outlier"] = False
    for _, sub in g.groupby(["model", "tensor_parallel", "prompt_size", "token_size"]):
        sub = sub.sort_values("batch_size")
        prev = sub["prompt_ms"].cummax().shift(1)
        g.loc[sub.index[(sub["prompt_ms"] < 0.5 * prev).to_numpy()], "prefill_outlier"] = True
    return g


def splitwise_fleet(model: str, hardware: str, tp: int, params: Params) -> FleetSpec:
    """A one-replica fleet of the Splitwise configuration (KV size irrelevant here)."""
    return FleetSpec.model_validate(
        {
            "model": SPLITWISE_MODELS[model],
            "gpu": SPLITWISE_GPUS[hardware],
            "tp": tp,
            "engine": {"kv_blocks": 1024},
            "step_time": step_spec(params),
        }
    )


def splitwise_predict(rows: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Predicted prefill and mean decode iteration (ms) for every profile row."""
    out = rows.copy()
    pf = np.empty(len(rows))
    dec = np.empty(len(rows))
    for (model, hw, tp), sub in rows.groupby(["model", "hardware", "tensor_parallel"]):
        coeffs = replica_of(splitwise_fleet(model, hw, int(tp), params), params).coefficients
        for i, r in zip(sub.index, sub.itertuples(), strict=True):
            b, p, t = int(r.batch_size), int(r.prompt_size), int(r.token_size)
            n_pf = float(b * p)
            pf[i] = 1e3 * coeffs.time_s(n_pf, 0.0, n_pf, n_pf, b * p * (p + 1) / 2.0)
            # decode iteration j (j = 0 … t−2) has every sequence at context p + 1 + j
            k = t - 1
            dec[i] = 1e3 * decode_run_time(coeffs.vector, b, float(b * (p + 1)), k) / k
    out["prompt_pred_ms"] = pf
    out["token_pred_ms"] = dec
    out["prefill_err"] = out["prompt_pred_ms"] / out["prompt_ms"] - 1.0
    out["decode_err"] = out["token_pred_ms"] / out["token_ms"] - 1.0
    return out


def _tp_bias(pred: pd.DataFrame, tp: int) -> str:
    """Mean prefill error of Llama-2-70B at ``tp`` (outliers excluded), as text."""
    g = pred[(pred["tensor_parallel"] == tp) & ~pred["prefill_outlier"]]
    g = g[g["model"] == "llama2-70b"]
    return f"{100 * g['prefill_err'].mean():+.0f} %"


def _prefill_spread(rows: pd.DataFrame) -> str:
    """How much the repeats of large prefills (≥ 4,096 tokens) disagree, by TP."""
    tokens = rows["prompt_size"] * rows["batch_size"]
    big = rows[(tokens >= 4096) & ~rows["prefill_outlier"]]
    parts = []
    for tp, g in big.groupby("tensor_parallel"):
        cv = 100 * g["prompt_cv"]
        parts.append(f"TP {tp}: median {cv.median():.1f} %, up to {cv.max():.1f} %")
    return (
        "the coefficient of variation of the five repeats of a prefill of 4,096 tokens or "
        "more is " + "; ".join(parts) + " (a roofline's time has none)"
    )


def splitwise_summary(pred: pd.DataFrame) -> pd.DataFrame:
    """MAPE of prefill and decode per model / TP, plus the overall rows."""
    rows = []
    groups = [((m, tp), sub) for (m, tp), sub in pred.groupby(["model", "tensor_parallel"])]
    groups.append((("all", "all"), pred))
    for (model, tp), sub in groups:
        pf = sub.loc[~sub["prefill_outlier"], "prefill_err"]
        rows.append(
            {
                "model": model,
                "tp": tp,
                "rows": len(sub),
                "prefill MAPE": f"{mape(pf):.1f}%",
                "prefill bias (mean err)": pct(pf.mean()),
                "prefill worst": pct(pf.iloc[np.argmax(np.abs(pf.to_numpy()))]),
                "decode MAPE": f"{mape(sub['decode_err']):.1f}%",
                "decode bias (mean err)": pct(sub["decode_err"].mean()),
                "decode worst": pct(
                    sub["decode_err"].iloc[np.argmax(np.abs(sub["decode_err"].to_numpy()))]
                ),
            }
        )
    return pd.DataFrame(rows)


def splitwise_detail(pred: pd.DataFrame) -> pd.DataFrame:
    """Formatted per-configuration table (derived from the MIT-licensed profile)."""
    t = pd.DataFrame(
        {
            "model": pred["model"],
            "tp": pred["tensor_parallel"],
            "prompt": pred["prompt_size"],
            "batch": pred["batch_size"],
            "tokens": pred["token_size"],
            "prefill ms meas": pred["prompt_ms"].map("{:.1f}".format),
            "prefill ms pred": pred["prompt_pred_ms"].map("{:.1f}".format),
            "prefill err": [
                pct(e) + (" (outlier)" if o else "")
                for e, o in zip(pred["prefill_err"], pred["prefill_outlier"], strict=True)
            ],
            "decode ms meas": pred["token_ms"].map("{:.1f}".format),
            "decode ms pred": pred["token_pred_ms"].map("{:.1f}".format),
            "decode err": pred["decode_err"].map(pct),
        }
    )
    return t


# ---------------------------------------------------------------------------------------------
# 2. vLLM H100 runs, replayed


@dataclass(frozen=True)
class VllmRun:
    """One measured run: its engine settings and per-request arrays (kept in memory only)."""

    name: str
    model: str
    tp: int
    max_num_seqs: int
    max_batched: int
    kv_blocks: int
    block_size: int
    stages: str
    system_prompt_len: int
    output_len_cfg: int
    arrival_s: np.ndarray
    input_tokens: np.ndarray
    recorded_output: np.ndarray
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    prompt_period: int
    uncached_fraction: float

    @property
    def short(self) -> str:
        """The experiment name without its timestamp."""
        return self.name.split("-", 2)[2] if self.name.count("-") >= 2 else self.name


def prompt_period(tokens: np.ndarray, max_lag: int = 1000) -> tuple[int, float]:
    """Smallest lag at which the prompt-length sequence repeats itself (≥ 90 % of positions).

    The client cycles through a fixed set of prompts (``num_groups × num_prompts_per_group``),
    so the request at index i + period carries the same prompt as the one at i. Returns
    ``(0, best match)`` when no lag reaches 90 %.
    """
    best = 0.0
    for lag in range(1, min(max_lag, tokens.size // 2)):
        match = float(np.mean(tokens[lag:] == tokens[:-lag]))
        best = max(best, match)
        if match >= 0.9:
            return lag, match
    return 0, best


def uncached_fraction(tokens: np.ndarray, period: int, block: int) -> float:
    """Share of prompt tokens vLLM's automatic prefix cache would still compute.

    The first ``period`` requests miss; every later one finds its whole prompt cached except
    the last, partial block (vLLM always computes at least the final token, so a hit covers
    ``block · floor((n − 1) / block)`` tokens).
    """
    if period <= 0:
        return 1.0
    computed = tokens.astype(float).copy()
    later = np.arange(tokens.size) >= period
    computed[later] = tokens[later] - block * ((tokens[later] - 1) // block)
    return float(computed.sum() / tokens.sum())


def load_vllm_runs(directory: Path) -> list[VllmRun]:
    """Read ``experiments.csv`` and every run's per-request file."""
    exps = pd.read_csv(directory / "experiments.csv")
    runs = []
    for e in exps.itertuples():
        req = pd.read_csv(directory / f"{e.experiment}.csv")
        if req["has_error"].astype(bool).any():
            req = req[~req["has_error"].astype(bool)]
        req = req.sort_values("index", kind="stable")  # = arrival order in these runs
        if not np.all(np.diff(req["arrival_time_us"].to_numpy()) >= 0):
            req = req.sort_values("arrival_time_us", kind="stable")
        tokens = req["input_tokens"].to_numpy(dtype=np.int64)
        period, _ = prompt_period(tokens)
        runs.append(
            VllmRun(
                name=str(e.experiment),
                model=VLLM_MODELS[str(e.model_id)],
                tp=int(e.tensor_parallelism),
                max_num_seqs=int(e.max_num_seqs),
                max_batched=int(e.max_num_batched_tokens),
                kv_blocks=int(e.kv_blocks_total_gpu),
                block_size=int(e.block_size),
                stages=str(e.load_stages),
                system_prompt_len=int(e.system_prompt_len),
                output_len_cfg=int(e.output_len_cfg),
                arrival_s=req["arrival_time_us"].to_numpy(dtype=float) / 1e6,
                input_tokens=req["input_tokens"].to_numpy(dtype=np.int64),
                recorded_output=req["output_tokens"].to_numpy(dtype=np.int64),
                ttft_s=req["ttft_s"].to_numpy(dtype=float),
                e2e_s=req["e2e_s"].to_numpy(dtype=float),
                prompt_period=period,
                uncached_fraction=uncached_fraction(tokens, period, int(e.block_size)),
            )
        )
    return runs


def latency_stats(ttft: np.ndarray, e2e: np.ndarray, out: np.ndarray) -> dict[str, float]:
    """Mean / p90 / p99 of TTFT and E2E, and the mean per-token latency (outputs ≥ 2)."""
    ok = out >= 2
    itl = (e2e[ok] - ttft[ok]) / (out[ok] - 1)
    return {
        "ttft_mean": float(np.mean(ttft)),
        "ttft_p90": float(np.percentile(ttft, 90)),
        "ttft_p99": float(np.percentile(ttft, 99)),
        "e2e_mean": float(np.mean(e2e)),
        "e2e_p90": float(np.percentile(e2e, 90)),
        "e2e_p99": float(np.percentile(e2e, 99)),
        "itl_mean": float(np.mean(itl)),
    }


def vllm_fleet(run: VllmRun, params: Params) -> FleetSpec:
    """The run's engine as a one-replica fleet."""
    return FleetSpec.model_validate(
        {
            "model": run.model,
            "gpu": "h100-sxm",
            "tp": run.tp,
            "dtype": "bf16",
            "replicas": 1,
            "router": "round_robin",
            "engine": {
                "max_num_seqs": run.max_num_seqs,
                "max_num_batched_tokens": run.max_batched,
                "block_tokens": run.block_size,
                "kv_blocks": run.kv_blocks,
                "max_model_len": VLLM_MAX_MODEL_LEN,
            },
            "step_time": step_spec(params),
        }
    )


def prompt_classes(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One class per distinct prompt, its prefix the prompt minus its last token.

    The client cycles through a fixed set of prompts and the run records only their lengths;
    a distinct length is taken as a distinct prompt. Every request carries its class's
    prefix, so the replica's automatic prefix cache serves a repeated prompt except its last
    partial block, as vLLM's does (a hit covers ``block · floor((n − 1) / block)`` tokens).
    Returns ``(class_id per request, prefix tokens per class)``.
    """
    lengths, class_id = np.unique(tokens, return_inverse=True)
    return class_id.astype(np.int32), np.maximum(lengths - 1, 0).astype(np.int64)


#: Column names of the identity trace :func:`write_identity_trace` writes.
IDENTITY_COLUMNS = TraceColumns(
    timestamp="arrival_time_us",
    input_tokens="input_tokens",
    output_tokens="output_tokens",
    prefix_id="prompt_id",
    prefix_tokens="prompt_tokens",
)


def write_identity_trace(
    path: Path, arrival_s: np.ndarray, input_tokens: np.ndarray, output_tokens: np.ndarray
) -> TraceColumns:
    """Write the requests as a CSV trace that carries each request's prompt identity.

    The run records prompt lengths only, and the client cycles through a fixed set of
    prompts, so a distinct length is taken as a distinct prompt (as in
    :func:`prompt_classes`): its ``prompt_id`` names the prompt and ``prompt_tokens``, the
    shared prefix, is the whole prompt, since a repeat is the same text. Nothing is said
    about the last token: the engine never finds it cached (it computes at least the final
    token, as vLLM does).

    Parameters
    ----------
    path
        The CSV file to write.
    arrival_s
        Arrival times, seconds from the first request (non-decreasing).
    input_tokens, output_tokens
        Prompt and output lengths per request.

    Returns
    -------
    TraceColumns
        The column mapping that reads the file back (:func:`sim.workload.trace.load_trace`,
        timestamps in microseconds).
    """
    prompt = np.asarray(input_tokens, dtype=np.int64)
    pd.DataFrame(
        {
            "arrival_time_us": np.round(np.asarray(arrival_s, dtype=float) * 1e6).astype(np.int64),
            "input_tokens": prompt,
            "output_tokens": np.asarray(output_tokens, dtype=np.int64),
            "prompt_id": [f"len{k}" for k in prompt],
            "prompt_tokens": prompt,
        }
    ).to_csv(path, index=False)
    return IDENTITY_COLUMNS


def identity_workload(
    arrival_s: np.ndarray,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    *,
    block_tokens: int,
    trace_times: bool = True,
) -> Workload:
    """The requests as a one-class workload whose prompt identity comes from a trace column.

    The requests go through a CSV trace (:func:`write_identity_trace`) read back by
    :func:`sim.workload.trace.load_trace`, the path a user's trace takes; the trace's
    ``prefix_id`` and ``prefix_tokens`` columns give every repeat of a prompt the same
    chained hashes for its whole ``block_tokens``-token blocks and a unique hash for the
    partial block at its end.

    Parameters
    ----------
    arrival_s
        Arrival times, seconds from the first request (non-decreasing).
    input_tokens, output_tokens
        Prompt and output lengths per request.
    block_tokens
        Tokens per hashed block (the engine's KV block size).
    trace_times
        Take the arrival times as read back from the trace (its integer microseconds, so
        they may differ from ``arrival_s`` in the last bit); false: ``arrival_s`` itself.

    Returns
    -------
    Workload
        One class, no class prefix; ``prompt_blocks`` from the trace.

    Examples
    --------
    >>> wl = identity_workload(np.array([0.0, 1.0, 2.0]), np.array([40, 40, 7]),
    ...                        np.array([5, 5, 5]), block_tokens=16)
    >>> pb = wl.prompt_blocks
    >>> pb.counts.tolist(), bool(pb.of(0)[1] == pb.of(1)[1]), bool(pb.of(0)[2] == pb.of(1)[2])
    ([3, 3, 1], True, False)
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "identity.csv"
        cols = write_identity_trace(path, arrival_s, input_tokens, output_tokens)
        tr = load_trace(
            path, columns=cols, format="csv", time_unit="us", hash_block_tokens=block_tokens
        )
    assert tr.input_tokens is not None and tr.output_tokens is not None
    assert tr.prompt_blocks is not None
    n = tr.n_rows
    times = np.asarray(arrival_s, dtype=float)
    return Workload(
        arrival_s=np.asarray(tr.offset_s, dtype=float) + times[0] if trace_times else times,
        input_tokens=np.asarray(tr.input_tokens),
        output_tokens=np.asarray(tr.output_tokens),
        class_id=np.zeros(n, dtype=np.int32),
        class_names=("trace",),
        closed_loop=(),
        prompt_blocks=tr.prompt_blocks,
    )


def replay(
    run: VllmRun,
    params: Params,
    *,
    recorded_output: bool = False,
    prefix_cache: bool = True,
    identity: bool = False,
    trace_times: bool = True,
    frames: list[pd.DataFrame] | None = None,
    step_scale: float = 1.0,
) -> tuple[dict[str, float], dict[str, float]]:
    """Replay ``run``; return (predicted stats, sim facts).

    ``frames``, when given, receives the per-request records (in arrival order).

    ``recorded_output`` replays the output counts as recorded in the request file instead of
    the configured output length; ``prefix_cache`` gives every distinct prompt its own class
    whose prefix is the prompt minus its last token (:func:`prompt_classes`), so that the
    engine's automatic prefix cache serves repeated prompts as vLLM's did. ``identity``
    instead gives each request its prompt's identity through a trace column
    (:func:`identity_workload`, with the arrival times read back from the trace unless
    ``trace_times`` is false; ``prefix_cache`` is then ignored). ``step_scale`` multiplies
    every iteration's duration (the sensitivity of a prediction to the service time).
    """
    out = (
        run.recorded_output if recorded_output else np.full(run.arrival_s.size, run.output_len_cfg)
    )
    out = np.maximum(out, 1).astype(np.int64)
    prompt = run.input_tokens
    n = run.arrival_s.size
    if identity:
        prefix_cache = False
        cls, pfx = np.zeros(n, dtype=np.int32), np.zeros(1, dtype=np.int64)
        wl = identity_workload(
            run.arrival_s, prompt, out, block_tokens=run.block_size, trace_times=trace_times
        )
    else:
        if prefix_cache:
            cls, pfx = prompt_classes(prompt)
        else:
            cls, pfx = np.zeros(n, dtype=np.int32), np.zeros(1, dtype=np.int64)
        wl = Workload(
            arrival_s=run.arrival_s,
            input_tokens=prompt,
            output_tokens=out,
            class_id=cls,
            class_names=tuple(f"p{i}" for i in range(pfx.size)),
            closed_loop=(),
            has_prefix=np.full(n, prefix_cache),
        )
    fleet = vllm_fleet(run, params)
    replica = replica_of(fleet, params)
    if step_scale != 1.0:
        v = replica.coefficients.vector
        times = np.ones(v.size, dtype=bool)
        times[list(COUNT_COEFFS)] = False
        v[times] *= step_scale
    last = float(run.arrival_s[-1])
    hz = Horizon(duration_s=last + 1.0, warmup_s=0.0, drain_s=1e6, sample_interval_s=1e6)
    served = serve(
        fleet,
        replica,
        wl,
        hz,
        router_rng=np.random.default_rng(0),
        prefix_tokens=pfx if prefix_cache else None,
    )
    fr = served.requests()
    if frames is not None:
        frames.append(fr)
    done = fr["status"].astype(str) == "completed"
    stats = latency_stats(
        fr.loc[done, "ttft_s"].to_numpy(),
        fr.loc[done, "e2e_s"].to_numpy(),
        fr.loc[done, "output_tokens"].to_numpy(),
    )
    hit = float(served.prefix_hit_tokens)
    facts = {
        "completed": float(done.mean()),
        "preemptions": float(fr["preemptions"].sum()),
        "computed_share": 1.0 - hit / float(prompt.sum()),
    }
    return stats, facts


def measured_stats(run: VllmRun, *, recorded_output: bool = False) -> dict[str, float]:
    """The run's measured statistics (per-token latency over the configured output length)."""
    out = (
        run.recorded_output if recorded_output else np.full(run.arrival_s.size, run.output_len_cfg)
    )
    return latency_stats(run.ttft_s, run.e2e_s, out)


def vllm_errors(
    runs: list[VllmRun], params: Params, **kw: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Measured and predicted statistics of every run (long and wide)."""
    recs = []
    for run in runs:
        meas = measured_stats(run, recorded_output=kw.get("recorded_output", False))
        pred, facts = replay(run, params, **kw)
        rec: dict[str, Any] = {"run": run.short, "model": run.model, "tp": run.tp}
        rec["stages"] = run.stages
        rec["requests"] = run.arrival_s.size
        for m in METRICS:
            rec[f"{m}_meas"] = meas[m]
            rec[f"{m}_pred"] = pred[m]
            rec[f"{m}_err"] = pred[m] / meas[m] - 1.0
        rec.update(facts)
        recs.append(rec)
    wide = pd.DataFrame(recs)
    return wide, wide[["run", *[f"{m}_err" for m in METRICS]]]


def label(metric: str) -> str:
    """Display name of a metric key (``itl`` is the per-token latency)."""
    return metric.replace("itl_", "per-token_").replace("_", " ")


def vllm_error_table(wide: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Formatted relative errors, one row per run."""
    t = pd.DataFrame({"run": wide["run"], "load": wide["stages"]})
    for m in metrics:
        t[label(m)] = wide[f"{m}_err"].map(pct)
    return t


def vllm_value_table(wide: pd.DataFrame) -> pd.DataFrame:
    """Measured vs predicted means (derived aggregates only)."""
    return pd.DataFrame(
        {
            "run": wide["run"],
            "TTFT mean ms meas / pred": [
                f"{1e3 * a:.1f} / {1e3 * b:.1f}"
                for a, b in zip(wide["ttft_mean_meas"], wide["ttft_mean_pred"], strict=True)
            ],
            "TTFT p99 ms meas / pred": [
                f"{1e3 * a:.0f} / {1e3 * b:.0f}"
                for a, b in zip(wide["ttft_p99_meas"], wide["ttft_p99_pred"], strict=True)
            ],
            "E2E mean s meas / pred": [
                f"{a:.2f} / {b:.2f}"
                for a, b in zip(wide["e2e_mean_meas"], wide["e2e_mean_pred"], strict=True)
            ],
            "per-token ms meas / pred": [
                f"{1e3 * a:.1f} / {1e3 * b:.1f}"
                for a, b in zip(wide["itl_mean_meas"], wide["itl_mean_pred"], strict=True)
            ],
            "sim preemptions": wide["preemptions"].map("{:.0f}".format),
        }
    )


def vllm_summary(wide: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """MAPE per metric over the runs, with and without the overloaded-in-sim runs."""
    rows = []
    for m in metrics:
        e = wide[f"{m}_err"]
        worst = int(np.argmax(np.abs(e.to_numpy())))
        rows.append(
            {
                "metric": label(m),
                "MAPE (9 runs)": f"{mape(e):.1f}%",
                "median |err|": f"{100 * float(np.median(np.abs(e))):.1f}%",
                "bias (median err)": pct(float(np.median(e))),
                "worst run": f"{wide['run'].iloc[worst]} ({pct(e.iloc[worst])})",
            }
        )
    return pd.DataFrame(rows)


LOAD_WINDOW_S = 60.0
LOAD_BANDS = ((0.0, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, math.inf))
LOAD_METRICS = ("e2e_mean", "ttft_mean", "ttft_p99", "itl_mean")


def prediction_difference(classes: pd.DataFrame, identity: pd.DataFrame) -> np.ndarray:
    """Per run, the largest relative difference between two replays' predictions.

    Parameters
    ----------
    classes, identity
        Wide frames of :func:`vllm_errors` (same runs, same order).

    Returns
    -------
    numpy.ndarray
        ``max |identity / classes − 1|`` over :data:`METRICS`, one value per run.
    """
    ratio = [identity[f"{m}_pred"].to_numpy() / classes[f"{m}_pred"].to_numpy() for m in METRICS]
    return np.max(np.abs(np.column_stack(ratio) - 1.0), axis=1)


def fmt_difference(d: float) -> str:
    """A relative difference between predictions: ``none`` when they are equal."""
    return "none" if d == 0.0 else f"{100.0 * d:.2g}%"


def identity_comparison(classes: pd.DataFrame, identity: pd.DataFrame) -> pd.DataFrame:
    """Per run, the errors of the identity replay next to the class-per-prompt replay's.

    Parameters
    ----------
    classes, identity
        Wide frames of :func:`vllm_errors` (same runs, same order): one class per distinct
        prompt, and prompt identity from a trace column.

    Returns
    -------
    pandas.DataFrame
        Mean E2E, per-token and mean TTFT error of each replay (identity / classes), the
        computed prompt share of each, and the largest difference between their predictions
        over all metrics (:func:`prediction_difference`).
    """
    t = pd.DataFrame({"run": classes["run"]})
    for m in ("e2e_mean", "itl_mean", "ttft_mean"):
        t[f"{label(m)} err (identity / classes)"] = [
            f"{pct(a)} / {pct(b)}"
            for a, b in zip(identity[f"{m}_err"], classes[f"{m}_err"], strict=True)
        ]
    t["computed prompt share (identity / classes)"] = [
        f"{100 * a:.2f}% / {100 * b:.2f}%"
        for a, b in zip(identity["computed_share"], classes["computed_share"], strict=True)
    ]
    t["largest prediction difference"] = [
        fmt_difference(float(d)) for d in prediction_difference(classes, identity)
    ]
    return t


def identity_agreement(
    runs: list[VllmRun], classes: pd.DataFrame, identity: pd.DataFrame, params: Params
) -> tuple[str, str]:
    """How closely the identity replay reproduces the class-per-prompt replay, in words.

    Parameters
    ----------
    runs
        The replayed runs.
    classes, identity
        Wide frames of :func:`vllm_errors` for ``runs``: one class per distinct prompt, and
        prompt identity from a trace column.
    params
        The step-time parameters of both replays.

    Returns
    -------
    tuple of str
        A short statement, and a longer one that, when the predictions differ, gives the
        largest difference between the arrival times read back from the trace and the run's,
        and the difference left when the identity replay takes the run's own times.
    """
    diff = float(prediction_difference(classes, identity).max())
    if diff == 0.0:
        same = "the same predictions as the class-per-prompt replay on every run and metric"
        return same, same
    short = (
        f"predictions within {fmt_difference(diff)} of the class-per-prompt replay's on every "
        "run and metric"
    )
    arrival = max(
        float(
            np.max(
                np.abs(
                    identity_workload(
                        r.arrival_s, r.input_tokens, r.recorded_output, block_tokens=r.block_size
                    ).arrival_s
                    - r.arrival_s
                )
            )
        )
        for r in runs
    )
    exact, _ = vllm_errors(runs, params, identity=True, trace_times=False)
    left = float(prediction_difference(classes, exact).max())
    rest = (
        "the two replays give the same predictions"
        if left == 0.0
        else f"they differ by at most {fmt_difference(left)}"
    )
    return short, (
        f"{short}: the arrival times read back from the trace's integer microseconds differ "
        f"from the run's by at most {arrival:.1e} s (floating-point rounding of the same "
        f"instants), and with the run's own arrival times {rest}"
    )


def band_name(lo: float, hi: float) -> str:
    """A slot-occupancy band as text."""
    return f"≥ {100 * lo:.0f}%" if not math.isfinite(hi) else f"{100 * lo:.0f}–{100 * hi:.0f}%"


def load_windows(runs: list[VllmRun], params: Params) -> pd.DataFrame:
    """Measured and predicted latency per minute of arrivals, with the minute's load.

    Load is the measured slot occupancy: the concurrency by Little's law (requests arriving
    in the window × their mean measured E2E / window length) over ``max_num_seqs``; from
    idle (a few %) to saturated (≥ 75 %: sequences wait for a slot). A window is kept when at
    least 20 requests arrive in it.
    """
    recs = []
    for run in runs:
        frames: list[pd.DataFrame] = []
        replay(run, params, frames=frames)
        fr = frames[0]
        done = (fr["status"].astype(str) == "completed").to_numpy()
        p_ttft, p_e2e = fr["ttft_s"].to_numpy(), fr["e2e_s"].to_numpy()
        out = float(run.output_len_cfg)
        win = np.floor(run.arrival_s / LOAD_WINDOW_S).astype(int)
        for k in np.unique(win):
            m = (win == k) & done
            if m.sum() < 20:
                continue
            rec: dict[str, Any] = {"run": run.short, "model": run.model, "tp": run.tp}
            rec["occupancy"] = run.e2e_s[win == k].sum() / LOAD_WINDOW_S / run.max_num_seqs
            for side, ttft, e2e in (("meas", run.ttft_s[m], run.e2e_s[m]),
                                    ("pred", p_ttft[m], p_e2e[m])):  # fmt: skip
                rec[f"e2e_mean_{side}"] = float(np.mean(e2e))
                rec[f"ttft_mean_{side}"] = float(np.mean(ttft))
                rec[f"ttft_p99_{side}"] = float(np.percentile(ttft, 99))
                rec[f"itl_mean_{side}"] = float(np.mean((e2e - ttft) / (out - 1)))
            for met in LOAD_METRICS:
                rec[f"{met}_err"] = rec[f"{met}_pred"] / rec[f"{met}_meas"] - 1.0
            recs.append(rec)
    frame = pd.DataFrame(recs)
    frame["band"] = ""
    for lo, hi in LOAD_BANDS:
        sel = (frame["occupancy"] >= lo) & (frame["occupancy"] < hi)
        frame.loc[sel, "band"] = band_name(lo, hi)
    return frame


def load_table(win: pd.DataFrame, by: str) -> pd.DataFrame:
    """MAPE and bias of the window means per load band (``by="band"``) or per ``tp``."""
    rows = []
    keys: list[Any] = [band_name(lo, hi) for lo, hi in LOAD_BANDS]
    if by != "band":
        keys = sorted(win[by].unique())
    for key in keys:
        g = win[win[by] == key]
        if g.empty:
            continue
        row: dict[str, Any] = {by if by != "band" else "slot occupancy": key}
        row["windows"] = len(g)
        row["runs"] = g["run"].nunique()
        for met in LOAD_METRICS:
            e = g[f"{met}_err"]
            row[f"{label(met)} MAPE (bias)"] = f"{mape(e):.1f}% ({pct(float(e.mean()))})"
        rows.append(row)
    return pd.DataFrame(rows)


def output_length_evidence(runs: list[VllmRun]) -> pd.DataFrame:
    """Why the recorded output counts are not the generated lengths.

    For requests recorded with < 150 output tokens, the decode time (E2E − TTFT) is compared
    with the median decode time of requests recorded with ≥ 240 tokens that arrived in the
    same 30 s window: equal times mean equal generated lengths.
    """
    rows = []
    for run in runs:
        dec = run.e2e_s - run.ttft_s
        win = (run.arrival_s // 30).astype(int)
        full = pd.Series(dec[run.recorded_output >= 240]).groupby(win[run.recorded_output >= 240])
        ref = full.median()
        short = run.recorded_output < 150
        ratio = dec[short] / pd.Series(win[short]).map(ref).to_numpy()
        rows.append(
            {
                "run": run.short,
                "recorded < 150 tokens": f"{int(short.sum())} of {run.arrival_s.size}",
                "recorded = 0": int((run.recorded_output == 0).sum()),
                "decode time ratio (short / full, median)": f"{np.nanmedian(ratio):.3f}",
                "ratio if counts were true": (
                    f"{np.median(run.recorded_output[short] / run.output_len_cfg):.2f}"
                ),
                "corr(recorded count, decode time)": (
                    f"{np.corrcoef(run.recorded_output, dec)[0, 1]:+.3f}"
                ),
            }
        )
    return pd.DataFrame(rows)


def prefix_cache_evidence(runs: list[VllmRun]) -> pd.DataFrame:
    """Signs that the served prompts repeat and hit vLLM's prefix cache.

    The prompt-length sequence repeats with a fixed period (the client cycles through
    ``num_groups × num_prompts_per_group`` prompts); the first period's requests (cold cache,
    but also a cold server) are compared with the next period's: TTFT drops by much more
    than per-token latency does, i.e. by more than the warm-up alone explains.
    """
    rows = []
    for run in runs:
        per = run.prompt_period
        tok = run.input_tokens
        match = float(np.mean(tok[per:] == tok[:-per])) if per else math.nan
        base = float(np.mean(tok[1:] == tok[:-1]))
        itl = (run.e2e_s - run.ttft_s) / (run.output_len_cfg - 1)
        first, nxt = slice(0, per), slice(per, 2 * per)
        rows.append(
            {
                "run": run.short,
                "prompt period (requests)": per,
                "same length at that lag": f"{100 * match:.1f}% (lag 1: {100 * base:.1f}%)",
                "uncached prompt share": f"{100 * run.uncached_fraction:.1f}%",
                "TTFT median, 1st / 2nd period (ms)": (
                    f"{1e3 * np.median(run.ttft_s[first]):.1f} / "
                    f"{1e3 * np.median(run.ttft_s[nxt]):.1f}"
                ),
                "per-token median, 1st / 2nd period (ms)": (
                    f"{1e3 * np.median(itl[first]):.1f} / {1e3 * np.median(itl[nxt]):.1f}"
                ),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# 3. Offline saturation throughput vs TensorRT-LLM


def trt_rows(path: Path) -> pd.DataFrame:
    """Rows of the published table for Hopper GPUs and catalog models."""
    d = pd.read_csv(path)
    d = d[d["model"].isin(TRT_MODELS) & d["gpu"].isin(TRT_GPUS) & d["precision"].isin(TRT_DTYPES)]
    return d.sort_values(["model", "gpu", "isl", "osl"]).reset_index(drop=True)


def offline_throughput(
    model: str,
    gpu: str,
    tp: int,
    dtype: str,
    isl: int,
    osl: int,
    *,
    no_evict: bool,
    params: Params = DEFAULT_PARAMS,
) -> dict[str, float]:
    """Output tokens/s of an offline run: every request queued at t = 0.

    ``no_evict`` caps ``max_num_seqs`` at the number of full sequences (ISL + OSL) the KV
    cache holds, emulating TensorRT-LLM's default ``GUARANTEED_NO_EVICT`` scheduler; without
    it the engine admits on prompt blocks as vLLM does and preempts by recompute when the
    cache fills.
    """
    base = {
        "model": model,
        "gpu": gpu,
        "tp": tp,
        "dtype": dtype,
        "replicas": 1,
        "router": "round_robin",
        "step_time": step_spec(params),
    }
    eng = {"max_num_seqs": OFFLINE_MAX_NUM_SEQS, "max_num_batched_tokens": OFFLINE_MAX_BATCHED}
    probe = build_replica(FleetSpec.model_validate({**base, "engine": eng}))
    blocks_per_seq = math.ceil((isl + osl) / probe.block_tokens)
    fits = max(1, probe.kv_blocks // blocks_per_seq)
    if no_evict:
        eng["max_num_seqs"] = int(min(OFFLINE_MAX_NUM_SEQS, fits))
    fleet = FleetSpec.model_validate({**base, "engine": eng})
    conc = min(eng["max_num_seqs"], fits)
    n = int(min(20_000, max(1_000, 4 * conc)))
    wl = Workload(
        arrival_s=np.zeros(n),
        input_tokens=np.full(n, isl, dtype=np.int64),
        output_tokens=np.full(n, osl, dtype=np.int64),
        class_id=np.zeros(n, dtype=np.int32),
        class_names=("offline",),
        closed_loop=(),
    )
    hz = Horizon(duration_s=1.0, warmup_s=0.0, drain_s=1e7, sample_interval_s=1e7)
    rep = replica_of(fleet, params)
    fr = serve(fleet, rep, wl, hz, router_rng=np.random.default_rng(0)).requests()
    span = float(fr["finish_s"].max())
    return {
        "tok_s": n * osl / span,
        "requests": n,
        "max_num_seqs": eng["max_num_seqs"],
        "preemptions": float(fr["preemptions"].sum()),
    }


def offline_check(rows: pd.DataFrame, params: Params = DEFAULT_PARAMS) -> pd.DataFrame:
    """Simulated vs published output tokens/s, both scheduler variants."""
    recs = []
    for r in rows.itertuples():
        tp = int(str(r.parallelism).upper().removeprefix("TP"))
        args = (TRT_MODELS[r.model], TRT_GPUS[r.gpu], tp, TRT_DTYPES[r.precision])
        vllm_like = offline_throughput(*args, int(r.isl), int(r.osl), no_evict=False, params=params)
        no_evict = offline_throughput(*args, int(r.isl), int(r.osl), no_evict=True, params=params)
        recs.append(
            {
                "model": r.model,
                "gpu": r.gpu,
                "tp": tp,
                "dtype": r.precision,
                "isl": int(r.isl),
                "osl": int(r.osl),
                "published": float(r.output_tok_s),
                "sim": vllm_like["tok_s"],
                "sim_preempt": vllm_like["preemptions"],
                "sim_ne": no_evict["tok_s"],
                "ne_seqs": no_evict["max_num_seqs"],
                "ratio": vllm_like["tok_s"] / float(r.output_tok_s),
                "ratio_ne": no_evict["tok_s"] / float(r.output_tok_s),
            }
        )
    return pd.DataFrame(recs)


def offline_table(res: pd.DataFrame) -> pd.DataFrame:
    """Formatted per-row table."""
    return pd.DataFrame(
        {
            "model": res["model"],
            "gpu": [f"{g}×{t}" for g, t in zip(res["gpu"], res["tp"], strict=True)],
            "ISL/OSL": [f"{i}/{o}" for i, o in zip(res["isl"], res["osl"], strict=True)],
            "published tok/s": res["published"].map("{:.0f}".format),
            "sim tok/s": res["sim"].map("{:.0f}".format),
            "sim preemptions": res["sim_preempt"].map("{:.0f}".format),
            "sim/pub": res["ratio"].map("{:.2f}".format),
            "no-evict seqs": res["ne_seqs"].map("{:.0f}".format),
            "no-evict tok/s": res["sim_ne"].map("{:.0f}".format),
            "no-evict sim/pub": res["ratio_ne"].map("{:.2f}".format),
        }
    )


def ratio_stats(r: pd.Series) -> str:
    """Geometric mean ratio and spread of a set of sim/published ratios."""
    lr = np.log(r.to_numpy())
    return (
        f"geo-mean {math.exp(lr.mean()):.2f}, median {np.median(r):.2f}, "
        f"range {r.min():.2f}–{r.max():.2f}, MAPE {mape(r - 1):.1f}%"
    )


def offline_summary(res: pd.DataFrame) -> pd.DataFrame:
    """Ratio statistics per model × GPU and overall."""
    rows = []
    groups = [(k, s) for k, s in res.groupby(["model", "gpu"], sort=False)]
    groups.append((("all", "all"), res))
    long = res["isl"] >= 20000
    groups.append((("all except ISL 20000", ""), res[~long]))
    for (model, gpu), sub in groups:
        rows.append(
            {
                "model": model,
                "gpu": gpu,
                "rows": len(sub),
                "sim/pub (vLLM-like admission)": ratio_stats(sub["ratio"]),
                "sim/pub (no-evict)": ratio_stats(sub["ratio_ne"]),
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# 4. Least-squares fits of the profiles


SHORT = {
    "compute_efficiency": "ce",
    "bandwidth_efficiency": "be",
    "overhead_s": "overhead",
    "allreduce_latency_s": "all-reduce",
    "allreduce_hop_s": "ring hop",
    "link_efficiency": "link",
    "small_link_efficiency": "link (small)",
    "small_message_mib": "small up to",
    "seq_cpu_s": "CPU per seq",
    "layer_s": "per layer",
}


def lsq_fit(
    residuals: Residuals,
    free: Sequence[str],
    fixed: Mapping[str, float],
    starts: Sequence[Mapping[str, float]],
) -> StepFit:
    """The profiles' fit: :func:`sim.engine.fit_steptime.fit_constants` within the physical bounds.

    Each start is refined (at most 60 evaluations); the lowest cost wins. Finite-difference
    steps are 3 % of the scaled parameter (the replays are discrete-event simulations: a tiny
    step sees noise).
    """
    return fit_constants(
        residuals, free, starts, fixed=fixed, bounds="physical", diff_step=0.03, max_nfev=60
    )


def bounds_text() -> str:
    """The physical bounds of :data:`sim.engine.fit_steptime.PARAMS`, as the report states them."""
    ce, be = PARAMS["compute_efficiency"].physical, PARAMS["bandwidth_efficiency"].physical
    oh, ar = PARAMS["overhead_s"].physical, PARAMS["allreduce_latency_s"].physical
    hop = PARAMS["allreduce_hop_s"].physical
    link = PARAMS["link_efficiency"].physical
    seq = PARAMS["seq_cpu_s"].physical
    lay = PARAMS["layer_s"].physical
    return (
        f"ce {ce[0]:g}–{ce[1]:g}, be {be[0]:g}–{be[1]:g}, overhead {1e3 * oh[0]:g}–"
        f"{1e3 * oh[1]:g} ms, all-reduce {1e6 * ar[0]:g}–{1e6 * ar[1]:g} µs, ring hop "
        f"{1e6 * hop[0]:g}–{1e6 * hop[1]:g} µs, link {link[0]:g}–{link[1]:g}, CPU per "
        f"sequence {1e6 * seq[0]:g}–"
        f"{1e6 * seq[1]:g} µs, per layer {1e6 * lay[0]:g}–{1e6 * lay[1]:g} µs"
    )


def fmt_params(p: Mapping[str, float], keys: Sequence[str] = PROFILE_KEYS) -> str:
    """Roofline constants as text."""
    parts = []
    for k in keys:
        if k not in p:
            continue
        v = p[k]
        if k == "overhead_s":
            parts.append(f"overhead {1e3 * v:.2f} ms")
        elif k == "allreduce_latency_s":
            parts.append(f"all-reduce {1e6 * v:.1f} µs")
        elif k == "allreduce_hop_s":
            parts.append(f"ring hop {1e6 * v:.2f} µs")
        elif k == "small_message_mib":
            parts.append(f"small messages ≤ {v:g} MiB")
        elif k == "seq_cpu_s":
            parts.append(f"CPU per seq {1e6 * v:.1f} µs")
        elif k == "layer_s":
            parts.append(f"per layer {1e6 * v:.1f} µs")
        else:
            parts.append(f"{SHORT[k]} {v:.3f}")
    return ", ".join(parts)


def splitwise_residuals(rows: pd.DataFrame) -> Residuals:
    """log(pred / meas) of every prefill (outliers excluded) and decode figure."""

    def res(p: dict[str, float]) -> np.ndarray:
        pred = splitwise_predict(rows, p)
        pf = pred.loc[~pred["prefill_outlier"]]
        return np.concatenate(
            [
                np.log(pf["prompt_pred_ms"] / pf["prompt_ms"]),
                np.log(pred["token_pred_ms"] / pred["token_ms"]),
            ]
        )

    return res


def vllm_residuals(runs: list[VllmRun]) -> Residuals:
    """log(pred / meas) of E2E mean and p90 and mean per-token latency of every run.

    TTFT is left out: the measured TTFT includes the API server's own latency (HTTP,
    tokenisation, streaming), which no step-time coefficient represents.
    """
    meas = [measured_stats(r) for r in runs]

    def res(p: dict[str, float]) -> np.ndarray:
        out = []
        for run, m in zip(runs, meas, strict=True):
            pred, _ = replay(run, p)
            out.extend(math.log(pred[k] / m[k]) for k in FIT_METRICS)
        return np.asarray(out)

    return res


def trt_residuals(rows: pd.DataFrame) -> Residuals:
    """log(sim / published) offline throughput, TensorRT-LLM's no-evict admission."""

    def res(p: dict[str, float]) -> np.ndarray:
        out = []
        for r in rows.itertuples():
            tp = int(str(r.parallelism).upper().removeprefix("TP"))
            args = (TRT_MODELS[r.model], TRT_GPUS[r.gpu], tp, TRT_DTYPES[r.precision])
            o = offline_throughput(*args, int(r.isl), int(r.osl), no_evict=True, params=p)
            out.append(math.log(o["tok_s"] / float(r.output_tok_s)))
        return np.asarray(out)

    return res


def _split_err_text(pred: pd.DataFrame) -> str:
    pf = pred.loc[~pred["prefill_outlier"], "prefill_err"]
    allerr = np.concatenate([pf.to_numpy(), pred["decode_err"].to_numpy()])
    return (
        f"prefill {mape(pf):.1f}%, decode {mape(pred['decode_err']):.1f}%, all {mape(allerr):.1f}%"
    )


def _vllm_err_text(frame: pd.DataFrame) -> str:
    return ", ".join(
        f"{label(m)} {mape(frame[f'{m}_err']):.1f}%"
        for m in ("e2e_mean", "e2e_p90", "itl_mean", "ttft_mean")
    )


def _trt_err_text(rows: pd.DataFrame, p: Params) -> str:
    r = np.exp(trt_residuals(rows)(dict(p or {})))
    return f"{ratio_stats(pd.Series(r))}"


def ttft_in_iterations(runs: list[VllmRun], params: Params) -> pd.DataFrame:
    """Median TTFT in units of the request's own per-token latency (≈ one decode iteration),
    measured and predicted, per run (the predicted one includes the front end)."""
    recs = []
    for run in runs:
        frames: list[pd.DataFrame] = []
        replay(run, params, frames=frames)
        fr = frames[0]
        itl = (run.e2e_s - run.ttft_s) / (run.output_len_cfg - 1)
        pitl = (fr["e2e_s"] - fr["ttft_s"]).to_numpy() / (fr["output_tokens"].to_numpy() - 1)
        meas = float(np.median(run.ttft_s / itl))
        pred = float(np.median(fr["ttft_s"].to_numpy() / pitl))
        recs.append(
            {
                "run": run.short,
                "per-token ms (median, measured)": f"{1e3 * np.median(itl):.1f}",
                "TTFT / per-token, measured": f"{meas:.2f}",
                "TTFT / per-token, predicted": f"{pred:.2f}",
                "TTFT ms median, measured / predicted": (
                    f"{1e3 * np.median(run.ttft_s):.1f} / {1e3 * np.median(fr['ttft_s']):.1f}"
                ),
            }
        )
    return pd.DataFrame(recs)


def frontend_fit(frame: pd.DataFrame) -> str:
    """The front end (``frontend_latency_s``) that best fits the runs' mean TTFT, least
    squares on log errors, in sample and leaving each run out: what the predicted TTFT would
    be with it, every other term unchanged (the front end adds to every TTFT)."""
    from scipy.optimize import minimize_scalar

    used = EngineSpec().frontend_latency_s
    meas = frame["ttft_mean_meas"].to_numpy()
    base = frame["ttft_mean_pred"].to_numpy() - used

    def fit(rows: np.ndarray) -> float:
        res = minimize_scalar(
            lambda f: float(np.sum(np.log((base[rows] + f) / meas[rows]) ** 2)),
            bounds=(0.0, 0.1),
            method="bounded",
        )
        return float(res.x)

    every = np.arange(len(meas))
    f_all = fit(every)
    loo = [100 * ((base[i] + fit(np.delete(every, i))) / meas[i] - 1) for i in every]
    ins = 100 * ((base + f_all) / meas - 1)
    return (
        f"fitted in sample {1e3 * f_all:.1f} ms (used: {1e3 * used:.0f} ms): mean TTFT errors "
        f"{ins.min():+.1f}% to {ins.max():+.1f}%, {int((np.abs(ins) <= 20).sum())} of "
        f"{len(ins)} runs within 20 %; each run with the front end fitted on the other "
        f"eight: {min(loo):+.1f}% to {max(loo):+.1f}%, "
        f"{int((np.abs(np.asarray(loo)) <= 20).sum())} within 20 %"
    )


def ttft_sensitivity(runs: list[VllmRun], frame: pd.DataFrame, params: Params) -> str:
    """How much the most loaded run's TTFT moves when every iteration is 1 % slower: near
    saturation TTFT is queueing, and its error follows the service time's many times over."""
    i = int(frame["ttft_p99_meas"].to_numpy().argmax())
    run = runs[i]
    base = frame.iloc[i]
    slow, _ = replay(run, params, step_scale=1.01)
    d_mean = 100 * (slow["ttft_mean"] / base["ttft_mean_pred"] - 1)
    d_p99 = 100 * (slow["ttft_p99"] / base["ttft_p99_pred"] - 1)
    err = 100 * base["ttft_mean_err"]
    return (
        f"The most loaded run is {run.short} (measured p99 TTFT "
        f"{base['ttft_p99_meas']:.2f} s: new requests wait for a sequence slot), where TTFT is "
        f"queueing: with every iteration 1 % slower its simulated mean TTFT moves "
        f"{d_mean:+.0f}% and its p99 {d_p99:+.0f}% (its mean TTFT error here: {err:+.1f}%, "
        f"its per-token error {100 * base['itl_mean_err']:+.1f}%)"
    )


def frontend_latency(frame: pd.DataFrame) -> str:
    """Measured − predicted mean TTFT per model (ms): the latency no coefficient explains."""
    gap = 1e3 * (frame["ttft_mean_meas"] - frame["ttft_mean_pred"])
    parts = [
        f"{model} {g.median():.0f}"
        for model, g in gap.groupby(frame["model"].to_numpy(), sort=True)
    ]
    return ", ".join(parts) + " ms"


PRIOR: dict[str, float] = {
    "compute_efficiency": 0.55,
    "bandwidth_efficiency": 0.80,
    "overhead_s": 0.003,
    "allreduce_latency_s": 1.5e-5,
    "allreduce_hop_s": 5e-6,
    "link_efficiency": 1.0,
    "small_link_efficiency": 1.0,
    "small_message_mib": 0.0,
    "seq_cpu_s": 2e-5,
    "layer_s": 5e-5,
}
# Streaming efficiency is held at the upper bound of its physical range: every fit that frees
# it on these data (the vLLM runs in or out of sample, the A100 profile in sample) lands there,
# and where two TP degrees cannot separate it from the fixed costs it drifts (A100, TP 8 held
# out: 0.71-0.77) without fitting better.
BE_BOUND = PARAMS["bandwidth_efficiency"].physical[1]
# vLLM's custom all-reduce on H100 at 0.5 MB: 7 µs at TP 2
# (https://github.com/vllm-project/vllm/pull/24111), 10 µs at TP 4
# (https://github.com/vllm-project/vllm/pull/24532): a measurement, not a fit.
VLLM_ALLREDUCE_S = 8e-6
# The share of the H100's 450 GB/s per direction that vLLM's all-reduce achieves on its bytes.
# Messages up to 8 MiB (its custom all-reduce's default limit): vLLM's own H100 TP 4
# benchmark (https://github.com/vllm-project/vllm/pull/24532) gives the custom kernel's two-
# stage form (the one it selects at TP 4 from 512 KiB) 17, 18, 25, 26, 35 and 42 µs at 0.5,
# 1, 1.5, 2, 3 and 4 MiB: 7.4 µs per MiB by least squares, i.e. 1.5 bytes per byte of
# message at 212 GB/s. Larger messages go to NCCL, 370 GB/s effective on H100 NVLink
# (https://github.com/NVIDIA/nccl-tests/issues/212). Measurements, not fits.
VLLM_LINK = {"small_link_efficiency": 0.47, "small_message_mib": 8.0, "link_efficiency": 0.82}
# NCCL's ring all-reduce on eight NVLink-connected A100-SXM4-80GB (nccl-tests, large
# messages): about 200 GB/s of bus bandwidth of the 300 GB/s per direction
# (https://github.com/NVIDIA/nccl-tests/issues/149). The 2023 stack used NCCL.
A100_NCCL_LINK_EFFICIENCY = 0.67
# The link at its nominal bandwidth for every message (the forms fitted before the link's
# efficiency was measured, and the TensorRT-LLM throughput fit).
NOMINAL_LINK = {"link_efficiency": 1.0, "small_link_efficiency": 1.0, "small_message_mib": 0.0}
# The vLLM H100 stack: two constants fitted, the time per layer and per decoding sequence.
VLLM_FREE = ("layer_s", "seq_cpu_s")
VLLM_FIXED = {
    "bandwidth_efficiency": BE_BOUND,
    "overhead_s": 0.0,
    "allreduce_latency_s": VLLM_ALLREDUCE_S,
    "allreduce_hop_s": 0.0,
    **VLLM_LINK,
}
# The A100 stack's constants: a fixed time per layer, a latency per ring hop (an all-reduce
# takes 2(tp − 1) of them, so the fixed cost grows with tp as measured) and a CPU time per
# decoding sequence (the decode rows' growth with the batch), plus the compute efficiency.
SPLIT_FREE = ("compute_efficiency", "layer_s", "allreduce_hop_s", "seq_cpu_s")
SPLIT_FIXED = {
    "bandwidth_efficiency": BE_BOUND,
    "overhead_s": 0.0,
    "allreduce_latency_s": 0.0,
    "link_efficiency": A100_NCCL_LINK_EFFICIENCY,
    "small_link_efficiency": A100_NCCL_LINK_EFFICIENCY,
    "small_message_mib": 0.0,
}
# The forms shipped before, refitted for comparison ('before' rows of section 4).
SPLIT_FORMER = {
    "overhead + ring hop (shipped before the per-layer and per-sequence terms)": (
        ("compute_efficiency", "bandwidth_efficiency", "overhead_s", "allreduce_hop_s"),
        {"allreduce_latency_s": 0.0, **NOMINAL_LINK, "seq_cpu_s": 0.0, "layer_s": 0.0},
    ),
    "overhead + per-all-reduce latency (no ring hop)": (
        ("compute_efficiency", "bandwidth_efficiency", "overhead_s", "allreduce_latency_s"),
        {"allreduce_hop_s": 0.0, **NOMINAL_LINK, "seq_cpu_s": 0.0, "layer_s": 0.0},
    ),
}

Split = tuple[str, Any, Any]
"""One leave-one-out split: (what is held out, training data, test data)."""


def frame_splits(rows: pd.DataFrame, column: str, name: str = "{}") -> list[Split]:
    """Leave-one-out splits of a table by the values of ``column``."""
    out = []
    for held in sorted(rows[column].unique()):
        sel = rows[column] == held
        train = rows[~sel].reset_index(drop=True)
        out.append((name.format(held), train, rows[sel].reset_index(drop=True)))
    return out


def run_splits(runs: list[VllmRun]) -> list[Split]:
    """Leave-one-model-out splits of the vLLM runs."""
    return [
        (held, [r for r in runs if r.model != held], [r for r in runs if r.model == held])
        for held in sorted({r.model for r in runs})
    ]


def held_out_runs(runs: list[VllmRun], fits: Sequence[tuple[str, StepFit]]) -> pd.DataFrame:
    """Every run's errors with the constants fitted on the other models' runs."""
    recs = []
    for held, f in fits:
        wide, _ = vllm_errors([r for r in runs if r.model == held], f.params)
        for r in wide.itertuples():
            recs.append(
                {
                    "run": r.run,
                    "held out": held,
                    "mean TTFT": pct(r.ttft_mean_err),
                    "mean E2E": pct(r.e2e_mean_err),
                    "per-token": pct(r.itl_mean_err),
                }
            )
    return pd.DataFrame(recs)


def leave_one_out(
    splits: Sequence[Split],
    fit: Callable[[Any], StepFit],
    evaluate: Callable[[Any, Params], str],
) -> list[tuple[str, StepFit, str, str]]:
    """Fit on each split's training data; evaluate the old defaults and the fit on its test
    data. Returns ``(held out, fit, error text with the old defaults, error text with the fit)``
    per split."""
    out = []
    for held, train, test in splits:
        f = fit(train)
        out.append((held, f, evaluate(test, OLD_DEFAULTS), evaluate(test, f.params)))
    return out


def fit_section(
    split_rows: pd.DataFrame | None, runs: list[VllmRun] | None, trt: pd.DataFrame | None
) -> tuple[pd.DataFrame, list[str], dict[str, dict[str, float]]]:
    """Least-squares fits per data set, in-sample and leave-one-out (by model; by TP too for
    the A100 profile).

    Returns the table, notes, and the in-sample fits by profile/family key
    (``vllm/ampere``, ``vllm/hopper``, ``trtllm/hopper``).
    """
    recs: list[dict[str, str]] = []
    notes: list[str] = []
    fits: dict[str, dict[str, float]] = {}

    def add(data: str, fit_on: str, f: StepFit, evaluated: str, before: str, after: str) -> None:
        recs.append(
            {
                "data": data,
                "fit on": fit_on,
                "free": ", ".join(SHORT[k] for k in f.free),
                "fitted": fmt_params(f.params),
                "rms log err": f"{f.rms:.3f}",
                "evaluated on": evaluated,
                "MAPE, old defaults": before,
                "MAPE, fit": after,
            }
        )

    def add_all(
        data: str,
        f_all: StepFit,
        everything: Any,
        evaluate: Callable[[Any, Params], str],
        splits: Sequence[Split],
        fit: Callable[[Any], StepFit],
        fit_on: str,
        held_text: str = "{} (held out)",
    ) -> list[tuple[str, StepFit]]:
        add(
            data,
            fit_on,
            f_all,
            "all (in-sample)",
            evaluate(everything, OLD_DEFAULTS),
            evaluate(everything, f_all.params),
        )
        fitted = []
        for held, f, before, after in leave_one_out(splits, fit, evaluate):
            add(data, f"all but {held}", f, held_text.format(held), before, after)
            fitted.append((held, f))
        return fitted

    if trt is not None:
        data = "H100/H200 FP8, TensorRT-LLM offline (no-evict)"
        free = ("compute_efficiency", "bandwidth_efficiency", "overhead_s")
        fixed = {
            "allreduce_latency_s": PRIOR["allreduce_latency_s"],
            **NOMINAL_LINK,
            "seq_cpu_s": 0.0,
            "layer_s": 0.0,
        }
        starts = [PRIOR, {**PRIOR, "compute_efficiency": 0.7, "bandwidth_efficiency": 0.9}]
        f_all = lsq_fit(trt_residuals(trt), free, fixed, starts)
        fits["trtllm/hopper"] = f_all.params
        add_all(
            data,
            f_all,
            trt,
            lambda rows, p: _trt_err_text(rows, p),
            frame_splits(trt, "model"),
            lambda rows: lsq_fit(trt_residuals(rows), free, fixed, [f_all.params]),
            f"all {len(trt)} rows",
        )
    ce_hopper = fits.get("trtllm/hopper", PRIOR)["compute_efficiency"]
    if runs is not None:
        data = "H100 BF16, vLLM replays (engine prefix cache)"
        fixed = {"compute_efficiency": ce_hopper, **VLLM_FIXED}
        starts = [PRIOR, {**PRIOR, "layer_s": 2e-5, "seq_cpu_s": 5e-6}]
        f_all = lsq_fit(vllm_residuals(runs), VLLM_FREE, fixed, starts)
        fits["vllm/hopper"] = f_all.params

        def vllm_eval(rs: list[VllmRun], p: Params) -> str:
            return _vllm_err_text(vllm_errors(rs, p)[0])

        held_fits = add_all(
            data,
            f_all,
            runs,
            vllm_eval,
            run_splits(runs),
            lambda rs: lsq_fit(vllm_residuals(rs), VLLM_FREE, fixed, [f_all.params]),
            f"all {len(runs)} runs",
            "{} (held out)",
        )
        notes.append(
            "Each run with its model held out of the fit (the 'all but' rows above), "
            "predicted / measured − 1:\n\n" + md_table(held_out_runs(runs, held_fits))
        )
        profile = []
        for ce in (0.3, 0.55, 0.8):
            profile.append(
                f"ce {ce}: {vllm_eval(runs, {**f_all.params, 'compute_efficiency': ce})}"
            )
        notes.append(
            "Sensitivity of the vLLM replays to compute efficiency at the fitted constants "
            "(prompts are served from the prefix cache, so these runs hardly constrain it; the "
            f"fit holds it at the TensorRT-LLM value {ce_hopper:.3f}): " + "; ".join(profile) + "."
        )
    if split_rows is not None:
        data = "A100 BF16, Splitwise per-iteration"
        starts = [
            PRIOR,
            {**PRIOR, "layer_s": 2e-4, "seq_cpu_s": 3e-4},
            {**PRIOR, "overhead_s": 0.01, "allreduce_latency_s": 6e-5},
        ]

        def split_eval(rows: pd.DataFrame, p: Params) -> str:
            return _split_err_text(splitwise_predict(rows, p))

        def split_fit(free: Sequence[str], fixed: Mapping[str, float], first: StepFit) -> Any:
            return lambda rows: lsq_fit(
                splitwise_residuals(rows), free, fixed, [first.params, *starts]
            )

        f_all = lsq_fit(splitwise_residuals(split_rows), SPLIT_FREE, SPLIT_FIXED, starts)
        fits["vllm/ampere"] = f_all.params
        splits = [
            *frame_splits(split_rows, "model"),
            *frame_splits(split_rows, "tensor_parallel", "TP {}"),
        ]
        add_all(
            data,
            f_all,
            split_rows,
            split_eval,
            splits,
            split_fit(SPLIT_FREE, SPLIT_FIXED, f_all),
            "all rows",
        )
        for form, (free_old, fixed_old) in SPLIT_FORMER.items():
            f_old = lsq_fit(splitwise_residuals(split_rows), free_old, fixed_old, starts)
            add_all(
                f"A100 BF16, Splitwise, former form: {form}",
                f_old,
                split_rows,
                split_eval,
                frame_splits(split_rows, "tensor_parallel", "TP {}"),
                split_fit(free_old, fixed_old, f_old),
                "all rows",
            )
        pred = splitwise_predict(split_rows, f_all.params)
        per_tp = ", ".join(
            f"{m} TP {tp}: {_split_err_text(g)}"
            for (m, tp), g in pred.groupby(["model", "tensor_parallel"])
        )
        notes.append(f"A100 in-sample fit by configuration: {per_tp}.")
    return pd.DataFrame(recs), notes, fits


def profile_yaml(fits: Mapping[str, Mapping[str, float]]) -> str:
    """The fitted values, rounded, as the body of ``profiles.yaml`` entries (for review)."""
    lines = []
    for key, p in fits.items():
        lines.append(f"{key}:")
        for k in PROFILE_KEYS:
            if k in p:
                text = f"{p[k]:.3g}"
                if "e" in text and "." not in text:  # YAML reads 8e-06 as a string
                    text = text.replace("e", ".0e", 1)
                lines.append(f"  {k}: {text}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# report


def section(title: str, body: list[str]) -> str:
    """A Markdown section."""
    return "\n\n".join([f"## {title}", *body])


def targets_table(
    split_pred: pd.DataFrame | None, wide: pd.DataFrame | None, trt: pd.DataFrame | None
) -> pd.DataFrame:
    """The accuracy targets against the defaults' errors."""
    rows = []

    def add(target: str, value: str, ok: bool, misses: str) -> None:
        rows.append(
            {"target": target, "with the defaults": value, "met": "yes" if ok else "no",
             "misses": misses or "none"}
        )  # fmt: skip

    if split_pred is not None:
        for (m, tp), g in split_pred.groupby(["model", "tensor_parallel"]):
            pf = g.loc[~g["prefill_outlier"], "prefill_err"]
            parts = {"prefill": mape(pf), "decode": mape(g["decode_err"])}
            add(
                f"A100 per-iteration MAPE ≤ 10% ({m} TP {tp})",
                f"prefill {parts['prefill']:.1f}%, decode {parts['decode']:.1f}%",
                max(parts.values()) <= 10.0,
                ", ".join(f"{k} {v:.1f}%" for k, v in parts.items() if v > 10.0),
            )
    if wide is not None:
        for m, lim in (("e2e_mean", 0.10), ("ttft_mean", 0.20), ("itl_mean", 0.10)):
            e = wide[f"{m}_err"]
            bad = wide.loc[np.abs(e) > lim]
            add(
                f"vLLM {label(m)} within {100 * lim:.0f}% (every run)",
                f"{pct(e.min())} to {pct(e.max())}",
                bad.empty,
                ", ".join(
                    f"{r} {pct(v)}" for r, v in zip(bad["run"], bad[f"{m}_err"], strict=True)
                ),
            )
    if trt is not None:
        for col, name in (("ratio", "vLLM-like admission"), ("ratio_ne", "no-evict")):
            r = trt[col]
            bad = trt.loc[np.abs(r - 1) > 0.15]
            add(
                f"offline throughput within ±15% ({name}, vllm profile)",
                f"{r.min():.2f}–{r.max():.2f}",
                bad.empty,
                f"{len(bad)} of {len(trt)} rows",
            )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--vllm-runs",
        type=Path,
        default=DEFAULT_VLLM,
        help="folder with experiments.csv and the per-request run files",
    )
    ap.add_argument("--splitwise", type=Path, default=DEFAULT_SPLITWISE, help="Splitwise CSV")
    ap.add_argument("--trtllm", type=Path, default=DEFAULT_TRTLLM, help="TRT-LLM offline CSV")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown report path")
    ap.add_argument(
        "--fit",
        action="store_true",
        help="also fit the profiles by least squares, with leave-one-model-out errors",
    )
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    a100 = resolve_roofline(RooflineStep(), "a100-80gb-sxm")
    fixed_ms = {  # Llama-2-70B's fixed cost per iteration: 80 layers, 2 all-reduces each
        t: 1e3 * (a100.overhead_s + 80 * a100.layer_s)
        + 1e3 * 160 * (a100.allreduce_latency_s + 2 * (t - 1) * a100.allreduce_hop_s)
        for t in (2, 4, 8)
    }
    today = dt.date.today().isoformat()
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 30)
    pd.set_option("display.max_colwidth", 90)

    parts: list[str] = []
    headline: list[str] = []

    def show(title: str, frame: pd.DataFrame) -> None:
        print(f"\n=== {title} ===")
        print(frame.to_string(index=False))

    # 1. Splitwise
    split_rows = None
    pred = None
    if args.splitwise.is_file():
        split_rows = splitwise_rows(args.splitwise)
        old = splitwise_predict(split_rows, OLD_DEFAULTS)
        pred = splitwise_predict(split_rows, DEFAULT_PARAMS)
        summ_old = splitwise_summary(old)
        summ = splitwise_summary(pred)
        show("1. Splitwise A100: per-iteration MAPE (vllm profile, ampere)", summ)
        allpf = pred.loc[~pred["prefill_outlier"], "prefill_err"]
        oldpf = old.loc[~old["prefill_outlier"], "prefill_err"]
        headline.append(
            f"**A100 per iteration (Splitwise, {len(pred)} configurations, `vllm` profile "
            f"ampere entry):** prefill MAPE {mape(allpf):.1f}% (old defaults "
            f"{mape(oldpf):.1f}%), decode MAPE {mape(pred['decode_err']):.1f}% (old defaults "
            f"{mape(old['decode_err']):.1f}%); per configuration: "
            + "; ".join(
                f"{m} TP {tp} {_split_err_text(g)}"
                for (m, tp), g in pred.groupby(["model", "tensor_parallel"])
            )
            + "."
        )
        outl = pred[pred["prefill_outlier"]]
        parts.append(
            section(
                "1. Per-iteration latency vs the Splitwise A100 profile",
                [
                    "Source: Splitwise (Patel et al., ISCA 2024) profile, "
                    "Mutinifni/splitwise-sim `data/perf_model.csv` (MIT): Llama-2-70B at TP "
                    "2/4/8 and BLOOM-176B at TP 8 on A100-80GB, the 5 repeats averaged. "
                    "Simulated GPU `a100-80gb-sxm`, bf16, default `step_time` (profile `vllm`, "
                    "family `ampere`).",
                    "Prediction: prefill = `time_s(B·p, 0, B·p, B·p, B·p(p+1)/2)` (one "
                    "iteration of B prompts of p tokens); decode = the exact mean of the "
                    "t − 1 decode iterations of batch B with contexts p+1 … p+t−1 "
                    "(`decode_run_time`). BLOOM-176B is built with `model_from_hf_config` "
                    "(hidden 14336, 70 layers, 112 heads = KV heads, vocab 250880, tied "
                    "embeddings; `intermediate_size` = 8h/3 so that the gated 3·h·f count "
                    "gives BLOOM's 8h² per layer).",
                    "Prefill rows faster than half of a smaller batch at the same prompt are "
                    "excluded from the prefill figures (probably an out-of-memory fallback): "
                    + (
                        ", ".join(
                            f"{r.model} TP{r.tensor_parallel} B={r.batch_size} p={r.prompt_size}"
                            for r in outl.itertuples()
                        )
                        or "none"
                    )
                    + ".",
                    "With the defaults (after):",
                    md_table(summ),
                    "With the old defaults (ce 0.55, be 0.80, overhead 3 ms, all-reduce "
                    "8 µs; before):",
                    md_table(summ_old),
                    "Reading: the profiled 2023 stack pays a large fixed cost per iteration "
                    "(tens of ms; measured Llama-2-70B batch-1 decode hardly shrinks from TP 2 "
                    "to TP 8) that grows with TP and with the model's depth, and a decode "
                    "iteration grows with the batch far beyond the KV cache it reads "
                    "(Llama-2-70B TP 8: 45 ms at batch 1, 71 ms at batch 64). The profile's "
                    "ampere entry (`splitwise-2023`) takes the fixed cost as a time per "
                    f"layer ({1e6 * a100.layer_s:.0f} µs) plus a latency per ring hop "
                    f"({1e6 * a100.allreduce_hop_s:.0f} µs; each of the two all-reduces per "
                    "layer passes 2(tp − 1) hops), so it grows with TP as measured ("
                    + ", ".join(f"{ms:.1f} ms at TP {t}" for t, ms in fixed_ms.items())
                    + " for Llama-2-70B's 80 layers; BLOOM-176B's 70 layers pay less), and "
                    f"the batch growth as CPU time per decoding sequence "
                    f"({1e6 * a100.seq_cpu_s:.0f} µs); the all-reduce's bytes move at NCCL's "
                    f"measured share of the NVLink bandwidth ({a100.link_efficiency:.2f}). "
                    "Prefill misses remain, and by TP: TP 2 "
                    "prompts run faster than the compute efficiency of TP 4 and 8 implies "
                    f"(bias {_tp_bias(pred, 2)}), batches of 512-token prompts take longer "
                    "than one prompt of "
                    "the same total length (Llama-2-70B TP 8: 16 × 512 tokens 2,064 ms, "
                    "1 × 8,192 tokens 1,544 ms), and the time per prompt token at TP 4 and 8 "
                    "rises with the tokens in the iteration (TP 8: 0.13 ms at 2,048 tokens, "
                    "0.23 ms at 32,768), which no constant of a roofline follows (a "
                    "separate attention efficiency for the quadratic term was tried: 0.3 pp "
                    "better in-sample, not kept; so was an efficiency of the all-reduce's "
                    "bytes over NVLink, fitted at 0.21: TP 2 prefill 7 % in-sample, but TP 8 "
                    "left out 26 %; and a per-token cost every GPU pays whatever the TP, "
                    "replicated work worth 60 M parameters per layer: TP 2 left out 13 %, but "
                    "Llama-2-70B TP 8 19 %, since the small TP 8 prefills already fit and the "
                    "large ones are short by far more). These large prefills are also the "
                    "unsteady ones: "
                    + _prefill_spread(split_rows)
                    + ". Leave-one-TP-out errors are in section 4.",
                    "<details><summary>Per configuration (defaults)</summary>\n\n"
                    + md_table(splitwise_detail(pred))
                    + "\n\n</details>",
                ],
            )
        )
    else:
        print(f"[skip] Splitwise profile not found at {args.splitwise}")

    # 2. vLLM replays
    runs = None
    wide = None
    if (args.vllm_runs / "experiments.csv").is_file():
        runs = load_vllm_runs(args.vllm_runs)
        wide, _ = vllm_errors(runs, DEFAULT_PARAMS)
        old_w, _ = vllm_errors(runs, OLD_DEFAULTS)
        nopc, _ = vllm_errors(runs, DEFAULT_PARAMS, prefix_cache=False)
        ident, _ = vllm_errors(runs, DEFAULT_PARAMS, identity=True)
        ident_cmp = identity_comparison(wide, ident)
        ident_same, ident_why = identity_agreement(runs, wide, ident, DEFAULT_PARAMS)
        rec_wide, _ = vllm_errors(runs, DEFAULT_PARAMS, recorded_output=True)
        out_evid = output_length_evidence(runs)
        pc_evid = prefix_cache_evidence(runs)
        pc_evid["prompt classes (distinct lengths)"] = [
            int(np.unique(r.input_tokens).size) for r in runs
        ]
        pc_evid["engine: computed prompt share"] = wide["computed_share"].map(
            lambda x: f"{100 * x:.1f}%"
        )
        show("2. vLLM replays (defaults): relative error", vllm_error_table(wide))
        show("2. vLLM replays (defaults): measured vs predicted", vllm_value_table(wide))
        show("2. vLLM replays (old defaults): relative error", vllm_error_table(old_w))
        show("2. prefix-cache evidence", pc_evid)
        show("2. prompt identity from a trace column vs a class per prompt", ident_cmp)
        win = load_windows(runs, DEFAULT_PARAMS)
        by_band = load_table(win, "band")
        by_tp = load_table(win, "tp")
        show("2. error by load (one-minute windows)", by_band)
        show("2. error by TP (one-minute windows)", by_tp)
        sat = win[win["band"] == band_name(*LOAD_BANDS[-1])]
        low = win[win["occupancy"] < LOAD_BANDS[1][0]]
        headline.append(
            f"**Error by load (H100 replays, {len(win)} one-minute windows):** mean E2E MAPE "
            f"{mape(low['e2e_mean_err']):.1f}% below 25 % slot occupancy, "
            f"{mape(sat['e2e_mean_err']):.1f}% at ≥ 75 % ({len(sat)} windows); p99 TTFT "
            f"MAPE {mape(low['ttft_p99_err']):.0f}% and {mape(sat['ttft_p99_err']):.0f}%. "
            "By TP: "
            + "; ".join(
                f"TP {r['tp']} E2E {r['e2e mean MAPE (bias)']}, p99 TTFT "
                f"{r['ttft p99 MAPE (bias)']}"
                for _, r in by_tp.iterrows()
            )
            + "."
        )
        worst = int(np.argmax(np.abs(wide["e2e_mean_err"].to_numpy())))
        headline.append(
            "**H100 end to end (9 vLLM runs, the engine's prefix cache serving the repeated "
            "prompts), defaults:** mean E2E error "
            f"{pct(wide['e2e_mean_err'].min())} to {pct(wide['e2e_mean_err'].max())} (MAPE "
            f"{mape(wide['e2e_mean_err']):.1f}%; old defaults "
            f"{mape(old_w['e2e_mean_err']):.1f}%), per-token "
            f"{pct(wide['itl_mean_err'].min())} to {pct(wide['itl_mean_err'].max())} (MAPE "
            f"{mape(wide['itl_mean_err']):.1f}%; old {mape(old_w['itl_mean_err']):.1f}%), "
            f"mean TTFT {pct(wide['ttft_mean_err'].min())} to "
            f"{pct(wide['ttft_mean_err'].max())} (MAPE {mape(wide['ttft_mean_err']):.0f}%; "
            f"old {mape(old_w['ttft_mean_err']):.0f}%). Worst E2E: "
            f"{wide['run'].iloc[worst]}. Without the prefix cache the same replays give "
            f"mean E2E MAPE {mape(nopc['e2e_mean_err']):.0f}%."
        )
        headline.append(
            "**H100 end to end, prompt identity from a trace column** (each request's prompt "
            "as a `prefix_id` / `prefix_tokens` CSV trace read by `load_trace`, instead of a "
            "class per prompt): mean E2E MAPE "
            f"{mape(ident['e2e_mean_err']):.1f}% (class per prompt "
            f"{mape(wide['e2e_mean_err']):.1f}%), per-token "
            f"{mape(ident['itl_mean_err']):.1f}% ({mape(wide['itl_mean_err']):.1f}%), mean "
            f"TTFT {mape(ident['ttft_mean_err']):.0f}% ({mape(wide['ttft_mean_err']):.0f}%): "
            f"{ident_same}."
        )
        parts.append(
            section(
                "2. End-to-end replay of nine vLLM H100 runs",
                [
                    "Source: inference-sim/training `replay_data` (commit c4f03409b448): nine "
                    "vLLM runs on H100 driven by the inference-perf client (streaming "
                    "completions, `ignore_eos`, constant-rate load stages). No licence is "
                    "stated, so only aggregates derived here are shown, no per-request rows.",
                    "Setup per run: one replica, `gpu: h100-sxm`, bf16, the run's model "
                    "(catalog `llama-2-7b`, `llama-2-70b`, `mixtral-8x7b`) and TP, "
                    "`max_num_seqs` 128, `max_num_batched_tokens` 2048, chunked prefill, "
                    "`block_tokens` 16, `kv_blocks` = the run's `kv_blocks_total_gpu`, "
                    "`max_model_len` 4096, default `step_time` (profile `vllm`, family "
                    "`hopper`); arrivals and prompt lengths replayed exactly and drained to "
                    "completion (completed share "
                    f"≥ {wide['completed'].min():.3f}; preemptions: "
                    f"{wide['preemptions'].sum():.0f}). Per-token latency = mean over requests "
                    "of (E2E − TTFT)/(output − 1).",
                    "**Output lengths.** Every request generates the run's configured "
                    "`output_len` (247 / 248 / 251), not the recorded `output_tokens` (the "
                    "client's re-tokenisation): a request recorded with few tokens takes as "
                    "long to decode as its full-length neighbours.",
                    md_table(out_evid),
                    "**Prefix caching.** The client cycles through a fixed set of about 100 "
                    "prompts (the prompt-length sequence repeats with that period), so vLLM's "
                    "automatic prefix cache serves every repeated prompt except its last "
                    "partial block. The replay models this with the engine's own prefix "
                    "cache: each distinct prompt (taken as each distinct length) is its own "
                    "workload class whose prefix is the prompt minus its last token, and every "
                    "request carries it. The engine computes fewer prompt tokens than the "
                    "'uncached share' estimate (which charged the whole first period) because "
                    "a few distinct prompts share a length and are taken as one.",
                    md_table(pc_evid),
                    "### Defaults (after)",
                    "Relative error, predicted / measured − 1:",
                    md_table(vllm_error_table(wide)),
                    md_table(vllm_value_table(wide)),
                    md_table(vllm_summary(wide)),
                    "Measured minus predicted mean TTFT: "
                    + frontend_latency(wide)
                    + " (median per model). Counted in iterations (the request's own "
                    "per-token latency), the measured median TTFT is close to three on every "
                    "run (2.97–3.30), whatever the model: the latency scales with the "
                    "iteration time, so a constant front end alone cannot explain it. The "
                    "engine schedules ahead (`schedule_ahead`, on in the `vllm-2026` "
                    "profile): vLLM's scheduler plans iteration i + 1 while iteration i runs, "
                    "so a request arriving while sequences run is admitted one boundary later "
                    "than by a scheduler planning at each boundary (an idle engine admits at "
                    "once); the simulated TTFT is then half an iteration of waiting, that "
                    "iteration, the prefill iteration and the front end (`frontend_latency_s`). "
                    "The front end (HTTP server, tokenisation, the first streamed chunk) is "
                    "one constant for every model: "
                    + frontend_fit(wide)
                    + ". "
                    + ttft_sensitivity(runs, wide, DEFAULT_PARAMS)
                    + "; the load table below gives the error by slot occupancy.",
                    md_table(ttft_in_iterations(runs, DEFAULT_PARAMS)),
                    "### Error by load and by TP (defaults)",
                    "Each run's requests are cut into one-minute windows of arrivals (at "
                    "least 20 requests). A window's load is its measured slot occupancy: "
                    "concurrency by Little's law (arrivals × mean measured E2E / 60 s) over "
                    "`max_num_seqs` (128), from idle (a few %) to saturated (≥ 75 %: new "
                    "requests wait for a slot and the batch is at its largest). Error of the "
                    "window's mean E2E, mean TTFT, p99 TTFT and mean per-token latency, "
                    "predicted / measured − 1; MAPE over the windows, mean error in brackets.",
                    md_table(by_band),
                    md_table(by_tp),
                    "### Old defaults (before: ce 0.55, be 0.80, overhead 3 ms, all-reduce "
                    "8 µs), same prefix-cache replay",
                    md_table(vllm_error_table(old_w)),
                    md_table(vllm_summary(old_w)),
                    "### Defaults, replayed without the prefix cache",
                    md_table(vllm_error_table(nopc)),
                    "### Defaults, prompt identity from a trace column",
                    "The same replays with each request's prompt identity read from a trace "
                    "instead of a class per prompt: the requests are written as a CSV trace "
                    "with a `prompt_id` column (the distinct prompt, taken as its length) and "
                    "a `prompt_tokens` column (the shared prefix: the whole prompt), loaded "
                    "by `sim.workload.trace.load_trace` (`columns.prefix_id` / "
                    "`columns.prefix_tokens`, 16-token hash blocks, the engine's block size) "
                    "as one workload class with `prompt_blocks`. Repeats of a prompt share "
                    "the chained hashes of its whole 16-token blocks; its final partial block "
                    "is unique. The engine never finds a request's last token cached, so a "
                    "repeat is served from the cache except "
                    "its last block as in vLLM (a hit covers `16 · floor((n − 1) / 16)` "
                    "tokens): the class-per-prompt replay reaches the same blocks through a "
                    "prefix of n − 1 tokens. The two differ only for a prompt of a whole "
                    "number of blocks, whose last block the identity replay still publishes "
                    "(it is never looked up, but it occupies a cached block until evicted), "
                    "which changes a prediction only when keeping it evicts a block that is "
                    f"looked up again. Here the identity replay gives {ident_why}. Errors "
                    "(identity / class per prompt):",
                    md_table(ident_cmp),
                    md_table(vllm_summary(ident)),
                    "### Defaults, replayed with the recorded output counts",
                    md_table(vllm_error_table(rec_wide)),
                ],
            )
        )
    else:
        print(f"[skip] vLLM runs not found at {args.vllm_runs}")

    # 3. TRT-LLM offline
    trt = None
    res = None
    if args.trtllm.is_file():
        trt = trt_rows(args.trtllm)
        res = offline_check(trt)
        res_trt = offline_check(trt, {"profile": "trtllm"})
        res_old = offline_check(trt, OLD_DEFAULTS)
        tab = offline_table(res)
        summ = offline_summary(res)
        summ_trt = offline_summary(res_trt)
        show("3. Offline throughput (vllm profile): summary", summ)
        show("3. Offline throughput (trtllm profile): summary", summ_trt)
        headline.append(
            f"**Offline saturation vs TensorRT-LLM ({len(res)} H100/H200 FP8 rows), sim / "
            "published, no-evict admission:** old defaults "
            f"{ratio_stats(res_old['ratio_ne'])}; `vllm` profile "
            f"{ratio_stats(res['ratio_ne'])}; `trtllm` profile "
            f"{ratio_stats(res_trt['ratio_ne'])}. With vLLM-like admission (recompute "
            f"preemption; thrashes at ISL 20000), `vllm` profile {ratio_stats(res['ratio'])}."
        )
        parts.append(
            section(
                "3. Offline saturation throughput vs TensorRT-LLM",
                [
                    "Source: NVIDIA TensorRT-LLM `docs/source/performance/perf-overview.md` "
                    "(Apache-2.0), offline max-throughput, total output tokens/s of the TP "
                    "group; H100 / H200 rows of Llama 3.1 8B, 3.3 70B, 3.1 405B in FP8.",
                    "Setup: every request at t = 0 with the row's ISL / OSL; `max_num_seqs` "
                    f"{OFFLINE_MAX_NUM_SEQS}, `max_num_batched_tokens` {OFFLINE_MAX_BATCHED}, "
                    "chunked prefill; requests = max(1000, 4 × the sequences that fit), at "
                    "most 20 000. 'no-evict' caps `max_num_seqs` at the full (ISL + OSL) "
                    "sequences the cache holds, as TensorRT-LLM's default GUARANTEED_NO_EVICT "
                    "scheduler does; the plain run admits as vLLM does.",
                    "Profile `vllm` (the default; a vLLM-calibrated model is expected to come "
                    "out below TensorRT-LLM):",
                    md_table(summ),
                    "Profile `trtllm` (fitted to these rows, no-evict):",
                    md_table(summ_trt),
                    "Old defaults:",
                    md_table(offline_summary(res_old)),
                    "<details><summary>Per row (vllm profile)</summary>\n\n"
                    + md_table(tab)
                    + "\n\n</details>",
                ],
            )
        )
    else:
        print(f"[skip] TRT-LLM table not found at {args.trtllm}")

    targets = targets_table(pred, wide, res)
    show("Targets", targets)
    parts.append(section("Targets", [md_table(targets)]))

    # 4. fits
    if args.fit:
        fits, notes, fitted = fit_section(split_rows, runs, trt)
        show("4. Least-squares fits", fits)
        for n in notes:
            print(n)
        print(profile_yaml(fitted))
        parts.append(
            section(
                "4. Least-squares fits behind the profiles",
                [
                    "`scipy.optimize.least_squares` (trust-region reflective, bounded: "
                    + bounds_text()
                    + ") on log errors. TensorRT-LLM (profile `trtllm`, hopper): offline "
                    "throughput with no-evict admission, all-reduce latency held at 15 µs, CPU "
                    "per sequence and time per layer at 0. vLLM (profile `vllm`, hopper): "
                    "mean and p90 E2E and mean per-token latency of each replayed run (TTFT "
                    "left out: it contains the API server's latency); two constants free: the "
                    "fixed time per transformer layer per iteration (`layer_s`: each layer's "
                    "dozen kernels take a minimum time however small the batch; the three "
                    "models' depths, 32 and 80 layers, identify it) and the CPU time per "
                    "decoding sequence per iteration (`seq_cpu_s`: vLLM's scheduler, sampler, "
                    "detokenisation and streaming work per sequence, not overlapped with the "
                    "GPU; identified by how the step time grows with the batch across each "
                    "run's load stages). Held, not fitted: the all-reduce latency at vLLM's "
                    f"published custom all-reduce figure ({1e6 * VLLM_ALLREDUCE_S:.0f} µs; 7 µs "
                    "at TP 2, https://github.com/vllm-project/vllm/pull/24111, 10 µs at TP 4, "
                    "https://github.com/vllm-project/vllm/pull/24532), the bandwidth "
                    f"efficiency at the bound of its physical range ({BE_BOUND:g}, where every "
                    "fit of it lands), the fixed cost per iteration at 0 (fitted jointly with "
                    "the per-layer time it goes to 0) and the compute efficiency at the "
                    "TensorRT-LLM fit (the runs' prompts are cached, so they do not identify "
                    "it). Splitwise (profile `vllm`, ampere): every prefill (outliers "
                    "excluded) and decode figure; four constants free (compute efficiency, "
                    "time per layer, ring-hop latency, CPU per sequence), bandwidth "
                    "efficiency at the same bound, no constant per iteration. "
                    "Leave-one-out: fit on the other models (or TP degrees), evaluate on the "
                    "held-out one. The shipped `profiles.yaml` rounds the in-sample fits.",
                    "Before the per-layer time (vLLM: bandwidth efficiency, fixed cost, "
                    "all-reduce latency and CPU per sequence fitted, 2026-12-01): "
                    "leave-one-model-out mean E2E / per-token / mean TTFT MAPE 7.9 / 7.6 / "
                    "28.5 % (Llama-2-70B held out), 22.2 / 22.4 / 9.6 % (Llama-2-7B, the only "
                    "TP 1 model: both training models run at TP > 1, so the fixed cost and "
                    "the all-reduce latency traded off: 0.05 ms and 35 µs), 3.4 / 3.7 / "
                    "17.8 % (Mixtral-8x7B); in-sample 1.7 / 1.8 / 17.9 %. A100 (overhead, "
                    "ring hop, compute and bandwidth efficiency): in-sample prefill / decode "
                    "15.6 / 7.5 %, TP 8 held out 15.5 / 32.9 %. The former forms are refitted "
                    "below.",
                    md_table(fits),
                    *notes,
                    "In-sample fits:\n\n```yaml\n" + profile_yaml(fitted) + "\n```",
                ],
            )
        )

    elapsed = time.perf_counter() - t_start
    print("\n=== Headline ===")
    for h in headline:
        print("-", h)
    print(f"(ran in {elapsed:.0f} s)")

    hop = resolve_roofline(RooflineStep(), "h100-sxm")
    amp = resolve_roofline(RooflineStep(), "a100-80gb-sxm")
    header = [
        "# Validation of the default performance model",
        f"Generated {today} by `benchmarks/validate_model.py"
        + (" --fit" if args.fit else "")
        + f"` in {elapsed:.0f} s (Python {platform.python_version()}, numpy {np.__version__}, "
        f"pandas {pd.__version__}). Every 'defaults' prediction uses `step_time: {{model: "
        f"roofline}}`, i.e. the `vllm` profile of `sim/catalog/profiles.yaml`: hopper "
        f"{fmt_params(hop.as_dict())}; ampere {fmt_params(amp.as_dict())}. 'Old defaults' "
        "are the constants shipped before the profiles (ce 0.55, be 0.80, overhead 3 ms, "
        "all-reduce 8 µs). Only derived figures are reproduced; the reference data are read "
        "at run time from optional paths (`--vllm-runs`, `--splitwise`, `--trtllm`, "
        "defaulting to `../shared/data/calibration/`) and are not part of the project.",
        "Relative error = predicted / measured − 1; MAPE = mean |relative error|.",
        "## Headline",
        "\n".join(f"- {h}" for h in headline),
    ]
    # section 5 (KV-cache capacity) comes from its own script, on data shipped in the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import validate_kv_memory as kvm

    parts.append(kvm.markdown(*kvm.evaluate()))
    text = "\n\n".join(header + parts) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
