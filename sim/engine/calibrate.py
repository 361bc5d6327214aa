"""Fit a step-time model to your own measurements: ``crossover calibrate``.

Two kinds of input:

* **per-iteration timings** (:func:`fit_step_model`): one row per engine iteration with
  ``decode_seqs`` (sequences decoding one token), ``prefill_tokens`` (prompt tokens computed),
  ``kv_tokens`` (KV-cache entries read: the context of every sequence in the batch) and
  ``step_s`` (measured duration); an optional ``attn_pairs`` column (query-key pairs) is used
  by the roofline, which otherwise takes ``kv_tokens``. The ``linear`` model is fitted by
  non-negative least squares on relative errors; the ``roofline`` model (which needs the
  fleet: model, GPU, tp, dtype) by bounded nonlinear least squares over compute and
  bandwidth efficiency and the overhead (the all-reduce latency, a constant per iteration
  exactly collinear with the overhead for one fleet, stays at the profile's value). Both
  fits, their parameter units and bounds are :mod:`sim.engine.fit_steptime`'s.
* **per-request serving benchmarks** (:func:`fit_from_requests`): vLLM ``benchmark_serving``
  style JSON (``input_lens``, ``output_lens``, ``ttfts``, ``itls`` or ``tpots``, ``e2els`` /
  ``latencies``, ``request_rate`` or ``max_concurrency``) or a CSV with ``input_tokens``,
  ``output_tokens``, ``ttft_s``, ``e2e_s`` (optional ``arrival_s``). The requests are replayed
  through the simulator on one replica of the fleet and the model's constants fitted to the
  per-request E2E and per-token latencies (TTFT is reported, not fitted: it contains the API
  server's own latency).

Both roofline fits also fit the serving stack's CPU time per decoding sequence per iteration
(``seq_cpu_s``) when the data identify it: per-iteration timings whose ``decode_seqs`` vary,
or a request benchmark whose batch size varies (two or more load levels: request rates or
client concurrencies). One constant-rate run hardly moves the batch, so the per-sequence time
trades off against the fixed cost per iteration; the fit then keeps the profile's value and
says so in :attr:`CalibrationResult.notes`. The test is the fit's own standard error: the
constant is kept only when twice its standard error (residuals taken as at least 1 %,
:data:`LOG_NOISE_FLOOR`) is below 10 µs (:data:`SEQ_CPU_RESOLUTION_S`). The fixed time
per layer (``layer_s``) is never fitted here: for one model it is a constant per iteration,
exactly collinear with ``overhead_s``; fitting it needs models of different depths
(``benchmarks/validate_model.py --fit``). The profile's per-layer time stays in force, so a
fitted ``overhead_s`` is what the stack costs per iteration beyond it, exactly as the written
block adds it in a scenario on the same profile.

The result's :meth:`CalibrationResult.to_yaml` is a ``step_time:`` block for a scenario;
``seq_cpu_s`` belongs to the engine, not to a scenario's block, so a fitted value is written
below it as a commented profile entry (:attr:`CalibrationResult.stack`) for
``sim/catalog/profiles.yaml``.

Every fit judges itself (:attr:`CalibrationResult.problems`): its MAPE above
:data:`MAX_MAPE_PCT` (25 %), or a fitted constant within :data:`BOUND_TOL` (0.1 %) of the
width of its range from a limit of :data:`sim.engine.fit_steptime.PARAMS` (``wide``), means
the model could not follow the data (a roofline at 100 % efficiency and no overhead is the
optimiser pressing against a wall, not a measurement). A linear coefficient at 0 is not a
problem: that term is simply not needed. The functions return such a fit with its problems
listed; ``crossover calibrate`` refuses to write it unless ``--force``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
import yaml

from sim.engine.fit_steptime import (
    LINEAR_KEYS,
    PARAMS,
    ROOFLINE_KEYS,
    StepFit,
    fit_constants,
    fit_linear_relative,
)
from sim.engine.replica import ReplicaConfig, build_replica
from sim.engine.serve import serve
from sim.engine.spec import FleetSpec, Horizon, LinearStep, RooflineStep
from sim.engine.steptime import apply_stack_constants, resolve_roofline
from sim.workload import Workload

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "BOUND_TOL",
    "LOG_NOISE_FLOOR",
    "MAX_MAPE_PCT",
    "SEQ_CPU_RESOLUTION_S",
    "CalibrationResult",
    "fit_from_requests",
    "fit_step_model",
    "judge_fit",
]

#: A fit whose MAPE (percent) is above this is refused by ``crossover calibrate``.
MAX_MAPE_PCT = 25.0
#: A fitted constant this close to a limit of its range (a share of the range's width) sits
#: at the bound.
BOUND_TOL = 1e-3
#: ``seq_cpu_s`` is taken from a fit only when twice its standard error is below this (10 µs,
#: the unit it is fitted in: a current vLLM spends about 15 µs per sequence).
SEQ_CPU_RESOLUTION_S = PARAMS["seq_cpu_s"].scale
#: The standard error of a fitted constant is taken with residuals of at least 1 % (log
#: error): a measured latency is not known better, and an exact fit to noise-free data
#: would otherwise call any constant determined.
LOG_NOISE_FLOOR = 0.01

STEP_COLUMNS = ("decode_seqs", "prefill_tokens", "kv_tokens", "step_s")
# where a roofline fit starts (fitted within the wide bounds of sim.engine.fit_steptime)
_ROOFLINE_START = {
    "compute_efficiency": 0.5,
    "bandwidth_efficiency": 0.8,
    "overhead_s": 0.002,
    "allreduce_latency_s": 1e-5,
}

# two further starts, far apart (compute-bound and slow / bandwidth-bound and fast)
_ROOFLINE_CORNERS = (
    {
        "compute_efficiency": 0.7,
        "bandwidth_efficiency": 0.6,
        "overhead_s": 0.005,
        "seq_cpu_s": 5e-5,
    },
    {
        "compute_efficiency": 0.3,
        "bandwidth_efficiency": 0.9,
        "overhead_s": 0.001,
        "seq_cpu_s": 3e-5,
    },
)

StepSpec = LinearStep | RooflineStep


@dataclass(frozen=True)
class CalibrationResult:
    """A fitted step-time model and how well it fits.

    Attributes
    ----------
    spec
        The fitted ``step_time`` value (:class:`LinearStep` or :class:`RooflineStep`).
    mape
        Mean absolute percentage error of the fitted quantity (per-iteration time, or
        per-request E2E latency), in percent.
    residuals
        One row per sample: ``measured``, ``predicted``, ``rel_err`` (predicted / measured
        − 1), plus what identifies the sample.
    what
        What was fitted (``step_s`` or ``e2e_s``).
    extra
        Other error figures (e.g. per-token and TTFT MAPE of a request replay).
    problems
        Why the fit should not be trusted, one sentence each (empty for a good fit): the MAPE
        above :data:`MAX_MAPE_PCT`, or a fitted constant at a limit of its range.
    stack
        Fitted constants of the serving stack that a scenario's ``step_time:`` block does not
        carry (``seq_cpu_s``), for a profile entry; empty when none was fitted.
    notes
        What the fit could not determine and kept from the profile, one sentence each.
    """

    spec: StepSpec
    mape: float
    residuals: pd.DataFrame
    what: str = "step_s"
    extra: Mapping[str, float] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    stack: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the fit passed its own checks (no :attr:`problems`)."""
        return not self.problems

    def to_yaml(self) -> str:
        """A ``step_time:`` block for a scenario's ``fleet:`` section; fitted stack constants
        (:attr:`stack`) follow as a commented ``profiles.yaml`` entry.

        Examples
        --------
        >>> r = CalibrationResult(LinearStep(model="linear", c0_s=0.01), 0.0, pd.DataFrame())
        >>> print(r.to_yaml().strip())
        step_time:
          model: linear
          c0_s: 0.01
          c_decode_s: 0.0
          c_prefill_token_s: 0.0
          c_kv_token_s: 0.0
        """
        body = self.spec.model_dump(mode="json", exclude_none=True)
        text = yaml.safe_dump({"step_time": body}, sort_keys=False)
        if not self.stack:
            return text
        entry = {k: {"value": float(f"{v:.3g}")} for k, v in self.stack.items()}
        lines = yaml.safe_dump(entry, sort_keys=False).splitlines()
        return (
            text
            + "# Serving-stack constants fitted too (a profile sets them, not a scenario): add\n"
            + "# them to a profile's family entry in sim/catalog/profiles.yaml.\n"
            + "".join(f"#   {line}\n" for line in lines)
        )

    def plot_residuals(self, ax: Axes | None = None) -> Axes:
        """Relative error against the measured value (matplotlib); returns the Axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(6, 4))
        r = self.residuals
        ax.scatter(r["measured"], 100.0 * r["rel_err"], s=8, alpha=0.6)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel(f"measured {self.what}")
        ax.set_ylabel("predicted / measured − 1 (%)")
        ax.set_title(f"{self.spec.model} fit: MAPE {self.mape:.1f}%")
        return ax


def _mape(rel_err: np.ndarray) -> float:
    a = np.abs(np.asarray(rel_err, dtype=float))
    a = a[np.isfinite(a)]
    return float(100.0 * a.mean()) if a.size else math.nan


def _require(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    for c in columns:
        if c not in frame.columns:
            raise ValueError(f"{source}: missing column {c!r} (needs {', '.join(columns)})")
        values = pd.to_numeric(frame[c], errors="coerce")
        if values.isna().any() or (values < 0).any():
            raise ValueError(f"{source}: column {c!r} must hold non-negative numbers")


def _residual_frame(measured: np.ndarray, predicted: np.ndarray, **cols: Any) -> pd.DataFrame:
    out = pd.DataFrame(cols)
    out["measured"] = measured
    out["predicted"] = predicted
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rel_err"] = predicted / measured - 1.0
    return out


def judge_fit(
    spec: StepSpec,
    mape: float,
    free: Sequence[str],
    *,
    what: str = "step_s",
    stack: Mapping[str, float] | None = None,
) -> tuple[str, ...]:
    """Why a fit should not be trusted: its MAPE above :data:`MAX_MAPE_PCT`, or a fitted
    (``free``) constant within :data:`BOUND_TOL` of a limit of its ``wide`` range (a linear
    coefficient at 0 excepted: that term is not needed). Fitted ``stack`` constants (taken
    from there, not from ``spec``) are judged at their upper limit only: a CPU time per
    sequence of 0 is a stack that needs none.

    Examples
    --------
    >>> bad = RooflineStep(compute_efficiency=0.9999, bandwidth_efficiency=0.6, overhead_s=1e-20)
    >>> for problem in judge_fit(bad, 199.0, ROOFLINE_KEYS[:3]):
    ...     print(problem)
    step_s MAPE 199.0% is above 25%
    compute_efficiency 0.9999 is at its upper bound 1
    overhead_s 1e-20 is at its lower bound 0
    """
    problems: list[str] = []
    if not math.isfinite(mape):
        problems.append(f"{what} MAPE is not finite")
    elif mape > MAX_MAPE_PCT:
        problems.append(f"{what} MAPE {mape:.1f}% is above {MAX_MAPE_PCT:g}%")
    stack = stack or {}
    for key in free:
        value = stack.get(key, getattr(spec, key, None))
        if value is None:
            continue
        lo, hi = PARAMS[key].wide
        tol = BOUND_TOL * (hi - lo)
        if value <= lo + tol and not isinstance(spec, LinearStep) and key not in stack:
            problems.append(f"{key} {value:.4g} is at its lower bound {lo:g}")
        elif value >= hi - tol:
            problems.append(f"{key} {value:.4g} is at its upper bound {hi:g}")
    return tuple(problems)


def _roofline_free(fleet: FleetSpec) -> tuple[str, ...]:
    # The all-reduce latency adds a constant per iteration (2 per layer), exactly collinear
    # with ``overhead_s`` for one fleet: it stays at the profile's value.
    del fleet
    return ROOFLINE_KEYS[:3]


def _profile_of(fleet: FleetSpec) -> str | None:
    return fleet.step_time.profile if isinstance(fleet.step_time, RooflineStep) else None


def _profile_seq_cpu(fleet: FleetSpec) -> float:
    return resolve_roofline(RooflineStep(profile=_profile_of(fleet)), fleet.gpu).seq_cpu_s


def _split_params(
    params: Mapping[str, float], profile: str | None
) -> tuple[RooflineStep, dict[str, float]]:
    # the scenario's step_time block, and the stack constants it cannot carry
    step = {k: v for k, v in params.items() if k in ROOFLINE_KEYS}
    stack = {k: v for k, v in params.items() if k not in ROOFLINE_KEYS}
    return RooflineStep(profile=profile, **step), stack


def _with_stack(replica: ReplicaConfig, step: RooflineStep, stack: Mapping[str, float]) -> None:
    if stack:
        apply_stack_constants(
            replica.coefficients,
            step,
            model=replica.model,
            gpu_name=replica.gpu.name,
            values=stack,
        )


def _fit_roofline(
    residuals: Callable[[dict[str, float]], np.ndarray],
    fleet: FleetSpec,
    *,
    diff_step: float,
    evidence: str,
) -> tuple[StepFit, tuple[str, ...]]:
    """The roofline's constants and ``seq_cpu_s``; ``seq_cpu_s`` is dropped (the fit repeated
    without it, the profile's value kept) when twice its standard error is not below
    :data:`SEQ_CPU_RESOLUTION_S`. Returns the fit and the notes."""
    seq = _profile_seq_cpu(fleet)
    # from the profile's value, or 10 µs where the profile holds it at 0 (a start at a bound
    # has no room to move)
    start = {**_ROOFLINE_START, "seq_cpu_s": seq if seq > 0 else SEQ_CPU_RESOLUTION_S}
    # and from the profile's own constants and two far corners: a replay's cost surface is
    # rough (a discrete-event simulation seen through finite differences), so one start can
    # stop in a local minimum; each start costs a few dozen replays, the best fit wins
    prof = resolve_roofline(RooflineStep(profile=_profile_of(fleet)), fleet.gpu).as_dict()
    starts = [
        start,
        {**start, **{k: prof[k] for k in _roofline_free(fleet)}},
        {**start, **_ROOFLINE_CORNERS[0]},
        {**start, **_ROOFLINE_CORNERS[1]},
    ]
    free = (*_roofline_free(fleet), "seq_cpu_s")
    fit = fit_constants(residuals, free, starts, diff_step=diff_step)
    se = fit.std_err("seq_cpu_s", floor=LOG_NOISE_FLOOR)
    if 2.0 * se < SEQ_CPU_RESOLUTION_S:
        return fit, ()
    fit = fit_constants(residuals, free[:-1], starts, diff_step=diff_step)
    spread = "not determined at all" if not math.isfinite(se) else f"± {2e6 * se:.0f} µs"
    note = (
        f"seq_cpu_s not determined by these data ({spread}; {evidence}): kept at the "
        f"profile's {1e6 * seq:.1f} µs"
    )
    return fit, (note,)


# ---------------------------------------------------------------------------------------------
# per-iteration timings


def fit_step_model(
    samples: pd.DataFrame,
    *,
    model: Literal["linear", "roofline"],
    fleet: FleetSpec | None = None,
) -> CalibrationResult:
    """Fit a step-time model to per-iteration timings.

    Parameters
    ----------
    samples
        Columns ``decode_seqs``, ``prefill_tokens``, ``kv_tokens``, ``step_s`` (optional
        ``attn_pairs``).
    model
        ``linear``: ``c0 + c_decode·decode_seqs + c_prefill·prefill_tokens +
        c_kv·kv_tokens``, fitted by non-negative least squares on relative errors (exact on
        data the model generated). ``roofline``: the four roofline constants for ``fleet``'s
        model, GPU, tp and dtype, by bounded least squares on log errors.
    fleet
        Required for ``roofline`` (which model on which GPUs).

    Raises
    ------
    ValueError
        On a missing or non-numeric column, an empty table, or a roofline without a fleet.
    """
    _require(samples, STEP_COLUMNS, "samples")
    if len(samples) == 0:
        raise ValueError("samples: no rows")
    d = samples["decode_seqs"].to_numpy(float)
    p = samples["prefill_tokens"].to_numpy(float)
    kv = samples["kv_tokens"].to_numpy(float)
    t = samples["step_s"].to_numpy(float)
    if (t <= 0).any():
        raise ValueError("samples: column 'step_s' must be positive")
    ap = samples["attn_pairs"].to_numpy(float) if "attn_pairs" in samples.columns else kv
    ident = {"decode_seqs": d, "prefill_tokens": p, "kv_tokens": kv}
    stack: dict[str, float] = {}
    notes: tuple[str, ...] = ()
    if model == "linear":
        coef = fit_linear_relative(np.column_stack([np.ones_like(t), d, p, kv]), t)
        spec: StepSpec = LinearStep(model="linear", **dict(zip(LINEAR_KEYS, coef, strict=True)))
        free: tuple[str, ...] = LINEAR_KEYS
        pred = coef[0] + coef[1] * d + coef[2] * p + coef[3] * kv
    elif model == "roofline":
        if fleet is None:
            raise ValueError("a roofline fit needs the fleet (model, GPU, tp): pass --scenario")

        profile = _profile_of(fleet)

        def predict(params: Mapping[str, float]) -> np.ndarray:
            step, stack = _split_params(params, profile)
            replica = build_replica(fleet.model_copy(update={"step_time": step}))
            _with_stack(replica, step, stack)
            v = replica.coefficients
            return np.array(
                [v.time_s(a + b, a, b, c, e) for a, b, c, e in zip(d, p, kv, ap, strict=True)]
            )

        # the prediction is closed-form and smooth: a small finite-difference step
        fit, notes = _fit_roofline(
            lambda q: np.log(predict(q) / t),
            fleet,
            diff_step=1e-4,
            evidence="decode_seqs varies too little",
        )
        free = fit.free
        spec, stack = _split_params(fit.params, profile)
        pred = predict(fit.params)
    else:
        raise ValueError(f"unknown model {model!r}: expected 'linear' or 'roofline'")
    res = _residual_frame(t, pred, **ident)
    mape = _mape(res["rel_err"].to_numpy())
    problems = judge_fit(spec, mape, free, stack=stack)
    return CalibrationResult(spec, mape, res, "step_s", problems=problems, stack=stack, notes=notes)


# ---------------------------------------------------------------------------------------------
# per-request serving benchmarks


@dataclass(frozen=True)
class RequestBench:
    """A serving benchmark's requests: lengths, measured latencies and the load."""

    input_tokens: np.ndarray
    output_tokens: np.ndarray
    ttft_s: np.ndarray
    e2e_s: np.ndarray
    tpot_s: np.ndarray
    arrival_s: np.ndarray | None = None
    request_rate: float | None = None
    concurrency: int | None = None


