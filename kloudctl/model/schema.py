"""The fleet model: what a cabinet file and a backup policy file may declare.

Every model forbids unknown keys (the loader turns them into did-you-mean errors). Secrets
appear only as references (`SecretRef`), never as values. Every number has a range
(`int_between`, `number_between`: booleans are not numbers, .inf and .nan are refused), and
every list that is a set says so (`Unique`): the README's declaration table lists them.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from kloudctl.model.types import (
    AUTO_TAG,
    LIST_TAG,
    AbsPath,
    AutoOrInterface,
    Bridge,
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
    Money,
    Name,
    PveUser,
    SecretRef,
    Size,
    Timestamp,
    Unique,
    fail,
    format_size,
    int_between,
    number_between,
    one_of,
)

# Ranges shared by several fields; the README documents them.
MAX_WATTS = 10_000  # a cabinet is fed by one power socket (3.7 kW at 16 A)
MAX_POPULATION = 100_000_000
MAX_COUNT = 100_000  # mailboxes, retention counts


class Strict(BaseModel):
    # allow_inf_nan=False: a float field without its own range still refuses .inf/.nan
    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_default=False, allow_inf_nan=False
    )


# --- cabinet --------------------------------------------------------------------------


class Contact(Strict):
    name: str
    email: Email
    phone: str | None = None


class Commune(Strict):
    name: str = Field(min_length=1)
    insee: Insee
    population: Annotated[int, int_between(0, MAX_POPULATION)] | None = None
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
    cores: Annotated[int, int_between(1, 1024)]
    ram: Size
    disks: Annotated[list[Disk], Unique("disk", "name")] = Field(min_length=1)
    idle_watts: Annotated[float, number_between(0, MAX_WATTS)]
    peak_watts: Annotated[float, number_between(1, MAX_WATTS)]

    @model_validator(mode="after")
    def _peak_above_idle(self) -> Node:
        if self.peak_watts < self.idle_watts:
            raise fail(
                f"peak_watts ({self.peak_watts:g}) is below idle_watts ({self.idle_watts:g})"
            )
        return self


class Overcommit(Strict):
    """How far reservations may exceed the hardware: CPU is shared, RAM rarely."""

    cpu: Annotated[float, number_between(1, 16)] = 4.0
    ram: Annotated[float, number_between(1, 2)] = 1.0
    disk: Annotated[float, number_between(1, 4)] = 1.0


class Hardware(Strict):
    nodes: Annotated[list[Node], Unique("node", "name")] = Field(min_length=1)
    overcommit: Overcommit = Overcommit()
    host_reserve_ram: Size = Field(
        default=4 * 1024**3, description="RAM kept for the host, per node"
    )
    storage: str = "local-lvm"


class Ups(Strict):
    name: str
    host: str


class Power(Strict):
    budget_watts: Annotated[float, number_between(1, MAX_WATTS)] = 500.0
    other_watts: Annotated[float, number_between(0, MAX_WATTS)] = Field(
        default=20.0, description="switch, router, UPS losses"
    )
    ups: Ups | None = None


class Wan(Strict):
    address: IPv4Interface
    gateway: IPv4Address


class Management(Strict):
    network: IPv4Network
    gateway: IPv4Address
    host_address: IPv4Address


class VlanRange(Strict):
    # VLAN 1 is the switches' default (untagged) VLAN: never a tenant's
    first: Annotated[int, int_between(2, 4094)]
    last: Annotated[int, int_between(2, 4094)]

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
    tenant_prefix: Annotated[int, int_between(16, 29)] = 24


class ApiToken(Strict):
    user: PveUser
    id: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9._-]*$")
    secret: SecretRef


class ProxmoxApi(Strict):
    endpoint: HttpsUrl
    fingerprint: Fingerprint
    token: ApiToken


class VmidRange(Strict):
    # Proxmox's own bounds: VMIDs below 100 are reserved
    first: Annotated[int, int_between(100, 999_999_999)]
    last: Annotated[int, int_between(100, 999_999_999)]

    @model_validator(mode="after")
    def _ordered(self) -> VmidRange:
        if self.last < self.first:
            raise fail(f"last ({self.last}) is below first ({self.first})")
        return self


class Quota(Strict):
    vcpu: Annotated[int, int_between(1, 65_536)]
    ram: Size
    disk: Size


class VmNetwork(Strict):
    address: AutoOrInterface = "auto"
    firewall: bool = Field(default=True, strict=True)


class Vm(Strict):
    name: Hostname
    template: str = Field(min_length=1)
    cores: Annotated[int, int_between(1, 128)]
    memory: Size
    disk: Size
    network: VmNetwork = VmNetwork()
    load: Annotated[float, number_between(0, 1)] = Field(
        default=0.25, description="expected mean CPU load"
    )
    start_at_boot: bool = Field(default=True, strict=True)
    tags: Annotated[list[Name], Unique("tag")] = []
    ssh_keys: Annotated[list[str], Unique("SSH key")] = []
    description: str | None = None
    # A council (level-1) VM may be restored on a federation peer from its replica
    # (`kloudctl federation failover`); a level-2 tenant's VM never leaves its commune.
    failover: bool = Field(default=False, strict=True)


#: A container template: a `vztmpl` volume of a storage, as `pveam` downloads it.
CT_TEMPLATE_RE = re.compile(r"[a-z][a-z0-9._-]*[a-z0-9]:vztmpl/[^/\s]+\.tar\.(gz|xz|zst)")
CT_MIN_MEMORY = 16 * 1024**2  # Proxmox's smallest container memory (pct: memory >= 16)


def _ct_template(value: object) -> str:
    if isinstance(value, str) and CT_TEMPLATE_RE.fullmatch(value):
        return value
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise fail(
        "expected a container template volume such as "
        f"local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst, got {shown}"
    )


class Container(Strict):
    """An LXC container of a tenant, made from a `vztmpl` template. Unprivileged unless
    declared otherwise (a privileged container's root is root on the host: the fleet
    checks refuse one for a level-2 tenant)."""

    name: Hostname
    template: Annotated[str, BeforeValidator(_ct_template)]
    cores: Annotated[int, int_between(1, 128)]
    memory: Size
    disk: Size
    network: VmNetwork = VmNetwork()
    load: Annotated[float, number_between(0, 1)] = Field(
        default=0.25, description="expected mean CPU load"
    )
    unprivileged: bool = Field(default=True, strict=True)
    start_at_boot: bool = Field(default=True, strict=True)
    tags: Annotated[list[Name], Unique("tag")] = []
    description: str | None = None

    @field_validator("memory")
    @classmethod
    def _memory_whole_mib(cls, memory: int) -> int:
        if memory < CT_MIN_MEMORY:
            raise fail(f"expected at least 16MiB for a container, got {format_size(memory)}")
        if memory % 1024**2:
            raise fail(f"expected a whole number of MiB, got {format_size(memory)}")
        return memory

    @field_validator("disk")
    @classmethod
    def _disk_whole_gib(cls, disk: int) -> int:
        # pct takes a root disk as `STORAGE:SIZE_IN_GiB`, and grows it by whole GiB here
        if disk % 1024**3:
            raise fail(f"expected a whole number of GiB, got {format_size(disk)}")
        return disk


class Tenant(Strict):
    name: Name
    level: Annotated[Literal[1, 2], one_of(1, 2)]
    display_name: str
    contact: Contact | None = None
    vlan: Annotated[int, int_between(2, 4094)] | None = None
    vmids: VmidRange | None = None
    quota: Quota
    vms: list[Vm] = []
    containers: list[Container] = []

    @property
    def guests(self) -> list[Vm | Container]:
        """VMs then containers: what counts against the quota, the VMID range and power."""
        return [*self.vms, *self.containers]


class MailProbeAccount(Strict):
    """A dedicated mailbox `kloudctl status` logs into over IMAP to prove logins work; its
    password is a secret reference, read when status runs and never shown."""

    address: Email
    password: SecretRef


class MailService(Strict):
    domains: Annotated[list[Domain], Unique("domain")] = Field(min_length=1)
    hostname: Domain
    max_mailboxes: Annotated[int, int_between(1, MAX_COUNT)] = 500
    default_quota: Size = 2 * 1024**3
    total_quota: Size
    postmaster: Email
    probe: MailProbeAccount | None = None
    #: domain -> the tenant that rents its mailboxes (billed to it); a domain not named
    #: here is the commune's own.
    billed_to: dict[Domain, Name] = {}

    @model_validator(mode="after")
    def _probe_in_domains(self) -> MailService:
        if self.probe is not None:
            domain = self.probe.address.rpartition("@")[2].lower()
            if domain not in (d.lower() for d in self.domains):
                raise fail(f"probe.address {self.probe.address}: not in the mail domains")
        return self


#: `peers: auto` (kloudctl chooses among the federation's members) or the peers' names.
PeerChoice = Annotated[
    Annotated[Literal["auto"], Tag(AUTO_TAG)]
    | Annotated[list[Name], Field(min_length=1), Tag(LIST_TAG)],
    Discriminator(lambda value: AUTO_TAG if value == "auto" else LIST_TAG),
]


class Replication(Strict):
    policy: Name
    peers: Annotated[PeerChoice, Unique("peer")]
    rpo: Duration | None = None

    @property
    def auto_peers(self) -> bool:
        return self.peers == "auto"

    @property
    def declared_peers(self) -> list[str]:
        """The peers named in the file; none with `peers: auto` (chosen at plan time)."""
        return [] if isinstance(self.peers, str) else list(self.peers)


class WireGuard(Strict):
    address: IPv4Interface
    port: Annotated[int, int_between(1, 65535)] = 51820


class GuestNetwork(Strict):
    """Where other communes' guests are plugged on this cabinet: a VLAN of a bridge, outside
    `networks.tenant_vlans` (never a tenant's network). Every NIC of a failed-over guest is
    put there, behind the firewall; its model and MAC address stay the archive's."""

    # the bridge tenants' VLANs ride on, unless the cabinet keeps guests on another
    bridge: Bridge = "vmbr0"
    vlan: Annotated[int, int_between(2, 4094)]


class FederationGuests(Strict):
    """What this cabinet lends to other communes' council VMs failed over to it: a quota
    the capacity and power plans reserve, a VMID range no tenant uses, a pool to hold them,
    and the network they are plugged into (required: a guest never keeps its home's VLAN)."""

    quota: Quota
    vmids: VmidRange
    network: GuestNetwork
    pool: Name = "federation-guests"


class Federation(Strict):
    name: Name
    role: Literal["member", "coordinator"] = "member"
    wireguard: WireGuard
    guests: FederationGuests | None = None


class MaintenanceWindow(Strict):
    # Declared in advance or afterwards: a report leaves these out of the uptime.
    start: Timestamp
    end: Timestamp
    reason: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _ordered(self) -> MaintenanceWindow:
        if self.end <= self.start:
            raise fail(
                f"end ({self.end.isoformat()}) is not after start ({self.start.isoformat()})"
            )
        return self


class Billing(Strict):
    """The price list the council applies to its level-2 clients (decimal euros)."""

    currency: Literal["EUR"] = "EUR"
    vcpu_day: Money = Decimal(0)
    ram_gib_day: Money = Decimal(0)
    disk_gib_day: Money = Decimal(0)
    mailbox_month: Money = Decimal(0)


class Cabinet(Strict):
    name: Name
    commune: Commune
    site: Site
    hardware: Hardware
    power: Power = Power()
    networks: Networks
    proxmox: ProxmoxApi
    tenants: Annotated[list[Tenant], Unique("tenant", "name")] = Field(min_length=1)
    mail: MailService | None = None
    replication: Replication | None = None
    federation: Federation | None = None
    maintenance: list[MaintenanceWindow] = []
    billing: Billing | None = None


# --- backup policy --------------------------------------------------------------------


class LocalRetention(Strict):
    keep_last: Annotated[int, int_between(1, MAX_COUNT)] | None = None
    keep_hourly: Annotated[int, int_between(1, MAX_COUNT)] | None = None
    keep_daily: Annotated[int, int_between(1, MAX_COUNT)] | None = None
    keep_weekly: Annotated[int, int_between(1, MAX_COUNT)] | None = None
    keep_monthly: Annotated[int, int_between(1, MAX_COUNT)] | None = None
    keep_yearly: Annotated[int, int_between(1, MAX_COUNT)] | None = None


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
    paths: Annotated[list[AbsPath], Unique("path")] = []
    commands: Annotated[
        list[StreamedCommand], Unique("command", "name"), Unique("file name", "filename")
    ] = []
    exclude: Annotated[list[str], Unique("pattern")] = []

    @model_validator(mode="after")
    def _something(self) -> Include:
        if not self.paths and not self.commands:
            raise fail("expected at least one of paths or commands")
        return self


class IntegrityCheck(Strict):
    read_data_days: Annotated[int, int_between(1, 365)] = 7


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


# --- fleet settings (fleet.yaml beside cabinets/, optional) ----------------------------


class SecretsSettings(Strict):
    # One more folder secret references may lead to (besides secrets/), relative to the
    # fleet folder or absolute; nothing else widens where they may lead.
    extra_folder: Annotated[str, Field(min_length=1)] | None = None


class FleetSettings(Strict):
    secrets: SecretsSettings = SecretsSettings()
