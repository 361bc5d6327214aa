"""Degenerate fleets against queueing theory, with tolerances from the standard error.

With a ``constant`` step time and one-token prompts, a request occupies its sequence slot for
exactly ``N`` iterations (one prefill that yields the first token, then ``N − 1`` decodes),
``N`` being its output length. Geometric ``N`` with mean ``m`` gives service times
``step_s · N`` with SCV ``1 − 1/m`` — exponential in the limit — and fixed ``N`` gives
deterministic service. Each test runs independent replications (fixed seed) and compares the
replication mean to the oracle within ``Z`` standard errors of that mean.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sim import Scenario, analytic, run

Z = 4.0  # |estimate - theory| < Z * SE: a false alarm about once in 16,000 runs


def _scenario(
    *,
    rate_rps: float,
    mean_steps: int,
    step_s: float,
    output: str = "geometric",
    replicas: int = 1,
    max_num_seqs: int = 1,
    router: str = "round_robin",
    duration_s: float = 20_000.0,
    warmup_s: float = 1_000.0,
    sample_interval_s: float = 60.0,
) -> Scenario:
    out: dict[str, Any] = (
        {"dist": "geometric", "mean": mean_steps}
        if output == "geometric"
        else {"dist": "fixed", "value": mean_steps}
    )
    return Scenario.model_validate(
        {
            "name": "queue",
            "horizon": {
                "duration_s": duration_s,
                "warmup_s": warmup_s,
                "sample_interval_s": sample_interval_s,
            },
            "workload": {
                "classes": [
                    {
                        "name": "q",
                        "arrivals": {"process": "poisson", "rate_rps": rate_rps},
                        "prompt_tokens": {"dist": "fixed", "value": 1},
                        "output_tokens": out,
                    }
                ]
            },
            "fleet": {
                "model": "llama-3.1-8b",
                "gpu": "h100-sxm",
                "replicas": replicas,
                "router": router,
                "engine": {"max_num_seqs": max_num_seqs, "frontend_latency_s": 0.0},
                "step_time": {"model": "constant", "step_s": step_s},
            },
        }
    )


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))


def _check(values: np.ndarray, theory: float, label: str) -> None:
    mean, se = _mean_se(values)
    assert abs(mean - theory) < Z * se, f"{label}: {mean:.4f} ± {se:.4f} vs theory {theory:.4f}"


def test_mm1_wait_sojourn_and_utilisation() -> None:
    # mean service 1 s = 1000 steps of 1 ms; SCV 0.999, so M/M/1 and the exact M/G/1 agree
    # to 0.05 %, far inside the standard error.
    lam, m, step = 0.7, 1000, 1e-3
    res = run(_scenario(rate_rps=lam, mean_steps=m, step_s=step), replications=12, seed=11)
    th = analytic.mm1(lam, 1.0 / (m * step))
    reps = res.replications
    _check(reps["queue_mean_s"].to_numpy(), th.mean_wait, "Wq")
    _check(reps["e2e_mean_s"].to_numpy(), th.mean_sojourn, "W")
    _check(reps["gpu_busy_fraction"].to_numpy(), th.utilisation, "rho")


def test_md1_pollaczek_khinchine() -> None:
    lam, m, step = 0.8, 50, 0.02  # deterministic 1 s service
    res = run(
        _scenario(rate_rps=lam, mean_steps=m, step_s=step, output="fixed"),
        replications=12,
        seed=12,
    )
    th = analytic.md1(lam, m * step)
    _check(res.replications["queue_mean_s"].to_numpy(), th.mean_wait, "Wq (M/D/1)")
    # and it is clearly not M/M/1: half the wait
    assert res.summary().set_index("metric").loc["queue_mean_s", "ci_high"] < (
        analytic.mm1(lam, 1.0 / (m * step)).mean_wait
    )


def test_mg1_geometric_short_outputs_exact_scv() -> None:
    # mean 4 steps: SCV 0.75, visibly not exponential; P-K with that SCV is the exact oracle.
    lam, m, step = 0.18, 4, 1.0
    res = run(_scenario(rate_rps=lam, mean_steps=m, step_s=step), replications=12, seed=13)
    th = analytic.mg1(lam, m * step, analytic.geometric_service_scv(m))
    _check(res.replications["queue_mean_s"].to_numpy(), th.mean_wait, "Wq (M/G/1)")


@pytest.mark.parametrize("servers", [2, 4])
def test_mmk_erlang_c_with_central_queue(servers: int) -> None:
    # k replicas of one sequence slot behind one shared FCFS queue: exactly M/G/k with
    # near-exponential service (no step-boundary effects: an idle replica starts at once).
    lam, m, step = 0.8 * servers, 1000, 1e-3
    res = run(
        _scenario(rate_rps=lam, mean_steps=m, step_s=step, replicas=servers, router="central"),
        replications=12,
        seed=20 + servers,
    )
    th = analytic.mmk(lam, 1.0 / (m * step), servers)
    _check(res.replications["queue_mean_s"].to_numpy(), th.mean_wait, f"Wq (M/M/{servers})")
    _check(res.replications["e2e_mean_s"].to_numpy(), th.mean_sojourn, f"W (M/M/{servers})")


def test_mmk_batching_slots_in_one_replica() -> None:
    # One replica with k sequence slots is M/M/k up to the step boundary: a request that
    # finds a free slot while others run waits for the next iteration (≤ step_s). With
    # step_s = 1e-3 × mean service that bias (≤ 0.001 s) is far below the SE (~0.01 s).
    k, lam, m, step = 4, 3.2, 1000, 1e-3
    res = run(
        _scenario(rate_rps=lam, mean_steps=m, step_s=step, max_num_seqs=k),
        replications=12,
        seed=31,
    )
    th = analytic.mmk(lam, 1.0 / (m * step), k)
    _check(res.replications["queue_mean_s"].to_numpy() - step / 2, th.mean_wait, "Wq")
    # mean running batch = mean busy servers while busy; E[busy servers] = λ/μ = 3.2
    busy_servers = (
        res.replications["batch_size_mean"] * res.replications["gpu_busy_fraction"]
    ).to_numpy()
    _check(busy_servers, lam * m * step, "mean busy slots")


def test_littles_law_state_samples_vs_request_records() -> None:
    # L from the engine's sampled state (queued + running, every second) against λ·W from
    # the per-request timestamps: two independent measurements of the same quantity.
    lam, m, step = 2.4, 1000, 1e-3
    scenario = _scenario(
        rate_rps=lam,
        mean_steps=m,
        step_s=step,
        max_num_seqs=3,
        duration_s=6000.0,
        warmup_s=500.0,
        sample_interval_s=1.0,
    )
    from sim import simulate

    diffs = []
    for i in range(8):
        out = simulate(scenario, seed=np.random.SeedSequence(99).spawn(8)[i])
        ts = out.timeseries
        ts = ts[(ts["t_s"] >= 500.0) & (ts["t_s"] < 6000.0)]
        l_state = float((ts["queued"] + ts["running"]).mean())
        l_little = out.metrics["offered_rps"] * out.metrics["e2e_mean_s"]
        diffs.append(l_state - l_little)
    _check(np.array(diffs), 0.0, "L(state) - lambda*W")
