"""The replication roles' Molecule scenarios (podman driver, the project's Debian image,
converge twice with idempotence, verify), run for real with the restic and rest-server
of the tools step: replication_source's scenario converges both roles in one test cabinet,
installs kloudctl there (kloudctl.hosts.bundle) and replicates the cabinet (`peers: auto`,
the controller's choice shipped) to its own rest-server through the systemd units; replication_target's checks TLS, authentication
and the append-only refusal on its own. Secrets are made by kloudctl's own Layout."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from kloudctl.federation.peers import PeerRecord
from kloudctl.hosts import bundle
from kloudctl.replication.layout import Layout
from kloudctl.testbed import image
from kloudctl.testbed.fleets import make_fleet
from kloudctl.testbed.podman import podman_problem
from tests.molecule_support import assert_scenario_passed, run_scenarios

pytestmark = [pytest.mark.podman, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
ROLES = ("replication_target", "replication_source")


#: What `replication deploy` ships for pve1 (`peers: auto`): the controller's recorded
#: choice (made by the real resolver in tests/federation/test_shipped_choice.py).
SHIPPED = PeerRecord("pve1", ["pve2"], 1796000000.0, 3, "first choice: 'pve2' (test)")


def auto_fleet(root: Path) -> Path:
    """pve1 replicates to pve2 by the federation's choice: its cabinet's kloudctl, with no
    registry, can only use the choice shipped to it."""
    make_fleet(root, ["pve1", "pve2"])
    cabinet = root / "cabinets" / "pve1.yaml"
    cabinet.write_text(cabinet.read_text().replace("peers: [pve2]", "peers: auto"))
    return root


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
    layout = Layout(work / "state")
    _user, rest_password = layout.rest_identity("pve1", "pve2").read_text().strip().split(":", 1)
    return run_scenarios(
        ROLES,
        work,
        {
            "KLOUDCTL_TESTBED_IMAGE": name,
            "KLOUDCTL_TEST_FLEET": str(auto_fleet(work / "fleet")),
            "KLOUDCTL_TEST_PEER_CHOICE": json.dumps(SHIPPED.to_dict()),
            "KLOUDCTL_TEST_BUNDLE": str(bundle.build(work / "bundles")),
            "KLOUDCTL_TEST_REST_PASSWORD": rest_password,
            "KLOUDCTL_TEST_REST_HTPASSWD": layout.htpasswd_line("pve1", "pve2").split(":", 1)[1],
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
