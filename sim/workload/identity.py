"""Prompt identity: which requests share which prompt prefix.

A request's prompt is cut into blocks of ``block_tokens`` tokens; it carries one hash per
block, ``ceil(input_tokens / block_tokens)`` of them (the last one covers the rest of the
prompt, a partial block). Hashes are stored *chained*: the ``k``-th hash of a request
identifies its first ``k + 1`` blocks, so two requests share their first ``m`` blocks exactly
when their first ``m`` hashes are equal, and equal ``k``-th hashes imply equal prefixes. Raw
per-block ids (as a trace may hold them) are chained by :func:`chain_hashes`.

Negative hashes mark blocks no other request shares (requests whose trace or class says
nothing about their prompt's identity): they are distinct within a workload, never equal to
a chained hash, and never cached (:func:`unique_hashes`).

The per-request lists are stored flat (CSR): request ``i``'s hashes are
``hashes[offsets[i]:offsets[i + 1]]``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "PromptBlocks",
    "chain_hashes",
    "keyed_hashes",
    "name_salt",
    "synthetic_blocks",
    "unique_hashes",
]

_MUL = np.uint64(0x9E3779B97F4A7C15)
_MASK63 = np.uint64((1 << 63) - 1)


def chain_hashes(offsets: NDArray[np.int64], raw: NDArray[np.int64]) -> NDArray[np.int64]:
    """Chain raw per-block ids so that the ``k``-th value identifies blocks ``0..k``.

    ``h_0 = mix(0, raw_0)``, ``h_k = mix(h_{k-1}, raw_k)`` with a 64-bit mixing function
    (splitmix64); values are non-negative int64. Deterministic across processes and
    platforms.

    Examples
    --------
    >>> off = np.array([0, 2, 4])
    >>> h = chain_hashes(off, np.array([7, 8, 7, 9]))
    >>> bool(h[0] == h[2]), bool(h[1] == h[3])
    (True, False)
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    raw = np.asarray(raw, dtype=np.int64).astype(np.uint64)
    out = np.empty(raw.size, dtype=np.uint64)
    if raw.size == 0:
        return out.astype(np.int64)
    lengths = np.diff(offsets)
    pos = np.arange(raw.size, dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    prev = np.zeros(raw.size, dtype=np.uint64)
    # k-th hash of every request at once, k = 0, 1, ... (vectorised over requests)
    with np.errstate(over="ignore"):
        for k in range(int(lengths.max(initial=0))):
            at = pos == k
            if k > 0:
                prev[at] = out[np.flatnonzero(at) - 1]
            out[at] = _mix(prev[at] * _MUL + raw[at] + np.uint64(k + 1))
    return (out & _MASK63).astype(np.int64)


def unique_hashes(n: int, start: int = 0) -> NDArray[np.int64]:
    """``n`` distinct negative hashes, ``-(start + 1)``, ``-(start + 2)``, ...: blocks that
    no other request shares.

    Examples
    --------
    >>> unique_hashes(3).tolist()
    [-1, -2, -3]
    """
    return -(np.arange(n, dtype=np.int64) + (start + 1))


def synthetic_blocks(
    input_tokens: NDArray[np.int64],
    block_tokens: int,
    *,
    prefix_tokens: int = 0,
    has_prefix: NDArray[np.bool_] | None = None,
    name: str = "",
) -> PromptBlocks:
    """Prompt blocks of requests whose only known identity is a shared prefix (or none).

    Each prompt gets ``ceil(input / block_tokens)`` hashes (at least one). The requests with
    ``has_prefix`` share the whole blocks of a ``prefix_tokens``-token prefix, a chain
    named by ``name`` (equal names, equal chains); every other block is unique
    (:func:`unique_hashes`).

    Examples
    --------
    >>> pb = synthetic_blocks(np.array([10, 9, 3]), 4, prefix_tokens=8,
    ...                       has_prefix=np.array([True, True, False]), name="chat")
    >>> pb.counts.tolist(), bool(np.all(pb.of(0)[:2] == pb.of(1)[:2])), int((pb.hashes < 0).sum())
    ([3, 3, 1], True, 3)
    """
    inp = np.asarray(input_tokens, dtype=np.int64)
    counts = np.maximum((inp + block_tokens - 1) // block_tokens, 1)
    offsets = np.zeros(inp.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    pos = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], counts)
    shared = np.zeros(inp.size, dtype=np.int64)
    if prefix_tokens > 0 and has_prefix is not None:
        shared = np.where(has_prefix, prefix_tokens // block_tokens, 0)
    mask = np.repeat(shared, counts) > pos
    tag = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little") >> 2
    hashes = chain_hashes(offsets, np.full(pos.size, tag, dtype=np.int64) ^ pos)
    hashes[~mask] = unique_hashes(int((~mask).sum()))
    return PromptBlocks(block_tokens, offsets, hashes)


def _mix(z: NDArray[np.uint64]) -> NDArray[np.uint64]:
    # splitmix64 finaliser
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass(frozen=True, eq=False)
class PromptBlocks:
    """Per-request chained prompt-block hashes (see the module doc).

    Attributes
    ----------
    block_tokens
        Tokens per hashed block (512 for Mooncake traces).
    offsets
        int64, ``n + 1`` entries, ``offsets[0] == 0``, non-decreasing.
    hashes
        int64, chained hashes, ``offsets[-1]`` entries.
    """

    block_tokens: int
    offsets: NDArray[np.int64]
    hashes: NDArray[np.int64]

    def __post_init__(self) -> None:
        if self.block_tokens < 1:
            raise ValueError(f"block_tokens must be >= 1, got {self.block_tokens}")
        if self.offsets.ndim != 1 or self.offsets.size < 1 or self.offsets[0] != 0:
            raise ValueError("offsets must be 1-D and start at 0")
        if self.offsets[-1] != self.hashes.size or np.any(np.diff(self.offsets) < 0):
            raise ValueError("offsets must be non-decreasing and end at len(hashes)")

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    @property
    def counts(self) -> NDArray[np.int64]:
        """Hashes per request."""
        return np.diff(self.offsets)

    def of(self, i: int) -> NDArray[np.int64]:
        """Request ``i``'s chained hashes."""
        return self.hashes[self.offsets[i] : self.offsets[i + 1]]

    def take(self, order: NDArray[np.integer]) -> PromptBlocks:
        """The requests ``order`` (a permutation or selection), in that order."""
        order = np.asarray(order, dtype=np.int64)
        counts = self.counts[order]
        offsets = np.zeros(order.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        starts = self.offsets[:-1][order]
        idx = np.repeat(starts - offsets[:-1], counts) + np.arange(offsets[-1], dtype=np.int64)
        return PromptBlocks(self.block_tokens, offsets, self.hashes[idx])

    @staticmethod
    def concat(parts: list[PromptBlocks]) -> PromptBlocks:
        """Requests of ``parts`` one after the other (all with the same ``block_tokens``)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        bt = {p.block_tokens for p in parts}
        if len(bt) != 1:
            raise ValueError(f"parts have different block_tokens: {sorted(bt)}")
        counts = np.concatenate([p.counts for p in parts])
        offsets = np.zeros(counts.size + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return PromptBlocks(bt.pop(), offsets, np.concatenate([p.hashes for p in parts]))


def name_salt(*names: str) -> int:
    """A stable 63-bit number naming a source of hashes (e.g. a class), so that hashes made
    for different sources do not meet.

    Examples
    --------
    >>> name_salt("chat") == name_salt("chat") != name_salt("code")
    True
    """
    digest = hashlib.blake2b("\x1f".join(names).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def keyed_hashes(salt: int, keys: ArrayLike) -> NDArray[np.int64]:
    """Non-negative int64 hashes of integer ``keys`` under ``salt`` (splitmix64): distinct
    keys give distinct values (up to 64-bit collisions), and other salts other values."""
    k = np.asarray(keys, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        z = _mix(k * _MUL + np.uint64(salt) + np.uint64(0x632BE59BD9B4E019))
    return (z & _MASK63).astype(np.int64)
