"""The federation_mesh role's Molecule scenario (podman driver, the project's Debian image
with wireguard-tools and nftables, /dev/net/tun and NET_ADMIN; converge twice with
idempotence, verify): wireguard-go makes the interface, a one-member federation is created
on the cabinet with its own kloudctl, the sync service (what the timer runs) applies the
registry (address, listen port, nftables table) and the coordinator's endpoint starts by
itself. The three-cabinet mesh is test_cabinets_mesh.py."""

from __future__ import annotations

import secrets

import pytest

from kloudctl.hosts import bundle
from kloudctl.testbed import image
from kloudctl.testbed.fleets import make_fleet_root
from kloudctl.testbed.podman import podman_problem
from tests.molecule_support import assert_scenario_passed, run_scenarios

pytestmark = [pytest.mark.podman, pytest.mark.slow]


def test_federation_mesh_converges_idempotently_and_verifies(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    name = image.ensure_image(("wireguard-tools", "nftables"))
    work = tmp_path_factory.mktemp("molecule")
    results = run_scenarios(
        ["federation_mesh"],
        work,
        {
            "KLOUDCTL_TESTBED_IMAGE": name,
            "KLOUDCTL_TEST_FLEET": str(make_fleet_root(work / "fleet")),
            "KLOUDCTL_TEST_BUNDLE": str(bundle.build(work / "bundles")),
            # A stand-in for brieux's API token (the container runs no Proxmox), made here
            # so that no token value is ever in the repository.
            "KLOUDCTL_TEST_PROXMOX_SECRET": secrets.token_hex(18),
        },
    )
    assert_scenario_passed(results["federation_mesh"])
