"""The replication roles' inputs, computed from the fleet for the Ansible inventory.

`replication_source` on cabinets that replicate (peers, secrets as lookups, schedule: the
policy's interval as an OnCalendar, `kloudctl.hosts.timers.on_calendar`),
`replication_target` on cabinets others replicate to (rest-server users, retention). No
secret value appears here: only `lookup('file', ...)` templates into the controller's
replication state, which Ansible reads when a role runs.

Between two active members of the federation whose registry the controller holds, copies go
over the mesh: the source reaches the peer's rest-server at the peer's mesh address (the
only path between communes; the mesh's firewall opens the replication port for exactly
this), and the peer's certificate names that address beside its management address (which
the controller uses). Elsewhere, the peer's management address (`ansible_host`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kloudctl.federation.peers import PeerResolver, load_record
from kloudctl.hosts.inventory import Template
from kloudctl.hosts.timers import on_calendar
from kloudctl.model import Cabinet, Fleet
from kloudctl.replication.layout import sources_of
from kloudctl.replication.restic import restic_duration

REST_SERVER_PORT = 8000


def _secret(name: str, filters: str = "") -> Template:
    """A lookup, templated only when a role reads it: the inventory itself holds no secret.
    `kloudctl_replication_state` is kloudctl's replication state folder on the controller."""
    path = f"kloudctl_replication_state ~ '/secrets/{name}'"
    return Template(f"{{{{ lookup('ansible.builtin.file', {path}){filters} }}}}")


def peer_url(me: str, peer: str, mesh: Mapping[str, str]) -> str:
    """Where `me` reaches `peer`'s rest-server: over the mesh when both are on it."""
    if me in mesh and peer in mesh:
        return f"https://{mesh[peer]}:{REST_SERVER_PORT}"  # from the verified registry
    return Template(f"https://{{{{ hostvars['{peer}'].ansible_host }}}}:{REST_SERVER_PORT}")


def role_vars(
    fleet: Fleet,
    cabinet: Cabinet,
    mesh: Mapping[str, str] | None = None,
    resolver: PeerResolver | None = None,
) -> dict[str, Any]:
    """The replication roles' inputs: sources send to peers, targets host their copies.
    `mesh`: {cabinet: mesh address} of the federation's active members
    (`kloudctl.federation.membership.mesh_addresses`); `resolver`: the fleet's one peer
    resolver, shared by every cabinet of an inventory (it verifies the registry once)."""
    mesh = mesh or {}
    me = cabinet.name
    out: dict[str, Any] = {}
    rep = cabinet.replication
    policy = fleet.policy_for(cabinet)
    # Declared peers, or the recorded `auto` choice (deploy records it before the playbook
    # runs); an auto choice that cannot be made gives no peers here, and deploy refuses.
    resolver = resolver or PeerResolver(fleet)
    peers = resolver.peers(me, strict=False)
    if rep and policy:
        secrets = {f"{me}.local.password": _secret(f"{me}.local.password")}
        for peer in peers:
            for suffix in ("password", "owner.password", "rest"):
                secrets[f"{me}@{peer}.{suffix}"] = _secret(f"{me}@{peer}.{suffix}")
        out |= {
            "replication_source__cabinet": me,
            "replication_source__peers": [
                {
                    "name": peer,
                    "url": peer_url(me, peer, mesh),
                    "cacert": Template(
                        "{{ lookup('ansible.builtin.file', kloudctl_replication_state"
                        f" ~ '/certs/{peer}.pem') }}}}"
                    ),
                }
                for peer in peers
            ],
            "replication_source__secrets": secrets,
            "replication_source__run_on_calendar": on_calendar(policy.interval),
        }
    sources = sources_of(fleet, me, resolver)
    if rep and policy:
        out["replication_source__peer_choices"] = shipped_choices(fleet, resolver, me, sources)
    if sources:
        entries = []
        for source in sources:
            source_policy = fleet.policy_for(fleet.cabinet(source))
            assert source_policy is not None
            within = {
                k: restic_duration(v)
                for k, v in source_policy.retention.peer.model_dump().items()
                if v is not None
            }
            htpasswd = _secret(f"{source}@{me}.htpasswd", " | regex_replace('^[^:]*:', '')")
            owner = _secret(f"{source}@{me}.owner.password")
            entry = {"name": source, "htpasswd": htpasswd, "owner_password": owner}
            entries.append(entry | within)
        out |= {
            "replication_target__sources": entries,
            "replication_target__listen": f"0.0.0.0:{REST_SERVER_PORT}",
            "replication_target__tls_addresses": [
                Template("{{ ansible_host }}"),
                *([mesh[me]] if me in mesh else []),
            ],
        }
    return out


def shipped_choices(
    fleet: Fleet, resolver: PeerResolver, me: str, sources: list[str]
) -> dict[str, dict[str, Any]]:
    """The recorded `peers: auto` choices a cabinet's own kloudctl needs, {cabinet: record}:
    its own and those of the auto cabinets whose copies it hosts. The cabinet never chooses
    (`PeerResolver(shipped=...)` there); none recorded yet gives none (deploy records first)."""
    out: dict[str, dict[str, Any]] = {}
    for name in [me, *sources]:
        rep = fleet.cabinet(name).replication
        if rep and rep.auto_peers and (record := load_record(resolver.folder, name)):
            out[name] = record.to_dict()
    return out
