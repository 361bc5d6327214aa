"""A small priced scenario (one Poisson class, one H100 replica, an API) shared by tests."""

from __future__ import annotations

from typing import Any


def priced_scenario_data(
    *,
    name: str = "priced",
    rate_rps: float = 3.0,
    duration_s: float = 300.0,
    warmup_s: float = 30.0,
    prompt: dict[str, Any] | None = None,
    output: dict[str, Any] | None = None,
    usd_per_gpu_hour: float = 3.29,
    usd_per_1m_input: float = 0.2,
    usd_per_1m_output: float = 0.6,
    **extra: Any,
) -> dict[str, Any]:
    """Scenario fields: one class ``chat``, one ``llama-3.1-8b`` replica on an H100 at
    ``usd_per_gpu_hour``, an API at the given prices; ``extra`` replaces whole sections."""
    data: dict[str, Any] = {
        "name": name,
        "horizon": {"duration_s": duration_s, "warmup_s": warmup_s},
        "workload": {
            "classes": [
                {
                    "name": "chat",
                    "arrivals": {"process": "poisson", "rate_rps": rate_rps},
                    "prompt_tokens": prompt or {"dist": "fixed", "value": 500},
                    "output_tokens": output or {"dist": "geometric", "mean": 100},
                }
            ]
        },
        "fleet": {
            "model": "llama-3.1-8b",
            "gpu": "h100-sxm",
            "replicas": 1,
            "pricing": {"usd_per_gpu_hour": usd_per_gpu_hour},
        },
        "api": {"usd_per_1m_input": usd_per_1m_input, "usd_per_1m_output": usd_per_1m_output},
    }
    data.update(extra)
    return data
