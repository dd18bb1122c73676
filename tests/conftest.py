"""Shared fixtures. Each area adds its own in tests/<area>/conftest.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def example_fleet(tmp_path: Path) -> Path:
    """A copy of the example fleet, safe to modify."""
    root = tmp_path / "fleet"
    for folder in ("cabinets", "backups"):
        shutil.copytree(REPO / folder, root / folder)
    return root


def run_kloudctl(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess, as a user would."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "kloudctl", *args],
        cwd=cwd,
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def kloudctl():
    return run_kloudctl