def _first(data: Mapping[str, Any], names: Sequence[str]) -> Any:
    for n in names:
        if n in data and data[n] is not None:
            return data[n]
    return None


def read_request_bench(path: str | Path) -> RequestBench:
    """Read a vLLM ``benchmark_serving``-style JSON or a per-request CSV.

    Raises
    ------
    ValueError
        Naming the file and the missing or malformed key / column.
    """
    path = Path(path)
    src = str(path)
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{src}: expected a JSON object")

        def arr(names: Sequence[str], *, required: bool = True) -> np.ndarray | None:
            v = _first(data, names)
            if v is None:
                if required:
                    raise ValueError(f"{src}: missing key {names[0]!r}")
                return None
            try:
                return np.asarray(v, dtype=float)
            except (TypeError, ValueError):
                raise ValueError(f"{src}: key {names[0]!r} must be a list of numbers") from None

        inp = arr(("input_lens", "input_tokens", "prompt_lens"))
        out = arr(("output_lens", "output_tokens"))
        ttft = arr(("ttfts", "ttft", "ttft_s"))
        e2e = arr(("e2els", "e2e", "latencies", "latency", "e2e_s"), required=False)
        tpot = arr(("tpots", "tpot"), required=False)
        itls = _first(data, ("itls", "itl"))
        assert inp is not None and out is not None and ttft is not None
        if tpot is None and itls is not None:
            tpot = np.array([float(np.mean(x)) if len(x) else np.nan for x in itls])
        if e2e is None:
            if itls is not None:
                e2e = ttft + np.array([float(np.sum(x)) for x in itls])
            elif tpot is not None:
                e2e = ttft + tpot * np.maximum(out - 1, 0)
            else:
                raise ValueError(f"{src}: missing key 'e2els' (or 'itls' / 'tpots')")
        rate = _first(data, ("request_rate",))
        conc = _first(data, ("max_concurrency", "concurrency"))
        arrival = arr(("arrival_s", "arrival_times"), required=False)
    else:
        frame = pd.read_csv(path)
        _require(frame, ("input_tokens", "output_tokens", "ttft_s", "e2e_s"), src)
        inp = frame["input_tokens"].to_numpy(float)
        out = frame["output_tokens"].to_numpy(float)
        ttft = frame["ttft_s"].to_numpy(float)
        e2e = frame["e2e_s"].to_numpy(float)
        tpot = None
        arrival = frame["arrival_s"].to_numpy(float) if "arrival_s" in frame.columns else None
        rate = frame.attrs.get("request_rate")
        conc = None
    n = inp.size
    for name, a in (("output_lens", out), ("ttfts", ttft), ("e2els", e2e)):
        if a.size != n:
            raise ValueError(f"{src}: {name!r} has {a.size} entries, input_lens {n}")
    if n == 0:
        raise ValueError(f"{src}: no requests")
    if tpot is None or tpot.size != n:
        with np.errstate(divide="ignore", invalid="ignore"):
            tpot = np.where(out > 1, (e2e - ttft) / (out - 1), np.nan)
    rate_f = None if rate is None else float(rate)
    conc_i = None if conc is None else int(conc)
    return RequestBench(
        input_tokens=inp.astype(np.int64),
        output_tokens=np.maximum(out, 1).astype(np.int64),
        ttft_s=ttft,
        e2e_s=e2e,
        tpot_s=tpot,
        arrival_s=arrival,
        request_rate=rate_f,
        concurrency=conc_i,
    )


