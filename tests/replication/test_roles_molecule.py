"""The replication roles' Molecule scenarios (podman driver, the project's Debian image,
converge twice with idempotence, verify), run for real with the restic and rest-server
of the tools step: replication_source's scenario converges both roles in one test cabinet
and replicates it to its own rest-server end to end; replication_target's checks TLS,
authentication and the append-only refusal on its own."""

from __future__ import annotations

import base64
import hashlib
import secrets
from pathlib import Path

import pytest

from kloudctl.testbed import image
from kloudctl.testbed.podman import podman_problem
from tests.molecule_support import assert_scenario_passed, run_scenarios

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
    return run_scenarios(
        ROLES,
        work,
        {
            "KLOUDCTL_TESTBED_IMAGE": name,
            "KLOUDCTL_TEST_REST_PASSWORD": rest_password,
            "KLOUDCTL_TEST_REST_HTPASSWD": htpasswd,
            "KLOUDCTL_TEST_OWNER_PASSWORD": secrets.token_urlsafe(24),
            "KLOUDCTL_TEST_LOCAL_PASSWORD": secrets.token_urlsafe(24),
            "KLOUDCTL_TEST_PEER_PASSWORD": secrets.token_urlsafe(24),
        },
    )


@pytest.mark.parametrize("role", ROLES)
def test_role_converges_idempotently_and_verifies(
    scenarios: dict[str, tuple[int, str]], role: str
) -> None:
    assert_scenario_passed(scenarios[role])
