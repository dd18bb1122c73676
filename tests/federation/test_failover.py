"""Failover of a council VM from a stopped cabinet to a federation peer, and its return.

Real parts: the Proxmox VE simulator for both cabinets (brieux, the home, and mortree, the
peer; each started by `kloudctl sim up` in its own process, so brieux can be stopped while
mortree runs, and each recording its storage folders where the failover reads them), the real
restic and the real rest-server (append-only, on loopback) for the replica, the real
signed registry for membership, the real CLI in a subprocess. Nothing is mocked.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3

from kloudctl.capacity.plan import plan_cabinet
from kloudctl.failover.ops import Failover, FailoverRefused, failover_vm
from kloudctl.federation.registry import RegistryStore
from kloudctl.model import Fleet, load_fleet
from kloudctl.proxmox.client import Client
from kloudctl.proxmox.target import cabinet_target
from kloudctl.replication import restic as r
from kloudctl.replication.layout import Layout
from kloudctl.replication.restic import Restic
from kloudctl.replication.serve import loopback
from kloudctl.sim.runner import read_run
from kloudctl.tenants.simtargets import use_simulator
from tests.conftest import REPO, run_kloudctl
from tests.federation.conftest import Federation

pytestmark = [
    pytest.mark.slow,
    # the simulator's self-signed certificate is pinned by its fingerprint (the one client)
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

HOME, PEER, OUTSIDER = "brieux", "mortree", "saint-aubin"
VM, HOME_VMID = "brieux-web", 1000
GUEST_FIRST = 800000
# brieux-web's NIC at home, on its council's VLAN (100), and where mortree plugs guests
HOME_NIC = "virtio=BC:24:11:10:00:01,bridge=vmbr0,firewall=1,tag=100"
GUEST_NIC = "virtio=BC:24:11:10:00:01,bridge=vmbr0,firewall=1,tag=3900"
GUESTS = """\
  guests:
    quota: {vcpu: 4, ram: 8GiB, disk: 64GiB}
    vmids: {first: 800000, last: 800099}
    network: {bridge: vmbr0, vlan: 3900}
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_fleet(root: Path) -> Path:
    """The example fleet, where brieux-web fails over and saint-aubin lends a guest quota;
    here brieux replicates to mortree instead, which lends one too (saint-aubin is then
    no federation member)."""
    for folder in ("cabinets", "backups"):
        (root / folder).mkdir(parents=True)
        for f in (REPO / folder).glob("*.yaml"):
            (root / folder / f.name).write_text(f.read_text())
    brieux = root / "cabinets" / "brieux.yaml"
    text = brieux.read_text()
    assert "tags: [website], failover: true}" in text  # the example fleet declares it
    brieux.write_text(text.replace("peers: [saint-aubin]", "peers: [mortree]"))
    assert "guests:" in (root / "cabinets" / f"{OUTSIDER}.yaml").read_text()
    path = root / "cabinets" / f"{PEER}.yaml"
    path.write_text(path.read_text().rstrip("\n") + "\n" + GUESTS)
    return root


@dataclass(frozen=True)
class CabinetSim:
    """A simulated cabinet started by `kloudctl sim up`: its run record's entry."""

    entry: dict[str, Any]

    def storage_folder(self, node: str, storage: str) -> Path:
        # where `kloudctl sim up` said the storage is (the failover reads the same record)
        return Path(self.entry["storages"][f"{node}/{storage}"])


