"""Fixtures of the replication tests: real restic and rest-server from PATH (.tools/bin)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def _need(tool: str) -> str:
    """The tool's path, or a skip (which fails the run in CI: KLOUDCTL_NO_SKIP=1)."""
    found = shutil.which(tool)
    if not found:
        pytest.skip(f"{tool} not on PATH: run `make tools` (scripts/tools.sh builds it)")
    return found


@pytest.fixture(scope="session")
def restic_bin() -> str:
    path = _need("restic")
    version = subprocess.run([path, "version"], capture_output=True, text=True).stdout
    assert "restic 0.18" in version or "restic 0.19" in version, version
    return path


@pytest.fixture(scope="session")
def rest_server_bin() -> str:
    return _need("rest-server")


@pytest.fixture
def password(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(os.urandom(16).hex() + "\n")
    path.chmod(0o600)
    return path
