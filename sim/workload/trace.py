"""Replaying request traces (a timestamp and token counts per request).

Three formats: the public Azure LLM inference trace (``azure_csv``:
``TIMESTAMP,ContextTokens,GeneratedTokens``), Mooncake-style JSON lines (``mooncake_jsonl``:
one object per line with ``timestamp`` in milliseconds, ``input_length``, ``output_length``
and optionally ``hash_ids``; other keys are ignored) and any other CSV through a column
mapping (``csv``).

**Prompt identity** (which requests share which prompt prefix, :mod:`sim.workload.identity`)
comes from Mooncake's ``hash_ids`` (the ids of a prompt's ``hash_block_tokens``-token
blocks, 512 by default; equal leading ids mean an equal prefix) or, in a generic CSV, from a
column holding such a list (``columns.hash_ids``: ``[3, 4, 9]`` or ``3 4 9``) or from a
prefix id and a prefix length (``columns.prefix_id`` and ``columns.prefix_tokens``: requests
with the same id share their first ``min`` of their prefix lengths, rounded down to whole
blocks; the rest of each prompt is its own). A list must hold exactly
``ceil(input_tokens / hash_block_tokens)`` integers, the last covering the rest of the
prompt: fewer cannot cover the prompt and more would describe tokens it does not have, so
both are errors naming the file, the line and the field.

Parsed traces are cached per process, keyed by absolute path, modification time, size and
format, so Monte Carlo replications do not re-read the file. The cache holds
read-only arrays only, never anything a run can change.

A trace replays deterministically, back to back (:meth:`Trace.replay`), or, with
``bootstrap_block_s``, as a circular block bootstrap (:meth:`Trace.bootstrap`) so that
replications differ.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Self

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import Field, model_validator

from sim._base import Frozen
from sim.workload.identity import PromptBlocks, chain_hashes, unique_hashes

__all__ = [
    "Trace",
    "TraceArrivals",
    "TraceColumns",
    "TraceError",
    "TraceFormat",
    "detect_format",
    "load_trace",
]

TraceFormat = Literal["azure_csv", "mooncake_jsonl", "csv"]
TimeUnit = Literal["s", "ms", "us"]
_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
#: Keys of a Mooncake-style JSONL trace: arrival (ms), prompt and output token counts.
MOONCAKE_KEYS = ("timestamp", "input_length", "output_length")
#: The Mooncake key holding a request's prompt-block ids.
MOONCAKE_HASHES = "hash_ids"
#: Tokens per hashed block: Mooncake's for hash lists, an engine block for prefix ids.
DEFAULT_HASH_BLOCK_TOKENS = 512
DEFAULT_PREFIX_BLOCK_TOKENS = 16


_LINE = "\0line"


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file, the line and the field."""


def detect_format(path: str | os.PathLike[str]) -> TraceFormat:
    """The format implied by a file name: ``.jsonl``/``.ndjson``/``.json`` are Mooncake JSON
    lines, anything else a CSV (read through ``columns``, Azure's names by default).

    Examples
    --------
    >>> detect_format("mooncake_trace.jsonl"), detect_format("AzureLLMInferenceTrace_conv.csv")
    ('mooncake_jsonl', 'csv')
    """
    return "mooncake_jsonl" if os.fspath(path).lower().endswith(_JSONL_SUFFIXES) else "csv"


class TraceColumns(Frozen):
    """Which CSV columns hold the timestamp and the token counts (Azure names by default)."""

    timestamp: str = Field(default="TIMESTAMP", min_length=1)
    input_tokens: str = Field(default="ContextTokens", min_length=1)
    output_tokens: str = Field(default="GeneratedTokens", min_length=1)
    hash_ids: str | None = Field(
        default=None, min_length=1, description="column of prompt-block id lists"
    )
    prefix_id: str | None = Field(default=None, min_length=1, description="shared-prefix id")
    prefix_tokens: str | None = Field(
        default=None, min_length=1, description="length of the shared prefix, tokens"
    )

    @model_validator(mode="after")
    def _one_identity(self) -> Self:
        if (self.prefix_id is None) != (self.prefix_tokens is None):
            raise ValueError("prefix_id and prefix_tokens go together")
        if self.hash_ids is not None and self.prefix_id is not None:
            raise ValueError("give either hash_ids or prefix_id and prefix_tokens, not both")
        return self


