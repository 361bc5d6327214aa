"""Shared base for scenario models: frozen, strict about unknown keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ScenarioError(ValueError):
    """A scenario file or value is invalid; the message names the file and the field."""


class Frozen(BaseModel):
    """An immutable, validated config value.

    Unknown keys are errors (a typo in a scenario file must not be silently ignored),
    and instances are hashable values that can be shared between replications.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)
