"""Point kloudctl at simulated cabinets (`kloudctl sim`) instead of the declared endpoints.

For each simulated cabinet, do what an operator does once on a real cabinet: as root
(ticket session, pinned fingerprint), create the automation user the cabinet file names,
give it `Administrator` on `/`, and make its API token (rotated when it already exists).
The targets (endpoint, fingerprint, token id, secret) go to a 0600 JSON file that
`kloudctl.proxmox.target` reads; no secret is printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.errors import NotFound
from kloudctl.model import Fleet
from kloudctl.proxmox.automation import ensure_automation_token
from kloudctl.proxmox.target import targets_file


def bootstrap_target(fleet: Fleet, cabinet: str, endpoint: dict[str, Any]) -> dict[str, str]:
    """Automation user + token on one simulated cabinet; returns its target."""
    declared = fleet.cabinet(cabinet).proxmox.token
    made = ensure_automation_token(
        endpoint["url"],
        endpoint["fingerprint"],
        root_user=endpoint.get("user", "root@pam"),
        root_password=endpoint["password"],
        user=declared.user,
        token_id=declared.id,
    )
    return {
        "endpoint": endpoint["url"],
        "fingerprint": endpoint["fingerprint"],
        "token_id": made.token_id,
        "secret": made.secret,
    }


def write_targets(root: Path, targets: dict[str, dict[str, str]]) -> Path:
    path = targets_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except ValueError:
            current = {}
    current.update(targets)
    return files.write_atomic(
        path, json.dumps(current, indent=2), mode=0o600, what="simulator targets file"
    )


def use_simulator(fleet: Fleet, root: Path, run: dict[str, Any] | None) -> list[str]:
    """Bootstrap every simulated cabinet of `run` (the sim's run record) that the fleet
    declares; write the targets file. Returns the cabinets now served by the simulator."""
    if run is None:
        raise NotFound("no simulator is running (start one with `kloudctl sim up CABINET...`)")
    declared = {c.name for c in fleet}
    targets = {
        ep["name"]: bootstrap_target(fleet, ep["name"], ep)
        for ep in run.get("cabinets", [])
        if ep["name"] in declared
    }
    if not targets:
        raise NotFound("the running simulator serves none of the fleet's cabinets")
    write_targets(root, targets)
    return sorted(targets)


def populate_guests(
    target: dict[str, str],
    fleet: Fleet,
    cabinet: str,
    per_tenant: int,
    stopped: int = 1,
    total: int | None = None,
) -> int:
    """Give each tenant of a simulated cabinet a pool and `per_tenant` guests in its VMID
    range (the first `stopped` of them stopped, the others running; `total` guests at most
    in the cabinet), made through the API
    with the cabinet's automation token, spread over the nodes: a populated cabinet for
    status tests and benches, without a Pulumi run. Returns how many guests were made."""
    from kloudctl.capacity import plan_cabinet
    from kloudctl.proxmox.client import ApiTarget, Client

    model = fleet.cabinet(cabinet)
    nodes = [n.name for n in model.hardware.nodes]
    client = Client(ApiTarget.from_inputs(target))
    made = 0
    try:
        for tenant in plan_cabinet(model).tenants:
            client.post("pools", poolid=tenant.name, comment=tenant.display_name)
            for i in range(per_tenant):
                if total is not None and made >= total:
                    break
                vmid = tenant.vmid_first + i
                client.post(
                    f"nodes/{nodes[made % len(nodes)]}/qemu",
                    vmid=vmid,
                    name=f"{tenant.name}-{i}",
                    pool=tenant.name,
                    cores=1 + i % 2,
                    memory=1024,
                    scsi0=f"{model.hardware.storage}:4",
                    start=0 if i < stopped else 1,
                )
                made += 1
    finally:
        client.session.close()
    return made
