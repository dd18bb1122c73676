"""Failover of a council VM between two test cabinets reached over SSH: the production path.

Real parts: two Debian hosts (podman, systemd, SSH) where `kloudctl replication deploy`
installs kloudctl, its replication agent, restic and rest-server (append-only, TLS), each
replicating to the other; each cabinet's Proxmox API is a simulator on the controller
(`kloudctl sim up`), whose `local` storage folder is bind-mounted into the cabinet at the
storage's path (/var/lib/vz, declared in the host's /etc/pve/storage.cfg), so the agent on
the host writes where the API reads, as on a PVE host. The controller drives the API; the
archives move on the hosts, through the agents over SSH (`archive-backup`,
`archive-stage`). The signed registry where both are members is the real one; the controller
keeps it apart from the fleet's default federation folder (the federation commands are given
`--state-dir`), because these two cabinets run no WireGuard mesh: replication between them
stays on their management addresses (with the registry in the default folder, deploy would
point each at its peer's mesh address, as for members that run the mesh).
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import urllib3

from kloudctl.failover.ops import failover_vm
from kloudctl.federation.registry import RegistryStore
from kloudctl.model import load_fleet
from kloudctl.replication.deploy import deploy
from kloudctl.replication.layout import Layout
from kloudctl.testbed import cabinets, image
from kloudctl.testbed.fleets import make_fleet
from kloudctl.testbed.podman import podman_problem
from tests.conftest import REPO, run_kloudctl
from tests.federation.conftest import Federation
from tests.federation.test_failover import GUESTS, cabinet_sim, cli, client, guest_config

pytestmark = [
    pytest.mark.podman,
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning"),
]
urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

HOME, PEER = "brieux", "mortree"  # the names of the registry fixture's first two members
VM = "brieux-web"
GUEST_FIRST = 800000
STORAGE_PATH = "/var/lib/vz"
STORAGE_CFG = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_federated_fleet(root: Path) -> Path:
    """brieux and mortree replicating to each other (the testbed's ring of two); brieux's
    council website fails over; mortree lends a guest quota."""
    make_fleet(root, [HOME, PEER])
    for item in ("ansible.cfg", "inventory", "playbooks", "roles"):  # what deploy runs
        (root / item).symlink_to(REPO / item)
    home = root / "cabinets" / f"{HOME}.yaml"
    text = home.read_text()
    # (the testbed's fleet renames the template's mortree-web along with the cabinet)
    web = "{name: brieux-web, template: debian-12-cloud, cores: 2, memory: 2GiB, disk: 32GiB, load: 0.1}"
    assert web in text
    home.write_text(text.replace(web, web[:-1] + ", failover: true}"))
    peer = root / "cabinets" / f"{PEER}.yaml"
    peer.write_text(peer.read_text().rstrip("\n") + "\n" + GUESTS)
    registry_folder(root).mkdir(parents=True)
    RegistryStore(registry_folder(root)).accept(Federation().chain(upto=2), "(test)")
    return root


def registry_folder(root: Path) -> Path:
    """The controller's copy of the registry, outside the default `.state/federation`."""
    return root / ".state" / "registry-without-mesh"


def federation_cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kloudctl federation ARGS` with the registry this test keeps."""
    return cli(root, *args, "--state-dir", str(registry_folder(root)))


def test_failover_over_ssh_to_the_peer_and_back(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    name = image.ensure_image()
    base = tmp_path_factory.mktemp("failover-cabinets")
    root = make_federated_fleet(base / "fleet")
    layout = Layout(root / ".state" / "replication")
    sims = {HOME: base / "sim-brieux", PEER: base / "sim-mortree"}
    addresses = {HOME: "127.0.0.30", PEER: "127.0.0.40"}
    # where each simulator keeps its `local` storage (<state>/<cabinet>/storage/<node>/local)
    folders = {c: sims[c] / c / "storage" / "pve1" / "local" for c in sims}
    for folder in folders.values():
        (folder / "dump").mkdir(parents=True)
    mounts = {c: ["-v", f"{folders[c]}:{STORAGE_PATH}"] for c in folders}
    bed_dir = base / "testbed"
    with (
        cabinets.running(
            [HOME, PEER], prefix="kloudctl-fo-e2e", state_dir=bed_dir, image=name,
            extra_args_of=mounts,
        ) as bed,
        cabinet_sim(root, PEER, sims[PEER], addresses[PEER], 0.3) as peer_sim,
    ):  # fmt: skip
        assert peer_sim.storage_folder("pve1", "local") == folders[PEER]
        for cabinet in (HOME, PEER):
            bed.ssh(
                cabinet,
                "sh",
                "-c",
                f"mkdir -p /etc/pve && printf '{STORAGE_CFG}' > /etc/pve/storage.cfg",
            )
        started = time.monotonic()
        deploy(
            root, layout, [HOME, PEER], testbed_state=bed_dir / "testbed.json"
        ).raise_for_status()
        deployed = time.monotonic() - started
        assert layout.endpoint(HOME).ssh is not None and layout.endpoint(PEER).ssh is not None
        fleet = load_fleet(root)
        home_vmid = failover_vm(fleet, HOME, VM).vmid

        # --- brieux runs: its website is backed up over SSH into its replica on mortree
        with cabinet_sim(root, HOME, sims[HOME], addresses[HOME]) as home_sim:
            assert home_sim.storage_folder("pve1", "local") == folders[HOME]
            home = client(fleet, HOME)
            home.post("nodes/pve1/qemu/9000/clone", newid=home_vmid, name=VM, full=1)
            home.put(f"nodes/pve1/qemu/{home_vmid}/config", description="mairie")
            home.post(f"nodes/pve1/qemu/{home_vmid}/status/start")
            done = federation_cli(root, "backup", HOME, "--json")
            assert done.returncode == 0, done.stderr
            [backed] = json.loads(done.stdout)
            # the archive the API made, as the host's agent read it
            in_host = bed.ssh(HOME, "sha256sum", f"{STORAGE_PATH}/dump/{backed['archive']}")
            assert in_host.stdout.split()[0] == backed["sha256"]
            assert sha256(folders[HOME] / "dump" / backed["archive"]) == backed["sha256"]
            assert "copied" in backed["copies"][PEER], backed
            home.post(f"nodes/pve1/qemu/{home_vmid}/status/stop")  # a planned move...
        # --- ...and brieux's API is gone: nothing answers at its address

        peer = client(fleet, PEER)
        plan = federation_cli(root, "failover", HOME, VM, "--to", PEER, "--dry-run")
        assert plan.returncode == 0 and "plan (nothing changed)" in plan.stdout, plan.stderr
        assert list((folders[PEER] / "dump").iterdir()) == []

        # the failover, killed once the peer restores the guest (its archive staged over
        # SSH already; the peer's tasks last 0.3 s)...
        argv = [sys.executable, "-m", "kloudctl", "--fleet", str(root), "federation"]
        proc = subprocess.Popen(
            [*argv, "failover", HOME, VM, "--to", PEER, "--state-dir", str(registry_folder(root))],
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 300
        while peer.find_guest(GUEST_FIRST) is None and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        journal = layout.cabinet_dir(HOME) / "failover" / f"{VM}.json"
        assert json.loads(journal.read_text())["state"] == "restoring"
        # ...and run again: the journal makes it converge
        moved = federation_cli(root, "failover", HOME, VM, "--to", PEER)
        assert moved.returncode == 0, moved.stderr
        assert f"VMID {GUEST_FIRST} already restored" in moved.stdout, moved.stdout
        assert "which resumed an interrupted one" in moved.stdout
        assert "recovery point: " in moved.stdout and "recovery time: " in moved.stdout
        print(moved.stdout)  # RPO and RTO of this run, in the test's log
        # restored on mortree's host by its agent, from the copy it hosts: byte-identical
        staged = bed.ssh(PEER, "sha256sum", f"{STORAGE_PATH}/dump/{backed['archive']}")
        assert staged.stdout.split()[0] == backed["sha256"]
        assert sha256(folders[PEER] / "dump" / backed["archive"]) == backed["sha256"]
        leftovers = bed.ssh(PEER, "sh", "-c", f"ls -A {STORAGE_PATH} | grep -v '^dump$' || true")
        assert leftovers.stdout.strip() == ""  # no staging folder left behind
        running = guest_config(peer, GUEST_FIRST)
        assert running["status"] == "running" and running["name"] == VM
        assert running["description"] == "mairie"

        again = federation_cli(root, "failover", HOME, VM, "--to", PEER, "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["steps"][0].endswith("already in place (sha256 checked)")

        # --- meanwhile the guest's data changes on mortree; then brieux comes back
        peer.put(f"nodes/pve1/qemu/{GUEST_FIRST}/config", description="écrit pendant la panne")
        with cabinet_sim(root, HOME, sims[HOME], addresses[HOME]):
            home = client(fleet, HOME)
            back = federation_cli(root, "failback", HOME, VM, "--json")
            assert back.returncode == 0, back.stderr
            returned = json.loads(back.stdout)
            print(back.stdout)
            came_home = bed.ssh(HOME, "sha256sum", f"{STORAGE_PATH}/dump/{returned['archive']}")
            assert came_home.stdout.split()[0] == returned["sha256"]
            now_home = guest_config(home, home_vmid)
            assert now_home["description"] == "écrit pendant la panne"
            assert now_home["status"] == "running" and now_home["name"] == VM
            assert peer.find_guest(GUEST_FIRST) is None
            # the data written meanwhile is in brieux's append-only copy on mortree, read
            # there with the owner's key; the agent gave the files back to rest-server
            owner = (
                "RESTIC_PASSWORD_FILE=/etc/kloudctl-rest-server/owner-keys/brieux.password"
                " restic --json -r /var/lib/kloudctl-rest-server/brieux "
            )
            snaps = json.loads(bed.ssh(PEER, "sh", "-c", owner + "snapshots --no-lock").stdout)
            assert any(
                s["id"] == returned["snapshot"] and "failback" in s["tags"] for s in snaps
            ), snaps
            foreign = bed.ssh(
                PEER, "sh", "-c", "find /var/lib/kloudctl-rest-server/brieux ! -user rest-server"
            )
            assert foreign.stdout.strip() == ""
            # and brieux's next replication run still copies to mortree
            run = run_kloudctl("--fleet", str(root), "replication", "run", HOME, "--json")
            assert run.returncode == 0, run.stdout + run.stderr
            steps = {s["step"]: s["ok"] for s in json.loads(run.stdout)[0]["steps"]}
            assert steps["copy:mortree"], steps
        print(f"deploy of the pair: {deployed:.0f} s")
