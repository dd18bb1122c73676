"""`kloudctl federation update`: a member publishes its own changes (capacity declared and
measured, its endpoint certificate) as a signed `update` entry the coordinator appends
(`POST /v1/update`). Real HTTPS on 127.0.0.1 (the coordinator's join endpoint in this
process, its certificate pinned by the invite), real ed25519 signatures, real registries;
the measured spare disk comes from the Proxmox VE simulator through the one client."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kloudctl.federation import endpoint, service
from kloudctl.federation.keys import MemberKeys, load_keys
from kloudctl.federation.registry import signed_part
from kloudctl.model import load_fleet
from kloudctl.model.types import format_size
from kloudctl.tenants.simtargets import bootstrap_target
from kloudctl.testbed.simfleet import SimFleet, start_sim_fleet
from tests.federation.conftest import admit
from tests.federation.test_end_to_end import _serve_read_only, free_port
from tests.unit.inprocess import Ran, invoke, tree

REPO = Path(__file__).resolve().parents[2]
GiB = 1024**3


def k(fleet: Path, *args: str) -> Ran:
    return invoke("--fleet", str(fleet), *args)


class Bocage:
    """brieux coordinates (its join endpoint served here), mortree and saint-aubin joined
    through invites and admitted, both synced: registry version 3."""

    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = roots
        self.events: list[str] = []
        self.port = free_port()
        brieux = roots["brieux"]
        assert k(brieux, "federation", "init", "bocage", "--endpoint",
                 f"127.0.0.1:{self.port}").code == 0  # fmt: skip
        folder = self.folder("brieux")
        self.server = endpoint.JoinServer(
            folder, folder / service.TLS_CERT, folder / service.TLS_KEY, "127.0.0.1", self.port,
            on_event=self.events.append,
        ).start()  # fmt: skip
        for name in ("mortree", "saint-aubin"):
            invite = k(brieux, "federation", "invite", name, "--expires", "10m").stdout.strip()
            ran = k(roots[name], "federation", "join", invite, "--cabinet", name)
            found = re.search(r"fingerprint: ([A-Z2-7]{4}-[A-Z2-7]{4})", ran.stdout)
            assert ran.code == 0 and found, ran.output
            assert k(brieux, "federation", "admit", name, found.group(1)).code == 0
        for name in ("mortree", "saint-aubin"):
            assert k(roots[name], "federation", "sync").code == 0

    def folder(self, commune: str) -> Path:
        return self.roots[commune] / ".state/federation"

    def state(self, commune: str) -> service.FederationState:
        return service.FederationState(self.folder(commune))

    def post(self, document: Any) -> tuple[int, Any]:
        pin = self.state("mortree").identity()["coordinator"]["tls_fingerprint"]
        return endpoint.call(f"127.0.0.1:{self.port}", pin, "POST", "/v1/update", document)

    def post_raw(self, payload: bytes) -> tuple[int, Any]:
        connection, deadline = endpoint._pinned("127.0.0.1", self.port, None, "test")
        try:
            connection.request("POST", "/v1/update", body=payload)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            deadline.cancel()
            connection.close()

    def signed(self, author: str, changes: dict[str, Any], keys: MemberKeys) -> dict[str, Any]:
        """An update of `author`'s entry on the coordinator's current head, signed by `keys`."""
        registry = self.state("brieux").store.load()
        entry: dict[str, Any] = {
            "version": registry.version + 1, "prev": registry.head, "kind": "update",
            "author": author, "time": "2026-11-30T14:00:00+00:00",
            "body": {"commune": author, "changes": changes},
        }  # fmt: skip
        entry["signature"] = keys.sign(signed_part(entry))
        return entry


def _fleet_copy(root: Path) -> Path:
    for folder in ("cabinets", "backups"):
        shutil.copytree(REPO / folder, root / folder)
    return root


@pytest.fixture
def bocage(tmp_path: Path) -> Iterator[Bocage]:
    roots = {c: _fleet_copy(tmp_path / c) for c in ("brieux", "mortree", "saint-aubin")}
    federation = Bocage(roots)
    try:
        yield federation
    finally:
        federation.server.stop()


def _shrink_quota(root: Path) -> None:
    """mortree promises 100 GiB less to its council: its declared spare disk grows."""
    path = root / "cabinets/mortree.yaml"
    text = path.read_text()
    assert "quota: {vcpu: 6, ram: 12GiB, disk: 400GiB}" in text
    path.write_text(text.replace("disk: 400GiB}", "disk: 300GiB}", 1))


def test_an_update_is_appended_and_seen_by_members_at_their_sync(bocage: Bocage) -> None:
    mortree, saint_aubin = bocage.roots["mortree"], bocage.roots["saint-aubin"]
    before = bocage.state("brieux").store.load().members["mortree"].capacity
    ran = k(mortree, "federation", "update")
    assert ran.code == 0 and "no change: registry version 3" in ran.stdout, ran.output

    _shrink_quota(mortree)
    ran = k(mortree, "federation", "update", "--json")
    assert ran.code == 0, ran.output
    done = json.loads(ran.stdout)
    assert done["changed"] and done["registry_version"] == 4 and done["attempts"] == 1
    assert list(done["changes"]) == ["capacity"]
    grown = done["changes"]["capacity"]["spare_disk_declared"]
    assert grown == before["spare_disk_declared"] + 100 * GiB
    assert any("update by member 'mortree' (capacity): registry version 4" in e
               for e in bocage.events)  # fmt: skip
    # The member holds the new version at once: a second run has nothing to send.
    ran = k(mortree, "federation", "update")
    assert ran.code == 0 and "no change: registry version 4" in ran.stdout, ran.output
    assert bocage.state("brieux").store.load().version == 4

    # Another member sees it at its next sync, and `status` shows declared beside measured.
    ran = k(saint_aubin, "federation", "sync")
    assert "registry version 4 verified and held (was 3)" in ran.stdout, ran.output
    held = bocage.state("saint-aubin").store.load()
    assert held.members["mortree"].capacity["spare_disk_declared"] == grown
    assert held.entries[-1]["kind"] == "update" and held.entries[-1]["author"] == "mortree"
    text = k(saint_aubin, "federation", "status").flat()
    assert (
        "spare disk (declared / measured)" in text
        and "power headroom (declared / measured)" in text
    )
    assert "/ -" in text


def test_a_stale_head_is_read_again_and_signed_again(bocage: Bocage) -> None:
    """mortree holds version 3; the coordinator admits a fourth member meanwhile (version 4):
    the update signed on version 3 gets 409, mortree reads the head, signs again: version 5."""
    admit(bocage.state("brieux"), "lanvallay", 2 * 1024**4, 200)
    assert bocage.state("mortree").store.load().version == 3
    _shrink_quota(bocage.roots["mortree"])
    ran = k(bocage.roots["mortree"], "federation", "update")
    assert ran.code == 0, ran.output
    assert "update published after 2 attempts (the head moved): registry version 5" in ran.stdout
    registry = bocage.state("brieux").store.load()
    assert [e["kind"] for e in registry.entries] == ["create", "admit", "admit", "admit", "update"]
    assert bocage.state("mortree").store.load().version == 5


@pytest.mark.parametrize(
    "case",
    ["forged", "other_key", "unknown", "mesh_address", "state", "not_json", "not_entry",
     "admit_kind", "stale", "too_big", "negative_disk", "bad_fingerprint", "bad_endpoints",
     "other_commune"],
)  # fmt: skip
def test_refused_updates_change_nothing(bocage: Bocage, case: str) -> None:
    own = load_keys(bocage.folder("mortree"))
    capacity = {"spare_disk_declared": 1, "power_headroom_declared": 1}
    before = tree(bocage.folder("brieux"))
    if case == "forged":
        entry = bocage.signed("mortree", {"capacity": capacity}, own)
        entry["body"]["changes"]["capacity"]["spare_disk_declared"] = 10**15
        status, answer = bocage.post({"entry": entry})
        expected = (403, "the signature is not 'mortree''s")
    elif case == "other_key":
        other = load_keys(bocage.folder("saint-aubin"))
        status, answer = bocage.post({"entry": bocage.signed("mortree", {"capacity": capacity},
                                                             other)})  # fmt: skip
        expected = (403, "the signature is not 'mortree''s")
    elif case == "unknown":
        entry = bocage.signed("lanvallay", {"capacity": capacity}, MemberKeys.generate())
        status, answer = bocage.post({"entry": entry})
        expected = (403, "'lanvallay' is not a member of the federation")
    elif case in ("mesh_address", "state"):
        entry = bocage.signed("mortree", {case: "10.250.0.9"}, own)
        status, answer = bocage.post({"entry": entry})
        expected = (400, "a member may change only capacity, endpoints, tls_fingerprint")
    elif case == "negative_disk":
        entry = bocage.signed("mortree", {"capacity": {"spare_disk_measured": -1}}, own)
        status, answer = bocage.post({"entry": entry})
        expected = (400, "capacity.spare_disk_measured: expected a whole number, 0 or more")
    elif case == "bad_fingerprint":
        entry = bocage.signed("mortree", {"tls_fingerprint": "AB:CD"}, own)
        status, answer = bocage.post({"entry": entry})
        expected = (400, "tls_fingerprint: expected a SHA-256 fingerprint")
    elif case == "bad_endpoints":
        entry = bocage.signed("mortree", {"endpoints": "192.0.2.1:51820"}, own)
        status, answer = bocage.post({"entry": entry})
        expected = (400, "endpoints: expected a list of host:port")
    elif case == "other_commune":
        # mortree's own key, changing saint-aubin's entry.
        entry = bocage.signed("mortree", {"capacity": capacity}, own)
        entry["body"]["commune"] = "saint-aubin"
        entry["signature"] = own.sign(signed_part(entry))
        status, answer = bocage.post({"entry": entry})
        expected = (403, "'mortree' may change its own registry entry only")
    elif case == "not_json":
        status, answer = bocage.post_raw(b"{not json")
        answer = answer["error"]
        expected = (400, "update: not JSON")
    elif case == "not_entry":
        status, answer = bocage.post({"entry": {"kind": "update"}})
        expected = (400, "the entry must have exactly the fields author, body, kind")
    elif case == "admit_kind":
        entry = bocage.signed("mortree", {"capacity": capacity}, own)
        entry["kind"] = "admit"
        status, answer = bocage.post({"entry": entry})
        expected = (400, "kind 'admit' is not taken here (only update)")
    elif case == "stale":
        entry = bocage.signed("mortree", {"capacity": capacity}, own)
        entry["version"] -= 1
        status, answer = bocage.post({"entry": entry})
        expected = (409, "the coordinator's head is version 3")
    else:
        status, answer = bocage.post_raw(b"x" * (endpoint.MAX_BODY + 1))
        answer = answer["error"]
        expected = (400, f"a request is 1 to {endpoint.MAX_BODY} bytes")
    assert status == expected[0] and expected[1] in answer, (status, answer)
    assert tree(bocage.folder("brieux")) == before


def test_a_revoked_member_is_refused(bocage: Bocage) -> None:
    """saint-aubin, revoked: its update signed on the coordinator's head is refused (403);
    through the CLI (it still held version 3, where it was active), the 409 makes it read
    the head again, where it is revoked: nothing is sent. The registry stays as it was."""
    assert k(bocage.roots["brieux"], "federation", "revoke", "saint-aubin").code == 0
    before = tree(bocage.folder("brieux"))
    keys = load_keys(bocage.folder("saint-aubin"))
    entry = bocage.signed("saint-aubin", {"endpoints": ["192.0.2.1:51820"]}, keys)
    status, answer = bocage.post({"entry": entry})
    assert status == 403 and "member 'saint-aubin' is revoked: refused" in answer, answer
    path = bocage.roots["saint-aubin"] / "cabinets/saint-aubin.yaml"
    path.write_text(path.read_text().replace("disk: 500GiB}", "disk: 400GiB}", 1))
    ran = k(bocage.roots["saint-aubin"], "federation", "update")
    assert ran.code == 2
    assert (
        "commune 'saint-aubin' is not an active member in the registry held here (version 4):"
        " nothing sent"
    ) in ran.flat()
    assert tree(bocage.folder("brieux")) == before


def test_a_renewed_certificate_is_published_and_pinned(bocage: Bocage) -> None:
    """mortree renews its endpoint certificate: the update records the new fingerprint; after
    saint-aubin's sync, fetching from mortree pins the new certificate and refuses the old."""
    from kloudctl import tls

    folder = bocage.folder("mortree")
    old_cert = (folder / service.TLS_CERT).read_bytes()
    old_key = (folder / service.TLS_KEY).read_bytes()
    ran = k(bocage.roots["mortree"], "federation", "update", "--renew-certificate")
    assert ran.code == 0, ran.output
    new = tls.fingerprint_of((folder / service.TLS_CERT).read_bytes())
    assert new != tls.fingerprint_of(old_cert)
    assert f"endpoint certificate renewed: {new}" in ran.stdout
    assert "changed: tls_fingerprint" in ran.stdout  # the declared figures did not move
    assert service.pin_problem(service.FederationState(folder)) is None

    saint_aubin = bocage.state("saint-aubin")
    assert k(bocage.roots["saint-aubin"], "federation", "sync").code == 0
    assert saint_aubin.store.load().members["mortree"].tls_fingerprint == new
    identity = saint_aubin.identity()
    away = service.Source(f"127.0.0.1:{free_port()}", "00:11", "the coordinator", True)
    where, server = _serve_read_only(folder)
    try:
        fetched, _ = service.fetch_registry(
            saint_aubin, identity, [away, service.Source(where, new, "member 'mortree'")]
        )
        assert fetched.version == 4
    finally:
        server.stop()  # type: ignore[attr-defined]
    # The old certificate (a copy of mortree from before the renewal) is now refused.
    stale = folder.parent / "before-renewal"
    shutil.copytree(folder, stale)
    (stale / service.TLS_CERT).write_bytes(old_cert)
    (stale / service.TLS_KEY).write_bytes(old_key)
    where, server = _serve_read_only(stale)
    try:
        with pytest.raises(service.ExternalError) as refused:
            service.fetch_registry(
                saint_aubin, identity, [away, service.Source(where, new, "member 'mortree'")]
            )
    finally:
        server.stop()  # type: ignore[attr-defined]
    assert f"shows certificate {tls.fingerprint_of(old_cert)}, not the pinned {new}" in str(
        refused.value
    )


