"""Fixtures for the testbed area: the project's Debian image and a fleet folder to run in.

Tests marked `podman` need root, podman (runc/cgroupfs, see scripts/containers.conf) and
debootstrap; the image is built once per machine and cached by its recipe hash.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kloudctl.testbed import image
from kloudctl.testbed.podman import podman_problem

REPO = Path(__file__).resolve().parents[2]


__all__ = ["podman_problem"]


@pytest.fixture(scope="session")
def testbed_image() -> str:
    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    name = image.ensure_image()
    image.tag_current(name)
    return name


def make_fleet_root(path: Path) -> Path:
    """A fleet folder: copies of cabinets/ and backups/, links to the Ansible content."""
    path.mkdir(parents=True, exist_ok=True)
    for folder in ("cabinets", "backups"):
        shutil.copytree(REPO / folder, path / folder)
    for item in ("ansible.cfg", "inventory", "playbooks", "roles"):
        (path / item).symlink_to(REPO / item)
    return path
