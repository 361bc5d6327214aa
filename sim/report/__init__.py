"""One-file HTML reports of a run: ``sim.report(result, "report.html")`` or, after the fact,
``crossover report DIR -o report.html`` on what ``crossover run``, ``sweep``, ``plan`` or
``sensitivity`` wrote (:func:`report_directory`)."""

from __future__ import annotations

from sim.report.build import report
from sim.report.directory import directory_kind, load_sweep, report_directory
from sim.report.reading import load_run
from sim.report.tables import assumptions

__all__ = [
    "assumptions",
    "directory_kind",
    "load_run",
    "load_sweep",
    "report",
    "report_directory",
]
