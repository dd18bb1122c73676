"""Each cabinet's federation membership, as the fleet's local registry says.

The registry is read once per run from the fleet's federation state folder (default
`<fleet>/.state/federation`, the one `kloudctl federation` uses) and verified as
`kloudctl federation status` does: the whole signed chain, and never older than the
version this member already accepted. What it says of a cabinet (a member whose `cabinet`
is that cabinet's name):

- `active` / `revoked`: the member's state, with the federation's name, the member's
  commune and role, the registry version held locally, and the mesh: `not set up` until
  read; for a deployed cabinet (reached over SSH, `mesh_reader`), its interface's
  handshakes with every other active member, from `wg show kfed0 latest-handshakes` on
  the cabinet:
  `up` when every peer handshook within WireGuard's 180 s session life, else `degraded`
  naming the peers without a recent handshake;
- `not a member`: the registry exists, the cabinet is not in it;
- `not set up`: no registry here (a cabinet that declares a federation says which);
- `error`: the registry does not verify (tampered, rolled back, forked, unreadable). Every
  cabinet carries the same error, naming the bad entry: nothing the registry says can be
  believed, for any of them.

Reading never creates the folder nor changes anything in it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kloudctl import ssh
from kloudctl.errors import KloudError
from kloudctl.federation.mesh import DEFAULT_INTERFACE, parse_handshakes
from kloudctl.federation.registry import Registry, RegistryStore
from kloudctl.model.schema import Cabinet

NOT_SET_UP = "not set up"
ERROR = "error"
#: The WireGuard mesh is not built yet: no handshakes to read.
MESH_NOT_SET_UP = "not set up"
#: WireGuard's REJECT_AFTER_TIME: a session older than this is over; keepalives renew it.
SESSION_LIFE = 180

FederationProbe = Callable[[Cabinet], dict[str, Any]]
#: (cabinet, how to reach it, seconds left) -> its mesh's state.
MeshReader = Callable[[Cabinet, ssh.SshTarget, float], dict[str, Any]]


def mesh_reader(folder: Path) -> MeshReader | None:
    """Reads a deployed member's mesh over SSH (None without a registry that verifies)."""
    store = RegistryStore(folder)
    if not store.exists():
        return None
    try:
        registry = store.load()
    except KloudError:
        return None
    by_cabinet = {m.cabinet: m for m in registry.members.values()}

    def read(cabinet: Cabinet, target: ssh.SshTarget, timeout: float) -> dict[str, Any]:
        member = by_cabinet.get(cabinet.name)
        if member is None or member.state != "active":
            return {"state": MESH_NOT_SET_UP}
        # latest-handshakes, not dump: dump's first line is the interface's private key.
        command = ["wg", "show", DEFAULT_INTERFACE, "latest-handshakes"]
        tool = f"`wg show {DEFAULT_INTERFACE} latest-handshakes` on {cabinet.name}"
        try:
            proc = ssh.run(target, command, timeout=timeout)
            if proc.returncode != 0:
                return {"state": "unknown", "detail": f"{tool}: {ssh.last_line(proc.stderr)}"}
            peers = parse_handshakes(proc.stdout, DEFAULT_INTERFACE)
        except KloudError as exc:
            return {"state": "unknown", "detail": " ".join(str(exc).split())}
        now = time.time()
        ages: dict[str, int | None] = {}
        for commune, other in sorted(registry.active().items()):
            if commune == member.commune:
                continue
            seen = peers.get(other.wireguard_key)
            ages[commune] = None if seen is None else max(int(now - seen), 0)
        stale = [c for c, age in ages.items() if age is None or age > SESSION_LIFE]
        return {
            "state": "degraded" if stale else "up",
            "handshake_age_s": ages,
            "no_recent_handshake": stale,
        }

    return read


def probe(folder: Path) -> tuple[FederationProbe, str | None]:
    """What each cabinet's federation state is, from the registry in `folder`; and the
    registry's error, when it does not verify (None otherwise)."""
    store = RegistryStore(folder)
    if not store.exists():
        return _no_registry(folder), None
    try:
        registry = store.load()
    except KloudError as exc:
        detail = " ".join(str(exc).split())
        return (lambda cabinet: {"state": ERROR, "detail": detail}), detail
    return _from_registry(registry), None


def _no_registry(folder: Path) -> FederationProbe:
    def state(cabinet: Cabinet) -> dict[str, Any]:
        if cabinet.federation is None:
            return {"state": NOT_SET_UP}
        return {
            "state": NOT_SET_UP,
            "detail": f"declares federation '{cabinet.federation.name}'; no registry in {folder}",
        }

    return state


def _from_registry(registry: Registry) -> FederationProbe:
    by_cabinet = {m.cabinet: m for m in registry.members.values()}

    def state(cabinet: Cabinet) -> dict[str, Any]:
        member = by_cabinet.get(cabinet.name)
        held = {
            "federation": registry.federation,
            "registry_version": registry.version,
            "mesh": MESH_NOT_SET_UP,
        }
        if member is None:
            return {"state": "not a member", **held}
        return {
            "state": member.state,
            **held,
            "commune": member.commune,
            "role": "coordinator" if member.commune == registry.coordinator else "member",
            "mesh_address": member.mesh_address,
        }

    return state
