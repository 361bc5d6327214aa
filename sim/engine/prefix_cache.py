"""The prefix cache's arrays: each request's prompt identity as the kernel reads it, and one
hash table per replica slot (the algorithm is in :mod:`sim.engine.kernel`).

A request's identity is a row of chained hashes, the number of tokens each hash covers and
how many of its engine blocks are cacheable (whole blocks of the prompt that the identity
covers). Its sources, one mechanism:

* the workload's prompt blocks (:mod:`sim.workload.identity`, from a trace): the leading
  non-negative hashes cover their blocks, the last one up to the end of the prompt;
  negative hashes (content no other request shares) are never cached;
* a class-level shared prefix: the requests that carry it get one synthetic hash, named
  after the class, covering the prefix's tokens. It takes precedence over a row of the
  workload's prompt blocks (whose blocks are coarser than the engine's).

Without either, the arrays are empty stubs and the cache never runs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from sim.workload import Workload

__all__ = [
    "PrefixCacheArrays",
    "build_prefix_cache",
    "class_prefix_hashes",
    "empty_tables",
    "identity_rows",
    "table_size",
]

#: Hash-table slots per KV block (at least): linear probing stays short at load ≤ 1/2.
#: A slot is 32 bytes (key, references, two LRU links), two to a cache line.
SLOTS_PER_BLOCK = 2


@dataclass(frozen=True, eq=False)
class PrefixCacheArrays:
    """The arrays :class:`~sim.engine.kernel.KernelState` takes for prefix caching."""

    enabled: bool
    mask: int  # hash-table slots - 1
    ct: NDArray[np.int64]  # (slots, table, 4): key (-1: empty), references, LRU links
    idh: NDArray[np.int64]  # identity hashes, flat
    ido: NDArray[np.int64]  # per open-loop request: offset into idh
    idb: NDArray[np.int64]  # per open-loop request: tokens per hash
    idn: NDArray[np.int64]  # per open-loop request: cacheable engine blocks


def _table(slots: int, size: int) -> NDArray[np.int64]:
    # empty hash tables: no key, no reference, no LRU link (sim.engine.kernel, T_*)
    ct = np.full((slots, size, 4), -1, dtype=np.int64)
    ct[:, :, 1] = 0
    return ct


def _name_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 2


def class_prefix_hashes(class_names: tuple[str, ...]) -> NDArray[np.int64]:
    """Per class, the synthetic hash of its shared prefix."""
    return np.array([_name_hash(f"class prefix: {name}") for name in class_names], dtype=np.int64)


def table_size(kv_blocks: int, distinct: int) -> int:
    """Hash-table slots for at most ``distinct`` cacheable blocks on a replica of
    ``kv_blocks`` blocks: a power of two, at least :data:`SLOTS_PER_BLOCK` per block."""
    table = 8
    while table < SLOTS_PER_BLOCK * min(kv_blocks, distinct):
        table *= 2
    return table


def empty_tables(slots: int, size: int) -> NDArray[np.int64]:
    """``slots`` empty hash tables of ``size`` slots."""
    return _table(slots, size)


def identity_rows(
    wl: Workload, *, prefix_tokens: NDArray[np.int64] | None, block_tokens: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]] | None:
    """The prompt identity of ``wl``'s requests as the kernel reads it: ``(idh, ido, idb,
    idn)`` — the flat hashes, and per request its offset into them, the tokens each hash
    covers and its cacheable engine blocks — or ``None`` when no request carries identity.
    Without prompt blocks the hashes are the classes' prefix hashes alone, the same for
    any set of requests of the workload (a streamed run computes its windows' rows apart).
    """
    n = len(wl)
    inp = np.asarray(wl.input_tokens, dtype=np.int64)
    pb = wl.prompt_blocks
    has_pfx = (
        np.zeros(n, dtype=bool)
        if wl.has_prefix is None or prefix_tokens is None
        else np.asarray(wl.has_prefix, dtype=bool) & (np.asarray(prefix_tokens)[wl.class_id] > 0)
    )
    if pb is None and not has_pfx.any():
        return None
    n_cls = len(wl.class_names)
    cls_hash = class_prefix_hashes(wl.class_names)
    if pb is not None:
        # leading non-negative hashes per request (a negative one and all after are unique)
        neg = np.flatnonzero(pb.hashes < 0)
        row = np.searchsorted(pb.offsets, neg, side="right") - 1
        first_neg = pb.offsets[1:].copy()
        np.minimum.at(first_neg, row, neg)
        lead = first_neg - pb.offsets[:-1]
        covered = np.minimum(lead * pb.block_tokens, inp)
        idh = np.concatenate([pb.hashes, cls_hash])
        ido = pb.offsets[:-1].astype(np.int64)
        idb = np.full(n, pb.block_tokens, dtype=np.int64)
    else:
        covered = np.zeros(n, dtype=np.int64)
        idh = cls_hash
        ido = np.zeros(n, dtype=np.int64)
        idb = np.ones(n, dtype=np.int64)
    base = idh.size - n_cls
    if has_pfx.any():
        assert prefix_tokens is not None
        p = np.asarray(prefix_tokens, dtype=np.int64)[wl.class_id]
        ido = np.where(has_pfx, base + wl.class_id, ido)
        idb = np.where(has_pfx, np.maximum(p, 1), idb)
        covered = np.where(has_pfx, p, covered)
    idn = np.minimum(covered, inp) // block_tokens
    return idh, ido, idb, idn


def build_prefix_cache(
    wl: Workload,
    *,
    prefix_tokens: NDArray[np.int64] | None,
    block_tokens: int,
    kv_blocks: int,
    slots: int,
) -> PrefixCacheArrays:
    """The identity of every open-loop request of ``wl`` and empty per-replica hash tables.

    Parameters
    ----------
    wl
        The workload (its prompt blocks, class prefixes' carriers and prompt lengths).
    prefix_tokens
        Per class, the shared prefix length in tokens (0: none), or ``None``.
    block_tokens
        The engine's KV block size, tokens.
    kv_blocks
        KV blocks per replica (the most blocks a replica can cache).
    slots
        Replica slots of the fleet.

    Returns
    -------
    PrefixCacheArrays
        ``enabled`` false (and one-slot stubs) when no request carries identity.

    Examples
    --------
    >>> from sim.workload.identity import synthetic_blocks
    >>> n = 3
    >>> wl = Workload(arrival_s=np.zeros(n), input_tokens=np.array([40, 40, 10]),
    ...               output_tokens=np.ones(n, dtype=np.int64),
    ...               class_id=np.zeros(n, dtype=np.int32), class_names=("c",),
    ...               closed_loop=(), prompt_blocks=synthetic_blocks(
    ...                   np.array([40, 40, 10]), 32, prefix_tokens=32,
    ...                   has_prefix=np.array([True, True, False]), name="c"))
    >>> pc = build_prefix_cache(wl, prefix_tokens=None, block_tokens=16, kv_blocks=100, slots=2)
    >>> pc.enabled, pc.idn.tolist(), pc.ct.shape
    (True, [2, 2, 0], (2, 16, 4))
    """
    rows = identity_rows(wl, prefix_tokens=prefix_tokens, block_tokens=block_tokens)
    if rows is None:
        z = np.zeros(1, dtype=np.int64)
        return PrefixCacheArrays(False, 0, _table(slots, 1), z, z, z + 1, z)
    idh, ido, idb, idn = rows
    table = table_size(kv_blocks, int(idn.sum()) + 1)
    return PrefixCacheArrays(
        enabled=True,
        mask=table - 1,
        ct=_table(slots, table),
        idh=np.ascontiguousarray(idh, dtype=np.int64),
        ido=np.ascontiguousarray(ido, dtype=np.int64),
        idb=np.ascontiguousarray(idb, dtype=np.int64),
        idn=np.ascontiguousarray(idn, dtype=np.int64),
    )
