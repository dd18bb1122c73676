"""The fleet as Ansible sees it: hosts and groups (`kloudctl.hosts.inventory`) plus each
area's role inputs. The inventory plugin (`inventory/plugins/kloudctl_fleet.py`) and kloudctl
itself both read it from here, so nothing about a host is computed twice.

It sits above the areas it gathers: `hosts` knows nothing of replication, and replication
deploys through `hosts` (see docs/architecture.md). It is also where the federation meets
replication: the registry the fleet holds says which cabinets are active members, and copies
between two of them go over the mesh (`replication.roles.peer_url`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kloudctl.federation import membership
from kloudctl.federation import roles as federation_roles
from kloudctl.federation.peers import PeerResolver, state_folder
from kloudctl.hosts import inventory
from kloudctl.hosts.inventory import RoleVars, Template
from kloudctl.model import Fleet, load_fleet
from kloudctl.replication import roles as replication_roles

__all__ = ["Template", "build", "load", "role_vars"]


def peers_of(resolver: PeerResolver) -> Callable[[str], list[str]]:
    """Each cabinet's replication peers: declared, or its `peers: auto` choice (recorded by
    deploy; one that cannot be made gives none here, and deploy refuses it)."""
    return lambda name: resolver.peers(name, strict=False)


def role_vars(fleet: Fleet, resolver: PeerResolver) -> tuple[RoleVars, ...]:
    """Each area's role inputs, with what the fleet's federation registry says: the members'
    mesh addresses, and the peers `resolver` gives."""
    mesh = membership.mesh_addresses(fleet, state_folder(fleet.root))
    replication = functools.partial(replication_roles.role_vars, mesh=mesh, resolver=resolver)
    return (replication, federation_roles.role_vars)


def build(fleet: Fleet, testbed: dict[str, Any] | None = None) -> dict[str, Any]:
    # one resolver for the whole inventory: the registry is read and verified once
    resolver = PeerResolver(fleet)
    return inventory.build(fleet, testbed, role_vars(fleet, resolver), peers_of(resolver))


def load(root: Path, testbed: dict[str, Any] | None = None) -> dict[str, Any]:
    fleet = load_fleet(root)  # the foundation's located errors on bad input
    return build(fleet, testbed)
