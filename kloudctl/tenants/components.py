"""The `Tenant` and `Guest` Pulumi components.

A `Tenant` is a fenced piece of a cabinet: a pool that holds its guests, a group and a user
for its people, a privilege-separated API token for its automation, ACLs that give the
group and the token `PVEVMAdmin` on the pool and nothing else, a firewall security group
that accepts its own subnet and drops every other tenant's (default deny between tenants),
and its VLAN on the cabinet's bridge. A `Guest` is one VM of a tenant, cloned from a
template and configured through cloud-init; a `Container` is one LXC container of a
tenant, made from a `vztmpl` template, in the same pool, VLAN and security group.

Both take typed args, give their children `parent=self`, register their outputs, and
create nothing inside an `apply`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from kloudctl.tenants.resources import Acl, Group, Lxc, Pool, SecurityGroup, Token, User, Vm

TENANT_ROLE = "PVEVMAdmin"
TOKEN_NAME = "kloudctl"


@dataclass(frozen=True)
class ApiArgs:
    """How the providers reach the cabinet. `secret` must be a Pulumi secret."""

    endpoint: str
    fingerprint: str
    token_id: str
    secret: pulumi.Input[str]

    def inputs(self) -> dict[str, pulumi.Input[str]]:
        return {
            "endpoint": self.endpoint,
            "fingerprint": self.fingerprint,
            "token_id": self.token_id,
            "secret": self.secret,
        }


@dataclass(frozen=True)
class GuestArgs:
    api: ApiArgs
    template: str
    cores: int
    memory: int  # bytes
    disk: int  # bytes
    pool: pulumi.Input[str]
    vmid_first: int
    vmid_last: int
    vmid_hint: int
    bridge: str
    vlan: int
    address: str  # CIDR, e.g. 10.161.0.10/24
    gateway: str
    firewall_group: pulumi.Input[str] | None = None
    ciuser: str = "debian"
    ssh_keys: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    description: str = ""
    onboot: bool = True


@dataclass(frozen=True)
class GuestSpec:
    """A guest as a tenant declares it (the tenant supplies pool, VLAN and range)."""

    name: str
    template: str
    cores: int
    memory: int
    disk: int
    vmid_hint: int
    address: str
    ssh_keys: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    description: str = ""
    onboot: bool = True


@dataclass(frozen=True)
class ContainerArgs:
    api: ApiArgs
    template: str  # a vztmpl volume, e.g. local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst
    cores: int
    memory: int  # bytes
    disk: int  # bytes, whole GiB
    storage: str  # where the root disk goes
    pool: pulumi.Input[str]
    vmid_first: int
    vmid_last: int
    vmid_hint: int
    bridge: str
    vlan: int
    address: str  # CIDR
    gateway: str
    unprivileged: bool = True
    firewall_group: pulumi.Input[str] | None = None
    tags: list[str] = field(default_factory=list)
    description: str = ""
    onboot: bool = True


@dataclass(frozen=True)
class ContainerSpec:
    """A container as a tenant declares it (the tenant supplies pool, VLAN and range)."""

    name: str
    template: str
    cores: int
    memory: int
    disk: int
    vmid_hint: int
    address: str
    unprivileged: bool = True
    tags: list[str] = field(default_factory=list)
    description: str = ""
    onboot: bool = True


@dataclass(frozen=True)
class TenantArgs:
    api: ApiArgs
    display_name: str
    level: int
    vlan: int
    bridge: str
    subnet: str
    gateway: str
    supernet: str  # every tenant of the cabinet lives in it
    vmid_first: int
    vmid_last: int
    guests: list[GuestSpec] = field(default_factory=list)
    containers: list[ContainerSpec] = field(default_factory=list)
    storage: str = "local-lvm"  # containers' root disks


def isolation_rules(subnet: str, supernet: str) -> list[dict[str, object]]:
    """Own subnet in and out; every other tenant dropped both ways; the rest untouched."""
    return [
        {"type": "in", "action": "ACCEPT", "source": subnet, "comment": "own tenant"},
        {"type": "in", "action": "DROP", "source": supernet, "comment": "other tenants"},
        {"type": "out", "action": "ACCEPT", "dest": subnet, "comment": "own tenant"},
        {"type": "out", "action": "DROP", "dest": supernet, "comment": "other tenants"},
    ]


class Guest(pulumi.ComponentResource):
    vmid: pulumi.Output[int]
    address: pulumi.Output[str]

    def __init__(self, name: str, args: GuestArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kloudctl:tenants:Guest", name, None, opts)
        self.vm = Vm(
            name,
            {
                "api": args.api.inputs(),
                "name": name,
                "template": args.template,
                "cores": args.cores,
                "memory": args.memory,
                "disk": args.disk,
                "pool": args.pool,
                "vmid_first": args.vmid_first,
                "vmid_last": args.vmid_last,
                "vmid_hint": args.vmid_hint,
                "bridge": args.bridge,
                "vlan": args.vlan,
                "address": args.address,
                "gateway": args.gateway,
                "firewall_group": args.firewall_group,
                "ciuser": args.ciuser,
                "ssh_keys": list(args.ssh_keys),
                "tags": list(args.tags),
                "description": args.description,
                "onboot": args.onboot,
            },
            pulumi.ResourceOptions(parent=self),
        )
        self.vmid = self.vm.vmid
        self.address = pulumi.Output.from_input(args.address)
        self.register_outputs({"vmid": self.vmid, "address": self.address})


class Container(pulumi.ComponentResource):
    vmid: pulumi.Output[int]
    address: pulumi.Output[str]

    def __init__(self, name: str, args: ContainerArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kloudctl:tenants:Container", name, None, opts)
        self.lxc = Lxc(
            name,
            {
                "api": args.api.inputs(),
                "name": name,
                "template": args.template,
                "cores": args.cores,
                "memory": args.memory,
                "disk": args.disk,
                "storage": args.storage,
                "pool": args.pool,
                "vmid_first": args.vmid_first,
                "vmid_last": args.vmid_last,
                "vmid_hint": args.vmid_hint,
                "bridge": args.bridge,
                "vlan": args.vlan,
                "address": args.address,
                "gateway": args.gateway,
                "unprivileged": args.unprivileged,
                "firewall_group": args.firewall_group,
                "tags": list(args.tags),
                "description": args.description,
                "onboot": args.onboot,
            },
            pulumi.ResourceOptions(parent=self),
        )
        self.vmid = self.lxc.vmid
        self.address = pulumi.Output.from_input(args.address)
        self.register_outputs({"vmid": self.vmid, "address": self.address})


class Tenant(pulumi.ComponentResource):
    pool: pulumi.Output[str]
    userid: pulumi.Output[str]
    token_id: pulumi.Output[str]
    token_secret: pulumi.Output[str]

    def __init__(self, name: str, args: TenantArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("kloudctl:tenants:Tenant", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        api = args.api.inputs()
        comment = f"kloudctl tenant {name}: {args.display_name}"

        pool = Pool(f"{name}-pool", {"api": api, "poolid": name, "comment": comment}, child)
        group = Group(
            f"{name}-group", {"api": api, "groupid": f"tenant-{name}", "comment": comment}, child
        )
        user = User(
            f"{name}-user",
            {
                "api": api,
                "userid": f"{name}@pve",
                "groups": [group.groupid],
                "comment": comment,
                "enable": True,
            },
            child,
        )
        token = Token(
            f"{name}-token",
            {
                "api": api,
                "userid": user.userid,
                "login_password": pulumi.Output.secret(user.password),
                "tokenid": TOKEN_NAME,
                "privsep": True,
                "comment": f"automation of tenant {name}",
            },
            child,
        )
        pool_path = pool.poolid.apply(lambda p: f"/pool/{p}")
        acls = [
            Acl(
                f"{name}-acl-group",
                {
                    "api": api,
                    "path": pool_path,
                    "kind": "group",
                    "ugid": group.groupid,
                    "role": TENANT_ROLE,
                    "propagate": True,
                },
                child,
            ),
            Acl(
                f"{name}-acl-token",
                {
                    "api": api,
                    "path": pool_path,
                    "kind": "token",
                    "ugid": token.full_tokenid,
                    "role": TENANT_ROLE,
                    "propagate": True,
                },
                child,
            ),
        ]
        firewall = SecurityGroup(
            f"{name}-firewall",
            {
                "api": api,
                "group": f"kc-{args.vlan}",
                "comment": comment,
                "rules": isolation_rules(args.subnet, args.supernet),
            },
            child,
        )
        self.guests = [
            Guest(
                spec.name,
                GuestArgs(
                    api=args.api,
                    template=spec.template,
                    cores=spec.cores,
                    memory=spec.memory,
                    disk=spec.disk,
                    pool=pool.poolid,
                    vmid_first=args.vmid_first,
                    vmid_last=args.vmid_last,
                    vmid_hint=spec.vmid_hint,
                    bridge=args.bridge,
                    vlan=args.vlan,
                    address=spec.address,
                    gateway=args.gateway,
                    firewall_group=firewall.group,
                    ssh_keys=spec.ssh_keys,
                    tags=spec.tags,
                    description=spec.description,
                    onboot=spec.onboot,
                ),
                pulumi.ResourceOptions(parent=self, depends_on=[*acls]),
            )
            for spec in args.guests
        ]
        self.containers = [
            Container(
                spec.name,
                ContainerArgs(
                    api=args.api,
                    template=spec.template,
                    cores=spec.cores,
                    memory=spec.memory,
                    disk=spec.disk,
                    storage=args.storage,
                    pool=pool.poolid,
                    vmid_first=args.vmid_first,
                    vmid_last=args.vmid_last,
                    vmid_hint=spec.vmid_hint,
                    bridge=args.bridge,
                    vlan=args.vlan,
                    address=spec.address,
                    gateway=args.gateway,
                    unprivileged=spec.unprivileged,
                    firewall_group=firewall.group,
                    tags=spec.tags,
                    description=spec.description,
                    onboot=spec.onboot,
                ),
                pulumi.ResourceOptions(parent=self, depends_on=[*acls]),
            )
            for spec in args.containers
        ]
        self.pool = pool.poolid
        self.userid = user.userid
        self.token_id = token.full_tokenid
        self.token_secret = pulumi.Output.secret(token.value)
        self.register_outputs(
            {
                "pool": self.pool,
                "userid": self.userid,
                "token_id": self.token_id,
                "token_secret": self.token_secret,
                "vlan": args.vlan,
                "subnet": args.subnet,
                "guests": {g._name: g.vmid for g in self.guests},
                "containers": {c._name: c.vmid for c in self.containers},
            }
        )
