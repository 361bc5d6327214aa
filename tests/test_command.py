"""Every subcommand reports bad input the same way: one line on stderr, exit code 2."""

from __future__ import annotations

import doctest

import pytest

import sim.cli.common
from sim.cli import main


@pytest.mark.parametrize("command", ["plan", "report", "fit", "calibrate", "sensitivity"])
def test_usage_error_is_one_line_and_exit_2(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"crossover {command}: ") and "required" in err[0]


@pytest.mark.parametrize("command", ["plan", "report", "fit", "calibrate", "sensitivity"])
def test_help_exits_0(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: crossover {command}")


def test_missing_file_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fit", "no-such-trace.csv", "-o", "w.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("crossover fit: ") and "no-such-trace.csv: cannot read" in err


def test_docstring_examples() -> None:
    assert doctest.testmod(sim.cli.common).failed == 0


@pytest.mark.parametrize("module", ["sim.cli.sweep"])
def test_subcommand_docstring_examples(module: str) -> None:
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.failed == 0 and result.attempted > 0
