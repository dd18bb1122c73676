"""What `kloudctl federation backup|failover|failback` do (see the package's docstring).

A failover is recorded in a journal (`<replication state>/cabinets/<home>/failover/<vm>.json`,
written atomically before each step that changes something), so a run killed at any point
converges when run again: an archive already in place (same sha256) is not restored twice,
a guest already restored is found at the VMID the journal chose, a running guest is not
started again. The journal also keeps the home's NICs (from the archive's config, before the
restore), which the failback gives back (`kloudctl/failover/network.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kloudctl import files
from kloudctl.answers import UnexpectedAnswer, dig
from kloudctl.capacity.plan import plan_cabinet
from kloudctl.errors import InputError, KloudError, NotFound
from kloudctl.failover import network as net
from kloudctl.federation.registry import RegistryStore
from kloudctl.model import Fleet
from kloudctl.model.schema import Cabinet, FederationGuests, GuestNetwork, Vm
from kloudctl.model.types import format_size
from kloudctl.proxmox.client import Client, ProxmoxError, RetryPolicy
from kloudctl.proxmox.target import cabinet_target
from kloudctl.replication import archives
from kloudctl.replication import restic as r
from kloudctl.replication.agent_interface import (
    ArchiveBackupOptions,
    ArchiveStageOptions,
    tool_name,
)
from kloudctl.replication.archives import FAILOVER_TAG
from kloudctl.replication.layout import Layout
from kloudctl.replication.ops import Replicator
from kloudctl.replication.remote import ask_agent
from kloudctl.replication.restic import parse_time

PATH_STORAGES = ("dir", "nfs", "cifs", "cephfs", "glusterfs", "btrfs")
#: How long the home cabinet's API is given to answer the probe before failover.
HOME_PROBE_SECONDS = 5.0


class FailoverRefused(InputError):
    """The failover (or failback) asked for is not allowed: nothing was changed."""


@dataclass(frozen=True)
class FailoverVm:
    """A council VM declared `failover: true`, with the VMID its cabinet's plan gives it."""

    cabinet: str
    name: str
    vmid: int
    vm: Vm


def failover_vm(fleet: Fleet, cabinet: str, name: str) -> FailoverVm:
    """The VM `name` of `cabinet`, refused unless it is a council VM marked failover."""
    cab = fleet.cabinet(cabinet)
    plan = plan_cabinet(cab)
    for tenant, planned in zip(cab.tenants, plan.tenants, strict=False):
        for vm, vmplan in zip(tenant.vms, planned.vms, strict=False):
            if vm.name != name:
                continue
            if tenant.level != 1:
                raise FailoverRefused(
                    f"VM '{name}' belongs to level-2 tenant '{tenant.name}': a level-2"
                    " tenant's VM never leaves its commune"
                )
            if not vm.failover:
                raise FailoverRefused(
                    f"VM '{name}' of cabinet '{cabinet}' is not declared `failover: true`"
                )
            return FailoverVm(cabinet, name, vmplan.vmid, vm)
    raise NotFound(f"cabinet '{cabinet}' declares no VM named '{name}'")


def failover_vms(fleet: Fleet, cabinet: str) -> list[FailoverVm]:
    cab = fleet.cabinet(cabinet)
    names = [vm.name for t in cab.tenants if t.level == 1 for vm in t.vms if vm.failover]
    return [failover_vm(fleet, cabinet, n) for n in names]


def _tag_value(snapshot: dict[str, Any], prefix: str) -> str | None:
    for tag in snapshot.get("tags") or []:
        if isinstance(tag, str) and tag.startswith(prefix):
            return tag[len(prefix) :]
    return None


