"""Declared replication peers against the federation's registry (for `kloudctl validate`).

The rule: a cabinet that declares `federation: {name: F}` and replicates may only name
peers that are active members of F, as the registry this fleet holds says (the state
folder `<fleet>/.state/federation`, or the one given). Until the fleet holds a registry
(before `federation init` or `join`), there is nothing to check against, and peers are
checked against `cabinets/` only, as for a cabinet outside any federation.

The same registry says where members reach each other: `mesh_addresses` gives each active
member's mesh address, by cabinet, for replication between members to go over the mesh.
"""

from __future__ import annotations

from pathlib import Path

from kloudctl.errors import Problem
from kloudctl.federation import REGISTRY_FILE
from kloudctl.model import Fleet


def mesh_addresses(fleet: Fleet, folder: Path) -> dict[str, str]:
    """{cabinet: mesh address} for every cabinet of the fleet that is an active member of
    the federation whose registry `folder` holds (and declares that federation); empty
    without a registry. A registry that does not verify is an error naming the bad entry:
    no address it gives can be believed."""
    if not (folder / REGISTRY_FILE).is_file():
        return {}
    federated = [c for c in fleet if c.federation is not None]
    if not federated:
        return {}
    from kloudctl.federation.registry import RegistryStore  # see peer_problems

    registry = RegistryStore(folder).load()
    declared = {
        c.name for c in federated if c.federation and c.federation.name == registry.federation
    }
    return {m.cabinet: m.mesh_address for m in registry.active().values() if m.cabinet in declared}


def peer_problems(fleet: Fleet, only: list[Path] | None, folder: Path) -> list[Problem]:
    if not (folder / REGISTRY_FILE).is_file():
        return []
    # Imported only with a registry to verify: the trimmed kloudctl a cabinet carries has no
    # `cryptography`, and `kloudctl validate` stays available there.
    from kloudctl.federation.registry import RegistryStore

    store = RegistryStore(folder)
    registry = store.load()  # a registry that does not verify is an error
    members = {m.cabinet: m for m in registry.members.values()}
    problems: list[Problem] = []
    # A cabinet's file is cabinets/<name>.yaml: only the files asked for are checked.
    asked = None if only is None else {p.stem for p in only if p.parent.name == "cabinets"}
    for name, loaded in sorted(fleet.cabinets.items()):
        cab, src = loaded.model, loaded.source
        if asked is not None and name not in asked:
            continue
        if cab.federation is None or cab.replication is None:
            continue
        if cab.federation.name != registry.federation:
            problems.append(
                src.problem(
                    ("federation", "name"),
                    f"this fleet holds the registry of federation '{registry.federation}'"
                    f" ({store.path}), not '{cab.federation.name}': its peers cannot be checked",
                )
            )
            continue
        active = sorted(m.cabinet for m in registry.active().values() if m.cabinet != name)
        for j, peer in enumerate(cab.replication.declared_peers):
            member = members.get(peer)
            if member is not None and member.state == "active":
                continue
            why = "was revoked" if member is not None else "is not a member"
            problems.append(
                src.problem(
                    ("replication", "peers", j),
                    f"cabinet '{peer}' {why} of federation '{registry.federation}' (registry"
                    f" version {registry.version}; members: {', '.join(active) or 'none'})",
                )
            )
    return problems
