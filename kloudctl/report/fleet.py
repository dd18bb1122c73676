"""Fleet read-outs: the cabinet list and one cabinet's details."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from kloudctl import console
from kloudctl.capacity import plan_cabinet
from kloudctl.errors import KloudError
from kloudctl.federation.peers import NoEligiblePeer, NoRegistry, PeerResolver
from kloudctl.model import Fleet
from kloudctl.model.types import format_duration, format_size


def cabinet_rows(fleet: Fleet) -> list[dict[str, Any]]:
    rows = []
    resolver = PeerResolver(fleet)
    for cab in fleet:
        estimate = plan_cabinet(cab).power.estimated_watts
        rows.append(
            {
                "cabinet": cab.name,
                "commune": cab.commune.name,
                "insee": cab.commune.insee,
                "nodes": len(cab.hardware.nodes),
                "tenants": len(cab.tenants),
                "vms": sum(len(t.vms) for t in cab.tenants),
                "containers": sum(len(t.containers) for t in cab.tenants),
                "mail_domains": ", ".join(cab.mail.domains) if cab.mail else "",
                "replicates_to": _replicates_to(resolver, cab.name) if cab.replication else "",
                "federation": cab.federation.name if cab.federation else "",
                "power": f"{estimate:.0f}/{cab.power.budget_watts:.0f} W",
            }
        )
    return rows


def _replicates_to(resolver: PeerResolver, name: str) -> str:
    """The peers a cabinet's copies go to; `auto (X)` for the federation's choice."""
    rep = resolver.fleet.cabinet(name).replication
    if rep is None or not rep.auto_peers:
        return ", ".join(rep.declared_peers) if rep else ""
    try:
        return f"auto ({', '.join(resolver.peers(name))})"
    except NoRegistry:
        return "auto (none: no federation registry)"
    except NoEligiblePeer:
        return "auto (none: no eligible member)"
    except KloudError:  # a damaged record: `kloudctl plan` names the file and the field
        return "auto (unreadable choice: see `kloudctl plan`)"


def cabinet_detail(fleet: Fleet, name: str) -> dict[str, Any]:
    cab = fleet.cabinet(name)
    declaration = cab.model_dump(mode="json")
    return {"cabinet": declaration, "plan": plan_cabinet(cab).to_dict()}


def render_cabinet(detail: dict[str, Any]) -> None:
    cab = detail["cabinet"]
    commune = cab["commune"]
    api, nets = cab["proxmox"], cab["networks"]
    population = f", {commune['population']} inhabitants" if commune.get("population") else ""
    console.show(
        Text.assemble(
            (cab["name"], "bold"), f" — {commune['name']} (INSEE {commune['insee']}{population})"
        )
    )
    lines = [
        f"site: {cab['site']['address']}",
        f"contact: {commune['contact']['name']} <{commune['contact']['email']}>",
        f"Proxmox API: {api['endpoint']} (token {api['token']['user']}!{api['token']['id']})",
        f"WAN {nets['wan']['address']}, management {nets['management']['network']}",
    ]
    if cab.get("mail"):
        lines.append(f"mail: {', '.join(cab['mail']['domains'])} on {cab['mail']['hostname']}")
    if cab.get("replication"):
        rep = cab["replication"]
        rpo = f", RPO {format_duration(rep['rpo'], exact=True)}" if rep.get("rpo") else ""
        lines.append(f"replication: policy {rep['policy']} to {', '.join(rep['peers'])}{rpo}")
    if cab.get("federation"):
        lines.append(f"federation: {cab['federation']['name']} ({cab['federation']['role']})")
    for line in lines:
        console.line(line)
    nodes = cab["hardware"]["nodes"]
    console.show(
        console.table(
            "Nodes",
            ["node", "cores", "RAM", "disks", "idle W", "peak W"],
            [
                [
                    n["name"],
                    n["cores"],
                    format_size(n["ram"]),
                    ", ".join(
                        f"{d['name']} {format_size(d['size'])} {d['kind']}" for d in n["disks"]
                    ),
                    n["idle_watts"],
                    n["peak_watts"],
                ]
                for n in nodes
            ],
        )
    )


__all__ = ["cabinet_detail", "cabinet_rows", "render_cabinet"]