@dataclass
class Failover:
    """The failover operations of one fleet, with its replication layout and the
    federation's state folder (the registry that says who is a member)."""

    fleet: Fleet
    layout: Layout
    federation_state: Path
    restic: r.Restic = field(default_factory=r.Restic)
    clock: Callable[[], float] = time.time
    #: the API client of a cabinet (tests may bound it differently)
    client_of: Callable[[str], Client] | None = None

    def __post_init__(self) -> None:
        self.replicator = Replicator(
            self.fleet, self.layout, self.restic, federation_state=self.federation_state
        )

    # ---- clients, folders, journal
    def client(self, cabinet: str, *, deadline: float | None = None) -> Client:
        if self.client_of is not None:
            return self.client_of(cabinet)
        target = cabinet_target(self.fleet, cabinet)
        if deadline is None:
            return Client(target, component="federation failover")
        # A probe: no retries beyond the deadline, so a dead cabinet costs seconds.
        return Client(
            target,
            RetryPolicy(attempts=1),
            timeout=deadline,
            deadline=time.monotonic() + deadline,
            component="federation failover",
        )

    def storage_folder(self, client: Client, cabinet: str, node: str, storage: str) -> Path:
        """The folder of `storage` on `node` as this machine sees it: the one endpoints.json
        names for the cabinet (`storages: {"NODE/STORAGE": FOLDER}`, a simulated cabinet's),
        else the storage's own path (kloudctl running on the cabinet's host), re-rooted
        under the endpoint's `root` when it has one."""
        entry = self.layout.endpoints()["cabinets"].get(cabinet, {})
        folders = entry.get("storages") or {}
        if f"{node}/{storage}" in folders:
            return Path(folders[f"{node}/{storage}"])
        path = self.storage_path(client, storage)
        root = self.layout.endpoint(cabinet).root
        return root / path.lstrip("/") if root else Path(path)

    def storage_path(self, client: Client, storage: str) -> str:
        """The storage's `path` as the cabinet's API reports it (where it is on the host)."""
        return dig(client.tool, client.get(f"storage/{storage}"), "path", kind=str)

    # ---- the two ways to move an archive: here (the storage's folder is on this
    # machine) or on the cabinet's host, by its replication agent over SSH
    def keep_archive(
        self,
        client: Client,
        cabinet: str,
        node: str,
        storage: str,
        name: str,
        *,
        owner: str,
        vm: str,
        failback: bool = False,
        copy: bool = False,
    ) -> dict[str, Any]:
        """The archive `name` of `cabinet`'s storage kept in restic with its sha256:
        `owner`'s local repository when `owner` is `cabinet` (with `copy`, carried to its
        peers), else `owner`'s copy on `cabinet`. {archive, size, sha256, snapshot, copies}"""
        ssh = self.layout.endpoint(cabinet).ssh
        if ssh is None:
            folder = self.storage_folder(client, cabinet, node, storage)
            repo = (
                self.replicator.ensure_local(owner)
                if owner == cabinet
                else self.layout.peer_repo(owner, cabinet)
            )
            kept = archives.backup_archive(
                self.restic, repo, folder, name, host=owner, vm=vm, failback=failback
            )
            copies = {}
            for peer in self.replicator.peers(cabinet, commit=True) if copy else []:
                copies[peer] = self.replicator.copy(cabinet, peer)[0]
            return {**kept, "copies": copies}
        options = ArchiveBackupOptions(
            owner=owner,
            storage_path=self.storage_path(client, storage),
            archive=name,
            vm=vm,
            failback=failback,
            copy=copy,
        )
        _code, kept = ask_agent(ssh, cabinet, options)
        return _checked(tool_name(cabinet), kept, name)

    def place_archive(
        self, client: Client, cabinet: str, node: str, storage: str, j: dict[str, Any], *,
        owner: str, peer: str,
    ) -> tuple[str, bool]:  # fmt: skip
        """The archive of `j` (its name, snapshot, sha256) from `owner`'s copy on `peer` into
        `cabinet`'s storage, byte-checked: (volid, whether it moved now)."""
        name, digest, snapshot = j["archive"], j["sha256"], j["snapshot"]
        ssh = self.layout.endpoint(cabinet).ssh
        if ssh is None:
            folder = self.storage_folder(client, cabinet, node, storage)
            repo = self.layout.peer_repo(owner, peer)
            moved = archives.stage_archive(self.restic, repo, folder, name, snapshot, digest)
        else:
            options = ArchiveStageOptions(
                owner=owner,
                peer=peer,
                storage_path=self.storage_path(client, storage),
                archive=name,
                snapshot=snapshot,
                sha256=digest,
            )
            _code, placed = ask_agent(ssh, cabinet, options)
            tool = tool_name(cabinet)
            if dig(tool, placed, "sha256", kind=str) != digest:
                raise UnexpectedAnswer(tool, f"archive {name} with sha256 {digest}", placed)
            moved = dig(tool, placed, "moved", kind=bool)
        return f"{storage}:backup/{name}", moved

    def backup_storage(self, client: Client, node: str) -> str:
        """The node's storage for backups: `local` when it takes backups, else the first
        path-based storage that does."""
        found = dig(client.tool, client.get(f"nodes/{node}/storage", content="backup"), kind=list)
        names = [
            dig(client.tool, s, "storage", kind=str)
            for s in found
            if isinstance(s, dict) and s.get("type") in PATH_STORAGES
        ]
        if not names:
            raise KloudError(f"{client.tool}: node {node} has no directory storage for backups")
        return "local" if "local" in names else sorted(names)[0]

    def journal_path(self, home: str, vm: str) -> Path:
        return self.layout.cabinet_dir(home) / "failover" / f"{vm}.json"

    def journal(self, home: str, vm: str) -> dict[str, Any] | None:
        path = self.journal_path(home, vm)
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise KloudError(f"{path}: unreadable failover journal ({exc})") from None
        if not isinstance(data, dict):
            raise KloudError(f"{path}: not a failover journal")
        return data

    def save_journal(self, home: str, vm: str, data: dict[str, Any]) -> None:
        path = self.journal_path(home, vm)
        path.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")

    def journals(self) -> list[dict[str, Any]]:
        """Every failover recorded here, newest state first by home and VM: which council
        VMs run on a peer now (`running`), are on their way (`restoring`, `returning`),
        or came home (`returned`). Reads only."""
        folder = self.layout.state / "cabinets"
        found = []
        for path in sorted(folder.glob("*/failover/*.json")) if folder.is_dir() else []:
            data = self.journal(path.parent.parent.name, path.stem)
            if data is not None:
                found.append(data)
        return found

    # ---- backup -------------------------------------------------------------------
    def backup(self, home: str, names: list[str] | None = None) -> list[dict[str, Any]]:
        """Back up the home's failover VMs into its replica on every peer."""
        vms = (
            [failover_vm(self.fleet, home, n) for n in names]
            if names
            else failover_vms(self.fleet, home)
        )
        if not vms:
            raise InputError(f"cabinet '{home}' declares no VM with `failover: true`")
        client = self.client(home)
        done = []
        with self.layout.run_lock(home):
            for i, fvm in enumerate(vms):
                # the copy to the peers once, after the last archive is kept
                done.append(self._backup_one(client, fvm, copy=i == len(vms) - 1))
        for item in done:  # what the last one's copy carried, every archive included
            item["copies"] = done[-1]["copies"]
        return done

    def _backup_one(self, client: Client, fvm: FailoverVm, *, copy: bool) -> dict[str, Any]:
        guest = client.find_guest(fvm.vmid)
        if guest is None:
            raise NotFound(f"VM '{fvm.name}' (VMID {fvm.vmid}) is not on cabinet '{fvm.cabinet}'")
        node = dig(client.tool, guest, "node", kind=str)
        storage = self.backup_storage(client, node)
        client.post(
            f"nodes/{node}/vzdump", vmid=fvm.vmid, storage=storage, mode="snapshot", compress="zstd"
        )
        listed = client.get(
            f"nodes/{node}/storage/{storage}/content", content="backup", vmid=fvm.vmid
        )
        volids = sorted(
            dig(client.tool, e, "volid", kind=str) for e in dig(client.tool, listed, kind=list)
        )
        if not volids:
            raise KloudError(f"{client.tool}: vzdump of VMID {fvm.vmid} left no archive")
        volid = volids[-1]  # names carry the time: the newest sorts last
        name = volid.split("/", 1)[1]
        kept = self.keep_archive(
            client, fvm.cabinet, node, storage, name, owner=fvm.cabinet, vm=fvm.name, copy=copy
        )
        return {"vm": fvm.name, "vmid": fvm.vmid, **kept}

    # ---- failover -----------------------------------------------------------------
    def check_peer(self, home: str, peer: str) -> FederationGuests:
        """PEER must be an active member of the home's federation and lend a guest quota."""
        if peer == home:
            raise FailoverRefused(f"cabinet '{home}' cannot fail over to itself")
        registry = RegistryStore(self.federation_state).load()
        members = {m.cabinet: m for m in registry.members.values()}
        member = members.get(peer)
        if member is None or member.state != "active":
            why = "was revoked from" if member is not None else "is not a member of"
            raise FailoverRefused(
                f"cabinet '{peer}' {why} federation '{registry.federation}' (registry version"
                f" {registry.version}): a council VM fails over only to an active member"
            )
        replica_on = self.replicator.peers(home)
        if peer not in replica_on:
            raise FailoverRefused(
                f"the replica of '{home}' is not on '{peer}' (its replication peers:"
                f" {', '.join(replica_on) or 'none'}): a VM fails over to where its replica is"
            )
        cab: Cabinet = self.fleet.cabinet(peer)
        if cab.federation is None or cab.federation.guests is None:
            raise FailoverRefused(
                f"cabinet '{peer}' lends no quota to other communes' guests (declare"
                " `federation: {guests: {quota: ..., vmids: ...}}` in its cabinet file)"
            )
        return cab.federation.guests

    def choose_peer(self, home: str, vm: str) -> tuple[str, str]:
        """Where `vm` fails over when no peer is named: among the home's replication peers
        that may take it (active member, a guest quota lent), the one holding the newest
        backup of it (the smallest data loss), then by name; (peer, why). Refused, with
        every peer's reason, when none can."""
        failover_vm(self.fleet, home, vm)  # refused here first for a VM that may not move
        reasons, fit = [], []
        for peer in self.replicator.peers(home):
            try:
                self.check_peer(home, peer)
                newest = self.latest_backup(home, vm, peer)
            except KloudError as exc:
                reasons.append(f"'{peer}': {exc}")
                continue
            fit.append((-parse_time(newest["time"]), peer, newest["time"]))
        if not fit:
            raise FailoverRefused(
                f"no peer of '{home}' can take VM '{vm}': " + "; ".join(reasons or ["no peers"])
            )
        _, peer, when = min(fit)
        others = f"; not chosen: {'; '.join(reasons)}" if reasons else ""
        return peer, f"its newest backup of '{vm}' ({when}) is the most recent held{others}"

    def latest_backup(self, home: str, vm: str, peer: str) -> dict[str, Any]:
        """The newest failover snapshot of `vm` in the home's copy on `peer`."""
        snaps = self.replicator.peer_snapshots(home, peer, state={})
        mine = [
            s
            for s in snaps
            if FAILOVER_TAG in (s.get("tags") or []) and f"vm:{vm}" in (s.get("tags") or [])
        ]
        if not mine:
            raise KloudError(
                f"no backup of VM '{vm}' in the replica of '{home}' on '{peer}': run"
                f" `kloudctl federation backup {home}` while the cabinet runs"
            )
        newest = max(mine, key=lambda s: parse_time(s["time"]))
        for key in ("sha256:", "archive:"):
            if _tag_value(newest, key) is None:
                raise KloudError(f"snapshot {newest['short_id']} on '{peer}' has no {key} tag")
        return newest

    def home_state(self, home: str, vmid: int) -> str:
        """`unreachable`, `absent`, or the guest's status at home (`running`, `stopped`)."""
        try:
            client = self.client(home, deadline=HOME_PROBE_SECONDS)
            guest = client.find_guest(vmid)
        except KloudError:
            return "unreachable"
        if guest is None:
            return "absent"
        return str(guest.get("status", "unknown"))

    def _guests_in_range(self, client: Client, guests: FederationGuests) -> list[dict[str, Any]]:
        return [g for g in client.guests() if guests.vmids.first <= g["vmid"] <= guests.vmids.last]

    def _first_online_node(self, client: Client) -> str:
        nodes = dig(client.tool, client.get("nodes"), kind=list)
        online = sorted(
            dig(client.tool, n, "node", kind=str)
            for n in nodes
            if isinstance(n, dict) and n.get("status") == "online"
        )
        if not online:
            raise KloudError(f"{client.tool}: no node online")
        return online[0]

    def failover(self, home: str, vm: str, peer: str, *, dry_run: bool = False) -> dict[str, Any]:
        started = time.monotonic()
        fvm = failover_vm(self.fleet, home, vm)
        guests = self.check_peer(home, peer)
        journal = self.journal(home, vm)
        if journal is not None and journal.get("state") != "returned":
            if journal.get("state") == "returning":
                raise FailoverRefused(
                    f"VM '{vm}' of '{home}' is on its way home: finish it with"
                    f" `kloudctl federation failback {home} {vm}`"
                )
            if journal["peer"] != peer:
                raise FailoverRefused(
                    f"VM '{vm}' of '{home}' is already failed over to '{journal['peer']}':"
                    f" fail it back first (`kloudctl federation failback {home} {vm}`)"
                )
        else:
            journal = None
        at_home = self.home_state(home, fvm.vmid) if journal is None else "failed over"
        if at_home == "running":
            raise FailoverRefused(
                f"VM '{vm}' runs on cabinet '{home}', which answers: a failover would run it"
                " twice; stop it there first"
            )
        snapshot = self.latest_backup(home, vm, peer) if journal is None else None
        client = self.client(peer)
        if journal is None:
            assert snapshot is not None
            node = self._first_online_node(client)
            present = self._guests_in_range(client, guests)
            taken = {g["vmid"] for g in present}
            free = (v for v in range(guests.vmids.first, guests.vmids.last + 1) if v not in taken)
            guest_vmid = next(free, None)
            if guest_vmid is None:
                raise FailoverRefused(
                    f"cabinet '{peer}': no free VMID left in its guests' range"
                    f" {guests.vmids.first}-{guests.vmids.last}"
                )
            self._check_quota(peer, guests, present, fvm.vm)
            journal = {
                "home": home,
                "vm": vm,
                "home_vmid": fvm.vmid,
                "peer": peer,
                "node": node,
                "storage": self.backup_storage(client, node),
                "guest_vmid": guest_vmid,
                "pool": guests.pool,
                "snapshot": snapshot["id"],
                "snapshot_time": snapshot["time"],
                "archive": _tag_value(snapshot, "archive:"),
                "sha256": _tag_value(snapshot, "sha256:"),
                "state": "planned",
            }
        # the peer's declaration as it is now: a resumed run fixes NICs restored otherwise
        journal["network"] = guests.network.model_dump()
        self._check_bridge(client, peer, journal["node"], guests.network)
        plan = {
            **{k: journal[k] for k in ("home", "vm", "peer", "node", "storage", "pool")},
            "home_vmid": journal["home_vmid"],
            "guest_vmid": journal["guest_vmid"],
            "home_cabinet": at_home,
            "snapshot": journal["snapshot"],
            "archive": journal["archive"],
            "sha256": journal["sha256"],
            "network": journal["network"],
            "recovery_point": journal["snapshot_time"],
            "data_age_seconds": round(self.clock() - parse_time(journal["snapshot_time"]), 1),
            "dry_run": dry_run,
        }
        if dry_run:
            plan["steps"] = [
                f"restic restore {journal['snapshot'][:8]} from the replica of '{home}' on"
                f" '{peer}' into {journal['storage']}:backup/{journal['archive']}",
                f"restore VMID {journal['guest_vmid']} on {peer}/{journal['node']} in pool"
                f" '{journal['pool']}' (archive=), {net.describe(guests.network)}",
                f"start VMID {journal['guest_vmid']}",
            ]
            return plan
        first_state = journal["state"]
        resumed = first_state == "restoring"
        if first_state == "planned":
            journal["state"] = "restoring"
            journal["started_at"] = self.clock()
            self.save_journal(home, vm, journal)
        steps = self._bring_up(client, journal)
        if journal["state"] == "restoring":
            journal["state"] = "running"
            journal["running_at"] = self.clock()
            self.save_journal(home, vm, journal)
        plan["steps"] = steps
        # The recovery time is this run's wall time; a run that resumed a killed one also
        # says how long the service has been away since the first attempt began.
        plan["recovery_time_seconds"] = round(time.monotonic() - started, 2)
        plan["resumed"] = resumed
        plan["already_running"] = first_state == "running"
        if first_state != "planned":
            plan["since_first_attempt_seconds"] = round(
                journal["running_at"] - journal["started_at"], 2
            )
        return plan

    def _check_quota(
        self, peer: str, guests: FederationGuests, present: list[dict[str, Any]], vm: Vm
    ) -> None:
        used = {
            "vcpu": sum(int(g.get("maxcpu") or 0) for g in present),
            "ram": sum(int(g.get("maxmem") or 0) for g in present),
            "disk": sum(int(g.get("maxdisk") or 0) for g in present),
        }
        wants = {"vcpu": vm.cores, "ram": vm.memory, "disk": vm.disk}
        quota = guests.quota.model_dump()
        over = [
            f"{k} {_show(k, used[k])} used + {_show(k, wants[k])} > {_show(k, quota[k])}"
            for k in wants
            if used[k] + wants[k] > quota[k]
        ]
        if over:
            raise FailoverRefused(
                f"cabinet '{peer}': the quota lent to guests is too small: {'; '.join(over)}"
            )

    def _bring_up(self, client: Client, j: dict[str, Any]) -> list[str]:
        steps = []
        node, vmid = j["node"], j["guest_vmid"]
        volid, moved = self.place_archive(
            client, j["peer"], node, j["storage"], j, owner=j["home"], peer=j["peer"]
        )
        steps.append(
            f"archive {volid} restored from snapshot {j['snapshot'][:8]} (sha256 checked)"
            if moved
            else f"archive {volid} already in place (sha256 checked)"
        )
        self._ensure_pool(client, j["pool"])
        network = GuestNetwork(**j["network"])
        if "home_nics" not in j:  # the home's NICs, kept for the failback before any restore
            j["home_nics"] = self._archive_nics(client, node, volid)
        guest_nics = {k: net.on_guest_network(v, network) for k, v in j["home_nics"].items()}
        for key, line in guest_nics.items():
            if line is None:  # a NIC line PVE never prints: refused before any restore
                raise UnexpectedAnswer(
                    client.tool, f"{key} with a NIC model (MODEL=MAC,...)", j["home_nics"][key]
                )
        j["guest_nics"] = guest_nics
        self.save_journal(j["home"], j["vm"], j)
        guest = client.find_guest(vmid)
        if guest is None:
            client.post(
                f"nodes/{node}/qemu", vmid=vmid, archive=volid, pool=j["pool"], **j["guest_nics"]
            )
            steps.append(
                f"VMID {vmid} restored on {j['peer']}/{node} in pool '{j['pool']}',"
                f" {net.describe(network)}"
            )
        else:
            config = self._check_is_ours(client, node, vmid, j["vm"])
            steps.append(f"VMID {vmid} already restored on {j['peer']}/{node}")
            steps += self._plug_nics(client, node, vmid, config, j["guest_nics"], network)
        steps.append(self._start(client, node, vmid))
        return steps

    def _archive_nics(self, client: Client, node: str, volid: str) -> dict[str, str]:
        """The NICs of the guest config an archive holds (read back through the API)."""
        text = client.get(f"nodes/{node}/vzdump/extractconfig", volume=volid)
        return net.nics(net.parse_config(dig(client.tool, text, kind=str)))

    def _check_bridge(self, client: Client, peer: str, node: str, network: GuestNetwork) -> None:
        """The guests' bridge is one of the node's, before anything changes."""
        found = dig(client.tool, client.get(f"nodes/{node}/network", type="any_bridge"), kind=list)
        bridges = sorted(str(b.get("iface")) for b in found if isinstance(b, dict))
        if network.bridge not in bridges:
            raise FailoverRefused(
                f"cabinet '{peer}': node {node} has no bridge '{network.bridge}' for other"
                f" communes' guests (its bridges: {', '.join(bridges) or 'none'}); fix"
                " federation.guests.network in its cabinet file"
            )

    def _plug_nics(
        self,
        client: Client,
        node: str,
        vmid: int,
        config: dict[str, Any],
        wanted: dict[str, str],
        network: GuestNetwork,
    ) -> list[str]:
        """A guest restored already (a killed run's, or one restored without the override)
        gets its NICs onto the guest network before it runs: stopped first if it runs, since
        it must never stay on the home's VLAN. A NIC the archive did not have is removed."""
        wrong = {k: v for k, v in wanted.items() if not _same_nic(config.get(k), v)}
        extra = sorted(set(net.nics(config)) - set(wanted))
        if not wrong and not extra:
            return []
        steps = []
        stopped = self._stop(client, node, vmid)
        if stopped:
            steps.append(stopped + ": its NICs were not on the guest network")
        client.put(f"nodes/{node}/qemu/{vmid}/config", **wrong, delete=",".join(extra) or None)
        moved = ", ".join(sorted(wrong)) or "no NIC"
        steps.append(
            f"VMID {vmid}: {moved} put on bridge {network.bridge}, VLAN {network.vlan}"
            + (f"; {', '.join(extra)} removed" if extra else "")
        )
        return steps

    def _check_is_ours(self, client: Client, node: str, vmid: int, name: str) -> dict[str, Any]:
        config = self._wait_unlocked(client, node, vmid)
        if config.get("name") != name:
            raise KloudError(
                f"{client.tool}: VMID {vmid} holds '{config.get('name')}', not '{name}':"
                " another guest took the VMID; nothing changed"
            )
        return config

    def _wait_unlocked(self, client: Client, node: str, vmid: int) -> dict[str, Any]:
        """The guest's config once no task holds it (a restore of a killed run may still run)."""
        deadline = time.monotonic() + client.retry.task_timeout
        while True:
            config = dig(client.tool, client.get(f"nodes/{node}/qemu/{vmid}/config"), kind=dict)
            if "lock" not in config or time.monotonic() > deadline:
                return config
            time.sleep(client.retry.task_poll)

    def _ensure_pool(self, client: Client, pool: str) -> None:
        pools = dig(client.tool, client.get("pools"), kind=list)
        if not any(isinstance(p, dict) and p.get("poolid") == pool for p in pools):
            client.post("pools", poolid=pool, comment="guests of other communes (failover)")

    def _start(self, client: Client, node: str, vmid: int) -> str:
        status = client.get(f"nodes/{node}/qemu/{vmid}/status/current")
        if dig(client.tool, status, "status", kind=str) == "running":
            return f"VMID {vmid} already running"
        client.post(f"nodes/{node}/qemu/{vmid}/status/start")
        return f"VMID {vmid} started"

    def _stop(self, client: Client, node: str, vmid: int) -> str | None:
        status = client.get(f"nodes/{node}/qemu/{vmid}/status/current")
        if dig(client.tool, status, "status", kind=str) != "running":
            return None
        client.post(f"nodes/{node}/qemu/{vmid}/status/stop")
        return f"VMID {vmid} stopped on {node}"

    # ---- failback -----------------------------------------------------------------
    def failback(self, home: str, vm: str) -> dict[str, Any]:
        """Bring the guest home with the data written on the peer meanwhile."""
        started = time.monotonic()
        fvm = failover_vm(self.fleet, home, vm)
        j = self.journal(home, vm)
        if j is None or j.get("state") == "returned":
            raise FailoverRefused(
                f"VM '{vm}' of '{home}' is not failed over: nothing to bring back"
            )
        if j.get("state") in ("planned", "restoring"):
            raise FailoverRefused(
                f"the failover of VM '{vm}' to '{j['peer']}' did not finish: run"
                f" `kloudctl federation failover {home} {vm} --to {j['peer']}` again first"
            )
        try:
            home_client = self.client(home)
            home_client.get("version")
        except ProxmoxError as exc:
            raise KloudError(f"cabinet '{home}' is not back yet: {exc}") from None
        peer_client = self.client(j["peer"])
        steps: list[str] = []
        if j["state"] == "running":
            j["state"] = "returning"
            self.save_journal(home, vm, j)
        back = j.get("return")
        if back is None:
            back = self._back_up_guest(peer_client, j, steps)
            j["return"] = back
            self.save_journal(home, vm, j)
        # Home: the archive into its backup storage, then over the old guest.
        guest = home_client.find_guest(fvm.vmid)
        node = (
            dig(home_client.tool, guest, "node", kind=str)
            if guest
            else self._first_online_node(home_client)
        )
        storage = self.backup_storage(home_client, node)
        volid, moved = self.place_archive(
            home_client, home, node, storage, back, owner=home, peer=j["peer"]
        )
        steps.append(
            f"archive {volid} carried to '{home}' from snapshot {back['snapshot'][:8]}"
            " (sha256 checked)"
            if moved
            else f"archive {volid} already at '{home}' (sha256 checked)"
        )
        if not j.get("restored_home"):
            if "home_nics" not in j:  # a journal of before: the first archive is on the peer
                original = f"{j['storage']}:backup/{j['archive']}"
                j["home_nics"] = self._archive_nics(peer_client, j["node"], original)
                self.save_journal(home, vm, j)
            home_nics: dict[str, str] = j["home_nics"]
            # a NIC added on the peer would come home on the peer's guest VLAN: removed
            extra = sorted(set(self._archive_nics(home_client, node, volid)) - set(home_nics))
            if guest is not None:
                stopped = self._stop(home_client, node, fvm.vmid)
                if stopped:
                    steps.append(stopped + f" at '{home}'")
            home_client.post(
                f"nodes/{node}/qemu",
                vmid=fvm.vmid,
                archive=volid,
                force=1 if guest else None,
                **home_nics,
            )
            steps.append(
                f"VMID {fvm.vmid} restored at '{home}'"
                + (" over the old guest" if guest else "")
                + f", its NICs as before the failover ({', '.join(sorted(home_nics)) or 'none'})"
            )
            if extra:
                home_client.put(f"nodes/{node}/qemu/{fvm.vmid}/config", delete=",".join(extra))
                steps.append(f"VMID {fvm.vmid}: {', '.join(extra)} (added on the peer) removed")
            j["restored_home"] = True
            self.save_journal(home, vm, j)
        steps.append(self._start(home_client, node, fvm.vmid) + f" at '{home}'")
        steps += self._remove_from_peer(peer_client, j, back)
        j["state"] = "returned"
        j["returned_at"] = self.clock()
        self.save_journal(home, vm, j)
        return {
            "home": home,
            "vm": vm,
            "peer": j["peer"],
            "home_vmid": fvm.vmid,
            "guest_vmid": j["guest_vmid"],
            "archive": back["archive"],
            "size": back["size"],
            "sha256": back["sha256"],
            "snapshot": back["snapshot"],
            "steps": steps,
            "duration_seconds": round(time.monotonic() - started, 2),
        }

    def _back_up_guest(self, client: Client, j: dict[str, Any], steps: list[str]) -> dict[str, Any]:
        """Stop the guest on the peer, vzdump it, and put that archive into the home's
        copy on the peer (append-only: the data written during the failover is kept there
        before anything at home changes)."""
        node, vmid, storage = j["node"], j["guest_vmid"], j["storage"]
        stopped = self._stop(client, node, vmid)
        if stopped:
            steps.append(stopped + f" on '{j['peer']}'")
        before = self._backups(client, node, storage, vmid)
        client.post(
            f"nodes/{node}/vzdump", vmid=vmid, storage=storage, mode="stop", compress="zstd"
        )
        made = sorted(set(self._backups(client, node, storage, vmid)) - set(before))
        if not made:
            raise KloudError(f"{client.tool}: vzdump of VMID {vmid} left no new archive")
        name = made[-1].split("/", 1)[1]
        steps.append(f"VMID {vmid} backed up on '{j['peer']}' ({name})")
        kept = self.keep_archive(
            client, j["peer"], node, storage, name, owner=j["home"], vm=j["vm"], failback=True
        )
        steps.append(
            f"archive kept in the replica of '{j['home']}' as snapshot {kept['snapshot'][:8]}"
        )
        return {
            "archive": name,
            "sha256": kept["sha256"],
            "snapshot": kept["snapshot"],
            "size": kept["size"],
            "volid": f"{storage}:backup/{name}",
        }

    def _backups(self, client: Client, node: str, storage: str, vmid: int) -> list[str]:
        listed = client.get(f"nodes/{node}/storage/{storage}/content", content="backup", vmid=vmid)
        return [dig(client.tool, e, "volid", kind=str) for e in dig(client.tool, listed, kind=list)]

    def _remove_from_peer(
        self, client: Client, j: dict[str, Any], back: dict[str, Any]
    ) -> list[str]:
        node, vmid, storage = j["node"], j["guest_vmid"], j["storage"]
        steps = []
        guest = client.find_guest(vmid)
        if guest is not None:
            self._check_is_ours(client, node, vmid, j["vm"])
            self._stop(client, node, vmid)
            client.delete(f"nodes/{node}/qemu/{vmid}", purge=1)
            steps.append(f"VMID {vmid} removed from '{j['peer']}'")
        for volid in self._backups(client, node, storage, vmid):
            client.delete(f"nodes/{node}/storage/{storage}/content/{volid}")
            steps.append(f"archive {volid} removed from '{j['peer']}'")
        # the archive restored from the replica carries the home's VMID in its name
        restored = f"{storage}:backup/{j['archive']}"
        if restored in self._backups(client, node, storage, j["home_vmid"]):
            client.delete(f"nodes/{node}/storage/{storage}/content/{restored}")
            steps.append(f"archive {restored} removed from '{j['peer']}'")
        return steps


def _checked(tool: str, kept: Any, name: str) -> dict[str, Any]:
    """An agent's archive-backup result, with the fields used here checked."""
    if dig(tool, kept, "archive", kind=str) != name:
        raise UnexpectedAnswer(tool, f"archive {name} kept", kept)
    return {
        "archive": name,
        "size": dig(tool, kept, "size", kind=int),
        "sha256": archives.check_hex(dig(tool, kept, "sha256", kind=str), "sha256"),
        "snapshot": archives.check_hex(dig(tool, kept, "snapshot", kind=str), "snapshot id"),
        "copies": dict(dig(tool, kept, "copies", kind=dict)),
    }


def _same_nic(current: object, wanted: str) -> bool:
    """The same NIC options, whatever their order."""
    return current is not None and set(str(current).split(",")) == set(wanted.split(","))


def _show(kind: str, value: int) -> str:
    return str(value) if kind == "vcpu" else format_size(value)
