"""The federation's mesh end to end on three test cabinets (podman, systemd, SSH), with real
WireGuard: wireguard-go installed by the federation_mesh role (the containers have
/dev/net/tun and NET_ADMIN, no kernel module), `wg` and nftables from Debian.

playbooks/federation.yml puts brieux (coordinator), mortree and saint-aubin on the mesh (a
second run changes nothing); the federation then forms with kloudctl on the cabinets
themselves, over SSH, as their operators would: `init` on brieux (its endpoint starts by
itself), `invite`, `join` on the newcomer showing the fingerprint, `admit` with it. From
there the cabinets' systemd timers (every 5 s here) fetch, verify and apply the registry:
every pair handshakes and reaches the other's replication endpoint port over the mesh, a
port outside the federation's services is refused; after `revoke`, the others drop the
revoked cabinet's key within one sync period, its traffic stops, and the two others still
reach each other; brieux's `federation status` reports the propagation it measured.

Replication goes over the mesh, for real: once the federation has formed, the controller
holds a copy of the registry and `kloudctl replication deploy` puts the real rest-server
(the replication endpoint, port 8000, its certificate naming the mesh address) and restic
on every cabinet, each replicating to both others at their mesh addresses. The controller's
`replication run` (over SSH, restic on the cabinet) copies every cabinet to both peers;
after the revocation, saint-aubin's copies fail (its peers are unreachable over the mesh)
and so do the others' copies to it, while brieux and mortree copy a new snapshot to each
other.

On the cabinets too: a reused, an expired and a forged invite are refused with their reason
and leave nothing on the would-be newcomer; a tampered registry entry and a rolled-back
registry on a member are detected and the entry or version named (each also tested in
detail on loopback: test_end_to_end.py, test_invites.py, test_registry.py).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from kloudctl import ssh
from kloudctl.federation import canonical
from kloudctl.federation.deploy import deploy as federation_deploy
from kloudctl.model import load_fleet
from kloudctl.replication.deploy import deploy as replication_deploy
from kloudctl.replication.layout import Layout
from kloudctl.status.federation import mesh_reader
from kloudctl.testbed import cabinets, image
from kloudctl.testbed.fleets import make_fleet_root
from kloudctl.testbed.podman import podman_problem

pytestmark = [pytest.mark.podman, pytest.mark.slow]

NAMES = ["brieux", "mortree", "saint-aubin"]
MESH = {"brieux": "10.250.0.1", "mortree": "10.250.0.2", "saint-aubin": "10.250.0.3"}
STATE = "/var/lib/kloudctl/federation"
FLEET = "/etc/kloudctl/fleet"
PERIOD = 5  # federation_mesh__sync_period for this test
REPLICATION_PORT, OUTSIDE_PORT = 8000, 9999
#: Who copies to whom: every pair (the example files' peers, rewritten), so that every
#: cabinet runs a replication endpoint and the two that stay copy to each other.
PEERS = {c: [p for p in NAMES if p != c] for c in NAMES}
#: A small daily policy: the cabinets' own timers never run during the test.
POLICY = """\
name: meshtest
description: The mesh test's backups (a few small files).
interval: 1d
rpo: 2d
retention:
  local:
    keep_last: 20
  peer:
    keep_within: 7d
include:
  paths:
    - /srv/data
