"""Time-of-day rate profiles, applied to an arrival process by thinning.

A profile is a multiplier ``m(t)`` of the clock time ``t`` (seconds since the start of the
horizon, hour of day ``h = (t mod 86400) / 3600``). It is normalised so that its mean over a
whole day is exactly 1: a class with ``rate_rps`` and a profile still offers ``rate_rps`` on
average over every full day; the profile only moves traffic between hours.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, field_validator

from sim._base import Frozen

__all__ = ["DiurnalProfile", "HourlyProfile", "ProfileSpec", "thin"]

SECONDS_PER_DAY = 86_400.0
SECONDS_PER_HOUR = 3_600.0


class DiurnalProfile(Frozen):
    """A smooth daily cycle, ``m(h) = 1 + a·cos(2π(h − peak_hour)/24)``.

    ``a = (r − 1)/(r + 1)`` with ``r = peak_to_trough``, so ``max m / min m = r`` and the
    daily mean of ``m`` is 1.

    Examples
    --------
    >>> p = DiurnalProfile(peak_to_trough=3.0, peak_hour=14)
    >>> round(float(p.peak_multiplier()), 3), round(float(p.multiplier(14 * 3600.0)[()]), 3)
    (1.5, 1.5)
    """

    kind: Literal["diurnal"] = "diurnal"
    peak_to_trough: float = Field(ge=1.0, description="max/min rate over the day")
    peak_hour: float = Field(default=14.0, ge=0.0, lt=24.0, description="hour of the peak")

    def amplitude(self) -> float:
        """Relative amplitude ``a = (r − 1)/(r + 1)`` of the cosine."""
        r = self.peak_to_trough
        return (r - 1.0) / (r + 1.0)

    def multiplier(self, t_s: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Rate multiplier at times ``t_s`` (seconds); daily mean 1."""
        hour = np.mod(np.asarray(t_s, dtype=np.float64), SECONDS_PER_DAY) / SECONDS_PER_HOUR
        return 1.0 + self.amplitude() * np.cos(2.0 * np.pi * (hour - self.peak_hour) / 24.0)

    def peak_multiplier(self) -> float:
        """Maximum of :meth:`multiplier` over the day, ``1 + a``."""
        return 1.0 + self.amplitude()

    def hour_means(self) -> NDArray[np.float64]:
        """Exact mean multiplier over each clock hour ``[h, h+1)``, ``h = 0..23``."""
        a = self.amplitude()
        w = 2.0 * np.pi / 24.0
        h = np.arange(24, dtype=np.float64)
        # ∫_h^{h+1} cos(w(x − p)) dx = [sin(w(x − p))]/w
        integral = (np.sin(w * (h + 1.0 - self.peak_hour)) - np.sin(w * (h - self.peak_hour))) / w
        return 1.0 + a * integral


class HourlyProfile(Frozen):
    """A piecewise-constant daily profile: one non-negative weight per clock hour.

    The multiplier in hour ``h`` is ``weights[h] / mean(weights)``, so the daily mean is 1.

    Examples
    --------
    >>> p = HourlyProfile(weights=[1.0] * 12 + [3.0] * 12)
    >>> float(p.peak_multiplier()), float(p.multiplier(0.0)[()])
    (1.5, 0.5)
    """

    kind: Literal["hourly"] = "hourly"
    weights: tuple[float, ...] = Field(min_length=24, max_length=24)

    @field_validator("weights")
    @classmethod
    def _non_negative(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not np.isfinite(w) or w < 0.0 for w in v):
            raise ValueError("weights must be finite and non-negative")
        if sum(v) <= 0.0:
            raise ValueError("weights must not all be zero")
        return v

    def hour_means(self) -> NDArray[np.float64]:
        """Mean multiplier over each clock hour ``h = 0..23`` (the normalised weights)."""
        w = np.asarray(self.weights, dtype=np.float64)
        return w / w.mean()

    def multiplier(self, t_s: NDArray[np.float64] | float) -> NDArray[np.float64]:
        """Rate multiplier at times ``t_s`` (seconds); daily mean 1."""
        t = np.mod(np.asarray(t_s, dtype=np.float64), SECONDS_PER_DAY)
        hour = np.minimum((t // SECONDS_PER_HOUR).astype(np.intp), 23)
        return self.hour_means()[hour]

    def peak_multiplier(self) -> float:
        """Maximum of :meth:`multiplier` over the day."""
        return float(self.hour_means().max())


ProfileSpec = Annotated[DiurnalProfile | HourlyProfile, Field(discriminator="kind")]


def thin(
    arrival_s: NDArray[np.float64],
    profile: DiurnalProfile | HourlyProfile,
    rng: np.random.Generator,
) -> NDArray[np.float64]:
    """Keep each arrival at time ``t`` with probability ``m(t) / max m``.

    The caller generates the base process at ``rate × profile.peak_multiplier()`` so that the
    thinned process has the profile's shape and the original daily mean rate. For a Poisson
    base this gives exactly the non-homogeneous Poisson process with intensity
    ``rate · m(t)`` (Lewis–Shedler thinning). Thinning a *non-Poisson* renewal process (gamma,
    MMPP) keeps the mean-rate shape but changes its burstiness: the inter-arrival CV moves
    towards 1 as more points are removed, so the thinned process's CV/IDC is not the base's.

    Parameters
    ----------
    arrival_s
        Sorted arrival times of the base process, seconds.
    profile
        The rate profile.
    rng
        Generator used only for the acceptance draws (one uniform per base arrival).

    Returns
    -------
    numpy.ndarray
        The accepted arrival times, still sorted.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = np.sort(rng.uniform(0.0, 86_400.0, 1000))
    >>> kept = thin(t, DiurnalProfile(peak_to_trough=1.0), rng)
    >>> kept.size  # a flat profile keeps everything
    1000
    """
    accept = rng.random(arrival_s.size) * profile.peak_multiplier() < profile.multiplier(arrival_s)
    return arrival_s[accept]
