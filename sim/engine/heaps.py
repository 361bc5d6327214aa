"""Indexed binary min-heaps for the compiled engine.

The engine keeps several sets of replicas (those with work, idle ones, the ready ones by
load) and the closed-loop users ordered by a key, and must find the smallest, change a key
and move an item in or out in ``O(log n)``. One heap is three arrays and a size:

* ``heap[0:n]`` — the items (ids ``0 … cap-1``), a binary heap;
* ``pos[item]`` — where the item sits in ``heap``, ``-1`` when it is not in the heap;
* ``key[item]`` — its key. Items compare by ``(key, id)``, so that ties go to the lowest
  id — the order a linear scan ``for i in range(n): if key[i] < best`` gives, which keeps
  the engine's choices identical to scanning every item;
* ``size[slot]`` — the number of items, in a slot of an array the caller owns.

Keys are read from ``key``: after changing an item's key, call :func:`fix`.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _less(key: np.ndarray, a: int, b: int) -> bool:
    ka = key[a]
    kb = key[b]
    return ka < kb or (ka == kb and a < b)


@numba.njit(cache=True)
def _up(heap: np.ndarray, pos: np.ndarray, key: np.ndarray, i: int) -> None:
    item = heap[i]
    while i > 0:
        parent = (i - 1) >> 1
        other = heap[parent]
        if not _less(key, item, other):
            break
        heap[i] = other
        pos[other] = i
        i = parent
    heap[i] = item
    pos[item] = i


@numba.njit(cache=True)
def _down(heap: np.ndarray, pos: np.ndarray, key: np.ndarray, n: int, i: int) -> None:
    item = heap[i]
    while True:
        child = 2 * i + 1
        if child >= n:
            break
        right = child + 1
        if right < n and _less(key, heap[right], heap[child]):
            child = right
        other = heap[child]
        if not _less(key, other, item):
            break
        heap[i] = other
        pos[other] = i
        i = child
    heap[i] = item
    pos[item] = i


@numba.njit(cache=True)
def push(
    heap: np.ndarray, pos: np.ndarray, key: np.ndarray, size: np.ndarray, s: int, item: int
) -> None:
    """Add ``item`` (not in the heap) with its current ``key[item]``."""
    n = size[s]
    heap[n] = item
    pos[item] = n
    size[s] = n + 1
    _up(heap, pos, key, n)


@numba.njit(cache=True)
def remove(
    heap: np.ndarray, pos: np.ndarray, key: np.ndarray, size: np.ndarray, s: int, item: int
) -> None:
    """Take ``item`` out of the heap (it must be in it)."""
    i = pos[item]
    n = size[s] - 1
    size[s] = n
    pos[item] = -1
    if i == n:
        return
    last = heap[n]
    heap[i] = last
    pos[last] = i
    _up(heap, pos, key, i)
    _down(heap, pos, key, n, pos[last])


@numba.njit(cache=True)
def fix(
    heap: np.ndarray, pos: np.ndarray, key: np.ndarray, size: np.ndarray, s: int, item: int
) -> None:
    """Restore the heap after ``key[item]`` changed (``item`` is in the heap)."""
    i = pos[item]
    _up(heap, pos, key, i)
    _down(heap, pos, key, size[s], pos[item])


@numba.njit(cache=True)
def second(heap: np.ndarray, key: np.ndarray, size: np.ndarray, s: int) -> int:
    """The item that would be the top once the top is gone (``-1`` with fewer than two)."""
    n = size[s]
    if n < 2:
        return -1
    if n == 2 or _less(key, heap[1], heap[2]):
        return heap[1]
    return heap[2]
