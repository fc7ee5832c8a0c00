"""The code base's own rules, checked with every test run (and so in CI): lint (ruff, the
rules in pyproject.toml) and formatting (ruff format), the core's types (mypy) and the import rule of
docs/architecture.md (import-linter contracts in pyproject.toml). Each tool runs from
the project's virtual environment on the whole checkout; a failure shows the tool's
report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run_tool(*cmd: str) -> None:
    tool = BIN / cmd[0]
    if not tool.exists():
        pytest.fail(f"{cmd[0]} is not installed in {BIN}: run ./dev install (it is in the test extra)")
    proc = subprocess.run([str(tool), *cmd[1:]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"


def test_ruff_finds_nothing():
    run_tool("ruff", "check", "--no-cache", ".")


def test_ruff_format_leaves_every_file_as_it_is():
    run_tool("ruff", "format", "--check", "--no-cache", ".")


def test_mypy_on_the_core():
    run_tool("mypy", "--no-incremental")


def test_imports_point_down_to_the_core():
    run_tool("lint-imports", "--no-cache")