def _replay(
    bench: RequestBench,
    fleet: FleetSpec,
    step: StepSpec,
    stack: Mapping[str, float],
    seed: int,
) -> pd.DataFrame:

    n = bench.input_tokens.size
    engine = fleet.engine
    if bench.arrival_s is not None:
        arrival = np.asarray(bench.arrival_s, dtype=float)
    elif bench.request_rate is not None and math.isfinite(bench.request_rate):
        gaps = np.random.default_rng(seed).exponential(1.0 / bench.request_rate, n)
        arrival = np.cumsum(gaps) - gaps[0]
    else:
        # all at once; a client concurrency limit acts as the engine's sequence limit, and
        # the time a request waits for a free client slot is not part of its latency
        arrival = np.zeros(n)
        if bench.concurrency is not None:
            engine = engine.model_copy(
                update={"max_num_seqs": min(engine.max_num_seqs, bench.concurrency)}
            )
    order = np.argsort(arrival, kind="stable")
    f = fleet.model_copy(update={"replicas": 1, "step_time": step, "engine": engine})
    # re-validated as its own class: a scenario's fleet carries fields (pricing) FleetSpec lacks
    f = type(fleet).model_validate(f.model_dump())
    wl = Workload(
        arrival_s=arrival[order],
        input_tokens=bench.input_tokens[order],
        output_tokens=bench.output_tokens[order],
        class_id=np.zeros(n, dtype=np.int32),
        class_names=("bench",),
        closed_loop=(),
    )
    hz = Horizon(
        duration_s=float(arrival.max()) + 1.0, warmup_s=0.0, drain_s=1e7, sample_interval_s=1e7
    )
    replica = build_replica(f)
    if isinstance(step, RooflineStep):
        _with_stack(replica, step, stack)
    fr = serve(f, replica, wl, hz, router_rng=np.random.default_rng(seed)).requests()
    # back to the input order (requests_frame sorts by arrival, stably)
    back = np.empty(n, dtype=np.int64)
    back[order] = np.arange(n)
    fr = fr.iloc[back].reset_index(drop=True)
    if bench.arrival_s is None and bench.request_rate is None and bench.concurrency is not None:
        fr["ttft_s"] = fr["ttft_s"] - fr["queue_s"]
        fr["e2e_s"] = fr["e2e_s"] - fr["queue_s"]
    return fr


