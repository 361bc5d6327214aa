"""Input uncertainty: scenario parameters drawn from distributions, once per replication.

A scenario's optional ``uncertainty:`` section maps dotted scenario paths (the same paths as
:meth:`~sim.scenario.Scenario.with_overrides`) to distributions::

    uncertainty:
      fleet.pricing.usd_per_gpu_hour: {dist: triangular, low: 2.2, mode: 3.0, high: 4.5}
      workload.classes.chat.arrivals.rate_rps: {dist: lognormal, median: 4, p90: 7}
      api.usd_per_1m_output: {dist: uniform, low: 0.4, high: 0.8}
      fleet.gpu: {dist: choice, values: [h100-sxm, h200-sxm], weights: [0.7, 0.3]}

Each replication draws every parameter from its own stream: substream
:data:`STREAM_UNCERTAINTY` of the replication's seed, then a child named by the path (the
hashing of :func:`sim.workload.sample.component_seed`). The workload, router and API streams
(substreams 0–3) are untouched, so a replication sees the same request sample with or
without the section, and adding or removing one uncertain parameter never changes another's
draws. Replication ``i`` draws the same values at every point of a sweep (common random
numbers extend to the parameters).

Every distribution states its theory (:meth:`mean`, :meth:`std`) for the tests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol, Self, TypeVar

import numpy as np
from pydantic import BaseModel, Field, ValidationError, model_validator

from sim._base import Frozen
from sim.overrides import apply_overrides, list_index
from sim.seeds import STREAM_UNCERTAINTY, substream
from sim.workload.sample import component_seed


class Varied(Protocol):
    """What :func:`realise` needs of a scenario: its uncertain parameters and a way to
    apply values to a copy (:class:`sim.scenario.Scenario` is one)."""

    @property
    def uncertainty(self) -> Mapping[str, Any] | None: ...

    def with_overrides(self, overrides: Mapping[str, Any]) -> Self: ...


V = TypeVar("V", bound=Varied)

__all__ = [
    "STREAM_UNCERTAINTY",
    "ChoiceParam",
    "LognormalParam",
    "NormalParam",
    "ParamDistribution",
    "TriangularParam",
    "UniformParam",
    "check_uncertain_path",
    "draw",
    "realise",
    "value_at",
]

#: Substream (by position) of a replication's seed that parameter draws come from; 0–3 are
#: the workload, router, API and API-baseline streams of :func:`sim.replication.simulate.simulate`.
#: z-score of the 90th percentile of the standard normal.
Z90 = 1.2815515655446004
#: Tails probed at validation for distributions without bounds: a scenario whose parameter
#: is invalid beyond these quantiles (a negative price from a wide normal) is refused.
PROBE_QUANTILES = (0.001, 0.999)


class _Continuous(Frozen):
    def sample(self, rng: np.random.Generator) -> float:
        raise NotImplementedError

    def mean(self) -> float:
        raise NotImplementedError

    def std(self) -> float:
        raise NotImplementedError

    def probes(self) -> tuple[float, ...]:
        """Values checked against the scenario's validation: the support's ends, or the
        :data:`PROBE_QUANTILES` of an unbounded distribution."""
        raise NotImplementedError


class UniformParam(_Continuous):
    """Uniform on ``[low, high]``.

    Examples
    --------
    >>> UniformParam(low=2.0, high=4.0).mean()
    3.0
    """

    dist: Literal["uniform"] = "uniform"
    low: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))

    def mean(self) -> float:
        return (self.low + self.high) / 2

    def std(self) -> float:
        return (self.high - self.low) / math.sqrt(12.0)

    def probes(self) -> tuple[float, ...]:
        return (self.low, self.high)


class TriangularParam(_Continuous):
    """Triangular on ``[low, high]`` with its peak at ``mode``.

    Examples
    --------
    >>> TriangularParam(low=1.0, mode=2.0, high=6.0).mean()
    3.0
    """

    dist: Literal["triangular"] = "triangular"
    low: float
    mode: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not (self.low <= self.mode <= self.high and self.low < self.high):
            raise ValueError(
                f"need low <= mode <= high and low < high (got {self.low}, {self.mode}, "
                f"{self.high})"
            )
        return self

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.triangular(self.low, self.mode, self.high))

    def mean(self) -> float:
        return (self.low + self.mode + self.high) / 3

    def std(self) -> float:
        a, c, b = self.low, self.mode, self.high
        return math.sqrt((a * a + b * b + c * c - a * b - a * c - b * c) / 18.0)

    def probes(self) -> tuple[float, ...]:
        return (self.low, self.high)


class NormalParam(_Continuous):
    """Normal with mean ``mean`` and standard deviation ``sd``.

    Examples
    --------
    >>> NormalParam(mean=3.0, sd=0.5).std()
    0.5
    """

    dist: Literal["normal"] = "normal"
    mean_: float = Field(alias="mean")
    sd: float = Field(gt=0.0)

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.normal(self.mean_, self.sd))

    def mean(self) -> float:
        return self.mean_

    def std(self) -> float:
        return self.sd

    def probes(self) -> tuple[float, ...]:
        from scipy.special import ndtri

        return tuple(self.mean_ + self.sd * float(ndtri(q)) for q in PROBE_QUANTILES)


class LognormalParam(_Continuous):
    """Lognormal given by its ``median`` and 90th percentile ``p90``:
    ``mu = ln median``, ``sigma = ln(p90/median) / z₀.₉``.

    Examples
    --------
    >>> d = LognormalParam(median=4.0, p90=8.0)
    >>> round(d.mean(), 4)
    4.63
    """

    dist: Literal["lognormal"] = "lognormal"
    median: float = Field(gt=0.0)
    p90: float = Field(gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.p90 > self.median:
            raise ValueError(f"p90 ({self.p90}) must be above the median ({self.median})")
        return self

    def _sigma(self) -> float:
        return math.log(self.p90 / self.median) / Z90

    def sample(self, rng: np.random.Generator) -> float:
        return float(self.median * math.exp(self._sigma() * rng.standard_normal()))

    def mean(self) -> float:
        return self.median * math.exp(self._sigma() ** 2 / 2)

    def std(self) -> float:
        s2 = self._sigma() ** 2
        return self.mean() * math.sqrt(math.expm1(s2))

    def probes(self) -> tuple[float, ...]:
        from scipy.special import ndtri

        return tuple(
            self.median * math.exp(self._sigma() * float(ndtri(q))) for q in PROBE_QUANTILES
        )


class ChoiceParam(Frozen):
    """One of ``values`` (any scenario values: numbers, names, whole sections), with
    probabilities proportional to ``weights`` (equal when omitted).

    Examples
    --------
    >>> ChoiceParam(values=[1, 2, 3], weights=[1, 1, 2]).mean()
    2.25
    """

    dist: Literal["choice"] = "choice"
    values: tuple[Any, ...] = Field(min_length=1)
    weights: tuple[float, ...] | None = None

    @model_validator(mode="after")
    def _weights(self) -> Self:
        w = self.weights
        if w is None:
            return self
        if len(w) != len(self.values):
            raise ValueError(f"{len(w)} weights for {len(self.values)} values")
        if any(not (x >= 0 and math.isfinite(x)) for x in w) or sum(w) <= 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
        return self

    def probabilities(self) -> np.ndarray:
        """Probability of each value."""
        w = np.ones(len(self.values)) if self.weights is None else np.asarray(self.weights)
        return w / w.sum()

    def sample(self, rng: np.random.Generator) -> Any:
        # cumulative probabilities and one uniform: the draw uses exactly one number
        cdf = np.cumsum(self.probabilities())
        idx = int(np.searchsorted(cdf, rng.uniform() * cdf[-1], side="right"))
        return self.values[min(idx, len(self.values) - 1)]

    def mean(self) -> float:
        """Mean of numeric values (a TypeError for names or sections)."""
        return float(np.dot(self.probabilities(), np.asarray(self.values, dtype=float)))

    def std(self) -> float:
        """Standard deviation of numeric values."""
        x = np.asarray(self.values, dtype=float)
        p = self.probabilities()
        return float(np.sqrt(np.dot(p, (x - np.dot(p, x)) ** 2)))

    def probes(self) -> tuple[Any, ...]:
        return self.values


ParamDistribution = Annotated[
    UniformParam | TriangularParam | NormalParam | LognormalParam | ChoiceParam,
    Field(discriminator="dist"),
]


def value_at(scenario: BaseModel, path: str) -> Any:
    """The value of ``scenario`` at a dotted path (``None`` inside an unset section).

    Raises
    ------
    KeyError
        If the path names no field (checked by :func:`sim.scenario.apply_overrides`).

    Examples
    --------
    >>> from sim import load_scenario
    >>> value_at(load_scenario("scenarios/chat-startup.yaml"), "fleet.replicas")
    2
    """
    apply_overrides(scenario, {path: None})  # a KeyError, naming the path, if it has no field
    node: Any = apply_overrides(scenario, {})
    for part in path.split("."):
        if isinstance(node, list):
            node = node[list_index(node, part, path)]
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None  # inside a section that is unset
    return node


def check_uncertain_path(scenario: BaseModel, path: str, dist: Any) -> str | None:
    """Why ``dist`` cannot vary ``path`` of ``scenario`` (``None`` when it can).

    The path must name a field; a continuous distribution needs a field that holds a
    (non-integer) number; every probed value (:meth:`UniformParam.probes` …) must give a
    valid scenario.
    """
    try:
        current = value_at(scenario, path)
    except KeyError as exc:
        return str(exc.args[0]) if exc.args else str(exc)
    if not isinstance(dist, ChoiceParam):
        if current is None:
            return "is not set in the scenario: give it a value there first"
        if isinstance(current, bool) or not isinstance(current, int | float):
            return f"holds {current!r}, not a number: use dist: choice to pick among values"
        if isinstance(current, int):
            return (
                f"holds an integer ({current}): a {dist.dist} draw is not one; use dist: "
                "choice with integer values"
            )
    for value in dist.probes():
        data = apply_overrides(scenario, {path: value, "uncertainty": None})
        try:
            type(scenario).model_validate(data)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            msg = err["msg"].removeprefix("Value error, ")
            shown = f"{value:.6g}" if isinstance(value, float) else repr(value)
            return f"it can draw {shown}, which is invalid there: {msg}"
    return None


def draw(
    uncertainty: Mapping[str, ParamDistribution], seed: np.random.SeedSequence
) -> dict[str, Any]:
    """One replication's values of the uncertain parameters, by path.

    ``seed`` is the replication's seed; each path draws from its own named child of its
    substream :data:`STREAM_UNCERTAINTY`.

    Examples
    --------
    >>> spec = {"fleet.pricing.usd_per_gpu_hour": UniformParam(low=2.0, high=4.0)}
    >>> a = draw(spec, np.random.SeedSequence(1))
    >>> a == draw(spec, np.random.SeedSequence(1)), 2.0 <= a["fleet.pricing.usd_per_gpu_hour"] <= 4
    (True, True)
    """
    root = substream(seed, STREAM_UNCERTAINTY)
    return {
        path: dist.sample(np.random.default_rng(component_seed(root, path)))
        for path, dist in uncertainty.items()
    }


def realise(scenario: V, seed: np.random.SeedSequence) -> tuple[V, dict[str, Any]]:
    """The scenario one replication simulates: its uncertain parameters drawn and applied
    (the result has no ``uncertainty`` section), and the drawn values by path.

    Raises
    ------
    ValueError
        If a drawn value makes the scenario invalid (validation probed only the tails).
    """
    if not scenario.uncertainty:
        return scenario, {}
    values = draw(scenario.uncertainty, seed)
    try:
        drawn = scenario.with_overrides({**values, "uncertainty": None})
    except ValidationError as exc:
        shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
        raise ValueError(f"uncertainty: the values drawn ({shown}) are invalid: {exc}") from None
    return drawn, values
