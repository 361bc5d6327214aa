"""A resumable sweep store: one small Parquet file per finished (point, replication).

Layout of a store directory::

    sweep.json                    what the sweep is (scenario hash, design, seed, ...)
    runs/p000003-r0001.parquet    one row: point, replication, drawn parameters, metrics

Each file is written to a temporary name and renamed into place, so a sweep killed at any
moment leaves only whole results (a stray temporary file is removed on the next open).
Rerunning the same sweep computes only the missing pairs. A sweep is "the same" when its
scenario, points, seed and uncertainty setting are: replication ``i`` always uses child
``i`` of ``SeedSequence(seed)``, so asking for more replications extends a store and asking
for fewer reads a prefix of it. Any other sweep is refused with :class:`StoreMismatch`.
Two processes must not write into one store at the same time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["StoreMismatch", "SweepStore", "scenario_hash"]

FORMAT = 1
#: Keys of ``sweep.json`` that must match for a store to be reused.
IDENTITY = ("format", "scenario_sha256", "design", "points", "seed", "uncertainty")
_RUN = re.compile(r"^p(\d+)-r(\d+)\.parquet$")


class StoreMismatch(ValueError):
    """The store directory holds the results of a different sweep."""


def scenario_hash(scenario: Any) -> str:
    """SHA-256 of the scenario's canonical JSON (every default filled in)."""
    text = json.dumps(scenario.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(obj: Any) -> Any:
    # what json would give back: tuples become lists, keys strings
    return json.loads(json.dumps(obj, sort_keys=True, default=str))


def _atomic_write(path: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SweepStore:
    """One store directory, opened for one sweep.

    Parameters
    ----------
    root
        The directory (created if missing).
    description
        ``sweep.json``'s content: the keys in :data:`IDENTITY` and any others
        (``replications``, names, versions), all JSON-serialisable.

    Raises
    ------
    StoreMismatch
        If the directory already describes a different sweep.
    """

    def __init__(self, root: str | Path, description: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.runs = self.root / "runs"
        desc = _canonical({"format": FORMAT, **description})
        meta = self.root / "sweep.json"
        if meta.exists():
            try:
                old = json.loads(meta.read_text())
            except (OSError, ValueError) as exc:
                raise StoreMismatch(f"{meta} is unreadable ({exc}): not a sweep store?") from None
            differ = [k for k in IDENTITY if old.get(k) != desc.get(k)]
            if differ:
                raise StoreMismatch(
                    f"{self.root} holds a different sweep (its {', '.join(differ)} "
                    "differ): use another directory, or delete this one to start over"
                )
        elif self.root.exists() and any(not _stray(p) for p in self.root.iterdir()):
            raise StoreMismatch(f"{self.root} is not empty and has no sweep.json: not a store")
        self.root.mkdir(parents=True, exist_ok=True)
        text = json.dumps(desc, indent=1, sort_keys=True)
        _atomic_write(meta, lambda tmp: Path(tmp).write_text(text))
        self.runs.mkdir(exist_ok=True)
        for stray in [*self.root.glob(".tmp-*"), *self.runs.glob(".tmp-*")]:
            stray.unlink(missing_ok=True)  # left by a sweep killed mid-write

    @staticmethod
    def _name(point: int, replication: int) -> str:
        return f"p{point:06d}-r{replication:04d}.parquet"

    def done(self) -> set[tuple[int, int]]:
        """``(point, replication)`` pairs already stored."""
        out = set()
        for f in self.runs.iterdir():
            m = _RUN.match(f.name)
            if m:
                out.add((int(m.group(1)), int(m.group(2))))
        return out

    def write(self, point: int, replication: int, row: Mapping[str, Any]) -> None:
        """Store one finished pair (``row``: drawn parameters and metrics), atomically."""
        frame = pd.DataFrame([{"point": point, "replication": replication, **row}])
        path = self.runs / self._name(point, replication)
        _atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))

    def read(self, point: int, replication: int) -> dict[str, Any]:
        """The row stored for one pair, without ``point`` and ``replication``."""
        frame = pd.read_parquet(self.runs / self._name(point, replication))
        # to_dict gives Python values column by column (an int stays an int)
        row = {str(k): v for k, v in frame.to_dict("records")[0].items()}
        del row["point"], row["replication"]
        return row


def _stray(path: Path) -> bool:
    # what a sweep killed before writing its first result leaves behind
    if path.name.startswith(".tmp-"):
        return True
    return path.name == "runs" and path.is_dir() and not any(path.iterdir())
