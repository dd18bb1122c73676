"""The offline plan of a cabinet: allocations, capacity and power admission.

Allocations are deterministic so every engine (Pulumi, Ansible, reports) derives the same
answer from the same declaration:
- a tenant's VLAN is the declared one, or the first free VLAN of the cabinet's range, in
  declaration order;
- its VMID range is the declared one, or the first free block of 100 from 1000 up, so
  parallel creators never race on `/cluster/nextid`;
- its subnet is the n-th /prefix of the tenant supernet, n being the VLAN's offset in the
  range (so renumbering a tenant never moves another); the gateway is the first address,
  automatic guest addresses start at the tenth;
- a tenant's VMs take VMIDs from the bottom of its range up, its containers from the top
  down (so adding a VM never renumbers a container, nor a container a VM); addresses go to
  the VMs first, then to the containers.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from typing import Any

from kloudctl.errors import AdmissionRefused, Problem
from kloudctl.model.schema import Cabinet, Container, Vm
from kloudctl.model.types import format_size
from kloudctl.model.yamlsource import Located, PathKey
from kloudctl.power import PowerEstimate, estimate_power

VMID_BLOCK = 100
VMID_START = 1000
VMID_LAST = 999_999_999  # Proxmox's largest VMID
FIRST_AUTO_HOST = 10


@dataclass(frozen=True)
class VmPlan:
    name: str
    vmid: int
    address: ipaddress.IPv4Interface
    cores: int
    memory: int
    disk: int
    template: str
    load: float


@dataclass(frozen=True)
class ContainerPlan:
    name: str
    vmid: int
    address: ipaddress.IPv4Interface
    cores: int
    memory: int
    disk: int
    template: str
    load: float
    unprivileged: bool


@dataclass(frozen=True)
class TenantPlan:
    name: str
    level: int
    display_name: str
    vlan: int
    vmid_first: int
    vmid_last: int
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    vcpu: int
    ram: int
    disk: int
    vms: list[VmPlan]
    auto_vlan: bool
    auto_vmids: bool
    containers: list[ContainerPlan] = field(default_factory=list)


@dataclass(frozen=True)
class Resource:
    name: str
    reserved: float
    capacity: float
    physical: float
    unit: str

    @property
    def fits(self) -> bool:
        return self.reserved <= self.capacity

    def show(self, value: float) -> str:
        return format_size(value) if self.unit == "bytes" else f"{value:g}"


@dataclass
class CabinetPlan:
    cabinet: str
    tenants: list[TenantPlan]
    resources: list[Resource]
    power: PowerEstimate
    problems: list[Problem] = field(default_factory=list)
    source: Located | None = field(default=None, repr=False)
    #: the quota lent to other communes' failed-over council VMs (federation.guests)
    guest_quota: dict[str, int] | None = None

    @property
    def _quotas(self) -> str:
        lent = " and the federation guests' quota" if self.guest_quota else ""
        return f"tenants' quotas{lent}"

    def _refusals(self) -> list[tuple[PathKey, str]]:
        reasons: list[tuple[PathKey, str]] = [
            (
                ("tenants",),
                f"{r.name}: {self._quotas} reserve {r.show(r.reserved)}, the nodes offer "
                f"{r.show(r.capacity)} ({r.show(r.physical)} physical, after overcommit and "
                "host reserve)",
            )
            for r in self.resources
            if not r.fits
        ]
        if not self.power.fits:
            reasons.append(
                (
                    ("power", "budget_watts"),
                    f"power: estimated draw {self.power.estimated_watts:.0f} W exceeds the "
                    f"{self.power.budget_watts:.0f} W budget",
                )
            )
        return reasons

    def refusals(self) -> list[str]:
        """Why the plan cannot be admitted, with the numbers that break it."""
        return [reason for _, reason in self._refusals()]

    def refusal_problems(self) -> list[Problem]:
        out = []
        for path, reason in self._refusals():
            message = f"plan refused: {reason}"
            if self.source is not None:
                out.append(self.source.problem(path, message))
            else:
                out.append(Problem(f"cabinets/{self.cabinet}.yaml", 0, 0, "", message))
        return out

    def to_dict(self) -> dict[str, Any]:
        def plain(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            if isinstance(
                value, ipaddress.IPv4Interface | ipaddress.IPv4Network | ipaddress.IPv4Address
            ):
                return str(value)
            return value

        return {
            "cabinet": self.cabinet,
            "admitted": not self.refusals(),
            "refusals": self.refusals(),
            "tenants": [plain(asdict(t)) for t in self.tenants],
            "guest_quota": self.guest_quota,
            "resources": [{**asdict(r), "fits": r.fits} for r in self.resources],
            "power": {
                "budget_watts": self.power.budget_watts,
                "estimated_watts": round(self.power.estimated_watts, 1),
                "peak_watts": self.power.peak_watts,
                "other_watts": self.power.other_watts,
                "nodes": [asdict(n) for n in self.power.nodes],
                "fits": self.power.fits,
            },
        }


def _allocate_vlans(cabinet: Cabinet) -> list[int]:
    rng = cabinet.networks.tenant_vlans
    taken = {t.vlan for t in cabinet.tenants if t.vlan is not None}
    free = (v for v in range(rng.first, rng.last + 1) if v not in taken)
    return [t.vlan if t.vlan is not None else next(free, -1) for t in cabinet.tenants]


def _allocate_vmids(cabinet: Cabinet) -> list[tuple[int, int]]:
    declared = [(t.vmids.first, t.vmids.last) for t in cabinet.tenants if t.vmids is not None]

    def clashes(first: int) -> list[int]:
        """The ends of the declared ranges the block from `first` overlaps."""
        last = first + VMID_BLOCK - 1
        return [b for a, b in declared if not (last < a or b < first)]

    result = []
    candidate = VMID_START
    for tenant in cabinet.tenants:
        if tenant.vmids is not None:
            result.append((tenant.vmids.first, tenant.vmids.last))
            continue
        while ends := clashes(candidate):
            # jump past the range in the way, to a block boundary: a declared range can
            # span up to 10^9 VMIDs, too many blocks to step through
            candidate += ((max(ends) - candidate) // VMID_BLOCK + 1) * VMID_BLOCK
        result.append((candidate, candidate + VMID_BLOCK - 1))
        candidate += VMID_BLOCK
    return result


def plan_cabinet(cabinet: Cabinet, source: Located | None = None) -> CabinetPlan:
    """Compute allocations, capacity and power. Never raises on what it finds: problems
    (address conflicts...) are returned located in `source` when it is given."""
    problems: list[Problem] = []

    def problem(path: PathKey, message: str) -> None:
        if source is not None:
            problems.append(source.problem(path, message))
        else:
            problems.append(Problem(cabinet.name, 0, 0, ".".join(map(str, path)), message))

    nets = cabinet.networks
    subnets_available = (
        2 ** (nets.tenant_prefix - nets.tenant_supernet.prefixlen)
        if nets.tenant_prefix >= nets.tenant_supernet.prefixlen
        else 0
    )
    vlans = _allocate_vlans(cabinet)
    vmid_ranges = _allocate_vmids(cabinet)
    tenants: list[TenantPlan] = []
    used_addresses: dict[ipaddress.IPv4Address, str] = {}
    for i, (tenant, vlan, (vfirst, vlast)) in enumerate(
        zip(cabinet.tenants, vlans, vmid_ranges, strict=True)
    ):
        if vlan < 0:
            problem(("tenants", i, "vlan"), "no free VLAN left in networks.tenant_vlans")
            continue
        if vlast > VMID_LAST:
            problem(("tenants", i), f"no free block of {VMID_BLOCK} VMIDs left up to {VMID_LAST}")
            continue
        offset = vlan - nets.tenant_vlans.first
        if not 0 <= offset < subnets_available:
            problem(
                ("tenants", i, "vlan"),
                f"VLAN {vlan} maps to subnet #{offset} of {nets.tenant_supernet}, which holds "
                f"only {subnets_available} /{nets.tenant_prefix} subnets",
            )
            continue
        subnet = ipaddress.IPv4Network(
            (
                int(nets.tenant_supernet.network_address) + offset * 2 ** (32 - nets.tenant_prefix),
                nets.tenant_prefix,
            )
        )
        # host addresses by index, never listed: a /16 tenant subnet holds 65,534
        hosts = range(int(subnet.network_address) + 1, int(subnet.broadcast_address))
        gateway = ipaddress.IPv4Address(hosts[0])
        vms: list[VmPlan] = []
        containers: list[ContainerPlan] = []
        auto_index = FIRST_AUTO_HOST - 1
        if len(tenant.vms) + len(tenant.containers) > vlast - vfirst + 1:
            # a declared range is checked with the other declarations (model/fleet.py)
            if tenant.vmids is None:
                problem(
                    ("tenants", i),
                    f"{len(tenant.vms) + len(tenant.containers)} guests do not fit in the "
                    f"automatic block of {VMID_BLOCK} VMIDs {vfirst}-{vlast}: declare vmids",
                )
            continue
        guests: list[tuple[str, int, Vm | Container]] = [
            ("vms", k, vm) for k, vm in enumerate(tenant.vms)
        ]
        guests += [("containers", k, ct) for k, ct in enumerate(tenant.containers)]
        for key, k, vm in guests:
            path = ("tenants", i, key, k, "network", "address")
            if isinstance(vm.network.address, ipaddress.IPv4Interface):
                address = vm.network.address
                if address.network != subnet:
                    problem(path, f"{address} is not in the tenant's subnet {subnet}")
                elif address.ip in (subnet.network_address, subnet.broadcast_address, gateway):
                    problem(path, f"{address.ip} is reserved (network, broadcast or gateway)")
            else:
                while (
                    auto_index < len(hosts)
                    and ipaddress.IPv4Address(hosts[auto_index]) in used_addresses
                ):
                    auto_index += 1
                if auto_index >= len(hosts):
                    problem(path, f"no free address left in {subnet}")
                    continue
                address = ipaddress.IPv4Interface((hosts[auto_index], subnet.prefixlen))
                auto_index += 1
            if address.ip in used_addresses:
                problem(path, f"{address.ip} is already used by VM '{used_addresses[address.ip]}'")
            used_addresses[address.ip] = vm.name
            if isinstance(vm, Container):
                containers.append(
                    ContainerPlan(
                        vm.name,
                        vlast - k,
                        address,
                        vm.cores,
                        vm.memory,
                        vm.disk,
                        vm.template,
                        vm.load,
                        vm.unprivileged,
                    )
                )
            else:
                vms.append(
                    VmPlan(
                        vm.name,
                        vfirst + k,
                        address,
                        vm.cores,
                        vm.memory,
                        vm.disk,
                        vm.template,
                        vm.load,
                    )
                )
        tenants.append(
            TenantPlan(
                name=tenant.name,
                level=tenant.level,
                display_name=tenant.display_name,
                vlan=vlan,
                vmid_first=vfirst,
                vmid_last=vlast,
                subnet=subnet,
                gateway=gateway,
                vcpu=tenant.quota.vcpu,
                ram=tenant.quota.ram,
                disk=tenant.quota.disk,
                vms=vms,
                auto_vlan=tenant.vlan is None,
                auto_vmids=tenant.vmids is None,
                containers=containers,
            )
        )

    lent_to = cabinet.federation.guests if cabinet.federation else None
    if lent_to is not None:
        first, last = lent_to.vmids.first, lent_to.vmids.last
        for i, (tfirst, tlast) in enumerate(vmid_ranges):
            if first <= tlast and tfirst <= last:
                problem(
                    ("federation", "guests", "vmids"),
                    f"VMID range {first}-{last} for other communes' guests overlaps"
                    f" tenants[{i}] ({tfirst}-{tlast})",
                )
        # Other communes' guests get a network of their own: never a tenant's VLAN, nor one
        # the allocator may give a tenant later (the whole tenants' range).
        vlan, tenant_vlans = lent_to.network.vlan, nets.tenant_vlans
        holder = next((i for i, v in enumerate(vlans) if v == vlan), None)
        if holder is not None:
            problem(
                ("federation", "guests", "network", "vlan"),
                f"VLAN {vlan} is the VLAN of tenants[{holder}]"
                f" ({cabinet.tenants[holder].name}): other communes' guests never land on a"
                " tenant's network",
            )
        elif tenant_vlans.first <= vlan <= tenant_vlans.last:
            problem(
                ("federation", "guests", "network", "vlan"),
                f"VLAN {vlan} is inside networks.tenant_vlans {tenant_vlans.first}-"
                f"{tenant_vlans.last}, from which tenants' VLANs are allocated: other"
                " communes' guests need a VLAN outside it",
            )
    # The quota lent to other communes' failed-over council VMs is reserved like a tenant's.
    lent = lent_to.quota if lent_to is not None else None

    hw = cabinet.hardware
    cores = sum(n.cores for n in hw.nodes)
    ram = sum(n.ram for n in hw.nodes)
    usable_ram = max(0, ram - hw.host_reserve_ram * len(hw.nodes))
    disk = sum(d.size for n in hw.nodes for d in n.disks)
    resources = [
        Resource(
            "vCPU",
            sum(t.quota.vcpu for t in cabinet.tenants) + (lent.vcpu if lent else 0),
            cores * hw.overcommit.cpu,
            cores,
            "count",
        ),
        Resource(
            "RAM",
            sum(t.quota.ram for t in cabinet.tenants) + (lent.ram if lent else 0),
            usable_ram * hw.overcommit.ram,
            ram,
            "bytes",
        ),
        Resource(
            "disk",
            sum(t.quota.disk for t in cabinet.tenants) + (lent.disk if lent else 0),
            disk * hw.overcommit.disk,
            disk,
            "bytes",
        ),
    ]
    return CabinetPlan(
        cabinet.name,
        tenants,
        resources,
        estimate_power(cabinet),
        problems,
        source,
        lent.model_dump() if lent else None,
    )


def admit(plan: CabinetPlan) -> CabinetPlan:
    """Refuse a plan that breaks the cabinet's capacity or power budget."""
    problems = plan.refusal_problems()
    if problems:
        raise AdmissionRefused(problems)
    return plan
