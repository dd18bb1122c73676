"""Shared fixtures. Each area adds its own in tests/<area>/conftest.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kloudctl.model import Fleet, load_fleet
from kloudctl.sim.testing import RunningSim, running_sim

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


@pytest.fixture(scope="session")
def sim_fleet() -> Fleet:
    """The example fleet, loaded (read-only), for the Proxmox VE simulator."""
    return load_fleet(REPO)


@pytest.fixture(scope="module")
def pve_sim(sim_fleet: Fleet) -> Iterator[RunningSim]:
    """The Proxmox VE simulator serving the example cabinet `brieux` (two nodes, template
    9000 `debian-12-cloud` on local-lvm) over real HTTPS on 127.0.0.x; tasks last 0.05 s.
    One per test module. `pve_sim["brieux"]` has url, host, port, fingerprint,
    root_password; `pve_sim.fault("brieux", kind, ...)` injects faults."""
    with running_sim(["brieux"], fleet=sim_fleet, task_seconds=0.05) as sim:
        yield sim


def pytest_sessionfinish(session, exitstatus):
    """With KLOUDCTL_NO_SKIP=1 (CI), any skipped test fails the run: nothing the project
    claims may pass unseen because a component happened to be missing here."""
    if os.environ.get("KLOUDCTL_NO_SKIP") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for report in skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            sys.stderr.write(f"KLOUDCTL_NO_SKIP: {report.nodeid} was skipped: {reason}\n")
        session.exitstatus = 1
