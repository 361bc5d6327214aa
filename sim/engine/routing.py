"""Per request, fleet or API: the routing section the engine applies at every arrival.

The policy is decided inside the engine, on the fleet's state at that moment; it lives here,
with the engine, because the engine is what reads it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sim._base import Frozen

__all__ = ["RoutingPolicy", "RoutingSpec", "SpilloverSpec"]

RoutingPolicy = Literal[
    "self_host_only", "api_only", "class_based", "spillover", "cold_start_spill"
]


class SpilloverSpec(Frozen):
    """When the fleet looks overloaded, send non-private requests to the API.

    A request spills when the replica the router picked has at least ``max_queue`` waiting
    requests, or ``max_outstanding_tokens`` of work, or a predicted TTFT above
    ``max_predicted_ttft_s`` (queued prefill tokens at the replica's prefill rate); any
    threshold left unset is not checked.
    """

    max_queue: int | None = Field(None, ge=0)
    max_outstanding_tokens: int | None = Field(None, ge=0)
    max_predicted_ttft_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_threshold(self) -> SpilloverSpec:
        if (
            self.max_queue is None
            and self.max_outstanding_tokens is None
            and self.max_predicted_ttft_s is None
        ):
            raise ValueError(
                "set at least one of max_queue, max_outstanding_tokens, max_predicted_ttft_s"
            )
        return self


class RoutingSpec(Frozen):
    """Per request: self-hosted fleet or API (``routing:``).

    Classes flagged ``private: true`` never leave the fleet under any policy.
    ``class_based`` sends the classes listed in ``api_classes`` to the API;
    ``spillover`` sends to the API when the fleet crosses a threshold; ``cold_start_spill``
    sends to the API while no replica is ready (with a fixed fleet, never).
    """

    policy: RoutingPolicy = "self_host_only"
    api_classes: tuple[str, ...] = ()
    spillover: SpilloverSpec | None = None

    @model_validator(mode="after")
    def _policy_fields(self) -> RoutingSpec:
        if self.policy == "spillover" and self.spillover is None:
            raise ValueError("policy 'spillover' needs a 'spillover' section with a threshold")
        if self.policy == "class_based" and not self.api_classes:
            raise ValueError(
                "policy 'class_based' needs 'api_classes' (the classes sent to the API)"
            )
        return self
