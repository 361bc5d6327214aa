"""KV-cache capacity: the vLLM V1 memory formula (``sim.engine.memory``) against published
vLLM startup logs.

Data: ``benchmarks/data/vllm_kv_cache_logs.csv`` (23 startup logs, each row with its source
URL; see ``benchmarks/data/README.md``) and the KV block counts of the nine measured vLLM
H100 runs (three engine configurations; derived figures of inference-sim/training, quoted
below). For every log whose GPU, tensor-parallel degree and KV figure are known, the script
predicts the KV cache per GPU (GiB) and in tokens, and compares:

* **terms**: the weights as the log reports them (isolates the formula's other terms);
* **shape**: the weights computed from the model's shape (``ModelSpec.weight_bytes``), as a
  scenario does; only for unquantised checkpoints;
* **old**: the constant per-GPU reserve shipped before (1.5 GiB, nominal memory).

The two fitted non-torch constants (``NON_TORCH_GIB`` for tp 1, ``COMM_BUFFERS_GIB`` for
tp > 1) are the mean residuals of the logs in the ``fit`` set; each fit row is also predicted
leave-one-out (the constant refitted without it). The CUDA-graph constants are a least-squares
line in ``tp − 1`` through the logged graph-capture figures, also left one out.

Run ``.venv/bin/python benchmarks/validate_kv_memory.py [--write]``: prints the tables;
``--write`` replaces section 5 of ``benchmarks/validation.md`` (between its markers).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.catalog import ModelSpec, get_gpu, get_model, model_from_hf_config
from sim.engine import memory
from sim.engine.memory import GIB, kv_bytes_per_token_per_gpu, vllm_memory_budget

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "benchmarks" / "data" / "vllm_kv_cache_logs.csv"
REPORT = REPO / "benchmarks" / "validation.md"
START, END = "<!-- kv-memory:start -->", "<!-- kv-memory:end -->"
OLD_RESERVE_GIB = 1.5
TARGET = 0.05

# Shapes of the logged models that are not in the catalogue (Hugging Face config.json fields).
HF: dict[str, dict[str, Any]] = {
    "qwen2-7b": dict(  # huggingface.co/Qwen/Qwen2-7B-Instruct
        hidden_size=3584,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        intermediate_size=18944,
        vocab_size=152064,
        max_position_embeddings=32768,
    ),
    "qwen3-8b": dict(  # huggingface.co/Qwen/Qwen3-8B
        hidden_size=4096,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=12288,
        vocab_size=151936,
        max_position_embeddings=40960,
    ),
    "qwen3-14b": dict(  # huggingface.co/Qwen/Qwen3-14B
        hidden_size=5120,
        num_hidden_layers=40,
        num_attention_heads=40,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=17408,
        vocab_size=151936,
        max_position_embeddings=40960,
    ),
    "qwen2.5-14b": dict(  # huggingface.co/deepseek-ai/DeepSeek-R1-Distill-Qwen-14B
        hidden_size=5120,
        num_hidden_layers=48,
        num_attention_heads=40,
        num_key_value_heads=8,
        intermediate_size=13824,
        vocab_size=152064,
        max_position_embeddings=131072,
    ),
    "llama-3.2-1b": dict(  # huggingface.co/meta-llama/Llama-3.2-1B-Instruct
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        intermediate_size=8192,
        vocab_size=128256,
        tie_word_embeddings=True,
        max_position_embeddings=131072,
    ),
    "qwen3-235b-a22b": dict(  # huggingface.co/Qwen/Qwen3-235B-A22B
        hidden_size=4096,
        num_hidden_layers=94,
        num_attention_heads=64,
        num_key_value_heads=4,
        head_dim=128,
        intermediate_size=12288,
        moe_intermediate_size=1536,
        num_experts=128,
        num_experts_per_tok=8,
        vocab_size=151936,
        max_position_embeddings=40960,
    ),
    "gpt-oss-120b": dict(  # huggingface.co/openai/gpt-oss-120b (MXFP4 experts)
        hidden_size=2880,
        num_hidden_layers=36,
        num_attention_heads=64,
        num_key_value_heads=8,
        head_dim=64,
        intermediate_size=2880,
        num_local_experts=128,
        num_experts_per_tok=4,
        vocab_size=201088,
        max_position_embeddings=131072,
    ),
}

# model_id in the CSV -> (shape, shape weights comparable: an unquantised checkpoint)
MODELS: dict[str, tuple[str, bool]] = {
    "Qwen/Qwen2-7B-Instruct": ("qwen2-7b", True),
    "openai/gpt-oss-120b": ("gpt-oss-120b", False),
    "Qwen/Qwen3-8B": ("qwen3-8b", True),
    "meta-llama/Llama-3.1-70B": ("llama-3.1-70b", True),
    "meta-llama/Meta-Llama-3.1-8B-Instruct": ("llama-3.1-8b", True),
    "Qwen/Qwen3-235B-A22B-FP8": ("qwen3-235b-a22b", False),
    "meta-llama/Llama-3.2-1B-Instruct": ("llama-3.2-1b", True),
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B": ("qwen2.5-14b", True),
    "Qwen/Qwen3-14B": ("qwen3-14b", True),
}
AWQ_ID = "Meta-Llama-3-8B-Instruct-W4A16_awq_sym"

# GPU named in the CSV -> catalogue name
GPUS = {
    "NVIDIA A100 80GB": "a100-80gb-sxm",
    "NVIDIA A100 40GB": "a100-40gb-sxm",
    "NVIDIA H100": "h100-sxm",
    "NVIDIA L4 (inferred)": "l4",
}

# The nine measured vLLM H100 runs (inference-sim/training, commit c4f03409b448): three engine
# configurations, each logged the same KV block count in its three runs (`kv_blocks_total_gpu`,
# block 16). Settings from the runs' exp-config.yaml: max_num_seqs 128,
# max_num_batched_tokens 2048; gpu_memory_utilization not set (vLLM's default 0.9).
H100_RUNS = (
    ("Llama-2-7B (H100 runs)", "llama-2-7b", 1, 7462),
    ("Llama-2-70B (H100 runs)", "llama-2-70b", 4, 31356),
    ("Mixtral-8x7B (H100 runs)", "mixtral-8x7b", 2, 27510),
)

# Which logs the constants are fitted on: V1, GPU memory, TP, utilisation and token budget
# stated, KV figure logged. The others are checked (an assumption marked) or excluded.
FIT_ROWS = {0, 1, 2, 3, 5}
CHECK_ROWS = {
    4: "GPU size uncertain (file name says 40GB, README 80GB); TP 2 across two nodes",
    8: "GPU inferred (L4): device memory the 23,034 MiB an L4 reports (ECC on)",
    16: "GPU not named (an 80 GB card fits the numbers); assumed A100 80GB",
    6: "LMCache FAQ table; utilisation, GPU and TP assumed (0.9, H100, 1)",
    7: "LMCache FAQ table; utilisation assumed 0.9",
    11: "LMCache connector; utilisation assumed 0.9; FP8 checkpoint (weights from the shape)",
}
EXCLUDED = {
    9: "RTX A5000 not in the catalogue; utilisation not stated",
    10: "RTX A5000 not in the catalogue; utilisation not stated",
    12: "GPU size not stated",
    13: "GPU size not stated; hybrid sliding-window model",
    14: "GPU not named",
    15: "GPU not named",
    17: "GPU, utilisation and version not stated",
    18: "V0 engine (profiles a whole max_model_len batch)",
    19: "V0 engine",
    20: "V0 engine",
    21: "V0 engine",
    22: "V0 engine",
}
ASSUMED_GPU = {16: "a100-80gb-sxm", 6: "h100-sxm"}


def shape(key: str) -> ModelSpec:
    """A catalogue model, or one of :data:`HF` built from its config."""
    if key in HF:
        return model_from_hf_config(HF[key], name=key)
    return get_model(key)


def _num(v: Any, default: float) -> float:
    return default if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def cases() -> pd.DataFrame:
    """One row per evaluated log: settings, model, GPU and the logged figures."""
    raw = pd.read_csv(DATA)
    out: list[dict[str, Any]] = []
    for i, r in raw.iterrows():
        idx = int(i)  # type: ignore[call-overload]
        if idx in EXCLUDED:
            continue
        if str(r.model_id).startswith(AWQ_ID):
            key, comparable, dtype = "llama-3.1-8b", False, "int4"
        else:
            key, comparable = MODELS[str(r.model_id)]
            dtype = "fp8" if "FP8" in str(r.model_id) else "bf16"
        out.append(
            dict(
                case=f"log {idx}: {r.model_id.split(' ')[0]}",
                row=idx,
                set="fit" if idx in FIT_ROWS else "check",
                note=CHECK_ROWS.get(idx, ""),
                model=key,
                shape_weights=comparable,
                wdtype=dtype,
                gpu=ASSUMED_GPU.get(idx, GPUS.get(str(r.gpu), "")),
                tp=int(r.tp),
                u=_num(r.gpu_memory_utilization, 0.9),
                mnbt=int(_num(r.max_num_batched_tokens, 2048)),
                seqs=int(_num(r.max_num_seqs, 256)),
                eager=str(r.enforce_eager) == "True",
                weights_log=_num(r.weights_gib, np.nan),
                kv_gib=_num(r.kv_cache_gib, np.nan),
                kv_tokens=_num(r.kv_cache_tokens, np.nan),
                graph_gib=_num(r.cuda_graph_gib, np.nan),
                version=str(r.vllm_version),
            )
        )
    for name, key, tp, blocks in H100_RUNS:
        m = shape(key)
        per_gpu = kv_bytes_per_token_per_gpu(m, tp, "bf16")
        out.append(
            dict(
                case=name,
                row=-1,
                set="fit",
                note="utilisation = vLLM default 0.9",
                model=key,
                shape_weights=True,
                wdtype="bf16",
                gpu="h100-sxm",
                tp=tp,
                u=0.9,
                mnbt=2048,
                seqs=128,
                eager=False,
                weights_log=np.nan,
                kv_gib=blocks * 16 * per_gpu / GIB,
                kv_tokens=blocks * 16.0,
                graph_gib=np.nan,
                version="2026 (not stated)",
            )
        )
    return pd.DataFrame(out)


def predict(
    c: pd.Series,
    *,
    logged_weights: bool,
    non_torch: tuple[float, float],
    memory_gib: float | None = None,
) -> float:
    """Predicted KV GiB per GPU for one case, with the two non-torch constants given (and,
    optionally, another device memory than the catalogue's)."""
    m = shape(c.model)
    gpu = get_gpu(c.gpu)
    if memory_gib is not None:
        gpu = replace(gpu, memory_gib=memory_gib, memory_reported_gib=None)
    w = c.weights_log if logged_weights and not np.isnan(c.weights_log) else None
    saved = memory.NON_TORCH_GIB, memory.COMM_BUFFERS_GIB
    memory.NON_TORCH_GIB, memory.COMM_BUFFERS_GIB = non_torch
    try:
        b = vllm_memory_budget(
            m,
            gpu,
            tp=int(c.tp),
            dtype=c.wdtype,
            kv_dtype="bf16",
            gpu_memory_utilization=float(c.u),
            max_num_batched_tokens=int(c.mnbt),
            max_num_seqs=int(c.seqs),
            weights_gib=w,
        )
    finally:
        memory.NON_TORCH_GIB, memory.COMM_BUFFERS_GIB = saved
    return b.kv_gib


def residual(c: pd.Series) -> float:
    """Logged KV GiB short of the formula with no non-torch term (the term the fit sees)."""
    return predict(c, logged_weights=True, non_torch=(0.0, 0.0)) - float(c.kv_gib)


def fit_non_torch(frame: pd.DataFrame) -> tuple[float, float]:
    """Mean residual of the tp-1 fit cases, and of the tp>1 ones beyond it."""
    res = frame.apply(residual, axis=1)
    one = float(res[frame.tp == 1].mean())
    many = float(res[frame.tp > 1].mean()) - one
    return one, many


def evaluate() -> tuple[pd.DataFrame, tuple[float, float], tuple[float, float]]:
    """Per-case predictions and errors; the fitted (non-torch, comm) and graph constants."""
    cs = cases()
    fit = cs[cs.set == "fit"]
    consts = fit_non_torch(fit)
    shipped = (memory.NON_TORCH_GIB, memory.COMM_BUFFERS_GIB)
    rows = []
    for idx, c in cs.iterrows():
        per_tok = kv_bytes_per_token_per_gpu(shape(c.model), int(c.tp), "bf16")
        terms = predict(c, logged_weights=True, non_torch=shipped)
        loo = np.nan
        if c.set == "fit":
            loo = predict(c, logged_weights=True, non_torch=fit_non_torch(fit.drop(index=idx)))
        shape_kv = (
            predict(c, logged_weights=False, non_torch=shipped) if c.shape_weights else np.nan
        )
        w_old = c.weights_log
        if np.isnan(w_old):
            w_old = shape(c.model).weight_bytes(c.wdtype) / GIB / c.tp
        old = c.u * get_gpu(c.gpu).memory_gib - w_old - OLD_RESERVE_GIB
        kv = float(c.kv_gib)
        note = c.note
        if c.gpu == "l4":  # a GDDR card: its datasheet "24 GB", read as GiB, overstates it
            alt = predict(c, logged_weights=True, non_torch=shipped, memory_gib=24.0)
            note += f"; with the datasheet's 24 read as GiB: {_pct(alt / kv - 1)}"
        # vLLM logs engine-wide tokens: a block holds 16 tokens of every GPU's share
        tok_pred = np.floor(terms * GIB / (16 * per_tok)) * 16
        rows.append(
            dict(
                case=c.case,
                set=c.set,
                tp=int(c.tp),
                gpu=c.gpu,
                u=c.u,
                kv_log_gib=kv,
                kv_pred_gib=terms,
                err=terms / kv - 1,
                err_loo=loo / kv - 1 if c.set == "fit" else np.nan,
                err_shape=shape_kv / kv - 1,
                err_old=old / kv - 1,
                tok_log=c.kv_tokens,
                tok_pred=tok_pred,
                tok_err=tok_pred / c.kv_tokens - 1 if c.kv_tokens == c.kv_tokens else np.nan,
                note=note,
            )
        )
    return pd.DataFrame(rows), consts, fit_graphs(cs)


def fit_graphs(cs: pd.DataFrame) -> tuple[float, float]:
    """Least-squares ``g0 + g1·(tp − 1)`` through the logged CUDA-graph figures."""
    g = graph_points(cs)
    a = np.column_stack([np.ones(len(g)), g.tp.to_numpy() - 1.0])
    coef, *_ = np.linalg.lstsq(a, g.graph_gib.to_numpy(), rcond=None)
    return float(coef[0]), float(coef[1])


def graph_points(cs: pd.DataFrame) -> pd.DataFrame:
    """The V1 logs that report CUDA-graph memory (one point per distinct startup)."""
    raw = pd.read_csv(DATA)
    v1 = raw[~raw.vllm_version.astype(str).str.startswith("V0") & raw.cuda_graph_gib.notna()]
    v1 = v1.assign(gpu=v1.gpu.fillna("not named"))
    return (
        v1[["model_id", "tp", "gpu", "cuda_graph_gib"]]
        .rename(columns={"cuda_graph_gib": "graph_gib"})
        .reset_index(drop=True)
    )


def graph_table(cs: pd.DataFrame) -> pd.DataFrame:
    g = graph_points(cs)
    g0, g1 = fit_graphs(cs)
    rows = []
    for i, p in g.iterrows():
        rest = g.drop(index=i)
        a = np.column_stack([np.ones(len(rest)), rest.tp.to_numpy() - 1.0])
        c, *_ = np.linalg.lstsq(a, rest.graph_gib.to_numpy(), rcond=None)
        pred = g0 + g1 * (p.tp - 1)
        loo = c[0] + c[1] * (p.tp - 1)
        rows.append(
            dict(
                model=str(p.model_id).split(" ")[0],
                gpu=p.gpu,
                tp=p.tp,
                logged_gib=p.graph_gib,
                fit_gib=round(pred, 2),
                loo_gib=round(loo, 2),
            )
        )
    return pd.DataFrame(rows)


def graph_worst(cs: pd.DataFrame) -> tuple[float, float]:
    """Worst |error| of the CUDA-graph line, in sample and left out, GiB."""
    g = graph_table(cs)
    return (
        float((g.fit_gib - g.logged_gib).abs().max()),
        float((g.loo_gib - g.logged_gib).abs().max()),
    )


def v0_non_torch() -> pd.DataFrame:
    """The non-torch memory the V0 logs print (tp and GPU with it)."""
    raw = pd.read_csv(DATA)
    v0 = raw[raw.vllm_version.astype(str).str.startswith("V0") & raw.non_torch_gib.notna()]
    return v0[["tp", "gpu", "non_torch_gib"]].reset_index(drop=True)


def _pct(x: float) -> str:
    return "" if x != x else f"{x * 100:+.1f}%"


def markdown(res: pd.DataFrame, consts: tuple[float, float], graphs: tuple[float, float]) -> str:
    cs = cases()
    fit = res[res.set == "fit"]
    chk = res[res.set == "check"]
    worst = fit.err.abs().max()
    worst_loo = fit.err_loo.abs().max()
    lines = [
        START,
        "## 5. KV-cache capacity vs vLLM startup logs",
        "",
        "Generated by `benchmarks/validate_kv_memory.py --write` from "
        "`benchmarks/data/vllm_kv_cache_logs.csv` (23 public vLLM startup logs, each with its "
        "source URL) and the KV block counts of the nine vLLM H100 runs (three engine "
        "configurations). The formula (`sim.engine.memory`, the default since the constant "
        "reserve was dropped): KV per GPU = u · 0.99 · memory − weights/tp − peak activation "
        "of the profiling pass − non-torch memory [− CUDA graphs]; see its docstring.",
        "",
        f"Constants: non-torch {consts[0]:.2f} GiB at tp 1, plus {consts[1]:.2f} GiB of "
        f"communication buffers at tp > 1 (mean residuals of the {len(fit)} `fit` cases); "
        f"CUDA graphs {graphs[0]:.2f} + {graphs[1]:.2f}·(tp − 1) GiB (least squares through "
        f"{len(graph_points(cs))} logged graph captures; subtracted only with "
        "`cuda_graphs_in_kv_budget`, since every logged release captured its graphs after "
        "sizing the KV cache). Visible memory 0.99 × the catalogue's figure; activation "
        "bytes counted from the shape (no fitted constant).",
        "",
        f"**Fit cases: worst KV error {worst * 100:.1f}% in sample, {worst_loo * 100:.1f}% "
        f"leave-one-out, {fit.err_shape.abs().max() * 100:.1f}% with the weights computed "
        f"from the shape (target 5%)**; the old 1.5 GiB reserve: worst "
        f"{fit.err_old.abs().max() * 100:.1f}%. Check cases (a setting or the GPU assumed): "
        f"{int((chk.err.abs() <= TARGET).sum())} of {len(chk)} within 5%, worst "
        f"{_pct(float(chk.err.iloc[int(np.argmax(chk.err.abs().to_numpy()))]))}. Errors = "
        "predicted / logged − 1. 'terms' uses the weights the log reports; 'shape' computes "
        "them from the model's shape (unquantised checkpoints only); tokens from 'terms'.",
        "",
        "| case | set | GPU | tp | u | KV logged GiB | KV pred GiB | err (terms) | err LOO | "
        "err (shape) | err (old 1.5 GiB) | tokens logged | tokens pred | tokens err | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in res.iterrows():
        tok_log = "" if r.tok_log != r.tok_log else f"{int(r.tok_log):,}"
        lines.append(
            f"| {r.case} | {r.set} | {r.gpu} | {r.tp} | {r.u:g} | {r.kv_log_gib:.2f} | "
            f"{r.kv_pred_gib:.2f} | {_pct(r.err)} | {_pct(r.err_loo)} | {_pct(r.err_shape)} | "
            f"{_pct(r.err_old)} | {tok_log} | {int(r.tok_pred):,} | {_pct(r.tok_err)} | "
            f"{r.note} |"
        )
    excluded = "; ".join(f"log {k}: {v}" for k, v in sorted(EXCLUDED.items()))
    lines += [
        "",
        f"Not evaluated: {excluded}.",
        "",
        "Cross-check of the non-torch constants: the V0 logs, whose profiler prints non-torch "
        "memory on its own, report "
        + ", ".join(
            f"{r.non_torch_gib:.2f} GiB (tp {r.tp}, {r.gpu})" for r in v0_non_torch().itertuples()
        )
        + f", against the fitted {consts[0]:.2f} GiB at tp 1 and "
        f"{consts[0] + consts[1]:.2f} GiB at tp > 1.",
        "",
        "CUDA-graph memory (logged 'Graph capturing finished ... took'), fit and leave-one-out "
        f"(worst in sample {graph_worst(cs)[0]:.2f} GiB, left out {graph_worst(cs)[1]:.2f} GiB: "
        "the one TP-4 point carries the slope, so the term is weakly identified; it only "
        "matters with `cuda_graphs_in_kv_budget`):",
        "",
        "| model | GPU | tp | logged GiB | fit GiB | LOO GiB |",
        "|---|---|---|---|---|---|",
    ]
    for _, r in graph_table(cs).iterrows():
        lines.append(
            f"| {r.model} | {r.gpu} | {r.tp} | {r.logged_gib:.2f} | {r.fit_gib:.2f} | "
            f"{r.loo_gib:.2f} |"
        )
    lines.append(END)
    return "\n".join(lines)


def write_section(text: str, path: Path = REPORT) -> None:
    """Replace (or append) the marked KV-memory section of the validation report."""
    doc = path.read_text(encoding="utf-8")
    if START in doc and END in doc:
        head, rest = doc.split(START, 1)
        _, tail = rest.split(END, 1)
        doc = head + text + tail
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(doc, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true", help="update benchmarks/validation.md")
    args = ap.parse_args(argv)
    res, consts, graphs = evaluate()
    pd.set_option("display.width", 250)
    print(res.drop(columns=["note"]).round(4).to_string(index=False))
    print(f"non-torch {consts[0]:.3f} GiB, comm {consts[1]:.3f} GiB; graphs {graphs}")
    text = markdown(res, consts, graphs)
    if args.write:
        write_section(text)
        print(f"wrote {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
