"""Importing the core does not load the edges, and ``import sim`` still offers every name.

``sim/__init__.py`` imports its public names on first use, so a core module (which always
runs ``sim/__init__.py`` first) leaves reports (jinja2), plots (matplotlib) and clusters
(dask) unloaded. Each check runs in a fresh interpreter: this test process has them loaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sim

ROOT = Path(__file__).resolve().parents[1]
EDGES = ("matplotlib", "jinja2", "dask")
CORE = (
    "sim",
    "sim.workload.arrivals",
    "sim.scenario",
    "sim.replication.simulate",
    "sim.engine.kernel",
)


def _python(code: str) -> str:
    """Run ``python -c CODE`` from the repository root; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("module", CORE)
def test_core_module_does_not_load_the_edges(module: str) -> None:
    loaded = _python(f"import {module}, sys; print([m for m in {EDGES!r} if m in sys.modules])")
    assert loaded == "[]"


def test_functions_named_like_submodules_stay_functions() -> None:
    # importing the sim.report package or the modules of sweep and simulate first must not
    # make the package attributes of those names the modules instead of the functions
    code = (
        "import sys, sim.report.build, sim.study.sweep, sim.replication.simulate, sim\n"
        "print(sim.report is sys.modules['sim.report.build'].report,"
        " sim.sweep is sys.modules['sim.study.sweep'].sweep,"
        " sim.simulate is sys.modules['sim.replication.simulate'].simulate)"
    )
    assert _python(code) == "True True True"


def test_submodules_are_attributes_after_import_sim() -> None:
    # `import sim; sim.workload.load_trace(...)`, as the notebooks do
    assert _python("import sim; print(callable(sim.workload.load_trace))") == "True"


def test_every_public_name_is_listed_and_resolves() -> None:
    assert set(sim.__all__) <= set(dir(sim))
    assert callable(sim.report) and callable(sim.sweep) and callable(sim.simulate)
    assert sim.plots.__name__ == "sim.plots" and sim.analytic.__name__ == "sim.analytic"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = sim.nope  # type: ignore[attr-defined]