"""
#: The owner's view of a copy it hosts (restic with its own key, on the peer).
OWNER_SNAPSHOTS = (
    "RESTIC_PASSWORD_FILE=/etc/kloudctl-rest-server/owner-keys/{source}.password"
    " restic --json --no-lock -r /var/lib/kloudctl-rest-server/{source} snapshots"
)
#: A TCP probe run on a cabinet: prints "open", "refused" or "timeout".
PROBE = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(float(sys.argv[3]))\n"
    "try:\n s.connect((sys.argv[1], int(sys.argv[2]))); print('open')\n"
    "except ConnectionRefusedError: print('refused')\n"
    "except OSError: print('timeout')\n"
)
#: A stand-in for a service outside the federation's (the replication endpoint is the real
#: rest-server, deployed once the federation has formed).
LISTEN = (
    "import socket,time\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {OUTSIDE_PORT})); s.listen(16)\n"
    "time.sleep(36000)\n"
)


@dataclass
class Mesh:
    bed: cabinets.Testbed
    changed: list[dict[str, int]]
    root: Path
    #: The controller's replication state (secrets, certificates, endpoints.json).
    replication: Layout

    def kloudctl(self, cabinet: str, *args: str) -> tuple[int, str, str]:
        done = self.bed.ssh(
            cabinet, "kloudctl", "--fleet", FLEET, "federation", *args, "--state-dir", STATE,
            check=False,
        )  # fmt: skip
        return done.returncode, done.stdout, done.stderr

    def probe(self, cabinet: str, address: str, port: int, timeout: float = 3.0) -> str:
        done = self.bed.ssh(cabinet, "python3", "-c", PROBE, address, str(port), str(timeout))
        return done.stdout.strip()

    def peers(self, cabinet: str) -> set[str]:
        return set(self.bed.ssh(cabinet, "wg", "show", "kfed0", "peers").stdout.split())

    def last_sync_run(self, cabinet: str) -> float:
        """Seconds the cabinet's last sync ran, from start to exit, as systemd recorded."""
        shown = self.bed.ssh(
            cabinet, "systemctl", "show", "kloudctl-federation-sync.service",
            "-p", "ExecMainStartTimestampMonotonic", "-p", "ExecMainExitTimestampMonotonic",
        ).stdout  # fmt: skip
        values = dict(line.split("=", 1) for line in shown.split())
        start = int(values["ExecMainStartTimestampMonotonic"])
        end = int(values["ExecMainExitTimestampMonotonic"])
        return max(end - start, 0) / 1e6

    def replicate(self, cabinet: str) -> tuple[int, dict[str, dict], str]:  # type: ignore[type-arg]
        """`kloudctl replication run CABINET` on the controller (a separate process, as an
        engineer runs it): the cabinet runs restic itself, over SSH. Its exit code, its
        steps by name and its stderr."""
        done = subprocess.run(
            [sys.executable, "-m", "kloudctl", "--fleet", str(self.root), "replication", "run",
             cabinet, "--no-prune", "--no-check", "--json",
             "--state-dir", str(self.replication.state)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        try:
            [report] = json.loads(done.stdout)
        except ValueError:
            raise AssertionError(done.stdout + done.stderr) from None
        return done.returncode, {s["step"]: s for s in report["steps"]}, done.stderr

    def replicate_each(self, cabinets: list[str]) -> dict[str, tuple[int, dict, str]]:  # type: ignore[type-arg]
        """`replicate` of each cabinet, all at once (each runs on its own cabinet)."""
        with ThreadPoolExecutor(len(cabinets)) as pool:
            return dict(zip(cabinets, pool.map(self.replicate, cabinets), strict=True))

    def hosted_snapshots(self, owner: str, source: str) -> int:
        """How many snapshots of `source`'s copy `owner` holds, read there with its key."""
        out = self.bed.ssh(owner, "sh", "-c", OWNER_SNAPSHOTS.format(source=source)).stdout
        return len(json.loads(out))

    def address(self, cabinet: str) -> str:
        return self.bed.hosts[cabinet].address

    def fleet_status_mesh(self, tmp: Path) -> dict[str, dict]:  # type: ignore[type-arg]
        """What `kloudctl status` says of each cabinet's mesh: the coordinator's registry
        held on the controller, each cabinet's `wg show kfed0 dump` read over SSH."""
        tmp.mkdir(exist_ok=True)
        registry = self.bed.ssh("brieux", "cat", f"{STATE}/registry.json").stdout
        (tmp / "registry.json").write_text(registry)
        read = mesh_reader(tmp)
        assert read is not None
        fleet = load_fleet(self.root)
        options = tuple(self.bed.ssh_options())
        return {
            c: read(fleet.cabinet(c), ssh.SshTarget(self.address(c), "root", options=options), 20)
            for c in NAMES
        }


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    problem = podman_problem()
    if problem:
        pytest.skip(problem)
    name = image.ensure_image(("wireguard-tools", "nftables"))
    base = tmp_path_factory.mktemp("fedmesh")
    root = make_fleet_root(base / "fleet")
    _replicate_every_pair(root)
    bed_dir = base / "testbed"
    extra = ["--device", "/dev/net/tun", "--cap-add", "NET_ADMIN"]
    # brieux declares a failover VM: deploy gives it its own Proxmox API token for its backup
    # timer. The containers run no Proxmox, so the token is a stand-in made here, given
    # through a targets file (KLOUDCTL_PROXMOX_TARGETS) as for a simulated cabinet.
    targets = base / "proxmox-targets.json"
    targets.write_text(
        json.dumps(
            {
                "brieux": {
                    "endpoint": "https://127.0.0.1:8006",
                    "fingerprint": "AA:" * 31 + "AA",
                    "token_id": "kloudctl@pve!automation",
                    "secret": secrets.token_hex(18),
                }
            }
        )
    )
    targets.chmod(0o600)
    with cabinets.running(
        NAMES, prefix="kloudctl-fedmesh", state_dir=bed_dir, image=name, extra_args=extra
    ) as bed:
        changed = []
        for _ in range(2):  # the second run must change nothing
            with pytest.MonkeyPatch.context() as env:  # for the deploy alone
                env.setenv("KLOUDCTL_PROXMOX_TARGETS", str(targets))
                result = federation_deploy(  # what `kloudctl federation deploy` runs
                    root,
                    NAMES,
                    bundles=base / "bundles",
                    testbed_state=bed_dir / "testbed.json",
                    extravars={
                        "federation_mesh__sync_period": PERIOD,
                        # wireguard-go, as on cabinets without the module (auto would pick the
                        # kernel's where it loads)
                        "federation_mesh__implementation": "userspace",
                    },
                )
            result.raise_for_status()
            changed.append({h: r.changed for h, r in result.recaps.items()})
        for i, cabinet in enumerate(NAMES):
            bed.ssh(cabinet, "systemd-run", "--unit", "kfed-listen", "python3", "-c", LISTEN)
            _make_files(bed, cabinet, i)
        yield Mesh(bed, changed, root, Layout(base / "replication"))


def _replicate_every_pair(root: Path) -> None:
    """The example fleet, each cabinet replicating to both others under a small policy."""
    (root / "backups" / "meshtest.yaml").write_text(POLICY)
    for name, peers in PEERS.items():
        path = root / "cabinets" / f"{name}.yaml"
        text = re.sub(r"(?m)^  peers: \[.*\]$", f"  peers: [{', '.join(peers)}]", path.read_text())
        text = re.sub(r"(?m)^  rpo: .*\n", "", text).replace("policy: standard", "policy: meshtest")
        path.write_text(text)
    fleet = load_fleet(root)  # the rewritten files are valid
    assert {c: fleet.cabinet(c).replication.declared_peers for c in NAMES} == PEERS  # type: ignore[union-attr]


def _make_files(bed: cabinets.Testbed, cabinet: str, seed: int) -> None:
    bed.ssh(
        cabinet, "sh", "-c",
        f"mkdir -p /srv/data && head -c $((30000 + {seed})) /dev/urandom > /srv/data/a.bin",
    )  # fmt: skip


def _deploy_replication(mesh: Mesh) -> None:
    """The controller takes a copy of the registry (it verifies it on load), then deploys
    replication: with both cabinets active members, each source's peers are at their mesh
    addresses and each rest-server's certificate names its own."""
    for tool in ("restic", "rest-server"):  # the roles copy the controller's
        assert shutil.which(tool), f"{tool} is not on PATH (`make tools` builds it)"
    held = mesh.root / ".state" / "federation"
    held.mkdir(parents=True, exist_ok=True)
    registry = mesh.bed.ssh("brieux", "cat", f"{STATE}/registry.json").stdout
    (held / "registry.json").write_text(registry)
    testbed = Path(mesh.bed.state_dir) / "testbed.json"
    replication_deploy(mesh.root, mesh.replication, NAMES, testbed_state=testbed).raise_for_status()
    for cabinet in NAMES:
        endpoints = json.loads(
            mesh.bed.ssh(cabinet, "cat", "/var/lib/kloudctl/replication/endpoints.json").stdout
        )["cabinets"]
        for peer in PEERS[cabinet]:
            assert endpoints[peer]["server"]["url"] == f"https://{MESH[peer]}:{REPLICATION_PORT}"
        names = mesh.bed.ssh(
            cabinet, "openssl", "x509", "-noout", "-ext", "subjectAltName",
            "-in", "/etc/kloudctl-rest-server/cert.pem",
        ).stdout  # fmt: skip
        assert f"IP Address:{MESH[cabinet]}" in names, names
        assert f"IP Address:{mesh.address(cabinet)}" in names, names  # the controller's way


#: The invites of the refusal checks: {"used": mortree's, once redeemed; "short": one that
#: expires in a minute, issued when the federation forms and tried at the end}.
INVITES: dict[str, str] = {}


def _form(mesh: Mesh) -> None:
    brieux = mesh.address("brieux")
    code, out, err = mesh.kloudctl(
        "brieux", "init", "bocage", "--endpoint", f"{brieux}:8449",
        "--mesh-endpoint", f"{brieux}:51820",
    )  # fmt: skip
    assert code == 0, err
    deadline = time.monotonic() + 60  # the path unit starts the endpoint by itself
    while mesh.probe("mortree", brieux, 8449, 1) != "open":
        assert time.monotonic() < deadline, "the coordinator's endpoint never started"
        time.sleep(0.5)
    code, short, err = mesh.kloudctl("brieux", "invite", "saint-aubin", "--expires", "1m")
    assert code == 0, err
    INVITES["short"] = short.strip()
    for commune in ("mortree", "saint-aubin"):
        code, invite, err = mesh.kloudctl("brieux", "invite", commune, "--expires", "10m")
        assert code == 0, err
        if commune == "saint-aubin":  # mortree's invite again: single-use
            code, out, err = mesh.kloudctl(
                commune, "join", INVITES["used"], "--cabinet", commune,
                "--endpoint", f"{mesh.address(commune)}:51820",
            )  # fmt: skip
            assert code == 1 and "already used (invites are single-use)" in err, (out, err)
            assert mesh.bed.ssh(commune, "ls", "-A", STATE).stdout.split() == [], "left state"
        INVITES.setdefault("used", invite.strip())
        code, out, err = mesh.kloudctl(
            commune, "join", invite.strip(), "--cabinet", commune,
            "--endpoint", f"{mesh.address(commune)}:51820",
        )  # fmt: skip
        assert code == 0, err
        found = re.search(r"fingerprint: ([A-Z2-7]{4}-[A-Z2-7]{4})", out)
        assert found, out
        code, out, err = mesh.kloudctl("brieux", "admit", commune, found.group(1))
        assert code == 0, err


def test_the_role_converges_and_the_mesh_reaches_only_the_federation_services(
    mesh: Mesh, tmp_path: Path
) -> None:
    assert all(n > 0 for n in mesh.changed[0].values()), mesh.changed
    assert mesh.changed[1] == dict.fromkeys(NAMES, 0), "the second run changed something"
    _form(mesh)
    _deploy_replication(mesh)  # the real rest-server on 8000 (the mesh converges meanwhile)
    # The timers apply the registry: every pair handshakes and reaches the replication port.
    deadline = time.monotonic() + 6 * PERIOD
    pairs = [(a, b) for a in NAMES for b in NAMES if a != b]
    waiting = list(pairs)
    while waiting and time.monotonic() < deadline:
        waiting = [
            (a, b) for a, b in waiting if mesh.probe(a, MESH[b], REPLICATION_PORT, 2) != "open"
        ]
    assert not waiting, f"no mesh between {waiting}"
    for cabinet in NAMES:
        handshakes = mesh.bed.ssh(cabinet, "wg", "show", "kfed0", "latest-handshakes").stdout
        stamps = [int(line.split("\t")[1]) for line in handshakes.splitlines()]
        assert len(stamps) == 2 and all(s > 0 for s in stamps), (cabinet, handshakes)
    # The fleet's status reads each deployed cabinet's handshakes over SSH.
    seen = mesh.fleet_status_mesh(tmp_path / "before")
    for cabinet in NAMES:
        assert seen[cabinet]["state"] == "up", seen
        assert len(seen[cabinet]["handshake_age_s"]) == 2, seen
    # Outside the federation's services: answered on the cabinets' network, refused on the mesh.
    assert mesh.probe("mortree", mesh.address("brieux"), OUTSIDE_PORT) == "open"
    assert mesh.probe("mortree", MESH["brieux"], OUTSIDE_PORT) == "refused"
    assert mesh.probe("saint-aubin", MESH["mortree"], OUTSIDE_PORT) == "refused"


def test_members_replicate_to_each_other_over_the_mesh(mesh: Mesh) -> None:
    for cabinet, (code, steps, err) in mesh.replicate_each(NAMES).items():
        assert code == 0, (steps, err)
        for peer in PEERS[cabinet]:
            assert steps[f"copy:{peer}"]["ok"], steps
    # The copies are on the peers' rest-servers, one private repository per source.
    for cabinet, peers in PEERS.items():
        for peer in peers:
            assert mesh.hosted_snapshots(peer, cabinet) == 1, (cabinet, peer)


def test_a_revoked_cabinet_is_dropped_within_one_sync_period(mesh: Mesh, tmp_path: Path) -> None:
    code, out, err = mesh.kloudctl("brieux", "status", "--json")
    assert code == 0, err
    key = next(
        m["wireguard_key"] for m in json.loads(out)["members"] if m["commune"] == "saint-aubin"
    )
    code, out, err = mesh.kloudctl(
        "brieux", "revoke", "saint-aubin", "--reason", "a quitté la fédération"
    )
    assert code == 0, err
    revoked = time.monotonic()
    dropped: dict[str, float] = {}
    while len(dropped) < 2 and time.monotonic() - revoked < 4 * PERIOD:
        for cabinet in ("brieux", "mortree"):
            if cabinet not in dropped and key not in mesh.peers(cabinet):
                dropped[cabinet] = time.monotonic() - revoked
    assert set(dropped) == {"brieux", "mortree"}, dropped
    # The bound: one period, plus the sync's own run on the cabinet (the run that applied
    # the revocation, as systemd timed it) and this loop's SSH round trips (2 s at most).
    run = max(mesh.last_sync_run(c) for c in ("brieux", "mortree"))
    assert max(dropped.values()) <= PERIOD + run + 2, (dropped, run)
    # The revoked cabinet's handshakes fail: nothing passes either way; the others still talk.
    assert mesh.probe("saint-aubin", MESH["brieux"], REPLICATION_PORT) == "timeout"
    assert mesh.probe("saint-aubin", MESH["mortree"], REPLICATION_PORT) == "timeout"
    assert mesh.probe("brieux", MESH["saint-aubin"], REPLICATION_PORT) != "open"
    assert mesh.probe("mortree", MESH["brieux"], REPLICATION_PORT) == "open"
    assert mesh.probe("brieux", MESH["mortree"], REPLICATION_PORT) == "open"
    # The coordinator measured the propagation from the members' signed sync reports.
    deadline = time.monotonic() + 4 * PERIOD
    while True:
        code, out, err = mesh.kloudctl("brieux", "status", "--interface", "kfed0")
        if "applied by every member" in out or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert code == 0, err
    found = re.search(
        r"revocation of 'saint-aubin' \(version 4\): applied by every member ([0-9.]+) s", out
    )
    assert found, out
    assert float(found.group(1)) <= PERIOD + run + 1  # the entry's time is whole seconds
    seen = mesh.fleet_status_mesh(tmp_path / "after")
    assert seen["saint-aubin"] == {"state": "not set up"}, seen  # revoked: no mesh to read
    assert seen["brieux"]["state"] == "up" and list(seen["brieux"]["handshake_age_s"]) == [
        "mortree"
    ]
    assert seen["mortree"]["state"] == "up" and list(seen["mortree"]["handshake_age_s"]) == [
        "brieux"
    ]
    # Replication: the revoked cabinet's copies to the others stop (their rest-servers no
    # longer answer over the mesh), and so do theirs to it; the two others keep copying.
    ran = mesh.replicate_each(NAMES)
    code, steps, err = ran["saint-aubin"]
    assert code == 1 and "saint-aubin" in err, (steps, err)
    for peer in ("brieux", "mortree"):
        step = steps[f"copy:{peer}"]  # PeerUnreachable, naming the peer's mesh address
        assert not step["ok"], step
        assert step["detail"] == f"{MESH[peer]}:{REPLICATION_PORT}: timed out", step
    for cabinet, peer in (("brieux", "mortree"), ("mortree", "brieux")):
        code, steps, err = ran[cabinet]
        assert code == 1, (steps, err)  # its copy to saint-aubin fails
        assert steps["backup:paths"]["ok"] and steps[f"copy:{peer}"]["ok"], steps
        assert not steps["copy:saint-aubin"]["ok"], steps
        assert mesh.hosted_snapshots(peer, cabinet) == 2, (cabinet, peer)  # the new one
    for peer in ("brieux", "mortree"):  # nothing more arrived from saint-aubin
        assert mesh.hosted_snapshots(peer, "saint-aubin") == 1


def _write(mesh: Mesh, cabinet: str, path: str, text: str) -> None:
    encoded = base64.b64encode(text.encode()).decode()
    mesh.bed.ssh(cabinet, "sh", "-c", f"echo {encoded} | base64 -d > {path}")


def _join_elsewhere(mesh: Mesh, invite: str, folder: str) -> tuple[int, str]:
    """`federation join` on saint-aubin into a fresh state folder (its own holds a member)."""
    done = mesh.bed.ssh(
        "saint-aubin", "kloudctl", "--fleet", FLEET, "federation", "join", invite,
        "--cabinet", "saint-aubin", "--state-dir", folder, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


def test_invites_and_registries_that_must_be_refused_on_the_cabinets(mesh: Mesh) -> None:
    # Expired: issued when the federation formed, for one minute, long gone by now.
    code, out = _join_elsewhere(mesh, INVITES["short"], "/root/newcomer-expired")
    assert code == 1 and "expired at" in out, out
    # Forged: the payload altered (a longer life) without the coordinator's key.
    prefix, payload, signature = INVITES["used"].split(".")
    data = json.loads(canonical.unb64(payload))
    data["expires"] += 86400
    forged = f"{prefix}.{canonical.b64(canonical.encode(data))}.{signature}"
    code, out = _join_elsewhere(mesh, forged, "/root/newcomer-forged")
    assert code == 1 and "forged or altered" in out, out
    for folder in ("/root/newcomer-expired", "/root/newcomer-forged"):  # nothing was written
        assert mesh.bed.ssh("saint-aubin", "test", "-e", folder, check=False).returncode == 1
    # A member's registry rolled back, then tampered with, on disk: its sync timer is
    # stopped meanwhile, so only what is on disk is read.
    held = f"{STATE}/registry.json"
    mesh.bed.ssh("mortree", "systemctl", "stop", "kloudctl-federation-sync.timer")
    try:
        current = mesh.bed.ssh("mortree", "cat", held).stdout
        document = json.loads(current)
        assert document["entries"][-1]["version"] >= 4, document["entries"][-1]
        older = dict(document, entries=document["entries"][:3])
        _write(mesh, "mortree", held, json.dumps(older))
        code, out, err = mesh.kloudctl("mortree", "status")
        assert code == 1 and "is at version 3, older than version" in err, (out, err)
        tampered = json.loads(current)
        tampered["entries"][1]["body"]["member"]["endpoints"] = ["192.0.2.66:51820"]
        _write(mesh, "mortree", held, json.dumps(tampered))
        code, out, err = mesh.kloudctl("mortree", "status")
        assert code == 1, (out, err)
        assert "entry version 2 (admit by 'brieux'): the signature does not verify" in err, err
    finally:
        _write(mesh, "mortree", held, current)
        mesh.bed.ssh("mortree", "systemctl", "start", "kloudctl-federation-sync.timer")
    code, out, err = mesh.kloudctl("mortree", "status")
    assert code == 0, err
