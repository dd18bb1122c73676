"""A simulated fleet for `kloudctl status`: the example fleet's three cabinets served by the
Proxmox VE simulator (real HTTPS on 127.0.0.x), each tenant with a pool and guests made
through the API, one of them stopped. Faults are cleared after each test."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kloudctl.capacity import plan_cabinet
from kloudctl.tenants.simtargets import bootstrap_target, populate_guests
from kloudctl.testbed.simfleet import SimFleet, start_sim_fleet

#: Guests per tenant (the first one stopped).
PER_TENANT = 3


@pytest.fixture(scope="module")
def status_fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimFleet]:
    fleet = start_sim_fleet(
        tmp_path_factory.mktemp("status"), task_seconds=0.0, bootstrap=bootstrap_target
    )
    try:
        for name, target in fleet.targets.items():
            populate_guests(target, fleet.fleet(), name, PER_TENANT)
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture
def sims(status_fleet: SimFleet) -> Iterator[SimFleet]:
    yield status_fleet
    for name in status_fleet.targets:
        status_fleet.fault(name, kind="clear")


def tenants_of(fleet: SimFleet, cabinet: str) -> list[str]:
    return [t.name for t in plan_cabinet(fleet.fleet().cabinet(cabinet)).tenants]


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def targets_with_closed(fleet: SimFleet, cabinet: str, folder: Path) -> Path:
    """A copy of the fleet's targets file where `cabinet`'s endpoint is a closed loopback
    port (what KLOUDCTL_PROXMOX_TARGETS points at)."""
    targets = json.loads(json.dumps(fleet.targets))
    targets[cabinet]["endpoint"] = f"https://127.0.0.1:{closed_port()}"
    path = folder / "targets.json"
    path.write_text(json.dumps(targets))
    path.chmod(0o600)
    return path
