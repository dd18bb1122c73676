"""The loaded fleet and the checks that span files (cross-references, overlaps)."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kloudctl.errors import NotFound, Problem
from kloudctl.model.schema import BackupPolicy, Cabinet, Container, Vm
from kloudctl.model.secrets import SecretFolders, reference_problems
from kloudctl.model.types import format_duration, format_size
from kloudctl.model.yamlsource import Located


@dataclass(frozen=True)
class LoadedCabinet:
    model: Cabinet
    source: Located


@dataclass(frozen=True)
class LoadedPolicy:
    model: BackupPolicy
    source: Located


@dataclass(frozen=True)
class Fleet:
    root: Path
    cabinets: dict[str, LoadedCabinet]
    policies: dict[str, LoadedPolicy]
    #: where secret references may lead (`secrets/`, and `fleet.yaml`'s extra folder)
    secret_folders: SecretFolders

    def cabinet(self, name: str) -> Cabinet:
        try:
            return self.cabinets[name].model
        except KeyError:
            raise NotFound(
                f"no cabinet named '{name}'{did_you_mean(name, self.cabinets)}"
            ) from None

    def loaded(self, name: str) -> LoadedCabinet:
        self.cabinet(name)  # raises NotFound with a did-you-mean
        return self.cabinets[name]

    def __iter__(self) -> Iterator[Cabinet]:
        return iter(c.model for c in self.cabinets.values())

    def policy_for(self, cabinet: Cabinet) -> BackupPolicy | None:
        if cabinet.replication is None:
            return None
        return self.policies[cabinet.replication.policy].model


def did_you_mean(name: str, known: object) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)  # type: ignore[call-overload]
    return f"; did you mean '{close[0]}'?" if close else ""


def cross_check(
    fleet: Fleet, files: frozenset[str] = frozenset(), policy_files: frozenset[str] = frozenset()
) -> list[Problem]:
    """Checks spanning files. `files`/`policy_files` name every cabinet/policy file present,
    valid or not, so an invalid file is reported once, not again by each reference to it."""
    problems: list[Problem] = []
    for loaded in fleet.cabinets.values():
        problems += _check_cabinet(
            loaded, fleet, files | set(fleet.cabinets), policy_files | set(fleet.policies)
        )
    for policy in fleet.policies.values():
        problems += reference_problems(policy.model, policy.source, fleet.secret_folders)
    problems += _check_fleet_wide(fleet)
    return problems


def _check_cabinet(
    loaded: LoadedCabinet, fleet: Fleet, known: frozenset[str], known_policies: frozenset[str]
) -> list[Problem]:
    cab, src = loaded.model, loaded.source
    problems: list[Problem] = reference_problems(cab, src, fleet.secret_folders)
    nets = cab.networks

    if nets.management.host_address not in nets.management.network:
        problems.append(
            src.problem(
                ("networks", "management", "host_address"),
                f"{nets.management.host_address} is outside {nets.management.network}",
            )
        )
    if nets.management.gateway not in nets.management.network:
        problems.append(
            src.problem(
                ("networks", "management", "gateway"),
                f"{nets.management.gateway} is outside {nets.management.network}",
            )
        )
    vlan_count = nets.tenant_vlans.last - nets.tenant_vlans.first + 1
    subnets = (
        2 ** (nets.tenant_prefix - nets.tenant_supernet.prefixlen)
        if nets.tenant_prefix >= nets.tenant_supernet.prefixlen
        else 0
    )
    if subnets < min(vlan_count, len(cab.tenants)):
        problems.append(
            src.problem(
                ("networks", "tenant_supernet"),
                f"{nets.tenant_supernet} holds {subnets} /{nets.tenant_prefix} subnet(s), "
                f"{len(cab.tenants)} tenant(s) need one each",
            )
        )

    if cab.mail is not None:
        tenant_names = [t.name for t in cab.tenants]
        for domain, renter in cab.mail.billed_to.items():
            if domain not in cab.mail.domains:
                problems.append(
                    src.problem(
                        ("mail", "billed_to", domain),
                        f"{domain} is not one of the mail domains ({', '.join(cab.mail.domains)})",
                    )
                )
            if renter not in tenant_names:
                problems.append(
                    src.problem(
                        ("mail", "billed_to", domain),
                        f"no tenant {renter} on this cabinet{did_you_mean(renter, tenant_names)}",
                    )
                )

    councils = [i for i, t in enumerate(cab.tenants) if t.level == 1]
    if len(councils) != 1:
        problems.append(
            src.problem(
                ("tenants",),
                f"expected exactly one level-1 tenant (the council), found {len(councils)}",
            )
        )

    # repeated tenant names are found with every other repeat (`Unique` in the schema)
    seen_vlans: dict[int, int] = {}
    seen_vms: dict[str, tuple[int, str, int]] = {}
    ranges: list[tuple[int, int, int]] = []
    for i, tenant in enumerate(cab.tenants):
        if tenant.vlan is not None:
            if not nets.tenant_vlans.first <= tenant.vlan <= nets.tenant_vlans.last:
                problems.append(
                    src.problem(
                        ("tenants", i, "vlan"),
                        f"VLAN {tenant.vlan} is outside networks.tenant_vlans "
                        f"{nets.tenant_vlans.first}-{nets.tenant_vlans.last}",
                    )
                )
            if tenant.vlan in seen_vlans:
                problems.append(
                    src.problem(
                        ("tenants", i, "vlan"),
                        f"VLAN {tenant.vlan} is already used by tenants[{seen_vlans[tenant.vlan]}]",
                    )
                )
            seen_vlans.setdefault(tenant.vlan, i)
        if tenant.vmids is not None:
            for j_first, j_last, j in ranges:
                if tenant.vmids.first <= j_last and j_first <= tenant.vmids.last:
                    problems.append(
                        src.problem(
                            ("tenants", i, "vmids"),
                            f"VMID range {tenant.vmids.first}-{tenant.vmids.last} overlaps "
                            f"tenants[{j}] ({j_first}-{j_last})",
                        )
                    )
            ranges.append((tenant.vmids.first, tenant.vmids.last, i))
            count = len(tenant.guests)
            if count > tenant.vmids.last - tenant.vmids.first + 1:
                what = "VMs" if not tenant.containers else "VMs and containers"
                problems.append(
                    src.problem(
                        ("tenants", i, "vmids"),
                        f"{count} {what} do not fit in "
                        f"{tenant.vmids.last - tenant.vmids.first + 1} VMIDs",
                    )
                )

        # containers count against the quota like VMs
        usage = (
            ("vCPU", sum(g.cores for g in tenant.guests), tenant.quota.vcpu, str),
            ("of RAM", sum(g.memory for g in tenant.guests), tenant.quota.ram, format_size),
            ("of disk", sum(g.disk for g in tenant.guests), tenant.quota.disk, format_size),
        )
        who, where = ("VMs", "vms") if not tenant.containers else ("guests", "containers")
        if tenant.containers and not tenant.vms:
            who = "containers"
        for what, used, quota, shown in usage:
            if used > quota:
                problems.append(
                    src.problem(
                        ("tenants", i, where),
                        f"{who} use {shown(used)} {what}, the tenant's quota is {shown(quota)}",
                    )
                )
        # guest names are host names: unique across the cabinet, VMs and containers alike
        members: tuple[tuple[str, Sequence[Vm | Container]], ...] = (
            ("vms", tenant.vms),
            ("containers", tenant.containers),
        )
        for key, listed in members:
            for k, guest in enumerate(listed):
                if guest.name in seen_vms:
                    ti, other, vi = seen_vms[guest.name]
                    word = "VM" if key == other == "vms" else "guest"
                    problems.append(
                        src.problem(
                            ("tenants", i, key, k, "name"),
                            f"duplicate {word} name '{guest.name}' "
                            f"(also tenants[{ti}].{other}[{vi}])",
                        )
                    )
                seen_vms.setdefault(guest.name, (i, key, k))
        if tenant.level == 2:
            for k, container in enumerate(tenant.containers):
                if not container.unprivileged:
                    problems.append(
                        src.problem(
                            ("tenants", i, "containers", k, "unprivileged"),
                            "a level-2 tenant's container must be unprivileged: root in a "
                            "privileged container is root on the cabinet's host",
                        )
                    )
        for k, vm in enumerate(tenant.vms):
            if vm.failover:
                problems += _failover_problems(cab, src, i, k)

    if cab.replication is not None:
        rep = cab.replication
        if rep.policy not in known_policies:
            problems.append(
                src.problem(
                    ("replication", "policy"),
                    f"no backup policy '{rep.policy}' in backups/"
                    + did_you_mean(rep.policy, known_policies),
                )
            )
        elif rep.policy in fleet.policies:
            policy = fleet.policies[rep.policy].model
            if rep.rpo is not None and rep.rpo < policy.interval:
                problems.append(
                    src.problem(
                        ("replication", "rpo"),
                        f"rpo {format_duration(rep.rpo, exact=True)} is shorter than policy"
                        f" '{policy.name}' interval {format_duration(policy.interval, exact=True)}",
                    )
                )
        if rep.auto_peers and cab.federation is None:
            problems.append(
                src.problem(
                    ("replication", "peers"),
                    "peers: auto chooses among the members of the cabinet's federation:"
                    " declare `federation:` or name the peers",
                )
            )
        for j, peer in enumerate(rep.declared_peers):
            if peer == cab.name:
                problems.append(
                    src.problem(("replication", "peers", j), "a cabinet cannot replicate to itself")
                )
            elif peer not in known:
                problems.append(
                    src.problem(
                        ("replication", "peers", j),
                        f"no cabinet named '{peer}' in cabinets/" + did_you_mean(peer, known),
                    )
                )
    # Allocation conflicts (static addresses outside their subnet, exhausted ranges...)
    # are found by the same code that plans, so validate and plan never disagree.
    from kloudctl.capacity.plan import plan_cabinet

    problems += plan_cabinet(cab, src).problems
    return problems


def _failover_problems(cab: Cabinet, src: Located, i: int, k: int) -> list[Problem]:
    """`failover: true` on tenants[i].vms[k]: only a council VM, restored from the replica
    on a federation peer, so the cabinet must replicate and belong to a federation."""
    path = ("tenants", i, "vms", k, "failover")
    if cab.tenants[i].level != 1:
        return [
            src.problem(
                path,
                "a level-2 tenant's VM never leaves its commune: only the council's"
                " (level-1) VMs may declare failover: true",
            )
        ]
    missing = [
        what
        for what, declared in (("replication:", cab.replication), ("federation:", cab.federation))
        if declared is None
    ]
    if missing:
        return [
            src.problem(
                path,
                "a VM fails over from its replica to a federation peer: the cabinet must"
                f" declare {' and '.join(missing)}",
            )
        ]
    return []


def _check_fleet_wide(fleet: Fleet) -> list[Problem]:
    problems: list[Problem] = []
    domains: dict[str, str] = {}
    wans: dict[ipaddress.IPv4Address, str] = {}
    wg: dict[tuple[str, ipaddress.IPv4Address], str] = {}
    for name, loaded in sorted(fleet.cabinets.items()):
        cab, src = loaded.model, loaded.source
        if cab.mail is not None:
            for j, domain in enumerate(cab.mail.domains):
                if domain in domains:
                    problems.append(
                        src.problem(
                            ("mail", "domains", j),
                            f"domain {domain} is already served by cabinet '{domains[domain]}'",
                        )
                    )
                domains.setdefault(domain, name)
        wan = cab.networks.wan.address.ip
        if wan in wans:
            problems.append(
                src.problem(
                    ("networks", "wan", "address"),
                    f"WAN address {wan} is already used by cabinet '{wans[wan]}'",
                )
            )
        wans.setdefault(wan, name)
        if cab.federation is not None:
            key = (cab.federation.name, cab.federation.wireguard.address.ip)
            if key in wg:
                problems.append(
                    src.problem(
                        ("federation", "wireguard", "address"),
                        f"mesh address {key[1]} is already used by cabinet '{wg[key]}'",
                    )
                )
            wg.setdefault(key, name)
    return problems
