"""Each role's Molecule scenario (podman driver, the project's image, converge twice,
idempotence, verify), run for real. The three scenarios run in parallel to keep the
suite short; each test reports its own scenario.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from kloudctl.testbed import aptrepo

pytestmark = [pytest.mark.podman, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ROLES = ("base", "proxmox_host", "power_budget")


@pytest.fixture(scope="module")
def scenarios(
    testbed_image: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str]]:
    work = tmp_path_factory.mktemp("molecule")
    repo = aptrepo.build(work / "repo")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "KLOUDCTL_TESTBED_IMAGE": testbed_image,
        "KLOUDCTL_TESTBED_REPO": str(repo),
        "KLOUDCTL_TEST_UPS_PASSWORD": secrets.token_urlsafe(16),
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
        "NO_COLOR": "1",
    }
    env.pop("KLOUDCTL_TESTBED_STATE", None)
    procs = {}
    for role in ROLES:
        log = open(work / f"{role}.log", "w")  # noqa: SIM115 - closed below
        procs[role] = (
            subprocess.Popen(
                [str(Path(sys.executable).parent / "molecule"), "test"],
                cwd=REPO / "roles" / role,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            ),
            log,
        )
    results = {}
    for role, (proc, log) in procs.items():
        rc = proc.wait(timeout=1500)
        log.close()
        results[role] = (rc, (work / f"{role}.log").read_text())
    return results


@pytest.mark.parametrize("role", ROLES)
def test_role_converges_idempotently_and_verifies(
    scenarios: dict[str, tuple[int, str]], role: str
) -> None:
    rc, log = scenarios[role]
    assert rc == 0, log[-4000:]
    for step in ("converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in log, log[-4000:]
