"""The Ansible inventory, computed from the fleet model (nothing about a host is declared twice).

One host per cabinet: the cabinet's management host (its first node), reached at the
management address. Groups:

- ``cabinets``: every cabinet host;
- ``commune_<name>``: one per commune;
- ``proxmox_hosts``: every cabinet host (each runs Proxmox VE);
- ``mail_hosts``: cabinets declaring a mail service;
- ``replication_sources``: cabinets that replicate to a peer;
- ``replication_targets``: cabinets that some other cabinet replicates to;
- ``federation_members`` and ``federation_<name>``: cabinets in a federation.

Host variables are the roles' inputs, named ``<role>__<var>`` as the roles expect, plus a
few ``kloudctl_*`` facts about the cabinet. A running testbed (test cabinets in podman)
overlays connection settings only: address, key, known hosts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kloudctl.model import Cabinet, Fleet

DOMAIN = "kloudici.internal"


def group_name(prefix: str, name: str) -> str:
    """A valid Ansible group name: letters, digits and underscores."""
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', name.lower())}"


def host_vars(cabinet: Cabinet) -> dict[str, Any]:
    mgmt = cabinet.networks.management
    node = cabinet.hardware.nodes[0]
    ups = cabinet.power.ups
    hostvars: dict[str, Any] = {
        "ansible_host": str(mgmt.host_address),
        "ansible_user": "root",
        "kloudctl_cabinet": cabinet.name,
        "kloudctl_commune": cabinet.commune.name,
        "kloudctl_insee": cabinet.commune.insee,
        "kloudctl_proxmox_endpoint": str(cabinet.proxmox.endpoint),
        "kloudctl_mail_domains": list(cabinet.mail.domains) if cabinet.mail else [],
        "kloudctl_replication_peers": _declared_peers(cabinet),
        "kloudctl_federation": cabinet.federation.name if cabinet.federation else None,
        "kloudctl_federation_role": cabinet.federation.role if cabinet.federation else None,
        # proxmox_host
        "proxmox_host__hostname": node.name,
        "proxmox_host__domain": f"{cabinet.name}.{DOMAIN}",
        "proxmox_host__management_address": str(mgmt.host_address),
        "proxmox_host__management_prefix": mgmt.network.prefixlen,
        "proxmox_host__management_gateway": str(mgmt.gateway),
        "proxmox_host__tenant_vlans": (
            f"{cabinet.networks.tenant_vlans.first}-{cabinet.networks.tenant_vlans.last}"
        ),
        "proxmox_host__automation_user": cabinet.proxmox.token.user,
        "proxmox_host__automation_token_id": cabinet.proxmox.token.id,
        # power_budget
        "power_budget__budget_watts": cabinet.power.budget_watts,
        "power_budget__ups_name": ups.name if ups else "",
        "power_budget__ups_host": ups.host if ups else "",
        "power_budget__spindown_disks": [
            d.name for n in cabinet.hardware.nodes[:1] for d in n.disks if d.kind == "hdd"
        ],
    }
    return hostvars


def _declared_peers(cabinet: Cabinet) -> list[str]:
    return cabinet.replication.declared_peers if cabinet.replication else []


class Template(str):
    """A value Ansible must template (the plugin marks only these as trusted): values that
    come from the fleet's files stay plain data, never evaluated."""


#: Each area's role inputs for one cabinet (e.g. `kloudctl.replication.roles.role_vars`).
RoleVars = Callable[[Fleet, Cabinet], dict[str, Any]]


def build(
    fleet: Fleet,
    testbed: dict[str, Any] | None = None,
    role_vars: Sequence[RoleVars] = (),
    peers_of: Callable[[str], list[str]] | None = None,
) -> dict[str, Any]:
    """The inventory: {"groups": {name: {"hosts": [...], "children": []}}, "hostvars": {...}}.

    Host variables are the hosts' own roles' inputs, plus what each of `role_vars` (one per
    area: replication...) computes for the cabinet; `kloudctl.ansible_inventory` gathers
    them. `peers_of` gives a cabinet's replication peers (its `peers: auto` choice, resolved
    by the federation); without it only the peers named in the files count."""
    groups: dict[str, dict[str, list[str]]] = {
        "cabinets": {"hosts": [], "children": []},
        "proxmox_hosts": {"hosts": [], "children": []},
        "mail_hosts": {"hosts": [], "children": []},
        "replication_sources": {"hosts": [], "children": []},
        "replication_targets": {"hosts": [], "children": []},
        "federation_members": {"hosts": [], "children": []},
    }
    hostvars: dict[str, dict[str, Any]] = {}
    peers = peers_of or (lambda name: _declared_peers(fleet.cabinet(name)))
    targets = {peer for c in fleet if c.replication for peer in peers(c.name)}

    def add(group: str, host: str) -> None:
        groups.setdefault(group, {"hosts": [], "children": []})["hosts"].append(host)

    for cabinet in fleet:
        host = cabinet.name
        hostvars[host] = host_vars(cabinet) | {"kloudctl_replication_peers": peers(host)}
        add("cabinets", host)
        add("proxmox_hosts", host)
        add(group_name("commune", cabinet.name), host)
        if cabinet.mail:
            add("mail_hosts", host)
        for area_vars in role_vars:
            hostvars[host].update(area_vars(fleet, cabinet))
        if cabinet.replication:
            add("replication_sources", host)
        if cabinet.name in targets:
            add("replication_targets", host)
        if cabinet.federation:
            add("federation_members", host)
            add(group_name("federation", cabinet.federation.name), host)
    if testbed:
        _overlay_testbed(hostvars, testbed)
    return {"groups": groups, "hostvars": hostvars}


def _overlay_testbed(hostvars: dict[str, dict[str, Any]], testbed: dict[str, Any]) -> None:
    """Point hosts that run as test cabinets at their containers (connection only)."""
    state_dir = Path(testbed["state_dir"])
    try:
        secret_vars = json.loads((state_dir / "secret-vars.json").read_text())
    except (OSError, ValueError):
        secret_vars = {}
    for cabinet, host in testbed.get("hosts", {}).items():
        if cabinet not in hostvars:
            continue
        hv = hostvars[cabinet]
        hv["ansible_host"] = host["address"]
        hv["ansible_ssh_private_key_file"] = str(state_dir / "id_ed25519")
        hv["ansible_ssh_common_args"] = (
            f"-o UserKnownHostsFile={state_dir / 'known_hosts'} -o StrictHostKeyChecking=yes "
            "-o IdentitiesOnly=yes -o ConnectTimeout=5"
        )
        hv["kloudctl_testbed"] = True
        hv.update(testbed.get("hostvars", {}).get(cabinet, {}))
        hv.update(secret_vars.get(cabinet, {}))