@pytest.fixture
def measured_bocage(tmp_path: Path) -> Iterator[tuple[Bocage, SimFleet]]:
    """bocage, mortree's cabinet served by the Proxmox VE simulator (the example fleet's
    three are; mortree's fleet holds the targets file); brieux declares `peers: auto`."""
    sims = start_sim_fleet(tmp_path / "sim", task_seconds=0.0, bootstrap=bootstrap_target)
    roots = {c: _fleet_copy(tmp_path / c) for c in ("brieux", "saint-aubin")}
    roots["mortree"] = sims.root  # mortree's own fleet: it holds the simulator's targets
    brieux = roots["brieux"] / "cabinets/brieux.yaml"
    brieux.write_text(brieux.read_text().replace("peers: [saint-aubin]", "peers: auto"))
    try:
        federation = Bocage(roots)
        try:
            yield federation, sims
        finally:
            federation.server.stop()
    finally:
        sims.stop()


def _plan_choice(root: Path, commune: str) -> dict[str, Any]:
    """`kloudctl plan brieux`'s verdict on `commune` as a replication peer."""
    ran = k(root, "plan", "brieux", "--json")
    assert ran.code == 0, ran.output
    candidates = json.loads(ran.stdout)["replication_peers"]["candidates"]
    found: dict[str, Any] = next(c for c in candidates if c["commune"] == commune)
    return found


