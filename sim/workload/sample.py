"""Drawing one replication's workload: numpy arrays, one row per open-loop request.

Random streams are derived from the seed by *name*, not by position: class ``c``'s component
``k`` (``arrivals``, ``profile``, ``prompt_tokens``, ``output_tokens``, ``think_s``) uses
``SeedSequence(seed.entropy, spawn_key=seed.spawn_key + (h(c), h(k)))`` with ``h`` a stable
64-bit hash. Adding, removing or reordering classes, or changing one component (say, the
arrival rate), therefore leaves every other component's draws unchanged.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

from sim.workload.arrivals import ClosedLoopArrivals
from sim.workload.identity import PromptBlocks, name_salt, unique_blocks
from sim.workload.lengths import EmpiricalLength, FixedLength, GeometricLength, LognormalLength
from sim.workload.profile import thin
from sim.workload.sessions import SessionArrivals, sample_sessions
from sim.workload.spec import ClassSpec, WorkloadSpec
from sim.workload.trace import TraceArrivals

__all__ = ["ClosedLoopSource", "Workload", "component_seed", "sample_workload"]

_Length = FixedLength | GeometricLength | LognormalLength | EmpiricalLength


def component_seed(seed: np.random.SeedSequence, *names: str) -> np.random.SeedSequence:
    """The child stream of ``seed`` named by ``names`` (e.g. ``"chat", "arrivals"``).

    Examples
    --------
    >>> root = np.random.SeedSequence(42)
    >>> a = component_seed(root, "chat", "arrivals").generate_state(1)
    >>> b = component_seed(root, "chat", "arrivals").generate_state(1)
    >>> bool((a == b).all())
    True
    """
    key = tuple(
        int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "little") for n in names
    )
    return np.random.SeedSequence(
        seed.entropy, spawn_key=(*seed.spawn_key, *key), pool_size=seed.pool_size
    )


def _rng(seed: np.random.SeedSequence, *names: str) -> np.random.Generator:
    return np.random.default_rng(component_seed(seed, *names))


_T = TypeVar("_T", bound=np.generic)


def _readonly(a: NDArray[_T]) -> NDArray[_T]:
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class ClosedLoopSource:
    """Request attributes for one closed-loop class, drawn on demand by the fleet simulation.

    Each call to :meth:`draw` continues the class's own streams, and ``draw(3)`` then
    ``draw(2)`` gives exactly the values of one ``draw(5)``. Use :meth:`fresh` to replay the
    same requests from the start (e.g. for each option under common random numbers).

    Examples
    --------
    >>> spec = WorkloadSpec.model_validate({"classes": [{
    ...     "name": "agents",
    ...     "arrivals": {"process": "closed_loop", "users": 8, "think_time_s": 2.0},
    ...     "prompt_tokens": {"dist": "fixed", "value": 100},
    ...     "output_tokens": {"dist": "fixed", "value": 10},
    ... }]})
    >>> src = sample_workload(spec, duration_s=60.0, seed=np.random.SeedSequence(1)).closed_loop[0]
    >>> inp, out, think = src.draw(4)
    >>> src.users, inp.tolist(), think.shape
    (8, [100, 100, 100, 100], (4,))
    """

    class_id: int
    users: int
    arrivals: ClosedLoopArrivals = field(repr=False)
    prompt_tokens: _Length = field(repr=False)
    output_tokens: _Length = field(repr=False)
    seed: np.random.SeedSequence = field(repr=False)
    _rngs: tuple[np.random.Generator, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rngs = tuple(_rng(self.seed, c) for c in ("prompt_tokens", "output_tokens", "think_s"))
        object.__setattr__(self, "_rngs", rngs)

    def draw(self, n: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """``n`` more ``(input_tokens, output_tokens, think_s)`` from this class's streams."""
        r_in, r_out, r_think = self._rngs
        return (
            self.prompt_tokens.sample(r_in, n),
            self.output_tokens.sample(r_out, n),
            self.arrivals.sample_think(r_think, n),
        )

    def fresh(self) -> ClosedLoopSource:
        """A new source that starts this class's streams again from the beginning."""
        return ClosedLoopSource(
            class_id=self.class_id,
            users=self.users,
            arrivals=self.arrivals,
            prompt_tokens=self.prompt_tokens,
            output_tokens=self.output_tokens,
            seed=self.seed,
        )


