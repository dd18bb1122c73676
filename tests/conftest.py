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


#: With KLOUDCTL_NO_SKIP=1 (CI): every test that did not run, or whose outcome was excused.
_UNSEEN: list[str] = []


def _reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    return str(reason).removeprefix("Skipped: ")


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole module skipped (importorskip, allow_module_level)
        _UNSEEN.append(f"{report.nodeid} was skipped: {_reason(report)}")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if hasattr(report, "wasxfail"):  # xfailed, or xpassed: either way not a plain pass
        _UNSEEN.append(f"{report.nodeid} is marked xfail: {report.wasxfail or 'no reason'}")
    elif report.skipped:
        _UNSEEN.append(f"{report.nodeid} was skipped: {_reason(report)}")


def pytest_deselected(items: list[pytest.Item]) -> None:
    _UNSEEN.extend(f"{item.nodeid} was deselected" for item in items)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With KLOUDCTL_NO_SKIP=1 (CI), every collected test must run and pass: a skip, an
    xfail (failing or not) or a deselection (-m, -k) fails the run. Nothing the project
    claims may pass unseen because a component happened to be missing here, or because the
    run left it out."""
    if os.environ.get("KLOUDCTL_NO_SKIP") != "1" or not _UNSEEN:
        return
    for line in _UNSEEN:
        sys.stderr.write(f"KLOUDCTL_NO_SKIP: {line}\n")
    session.exitstatus = 1
