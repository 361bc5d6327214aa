"""Least-squares fits of the step-time model's constants: one fitter, one parameter table.

Both places that fit a step-time model use this module: ``crossover calibrate``
(:mod:`sim.engine.calibrate`, a user's own measurements) and ``benchmarks/validate_model.py --fit``
(the fits behind ``sim/catalog/profiles.yaml``). What each fits to — per-iteration timings,
replayed requests, published throughput — is the caller's residual function; how the
constants are searched is here.

* :data:`PARAMS` — for every roofline and linear constant, the unit it is fitted in and two
  ranges: ``wide`` (what ``crossover calibrate`` allows: a user's stack may lie outside the
  shipped profiles' range) and ``physical`` (the tighter, physically motivated range the
  shipped profiles were fitted in; see ``benchmarks/validation.md``, section 4).
* :func:`fit_constants` — bounded nonlinear least squares over some constants, the others
  held fixed, from one or more starting points.
* :func:`fit_linear_relative` — the linear model by non-negative least squares on relative
  errors (exact on data the model generated).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np
from scipy import optimize

from sim.catalog.profiles import PROFILE_FIELDS, ROOFLINE_FIELDS

__all__ = [
    "LINEAR_KEYS",
    "PARAMS",
    "PROFILE_KEYS",
    "ROOFLINE_KEYS",
    "BoundsKind",
    "ParamRange",
    "Residuals",
    "StepFit",
    "fit_constants",
    "fit_linear_relative",
]

ROOFLINE_KEYS: tuple[str, ...] = ROOFLINE_FIELDS
# What a profile carries: the roofline's fields and the stack's CPU time per decoding sequence
# (``seq_cpu_s``) and fixed time per layer (``layer_s``), set by a profile only, not by a
# scenario's ``step_time:`` block.
PROFILE_KEYS: tuple[str, ...] = PROFILE_FIELDS
LINEAR_KEYS = ("c0_s", "c_decode_s", "c_prefill_token_s", "c_kv_token_s")

BoundsKind = Literal["wide", "physical"]
Residuals = Callable[[dict[str, float]], np.ndarray]
"""Residuals (e.g. log(predicted / measured)) of a set of constants, one per sample."""


@dataclass(frozen=True)
class ParamRange:
    """How one constant is fitted.

    Attributes
    ----------
    scale
        The unit the optimiser works in (parameter / scale is of order one, so that the
        trust region and the relative finite-difference step treat every constant alike).
    wide
        ``(low, high)`` allowed by ``crossover calibrate``.
    physical
        ``(low, high)`` the shipped profiles were fitted in (``benchmarks/validate_model.py``).
    """

    scale: float
    wide: tuple[float, float]
    physical: tuple[float, float]

    def limits(self, kind: BoundsKind) -> tuple[float, float]:
        """The ``wide`` or ``physical`` range."""
        if kind == "wide":
            return self.wide
        if kind == "physical":
            return self.physical
        raise ValueError(f"unknown bounds {kind!r}: expected 'wide' or 'physical'")


def _linear(scale: float) -> ParamRange:
    # The linear model has no physical prior: non-negative (as LinearStep requires), up to
    # 1000 times the coefficient's typical size (the scale).
    return ParamRange(scale, (0.0, 1e3 * scale), (0.0, 1e3 * scale))


PARAMS: Mapping[str, ParamRange] = MappingProxyType(
    {
        # Efficiencies are shares of the dense tensor-core peak / the HBM bandwidth, so at most
        # 1 (RooflineStep: 0 < x <= 1); wide keeps 5 % as a floor so the roofline stays
        # finite. Physical: a dense GEMM rarely sustains > 90 % of the tensor-core peak or
        # < 20 %; streaming reaches 40-95 % of HBM bandwidth.
        "compute_efficiency": ParamRange(1.0, (0.05, 1.0), (0.2, 0.9)),
        "bandwidth_efficiency": ParamRange(1.0, (0.05, 1.0), (0.4, 0.95)),
        # Fixed cost per iteration, in ms. Physical: 0-50 ms (the slowest measured stack,
        # Splitwise's 2023 A100 profile, pays tens of ms); wide allows twice that.
        "overhead_s": ParamRange(1e-3, (0.0, 0.1), (0.0, 0.05)),
        # One tensor-parallel all-reduce, in µs. Physical: 0-100 µs (NCCL small-message
        # latency is 5-30 µs); wide allows twice that.
        "allreduce_latency_s": ParamRange(1e-6, (0.0, 2e-4), (0.0, 1e-4)),
        # One step (hop) of a ring all-reduce, in µs; an all-reduce takes 2(tp-1) of them.
        # Physical: 0-50 µs (one NVLink / PCIe message plus its synchronisation).
        "allreduce_hop_s": ParamRange(1e-6, (0.0, 1e-4), (0.0, 5e-5)),
        # Share of the interconnect's per-direction bandwidth an all-reduce achieves on its
        # bytes, for large messages (NCCL on NVLink: 65-85 % of the link) and for messages
        # up to small_message_mib (a latency-optimised custom kernel at MB sizes: less than
        # half). Physical: 0.2-1.
        "link_efficiency": ParamRange(1.0, (0.02, 1.0), (0.2, 1.0)),
        "small_link_efficiency": ParamRange(1.0, (0.02, 1.0), (0.2, 1.0)),
        # Largest message of the small-message kernel, MiB. Physical: 0-64 MiB (vLLM's
        # custom all-reduce takes up to 8 MiB by default, 64 MiB at most).
        "small_message_mib": ParamRange(1.0, (0.0, 1024.0), (0.0, 64.0)),
        # CPU time per decoding sequence per iteration (scheduler, sampler, detokenisation,
        # streaming), in 10 µs. Physical: 0-1 ms (a current vLLM spends tens of µs per
        # sequence; the 2023 stack of the Splitwise profile, hundreds); wide allows twice that.
        "seq_cpu_s": ParamRange(1e-5, (0.0, 2e-3), (0.0, 1e-3)),
        # Fixed time per transformer layer per iteration (the floor of the layer's dozen
        # kernels: launch, synchronisation, a latency-bound kernel's minimum), in 10 µs.
        # Physical: 0-500 µs (a few µs per kernel with CUDA graphs, tens without); wide
        # allows twice that.
        "layer_s": ParamRange(1e-5, (0.0, 1e-3), (0.0, 5e-4)),
        # Linear coefficients: per iteration (ms), per decoding sequence and per prompt token
        # (10 µs), per KV-cache token read (10 ns).
        "c0_s": _linear(1e-3),
        "c_decode_s": _linear(1e-5),
        "c_prefill_token_s": _linear(1e-5),
        "c_kv_token_s": _linear(1e-8),
    }
)


@dataclass(frozen=True)
class StepFit:
    """A least-squares fit.

    Attributes
    ----------
    params
        The fixed constants and the fitted free ones.
    free
        The names of the fitted constants.
    rms
        Root mean square of the residuals at the fit.
    nfev
        Residual evaluations of the winning start.
    spread
        ``sqrt(diag((JᵀJ)⁻¹))`` per fitted constant (in its own unit), from the Jacobian J of
        the residuals at the fit: how far the constant moves, the others refitted, per unit
        of residual RMS; infinite for a constant the residuals do not determine (a column of
        J that is zero or a combination of the others).
    """

    params: dict[str, float]
    free: tuple[str, ...]
    rms: float
    nfev: int
    spread: Mapping[str, float] = field(default_factory=dict)

    def std_err(self, key: str, *, floor: float = 0.0) -> float:
        """Standard error of constant ``key``: its :attr:`spread` times the residual RMS, or
        times ``floor`` when that is larger (the residuals' noise when a fit is exact).

        Examples
        --------
        >>> StepFit({"overhead_s": 1e-3}, ("overhead_s",), 0.0, 1, {"overhead_s": 0.5}).std_err(
        ...     "overhead_s", floor=0.01)
        0.005
        """
        return self.spread[key] * max(self.rms, floor)


def fit_constants(
    residuals: Residuals,
    free: Sequence[str],
    starts: Sequence[Mapping[str, float]],
    *,
    fixed: Mapping[str, float] | None = None,
    bounds: BoundsKind = "wide",
    diff_step: float = 0.03,
    max_nfev: int = 200,
) -> StepFit:
    """Bounded ``scipy.optimize.least_squares`` (trust-region reflective) over ``free``.

    Each constant is fitted in its :data:`PARAMS` unit within its ``bounds`` range; every
    start is clipped just inside the range and refined, and the start with the lowest
    residual RMS wins. A non-finite residual counts as 10 (a log error of e¹⁰).

    Parameters
    ----------
    residuals
        The residuals of a full set of constants (``fixed`` and the ``free`` ones).
    free
        Names of the constants to fit (keys of :data:`PARAMS`).
    starts
        Starting points; each gives at least the ``free`` constants.
    fixed
        Constants passed to ``residuals`` unchanged.
    bounds
        ``wide`` or ``physical`` (:class:`ParamRange`).
    diff_step
        Relative finite-difference step in the fitted units: 0.03 for replays (a
        discrete-event simulation seen through a tiny step is noise), smaller for smooth
        closed-form predictions.
    max_nfev
        Most residual evaluations per start.

    Examples
    --------
    >>> f = fit_constants(lambda p: np.array([p["overhead_s"] / 0.004 - 1.0]),
    ...                   ["overhead_s"], [{"overhead_s": 0.001}], diff_step=1e-4)
    >>> round(f.params["overhead_s"], 6), f.free
    (0.004, ('overhead_s',))
    """
    fixed = dict(fixed or {})
    scale = np.array([PARAMS[k].scale for k in free])
    lo = np.array([PARAMS[k].limits(bounds)[0] for k in free]) / scale
    hi = np.array([PARAMS[k].limits(bounds)[1] for k in free]) / scale

    def params_of(z: np.ndarray) -> dict[str, float]:
        return {**fixed, **{k: float(v * c) for k, v, c in zip(free, z, scale, strict=True)}}

    def f(z: np.ndarray) -> np.ndarray:
        r = residuals(params_of(z))
        return np.where(np.isfinite(r), r, 10.0)

    best: StepFit | None = None
    for start in starts:
        z0 = np.array([start[k] for k in free]) / scale
        z0 = np.clip(z0, lo + 1e-6 * (hi - lo), hi - 1e-6 * (hi - lo))
        res = optimize.least_squares(
            f,
            z0,
            bounds=(lo, hi),
            diff_step=diff_step,
            x_scale=1.0,
            max_nfev=max_nfev,
            method="trf",
        )
        rms = float(np.sqrt(np.mean(res.fun**2)))
        if best is None or rms < best.rms:
            spread = _spread(res.jac) * scale
            best = StepFit(
                params_of(res.x),
                tuple(free),
                rms,
                int(res.nfev),
                MappingProxyType({k: float(e) for k, e in zip(free, spread, strict=True)}),
            )
    if best is None:
        raise ValueError("fit_constants: no starting point")
    return best


def _spread(jac: np.ndarray) -> np.ndarray:
    # sqrt(diag((JᵀJ)⁻¹)), infinite where JᵀJ is singular in that direction
    jac = np.atleast_2d(np.asarray(jac, dtype=float))
    n = jac.shape[1]
    _, sv, vt = np.linalg.svd(jac, full_matrices=False)
    tiny = sv <= 1e-9 * (sv.max() if sv.size else 0.0)
    out = np.empty(n)
    for j in range(n):
        w = vt[:, j]
        if np.any(tiny & (np.abs(w) > 1e-6)):
            out[j] = np.inf
        else:
            out[j] = float(np.sqrt(np.sum((w[~tiny] / sv[~tiny]) ** 2)))
    return out


def fit_linear_relative(features: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Non-negative ``c`` minimising ``Σ (features @ c / measured − 1)²``.

    Parameters
    ----------
    features
        One row per sample, one column per coefficient (e.g. ``1, decode_seqs,
        prefill_tokens, kv_tokens``).
    measured
        Positive measured values, one per row.

    Examples
    --------
    >>> x = np.array([[1.0, 1.0], [1.0, 2.0], [1.0, 5.0]])
    >>> [round(float(c), 9) for c in fit_linear_relative(x, x @ np.array([0.5, 0.25]))]
    [0.5, 0.25]
    """
    a = features / measured[:, None]
    # columns scaled to a unit maximum: the coefficients differ by orders of magnitude
    col = np.abs(a).max(axis=0)
    col[col == 0] = 1.0
    sol = optimize.lsq_linear(a / col, np.ones_like(measured), bounds=(0.0, np.inf), tol=1e-12)
    return np.maximum(sol.x / col, 0.0)
