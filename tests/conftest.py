"""Shared fixtures. Each area adds its own in tests/<area>/conftest.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kloudctl.files import write_atomic
from kloudctl.model import Fleet, load_fleet
from kloudctl.sim.testing import USAGES, RunningSim, running_sim
from kloudctl.sim.usage import merge_reports

REPO = Path(__file__).resolve().parent.parent

# pytester: tests/sim/test_sim_usage.py runs the harness below in a pytest run of its own
pytest_plugins = ["pytester"]


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
    """The simulators' usage report is written. With KLOUDCTL_NO_SKIP=1 (CI), every collected test must run and pass: a skip, an
    xfail (failing or not) or a deselection (-m, -k) fails the run. Nothing the project
    claims may pass unseen because a component happened to be missing here, or because the
    run left it out."""
    _write_usage_report()
    if os.environ.get("KLOUDCTL_NO_SKIP") != "1" or not _UNSEEN:
        return
    for line in _UNSEEN:
        sys.stderr.write(f"KLOUDCTL_NO_SKIP: {line}\n")
    session.exitstatus = 1


# -- The simulator's usage: which methods each client used; a 501 fails the test -----------

#: Where the session's usage report goes (`kloudctl sim coverage --usage FILE` reads it).
USAGE_REPORT = Path(os.environ.get("KLOUDCTL_SIM_USAGE") or REPO / ".state" / "sim-usage.json")
#: How many 501s of each simulator's log were already looked at (one entry per USAGES).
_SEEN_501: list[int] = []
#: Every 501 a test reached, with the test's name.
_REACHED_501: list[dict[str, str]] = []


def _new_501s(test: str) -> list[dict[str, str]]:
    """The 501s answered since the last look, by every simulator of this process."""
    found = []
    for i, usage in enumerate(USAGES):
        if i == len(_SEEN_501):
            _SEEN_501.append(0)
        events = usage.unimplemented[_SEEN_501[i] :]
        _SEEN_501[i] += len(events)
        found += [{"client": c, "method": m, "path": p, "test": test} for c, m, p in events]
    _REACHED_501.extend(found)
    return found


def pytest_runtest_setup(item: pytest.Item) -> None:
    _new_501s("(between tests)")  # what came before is not this test's


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test (its fixtures included) that reached a 501 fails, naming the methods, unless
    it is marked `expects_501` (it checks the 501 answer itself)."""
    report = yield
    if call.when == "setup" and report.passed:
        return report  # its 501s are looked at with the call's, or at teardown
    reached = _new_501s(item.nodeid)
    if reached and report.passed and item.get_closest_marker("expects_501") is None:
        methods = sorted({f"{e['method']} {e['path']} (by {e['client']})" for e in reached})
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} reached methods the simulator does not simulate (501): "
            + "; ".join(methods)
            + " (simulate them, or mark the test expects_501 if it checks the 501 itself)"
        )
    return report


def _write_usage_report() -> None:
    if not USAGES:
        return
    _new_501s("(after the last test)")
    report = merge_reports([u.to_report() for u in USAGES])
    report["unimplemented"] = _REACHED_501
    USAGE_REPORT.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(USAGE_REPORT, json.dumps(report, indent=1) + "\n", what="simulator usage report")