def test_measured_spare_disk_is_published_and_used_by_the_peer_choice(
    measured_bocage: tuple[Bocage, SimFleet],
) -> None:
    """mortree measures its guest storage through the simulator's API: filled by a 3000 GiB
    volume, what it can spare falls under the 960 GiB brieux promises its tenants, though its
    declared figure is well above; once published, brieux's plan leaves mortree, saying so."""
    bocage, sims = measured_bocage
    mortree, brieux = bocage.roots["mortree"], bocage.roots["brieux"]
    cabinet = load_fleet(mortree).cabinet("mortree")
    declared = service.declared_capacity(cabinet)["spare_disk_declared"]
    assert declared is not None and declared > 960 * GiB
    assert _plan_choice(brieux, "mortree")["eligible"]  # on its declared figure

    api = sims.root_api("mortree")
    node = cabinet.hardware.nodes[0].name
    storage = cabinet.hardware.storage
    status = api.nodes(node).storage(storage).status.get()
    api.nodes(node).qemu.post(vmid=990, name="filler", scsi0=f"{storage}:3000")
    avail = int(status["avail"]) - 3000 * GiB
    promised = sum(t.quota.disk for t in cabinet.tenants)
    expected = max(0, min(int(status["total"] * cabinet.hardware.overcommit.disk) - promised,
                          avail))  # fmt: skip
    assert expected < 960 * GiB

    ran = k(mortree, "federation", "update", "--measure", "--json")
    assert ran.code == 0, ran.output
    done = json.loads(ran.stdout)
    capacity = done["changes"]["capacity"]
    assert capacity["spare_disk_measured"] == expected
    assert capacity["spare_disk_declared"] == declared
    # No SSH route to the cabinet here: the power headroom is not measured, and why is said.
    assert capacity["power_headroom_measured"] is None
    assert done["notes"] == [
        "power headroom of mortree: no SSH route to the cabinet recorded (`replication"
        " deploy` records it), so its power record cannot be read"
    ]
    # Measured again with nothing changed: nothing to send.
    ran = k(mortree, "federation", "update", "--measure")
    assert ran.code == 0 and "no change: registry version 4" in ran.stdout, ran.output
    assert "not measured: power headroom of mortree" in ran.stdout

    verdict = _plan_choice(brieux, "mortree")
    assert not verdict["eligible"] and not verdict["chosen"]
    assert verdict["reasons"] == [f"spare disk {format_size(expected)} < 960GiB needed"]
    text = " ".join(k(brieux, "plan", "brieux").output.split())
    assert f"spare disk {format_size(expected)} < 960GiB needed" in text


