"""The state of every cabinet at a glance, gathered in parallel.

Each cabinet is read by one worker of a bounded pool, within its own time budget: the
Proxmox client gets the budget as its deadline (no request starts, waits or is retried past
it), and the pool is waited on for that long too, so a cabinet that does not answer, answers
slowly or answers 5xx costs at most the budget and never holds the others up.

Per cabinet: `/version` and one `/cluster/resources` (nodes, guests with their pool, which
is the tenant, storages), read through the one client; quotas, capacity and the estimated
power from the declaration (`capacity`, `power`); the measured power from the last line of
the `power_budget` role's record (`time,watts`) read over SSH where the cabinet is deployed
(`replication deploy` recorded how to reach it); the replication lag and last integrity
checks from `replication.status`; the federation membership from the fleet's local registry
(`kloudctl.status.federation`); mail where it exists.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kloudctl import ssh
from kloudctl.answers import UnexpectedAnswer, dig, number
from kloudctl.capacity import plan_cabinet
from kloudctl.errors import KloudError
from kloudctl.model import Fleet
from kloudctl.model.schema import Cabinet
from kloudctl.power import node_watts
from kloudctl.proxmox.client import ApiTarget, Client, ProxmoxError, RetryPolicy, api_tool
from kloudctl.proxmox.target import cabinet_target
from kloudctl.status.mailprobe import MailTarget, probe

if TYPE_CHECKING:
    from kloudctl.mail.store import SshTransport

#: Where the `power_budget` role appends the measured draw (its `record_file` default).
POWER_RECORD = "/var/lib/kloudctl-power/draw.csv"
#: Guests not in any pool (no tenant owns them).
NO_TENANT = "(no pool)"
NOT_SET_UP = "not set up"
_NO_TIME = {"state": "unknown", "detail": "no time left to read the replication status"}


@dataclass
class TenantUsage:
    """One tenant's guests on a cabinet: quota (declared), reserved (the guests' sizes),
    used (what Proxmox measures now). CPU used is in cores (usage x vCPUs)."""

    tenant: str
    declared: bool
    guests: dict[str, int] = field(default_factory=dict)  # state -> count
    vcpu_quota: int | None = None
    ram_quota: int | None = None
    disk_quota: int | None = None
    vcpu_reserved: int = 0
    ram_reserved: int = 0
    disk_reserved: int = 0
    cpu_used: float = 0.0
    ram_used: int = 0
    disk_used: int = 0


@dataclass
class NodeState:
    name: str
    online: bool
    cores: int | None = None
    cpu_used: float | None = None  # cores busy
    ram_used: int | None = None
    ram_total: int | None = None
    uptime: int | None = None


@dataclass
class CabinetStatus:
    cabinet: str
    taken_at: float
    reachable: bool = False
    error: str | None = None
    elapsed: float = 0.0
    retries: int = 0
    version: str | None = None
    nodes: list[NodeState] = field(default_factory=list)
    tenants: list[TenantUsage] = field(default_factory=list)
    storage_used: int | None = None
    storage_total: int | None = None
    #: resource -> {reserved (quotas), capacity (after overcommit), physical, used}
    capacity: dict[str, dict[str, float | None]] = field(default_factory=dict)
    power: dict[str, Any] = field(default_factory=dict)
    replication: dict[str, Any] = field(default_factory=lambda: {"state": NOT_SET_UP})
    mail: dict[str, Any] = field(default_factory=lambda: {"state": NOT_SET_UP})
    federation: dict[str, Any] = field(default_factory=lambda: {"state": NOT_SET_UP})

    @property
    def guests(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tenants:
            for state, count in t.guests.items():
                out[state] = out.get(state, 0) + count
        return out

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["elapsed"] = round(self.elapsed, 3)
        data["guests"] = self.guests
        return data


#: (cabinet, how to reach it, seconds left) -> its federation mesh's state.
MeshProbe = Callable[[Cabinet, ssh.SshTarget, float], dict[str, Any]]


@dataclass(frozen=True)
class Probes:
    """What status reads beside the API, per cabinet (tests and deployments fill it in)."""

    #: cabinet -> how to reach it over SSH (deployed cabinets); absent: power not measured.
    ssh: dict[str, ssh.SshTarget] = field(default_factory=dict)
    #: (cabinet, seconds left) -> replication status, or None when replication is not set
    #: up for it.
    replication: Callable[[str, float], dict[str, Any] | None] | None = None
    #: cabinet -> its federation membership (read from the local registry, once per run).
    federation: Callable[[Cabinet], dict[str, Any]] | None = None
    #: Why the local federation registry does not verify (None: it does, or there is none).
    federation_error: str | None = None
    #: A deployed member's mesh (its handshakes), read over SSH where `ssh` has its target.
    federation_mesh: MeshProbe | None = None
    #: cabinet -> how to probe its mail service (cabinets that declare mail).
    mail: dict[str, MailTarget] = field(default_factory=dict)


def gather(
    fleet: Fleet,
    names: list[str],
    *,
    timeout: float = 10.0,
    workers: int = 16,
    probes: Probes | None = None,
    targets: dict[str, ApiTarget] | None = None,
) -> list[CabinetStatus]:
    """The status of each cabinet of `names`, in that order; never raises for a cabinet:
    what went wrong is its `error`. Each cabinet gets `timeout` seconds in all."""
    probes = probes or Probes()
    size = max(1, min(workers, len(names) or 1))
    pool = ThreadPoolExecutor(max_workers=size)
    started = time.time()
    futures: dict[str, Future[CabinetStatus]] = {}
    try:
        for name in names:
            futures[name] = pool.submit(
                _cabinet, fleet, name, timeout, probes, (targets or {}).get(name)
            )
        # A worker waits its turn in the pool: the budget runs from its own start, so the
        # whole gathering takes at most about ceil(cabinets / workers) budgets.
        rounds = -(-len(names) // size)
        wait(futures.values(), timeout=rounds * timeout + 1.0)
    finally:
        # A worker still busy is not waited on here; every call it makes has its own time
        # limit (the client's deadline, ssh's timeout), so none outlives its budget by much.
        pool.shutdown(wait=False, cancel_futures=True)
    out = []
    for name in names:
        future = futures[name]
        if future.done() and not future.cancelled():
            out.append(future.result())
        else:
            out.append(
                CabinetStatus(
                    name,
                    started,
                    error=f"no status within {timeout:g} s",
                    elapsed=time.time() - started,
                )
            )
    return out


def _cabinet(
    fleet: Fleet, name: str, timeout: float, probes: Probes, target: ApiTarget | None
) -> CabinetStatus:
    cabinet = fleet.cabinet(name)
    t0 = time.monotonic()
    deadline = t0 + timeout
    status = CabinetStatus(cabinet.name, time.time())
    _declared(status, cabinet)
    mail = _MailProbe(probes.mail.get(cabinet.name), deadline) if cabinet.mail else None
    try:
        _api(status, cabinet, target or cabinet_target(fleet, name), timeout, deadline)
        status.reachable = True
    except KloudError as exc:
        status.error = _one_line(exc)
    _measured_power(status, probes.ssh.get(cabinet.name), deadline)
    if probes.replication is not None and cabinet.replication is not None:
        try:
            left = deadline - time.monotonic()
            found = probes.replication(cabinet.name, left) if left > 0 else _NO_TIME
        except KloudError as exc:
            found = {"state": "unknown", "detail": _one_line(exc)}
        if found is not None:
            status.replication = found
    if cabinet.mail is not None and mail is not None:
        status.mail = {
            "domains": list(cabinet.mail.domains),
            "billed_to": dict(cabinet.mail.billed_to),
            **mail.result(),
        }
    if probes.federation is not None:
        status.federation = probes.federation(cabinet)
        reach = probes.ssh.get(cabinet.name)
        left = deadline - time.monotonic()
        active = status.federation.get("state") == "active"
        if probes.federation_mesh is not None and reach is not None and left > 0 and active:
            status.federation["mesh"] = probes.federation_mesh(cabinet, reach, left)
    status.elapsed = time.monotonic() - t0
    return status


class _MailProbe:
    """The mail service probed beside the API, in its own thread, so that a cabinet whose
    API does not answer still has its mail checked within the same budget."""

    def __init__(self, target: MailTarget | None, deadline: float) -> None:
        self.target = target
        self.deadline = deadline
        self.found: dict[str, Any] | None = None
        self.thread: threading.Thread | None = None
        if target is not None:
            self.thread = threading.Thread(target=self._run, name=f"mail-{target.cabinet}")
            self.thread.daemon = True  # every socket it uses times out at the deadline
            self.thread.start()

    def _run(self) -> None:
        assert self.target is not None
        try:
            self.found = probe(self.target, self.deadline)
        except (KloudError, OSError, ValueError) as exc:  # said in the status, never raised
            self.found = {"state": "unknown", "detail": _one_line(exc)}

    def result(self) -> dict[str, Any]:
        if self.thread is None:
            detail = "no mail host given to probe (a simulated cabinet)"
            return {"state": "not probed", "detail": detail}
        # The probe stops itself at the deadline; a moment more lets it say so.
        self.thread.join(max(0.0, self.deadline - time.monotonic()) + 0.5)
        if self.found is None:
            return {"state": "unknown", "detail": "no mail status within the time left"}
        return self.found


def _declared(status: CabinetStatus, cabinet: Cabinet) -> None:
    """Quotas, capacity and the planned draw: from the declaration, known even when the
    cabinet does not answer."""
    plan = plan_cabinet(cabinet)
    for r in plan.resources:
        status.capacity[r.name] = {
            "reserved": r.reserved,
            "capacity": r.capacity,
            "physical": r.physical,
            "used": None,
        }
    status.power = {
        "budget_watts": plan.power.budget_watts,
        "planned_watts": round(plan.power.estimated_watts, 1),
        "estimated_watts": None,
        "measured_watts": None,
        "measured_at": None,
        "measured": "not measured",
    }
    status.tenants = [
        TenantUsage(
            t.name,
            True,
            vcpu_quota=t.quota.vcpu,
            ram_quota=t.quota.ram,
            disk_quota=t.quota.disk,
        )
        for t in cabinet.tenants
    ]


def _api(
    status: CabinetStatus, cabinet: Cabinet, target: ApiTarget, timeout: float, deadline: float
) -> None:
    try:
        _read_api(status, cabinet, target, timeout, deadline)
    except ProxmoxError as exc:  # name the API and its HTTP answer
        code = f"HTTP {exc.status}: " if exc.status else ""
        raise ProxmoxError(f"{api_tool(target.endpoint)}: {code}{_one_line(exc)}") from None


def _read_api(
    status: CabinetStatus, cabinet: Cabinet, target: ApiTarget, timeout: float, deadline: float
) -> None:
    client = Client(
        target,
        RetryPolicy(attempts=4, first_delay=0.1, max_delay=1.0),
        timeout=timeout,
        deadline=deadline,
    )
    try:
        tool = client.tool
        version = client.get("version")
        status.version = dig(tool, version, "version", kind=str)
        resources = dig(tool, client.get("cluster/resources"), kind=list)
    finally:
        status.retries = client.retries
        client.session.close()
    tenants = {t.tenant: t for t in status.tenants}
    declared_nodes = {n.name: n for n in cabinet.hardware.nodes}
    storage_used = storage_total = 0
    shared: set[str] = set()
    watts = cabinet.power.other_watts
    for i, entry in enumerate(resources):
        kind = dig(tool, resources, i, "type", kind=str)
        if kind in ("qemu", "lxc"):
            if entry.get("template"):
                continue
            _guest(tool, tenants, entry)
        elif kind == "node":
            node = _node(tool, entry)
            status.nodes.append(node)
            hw = declared_nodes.get(node.name)
            if hw is not None:
                use = (node.cpu_used or 0.0) / node.cores if node.online and node.cores else 0.0
                watts += node_watts(hw.idle_watts, hw.peak_watts, use) if node.online else 0.0
        elif kind == "storage":
            # A shared storage is listed once per node: count it once.
            name = dig(tool, entry, "storage", kind=str)
            if entry.get("shared") and name in shared:
                continue
            if entry.get("shared"):
                shared.add(name)
            storage_used += int(number(tool, entry, "disk", default=0.0))
            storage_total += int(number(tool, entry, "maxdisk", default=0.0))
    status.tenants = list(tenants.values())
    status.storage_used, status.storage_total = storage_used, storage_total
    online = [n for n in status.nodes if n.online]
    status.capacity["vCPU"]["used"] = round(sum(n.cpu_used or 0.0 for n in online), 2)
    status.capacity["RAM"]["used"] = sum(n.ram_used or 0 for n in online)
    status.capacity["disk"]["used"] = storage_used
    status.power["estimated_watts"] = round(watts, 1)


def _guest(tool: str, tenants: dict[str, TenantUsage], entry: dict[str, Any]) -> None:
    pool = dig(tool, entry, "pool", kind=str, default=NO_TENANT)
    usage = tenants.get(pool)
    if usage is None:
        usage = tenants[pool] = TenantUsage(pool, False)
    state = dig(tool, entry, "status", kind=str)
    usage.guests[state] = usage.guests.get(state, 0) + 1
    cores = int(number(tool, entry, "maxcpu", default=0.0))
    usage.vcpu_reserved += cores
    usage.ram_reserved += int(number(tool, entry, "maxmem", default=0.0))
    usage.disk_reserved += int(number(tool, entry, "maxdisk", default=0.0))
    usage.cpu_used += number(tool, entry, "cpu", default=0.0) * cores
    usage.ram_used += int(number(tool, entry, "mem", default=0.0))
    usage.disk_used += int(number(tool, entry, "disk", default=0.0))


def _node(tool: str, entry: dict[str, Any]) -> NodeState:
    name = dig(tool, entry, "node", kind=str)
    online = dig(tool, entry, "status", kind=str) == "online"
    if not online:
        return NodeState(name, False)
    cores = int(number(tool, entry, "maxcpu"))
    return NodeState(
        name,
        True,
        cores=cores,
        cpu_used=round(number(tool, entry, "cpu") * cores, 3),
        ram_used=int(number(tool, entry, "mem")),
        ram_total=int(number(tool, entry, "maxmem")),
        uptime=int(number(tool, entry, "uptime", default=0.0)),
    )


def _measured_power(status: CabinetStatus, target: ssh.SshTarget | None, deadline: float) -> None:
    """The last `time,watts` line of the power record, read over SSH; none without a way
    to reach the cabinet."""
    if target is None:
        return
    at, watts, said = last_draw(status.cabinet, target, deadline)
    if at is None:
        status.power["measured"] = said
        return
    status.power.update(measured_watts=watts, measured_at=at, measured=said)


def last_draw(
    cabinet: str, target: ssh.SshTarget, deadline: float
) -> tuple[float | None, float | None, str]:
    """(time, watts, "measured") of the power record's last line, read over SSH, or (None,
    None, why not): also what `federation update --measure` publishes (`status.measured`)."""
    left = deadline - time.monotonic()
    tool = f"the power record {POWER_RECORD} on {cabinet}"
    if left <= 0:
        return None, None, "no time left to read the power record"
    try:
        proc = ssh.run(target, ["tail", "-n", "1", POWER_RECORD], timeout=left)
        if proc.returncode != 0:
            return None, None, f"{tool}: {ssh.last_line(proc.stderr)}"
        at, watts = parse_power_line(tool, proc.stdout)
    except KloudError as exc:
        return None, None, _one_line(exc)
    if at is None:
        return None, None, "no measure recorded yet"
    return at, watts, "measured"


def parse_power_line(tool: str, text: str) -> tuple[float | None, float | None]:
    """(time, watts) of a record line `2026-11-30T04:00:00Z,212`; (None, None) for the
    header alone (the recorder writes it before its first measure)."""
    line = text.strip()
    if not line or line == "time,watts":
        return None, None
    when, _, watts = line.partition(",")
    try:
        at = datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
        value = float(watts)
    except ValueError:
        raise UnexpectedAnswer(tool, "a line 'YYYY-MM-DDTHH:MM:SSZ,WATTS'", line) from None
    if not 0 <= value < 1e6:
        raise UnexpectedAnswer(tool, "a draw in watts", line)
    return at, value


def _one_line(exc: Exception) -> str:
    text = " ".join(str(getattr(exc, "message", None) or exc).split())
    return text or type(exc).__name__


def probes_for(
    fleet: Fleet,
    root: Path,
    replication_state: Path | None = None,
    federation_state: Path | None = None,
) -> Probes:
    """What the fleet's state says beyond the API: how `replication deploy` reaches each
    deployed cabinet (SSH, for the power record), the replication status where a
    replication state folder exists, and each cabinet's federation membership from the
    local registry. Reading never creates those folders."""
    from kloudctl.replication.layout import Layout, state_folder
    from kloudctl.replication.ops import Replicator
    from kloudctl.status import federation

    folder = federation_state or root / ".state" / "federation"
    members, registry_error = federation.probe(folder)
    mail = mail_targets(fleet)
    state = state_folder(root, replication_state)
    if not state.is_dir():
        return Probes(federation=members, federation_error=registry_error, mail=mail)
    layout = Layout(state.resolve(), read_only=True)
    replicator = Replicator(fleet, layout)
    targets: dict[str, ssh.SshTarget] = {}
    for cabinet in fleet:
        remote = layout.endpoint(cabinet.name).ssh
        if remote is not None:
            targets[cabinet.name] = remote.target

    def replication(cabinet: str, timeout: float) -> dict[str, Any] | None:
        if cabinet not in targets and not layout.cabinet_dir(cabinet).is_dir():
            return None  # never run for this cabinet
        return replication_summary(_replication_rows(replicator, cabinet, timeout))

    return Probes(
        ssh=targets,
        replication=replication,
        federation=members,
        federation_error=registry_error,
        federation_mesh=federation.mesh_reader(folder),
        mail=mail,
    )


def mail_targets(fleet: Fleet) -> dict[str, MailTarget]:
    """How to probe each declared mail service: its host name, the probe account's secret
    (read only when the login is tried), the accounts store as root over SSH (as `kloudctl
    mail --cabinet`). A cabinet a simulator stands for has no mail host in this world: it
    is not probed."""
    from kloudctl.model import secrets
    from kloudctl.proxmox.target import simulated_cabinets

    simulated = simulated_cabinets(fleet.root)
    out = {}
    for cabinet in fleet:
        mail = cabinet.mail
        if mail is None or cabinet.name in simulated:
            continue
        account = mail.probe
        password = (
            partial(secrets.resolve, account.password, fleet.secret_folders) if account else None
        )
        out[cabinet.name] = MailTarget(
            cabinet.name,
            mail.hostname,
            mail.hostname,
            probe_login=account.address if account else None,
            probe_password=password,
            accounts=partial(_root_transport, mail.hostname),
        )
    return out


def _root_transport(host: str, timeout: float) -> SshTransport:
    from kloudctl.mail.store import SshTransport

    return SshTransport(host, user="root", timeout=timeout)


def _replication_rows(replicator: Any, cabinet: str, timeout: float) -> list[dict[str, Any]]:
    from kloudctl.replication.status import status_of

    # Over SSH (a deployed cabinet) within the time left; on this machine, restic's own.
    rows: list[dict[str, Any]] = status_of(replicator, cabinet, timeout=timeout)
    return rows


def replication_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One cabinet's rows of `replication status`: the worst lag, the last checks."""
    peers = [
        {
            "peer": row.get("peer"),
            "lag_seconds": row.get("lag_seconds"),
            "error": row.get("local_error") or row.get("peer_error"),
        }
        for row in rows
    ]
    lags = [p["lag_seconds"] for p in peers]
    errors = [p["error"] for p in peers if p["error"]]
    checks: dict[str, Any] = {}
    for row in rows:
        checks.update(row.get("last_check") or {})
    known = [lag for lag in lags if lag is not None]
    return {
        "state": "unknown" if errors or len(known) < len(lags) else "ok",
        "lag_seconds": max(known) if known and len(known) == len(lags) else None,
        "last_check": checks,
        "peers": peers,
        "detail": "; ".join(errors) or None,
    }
