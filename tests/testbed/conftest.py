"""Fixtures for the testbed area: the project's Debian image (fleet folders to run in:
`kloudctl.testbed.fleets.make_fleet_root`).

Tests marked `podman` need root, podman (runc/cgroupfs, see scripts/containers.conf) and
debootstrap; the image is built once per machine and cached by its recipe hash.
"""

from __future__ import annotations

import pytest

from kloudctl.testbed import image
from kloudctl.testbed.podman import podman_problem

__all__ = ["podman_problem"]


@pytest.fixture(scope="session")
def testbed_image() -> str:
    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    name = image.ensure_image()
    image.tag_current(name)
    return name
