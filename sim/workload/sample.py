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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from sim.workload.arrivals import ArrivalStream, ClosedLoopArrivals
from sim.workload.identity import PromptBlocks, name_salt, synthetic_blocks, unique_hashes
from sim.workload.lengths import EmpiricalLength, FixedLength, GeometricLength, LognormalLength
from sim.workload.profile import thin
from sim.workload.sessions import SessionArrivals, sample_sessions
from sim.workload.spec import ClassSpec, WorkloadSpec
from sim.workload.trace import TraceArrivals, TraceStream

__all__ = [
    "ClosedLoopSource",
    "Workload",
    "WorkloadStream",
    "component_seed",
    "sample_workload",
]

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
    _rngs: tuple[_Buffered, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # drawn in fixed batches: a request's values never depend on how many were drawn
        # at once
        rngs = tuple(
            _Buffered(draw, _rng(self.seed, c))
            for draw, c in (
                (self.prompt_tokens.sample, "prompt_tokens"),
                (self.output_tokens.sample, "output_tokens"),
                (self.arrivals.sample_think, "think_s"),
            )
        )
        object.__setattr__(self, "_rngs", rngs)

    def draw(self, n: int) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """``n`` more ``(input_tokens, output_tokens, think_s)`` from this class's streams."""
        r_in, r_out, r_think = self._rngs
        return r_in.take(n), r_out.take(n), r_think.take(n)

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


# lengths and prefix draws are taken from per-class streams in fixed batches, so that a
# request's draws never depend on how many requests were read at once
_LENGTH_BATCH = 65_536


class _Buffered:
    """Values of ``draw(rng, _LENGTH_BATCH)`` handed out ``n`` at a time, in order."""

    def __init__(
        self, draw: Callable[[np.random.Generator, int], NDArray[Any]], rng: np.random.Generator
    ) -> None:
        self._draw, self._rng = draw, rng
        self._buf: NDArray[Any] | None = None
        self._pos = 0

    def take(self, n: int) -> NDArray[Any]:
        parts = []
        while n > 0:
            if self._buf is None or self._pos == self._buf.size:
                self._buf, self._pos = self._draw(self._rng, _LENGTH_BATCH), 0
            k = min(n, self._buf.size - self._pos)
            parts.append(self._buf[self._pos : self._pos + k])
            self._pos += k
            n -= k
        if not parts:
            return self._draw(self._rng, 0)
        return parts[0].copy() if len(parts) == 1 else np.concatenate(parts)


class _ClassStream:
    """One open-loop class's requests read forward in time."""

    def __init__(self, spec: ClassSpec, seed: np.random.SeedSequence, duration_s: float) -> None:
        arrivals = spec.arrivals
        self._sessions: (
            tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], PromptBlocks] | None
        ) = None
        self._rows: TraceStream | None = None
        self._times: ArrivalStream | None = None
        self._trace = None
        self._thin: np.random.Generator | None = None
        self._profile = spec.profile
        if isinstance(arrivals, TraceArrivals):
            self._trace = arrivals.load(
                read_input_tokens=spec.prompt_tokens is None,
                read_output_tokens=spec.output_tokens is None,
            )
            if self._trace.prompt_blocks is not None and spec.prefix is not None:
                raise ValueError(
                    f"class {spec.name!r}: a shared prefix cannot be added to a trace that "
                    "carries prompt identity (set prompt_identity: false on its arrivals)"
                )
            boot = arrivals.bootstrap_block_s
            self._rows = self._trace.stream(
                rate_scale=arrivals.rate_scale,
                rng=None if boot is None else _rng(seed, "bootstrap"),
                block_s=boot,
            )
        elif isinstance(arrivals, ClosedLoopArrivals):  # pragma: no cover - filtered by caller
            raise TypeError("closed-loop classes have no arrival times")
        elif isinstance(arrivals, SessionArrivals):
            # a session's turns span windows: every turn of the horizon is drawn at once
            self._sessions = _sample_session_class(spec, duration_s, seed)
            self._session_pos = 0
        else:
            factor = 1.0 if spec.profile is None else spec.profile.peak_multiplier()
            self._times = arrivals.stream(_rng(seed, "arrivals"), rate_factor=factor)
            if spec.profile is not None:
                self._thin = _rng(seed, "profile")
        self._inp = self._out = None
        if spec.prompt_tokens is not None:
            self._inp = _Buffered(spec.prompt_tokens.sample, _rng(seed, "prompt_tokens"))
        if spec.output_tokens is not None:
            self._out = _Buffered(spec.output_tokens.sample, _rng(seed, "output_tokens"))
        self._prefix = spec.prefix
        self._share = None
        if spec.prefix is not None:
            self._share = _Buffered(lambda rng, n: rng.random(n), _rng(seed, "prefix"))

    def until(
        self, t_end: float
    ) -> tuple[
        NDArray[np.float64],
        NDArray[np.int64],
        NDArray[np.int64],
        NDArray[np.bool_],
        PromptBlocks | None,
    ]:
        """The class's next requests arriving before ``t_end``: times, input and output
        tokens, whether each carries the class prefix, their prompt identity (traces that
        carry one)."""
        inp = out = blocks = None
        if self._sessions is not None:
            t_all, inp_all, out_all, blk_all = self._sessions
            i = self._session_pos
            j = i + int(np.searchsorted(t_all[i:], t_end, side="left"))
            self._session_pos = j
            sel = np.arange(i, j)
            return (
                t_all[i:j],
                inp_all[i:j],
                out_all[i:j],
                np.zeros(j - i, dtype=bool),
                blk_all.take(sel),
            )
        if self._rows is not None:
            assert self._trace is not None
            t, row = self._rows.until(t_end)
            if self._trace.input_tokens is not None:
                inp = self._trace.input_tokens[row]
            if self._trace.output_tokens is not None:
                out = self._trace.output_tokens[row]
            if self._trace.prompt_blocks is not None:
                blocks = self._trace.prompt_blocks.take(row)
        else:
            assert self._times is not None
            t = self._times.until(t_end)
            if self._thin is not None:
                assert self._profile is not None
                t = thin(t, self._profile, self._thin)
        if self._inp is not None:
            inp = self._inp.take(t.size)
        if self._out is not None:
            out = self._out.take(t.size)
        assert inp is not None and out is not None  # guaranteed by ClassSpec validation
        if self._share is None or self._prefix is None:
            has = np.zeros(t.size, dtype=bool)
        else:
            has = self._share.take(t.size) < self._prefix.share
            inp = inp + np.where(has, self._prefix.tokens, 0)
        return t, inp, out, has, blocks


