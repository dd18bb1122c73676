"""Running roles' Molecule scenarios for real, several at once, from pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run_scenarios(
    roles: Iterable[str], work: Path, extra_env: dict[str, str]
) -> dict[str, tuple[int, str]]:
    """`molecule test` in each role folder, in parallel; returns (exit code, log) per role."""
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
        "NO_COLOR": "1",
        **extra_env,
    }
    env.pop("KLOUDCTL_TESTBED_STATE", None)
    procs = {}
    for role in roles:
        log = open(work / f"{role}.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "molecule"), "test"],
            cwd=REPO / "roles" / role,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs[role] = (proc, log)
    results = {}
    for role, (proc, log) in procs.items():
        rc = proc.wait(timeout=1500)
        log.close()
        results[role] = (rc, (work / f"{role}.log").read_text())
    return results


def assert_scenario_passed(result: tuple[int, str]) -> None:
    rc, log = result
    assert rc == 0, log[-4000:]
    for step in ("converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in log, log[-4000:]
