"""The package's layers (docs/architecture.md): no import cycles, and no module imports from a
layer above its own — type-only and function-level imports included, since a cycle hidden in
a function is still a cycle. Read from the source, so nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SIM = Path(__file__).resolve().parents[1] / "sim"

# lowest first; a module belongs to the longest prefix that names it
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "base",
        ("sim._base", "sim.seeds", "sim.overrides", "sim.labels", "sim.intervals", "sim.analytic"),
    ),
    ("catalogue", ("sim.catalog",)),
    ("workload", ("sim.workload",)),
    ("engine", ("sim.engine",)),
    ("economics", ("sim.economics", "sim.hosted_api")),
    ("scenario", ("sim.decision_spec", "sim.uncertainty", "sim.scenario", "sim.scenario_io")),
    ("replication", ("sim.replication",)),
    ("study", ("sim.study",)),
    ("edges", ("sim.plots", "sim.report", "sim.cli", "sim.__main__", "sim")),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in SIM.rglob("*.py"):
        parts = path.relative_to(SIM.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _resolve(name: str) -> str | None:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        candidate = ".".join(parts[:i])
        if candidate in MODULES:
            return candidate
    return None


def _imports(name: str) -> set[str]:
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    found: set[str | None] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {_resolve(a.name) for a in node.names if a.name.startswith("sim")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sim"):
            for a in node.names:
                found.add(_resolve(f"{node.module}.{a.name}") or _resolve(node.module))
    return {m for m in found if m is not None and m != name}


GRAPH = {name: _imports(name) for name in MODULES}


def layer_of(module: str) -> int:
    best: tuple[int, int] | None = None
    for level, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            named = module == prefix or module.startswith(prefix + ".")
            if named and (best is None or len(prefix) > best[1]):
                best = (level, len(prefix))
    if best is None:
        raise KeyError(f"{module} belongs to no layer: add it to LAYERS and docs/architecture.md")
    return best[0]


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_imports(module: str) -> None:
    mine = layer_of(module)
    upward = sorted(
        f"{dep} ({LAYERS[layer_of(dep)][0]})" for dep in GRAPH[module] if layer_of(dep) > mine
    )
    assert not upward, f"{module} ({LAYERS[mine][0]}) imports from above: {', '.join(upward)}"


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components over the module graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_kernel_layout_stays_inside_the_engine() -> None:
    # nothing outside sim/engine reads the compiled kernel's arrays
    readers = sorted(
        name
        for name, deps in GRAPH.items()
        if "sim.engine.kernel" in deps and not name.startswith("sim.engine")
    )
    assert readers == []


def test_layers_are_documented() -> None:
    doc = (SIM.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    for name, _ in LAYERS:
        assert f"**{name}**" in doc, name
