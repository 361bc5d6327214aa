"""The scenario's decision sections: the options it is answered by (``options:``) and the
hard constraints of the whole scenario (``constraints:``). Validation only; resolving the
options against a scenario is :mod:`sim.study.options`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from sim._base import Frozen

__all__ = ["CANONICAL_OPTIONS", "ConstraintsSpec", "OptionSpec"]

#: The options of a scenario without an ``options:`` section (see :mod:`sim.study.options`).
CANONICAL_OPTIONS = ("api_only", "self_host_only", "hybrid")


class ConstraintsSpec(Frozen):
    """Hard constraints of the whole scenario (``constraints:``)."""

    offline: bool = Field(
        False, description="no connectivity to a hosted API: every API route is ruled out"
    )


class OptionSpec(Frozen):
    """A named alternative (``options:`` item): the scenario with ``set`` overrides applied.

    Examples
    --------
    >>> o = OptionSpec.model_validate({"name": "4xh100", "set": {"fleet.replicas": 4}})
    >>> o.overrides
    {'fleet.replicas': 4}
    """

    name: str = Field(min_length=1)
    description: str = ""
    overrides: dict[str, Any] = Field(default_factory=dict, alias="set")

    @field_validator("name")
    @classmethod
    def _not_canonical(cls, v: str) -> str:
        if v in CANONICAL_OPTIONS:
            raise ValueError(
                f"{v!r} is a canonical option: list it as a plain string, not with overrides"
            )
        return v
