"""Money: the scenario's pricing, hidden-cost, API and routing sections, and cost accounting.

:mod:`sim.economics.spec` holds the validated scenario sections; :mod:`sim.economics.cost`
turns a replication's raw records into bills and the cost metrics of the README glossary.
"""

from sim.economics.cost import (
    HOURS_PER_YEAR,
    FleetBill,
    ResolvedPricing,
    api_bill,
    cost_metrics,
    fleet_bill,
    hidden_costs,
    provisioned_fee,
    resolve_api_prices,
    resolve_gpu_hourly,
)
from sim.economics.spec import (
    HOURS_PER_MONTH,
    ApiLatencySpec,
    ApiSpec,
    CapacityKind,
    HiddenCostsSpec,
    LatencyDist,
    PricingSpec,
    ProvisionedSpec,
    RateLimitSpec,
    RoutingPolicy,
    RoutingSpec,
    SpilloverSpec,
)

__all__ = [
    "HOURS_PER_MONTH",
    "HOURS_PER_YEAR",
    "ApiLatencySpec",
    "ApiSpec",
    "CapacityKind",
    "FleetBill",
    "HiddenCostsSpec",
    "LatencyDist",
    "PricingSpec",
    "ProvisionedSpec",
    "RateLimitSpec",
    "ResolvedPricing",
    "RoutingPolicy",
    "RoutingSpec",
    "SpilloverSpec",
    "api_bill",
    "cost_metrics",
    "fleet_bill",
    "hidden_costs",
    "provisioned_fee",
    "resolve_api_prices",
    "resolve_gpu_hourly",
]
