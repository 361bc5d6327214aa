"""A scenario: the validated, immutable description of one question to simulate."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, WrapValidator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from sim._base import Frozen, ScenarioError
from sim.catalog import get_gpu, list_gpus, list_models
from sim.catalog.prices import api_price
from sim.decision_spec import ConstraintsSpec, OptionSpec
from sim.economics.apis import ApiProviders, api_providers
from sim.economics.spec import (
    ApiSpec,
    CalendarSpec,
    HiddenCostsSpec,
    PooledFleetSpec,
    PricedFleetSpec,
)
from sim.engine.replica import build_replica, resolve_model
from sim.engine.routing import RoutingSpec
from sim.engine.spec import Horizon, RooflineStep
from sim.engine.steptime import resolve_roofline
from sim.overrides import apply_overrides
from sim.uncertainty import ParamDistribution, check_uncertain_path
from sim.workload.spec import WorkloadSpec

#: The name of the one pool of a fleet given in the single-pool form.
SINGLE_POOL = "fleet"


def _fleet_section(value: Any, _handler: Any) -> PricedFleetSpec | PooledFleetSpec:
    # a mapping with "pools" is a fleet of several pools, any other the single-pool form;
    # validated as that one model, so that errors name the fleet's own fields
    if isinstance(value, PricedFleetSpec | PooledFleetSpec):
        return value
    if isinstance(value, dict) and "pools" in value:
        return PooledFleetSpec.model_validate(value)
    return PricedFleetSpec.model_validate(value)


FleetSection = Annotated[
    PricedFleetSpec | PooledFleetSpec,
    WrapValidator(_fleet_section),
]


class Scenario(Frozen):
    """Workload + fleet + horizon, validated.

    Build one from a mapping with :meth:`model_validate` or from a YAML file with
    :func:`sim.load_scenario`; derive variants with :meth:`with_overrides`. Validation also
    resolves the fleet: an unknown model or GPU name, or a model whose weights leave no room
    for a KV cache, is an error at ``fleet.model`` / ``fleet.gpu``.

    Examples
    --------
    >>> s = Scenario.model_validate({
    ...     "name": "demo",
    ...     "horizon": {"duration_s": 600},
    ...     "workload": {"classes": [{
    ...         "name": "chat", "arrivals": {"process": "poisson", "rate_rps": 2.0},
    ...         "prompt_tokens": {"dist": "fixed", "value": 500},
    ...         "output_tokens": {"dist": "geometric", "mean": 100}}]},
    ...     "fleet": {"model": "llama-3.1-8b", "gpu": "h100-sxm"},
    ... })
    >>> s.with_overrides({"fleet.replicas": 3}).fleet.replicas
    3
    >>> fast = s.with_overrides({"workload.classes.chat.arrivals.rate_rps": 5.0})
    >>> fast.workload.classes[0].arrivals.rate_rps, s.workload.classes[0].arrivals.rate_rps
    (5.0, 2.0)
    """

    name: str = Field(min_length=1)
    description: str = ""
    horizon: Horizon
    workload: WorkloadSpec
    fleet: FleetSection
    api: ApiSpec | None = None
    apis: dict[str, ApiSpec] = Field(
        default_factory=dict,
        description="further named API providers, chosen per class by its api_model",
    )
    routing: RoutingSpec = Field(default_factory=RoutingSpec)
    costs: HiddenCostsSpec = Field(default_factory=HiddenCostsSpec)
    calendar: CalendarSpec = Field(default_factory=CalendarSpec)
    constraints: ConstraintsSpec = Field(default_factory=ConstraintsSpec)
    options: tuple[Literal["api_only", "self_host_only", "hybrid"] | OptionSpec, ...] | None = (
        Field(
            default=None,
            description="the alternatives compared by the decision; default: api_only, "
            "self_host_only and hybrid (see sim.study.options)",
        )
    )
    uncertainty: dict[str, ParamDistribution] | None = Field(
        default=None,
        description="dotted scenario path -> distribution drawn once per replication "
        "(see sim.uncertainty)",
    )

    @model_validator(mode="after")
    def _some_capacity(self) -> Scenario:
        for loc, pool in self._pool_locs():
            if pool.replicas == 0 and pool.autoscaler is None:
                raise _located_error(
                    (*loc, "replicas"), "Input should be greater than or equal to 1", 0
                )
        return self

    @property
    def pooled(self) -> bool:
        """The fleet is given as several named pools (``fleet.pools``)."""
        return isinstance(self.fleet, PooledFleetSpec)

    @property
    def pools(self) -> tuple[PricedFleetSpec, ...]:
        """The fleet's pools: those of ``fleet.pools``, or the single-pool fleet itself."""
        fleet = self.fleet
        return fleet.pools if isinstance(fleet, PooledFleetSpec) else (fleet,)

    @property
    def pool_names(self) -> tuple[str, ...]:
        """Pool names (the single-pool form's one pool is named ``fleet``)."""
        fleet = self.fleet
        return fleet.names if isinstance(fleet, PooledFleetSpec) else (SINGLE_POOL,)

    def single_fleet(self, what: str) -> PricedFleetSpec:
        """The fleet of a single-pool scenario; ``what`` (a feature, for the message)
        is refused for a fleet of several pools.

        Raises
        ------
        ScenarioError
            If the fleet has several pools.
        """
        fleet = self.fleet
        if isinstance(fleet, PooledFleetSpec):
            raise ScenarioError(
                f"fleet.pools: {what} is not available for a fleet of several pools "
                f"(this one has {len(fleet.pools)}: {', '.join(fleet.names)})"
            )
        return fleet

    def _pool_locs(self) -> list[tuple[tuple[str | int, ...], PricedFleetSpec]]:
        fleet = self.fleet
        if isinstance(fleet, PooledFleetSpec):
            return [(("fleet", "pools", i), p) for i, p in enumerate(fleet.pools)]
        return [(("fleet",), fleet)]

    def class_pools(self) -> tuple[tuple[int, ...], ...]:
        """Per class, the indices of the pools that may serve it, in the class's order
        (its ``pools:``, default every pool)."""
        names = self.pool_names
        out = []
        for cls in self.workload.classes:
            listed = cls.pools if cls.pools else names
            out.append(tuple(names.index(n) for n in listed))
        return tuple(out)

    @model_validator(mode="after")
    def _apis_resolve(self) -> Scenario:
        # Price catalogue keys are checked at load time, with the field named.
        specs: list[tuple[tuple[str, ...], ApiSpec]] = []
        if self.api is not None:
            specs.append((("api", "model"), self.api))
        specs += [(("apis", name, "model"), spec) for name, spec in self.apis.items()]
        keys = [(loc, spec.model) for loc, spec in specs if spec.model is not None]
        for i, cls in enumerate(self.workload.classes):
            if cls.api_model is not None and cls.api_model not in self.apis:
                keys.append((("workload", "classes", str(i), "api_model"), cls.api_model))
        for loc, key in keys:
            _check(loc, key, functools.partial(api_price, key))
        return self

    @model_validator(mode="after")
    def _routing_consistent(self) -> Scenario:
        routing = self.routing
        providers = self.providers()
        has_api = {c.name: providers.spec_of(c.name) is not None for c in self.workload.classes}
        if routing.policy != "self_host_only" and not any(has_api.values()):
            raise _located_error(
                ("routing", "policy"),
                f"policy {routing.policy!r} sends requests to the API: add an 'api' section",
                routing.policy,
            )
        classes = {c.name: c for c in self.workload.classes}
        for i, name in enumerate(routing.api_classes):
            cls = classes.get(name)
            if cls is None:
                msg = f"no class named {name!r} (classes: {', '.join(classes)})"
            elif cls.private:
                msg = f"class {name!r} is private: it may never leave the fleet"
            elif cls.arrivals.process == "closed_loop":
                msg = f"class {name!r} is a closed loop of users: it stays on the fleet"
            elif not has_api[name]:
                msg = f"class {name!r} has no API: give it an api_model or add an 'api' section"
            else:
                continue
            raise _located_error(("routing", "api_classes", str(i)), msg, name)
        return self

    @model_validator(mode="after")
    def _options_valid(self) -> Scenario:
        # Every option must give a valid scenario, checked now rather than halfway through
        # a run; an error names the option and the path.
        if self.options is None:
            return self
        seen: set[str] = set()
        for i, item in enumerate(self.options):
            name = item if isinstance(item, str) else item.name
            if name in seen:
                raise _located_error(("options", i), f"option {name!r} is listed twice", name)
            seen.add(name)
            if isinstance(item, str):
                continue
            base = self.model_copy(update={"options": None})
            for path, value in item.overrides.items():
                loc = ("options", i, "set", path)
                if path == "options" or path.startswith(("options.", "uncertainty")):
                    raise _located_error(loc, "an option cannot change this section", value)
                try:
                    data = apply_overrides(base, {path: value})
                except KeyError as exc:
                    raise _located_error(loc, str(exc.args[0]), value) from None
                try:
                    Scenario.model_validate(data)
                except ValidationError as exc:
                    err = exc.errors(include_url=False)[0]
                    where = ".".join(str(p) for p in err["loc"])
                    raise _located_error(loc, f"{where}: {err['msg']}", value) from None
            try:
                option_scenario(base, item.overrides)
            except ValidationError as exc:
                err = exc.errors(include_url=False)[0]
                where = ".".join(str(p) for p in err["loc"])
                raise _located_error(
                    ("options", i, "set"), f"{where}: {err['msg']}", None
                ) from None
        return self

    @model_validator(mode="after")
    def _fleet_resolves(self) -> Scenario:
        # Catalog look-ups and the memory fit are checked here so that a bad scenario fails
        # at load time with the field named, not halfway through a sweep.
        for loc, fleet in self._pool_locs():
            _check(
                (*loc, "model"),
                fleet.model,
                functools.partial(resolve_model, fleet.model),
                kind="model",
                known=list_models,
            )
            _check(
                (*loc, "gpu"),
                fleet.gpu,
                functools.partial(get_gpu, fleet.gpu),
                kind="GPU",
                known=list_gpus,
            )
            step = fleet.step_time
            if isinstance(step, RooflineStep):
                _check(
                    (*loc, "step_time", "profile"),
                    step.profile,
                    functools.partial(resolve_roofline, step, get_gpu(fleet.gpu).name),
                )
            # Both names resolve, so what is left is the fit (or a dtype the GPU cannot run).
            _check((*loc, "model"), fleet.model, functools.partial(build_replica, fleet))
        return self

    @model_validator(mode="after")
    def _class_pools(self) -> Scenario:
        # every pool a class names exists; each class can use one of its pools; a closed
        # loop of users stays on one pool; idle replicas are a pool's own
        names = self.pool_names
        pooled = self.pooled
        for i, cls in enumerate(self.workload.classes):
            loc = ("workload", "classes", i, "pools")
            if cls.pools is None:
                continue
            if not pooled:
                raise _located_error(
                    loc, "the fleet has one pool: name pools under fleet.pools first", None
                )
            for j, name in enumerate(cls.pools):
                if name not in names:
                    close = difflib.get_close_matches(name, names, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise _located_error(
                        (*loc, j), f"no pool named {name!r}{hint}; pools: {', '.join(names)}", name
                    )
            if len(set(cls.pools)) != len(cls.pools):
                raise _located_error(loc, "a pool is listed twice", None)
        if not pooled:
            return self
        choices = self.class_pools()
        lengths = [build_replica(p).max_model_len for p in self.pools]
        for i, cls in enumerate(self.workload.classes):
            loc = ("workload", "classes", i, "pools")
            if cls.arrivals.process == "closed_loop" and len(choices[i]) > 1:
                raise _located_error(
                    loc,
                    f"class {cls.name!r} is a closed loop of users: give it one pool",
                    None,
                )
            if cls.prompt_tokens is None or cls.output_tokens is None:
                continue
            need = cls.prompt_tokens.mean() + cls.output_tokens.mean()
            if all(need > lengths[k] for k in choices[i]):
                longest = max(lengths[k] for k in choices[i])
                raise _located_error(
                    loc,
                    f"class {cls.name!r} needs about {need:,.0f} tokens of context per "
                    f"request, more than any of its pools holds (at most {longest:,})",
                    None,
                )
        if self.calendar.idle_replicas is not None:
            raise _located_error(
                ("calendar", "idle_replicas"),
                "not available with several pools: each pool keeps its replicas "
                "(or its autoscaler's minimum) outside the active time",
                self.calendar.idle_replicas,
            )
        return self

    @model_validator(mode="after")
    def _uncertain_paths_exist(self) -> Scenario:
        # Each path must name a field that can take every value its distribution can draw
        # (probed at the support's ends or far tails), so that a replication halfway through
        # a sweep does not fail on a drawn value.
        for path, dist in (self.uncertainty or {}).items():
            if path == "uncertainty" or path.startswith("uncertainty."):
                raise _located_error(("uncertainty", path), "cannot vary itself", None)
            why = check_uncertain_path(self, path, dist)
            if why is not None:
                raise _located_error(("uncertainty", path), why, None)
        return self

    def providers(self) -> ApiProviders:
        """Each class's API provider (:func:`sim.economics.apis.api_providers`): its own
        ``api_model``, else the ``api`` section, else none."""
        return api_providers(
            self.api, self.apis, {c.name: c.api_model for c in self.workload.classes}
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> Scenario:
        """A copy with values replaced at dotted paths, re-validated.

        Path parts index into sections by field name and into lists by position or, for
        lists of named items such as ``workload.classes``, by name:
        ``{"workload.classes.chat.arrivals.rate_rps": 8.0, "fleet.replicas": 4}``. A value
        may be a whole section (``{"fleet.step_time": {"model": "constant", "step_s": 0.02}}``),
        which is how a section switches kind. The original scenario is not changed.

        Raises
        ------
        KeyError
            If a path names no field of the scenario; the message names the path.
        pydantic.ValidationError
            If the new values are invalid.

        Examples
        --------
        >>> from sim import load_scenario
        >>> s = load_scenario("scenarios/chat-startup.yaml")
        >>> t = s.with_overrides({"fleet.replicas": 4, "workload.classes.0.private": True})
        >>> t.fleet.replicas, t.workload.classes[0].private
        (4, True)
        """
        return Scenario.model_validate(apply_overrides(self, overrides))


def fleet_text(scenario: Scenario) -> str:
    """The fleet in one line: replicas, model, GPUs, dtype, KV cache per replica and router
    (per pool for a fleet of several, with the pool policy).

    Examples
    --------
    >>> from sim import load_scenario
    >>> fleet_text(load_scenario("scenarios/chat-startup.yaml"))
    '2 × llama-3.1-8b on 1 × h100-sxm (bf16), KV cache 452,688 tokens/replica, router least_loaded'
    """
    parts = []
    for name, pool in zip(scenario.pool_names, scenario.pools, strict=True):
        rep = build_replica(pool)
        text = (
            f"{pool.size_text} × {rep.model.name} on {pool.tp} × {rep.gpu.name} "
            f"({pool.dtype}), KV cache {rep.kv_capacity_tokens:,} tokens/replica, "
            f"router {pool.router}"
        )
        parts.append(f"{name}: {text}" if scenario.pooled else text)
    fleet = scenario.fleet
    if isinstance(fleet, PooledFleetSpec):
        parts.append(f"pool policy {fleet.policy}")
    return "; ".join(parts)


def option_scenario(scenario: Scenario, overrides: Mapping[str, Any]) -> Scenario:
    """``scenario`` as one of its options sees it: ``overrides`` applied, no options of its own.

    Examples
    --------
    >>> from sim import load_scenario
    >>> s = load_scenario("scenarios/chat-startup.yaml")
    >>> option_scenario(s, {"routing": {"policy": "api_only"}}).routing.policy
    'api_only'
    """
    data = apply_overrides(scenario, overrides)
    data["options"] = None
    return Scenario.model_validate(data)


def _check(
    loc: tuple[str | int, ...],
    value: Any,
    resolve: Callable[[], object],
    *,
    kind: str = "",
    known: Callable[[], list[str]] | None = None,
) -> None:
    """Run ``resolve`` and turn its failure into a validation error located at ``loc``."""
    try:
        resolve()
    except KeyError as exc:
        msg = str(exc.args[0]) if exc.args else str(exc)
        if known is not None and isinstance(value, str):
            names = known()
            close = difflib.get_close_matches(value, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"unknown {kind} {value!r}{hint}; known: {', '.join(names)}"
        raise _located_error(loc, msg, value) from None
    except (ValueError, TypeError) as exc:
        msg = str(exc).removeprefix(f"{loc[0]}: ")
        raise _located_error(loc, msg, value) from None


def _located_error(loc: tuple[str | int, ...], msg: str, value: Any) -> ValidationError:
    # A ValidationError raised inside a validator keeps its own locations (prefixed by the
    # enclosing ones), which a plain ValueError from a model validator cannot do.
    return ValidationError.from_exception_data(
        "Scenario",
        [
            InitErrorDetails(
                type=PydanticCustomError("fleet", "{reason}", {"reason": msg}),
                loc=loc,
                input=value,
            )
        ],
    )
