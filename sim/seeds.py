"""Random streams: one root seed, one independent substream per component, by position.

Every component of a replication draws from its own substream of the replication's seed
(``numpy.random.SeedSequence`` children addressed by index, not by order of use), so adding
a component, an API provider or an uncertain parameter never shifts another's draws —
which is what makes options compared on the same seed see identical requests (common
random numbers).
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = [
    "MAIN_PROVIDER",
    "STREAM_API",
    "STREAM_API_BASELINE",
    "STREAM_FAULTS",
    "STREAM_ROUTER",
    "STREAM_UNCERTAINTY",
    "STREAM_WORKLOAD",
    "SeedLike",
    "provider_stream",
    "replication_seeds",
    "routed_api_stream",
    "substream",
]

SeedLike = int | np.random.SeedSequence

# Substream indices, fixed per component. The ``api`` section's provider draws from
# STREAM_API (requests routed to it) and STREAM_API_BASELINE (the all-API baseline); every
# further provider from a child of those keyed by its name (:func:`provider_stream`).
STREAM_WORKLOAD = 0
STREAM_ROUTER = 1
STREAM_API = 2
STREAM_API_BASELINE = 3
STREAM_FAULTS = 4
STREAM_UNCERTAINTY = 10
#: The provider name of the scenario's ``api`` section.
MAIN_PROVIDER = "api"


def substream(seed: SeedLike, index: int) -> np.random.SeedSequence:
    """The ``index``-th independent child stream of ``seed``, by position, not by order of use.

    Examples
    --------
    >>> a = substream(7, 0).generate_state(1)[0]
    >>> b = substream(7, 0).generate_state(1)[0]
    >>> bool(a == b)
    True
    """
    root = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return np.random.SeedSequence(root.entropy, spawn_key=(*root.spawn_key, index))


def provider_stream(seed: SeedLike, stream: int, provider: str) -> np.random.SeedSequence:
    """The random stream of one API provider: ``substream(seed, stream)`` for the ``api``
    section's, else its child keyed by the CRC-32 of the provider's name, so adding or
    removing a provider shifts no other draws.

    Examples
    --------
    >>> provider_stream(7, STREAM_API, "api").spawn_key
    (2,)
    >>> provider_stream(7, STREAM_API, "apis.cheap").spawn_key
    (2, 1081156077)
    """
    base = substream(seed, stream)
    if provider == MAIN_PROVIDER:
        return base
    return substream(base, zlib.crc32(provider.encode()))


def pool_stream(seed: SeedLike, stream: int, pool: str) -> np.random.SeedSequence:
    """The random stream of one pool of a fleet of several (its router's, its faults'):
    the child of ``substream(seed, stream)`` keyed by the CRC-32 of ``pools.<name>``, so
    adding or removing a pool shifts no other pool's draws.

    Examples
    --------
    >>> pool_stream(7, STREAM_ROUTER, "h100").spawn_key
    (1, 2596995167)
    """
    return substream(substream(seed, stream), zlib.crc32(f"pools.{pool}".encode()))


def routed_api_stream(policy: str) -> int:
    """The substream of the API calls a run routes: the all-API baseline's when the routing
    policy sends every request to the API, so that the all-API option and the all-API
    alternative beside any other option are the same draws for the same requests.

    Examples
    --------
    >>> routed_api_stream("api_only") == STREAM_API_BASELINE, routed_api_stream("spillover")
    (True, 2)
    """
    return STREAM_API_BASELINE if policy == "api_only" else STREAM_API


def replication_seeds(seed: int, start: int, stop: int) -> list[np.random.SeedSequence]:
    """Seeds of replications ``start .. stop − 1``: child ``i`` of ``SeedSequence(seed)``,
    whatever was spawned before (``spawn()`` numbers its children from 0).

    Examples
    --------
    >>> [s.spawn_key for s in replication_seeds(3, 2, 4)]
    [(2,), (3,)]
    """
    return np.random.SeedSequence(seed).spawn(stop)[start:]