def test_the_coordinator_updates_its_own_entry_and_a_member_its_endpoints(bocage: Bocage) -> None:
    """The coordinator is a member too: its update goes straight into the registry it holds
    (no HTTP), checked the same way. A member's new WireGuard endpoint is published too."""
    brieux = bocage.roots["brieux"]
    path = brieux / "cabinets/brieux.yaml"
    text = path.read_text()
    assert "disk: 800GiB}" in text
    path.write_text(text.replace("disk: 800GiB}", "disk: 700GiB}", 1))
    ran = k(brieux, "federation", "update")
    assert ran.code == 0 and "registry version 4; changed: capacity" in ran.stdout, ran.output
    assert k(brieux, "federation", "update").stdout.startswith("no change: registry version 4")
    ran = k(brieux, "federation", "update", "--renew-certificate")
    assert ran.code == 2 and "pinned by every member from its invite" in ran.flat()

    ran = k(bocage.roots["mortree"], "federation", "update", "--endpoint", "198.51.100.7:51820")
    assert ran.code == 0 and "registry version 5; changed: endpoints" in ran.stdout, ran.output
    assert bocage.state("brieux").store.load().members["mortree"].endpoints == [
        "198.51.100.7:51820"
    ]
    ran = k(bocage.roots["mortree"], "federation", "update", "--endpoint", "no-port")
    assert ran.code == 2 and "--endpoint: expected HOST:PORT, got 'no-port'" in ran.flat()


