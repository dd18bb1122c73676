"""What a member measures of itself for `federation update --measure`.

Spare disk: the cabinet's guest storage (`hardware.storage`, e.g. `local-lvm`), the one
the declared figure describes (the disks given to guests, tenants' quotas promised on it)
and the one a peer's council VMs are restored into on failover. Its status on every online
node (`GET /nodes/{node}/storage/{storage}/status`, through the one Proxmox client; a
shared storage counted once) gives `total` and `avail`. As for the declared figure, what
is promised is subtracted: the tenants' disk quotas and the quota lent to other communes'
failed-over VMs (`capacity.plan_cabinet`'s reserved disk), from the total scaled by the
declared disk overcommit; and no more than is free now is offered:

    spare_disk_measured = max(0, min(total x overcommit.disk - promised, avail))

Power headroom: the declared budget minus the last draw of the `power_budget` role's
record, read over SSH the way `kloudctl status` reads it (where `replication deploy`
recorded how to reach the cabinet); None, and why, when it cannot be read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kloudctl import ssh
from kloudctl.answers import dig, number
from kloudctl.capacity import plan_cabinet
from kloudctl.federation.service import Measured
from kloudctl.model import Fleet
from kloudctl.model.schema import Cabinet
from kloudctl.proxmox.client import Client, RetryPolicy
from kloudctl.proxmox.target import cabinet_target
from kloudctl.replication.layout import Layout, state_folder
from kloudctl.status.gather import last_draw

#: The whole measurement's time budget, API and SSH alike.
BUDGET = 30.0


def storage_figures(client: Client, storage: str) -> tuple[int, int]:
    """(total, avail) bytes of `storage` over the cluster's online nodes (shared: once)."""
    tool = client.tool
    nodes = dig(tool, client.get("nodes"), kind=list)
    total = avail = 0
    for i, _node in enumerate(nodes):
        if dig(tool, nodes, i, "status", kind=str, default="unknown") != "online":
            continue
        name = dig(tool, nodes, i, "node", kind=str)
        found = client.get(f"nodes/{name}/storage/{storage}/status")
        total += int(number(tool, found, "total"))
        avail += int(number(tool, found, "avail"))
        if found.get("shared") if isinstance(found, dict) else False:
            break  # one storage seen from every node
    return total, avail


def spare_disk(fleet: Fleet, cabinet: Cabinet, timeout: float = BUDGET) -> int:
    plan = plan_cabinet(cabinet)
    disk = next(r for r in plan.resources if r.name == "disk")
    client = Client(
        cabinet_target(fleet, cabinet.name),
        RetryPolicy(attempts=3, first_delay=0.2, max_delay=1.0),
        timeout=timeout,
        deadline=time.monotonic() + timeout,
    )
    try:
        total, avail = storage_figures(client, cabinet.hardware.storage)
    finally:
        client.session.close()
    offered = total * cabinet.hardware.overcommit.disk - disk.reserved
    return int(max(0, min(offered, avail)))


def power_headroom(
    cabinet: Cabinet, target: ssh.SshTarget | None, timeout: float = BUDGET
) -> tuple[int | None, str | None]:
    """(watts, None) or (None, why it was not measured)."""
    if target is None:
        return None, (
            f"power headroom of {cabinet.name}: no SSH route to the cabinet recorded"
            " (`replication deploy` records it), so its power record cannot be read"
        )
    _, watts, said = last_draw(cabinet.name, target, time.monotonic() + timeout)
    if watts is None:
        return None, f"power headroom of {cabinet.name}: {said}"
    budget = plan_cabinet(cabinet).power.budget_watts
    return int(max(budget - watts, 0)), None


def ssh_route(root: Path, replication_state: str | None, cabinet: str) -> ssh.SshTarget | None:
    """How `replication deploy` recorded reaching `cabinet` over SSH (None: not recorded).
    Reading never creates the replication state."""
    folder = state_folder(root, replication_state)
    if not folder.is_dir():
        return None
    remote = Layout(folder.resolve(), read_only=True).endpoint(cabinet).ssh
    return None if remote is None else remote.target


def measurer_for(
    fleet: Fleet, root: Path, replication_state: str | None
) -> Callable[[Cabinet], Measured]:
    """What `federation update --measure` hands the federation: measure one cabinet."""

    def measure(cabinet: Cabinet) -> Measured:
        target = ssh_route(root, replication_state, cabinet.name)
        headroom, why = power_headroom(cabinet, target)
        return Measured(spare_disk(fleet, cabinet), headroom, (why,) if why else ())

    return measure
