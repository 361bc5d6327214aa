"""The README's code blocks run as written.

Every ```python block, in order, is one script (they share `scenario`, `short`, `result`),
run in a scratch folder that sees the repository's scenarios; every ```sh block's commands
run there too, after the `make run` step they refer to (a short `crossover run`). Usage
synopses are ```text blocks and are not run. Horizons are shortened by rewriting the one
place the README sets them, so the test runs in about a minute.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)
# the README's tour shortens chat-startup to an hour; a tenth of it keeps the test quick
SHORTER = (('{"horizon.duration_s": 3600, "horizon.warmup_s": 300}',
            '{"horizon.duration_s": 600, "horizon.warmup_s": 60}'),)  # fmt: skip

pytestmark = pytest.mark.slow


def _scratch(tmp_path: Path) -> Path:
    (tmp_path / "scenarios").symlink_to(ROOT / "scenarios")
    return tmp_path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["MPLBACKEND"] = "Agg"
    return env


def test_the_readme_has_python_and_shell_blocks() -> None:
    langs = [lang for lang, _ in BLOCKS]
    assert langs.count("python") >= 3 and "sh" in langs
    for lang, body in BLOCKS:
        if lang == "sh":  # runnable commands only; synopses are ```text
            assert "[" not in body and "|" not in body, body


def test_python_blocks_run_as_one_script(tmp_path: Path) -> None:
    script = "\n\n".join(body for lang, body in BLOCKS if lang == "python")
    for old, new in SHORTER:
        assert old in script, "the README no longer shortens the tour the way this test expects"
        script = script.replace(old, new)
    path = tmp_path / "readme_tour.py"
    path.write_text(script, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(path)],
        cwd=_scratch(tmp_path),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_shell_blocks_run(tmp_path: Path) -> None:
    where = _scratch(tmp_path)
    crossover = [sys.executable, "-m", "sim"]
    # what `make run` leaves behind, which the report command reads
    setup = ["run", "scenarios/chat-startup.yaml", "-n", "2", "--out", "out/chat-startup",
             "--set", "horizon.duration_s=600", "--set", "horizon.warmup_s=60", "-q"]  # fmt: skip
    subprocess.run([*crossover, *setup], cwd=where, env=_env(), check=True, timeout=600)
    commands = [
        line.split("#")[0].strip()
        for lang, body in BLOCKS
        if lang == "sh"
        for line in body.splitlines()
        if line.strip() and not line.strip().startswith(("make ", "#"))
    ]
    assert commands, "no shell commands found"
    for command in commands:
        words = command.split()
        assert words[0] == "crossover", command
        done = subprocess.run(
            [*crossover, *words[1:]],
            cwd=where,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, f"{command}: {done.stderr[-2000:]}"