def fit_from_requests(
    bench: RequestBench | str | Path,
    *,
    fleet: FleetSpec,
    model: Literal["linear", "roofline"] = "roofline",
    seed: int = 0,
) -> CalibrationResult:
    """Fit the step-time model by replaying a serving benchmark through the simulator.

    Each request is replayed on one replica of ``fleet`` (arrivals as recorded, else Poisson
    at ``request_rate``, else all at once under the client's ``max_concurrency``); the model's
    constants minimise the squared log errors of every request's E2E latency and per-token
    latency. ``mape`` is the per-request E2E MAPE; ``extra`` adds per-token and TTFT MAPE.
    """
    if not isinstance(bench, RequestBench):
        bench = read_request_bench(bench)
    ok = np.isfinite(bench.e2e_s) & (bench.e2e_s > 0)
    tp_ok = np.isfinite(bench.tpot_s) & (bench.tpot_s > 0)

    def spec_of(params: Mapping[str, float]) -> tuple[StepSpec, dict[str, float]]:
        if model == "linear":
            return LinearStep(model="linear", **params), {}
        return _split_params(params, _profile_of(fleet))

    def residuals(params: Mapping[str, float]) -> np.ndarray:
        fr = _replay(bench, fleet, *spec_of(params), seed)
        e2e = fr["e2e_s"].to_numpy(float)
        tpot = fr["tpot_s"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.concatenate(
                [np.log(e2e[ok] / bench.e2e_s[ok]), np.log(tpot[tp_ok] / bench.tpot_s[tp_ok])]
            )

    # a replay is a discrete-event simulation: finite differences over 3 % steps
    notes: tuple[str, ...] = ()
    if model == "roofline":
        fit, notes = _fit_roofline(
            residuals,
            fleet,
            diff_step=0.03,
            evidence="the batch size hardly varies; a benchmark at two or more request "
            "rates or concurrencies determines it",
        )
        best, free = fit.params, fit.free
    elif model == "linear":
        med = float(np.nanmedian(bench.tpot_s))
        start = {"c0_s": med, "c_decode_s": 1e-5, "c_prefill_token_s": 1e-5, "c_kv_token_s": 1e-8}
        best = fit_constants(residuals, LINEAR_KEYS, [start], diff_step=0.03).params
        free = LINEAR_KEYS
    else:
        raise ValueError(f"unknown model {model!r}: expected 'linear' or 'roofline'")
    spec, stack = spec_of(best)
    fr = _replay(bench, fleet, spec, stack, seed)
    res = _residual_frame(
        bench.e2e_s,
        fr["e2e_s"].to_numpy(float),
        input_tokens=bench.input_tokens,
        output_tokens=bench.output_tokens,
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        tpot_err = fr["tpot_s"].to_numpy(float)[tp_ok] / bench.tpot_s[tp_ok] - 1.0
        ttft_err = fr["ttft_s"].to_numpy(float) / bench.ttft_s - 1.0
    extra = {"tpot_mape": _mape(tpot_err), "ttft_mape": _mape(ttft_err)}
    mape = _mape(res["rel_err"].to_numpy()[ok])
    problems = judge_fit(spec, mape, free, what="e2e_s", stack=stack)
    return CalibrationResult(spec, mape, res, "e2e_s", extra, problems, stack, notes)
