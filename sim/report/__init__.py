"""One-file HTML reports of a run: ``sim.report(result, "report.html")`` or, after the fact,
``crossover report DIR -o report.html`` on what ``crossover run`` wrote."""

from __future__ import annotations

from sim.report.build import assumptions, load_run, report

__all__ = ["assumptions", "load_run", "report"]
