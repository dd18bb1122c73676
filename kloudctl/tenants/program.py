"""The Pulumi program of a cabinet's tenants: one stack per cabinet.

Run by `kloudctl tenants ...` (Automation API, inline) and by a plain `pulumi up` in
`pulumi/` (whose `__main__.py` calls `run()`). The stack name is the cabinet's name; the
cabinet is read from the fleet through `kloudctl.model` and allocated by
`kloudctl.capacity.plan_cabinet` (VLANs, VMID ranges, addresses), never re-derived.

Configuration (namespace `kloudctl`):
  fleet         fleet folder (default: the folder above pulumi/)
  endpoint, fingerprint, tokenId   the Proxmox API (default: the cabinet's declaration)
  tokenSecret   the automation token's secret: a config *secret*, required
  bridge        the bridge tenant VLANs ride on (default vmbr0)
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from kloudctl.capacity import plan_cabinet
from kloudctl.model import load_fleet
from kloudctl.model.schema import Cabinet
from kloudctl.tenants.components import ApiArgs, ContainerSpec, GuestSpec, Tenant, TenantArgs

DEFAULT_BRIDGE = "vmbr0"


def tenant_args(
    cabinet: Cabinet, api: ApiArgs, bridge: str = DEFAULT_BRIDGE
) -> dict[str, TenantArgs]:
    """TenantArgs for every tenant of the cabinet, from the declaration and its plan."""
    plan = plan_cabinet(cabinet)
    declared = {t.name: t for t in cabinet.tenants}
    result = {}
    for tplan in plan.tenants:
        tenant = declared[tplan.name]
        vms = {vm.name: vm for vm in tenant.vms}
        guests = [
            GuestSpec(
                name=vplan.name,
                template=vplan.template,
                cores=vplan.cores,
                memory=vplan.memory,
                disk=vplan.disk,
                vmid_hint=vplan.vmid,
                address=str(vplan.address),
                ssh_keys=list(vms[vplan.name].ssh_keys),
                tags=list(vms[vplan.name].tags),
                description=vms[vplan.name].description or "",
                onboot=vms[vplan.name].start_at_boot,
            )
            for vplan in tplan.vms
        ]
        cts = {ct.name: ct for ct in tenant.containers}
        containers = [
            ContainerSpec(
                name=cplan.name,
                template=cplan.template,
                cores=cplan.cores,
                memory=cplan.memory,
                disk=cplan.disk,
                vmid_hint=cplan.vmid,
                address=str(cplan.address),
                unprivileged=cplan.unprivileged,
                tags=list(cts[cplan.name].tags),
                description=cts[cplan.name].description or "",
                onboot=cts[cplan.name].start_at_boot,
            )
            for cplan in tplan.containers
        ]
        result[tplan.name] = TenantArgs(
            api=api,
            display_name=tplan.display_name,
            level=tplan.level,
            vlan=tplan.vlan,
            bridge=bridge,
            subnet=str(tplan.subnet),
            gateway=str(tplan.gateway),
            supernet=str(cabinet.networks.tenant_supernet),
            vmid_first=tplan.vmid_first,
            vmid_last=tplan.vmid_last,
            guests=guests,
            containers=containers,
            storage=cabinet.hardware.storage,
        )
    return result


def build(cabinet: Cabinet, api: ApiArgs, bridge: str = DEFAULT_BRIDGE) -> dict[str, Tenant]:
    """Declare every tenant of the cabinet and export what tenants need to know."""
    tenants = {name: Tenant(name, args) for name, args in tenant_args(cabinet, api, bridge).items()}
    pulumi.export(
        "tenants",
        {
            name: {
                "pool": t.pool,
                "userid": t.userid,
                "token_id": t.token_id,
                "guests": {g._name: g.vmid for g in t.guests},
                "containers": {c._name: c.vmid for c in t.containers},
            }
            for name, t in tenants.items()
        },
    )
    pulumi.export(
        "token_secrets", pulumi.Output.secret({n: t.token_secret for n, t in tenants.items()})
    )
    pulumi.export("endpoint", api.endpoint)
    pulumi.export("fingerprint", api.fingerprint)
    return tenants


def run(default_fleet: Path | None = None) -> None:
    """The program: reads the stack's config and the fleet, declares the tenants."""
    config = pulumi.Config("kloudctl")
    fleet = Path(config.get("fleet") or default_fleet or Path.cwd().parent)
    cabinet = load_fleet(fleet).cabinet(pulumi.get_stack())
    declared = cabinet.proxmox
    api = ApiArgs(
        endpoint=config.get("endpoint") or declared.endpoint,
        fingerprint=config.get("fingerprint") or declared.fingerprint,
        token_id=config.get("tokenId") or f"{declared.token.user}!{declared.token.id}",
        secret=config.require_secret("tokenSecret"),
    )
    build(cabinet, api, config.get("bridge") or DEFAULT_BRIDGE)
