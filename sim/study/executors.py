"""Where parallel work runs: in this process, in local processes, or on a Dask cluster (an edge).

An executor runs one function over a list of work items and yields ``(index, result)`` as
each item finishes, in whatever order they finish, so that the caller can store each result
at once. Items and results must be picklable; the function must be importable (a top-level
function of an installed module) because worker processes import it by name.

:func:`sim.run` (and :meth:`~sim.RunResult.option_runs`), :func:`sim.sweep`,
:func:`sim.plan_capacity`, :func:`sim.find_crossover` and :func:`sim.tornado` all take the
same two keywords, resolved by :func:`make_executor`:

``executor``
    ``"serial"`` (this process, in order), ``"processes"`` (a local pool started with
    ``spawn``), ``"dask"`` (an embedded ``LocalCluster``), an :class:`Executor` such as
    ``DaskExecutor(scheduler="tcp://host:8786")``, or ``None``: this process when
    ``workers`` is ``None`` or ``1``, else ``"processes"``.
``workers``
    Worker processes of ``processes`` / ``dask``; ``None`` or ``0``: one per CPU core.
    Ignored by ``serial`` and by an :class:`Executor` given as such.

Each executor opens what it needs when iteration starts and closes it when iteration ends,
is abandoned or fails: nothing outlives the call. Inside ``with session(executor) as
live:``, what ``live`` starts (a pool, a cluster) is kept for every call in the block
instead, and closed when the block ends.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = [
    "EXECUTORS",
    "DaskExecutor",
    "Executor",
    "ProcessExecutor",
    "SerialExecutor",
    "make_executor",
    "session",
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


def local_processes(runner: Executor, units: int) -> int:
    """How many replications ``runner`` holds in this machine's memory at once for ``units``
    units of work (a remote Dask cluster's workers are on other machines: none here)."""
    if isinstance(runner, _Pooled):
        if isinstance(runner, DaskExecutor) and runner.scheduler is not None:
            return 0
        return min(runner.workers or _cores(), units)
    return 1 if units > 0 else 0


@dataclass(frozen=True)
class SerialExecutor:
    """Everything in this process, in order (debugging, tiny sweeps, notebooks)."""

    def imap_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        for i, item in enumerate(items):
            yield i, fn(item)


class _Live(Protocol):
    """What a pooled executor starts: runs items like an executor, and is closed after."""

    def imap_unordered(
        self, fn: Callable[[T], R], items: Sequence[T]
    ) -> Iterator[tuple[int, R]]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class _Pooled:
    """An executor that starts workers (``workers=0``: one per CPU core): for one call, as
    many as it has items, or once for a whole :func:`session`."""

    workers: int = 0

    def imap_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        if not items:
            return
        with self._open(min(self.workers or _cores(), len(items))) as live:
            yield from live.imap_unordered(fn, items)

    def session(self) -> AbstractContextManager[Executor]:
        """A context manager: the same workers for every call in its block (see
        :func:`session`)."""
        return self._open(self.workers or _cores())

    @contextmanager
    def _open(self, n: int) -> Iterator[_Live]:
        live = self._start(n)
        try:
            yield live
        finally:
            live.close()

    def _start(self, n: int) -> _Live:
        raise NotImplementedError


@dataclass(frozen=True)
class ProcessExecutor(_Pooled):
    """A pool of local worker processes (``workers=0``: one per CPU core).

    Workers are started with the ``spawn`` method: a fork of a process that holds threads
    (numba, BLAS, a Dask client) can deadlock. Each worker imports the package once.
    """

    def _start(self, n: int) -> _Live:
        return _Pool(n)


class _Pool:
    """A pool of ``n`` spawned processes, started at the first item and kept until closed."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pool: ProcessPoolExecutor | None = None

    def imap_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        if not items:
            return
        if self.pool is None:
            ctx = multiprocessing.get_context("spawn")
            self.pool = ProcessPoolExecutor(self.n, mp_context=ctx, initializer=_ignore_sigint)
        # Keep a bounded number of items in flight: results stream back as they finish
        # and an interrupted call leaves little queued work behind.
        todo = iter(enumerate(items))
        running: dict[Future[R], int] = {}
        try:
            for i, item in _take(todo, 2 * self.n):
                running[self.pool.submit(fn, item)] = i
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = running.pop(fut)
                    for j, item in _take(todo, 1):
                        running[self.pool.submit(fn, item)] = j
                    yield i, fut.result()
        finally:
            for fut in running:
                fut.cancel()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None


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
class DaskExecutor(_Pooled):
    """A Dask distributed cluster.

    With ``scheduler`` (``"tcp://host:8786"``) the work goes to that running cluster, whose
    workers must have this package installed (same version, for identical results). Without
    it an embedded ``LocalCluster`` is started for the call — ``workers`` processes (``0``:
    one per core), one thread each — and closed afterwards. Requires ``dask[distributed]``.
    """

    scheduler: str | None = None

    def _start(self, n: int) -> _Live:
        return _Client(self.scheduler, n)


class _Client:
    """A Dask client (and, without a scheduler, a ``LocalCluster`` of ``n`` one-thread
    worker processes), started at the first item and kept until closed."""

    def __init__(self, scheduler: str | None, n: int) -> None:
        self.scheduler = scheduler
        self.n = n
        self.client: Any = None
        self.cluster: Any = None

    def imap_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        from dask.distributed import as_completed

        if not items:
            return
        client = self._connect()
        futures = client.map(fn, list(items), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut, result in as_completed(futures, with_results=True):
                yield index[fut.key], result
        finally:
            client.cancel(futures)

    def _connect(self) -> Any:
        from dask.distributed import Client, LocalCluster

        if self.client is None:
            if self.scheduler is not None:
                self.client = Client(self.scheduler)
            else:
                self.cluster = LocalCluster(
                    n_workers=self.n,
                    threads_per_worker=1,
                    processes=True,
                    # a free port: the default 8787 warns when another cluster holds it
                    dashboard_address=":0",
                    silence_logs=logging.WARNING,
                )
                self.client = Client(self.cluster)
        return self.client

    def close(self) -> None:
        try:
            if self.client is not None:
                self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
            self.client = self.cluster = None


@contextmanager
def session(executor: Executor) -> Iterator[Executor]:
    """``executor``, keeping what it starts (a process pool, a Dask cluster) for every call
    inside the block rather than starting it afresh at each call; closed when the block ends.

    Nothing is started before the first call that has work. An executor without a
    ``session`` method (serial, or one of your own) is used as it is.

    Examples
    --------
    >>> with session(make_executor("serial")) as live:
    ...     sorted(live.imap_unordered(abs, [-2, 1]))
    [(0, 2), (1, 1)]
    """
    start = getattr(executor, "session", None)
    if start is None:
        yield executor
        return
    with start() as live:
        yield live


EXECUTORS = ("serial", "processes", "dask")


def make_executor(
    executor: str | Executor | None = None,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
) -> Executor:
    """The executor named ``executor`` (``serial``, ``processes``, ``dask``), or ``executor``
    itself when it is one already.

    ``workers`` is the number of worker processes of ``processes`` and ``dask`` (``None`` or
    ``0``: one per CPU core). ``executor=None`` picks by ``workers``: ``serial`` for ``None``
    or ``1``, else ``processes`` — so ``workers=2`` alone means two local processes.

    Examples
    --------
    >>> make_executor("processes", workers=2)
    ProcessExecutor(workers=2)
    >>> make_executor(workers=2), make_executor(workers=1), make_executor()
    (ProcessExecutor(workers=2), SerialExecutor(), SerialExecutor())
    """
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 (all cores) or more, got {workers}")
    if executor is None:
        executor = "serial" if workers in (None, 1) else "processes"
    if not isinstance(executor, str):
        return executor
    if scheduler is not None and executor != "dask":
        raise ValueError(f"a scheduler address needs the dask executor, not {executor!r}")
    if executor == "serial":
        return SerialExecutor()
    if executor == "processes":
        return ProcessExecutor(workers or 0)
    if executor == "dask":
        return DaskExecutor(workers or 0, scheduler)
    raise ValueError(f"unknown executor {executor!r} (expected one of {', '.join(EXECUTORS)})")
