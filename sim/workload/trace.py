"""Replaying request traces (CSV with a timestamp and token counts per request).

The public Azure LLM inference trace (``TIMESTAMP,ContextTokens,GeneratedTokens``) is the
reference format; other logs are read through a column mapping. Parsed traces are cached per
process, keyed by absolute path, modification time and size, so Monte Carlo replications do
not re-read the file. The cache holds read-only arrays only, never anything a run can change.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import Field

from sim._base import Frozen

__all__ = ["Trace", "TraceArrivals", "TraceColumns", "load_trace"]


class TraceColumns(Frozen):
    """Which CSV columns hold the timestamp and the token counts (Azure names by default)."""

    timestamp: str = Field(default="TIMESTAMP", min_length=1)
    input_tokens: str = Field(default="ContextTokens", min_length=1)
    output_tokens: str = Field(default="GeneratedTokens", min_length=1)


class TraceArrivals(Frozen):
    """Arrivals (and, unless the class overrides them, token counts) replayed from a CSV.

    ``path`` is kept as given; a relative path is resolved by whoever loads the scenario file.
    ``rate_scale`` compresses time: a row ``t`` seconds after the first arrives at
    ``t / rate_scale``, so ``rate_scale = 2`` doubles the rate. A horizon longer than the
    (scaled) trace replays it back to back (see :meth:`Trace.replay`).

    Examples
    --------
    >>> TraceArrivals(path="traces/AzureLLMInferenceTrace_conv.csv", rate_scale=2.0).rate_scale
    2.0
    """

    process: Literal["trace"] = "trace"
    path: str = Field(min_length=1)
    rate_scale: float = Field(default=1.0, gt=0.0, description="time compression factor")
    columns: TraceColumns = TraceColumns()


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
    """

    path: str
    offset_s: NDArray[np.float64]
    input_tokens: NDArray[np.int64] | None
    output_tokens: NDArray[np.int64] | None

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
        period = self.period_s(rate_scale)
        passes = max(math.ceil(duration_s / period), 1)
        t = (self.offset_s[None, :] / rate_scale + period * np.arange(passes)[:, None]).ravel()
        row = np.tile(np.arange(self.n_rows, dtype=np.intp), passes)
        keep = t < duration_s
        return t[keep], row[keep]


def load_trace(
    path: str | os.PathLike[str],
    *,
    columns: TraceColumns | None = None,
    read_input_tokens: bool = True,
    read_output_tokens: bool = True,
) -> Trace:
    """Parse a CSV trace (cached per process by absolute path, mtime and size).

    Timestamps may be numeric seconds or datetime strings (ISO 8601, e.g. Azure's
    ``2023-11-16 18:17:03.9799600``). Token columns not needed (because the class draws its
    own lengths) are not read and need not exist.

    Parameters
    ----------
    path
        The CSV file.
    columns
        Column mapping; Azure's names by default.
    read_input_tokens, read_output_tokens
        Whether to read (and require) the token columns.

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
    columns = TraceColumns() if columns is None else columns
    abspath = os.path.abspath(os.fspath(path))
    st = os.stat(abspath)
    return _load_cached(
        abspath,
        st.st_mtime_ns,
        st.st_size,
        columns.timestamp,
        columns.input_tokens if read_input_tokens else None,
        columns.output_tokens if read_output_tokens else None,
    )


@functools.lru_cache(maxsize=16)
def _load_cached(
    abspath: str,
    mtime_ns: int,
    size: int,
    timestamp: str,
    input_tokens: str | None,
    output_tokens: str | None,
) -> Trace:
    del mtime_ns, size  # part of the cache key only
    wanted = [c for c in (timestamp, input_tokens, output_tokens) if c is not None]
    try:
        header = pd.read_csv(abspath, nrows=0).columns
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"trace {abspath}: cannot read CSV header ({exc})") from exc
    for col in wanted:
        if col not in header:
            found = ", ".join(map(str, header))
            raise ValueError(f"trace {abspath}: column {col!r} not found (columns: {found})")
    try:
        df = pd.read_csv(abspath, usecols=wanted)
    except (pd.errors.ParserError, ValueError) as exc:
        raise ValueError(f"trace {abspath}: cannot parse CSV ({exc})") from exc
    if len(df) < 2:
        raise ValueError(f"trace {abspath}: column {timestamp!r} needs at least two rows")
    seconds = _parse_timestamps(df[timestamp], abspath, timestamp)
    order = np.argsort(seconds, kind="stable")
    offset = seconds[order] - seconds[order[0]]
    if offset[-1] <= 0.0:
        raise ValueError(f"trace {abspath}: column {timestamp!r} has no time span")
    tokens = [
        None if col is None else _parse_tokens(df[col], abspath, col)[order]
        for col in (input_tokens, output_tokens)
    ]
    for arr in (offset, *tokens):
        if arr is not None:
            arr.setflags(write=False)
    return Trace(abspath, offset, tokens[0], tokens[1])


def _parse_timestamps(col: pd.Series, path: str, name: str) -> NDArray[np.float64]:
    numeric = pd.to_numeric(col, errors="coerce")
    if numeric.notna().all():
        out = numeric.to_numpy(dtype=np.float64)
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
