"""Scenario sections for money and routing: GPU pricing, hidden costs, the hosted API, and the
policy that decides, per request, fleet or API."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from sim._base import Frozen
from sim.engine.spec import FleetSpec

CapacityKind = Literal["on_demand", "reserved", "spot", "owned"]

HOURS_PER_MONTH = 730.0  # 8760 / 12: the month every "per month" figure uses
DAYS_PER_MONTH = HOURS_PER_MONTH / 24.0  # 30.42 days


class PricingSpec(Frozen):
    """What one GPU of the fleet costs (``fleet.pricing``).

    ``on_demand``, ``reserved`` and ``spot`` are billed per GPU-hour; ``reserved`` capacity is
    paid around the clock whether busy or not; ``owned`` hardware costs its purchase price
    spread over its life plus power (watts × PUE × price of energy) and hosting. When omitted,
    the price catalogue's default on-demand price for the GPU is used.
    """

    kind: CapacityKind = "on_demand"
    usd_per_gpu_hour: float | None = Field(
        None, ge=0, description="Hourly price per GPU (on_demand, reserved, spot)."
    )
    billing_increment_s: float = Field(
        1.0, gt=0, description="Billing granularity: 1 per second, 60 per minute, 3600 per hour."
    )
    min_billable_s: float = Field(0.0, ge=0, description="Minimum billed time per replica.")
    capex_usd_per_gpu: float | None = Field(None, ge=0, description="Owned: purchase price.")
    life_years: float = Field(4.0, gt=0, description="Owned: straight-line depreciation life.")
    power_w_per_gpu: float | None = Field(
        None, ge=0, description="Owned: average draw; default the GPU's TDP."
    )
    pue: float = Field(1.3, ge=1.0, description="Owned: data-centre power usage effectiveness.")
    usd_per_kwh: float = Field(0.10, ge=0)
    hosting_usd_per_gpu_month: float = Field(0.0, ge=0, description="Owned: rack space, network.")
    reserved_replicas: int | None = Field(
        None,
        ge=0,
        description="Reserved, on a fleet that changes size: replicas covered by the "
        "reservation (paid for the whole window); default: the most replicas alive at once.",
    )
    overflow_kind: Literal["on_demand", "spot"] = Field(
        "on_demand", description="Reserved: how replicas above the reservation are billed."
    )
    overflow_usd_per_gpu_hour: float | None = Field(
        None, ge=0, description="Reserved: price of replicas above the reservation."
    )
    price_source: str = ""
    price_date: str = ""

    @model_validator(mode="after")
    def _needs_a_price(self) -> PricingSpec:
        if self.kind == "owned" and self.capex_usd_per_gpu is None:
            raise ValueError("capex_usd_per_gpu is required for owned capacity")
        return self


class SetupSpec(Frozen):
    """One-off costs of standing up a self-hosted fleet, and the time until it serves
    (``costs.setup``). The API is paid meanwhile; the payback period of a self-hosted option
    counts from the decision, so ``months_to_live`` delays it."""

    engineering_weeks: float = Field(0.0, ge=0, description="Engineer-weeks to build it.")
    usd_per_engineering_week: float | None = Field(
        None, ge=0, description="Loaded cost of an engineer-week; default fte_usd_per_year / 52."
    )
    evaluation_usd: float = Field(
        0.0, ge=0, description="Evaluating the open model against the task's bar."
    )
    migration_usd: float = Field(0.0, ge=0, description="Moving traffic, integration, testing.")
    other_usd: float = Field(0.0, ge=0)
    months_to_live: float = Field(
        0.0, ge=0, description="Months from the decision until the fleet serves traffic."
    )


class HiddenCostsSpec(Frozen):
    """Costs of running a fleet that are not GPU time (``costs:``), prorated to the horizon;
    ``setup`` holds the one-off costs of building it."""

    ops_fte: float = Field(0.0, ge=0, description="Engineers on operations and on-call.")
    fte_usd_per_year: float = Field(200_000.0, ge=0, description="Loaded cost of one FTE.")
    monitoring_usd_per_month: float = Field(0.0, ge=0)
    model_updates_per_year: float = Field(0.0, ge=0)
    usd_per_model_update: float = Field(
        0.0, ge=0, description="Re-deploy and re-evaluate one model version."
    )
    storage_egress_usd_per_month: float = Field(0.0, ge=0)
    setup: SetupSpec = Field(default_factory=SetupSpec)

    def setup_usd(self) -> float:
        """The one-off cost: engineering weeks at their price, evaluation, migration, other.

        Examples
        --------
        >>> HiddenCostsSpec(fte_usd_per_year=208000,
        ...                 setup={"engineering_weeks": 6, "evaluation_usd": 5000}).setup_usd()
        29000.0
        """
        s = self.setup
        week = (
            self.fte_usd_per_year / 52
            if s.usd_per_engineering_week is None
            else (s.usd_per_engineering_week)
        )
        return s.engineering_weeks * week + s.evaluation_usd + s.migration_usd + s.other_usd


class CalendarSpec(Frozen):
    """What the simulated window stands for (``calendar:``), so monthly figures are honest.

    The window is the traffic of ``active_hours_per_day`` hours on each of
    ``active_days_per_month`` days; the rest of the month carries no traffic. Per-token
    and per-busy-hour costs scale with the active time only; capacity paid around the
    clock (reservations, owned GPUs, a fixed fleet left running, the replicas an autoscaler
    keeps at its minimum, provisioned API throughput) and monthly staff costs are billed for
    the whole month (730 hours). The default — 24 hours on every day — is a window that
    stands for all time, as a 24-hour day of traffic does.
    """

    active_hours_per_day: float = Field(
        24.0, gt=0, le=24, description="Hours of each active day the window stands for."
    )
    active_days_per_month: float = Field(
        DAYS_PER_MONTH, gt=0, le=DAYS_PER_MONTH, description="Active days in a month."
    )
    idle_replicas: int | None = Field(
        None,
        ge=0,
        description="Replicas kept running outside the active time; default: a fixed fleet "
        "keeps all its replicas, an autoscaled one its min_replicas.",
    )

    @property
    def active_hours_per_month(self) -> float:
        """Hours a month the window's traffic stands for (730 with the defaults)."""
        return self.active_hours_per_day * self.active_days_per_month

    @property
    def continuous(self) -> bool:
        """The window stands for all time: no idle part of the month."""
        return self.active_hours_per_month >= HOURS_PER_MONTH * (1 - 1e-12)


