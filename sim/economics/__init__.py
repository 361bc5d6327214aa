"""Money: the scenario's pricing, hidden-cost, API and routing sections, and cost accounting.

:mod:`sim.economics.spec` holds the validated scenario sections; :mod:`sim.economics.gpu_bill`
bills the fleet's GPUs, :mod:`sim.economics.apis` the hosted APIs,
:mod:`sim.economics.prompt_cache` replays an API's prompt cache from prompt identities, and
:mod:`sim.economics.cost` turns a replication's raw records into the cost metrics of the
README glossary.
"""

from sim.economics.apis import MAIN_API, ApiProviders, api_providers
from sim.economics.cost import (
    HOURS_PER_YEAR,
    CacheTokens,
    FleetBill,
    ResolvedPricing,
    api_bill,
    api_cache_tokens,
    cost_metrics,
    fleet_bill,
    hidden_costs,
    idle_fleet_usd,
    peak_replicas,
    provisioned_fee,
    reserved_fleet_bill,
    resolve_api_prices,
    resolve_gpu_hourly,
)
from sim.economics.prompt_cache import (
    CacheReplay,
    CacheRule,
    replay_prompt_cache,
    resolve_cache_rule,
)
from sim.economics.spec import (
    HOURS_PER_MONTH,
    ApiLatencySpec,
    ApiSpec,
    CalendarSpec,
    CapacityKind,
    HiddenCostsSpec,
    LatencyDist,
    PricedFleetSpec,
    PricingSpec,
    PromptCacheSpec,
    ProvisionedSpec,
    RateLimitSpec,
)

__all__ = [
    "HOURS_PER_MONTH",
    "HOURS_PER_YEAR",
    "MAIN_API",
    "ApiLatencySpec",
    "ApiProviders",
    "ApiSpec",
    "CacheReplay",
    "CacheRule",
    "CacheTokens",
    "CalendarSpec",
    "CapacityKind",
    "FleetBill",
    "HiddenCostsSpec",
    "LatencyDist",
    "PricedFleetSpec",
    "PricingSpec",
    "PromptCacheSpec",
    "ProvisionedSpec",
    "RateLimitSpec",
    "ResolvedPricing",
    "api_bill",
    "api_cache_tokens",
    "api_providers",
    "cost_metrics",
    "fleet_bill",
    "hidden_costs",
    "idle_fleet_usd",
    "peak_replicas",
    "provisioned_fee",
    "replay_prompt_cache",
    "reserved_fleet_bill",
    "resolve_api_prices",
    "resolve_cache_rule",
    "resolve_gpu_hourly",
]
