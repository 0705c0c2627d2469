"""Every code block of README.md runs here (short settings), so the README cannot go stale.

- ``python`` blocks run as they are, one after another in one namespace, in a fresh working folder.
- ``bash`` blocks: each ``jaxmlp ...`` line runs through the command's own entry point with
  ``--epochs 1 --train-fraction 0.02`` appended (the last value of a flag wins; lines with a schedule,
  ``hyperband`` and ``search`` get ``--epochs 3 --train-fraction 0.02``), and ``python -m
  experiments...`` / ``python -m examples...`` lines with ``--quick``, in order, in one folder (a ``plot``
  line reads the run a ``sweep`` line wrote); ``make`` lines are the set-up and tests that CI runs itself
  (``.ci/run`` calls ``make test``); comments and blank lines are skipped.
- ``text`` blocks are illustrations (output, multi-host commands), not run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest

from conftest import needs_real_data

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
SHORT = ["--epochs", "1", "--train-fraction", "0.02", "--quiet"]
# Schedules need a few epochs (rungs at 1 and 3 with eta 3): those lines train 3 epochs on less data.
SCHEDULED = ("--halving", "--asha")
LESS_DATA = ["--epochs", "3", "--train-fraction", "0.02", "--quiet"]
SETUP = ("make ", "pip ", "python3 -m venv", ". .venv", "cd ", "python -m pytest", "cat ", "ls ")


def blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(README.read_text()) if kind == lang]


def bash_commands() -> list[list[str]]:
    out = []
    for body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if not line or line.startswith("#") or line.startswith(SETUP):
                continue
            out.append(shlex.split(line))
    return out


def test_the_readme_has_both_kinds_of_blocks():
    assert blocks("python") and bash_commands()


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("readme")


def test_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(README.parent))
    module = types.ModuleType("readme_blocks")   # a real module: Flax modules are dataclasses, which look it up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for i, body in enumerate(blocks("python")):
        exec(compile(body, f"README.md python block {i + 1}", "exec"), module.__dict__)


@needs_real_data
@pytest.mark.parametrize("argv", bash_commands(), ids=lambda a: " ".join(a)[:60])
def test_bash_lines_run(argv, work):
    if argv[0] == "jaxmlp":
        cmd = [sys.executable, "-m", "jaxmlp", *argv[1:]]
        if argv[1] in ("train", "sweep") and not set(SCHEDULED) & set(argv):
            cmd += SHORT
        elif argv[1] in ("sweep", "hyperband", "search"):
            cmd += LESS_DATA
    elif argv[:2] == ["python", "-m"] and argv[2].split(".")[0] in ("experiments", "examples"):
        cmd = [sys.executable, *argv[1:], "--quick"]
    else:
        pytest.fail(f"README bash line {' '.join(argv)!r} is neither a jaxmlp nor a python -m command")
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(README.parent)})
    assert proc.returncode == 0, proc.stderr[-2000:]
