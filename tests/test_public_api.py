"""The public API: every exported name imports and is documented in the README's table."""

from __future__ import annotations

import re
from pathlib import Path

import sim

README = Path(__file__).resolve().parents[1] / "README.md"


def _documented() -> set[str]:
    text = README.read_text()
    table = text.split("### Public API", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([A-Za-z_]+)`", first_cell))
    return names


def test_all_names_exist() -> None:
    for name in sim.__all__:
        assert hasattr(sim, name), name


def test_all_matches_the_readme_table() -> None:
    assert set(sim.__all__) == _documented()
