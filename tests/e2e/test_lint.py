"""The repository keeps one style: `ruff check` finds nothing and `ruff format` would change
nothing (one width, pyproject.toml's [tool.ruff]), so CI holds what `make lint` checks.

In tests/e2e because ruff is a program of its own: a unit test starts no process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO


def _ruff() -> str:
    found = Path(sys.executable).with_name("ruff")
    if found.exists():
        return str(found)
    on_path = shutil.which("ruff")
    if on_path is None:
        pytest.skip("ruff is not installed (the 'test' extra)")
    return on_path


@pytest.mark.parametrize(
    "args", [["check", "."], ["format", "--check", "."]], ids=["check", "format"]
)
def test_ruff_finds_nothing(args: list[str]) -> None:
    proc = subprocess.run([_ruff(), *args], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (
        f"ruff {' '.join(args)}:\n{proc.stdout[-6000:]}{proc.stderr[-2000:]}"
    )