@contextmanager
def cabinet_sim(
    root: Path, name: str, state: Path, base_address: str, task_seconds: float = 0.05
) -> Iterator[CabinetSim]:
    """One simulated cabinet started the operator's way, `kloudctl sim up` in its own
    process (so it can stop and come back with its state kept in `state`), pointed at by
    the fleet's API targets; the storage folders it records are all the failover needs."""
    up = run_kloudctl(
        "--fleet", str(root), "sim", "up", name, "--state-dir", str(state), "--port", "0",
        "--base-address", base_address, "--task-seconds", str(task_seconds), cwd=root,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    try:
        run = read_run(state)
        assert run is not None
        use_simulator(load_fleet(root), root, run)
        [entry] = run["cabinets"]
        recorded = Layout(root / ".state" / "replication").endpoints()["cabinets"][name]
        assert recorded["storages"] == entry["storages"]
        yield CabinetSim(entry)
    finally:
        down = run_kloudctl("sim", "down", "--state-dir", str(state), cwd=root)
        assert down.returncode == 0, down.stderr


def client(fleet: Fleet, name: str) -> Client:
    return Client(cabinet_target(fleet, name), component="test")


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_kloudctl("--fleet", str(root), "federation", *args, cwd=root)


def guest_config(api: Client, vmid: int) -> dict[str, Any]:
    guest = api.find_guest(vmid)
    assert guest is not None, vmid
    config: dict[str, Any] = api.get(f"nodes/{guest['node']}/qemu/{vmid}/config")
    return {**config, "status": guest["status"], "node": guest["node"]}


@pytest.fixture
def fleet_root(tmp_path: Path, federation: Federation) -> Path:
    root = make_fleet(tmp_path / "fleet")
    # The registry: brieux (coordinator) and mortree are members; saint-aubin is not.
    (root / ".state" / "federation").mkdir(parents=True)
    RegistryStore(root / ".state" / "federation").accept(federation.chain(upto=2), "(test)")
    return root


def test_validation_refuses_failover_on_a_level_2_vm(fleet_root: Path) -> None:
    brieux = fleet_root / "cabinets" / "brieux.yaml"
    text = brieux.read_text().replace(
        "memory: 2GiB, disk: 40GiB, load: 0.1}",
        "memory: 2GiB, disk: 40GiB, load: 0.1, failover: true}",
    )
    brieux.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "leroy-shop" in t)
    result = run_kloudctl("validate", str(brieux), cwd=fleet_root)
    assert result.returncode == 2, result
    assert f"cabinets/brieux.yaml:{line}:" in result.stderr + result.stdout
    assert "tenants[1].vms[0].failover" in result.stderr + result.stdout
    assert "a level-2 tenant's VM never leaves its commune" in result.stderr + result.stdout
    # the failover command loads the same fleet: the same refusal, nothing done
    refused = cli(fleet_root, "failover", HOME, "leroy-shop", "--to", PEER)
    assert refused.returncode == 2 and "never leaves its commune" in refused.stderr


def test_guest_quota_is_reserved_by_the_peers_plan(fleet_root: Path) -> None:
    plain = load_fleet(REPO)
    lending = load_fleet(fleet_root)

    plain_plan, lending_plan = (
        plan_cabinet(plain.cabinet(PEER)),
        plan_cabinet(lending.cabinet(PEER)),
    )
    before = {x.name: x.reserved for x in plain_plan.resources}
    after = {x.name: x.reserved for x in lending_plan.resources}
    # the power plan budgets the lent vCPUs at a guest's default load
    assert lending_plan.power.estimated_watts > plain_plan.power.estimated_watts
    assert after["vCPU"] - before["vCPU"] == 4
    assert after["RAM"] - before["RAM"] == 8 * 1024**3
    assert after["disk"] - before["disk"] == 64 * 1024**3
    # a quota the peer cannot hold is refused by its plan, with the numbers
    path = fleet_root / "cabinets" / f"{PEER}.yaml"
    path.write_text(path.read_text().replace("ram: 8GiB, disk: 64GiB", "ram: 64GiB, disk: 64GiB"))
    result = run_kloudctl("plan", PEER, cwd=fleet_root)
    assert result.returncode != 0
    assert "federation guests' quota" in result.stdout + result.stderr


def test_a_level_2_vm_is_refused_by_the_core(fleet_root: Path) -> None:
    fleet = load_fleet(fleet_root)
    with pytest.raises(FailoverRefused, match="a level-2 tenant's VM never leaves its commune"):
        failover_vm(fleet, HOME, "leroy-shop")
    with pytest.raises(FailoverRefused, match="not declared `failover: true`"):
        failover_vm(fleet, HOME, "brieux-files")