def _sample_session_class(
    spec: ClassSpec, duration_s: float, seed: np.random.SeedSequence
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64], PromptBlocks]:
    # sessions (sim.workload.sessions): starts from the class's arrivals stream (thinned by
    # its profile), each turn's lengths and think time from the class's named streams;
    # turns sorted by arrival (stably)
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
    order = np.argsort(turns.arrival_s, kind="stable")
    return (
        turns.arrival_s[order],
        turns.input_tokens[order],
        turns.output_tokens[order],
        turns.prompt_blocks.take(order),
    )


class WorkloadStream:
    """A replication's open-loop requests read forward in time, a window at a time.

    :meth:`until` returns the requests arriving in ``[t, t_end)`` (``t`` where the previous
    call stopped; never past ``duration_s``) as a :class:`Workload`. Every random stream is
    drawn in fixed batches, so the requests of ``[0, T)`` are bit-identical whether read at
    once (:func:`sample_workload`) or in any number of windows: a simulation can generate
    arrivals as its clock advances and hold only those of the current window.

    Examples
    --------
    >>> spec = WorkloadSpec.model_validate({"classes": [{
    ...     "name": "chat",
    ...     "arrivals": {"process": "gamma", "rate_rps": 5.0, "cv": 2.0},
    ...     "prompt_tokens": {"dist": "lognormal", "median": 1000, "p90": 3000},
    ...     "output_tokens": {"dist": "geometric", "mean": 200},
    ... }]})
    >>> whole = sample_workload(spec, duration_s=600.0, seed=np.random.SeedSequence(7))
    >>> s = WorkloadStream(spec, duration_s=600.0, seed=np.random.SeedSequence(7))
    >>> parts = [s.until(t) for t in (1.5, 200.0, 600.0)]
    >>> bool(np.array_equal(np.concatenate([p.input_tokens for p in parts]), whole.input_tokens))
    True
    """

    def __init__(
        self, spec: WorkloadSpec, *, duration_s: float, seed: np.random.SeedSequence
    ) -> None:
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ValueError(f"duration_s must be finite and > 0, got {duration_s}")
        self.duration_s = duration_s
        self.class_names = spec.class_names()
        self._classes: list[tuple[int, _ClassStream]] = []
        self._open_specs: list[tuple[int, ClassSpec]] = []
        closed: list[ClosedLoopSource] = []
        for class_id, cls in enumerate(spec.classes):
            class_seed = component_seed(seed, cls.name)
            if isinstance(cls.arrivals, ClosedLoopArrivals):
                assert cls.prompt_tokens is not None and cls.output_tokens is not None
                closed.append(
                    ClosedLoopSource(
                        class_id=class_id,
                        users=cls.arrivals.users,
                        arrivals=cls.arrivals,
                        prompt_tokens=cls.prompt_tokens,
                        output_tokens=cls.output_tokens,
                        seed=class_seed,
                    )
                )
            else:
                self._classes.append((class_id, _ClassStream(cls, class_seed, duration_s)))
                self._open_specs.append((class_id, cls))
        self.closed_loop = tuple(closed)
        self.read_s = 0.0
        self._spec = spec
        self._unique = 0  # negative hashes handed out so far (blocks no request shares)

    def until(self, t_end: float) -> Workload:
        """The open-loop requests arriving in ``[read_s, min(t_end, duration_s))``, merged by
        a stable sort on arrival time (ties keep declaration order)."""
        t_end = min(t_end, self.duration_s)
        times: list[NDArray[np.float64]] = [np.empty(0)]
        inputs: list[NDArray[np.int64]] = [np.empty(0, np.int64)]
        outputs: list[NDArray[np.int64]] = [np.empty(0, np.int64)]
        ids: list[NDArray[np.int32]] = [np.empty(0, np.int32)]
        prefixed: list[NDArray[np.bool_]] = [np.empty(0, bool)]
        blocks: list[PromptBlocks | None] = []
        if t_end > self.read_s:
            for class_id, cls in self._classes:
                t, inp, out, has, blk = cls.until(t_end)
                blocks.append(blk)
                times.append(t)
                inputs.append(inp)
                outputs.append(out)
                ids.append(np.full(t.size, class_id, dtype=np.int32))
                prefixed.append(has)
            self.read_s = t_end
        arrival = np.concatenate(times)
        order = np.argsort(arrival, kind="stable")
        return Workload(
            arrival_s=_readonly(arrival[order]),
            input_tokens=_readonly(np.concatenate(inputs)[order]),
            output_tokens=_readonly(np.concatenate(outputs)[order]),
            class_id=_readonly(np.concatenate(ids)[order]),
            class_names=self.class_names,
            closed_loop=self.closed_loop,
            has_prefix=_readonly(np.concatenate(prefixed)[order]),
            prompt_blocks=self._merge_blocks(blocks, inputs[1:], prefixed[1:], order),
        )

    def _merge_blocks(
        self,
        parts: list[PromptBlocks | None],
        inputs: list[NDArray[np.int64]],
        prefixed: list[NDArray[np.bool_]],
        order: NDArray[np.intp],
    ) -> PromptBlocks | None:
        # One PromptBlocks over every open-loop request, once some class has prompt
        # identity: requests of the other classes get unique hashes (a class prefix's whole
        # blocks get a chain named after the class), and negative hashes are numbered on
        # from the previous window's so that they stay distinct
        sizes = {p.block_tokens for p in parts if p is not None}
        if not sizes:
            return None
        if len(sizes) > 1:
            raise ValueError(
                f"trace classes hash prompts in blocks of different sizes: {sorted(sizes)}"
            )
        bt = sizes.pop()
        open_classes = [c for _, c in self._open_specs]
        full: list[PromptBlocks] = []
        for cls, part, inp, has in zip(open_classes, parts, inputs, prefixed, strict=True):
            if part is None:
                part = synthetic_blocks(
                    inp,
                    bt,
                    prefix_tokens=0 if cls.prefix is None else cls.prefix.tokens,
                    has_prefix=has,
                    name=cls.name,
                )
            full.append(part)
        merged = PromptBlocks.concat(full).take(order)
        hashes = merged.hashes.copy()
        neg = hashes < 0
        hashes[neg] = unique_hashes(int(neg.sum()), start=self._unique)
        self._unique += int(neg.sum())
        for a in (merged.offsets, hashes):
            a.setflags(write=False)
        return PromptBlocks(bt, merged.offsets, hashes)


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
    return WorkloadStream(spec, duration_s=duration_s, seed=seed).until(duration_s)
