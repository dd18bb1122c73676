"""Rendering of a cabinet plan as tables a person can read."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text

from kloudctl import console
from kloudctl.capacity.plan import CabinetPlan, ContainerPlan, VmPlan
from kloudctl.model.types import format_size

if TYPE_CHECKING:  # the cabinet's trimmed kloudctl has no `cryptography` for the registry
    from kloudctl.federation.choice import PeerChoice
    from kloudctl.federation.peers import Resolution


def render_plan(plan: CabinetPlan) -> None:
    console.show(f"[bold]Plan for cabinet {plan.cabinet}[/] (offline: from the declaration alone)")
    console.show(
        console.table(
            "Capacity (tenants' quotas against the nodes, after overcommit)",
            ["resource", "reserved", "available", "physical", "use", "fits"],
            [
                [
                    r.name,
                    r.show(r.reserved),
                    r.show(r.capacity),
                    r.show(r.physical),
                    f"{100 * r.reserved / r.capacity:.0f}%" if r.capacity else "-",
                    "yes" if r.fits else "NO",
                ]
                for r in plan.resources
            ],
        )
    )
    p = plan.power
    rows: list[list[object]] = [
        [
            n.node,
            f"{n.idle_watts:g}",
            f"{n.peak_watts:g}",
            f"{100 * n.utilisation:.0f}%",
            f"{n.estimated_watts:.0f}",
        ]
        for n in p.nodes
    ]
    rows.append(["other (network, UPS)", "", "", "", f"{p.other_watts:.0f}"])
    rows.append(
        [
            "total",
            "",
            f"{p.peak_watts:g}",
            "",
            f"{p.estimated_watts:.0f} / {p.budget_watts:.0f} budget",
        ]
    )
    console.show(console.table("Power (W)", ["node", "idle", "peak", "CPU use", "estimated"], rows))
    console.show(
        console.table(
            "Tenants",
            ["tenant", "level", "VLAN", "VMIDs", "subnet", "gateway", "quota", "VMs", "CTs"],
            [
                [
                    t.name,
                    t.level,
                    f"{t.vlan}{' (auto)' if t.auto_vlan else ''}",
                    f"{t.vmid_first}-{t.vmid_last}{' (auto)' if t.auto_vmids else ''}",
                    t.subnet,
                    t.gateway,
                    f"{t.vcpu} vCPU, {format_size(t.ram)}, {format_size(t.disk)}",
                    len(t.vms),
                    len(t.containers),
                ]
                for t in plan.tenants
            ],
        )
    )
    guests: list[tuple[str, VmPlan | ContainerPlan]] = []
    for t in plan.tenants:
        guests += [(t.name, vm) for vm in t.vms] + [(t.name, ct) for ct in t.containers]
    vm_rows = [
        [
            tenant,
            vm.name,
            "container" if isinstance(vm, ContainerPlan) else "VM",
            vm.vmid,
            vm.address,
            vm.cores,
            format_size(vm.memory),
            format_size(vm.disk),
            vm.template,
        ]
        for tenant, vm in guests
    ]
    if vm_rows:
        console.show(
            console.table(
                "Guests",
                [
                    "tenant",
                    "guest",
                    "kind",
                    "VMID",
                    "address",
                    "cores",
                    "memory",
                    "disk",
                    "template",
                ],
                vm_rows,
            )
        )
    refusals = plan.refusals()
    if refusals:
        for reason in refusals:
            console.show(Text.assemble(("refused:", "bold red"), f" {reason}"))
    else:
        console.show("[green]admitted:[/] the plan fits the cabinet's capacity and power budget")


def render_peer_choice(
    choice: PeerChoice | None, folder: Path, resolution: Resolution | None = None
) -> None:
    """`peers: auto`: the peers replication uses (the recorded, sticky choice, or the first
    one), which members the ranking would choose now, and why each was taken or left."""
    if choice is None:
        console.line(
            f"Replication peers (auto): none chosen: this fleet holds no federation registry"
            f" in {folder} (`kloudctl federation init` or `join` first)"
        )
        return
    used = resolution.peers if resolution else choice.chosen
    chosen = ", ".join(used) or "none: no member qualifies (`replication run` refuses)"
    console.line(
        f"Replication peers (auto, federation '{choice.federation}', registry version"
        f" {choice.registry_version}): {chosen}"
    )
    if resolution is not None:
        console.line(f"Peer choice: {_verdict(resolution)}: {resolution.why}")
    console.line(f"Round-trip times: {choice.rtt_source}")
    console.show(
        console.table(
            f"Members considered (the cabinet's tenants are promised"
            f" {format_size(choice.needed_disk)} of disk)",
            ["member", "cabinet", "choice", "why"],
            [
                [
                    c.commune,
                    c.cabinet,
                    _mark(c.cabinet, c.chosen, c.eligible, resolution),
                    "; ".join(c.reasons),
                ]
                for c in choice.candidates
            ],
        )
    )


def _verdict(resolution: Resolution) -> str:
    return {
        "first": "not recorded yet (the first `replication run` or `deploy` records it)",
        "kept": "recorded, kept",
        "moved": "recorded, CHANGES at the next `replication run` or `deploy`",
    }.get(resolution.verdict, resolution.verdict)


def _mark(cabinet: str, ranked: bool, eligible: bool, resolution: Resolution | None) -> str:
    """The table's choice column: the ranking's pick, and the recorded one when it differs."""
    used = cabinet in resolution.peers if resolution else ranked
    if ranked and used:
        return "chosen"
    if used:
        return "kept (recorded)"
    if ranked:
        return "ranked first"
    if resolution and resolution.recorded and cabinet in resolution.recorded.peers:
        return "left"
    return "eligible" if eligible else "no"