@dataclass(frozen=True, eq=False)
class Workload:
    """One replication's requests. Arrays are read-only, so options can share one sample.

    Attributes
    ----------
    arrival_s
        float64, sorted ascending, every open-loop request of all classes, all in
        ``[0, duration_s)``.
    input_tokens, output_tokens
        int64, ``≥ 1``.
    class_id
        int32 index into ``class_names``.
    class_names
        Class names in declaration order.
    closed_loop
        One source per closed-loop class (their requests are not in the arrays).
    has_prefix
        bool, the request carries its class's shared prefix (already counted in
        ``input_tokens``); ``None`` means no request does.
    prompt_blocks
        Per request, its chained prompt-block hashes (:mod:`sim.workload.identity`), aligned
        with the arrays; ``None`` when the workload carries no prompt identity.
    """

    arrival_s: NDArray[np.float64]
    input_tokens: NDArray[np.int64]
    output_tokens: NDArray[np.int64]
    class_id: NDArray[np.int32]
    class_names: tuple[str, ...]
    closed_loop: tuple[ClosedLoopSource, ...]
    has_prefix: NDArray[np.bool_] | None = None
    prompt_blocks: PromptBlocks | None = None

    def __len__(self) -> int:
        return int(self.arrival_s.size)


def _sample_class(
    spec: ClassSpec, duration_s: float, seed: np.random.SeedSequence
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_]]:
    arrivals = spec.arrivals
    if isinstance(arrivals, TraceArrivals):
        trace = arrivals.load(
            read_input_tokens=spec.prompt_tokens is None,
            read_output_tokens=spec.output_tokens is None,
        )
        if arrivals.bootstrap_block_s is None:
            t, row = trace.replay(duration_s, rate_scale=arrivals.rate_scale)
        else:
            t, row = trace.bootstrap(
                duration_s,
                _rng(seed, "bootstrap"),
                block_s=arrivals.bootstrap_block_s,
                rate_scale=arrivals.rate_scale,
            )
        inp = trace.input_tokens[row] if trace.input_tokens is not None else None
        out = trace.output_tokens[row] if trace.output_tokens is not None else None
    elif isinstance(arrivals, ClosedLoopArrivals | SessionArrivals):  # pragma: no cover
        raise TypeError(f"process {arrivals.process!r} is sampled by its own branch")
    else:
        profile = spec.profile
        factor = 1.0 if profile is None else profile.peak_multiplier()
        t = arrivals.sample(_rng(seed, "arrivals"), duration_s, rate_factor=factor)
        if profile is not None:
            t = thin(t, profile, _rng(seed, "profile"))
        inp = out = None
    if spec.prompt_tokens is not None:
        inp = spec.prompt_tokens.sample(_rng(seed, "prompt_tokens"), t.size)
    if spec.output_tokens is not None:
        out = spec.output_tokens.sample(_rng(seed, "output_tokens"), t.size)
    assert inp is not None and out is not None  # guaranteed by ClassSpec validation
    prefix = spec.prefix
    if prefix is None:
        has = np.zeros(t.size, dtype=bool)
    else:
        has = _rng(seed, "prefix").random(t.size) < prefix.share
        inp = inp + np.where(has, prefix.tokens, 0)
    return t, inp, out, has


def _sample_session_class(
    spec: ClassSpec, duration_s: float, seed: np.random.SeedSequence
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], PromptBlocks]:
    # sessions (sim.workload.sessions): starts from the class's arrivals stream (thinned by
    # its profile), each turn's lengths and think time from the class's named streams
    arrivals = spec.arrivals
    assert isinstance(arrivals, SessionArrivals)
    assert spec.prompt_tokens is not None and spec.output_tokens is not None
    profile = spec.profile
    factor = 1.0 if profile is None else profile.peak_multiplier()
    starts = arrivals.starts.sample(_rng(seed, "arrivals"), duration_s, rate_factor=factor)
    if profile is not None:
        starts = thin(starts, profile, _rng(seed, "profile"))
    names = ("turns", "think_s", "prompt_tokens", "output_tokens", "tenant")
    turns = sample_sessions(
        arrivals,
        starts,
        duration_s=duration_s,
        message_tokens=spec.prompt_tokens,
        reply_tokens=spec.output_tokens,
        rngs={name: _rng(seed, name) for name in names},
        salt=name_salt(spec.name),
    )
    return turns.arrival_s, turns.input_tokens, turns.output_tokens, turns.prompt_blocks


