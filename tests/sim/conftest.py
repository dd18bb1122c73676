"""Fixtures of the simulator's tests (moved from tests/conftest.py when merging main,
whose `example_fleet` is a folder: here it is the loaded Fleet, as these tests expect)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kloudctl.model import Fleet, load_fleet
from kloudctl.sim.testing import RunningSim, running_sim

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def example_fleet() -> Fleet:
    """The example fleet shipped in cabinets/ and backups/."""
    return load_fleet(ROOT)


@pytest.fixture(scope="module")
def pve_sim(example_fleet: Fleet) -> Iterator[RunningSim]:
    """The Proxmox VE simulator serving the example cabinet `brieux` (two nodes, template 9000),
    over real HTTPS on 127.0.0.x; tasks last 0.05 s. One per test module."""
    with running_sim(["brieux"], fleet=example_fleet, task_seconds=0.05) as sim:
        yield sim
