"""Each role's Molecule scenario (podman driver, the project's image, converge twice,
idempotence, verify), run for real. The three scenarios run in parallel to keep the
suite short; each test reports its own scenario.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from kloudctl.testbed import aptrepo
from tests.molecule_support import assert_scenario_passed, run_scenarios

pytestmark = [pytest.mark.podman, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ROLES = ("base", "proxmox_host", "power_budget")


@pytest.fixture(scope="module")
def scenarios(
    testbed_image: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str]]:
    work = tmp_path_factory.mktemp("molecule")
    repo = aptrepo.build(work / "repo")
    return run_scenarios(
        ROLES,
        work,
        {
            "KLOUDCTL_TESTBED_IMAGE": testbed_image,
            "KLOUDCTL_TESTBED_REPO": str(repo),
            "KLOUDCTL_TEST_UPS_PASSWORD": secrets.token_urlsafe(16),
        },
    )


@pytest.mark.parametrize("role", ROLES)
def test_role_converges_idempotently_and_verifies(
    scenarios: dict[str, tuple[int, str]], role: str
) -> None:
    assert_scenario_passed(scenarios[role])