def _merge_identities(
    spec: WorkloadSpec,
    identity: list[PromptBlocks | None],
    inputs: list[NDArray[np.int64]],
    prefixed: list[NDArray[np.bool_]],
    order: NDArray[np.intp],
) -> PromptBlocks | None:
    # one PromptBlocks for the merged workload, when some class carries prompt identity:
    # the others get blocks of their own (their class prefix, if any, shared by the class)
    given = [b for b in identity if b is not None]
    if not given:
        return None
    sizes = {b.block_tokens for b in given}
    if len(sizes) > 1:
        raise ValueError(
            f"classes with prompt identity use different block sizes {sorted(sizes)}: "
            "give them one block_tokens"
        )
    block = sizes.pop()
    open_loop = [c for c in spec.classes if not isinstance(c.arrivals, ClosedLoopArrivals)]
    parts = []
    for cls, blocks, inp, has in zip(open_loop, identity, inputs, prefixed, strict=True):
        if blocks is None:
            pfx = 0 if cls.prefix is None else cls.prefix.tokens
            blocks = unique_blocks(
                inp, block, salt=name_salt(cls.name), prefix_tokens=np.where(has, pfx, 0)
            )
        parts.append(blocks)
    return PromptBlocks.concat(parts).take(order)


def sample_workload(
    spec: WorkloadSpec, *, duration_s: float, seed: np.random.SeedSequence
) -> Workload:
    """Draw every open-loop request in ``[0, duration_s)`` and set up closed-loop sources.

    Classes are sampled independently from their own named streams (see the module doc) and
    merged by a stable sort on arrival time (ties keep declaration order). Trace classes are
    deterministic unless they draw their own lengths or set ``bootstrap_block_s``.

    Parameters
    ----------
    spec
        The validated workload section.
    duration_s
        Horizon, seconds.
    seed
        This replication's workload seed; pass a child dedicated to the workload.

    Returns
    -------
    Workload

    Examples
    --------
    >>> spec = WorkloadSpec.model_validate({"classes": [{
    ...     "name": "chat",
    ...     "arrivals": {"process": "poisson", "rate_rps": 5.0},
    ...     "prompt_tokens": {"dist": "lognormal", "median": 1000, "p90": 3000},
    ...     "output_tokens": {"dist": "geometric", "mean": 200},
    ... }]})
    >>> w = sample_workload(spec, duration_s=3600.0, seed=np.random.SeedSequence(7))
    >>> 17_000 < len(w) < 19_000, w.class_names
    (True, ('chat',))
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be finite and > 0, got {duration_s}")
    times: list[NDArray[np.float64]] = []
    inputs: list[NDArray[np.int64]] = []
    outputs: list[NDArray[np.int64]] = []
    ids: list[NDArray[np.int32]] = []
    closed: list[ClosedLoopSource] = []
    prefixed: list[NDArray[np.bool_]] = []
    identity: list[PromptBlocks | None] = []  # per open-loop class, its prompt identity
    for class_id, cls in enumerate(spec.classes):
        class_seed = component_seed(seed, cls.name)
        if isinstance(cls.arrivals, ClosedLoopArrivals):
            assert cls.prompt_tokens is not None and cls.output_tokens is not None
            source = ClosedLoopSource(
                class_id=class_id,
                users=cls.arrivals.users,
                arrivals=cls.arrivals,
                prompt_tokens=cls.prompt_tokens,
                output_tokens=cls.output_tokens,
                seed=class_seed,
            )
            closed.append(source)
            continue
        if isinstance(cls.arrivals, SessionArrivals):
            t, inp, out, blocks = _sample_session_class(cls, duration_s, class_seed)
            has, pb = np.zeros(t.size, dtype=bool), blocks
        else:
            t, inp, out, has = _sample_class(cls, duration_s, class_seed)
            pb = None
        identity.append(pb)
        prefixed.append(has)
        times.append(t)
        inputs.append(inp)
        outputs.append(out)
        ids.append(np.full(t.size, class_id, dtype=np.int32))
    if not times:  # only closed-loop classes
        times, inputs, outputs = [np.empty(0)], [np.empty(0, np.int64)], [np.empty(0, np.int64)]
        ids = [np.empty(0, np.int32)]
        prefixed = [np.empty(0, bool)]
    arrival = np.concatenate(times)
    order = np.argsort(arrival, kind="stable")
    return Workload(
        arrival_s=_readonly(arrival[order]),
        input_tokens=_readonly(np.concatenate(inputs)[order]),
        output_tokens=_readonly(np.concatenate(outputs)[order]),
        class_id=_readonly(np.concatenate(ids)[order]),
        class_names=spec.class_names(),
        closed_loop=tuple(closed),
        has_prefix=_readonly(np.concatenate(prefixed)[order]),
        prompt_blocks=_merge_identities(spec, identity, inputs, prefixed, order),
    )
