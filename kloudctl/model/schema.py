"""The fleet model: what a cabinet file and a backup policy file may declare.

Every model forbids unknown keys (the loader turns them into did-you-mean errors). Secrets
appear only as references (`SecretRef`), never as values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kloudctl.model.types import (
    AbsPath,
    AutoOrInterface,
    Domain,
    Duration,
    Email,
    Fingerprint,
    Hostname,
    HttpsUrl,
    Insee,
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    Name,
    PveUser,
    SecretRef,
    Size,
    fail,
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=False)


# --- cabinet --------------------------------------------------------------------------


class Contact(Strict):
    name: str
    email: Email
    phone: str | None = None


class Commune(Strict):
    name: str = Field(min_length=1)
    insee: Insee
    population: int | None = Field(default=None, ge=1)
    contact: Contact


class Site(Strict):
    address: str
    room: str | None = None


class Disk(Strict):
    name: str
    size: Size
    kind: Literal["nvme", "ssd", "hdd"] = "ssd"


class Node(Strict):
    name: Hostname
    cores: int = Field(ge=1, le=512)
    ram: Size
    disks: list[Disk] = Field(min_length=1)
    idle_watts: float = Field(ge=0)
    peak_watts: float = Field(gt=0)

    @model_validator(mode="after")
    def _peak_above_idle(self) -> Node:
        if self.peak_watts < self.idle_watts:
            raise fail(
                f"peak_watts ({self.peak_watts:g}) is below idle_watts ({self.idle_watts:g})"
            )
        return self


class Overcommit(Strict):
    """How far reservations may exceed the hardware: CPU is shared, RAM rarely."""

    cpu: float = Field(default=4.0, ge=1.0, le=16.0)
    ram: float = Field(default=1.0, ge=1.0, le=2.0)
    disk: float = Field(default=1.0, ge=1.0, le=4.0)


class Hardware(Strict):
    nodes: list[Node] = Field(min_length=1)
    overcommit: Overcommit = Overcommit()
    host_reserve_ram: Size = Field(
        default=4 * 1024**3, description="RAM kept for the host, per node"
    )
    storage: str = "local-lvm"


class Ups(Strict):
    name: str
    host: str


class Power(Strict):
    budget_watts: float = Field(default=500.0, gt=0)
    other_watts: float = Field(default=20.0, ge=0, description="switch, router, UPS losses")
    ups: Ups | None = None


class Wan(Strict):
    address: IPv4Interface
    gateway: IPv4Address


class Management(Strict):
    network: IPv4Network
    gateway: IPv4Address
    host_address: IPv4Address


class VlanRange(Strict):
    first: int = Field(ge=2, le=4094)
    last: int = Field(ge=2, le=4094)

    @model_validator(mode="after")
    def _ordered(self) -> VlanRange:
        if self.last < self.first:
            raise fail(f"last ({self.last}) is below first ({self.first})")
        return self


class Networks(Strict):
    wan: Wan
    management: Management
    tenant_vlans: VlanRange
    tenant_supernet: IPv4Network
    tenant_prefix: int = Field(default=24, ge=16, le=29)


class ApiToken(Strict):
    user: PveUser
    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9._-]*$")
    secret: SecretRef


class ProxmoxApi(Strict):
    endpoint: HttpsUrl
    fingerprint: Fingerprint
    token: ApiToken


class VmidRange(Strict):
    first: int = Field(ge=100, le=999_999_999)
    last: int = Field(ge=100, le=999_999_999)

    @model_validator(mode="after")
    def _ordered(self) -> VmidRange:
        if self.last < self.first:
            raise fail(f"last ({self.last}) is below first ({self.first})")
        return self


class Quota(Strict):
    vcpu: int = Field(ge=1)
    ram: Size
    disk: Size


class VmNetwork(Strict):
    address: AutoOrInterface = "auto"
    firewall: bool = True


class Vm(Strict):
    name: Hostname
    template: str = Field(min_length=1)
    cores: int = Field(ge=1, le=128)
    memory: Size
    disk: Size
    network: VmNetwork = VmNetwork()
    load: float = Field(default=0.25, ge=0.0, le=1.0, description="expected mean CPU load")
    start_at_boot: bool = True
    tags: list[Name] = []
    ssh_keys: list[str] = []
    description: str | None = None


class Tenant(Strict):
    name: Name
    level: Literal[1, 2]
    display_name: str
    contact: Contact | None = None
    vlan: int | None = Field(default=None, ge=2, le=4094)
    vmids: VmidRange | None = None
    quota: Quota
    vms: list[Vm] = []


class MailService(Strict):
    domains: list[Domain] = Field(min_length=1)
    hostname: Domain
    max_mailboxes: int = Field(default=500, ge=1)
    default_quota: Size = 2 * 1024**3
    total_quota: Size
    postmaster: Email


class Replication(Strict):
    policy: Name
    peers: list[Name] = Field(min_length=1)
    rpo: Duration | None = None


class WireGuard(Strict):
    address: IPv4Interface
    port: int = Field(default=51820, ge=1, le=65535)


class Federation(Strict):
    name: Name
    role: Literal["member", "coordinator"] = "member"
    wireguard: WireGuard


class Cabinet(Strict):
    name: Name
    commune: Commune
    site: Site
    hardware: Hardware
    power: Power = Power()
    networks: Networks
    proxmox: ProxmoxApi
    tenants: list[Tenant] = Field(min_length=1)
    mail: MailService | None = None
    replication: Replication | None = None
    federation: Federation | None = None


# --- backup policy --------------------------------------------------------------------


class LocalRetention(Strict):
    keep_last: int | None = Field(default=None, ge=1)
    keep_hourly: int | None = Field(default=None, ge=1)
    keep_daily: int | None = Field(default=None, ge=1)
    keep_weekly: int | None = Field(default=None, ge=1)
    keep_monthly: int | None = Field(default=None, ge=1)
    keep_yearly: int | None = Field(default=None, ge=1)


class PeerRetention(Strict):
    """The peer prunes by age only: counts can be gamed in append-only repositories."""

    keep_within: Duration
    keep_within_daily: Duration | None = None
    keep_within_weekly: Duration | None = None
    keep_within_monthly: Duration | None = None


class Retention(Strict):
    local: LocalRetention
    peer: PeerRetention


class StreamedCommand(Strict):
    name: Name
    command: list[str] = Field(min_length=1)
    filename: str = Field(pattern=r"^[A-Za-z0-9._-]+$")


class Include(Strict):
    paths: list[AbsPath] = []
    commands: list[StreamedCommand] = []
    exclude: list[str] = []

    @model_validator(mode="after")
    def _something(self) -> Include:
        if not self.paths and not self.commands:
            raise fail("expected at least one of paths or commands")
        return self


class IntegrityCheck(Strict):
    read_data_days: int = Field(default=7, ge=1, le=365)


class BackupPolicy(Strict):
    name: Name
    description: str = ""
    interval: Duration
    rpo: Duration
    retention: Retention
    include: Include
    check: IntegrityCheck = IntegrityCheck()

    @model_validator(mode="after")
    def _rpo_reachable(self) -> BackupPolicy:
        if self.rpo < self.interval:
            raise fail("rpo is shorter than interval: the policy could never meet it")
        return self
