"""The replication roles' Molecule scenarios (podman driver, the project's Debian image,
converge twice with idempotence, verify), run for real with the restic and rest-server
of the tools step: replication_source's scenario converges both roles in one test cabinet
and replicates it to its own rest-server end to end; replication_target's checks TLS,
authentication and the append-only refusal on its own."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from kloudctl.testbed import image
from tests.testbed.conftest import podman_problem

pytestmark = [pytest.mark.podman, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ROLES = ("replication_target", "replication_source")


@pytest.fixture(scope="module")
def scenarios(
    restic_bin: str, rest_server_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str]]:
    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    name = image.ensure_image()
    image.tag_current(name)
    work = tmp_path_factory.mktemp("molecule")
    rest_password = secrets.token_urlsafe(24)
    htpasswd = "{SHA}" + base64.b64encode(hashlib.sha1(rest_password.encode()).digest()).decode()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "KLOUDCTL_TESTBED_IMAGE": name,
        "KLOUDCTL_TEST_REST_PASSWORD": rest_password,
        "KLOUDCTL_TEST_REST_HTPASSWD": htpasswd,
        "KLOUDCTL_TEST_OWNER_PASSWORD": secrets.token_urlsafe(24),
        "KLOUDCTL_TEST_LOCAL_PASSWORD": secrets.token_urlsafe(24),
        "KLOUDCTL_TEST_PEER_PASSWORD": secrets.token_urlsafe(24),
        "ANSIBLE_FORCE_COLOR": "0",
        "PY_COLORS": "0",
        "NO_COLOR": "1",
    }
    procs = {}
    for role in ROLES:
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


@pytest.mark.parametrize("role", ROLES)
def test_role_converges_idempotently_and_verifies(
    scenarios: dict[str, tuple[int, str]], role: str
) -> None:
    rc, log = scenarios[role]
    assert rc == 0, log[-4000:]
    for step in ("converge", "idempotence", "verify"):
        assert f"{step}: Executed: Successful" in log, log[-4000:]