class TraceArrivals(Frozen):
    """Arrivals (and, unless the class overrides them, token counts) replayed from a trace.

    ``path`` is kept as given; a relative path is resolved by whoever loads the scenario file.
    ``format`` is ``azure_csv``, ``mooncake_jsonl`` or ``csv`` (with ``columns``); omitted, it
    follows the file name (:func:`detect_format`). ``time_unit`` is the unit of *numeric*
    timestamps (default ``s`` for CSV, ``ms`` for Mooncake; datetime strings need none).

    ``rate_scale`` compresses time: a row ``t`` seconds after the first arrives at
    ``t / rate_scale``, so ``rate_scale = 2`` doubles the rate. A horizon longer than the
    (scaled) trace replays it back to back (see :meth:`Trace.replay`), the same in every
    replication. With ``bootstrap_block_s`` each replication instead concatenates blocks of
    that many trace seconds starting at random points of the trace (:meth:`Trace.bootstrap`).

    Examples
    --------
    >>> TraceArrivals(path="traces/AzureLLMInferenceTrace_conv.csv", rate_scale=2.0).rate_scale
    2.0
    >>> TraceArrivals(path="mooncake.jsonl").resolved_format()
    'mooncake_jsonl'
    """

    process: Literal["trace"] = "trace"
    path: str = Field(min_length=1)
    format: TraceFormat | None = Field(
        default=None, description="azure_csv | mooncake_jsonl | csv; omitted: by file name"
    )
    rate_scale: float = Field(default=1.0, gt=0.0, description="time compression factor")
    columns: TraceColumns = TraceColumns()
    time_unit: TimeUnit | None = Field(
        default=None, description="unit of numeric timestamps (s for CSV, ms for Mooncake)"
    )
    bootstrap_block_s: float | None = Field(
        default=None, gt=0.0, description="block bootstrap block length, trace seconds"
    )
    prompt_identity: bool = Field(
        default=True, description="read which requests share prompt prefixes, if the trace says"
    )
    hash_block_tokens: int | None = Field(
        default=None,
        ge=1,
        description="tokens per hashed block (512 for hash lists, 16 for prefix ids)",
    )

    @model_validator(mode="after")
    def _columns_need_csv(self) -> Self:
        if self.columns != TraceColumns() and self.resolved_format() != "csv":
            raise ValueError(f"columns only apply to format 'csv', not {self.resolved_format()!r}")
        if self.bootstrap_block_s is not None and not math.isfinite(self.bootstrap_block_s):
            raise ValueError("bootstrap_block_s must be finite")
        return self

    def resolved_format(self) -> TraceFormat:
        """``format``, or the one the file name implies when it is omitted."""
        return detect_format(self.path) if self.format is None else self.format

    def load(self, *, read_input_tokens: bool = True, read_output_tokens: bool = True) -> Trace:
        """Parse (or fetch from the cache) the trace this spec names; see :func:`load_trace`.

        Prompt identity is read when ``prompt_identity`` is set and the prompt lengths come
        from the trace (a class drawing its own lengths has no identity)."""
        return load_trace(
            self.path,
            columns=self.columns,
            format=self.resolved_format(),
            time_unit=self.time_unit,
            read_input_tokens=read_input_tokens,
            read_output_tokens=read_output_tokens,
            read_identity=self.prompt_identity and read_input_tokens,
            hash_block_tokens=self.hash_block_tokens,
        )


