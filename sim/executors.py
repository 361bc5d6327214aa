"""Where sweep work runs: in this process, in local processes, or on a Dask cluster (an edge).

An executor runs one function over a list of work items and yields ``(index, result)`` as
each item finishes, in whatever order they finish, so that the caller can store each result
at once. Items and results must be picklable; the function must be importable (a top-level
function of an installed module) because worker processes import it by name.

Each executor opens what it needs when iteration starts and closes it when iteration ends,
is abandoned or fails: nothing outlives the call.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = [
    "EXECUTORS",
    "DaskExecutor",
    "Executor",
    "ProcessExecutor",
    "SerialExecutor",
    "make_executor",
]

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn`` over ``items``; yields ``(index into items, fn(item))`` as each finishes."""

    def imap_unordered(
        self, fn: Callable[[T], R], items: Sequence[T]
    ) -> Iterator[tuple[int, R]]: ...


def _cores() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class SerialExecutor:
    """Everything in this process, in order (debugging, tiny sweeps, notebooks)."""

    def imap_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        for i, item in enumerate(items):
            yield i, fn(item)


@dataclass(frozen=True)
class ProcessExecutor:
    """A pool of local worker processes (``workers=0``: one per CPU core).

    Workers are started with the ``spawn`` method: a fork of a process that holds threads
    (numba, BLAS, a Dask client) can deadlock. Each worker imports the package once.
    """

    workers: int = 0

    def imap_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        if not items:
            return
        n = min(self.workers or _cores(), len(items))
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(n, mp_context=ctx, initializer=_ignore_sigint) as pool:
            # Keep a bounded number of items in flight: results stream back as they finish
            # and an interrupted sweep leaves little queued work behind.
            todo = iter(enumerate(items))
            running: dict[Future[R], int] = {}
            try:
                for i, item in _take(todo, 2 * n):
                    running[pool.submit(fn, item)] = i
                while running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        i = running.pop(fut)
                        for j, item in _take(todo, 1):
                            running[pool.submit(fn, item)] = j
                        yield i, fut.result()
            finally:
                for fut in running:
                    fut.cancel()


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group: the parent alone handles it (stops handing out
    # work, lets the running units finish), instead of every worker printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _take(it: Iterator[tuple[int, T]], n: int) -> list[tuple[int, T]]:
    out = []
    for _ in range(n):
        nxt = next(it, None)
        if nxt is None:
            break
        out.append(nxt)
    return out


@dataclass(frozen=True)
class DaskExecutor:
    """A Dask distributed cluster.

    With ``scheduler`` (``"tcp://host:8786"``) the work goes to that running cluster, whose
    workers must have this package installed (same version, for identical results). Without
    it an embedded ``LocalCluster`` is started for the call — ``workers`` processes (``0``:
    one per core), one thread each — and closed afterwards. Requires ``dask[distributed]``.
    """

    workers: int = 0
    scheduler: str | None = None

    def imap_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        from dask.distributed import Client, LocalCluster, as_completed

        if not items:
            return
        cluster: Any = None
        if self.scheduler is not None:
            client = Client(self.scheduler)
        else:
            cluster = LocalCluster(
                n_workers=min(self.workers or _cores(), len(items)),
                threads_per_worker=1,
                processes=True,
                # a free port: the default 8787 warns when another cluster holds it
                dashboard_address=":0",
                silence_logs=logging.WARNING,
            )
            client = Client(cluster)
        try:
            futures = client.map(fn, list(items), pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            try:
                for fut, result in as_completed(futures, with_results=True):
                    yield index[fut.key], result
            finally:
                client.cancel(futures)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


EXECUTORS = ("serial", "processes", "dask")


def make_executor(
    executor: str | Executor, *, workers: int = 0, scheduler: str | None = None
) -> Executor:
    """The executor named ``executor`` (``serial``, ``processes``, ``dask``), or ``executor``
    itself when it is one already.

    Examples
    --------
    >>> make_executor("processes", workers=2)
    ProcessExecutor(workers=2)
    """
    if workers < 0:
        raise ValueError(f"workers must be 0 (all cores) or more, got {workers}")
    if not isinstance(executor, str):
        return executor
    if scheduler is not None and executor != "dask":
        raise ValueError(f"a scheduler address needs the dask executor, not {executor!r}")
    if executor == "serial":
        return SerialExecutor()
    if executor == "processes":
        return ProcessExecutor(workers)
    if executor == "dask":
        return DaskExecutor(workers, scheduler)
    raise ValueError(f"unknown executor {executor!r} (expected one of {', '.join(EXECUTORS)})")
