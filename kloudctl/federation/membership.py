"""Declared replication peers against the federation's registry (for `kloudctl validate`).

The rule: a cabinet that declares `federation: {name: F}` and replicates may only name
peers that are active members of F, as the registry this fleet holds says (the state
folder `<fleet>/.state/federation`, or the one given). Until the fleet holds a registry
(before `federation init` or `join`), there is nothing to check against, and peers are
checked against `cabinets/` only, as for a cabinet outside any federation.
"""

from __future__ import annotations

from pathlib import Path

from kloudctl.errors import Problem
from kloudctl.federation import REGISTRY_FILE
from kloudctl.model import Fleet


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
