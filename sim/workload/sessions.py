"""Multi-turn sessions: conversations whose every turn resends the whole history.

Chat and agent traffic reuses prompts through its history: turn ``k`` of a conversation
sends the system prompt, every earlier message and reply, and a new message. The
``sessions`` arrival process draws such conversations:

* sessions start as an open-loop stream (``starts``: Poisson, gamma or MMPP, thinned by the
  class's ``profile`` if any);
* a session has ``turns`` turns (a length distribution, >= 1);
* each turn's new message has the class's ``prompt_tokens`` tokens and its reply the class's
  ``output_tokens`` tokens, so turn ``k``'s prompt is
  ``system + Σ_{j<k} (message_j + reply_j) + message_k``;
* turns are open-loop requests: turn ``k + 1`` arrives ``response_time_s + think`` after
  turn ``k`` *arrived*, where ``response_time_s`` is the expected time until the user has
  the reply (a stated assumption, not the simulated latency: the arrival stream must exist
  before the fleet runs) and ``think`` is drawn (exponential or fixed, mean
  ``think_time_s``);
* each session belongs to one of ``tenants`` tenants (uniformly drawn), all of whose
  sessions start with the tenant's system prompt of ``system_prompt_tokens`` tokens.

Sessions start inside the window ``[0, duration_s)``; turns that would arrive after it are
not sent. No session is in progress at time 0 (use the horizon's warm-up to fill caches).

**Prompt identity.** The session's text is one stream (system prompt, message 0, reply 0,
message 1, ...), cut into blocks of ``block_tokens``; turn ``k``'s prompt is the stream's
first ``input_tokens`` tokens. Its full blocks carry the stream's hashes (shared by every
turn of the session that covers them; blocks wholly inside the system prompt are shared by
every session of the tenant); its last, partial block gets a hash of its own, since what
follows it differs from the next turn's. Hashes are chained in meaning (the ``k``-th
identifies blocks ``0..k``; see :mod:`sim.workload.identity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from sim._base import Frozen
from sim.workload.arrivals import GammaArrivals, MMPPArrivals, PoissonArrivals
from sim.workload.identity import PromptBlocks, keyed_hashes
from sim.workload.lengths import LengthSpec

__all__ = ["SessionArrivals", "SessionSample", "sample_sessions"]

StartSpec = Annotated[
    PoissonArrivals | GammaArrivals | MMPPArrivals, Field(discriminator="process")
]


class SessionArrivals(Frozen):
    """Multi-turn sessions (``process: sessions``); see the module doc.

    Examples
    --------
    >>> s = SessionArrivals.model_validate({
    ...     "process": "sessions",
    ...     "starts": {"process": "poisson", "rate_rps": 0.5},
    ...     "turns": {"dist": "fixed", "value": 4},
    ...     "think_time_s": 20.0,
    ...     "system_prompt_tokens": 800, "tenants": 3})
    >>> s.mean_rate_rps(), s.block_tokens
    (2.0, 64)
    """

    process: Literal["sessions"] = "sessions"
    starts: StartSpec = Field(description="when sessions start (an open-loop process)")
    turns: LengthSpec = Field(description="turns per session")
    think_time_s: float = Field(ge=0.0, description="mean time the user thinks between turns")
    think_dist: Literal["exponential", "fixed"] = "exponential"
    response_time_s: float = Field(
        default=0.0,
        ge=0.0,
        description="assumed time from a turn's arrival until its reply is read; the next turn "
        "arrives this plus a think time after",
    )
    tenants: int = Field(default=1, ge=1, description="tenants, each with its system prompt")
    system_prompt_tokens: int = Field(
        default=0, ge=0, description="length of each tenant's system prompt (0: none)"
    )
    block_tokens: int = Field(default=64, ge=1, description="tokens per prompt-identity block")

    def mean_turns(self) -> float:
        """Mean turns per session (before the window cuts sessions short)."""
        return self.turns.mean()

    def mean_rate_rps(self) -> float:
        """Long-run request rate: session starts per second times mean turns."""
        return self.starts.mean_rate_rps() * self.mean_turns()

    def mean_input_tokens(self, message_mean: float, reply_mean: float) -> float:
        """Mean prompt of a turn, sessions uncut by the window:
        ``system + message + E[K(K − 1)/2] / E[K] · (message + reply)`` for ``K`` turns
        per session (a turn ``k`` carries ``k`` earlier exchanges).

        Examples
        --------
        >>> spec = SessionArrivals(starts={"process": "poisson", "rate_rps": 1.0},
        ...     turns={"dist": "fixed", "value": 3}, think_time_s=1.0, system_prompt_tokens=10)
        >>> spec.mean_input_tokens(50.0, 30.0)
        140.0
        """
        k1 = self.turns.mean()
        k2 = self.turns.std() ** 2 + k1 * k1
        history = (k2 - k1) / (2.0 * k1)
        return self.system_prompt_tokens + message_mean + history * (message_mean + reply_mean)

    def sample_think(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """``n`` think times, seconds (fixed ones consume no random numbers)."""
        if self.think_dist == "fixed" or self.think_time_s == 0:
            return np.full(n, self.think_time_s, dtype=np.float64)
        return rng.exponential(self.think_time_s, n)


@dataclass(frozen=True, eq=False)
class SessionSample:
    """The turns of one class's sessions, in session order (turns of a session together).

    Attributes
    ----------
    arrival_s : ndarray of float64
    input_tokens, output_tokens : ndarray of int64
        The turn's whole prompt, and its reply.
    message_tokens : ndarray of int64
        The turn's new message (the last part of its prompt).
    session, turn, tenant : ndarray of int64
        Session index, turn index within it (from 0), and its tenant.
    prompt_blocks : PromptBlocks
        The turns' prompt identities.
    """

    arrival_s: NDArray[np.float64]
    input_tokens: NDArray[np.int64]
    output_tokens: NDArray[np.int64]
    message_tokens: NDArray[np.int64]
    session: NDArray[np.int64]
    turn: NDArray[np.int64]
    tenant: NDArray[np.int64]
    prompt_blocks: PromptBlocks


def _within(values: NDArray[np.int64], first: NDArray[np.int64]) -> NDArray[np.int64]:
    # cumulative sum restarted at each session's first turn, exclusive of the current turn
    cs = np.cumsum(values)
    excl = cs - values
    return excl - excl[first]


def sample_sessions(
    spec: SessionArrivals,
    starts_s: NDArray[np.float64],
    *,
    duration_s: float,
    message_tokens: LengthSpec,
    reply_tokens: LengthSpec,
    rngs: dict[str, np.random.Generator],
    salt: int,
) -> SessionSample:
    """The turns of sessions starting at ``starts_s`` (see the module doc).

    Parameters
    ----------
    spec : SessionArrivals
    starts_s : ndarray of float64
        Session start times (already sampled and thinned).
    duration_s : float, keyword-only
        Turns at or after this are not sent.
    message_tokens, reply_tokens : LengthSpec, keyword-only
        The class's ``prompt_tokens`` and ``output_tokens``.
    rngs : dict, keyword-only
        Generators named ``turns``, ``think_s``, ``prompt_tokens``, ``output_tokens``,
        ``tenant`` (each its own stream).
    salt : int, keyword-only
        Names the class's hashes (:func:`sim.workload.identity.name_salt`).

    Returns
    -------
    SessionSample

    Examples
    --------
    >>> from sim.workload.lengths import FixedLength
    >>> spec = SessionArrivals(starts={"process": "poisson", "rate_rps": 1.0},
    ...     turns={"dist": "fixed", "value": 3}, think_time_s=10.0, think_dist="fixed",
    ...     response_time_s=2.0, system_prompt_tokens=100, block_tokens=64)
    >>> rngs = {k: np.random.default_rng(0) for k in
    ...         ("turns", "think_s", "prompt_tokens", "output_tokens", "tenant")}
    >>> s = sample_sessions(spec, np.array([0.0]), duration_s=60.0,
    ...     message_tokens=FixedLength(value=50), reply_tokens=FixedLength(value=30),
    ...     rngs=rngs, salt=7)
    >>> s.arrival_s.tolist(), s.input_tokens.tolist()
    ([0.0, 12.0, 24.0], [150, 230, 310])
    >>> s.prompt_blocks.counts.tolist()
    [3, 4, 5]
    """
    starts = np.asarray(starts_s, dtype=np.float64)
    n_sessions = starts.size
    turns = spec.turns.sample(rngs["turns"], n_sessions)
    n = int(turns.sum())
    session = np.repeat(np.arange(n_sessions, dtype=np.int64), turns)
    first_of = np.zeros(n_sessions, dtype=np.int64)
    if n_sessions:
        np.cumsum(turns[:-1], out=first_of[1:])
    first = first_of[session]
    turn = np.arange(n, dtype=np.int64) - first
    msg = message_tokens.sample(rngs["prompt_tokens"], n)
    reply = reply_tokens.sample(rngs["output_tokens"], n)
    think = spec.sample_think(rngs["think_s"], n)
    tenant_of = rngs["tenant"].integers(0, spec.tenants, size=n_sessions).astype(np.int64)
    # turn k arrives sum over its earlier turns of (response time + think) after the start
    gap = np.where(turn > 0, spec.response_time_s + think, 0.0)
    elapsed = np.cumsum(gap)
    arrival = starts[session] + (elapsed - elapsed[first])  # gap is 0 at a first turn
    history = _within(msg + reply, first).astype(np.int64)
    inp = spec.system_prompt_tokens + history + msg
    keep = arrival < duration_s
    tenant = tenant_of[session]
    blocks = _session_blocks(spec, inp[keep], session[keep], tenant[keep], salt)
    return SessionSample(
        arrival_s=arrival[keep],
        input_tokens=inp[keep],
        output_tokens=reply[keep],
        message_tokens=msg[keep],
        session=session[keep],
        turn=turn[keep],
        tenant=tenant[keep],
        prompt_blocks=blocks,
    )


def _session_blocks(
    spec: SessionArrivals,
    tokens: NDArray[np.int64],
    session: NDArray[np.int64],
    tenant: NDArray[np.int64],
    salt: int,
) -> PromptBlocks:
    # full blocks: the session stream's hash of (session, position), or the tenant's
    # system-prompt hash of (tenant, position) inside the system prompt; the last, partial
    # block: a hash of its own (keyed by the turn's row)
    b = spec.block_tokens
    counts = -(-tokens // b)
    full = tokens // b
    offsets = np.zeros(tokens.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    row = np.repeat(np.arange(tokens.size, dtype=np.int64), counts)
    pos = np.arange(total, dtype=np.int64) - offsets[:-1][row]
    stride = int(max(1, full.max(initial=0))) + 1
    hashes = keyed_hashes(salt, session[row] * stride + pos)
    system_full = spec.system_prompt_tokens // b
    inside = pos < system_full
    hashes[inside] = keyed_hashes(salt ^ 0x2545F491, tenant[row][inside] * stride + pos[inside])
    partial = pos >= full[row]
    hashes[partial] = keyed_hashes(salt ^ 0x4F1BBCDC, row[partial])
    return PromptBlocks(int(b), offsets, hashes)
