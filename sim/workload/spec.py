"""The ``workload:`` section of a scenario: request classes and their traffic.

Validation only; building a spec never touches the file system (a trace ``path`` stays a
string until :func:`sim.workload.sample_workload` opens it).
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator

from sim._base import Frozen
from sim.workload.arrivals import (
    ClosedLoopArrivals,
    GammaArrivals,
    MMPPArrivals,
    PoissonArrivals,
)
from sim.workload.lengths import LengthSpec
from sim.workload.profile import DiurnalProfile, HourlyProfile, ProfileSpec
from sim.workload.sessions import SessionArrivals
from sim.workload.trace import TraceArrivals

__all__ = ["ArrivalSpec", "ClassSpec", "PrefixSpec", "SLOSpec", "WorkloadSpec"]

ArrivalSpec = Annotated[
    PoissonArrivals
    | GammaArrivals
    | MMPPArrivals
    | ClosedLoopArrivals
    | TraceArrivals
    | SessionArrivals,
    Field(discriminator="process"),
]


class SLOSpec(Frozen):
    """Latency objectives of a class; either may be omitted.

    Examples
    --------
    >>> SLOSpec(ttft_s=1.0).tpot_s is None
    True
    """

    ttft_s: float | None = Field(default=None, gt=0.0, description="time to first token")
    tpot_s: float | None = Field(default=None, gt=0.0, description="time per output token")
    attainment: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="required share of requests meeting the targets: an option below it "
        "(the upper end of its 95% CI) is not feasible",
    )


class PrefixSpec(Frozen):
    """A prefix shared by a class's requests (a system prompt or RAG template).

    A share ``share`` of the class's requests carry it: their prompt is ``tokens`` of prefix
    followed by the sampled ``prompt_tokens``. Replicas reuse the prefix's cached KV blocks
    (automatic prefix caching) and the API bills those tokens at its cached-input price (in a
    workload with prompt identities, as its replayed cache decides).
    """

    tokens: int = Field(ge=1, description="prefix length in tokens")
    share: float = Field(1.0, ge=0.0, le=1.0, description="share of requests carrying it")


class ClassSpec(Frozen):
    """One request class (tenant): its arrivals, token lengths, SLO and routing flags.

    ``prompt_tokens``/``output_tokens`` are required unless the arrivals come from a trace,
    where they default to the trace's columns (and, if given, replace them). A ``profile``
    (time-of-day multiplier, applied by thinning) is allowed for open-loop processes only.

    Examples
    --------
    >>> c = ClassSpec.model_validate({
    ...     "name": "chat",
    ...     "arrivals": {"process": "poisson", "rate_rps": 5.0},
    ...     "prompt_tokens": {"dist": "lognormal", "median": 1000, "p90": 3000},
    ...     "output_tokens": {"dist": "geometric", "mean": 200},
    ... })
    >>> c.arrivals.mean_rate_rps(), c.output_tokens.mean()
    (5.0, 200.0)
    """

    name: str = Field(min_length=1)
    arrivals: ArrivalSpec
    profile: ProfileSpec | None = None
    prompt_tokens: LengthSpec | None = None
    output_tokens: LengthSpec | None = None
    slo: SLOSpec = SLOSpec()
    private: bool = Field(default=False, description="may never leave the self-hosted fleet")
    open_model_ok: bool = Field(
        default=True,
        description="the self-hosted model clears this task's evaluation bar; false: only the "
        "API may serve the class",
    )
    api_model: str | None = Field(
        default=None,
        description="the API this class would use: a name in the scenario's 'apis' or a price "
        "catalogue key; default: the 'api' section",
    )
    prefix: PrefixSpec | None = None
    pools: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="the fleet pools that may serve this class, in order of preference; "
        "default: every pool",
    )
    api_batch: bool = Field(
        default=False, description="sent through the API's discounted batch endpoint"
    )
    api_cached_input_fraction: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="share of prompt tokens the API bills as cached (unused when the workload "
        "carries prompt identities: the API's cache is then replayed)",
    )

    @field_validator("profile")
    @classmethod
    def _profile_open_loop(
        cls, v: DiurnalProfile | HourlyProfile | None, info: ValidationInfo
    ) -> DiurnalProfile | HourlyProfile | None:
        arrivals = info.data.get("arrivals")
        if v is not None and isinstance(arrivals, ClosedLoopArrivals | TraceArrivals):
            raise ValueError(f"profile is not allowed with process {arrivals.process!r}")
        return v

    @field_validator("open_model_ok")
    @classmethod
    def _someone_serves(cls, v: bool, info: ValidationInfo) -> bool:
        if not v and info.data.get("private"):
            raise ValueError(
                "a private class whose task the open model fails has nothing to serve it: "
                "private keeps it off the API, open_model_ok: false keeps it off the fleet"
            )
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix_open_loop(cls, v: PrefixSpec | None, info: ValidationInfo) -> PrefixSpec | None:
        arrivals = info.data.get("arrivals")
        if v is not None and isinstance(arrivals, ClosedLoopArrivals):
            raise ValueError("a shared prefix is not supported with process 'closed_loop' yet")
        if v is not None and isinstance(arrivals, SessionArrivals):
            raise ValueError(
                "process 'sessions' has no class prefix: give its arrivals a "
                "system_prompt_tokens instead"
            )
        return v

    @field_validator("prompt_tokens", "output_tokens")
    @classmethod
    def _lengths_required(cls, v: object, info: ValidationInfo) -> object:
        arrivals = info.data.get("arrivals")
        if v is None and arrivals is not None and not isinstance(arrivals, TraceArrivals):
            raise ValueError(
                f"{info.field_name} is required for process {arrivals.process!r} "
                "(only a trace supplies its own token counts)"
            )
        return v


class WorkloadSpec(Frozen):
    """All request classes of a scenario (names unique, at least one).

    Examples
    --------
    >>> w = WorkloadSpec.model_validate({"classes": [{
    ...     "name": "batch",
    ...     "arrivals": {"process": "gamma", "rate_rps": 1.0, "cv": 3.0},
    ...     "prompt_tokens": {"dist": "fixed", "value": 512},
    ...     "output_tokens": {"dist": "fixed", "value": 64},
    ... }]})
    >>> w.class_names()
    ('batch',)
    """

    # Non-emptiness is checked in the validator, not with ``min_length``: pydantic would also
    # report "too short" whenever one class is invalid, burying the real error.
    classes: tuple[ClassSpec, ...]

    @field_validator("classes")
    @classmethod
    def _unique_names(cls, v: tuple[ClassSpec, ...]) -> tuple[ClassSpec, ...]:
        if not v:
            raise ValueError("at least one class is required")
        dupes = sorted(name for name, n in Counter(c.name for c in v).items() if n > 1)
        if dupes:
            raise ValueError(f"class names must be unique; repeated: {', '.join(dupes)}")
        sizes = {c.arrivals.block_tokens for c in v if isinstance(c.arrivals, SessionArrivals)}
        if len(sizes) > 1:
            raise ValueError(
                "sessions classes must share one arrivals.block_tokens (their prompt "
                f"identities are merged); got {sorted(sizes)}"
            )
        return v

    def class_names(self) -> tuple[str, ...]:
        """Names in declaration order (the ``class_id`` order of a sampled workload)."""
        return tuple(c.name for c in self.classes)