def test_a_power_record_that_cannot_be_read_leaves_the_headroom_unmeasured(
    tmp_path: Path,
) -> None:
    """The SSH route `replication deploy` recorded for mortree leads nowhere (a closed
    loopback port, the real ssh): no headroom, and the reason names the record and the
    cabinet. (A readable record needs a cabinet host with sshd: the podman test cabinets.)"""
    from kloudctl.status.measured import power_headroom, ssh_route

    root = _fleet_copy(tmp_path / "mortree")
    assert ssh_route(root, None, "mortree") is None  # no replication state: no route
    state = root / ".state/replication"
    state.mkdir(parents=True)
    options = ["-p", str(free_port()), "-o", "ConnectTimeout=3", "-o",
               f"UserKnownHostsFile={tmp_path / 'known_hosts'}"]  # fmt: skip
    route = {"mortree": {"ssh": {"address": "127.0.0.1", "user": "root", "options": options}}}
    (state / "endpoints.json").write_text(json.dumps({"cabinets": route}))
    target = ssh_route(root, None, "mortree")
    assert target is not None and (target.host, target.options) == ("127.0.0.1", tuple(options))
    assert ssh_route(root, None, "brieux") is None
    cabinet = load_fleet(root).cabinet("mortree")
    watts, why = power_headroom(cabinet, target, timeout=10)
    assert watts is None and why is not None
    assert why.startswith("power headroom of mortree: "), why
    assert "Connection refused" in why, why