class LatencyDist(Frozen):
    """A positive quantity drawn from a lognormal given its median and 90th percentile."""

    median: float = Field(gt=0)
    p90: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> LatencyDist:
        if self.p90 < self.median:
            raise ValueError("p90 must be at least the median")
        return self


class ApiLatencySpec(Frozen):
    """Latency of the hosted API: time to first token and output token rate per request."""

    ttft_s: LatencyDist = LatencyDist(median=0.5, p90=1.2)
    output_tokens_per_s: LatencyDist = LatencyDist(median=80.0, p90=140.0)


class RateLimitSpec(Frozen):
    """Provider rate limits and the client's retry policy.

    Limits are token buckets refilled continuously (the limit per minute is the bucket size).
    A call over a limit gets HTTP 429; the client waits
    ``min(backoff_max_s, backoff_initial_s · 2^attempt)`` (times a uniform draw in [0, 1) with
    ``jitter``) and retries, giving up after ``max_retries`` retries (status ``failed``, reason
    ``rate_limited``).
    """

    requests_per_min: float | None = Field(None, gt=0)
    tokens_per_min: float | None = Field(None, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    jitter: bool = True


class ProvisionedSpec(Frozen):
    """Provisioned throughput: a fixed hourly fee for a token-rate cap.

    Traffic above the cap is billed pay-as-you-go (``overflow: payg``) or waits for capacity
    (``overflow: queue``).
    """

    usd_per_hour: float = Field(ge=0)
    tokens_per_s: float = Field(gt=0)
    overflow: Literal["payg", "queue"] = "payg"


class PromptCacheSpec(Frozen):
    """The API provider's prompt-caching rule (``api.prompt_cache``), each field overriding
    the price catalogue's (see :mod:`sim.economics.prompt_cache` for what the rule means).

    Used only when the workload carries prompt identities (a trace with block hashes, or
    ``sessions`` classes); otherwise a class's ``api_cached_input_fraction`` stands in.
    """

    mode: Literal["automatic", "explicit", "none"] | None = Field(
        None, description="automatic (OpenAI-style), explicit (Anthropic-style) or none."
    )
    min_tokens: int | None = Field(
        None, ge=1, description="Shortest prompt (automatic) or prefix (explicit) cached."
    )
    increment_tokens: int | None = Field(
        None, ge=1, description="automatic: cached tokens counted in multiples of this."
    )
    ttl_s: float | None = Field(
        None, gt=0, description="An entry lives this long after its last use."
    )
    usd_per_1m_cache_write: float | None = Field(
        None,
        ge=0,
        description="Price of writing a cache entry; default the catalogue's (explicit with "
        "ttl_s above 300: 2 x input), else the input price.",
    )
    max_breakpoints: int = Field(
        4, ge=1, description="explicit: cache breakpoints the client sets per request."
    )

    @model_validator(mode="after")
    def _consistent(self) -> PromptCacheSpec:
        if self.increment_tokens is not None and self.mode == "explicit":
            raise ValueError("increment_tokens applies to automatic caching only")
        if self.mode == "none" and (
            self.min_tokens is not None
            or self.ttl_s is not None
            or self.usd_per_1m_cache_write is not None
        ):
            raise ValueError("mode none caches nothing: give no min_tokens, ttl_s or write price")
        return self


class ApiSpec(Frozen):
    """The hosted pay-per-token API the fleet is compared with (``api:``)."""

    model: str | None = Field(
        None, description="Price catalogue key, e.g. 'openai/gpt-4o-mini'; prices below override."
    )
    usd_per_1m_input: float | None = Field(None, ge=0)
    usd_per_1m_output: float | None = Field(None, ge=0)
    usd_per_1m_cached_input: float | None = Field(None, ge=0)
    batch_discount: float = Field(
        0.0, ge=0, lt=1, description="Discount for classes sent through the batch API."
    )
    price_source: str = ""
    price_date: str = ""
    provisioned: ProvisionedSpec | None = None
    prompt_cache: PromptCacheSpec | None = Field(
        None, description="The provider's prompt-caching rule; default the catalogue's."
    )
    rate_limits: RateLimitSpec = Field(default_factory=RateLimitSpec)
    latency: ApiLatencySpec = Field(default_factory=ApiLatencySpec)

    @model_validator(mode="after")
    def _priced(self) -> ApiSpec:
        if self.model is None and (self.usd_per_1m_input is None or self.usd_per_1m_output is None):
            raise ValueError(
                "give a price catalogue 'model' or both usd_per_1m_input and usd_per_1m_output"
            )
        return self


class PricedFleetSpec(FleetSpec):
    """The scenario's ``fleet:`` section: the engine's fleet plus what a GPU of it costs."""

    pricing: PricingSpec | None = Field(
        None, description="What a GPU costs; default: the price catalogue's on-demand quote."
    )


PoolPolicy = Literal["first_with_room", "overflow", "cheapest", "least_loaded"]


class PoolSpec(PricedFleetSpec):
    """One named pool of a fleet of several (``fleet.pools``): its own model, GPU, engine,
    router, autoscaler, spot and failure settings and pricing."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")


class PoolRoomSpec(Frozen):
    """When a pool counts as having room for one more request (``fleet.room``).

    Without thresholds, a pool has room when one of its ready replicas has a sequence slot
    that no running or waiting request holds (under ``central``: the pool as a whole). With
    them, when its ready replicas hold, on average, fewer waiting requests than
    ``max_queue_per_replica`` and fewer outstanding tokens than
    ``max_outstanding_tokens_per_replica`` (each threshold left unset is not checked). An
    autoscaled pool that may still start replicas always has room: its autoscaler sizes it
    to what it is sent.
    """

    max_queue_per_replica: float | None = Field(None, ge=0)
    max_outstanding_tokens_per_replica: float | None = Field(None, ge=0)


class PooledFleetSpec(Frozen):
    """A fleet of several named pools (``fleet.pools``) and how a request picks one.

    Each workload class may name the pools that serve it (``pools:``; default: every pool).
    A request of a class with several goes, at its arrival, to

    * ``first_with_room``: the first of the class's pools, in the class's order, that has
      room (:class:`PoolRoomSpec`);
    * ``overflow``: the same, in the fleet-wide ``order`` (e.g. reserved capacity first,
      spot after);
    * ``cheapest``: the same, by marginal cost: first the pools paid for whatever they
      serve (no autoscaler: reserved, owned, or a fixed on-demand or spot fleet), then the
      autoscaled ones, which pay for the replicas a request makes them start; within each
      group, the cheapest GPU price per token first (the hourly price of a replica over the
      tokens per second it can serve, estimated from the step-time model);
    * ``least_loaded``: the pool whose ready replicas hold the fewest outstanding tokens
      for the size of their KV cache.

    When none of its pools has room, the request goes to the least loaded of them. The
    pool's router then picks the replica, and the scenario's ``routing`` (spillover, private
    classes) applies there as in a fleet of one pool.
    """

    pools: tuple[PoolSpec, ...] = Field(min_length=1)
    policy: PoolPolicy = "first_with_room"
    order: tuple[str, ...] = Field(
        (), description="overflow: the pools in the order requests try them; default: as listed"
    )
    room: PoolRoomSpec = Field(default_factory=PoolRoomSpec)

    @model_validator(mode="after")
    def _names(self) -> PooledFleetSpec:
        seen: set[str] = set()
        for i, pool in enumerate(self.pools):
            if pool.name in seen:
                raise _pool_error(("pools", i, "name"), f"two pools are named {pool.name!r}")
            seen.add(pool.name)
        for i, name in enumerate(self.order):
            if name not in seen:
                raise _pool_error(
                    ("order", i), f"no pool named {name!r} (pools: {', '.join(seen)})"
                )
        if len(set(self.order)) != len(self.order):
            raise _pool_error(("order",), "a pool is listed twice")
        return self

    def pool(self, name: str) -> PoolSpec:
        """The pool named ``name``."""
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise KeyError(f"no pool named {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        """Pool names, as listed."""
        return tuple(p.name for p in self.pools)


def _pool_error(loc: tuple[str | int, ...], msg: str) -> ValidationError:
    return ValidationError.from_exception_data(
        "PooledFleetSpec",
        [
            InitErrorDetails(
                type=PydanticCustomError("pools", "{reason}", {"reason": msg}), loc=loc, input=None
            )
        ],
    )