def test_failover_to_the_peer_and_back(fleet_root: Path, tmp_path: Path) -> None:
    fleet = load_fleet(fleet_root)
    layout = Layout(fleet_root / ".state" / "replication")
    restic = Restic()
    with (
        loopback(layout, fleet, [PEER]),
        cabinet_sim(fleet_root, PEER, tmp_path / "sim-mortree", "127.0.0.40", 0.5) as peer_sim,
    ):
        # --- brieux runs: its council website is backed up into its replica on mortree
        with cabinet_sim(fleet_root, HOME, tmp_path / "sim-brieux", "127.0.0.30") as home_sim:
            home = client(fleet, HOME)
            home.post("nodes/pve1/qemu/9000/clone", newid=HOME_VMID, name=VM, full=1)
            home.put(
                f"nodes/pve1/qemu/{HOME_VMID}/config",
                description="mairie",
                memory="2048",
                net0=HOME_NIC,
            )
            home.post(f"nodes/pve1/qemu/{HOME_VMID}/status/start")
            done = cli(fleet_root, "backup", HOME, "--json")
            assert done.returncode == 0, done.stderr
            [backed] = json.loads(done.stdout)
            archive = home_sim.storage_folder("pve1", "local") / "dump" / backed["archive"]
            assert sha256(archive) == backed["sha256"]
            assert "1 snapshot(s) copied" in backed["copies"][PEER]
            original = guest_config(home, HOME_VMID)
        # --- brieux is down (its simulator stopped): nothing answers at its address

        peer = client(fleet, PEER)
        guests_before = peer.guests()
        dump = peer_sim.storage_folder("pve1", "local") / "dump"
        files_before = sorted(dump.glob("*")) if dump.exists() else []

        # dry run: the plan, and nothing changes on the peer or in the journal
        # (no --to: the replication peer holding the newest backup of the VM)
        plan = cli(fleet_root, "failover", HOME, VM, "--dry-run")
        assert plan.returncode == 0, plan.stderr
        assert f"peer chosen: '{PEER}' (its newest backup of '{VM}' (" in plan.stdout
        assert "plan (nothing changed)" in plan.stdout and f"VMID {GUEST_FIRST}" in plan.stdout
        assert "recovery point:" in plan.stdout
        # the network the guest will get: mortree's guest VLAN, never brieux's
        assert "every NIC on bridge vmbr0, VLAN 3900, firewall on" in plan.stdout
        assert peer.guests() == guests_before
        assert (sorted(dump.glob("*")) if dump.exists() else []) == files_before
        assert not (layout.cabinet_dir(HOME) / "failover").exists()

        # a cabinet that is no member of the federation is refused, nothing changes
        outsider = cli(fleet_root, "failover", HOME, VM, "--to", OUTSIDER)
        assert outsider.returncode == 2
        assert "'saint-aubin' is not a member of federation 'bocage'" in outsider.stderr
        assert not (layout.cabinet_dir(HOME) / "failover").exists()

        # the failover, killed while the peer restores the guest (its tasks last 0.5 s)...
        env = {**os.environ, "COLUMNS": "200"}
        argv = [sys.executable, "-m", "kloudctl", "--fleet", str(fleet_root), "federation"]
        proc = subprocess.Popen(
            [*argv, "failover", HOME, VM, "--to", PEER],
            cwd=fleet_root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while peer.find_guest(GUEST_FIRST) is None and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        killed = json.loads((layout.cabinet_dir(HOME) / "failover" / f"{VM}.json").read_text())
        assert killed["state"] == "restoring"
        # the home's NICs were recorded from the archive before the restore began
        assert killed["home_nics"] == {"net0": HOME_NIC}
        assert killed["guest_nics"] == {"net0": GUEST_NIC}
        # as if that guest had been restored without the override (kloudctl before it
        # gave the network): its NIC on brieux's VLAN, which the next run must fix
        while "lock" in peer.get(f"nodes/pve1/qemu/{GUEST_FIRST}/config"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert peer.get(f"nodes/pve1/qemu/{GUEST_FIRST}/config")["net0"] == GUEST_NIC
        peer.put(f"nodes/pve1/qemu/{GUEST_FIRST}/config", net0=HOME_NIC)

        # ...and run again: it converges on the guest already restoring
        rerun = cli(fleet_root, "failover", HOME, VM, "--to", PEER)
        assert rerun.returncode == 0, rerun.stderr
        assert f"VMID {GUEST_FIRST} already restored" in rerun.stdout
        assert f"VMID {GUEST_FIRST}: net0 put on bridge vmbr0, VLAN 3900" in rerun.stdout
        assert "recovery point: " in rerun.stdout and "recovery time: " in rerun.stdout
        assert "which resumed an interrupted one" in rerun.stdout
        restored = dump / backed["archive"]
        assert sha256(restored) == backed["sha256"]  # byte-identical to the copied backup
        running = guest_config(peer, GUEST_FIRST)
        assert running["status"] == "running" and running["name"] == VM
        assert running["description"] == original["description"] == "mairie"
        # mortree's guest network, the same MAC address, the firewall on; not brieux's VLAN
        assert original["net0"] == HOME_NIC
        assert running["net0"] == GUEST_NIC and "tag=100" not in running["net0"]
        pools = {p["poolid"]: p for p in peer.get("pools")}
        members = peer.get("pools/federation-guests")["members"]
        assert "federation-guests" in pools and [m["vmid"] for m in members] == [GUEST_FIRST]

        listed = cli(fleet_root, "failovers", "--json")
        assert listed.returncode == 0, listed.stderr
        [record] = json.loads(listed.stdout)
        assert (record["vm"], record["peer"], record["state"]) == (VM, PEER, "running")

        # a third run changes nothing
        again = cli(fleet_root, "failover", HOME, VM, "--to", PEER, "--json")
        assert again.returncode == 0, again.stderr
        report = json.loads(again.stdout)
        assert report["steps"] == [
            f"archive local:backup/{backed['archive']} already in place (sha256 checked)",
            f"VMID {GUEST_FIRST} already restored on {PEER}/pve1",
            f"VMID {GUEST_FIRST} already running",
        ]

        # --- meanwhile the guest's data changes on the peer, and someone gives it a second
        # NIC there (on mortree's guest VLAN: it must not come home)
        peer.post(f"nodes/pve1/qemu/{GUEST_FIRST}/status/stop")
        peer.put(
            f"nodes/pve1/qemu/{GUEST_FIRST}/config",
            description="écrit pendant la panne",
            net1="e1000,bridge=vmbr0,firewall=1,tag=3900",
        )
        peer.post(f"nodes/pve1/qemu/{GUEST_FIRST}/status/start")

        # failback while brieux is still down: refused, nothing changes
        early = cli(fleet_root, "failback", HOME, VM)
        assert early.returncode == 1 and "'brieux' is not back yet" in early.stderr
        assert guest_config(peer, GUEST_FIRST)["status"] == "running"

        # --- brieux is back (the same state: its old guest is still there)
        with cabinet_sim(fleet_root, HOME, tmp_path / "sim-brieux", "127.0.0.30") as home_sim:
            home = client(fleet, HOME)
            assert guest_config(home, HOME_VMID)["description"] == "mairie"
            # the failback, killed once the guest's new archive is kept in the replica...
            journal = layout.cabinet_dir(HOME) / "failover" / f"{VM}.json"
            proc = subprocess.Popen(
                [*argv, "failback", HOME, VM],
                cwd=fleet_root,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            deadline = time.monotonic() + 120
            while "return" not in json.loads(journal.read_text()) and proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kept = json.loads(journal.read_text())
            assert kept["state"] == "returning" and not kept.get("restored_home")
            assert guest_config(home, HOME_VMID)["description"] == "mairie"  # not replaced yet
            # a failover now would undo the return under way: refused
            meanwhile = cli(fleet_root, "failover", HOME, VM, "--to", PEER)
            assert meanwhile.returncode == 2 and "is on its way home" in meanwhile.stderr
            # as if the journal came from a kloudctl that did not keep the home's NICs: the
            # failback reads them again from the first archive, still on the peer
            assert kept.pop("home_nics") == {"net0": HOME_NIC}
            journal.write_text(json.dumps(kept))

            # ...and run again: it reuses that archive and finishes
            back = cli(fleet_root, "failback", HOME, VM, "--json")
            assert back.returncode == 0, back.stderr
            moved = json.loads(back.stdout)
            assert moved["archive"] == kept["return"]["archive"]
            assert not any("backed up on" in step for step in moved["steps"])
            came_home = home_sim.storage_folder("pve1", "local") / "dump" / moved["archive"]
            assert sha256(came_home) == moved["sha256"]
            now_home = guest_config(home, HOME_VMID)
            assert now_home["description"] == "écrit pendant la panne"
            # brieux's own NIC again, as before the failover; the peer's extra NIC gone
            assert now_home["net0"] == HOME_NIC and "net1" not in now_home
            assert "VMID 1000: net1 (added on the peer) removed" in moved["steps"]
            assert now_home["status"] == "running" and now_home["name"] == VM
            assert peer.find_guest(GUEST_FIRST) is None  # the peer's copy is gone
            assert list(dump.glob("vzdump-*")) == []
            # the data written meanwhile is also kept in brieux's append-only replica
            snaps = r.snapshot_list(
                restic.run(layout.peer_repo(HOME, PEER), [*r.snapshots_args(), "--no-lock"])
            )
            assert any(moved["snapshot"] == s["id"] and "failback" in s["tags"] for s in snaps)

            # a second failback finds nothing to bring back
            twice = cli(fleet_root, "failback", HOME, VM)
            assert twice.returncode == 2 and "is not failed over" in twice.stderr


def test_refused_while_the_home_runs_the_vm_then_a_planned_failover(
    fleet_root: Path, tmp_path: Path
) -> None:
    fleet = load_fleet(fleet_root)
    layout = Layout(fleet_root / ".state" / "replication")
    with (
        loopback(layout, fleet, [PEER]),
        cabinet_sim(fleet_root, PEER, tmp_path / "sim-mortree", "127.0.0.40"),
        cabinet_sim(fleet_root, HOME, tmp_path / "sim-brieux", "127.0.0.30"),
    ):
        home = client(fleet, HOME)
        home.post("nodes/pve1/qemu/9000/clone", newid=HOME_VMID, name=VM, full=1)
        home.post(f"nodes/pve1/qemu/{HOME_VMID}/status/start")
        operations = Failover(fleet, layout, fleet_root / ".state" / "federation")
        # nothing copied yet (no replica on the peer): no peer can take it, the peer's
        # reason said
        with pytest.raises(
            FailoverRefused,
            match=f"no peer of 'brieux' can take VM '{VM}': '{PEER}': restic snapshots failed",
        ):
            operations.choose_peer(HOME, VM)
        operations.backup(HOME)
        assert operations.choose_peer(HOME, VM)[0] == PEER
        with pytest.raises(FailoverRefused, match="runs on cabinet 'brieux', which answers"):
            operations.failover(HOME, VM, PEER)
        assert client(fleet, PEER).find_guest(GUEST_FIRST) is None
        assert not (layout.cabinet_dir(HOME) / "failover").exists()
        # a member that does not hold the replica is refused too (a registry where
        # saint-aubin is an active member)
        members3 = fleet_root / ".state" / "federation-3"
        members3.mkdir()
        RegistryStore(members3).accept(Federation().chain(upto=3), "(test)")
        with pytest.raises(
            FailoverRefused, match="the replica of 'brieux' is not on 'saint-aubin'"
        ):
            Failover(fleet, layout, members3).failover(HOME, VM, OUTSIDER)

        # stopped at home (a planned move)
        home.post(f"nodes/pve1/qemu/{HOME_VMID}/status/stop")
        # a peer whose lent quota cannot hold the VM's 2 vCPUs is refused
        peer_file = fleet_root / "cabinets" / f"{PEER}.yaml"
        declared = peer_file.read_text()
        peer_file.write_text(declared.replace("quota: {vcpu: 4,", "quota: {vcpu: 1,"))
        small = Failover(load_fleet(fleet_root), layout, fleet_root / ".state" / "federation")
        with pytest.raises(
            FailoverRefused, match=r"quota lent to guests is too small: vcpu 0 used \+ 2 > 1"
        ):
            small.failover(HOME, VM, PEER)
        # a guests' bridge the peer's node lacks is refused before anything changes
        peer_file.write_text(
            declared.replace("bridge: vmbr0, vlan: 3900", "bridge: vmbr7, vlan: 3900")
        )
        elsewhere = Failover(load_fleet(fleet_root), layout, fleet_root / ".state" / "federation")
        with pytest.raises(
            FailoverRefused, match="node pve1 has no bridge 'vmbr7' for other communes' guests"
        ):
            elsewhere.failover(HOME, VM, PEER)
        peer_file.write_text(declared)
        assert client(fleet, PEER).find_guest(GUEST_FIRST) is None
        assert not (layout.cabinet_dir(HOME) / "failover").exists()

        # one uninterrupted failover, timed
        done = operations.failover(HOME, VM, PEER)
        assert done["home_cabinet"] == "stopped" and not done["resumed"]
        assert done["steps"][0].endswith("(sha256 checked)") and "restored from" in done["steps"][0]
        assert done["steps"][1:] == [
            f"VMID {GUEST_FIRST} restored on {PEER}/pve1 in pool 'federation-guests', every"
            " NIC on bridge vmbr0, VLAN 3900, firewall on (model and MAC address kept, never"
            " the home's VLAN)",
            f"VMID {GUEST_FIRST} started",
        ]
        assert done["network"] == {"bridge": "vmbr0", "vlan": 3900}
        assert 0 < done["recovery_time_seconds"] < 600
        guest = guest_config(client(fleet, PEER), GUEST_FIRST)
        assert guest["status"] == "running"
        at_home = guest_config(home, HOME_VMID)["net0"]
        model_mac = at_home.split(",")[0]  # the clone's NIC: vmbr0, untagged
        assert guest["net0"] == f"{model_mac},bridge=vmbr0,firewall=1,tag=3900"

        # and back: the home's NIC from the journal, as it was
        back = operations.failback(HOME, VM)
        assert f"VMID {HOME_VMID} restored at 'brieux' over the old guest, its NICs as before" in (
            " ".join(back["steps"])
        )
        assert guest_config(home, HOME_VMID)["net0"] == at_home


def test_validation_of_failover_and_guests_names_file_line_field(fleet_root: Path) -> None:
    # failover needs a federation to fail over to; the guests' VMIDs are no tenant's
    brieux = fleet_root / "cabinets" / "brieux.yaml"
    text = brieux.read_text()
    brieux.write_text(
        text[: text.index("federation:\n")] + text[text.index("# What the council") :]
    )
    mortree = fleet_root / "cabinets" / f"{PEER}.yaml"
    mortree.write_text(
        mortree.read_text().replace("{first: 800000, last: 800099}", "{first: 1000, last: 1099}")
    )
    result = run_kloudctl("validate", cwd=fleet_root)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    line = next(i for i, t in enumerate(brieux.read_text().splitlines(), 1) if "brieux-web" in t)
    assert f"cabinets/brieux.yaml:{line}:" in out
    assert (
        "tenants[0].vms[0].failover: a VM fails over from its replica to a federation peer:" in out
    )
    assert "the cabinet must declare federation:" in out
    assert (
        "federation.guests.vmids: VMID range 1000-1099 for other communes' guests overlaps" in out
    )