@dataclass(frozen=True, eq=False)
class Trace:
    """A parsed trace: per-row offsets from the first request and token counts.

    Attributes
    ----------
    path
        The file it was read from.
    offset_s
        Seconds since the earliest row, sorted ascending (rows are stably sorted by time).
    input_tokens, output_tokens
        ``int64`` counts per row (values below 1 raised to 1), or ``None`` if not read.
    prompt_blocks
        Per row, its chained prompt-block hashes, or ``None`` without prompt identity.
    """

    path: str
    offset_s: NDArray[np.float64]
    input_tokens: NDArray[np.int64] | None
    output_tokens: NDArray[np.int64] | None
    prompt_blocks: PromptBlocks | None = None

    @property
    def n_rows(self) -> int:
        """Number of requests in one pass of the trace."""
        return int(self.offset_s.size)

    def period_s(self, rate_scale: float = 1.0) -> float:
        """Length of one (scaled) pass: the span plus one mean gap, ``span · n/(n − 1)``.

        Adding one mean gap keeps the last row of a pass and the first row of the next apart.
        """
        n = self.n_rows
        return float(self.offset_s[-1]) * n / (n - 1) / rate_scale

    def mean_rate_rps(self, rate_scale: float = 1.0) -> float:
        """Long-run arrival rate of the replay, ``n / period``, requests/s."""
        return self.n_rows / self.period_s(rate_scale)

    def replay(
        self, duration_s: float, *, rate_scale: float = 1.0
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """Arrival times in ``[0, duration_s)`` and the trace row each one replays.

        Examples
        --------
        >>> tr = Trace("x", np.array([0.0, 1.0, 3.0]), None, None)
        >>> t, row = tr.replay(9.0)
        >>> t.tolist(), row.tolist()
        ([0.0, 1.0, 3.0, 4.5, 5.5, 7.5], [0, 1, 2, 0, 1, 2])
        """
        return self.stream(rate_scale=rate_scale).until(duration_s)

    def bootstrap(
        self,
        duration_s: float,
        rng: np.random.Generator,
        *,
        block_s: float,
        rate_scale: float = 1.0,
    ) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """A circular block bootstrap of the trace: arrival times in ``[0, duration_s)``.

        The trace is wrapped into a circle of length :meth:`period_s` (one pass, as in
        :meth:`replay`). Block ``j`` starts at a uniform point ``u_j`` of the circle and
        holds every row in ``[u_j, u_j + block_s)`` (wrapping around, several passes if the
        block is longer than the trace) at its offset from ``u_j``; blocks are laid end to
        end, ``block_s`` apart, and the times divided by ``rate_scale``. Each row keeps its
        own token counts and each block the trace's timing inside it. Because every point
        of the circle is equally likely to be covered (Politis & Romano, 1992), a block
        holds ``n · block_s / period`` rows on average and the long-run rate is exactly
        :meth:`mean_rate_rps`; correlations longer than a block are lost.

        Examples
        --------
        >>> tr = Trace("x", np.array([0.0, 1.0, 3.0]), None, None)
        >>> t, row = tr.bootstrap(20.0, np.random.default_rng(0), block_s=2.0)
        >>> bool(np.all(np.diff(t) >= 0) and t.max() < 20.0), set(row.tolist()) <= {0, 1, 2}
        (True, True)
        """
        return self.stream(rate_scale=rate_scale, rng=rng, block_s=block_s).until(duration_s)

    def stream(
        self,
        *,
        rate_scale: float = 1.0,
        rng: np.random.Generator | None = None,
        block_s: float | None = None,
    ) -> TraceStream:
        """:meth:`replay` (``block_s`` None) or :meth:`bootstrap` read forward in time: the
        same arrivals and rows, generated a pass (or about :data:`BOOTSTRAP_ROWS` rows) at a
        time, whatever the ends of the reads."""
        return TraceStream(self, rate_scale, rng, block_s)


# rows drawn at a time (on average) by a streamed bootstrap, in whole blocks
BOOTSTRAP_ROWS = 65_536


class TraceStream:
    """Arrival times and trace rows read forward in time (:meth:`Trace.stream`)."""

    def __init__(
        self,
        trace: Trace,
        rate_scale: float,
        rng: np.random.Generator | None,
        block_s: float | None,
    ) -> None:
        if block_s is not None and not (math.isfinite(block_s) and block_s > 0):
            raise ValueError(f"block_s must be finite and > 0, got {block_s}")
        if block_s is not None and rng is None:
            raise ValueError("a bootstrap stream needs rng")
        self._trace, self._scale, self._rng, self._block_s = trace, rate_scale, rng, block_s
        self._k = 0  # passes or blocks drawn
        self._t = np.empty(0)
        self._row = np.empty(0, dtype=np.intp)
        self._pos = 0

    def _batch(self) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        tr, k = self._trace, self._k
        if self._block_s is None:
            # one pass of the trace, as in Trace.replay
            self._k += 1
            t = tr.offset_s / self._scale + tr.period_s(self._scale) * k
            return t, np.arange(tr.n_rows, dtype=np.intp)
        assert self._rng is not None
        block_s = self._block_s
        period = tr.period_s()
        # blocks of about BOOTSTRAP_ROWS rows in all (at least one block)
        n_blocks = max(1, math.ceil(BOOTSTRAP_ROWS * period / (tr.n_rows * block_s)))
        self._k += n_blocks
        start = self._rng.random(n_blocks) * period
        passes = math.ceil((period + block_s) / period) + 1
        ext = (tr.offset_s[None, :] + period * np.arange(passes)[:, None]).ravel()
        lo = np.searchsorted(ext, start, side="left")
        hi = np.searchsorted(ext, start + block_s, side="left")
        size = hi - lo
        block = np.repeat(np.arange(n_blocks), size)
        first = np.cumsum(size) - size
        idx = np.repeat(lo, size) + (np.arange(int(size.sum())) - np.repeat(first, size))
        t = (ext[idx] - start[block] + (block + k) * block_s) / self._scale
        return t, (idx % tr.n_rows).astype(np.intp)

    def until(self, t_end: float) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
        """The next arrival times up to (not including) ``t_end`` and their trace rows."""
        ts, rows = [], []
        while True:
            t, i = self._t, self._pos
            j = i + int(np.searchsorted(t[i:], t_end, side="left"))
            ts.append(t[i:j])
            rows.append(self._row[i:j])
            self._pos = j
            if j < t.size:
                break
            self._t, self._row = self._batch()
            self._pos = 0
        if len(ts) == 1:
            return ts[0], rows[0]
        return np.concatenate(ts), np.concatenate(rows)


def load_trace(
    path: str | os.PathLike[str],
    *,
    columns: TraceColumns | None = None,
    format: TraceFormat | None = None,
    time_unit: TimeUnit | None = None,
    read_input_tokens: bool = True,
    read_output_tokens: bool = True,
    read_identity: bool = True,
    hash_block_tokens: int | None = None,
) -> Trace:
    """Parse a trace file (cached per process by absolute path, mtime, size and format).

    CSV timestamps may be numbers (in ``time_unit``, seconds by default) or datetime strings
    (ISO 8601, e.g. Azure's ``2023-11-16 18:17:03.9799600``). Mooncake JSON lines carry
    ``timestamp`` (milliseconds unless ``time_unit`` says otherwise), ``input_length`` and
    ``output_length``. Token columns not needed (because the class draws its own lengths)
    are not read and need not exist.

    Parameters
    ----------
    path
        The trace file.
    columns
        CSV column mapping; Azure's names by default (``csv`` format only).
    format
        ``azure_csv``, ``mooncake_jsonl`` or ``csv``; omitted: :func:`detect_format`.
    time_unit
        Unit of numeric timestamps: ``s``, ``ms`` or ``us``.
    read_input_tokens, read_output_tokens
        Whether to read (and require) the token columns.
    read_identity
        Whether to read prompt identity: Mooncake's ``hash_ids`` when the file has them
        (every line then needs them), a CSV's ``hash_ids`` or ``prefix_id`` and
        ``prefix_tokens`` columns when ``columns`` names them. Needs the input tokens.
    hash_block_tokens
        Tokens per hashed block; 512 for hash lists and 16 for prefix ids by default.

    Returns
    -------
    Trace
        Read-only arrays, shared by every caller that loads the same unchanged file.

    Raises
    ------
    ValueError
        If a column is missing or its values cannot be parsed; the message names the file and
        the column.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = f.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\\n0,10,5\\n2.5,20,7\\n")
    >>> load_trace(f).offset_s.tolist()
    [0.0, 2.5]
    """
    fmt = detect_format(path) if format is None else format
    if fmt == "mooncake_jsonl":
        columns = TraceColumns(
            timestamp="timestamp", input_tokens="input_length", output_tokens="output_length"
        )
        unit = time_unit or "ms"
    else:
        if fmt == "azure_csv" or columns is None:
            columns = TraceColumns()
        unit = time_unit or "s"
    abspath = os.path.abspath(os.fspath(path))
    st = os.stat(abspath)
    identity: tuple[str, ...] = ()
    block = hash_block_tokens
    if read_identity and read_input_tokens:
        if fmt == "mooncake_jsonl":
            identity = (MOONCAKE_HASHES,) if _jsonl_has_key(abspath, MOONCAKE_HASHES) else ()
        elif columns.hash_ids is not None:
            identity = (columns.hash_ids,)
        elif columns.prefix_id is not None and columns.prefix_tokens is not None:
            identity = (columns.prefix_id, columns.prefix_tokens)
            block = DEFAULT_PREFIX_BLOCK_TOKENS if block is None else block
    return _load_cached(
        abspath,
        st.st_mtime_ns,
        st.st_size,
        fmt == "mooncake_jsonl",
        _UNIT_S[unit],
        columns.timestamp,
        columns.input_tokens if read_input_tokens else None,
        columns.output_tokens if read_output_tokens else None,
        identity,
        DEFAULT_HASH_BLOCK_TOKENS if block is None else block,
    )


def _jsonl_has_key(abspath: str, key: str) -> bool:
    # whether the first record carries `key` (then every record must)
    with open(abspath, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    return False  # reported with its line number by the reader
                return isinstance(obj, dict) and key in obj
    return False


def _read_jsonl(abspath: str, wanted: list[str]) -> pd.DataFrame:
    # the file's line number of each record goes in the column _LINE (blank lines skipped)
    rows: dict[str, list[object]] = {k: [] for k in [*wanted, _LINE]}
    with open(abspath, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"trace {abspath}: line {lineno} is not JSON ({exc})") from exc
            if not isinstance(obj, dict):
                raise ValueError(f"trace {abspath}: line {lineno} is not a JSON object")
            for k in wanted:
                if k not in obj:
                    raise ValueError(f"trace {abspath}: key {k!r} missing on line {lineno}")
                rows[k].append(obj[k])
            rows[_LINE].append(lineno)
    return pd.DataFrame(rows)


@functools.lru_cache(maxsize=16)
def _load_cached(
    abspath: str,
    mtime_ns: int,
    size: int,
    jsonl: bool,
    unit_s: float,
    timestamp: str,
    input_tokens: str | None,
    output_tokens: str | None,
    identity: tuple[str, ...] = (),
    block_tokens: int = DEFAULT_HASH_BLOCK_TOKENS,
) -> Trace:
    del mtime_ns, size  # part of the cache key only
    wanted = [c for c in (timestamp, input_tokens, output_tokens, *identity) if c is not None]
    if jsonl:
        try:
            df = _read_jsonl(abspath, wanted)
        except UnicodeDecodeError as exc:
            raise ValueError(f"trace {abspath}: not UTF-8 JSON lines ({exc})") from exc
    else:
        df = _read_csv(abspath, wanted)
    if len(df) < 2:
        raise ValueError(f"trace {abspath}: column {timestamp!r} needs at least two rows")
    seconds = _parse_timestamps(df[timestamp], abspath, timestamp, unit_s)
    order = np.argsort(seconds, kind="stable")
    offset = seconds[order] - seconds[order[0]]
    if offset[-1] <= 0.0:
        raise ValueError(f"trace {abspath}: column {timestamp!r} has no time span")
    tokens = [
        None if col is None else _parse_tokens(df[col], abspath, col)[order]
        for col in (input_tokens, output_tokens)
    ]
    blocks = None
    if identity:
        assert input_tokens is not None  # identity needs the prompt lengths
        raw_inp = _parse_tokens(df[input_tokens], abspath, input_tokens)
        lines = df[_LINE].to_numpy() if jsonl else np.arange(len(df)) + 2  # CSV: header 1

        def where(i: int) -> str:
            return f"line {int(lines[i])}"

        if len(identity) == 1:
            blocks = _blocks_from_lists(
                df[identity[0]].tolist(),
                raw_inp,
                block_tokens,
                abspath,
                identity[0],
                where,
                text=not jsonl,
            )
        else:
            blocks = _blocks_from_prefixes(
                df[identity[0]], df[identity[1]], raw_inp, block_tokens, abspath, identity, where
            )
        blocks = blocks.take(order)
        for a in (blocks.offsets, blocks.hashes):
            a.setflags(write=False)
    for arr in (offset, *tokens):
        if arr is not None:
            arr.setflags(write=False)
    return Trace(abspath, offset, tokens[0], tokens[1], blocks)


def _ceil_blocks(tokens: NDArray[np.int64], block_tokens: int) -> NDArray[np.int64]:
    # hashes a prompt needs: one per block, the last one partial (at least one)
    return np.maximum((tokens + block_tokens - 1) // block_tokens, 1)


def _as_id_list(value: object, text: bool) -> list[int] | None:
    # a JSON list of integers (JSONL) or its text form in a CSV cell: "[1, 2]" or "1 2"
    if text and isinstance(value, str):
        cell = value.strip()
        try:
            value = json.loads(cell) if cell.startswith("[") else [int(x) for x in cell.split()]
        except ValueError:
            return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in value):
        return None
    return value


def _blocks_from_lists(
    values: list[object],
    input_tokens: NDArray[np.int64],
    block_tokens: int,
    path: str,
    field: str,
    where: Callable[[int], str],
    *,
    text: bool,
) -> PromptBlocks:
    expect = _ceil_blocks(input_tokens, block_tokens)
    flat: list[int] = []
    counts = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        ids = _as_id_list(v, text=text)
        if ids is None:
            raise TraceError(f"trace {path}: {where(i)}: {field!r} must be a list of integers")
        if len(ids) != expect[i]:
            raise TraceError(
                f"trace {path}: {where(i)}: {field!r} has {len(ids)} block ids, but "
                f"{int(input_tokens[i])} input tokens in blocks of {block_tokens} need "
                f"exactly {int(expect[i])}"
            )
        counts[i] = len(ids)
        flat.extend(ids)
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    raw = np.array(flat, dtype=np.int64) if flat else np.empty(0, dtype=np.int64)
    return PromptBlocks(block_tokens, offsets, chain_hashes(offsets, raw))


def _blocks_from_prefixes(
    ids: pd.Series,
    lengths: pd.Series,
    input_tokens: NDArray[np.int64],
    block_tokens: int,
    path: str,
    fields: tuple[str, ...],
    where: Callable[[int], str],
) -> PromptBlocks:
    # a shared prefix's full blocks hash by (prefix id, block index); the rest is unique
    has = ids.notna().to_numpy()
    plen = pd.to_numeric(lengths, errors="coerce").to_numpy(dtype=np.float64)
    bad = has & (~np.isfinite(plen) | (plen < 0) | (plen != np.round(plen)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise TraceError(
            f"trace {path}: {where(i)}: {fields[1]!r} must be a non-negative integer, "
            f"got {lengths.iloc[i]!r}"
        )
    plen = np.where(has, plen, 0).astype(np.int64)
    longer = plen > input_tokens
    if longer.any():
        i = int(np.flatnonzero(longer)[0])
        raise TraceError(
            f"trace {path}: {where(i)}: {fields[1]!r} is {int(plen[i])} tokens, longer than "
            f"the prompt ({int(input_tokens[i])} tokens)"
        )
    counts = _ceil_blocks(input_tokens, block_tokens)
    offsets = np.zeros(counts.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    pos = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], counts)
    shared = np.repeat(plen // block_tokens, counts) > pos
    tag = np.array([_text_id(x) if h else 0 for x, h in zip(ids.tolist(), has, strict=True)])
    raw = np.repeat(tag, counts) ^ pos
    hashes = chain_hashes(offsets, raw)
    hashes[~shared] = unique_hashes(int((~shared).sum()))
    return PromptBlocks(block_tokens, offsets, hashes)


def _text_id(value: object) -> int:
    # a stable 62-bit id of a prefix id cell (numbers and strings alike)
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 2


def _read_csv(abspath: str, wanted: list[str]) -> pd.DataFrame:
    try:
        header = pd.read_csv(abspath, nrows=0).columns
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"trace {abspath}: cannot read CSV header ({exc})") from exc
    for col in wanted:
        if col not in header:
            found = ", ".join(map(str, header))
            raise ValueError(f"trace {abspath}: column {col!r} not found (columns: {found})")
    try:
        return pd.read_csv(abspath, usecols=wanted)
    except (pd.errors.ParserError, ValueError) as exc:
        raise ValueError(f"trace {abspath}: cannot parse CSV ({exc})") from exc


def _parse_timestamps(
    col: pd.Series, path: str, name: str, unit_s: float = 1.0
) -> NDArray[np.float64]:
    numeric = pd.to_numeric(col, errors="coerce")
    if numeric.notna().all():
        out = numeric.to_numpy(dtype=np.float64) * unit_s
        if not np.all(np.isfinite(out)):
            raise ValueError(f"trace {path}: column {name!r} has non-finite timestamps")
        return out
    if pd.api.types.is_numeric_dtype(col):  # numbers with gaps: nothing to parse as dates
        row = int(np.flatnonzero(numeric.isna().to_numpy())[0])
        raise ValueError(f"trace {path}: column {name!r} has a missing timestamp at row {row}")
    try:
        when = pd.to_datetime(col, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"trace {path}: column {name!r} is neither numeric seconds nor datetimes ({exc})"
        ) from exc
    if when.isna().any():
        row = int(np.flatnonzero(when.isna().to_numpy())[0])
        raise ValueError(f"trace {path}: column {name!r} has a missing timestamp at row {row}")
    ns = when.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return (ns - ns.min()).astype(np.float64) / 1e9


def _parse_tokens(col: pd.Series, path: str, name: str) -> NDArray[np.int64]:
    numeric = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numeric) | (numeric < 0) | (numeric != np.round(numeric))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"trace {path}: column {name!r} needs non-negative integer token counts; "
            f"row {row} has {col.iloc[row]!r}"
        )
    # A request always carries at least one token each way.
    return np.maximum(numeric, 1).astype(np.int64)
