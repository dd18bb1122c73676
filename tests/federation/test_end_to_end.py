"""Three communes' fleets federate through the real CLI: the coordinator's `kloudctl
federation serve` runs as its own process on 127.0.0.1 (real HTTPS, its certificate pinned
by the invite); the newcomers join, are admitted, fetch and verify the registry; a reused
invite, a rolled-back and a tampered registry are refused and named; `kloudctl validate`
refuses a cabinet whose declared peer is not (or no longer) a member, at file:line:field."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.inprocess import Ran, invoke, tree

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fleets(tmp_path: Path) -> dict[str, Path]:
    """Each commune's own fleet folder (a copy of the example fleet), as if on its own
    admin box: brieux coordinates, mortree and saint-aubin join."""
    roots = {}
    for commune in ("brieux", "mortree", "saint-aubin"):
        root = tmp_path / commune
        for folder in ("cabinets", "backups"):
            shutil.copytree(REPO / folder, root / folder)
        roots[commune] = root
    return roots


def k(fleet: Path, *args: str) -> Ran:
    return invoke("--fleet", str(fleet), *args)


def _wait_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1]
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the join endpoint never listened")


@pytest.fixture
def coordinator(fleets: dict[str, Path]) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    root = fleets["brieux"]
    port = free_port()
    ran = k(root, "federation", "init", "bocage", "--endpoint", f"127.0.0.1:{port}")
    assert ran.code == 0, ran.output
    assert "federation 'bocage' created (registry version 1): coordinator brieux" in ran.stdout
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("KLOUDCTL_FEDERATION_STATE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "kloudctl", "--fleet", str(root), "federation", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _wait_listening(port, process)
        yield root, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=30)


def _join(fleet: Path, invite: str, cabinet: str) -> str:
    ran = k(fleet, "federation", "join", invite, "--cabinet", cabinet)
    assert ran.code == 0, ran.output
    found = re.search(r"fingerprint: ([A-Z2-7]{4}-[A-Z2-7]{4})", ran.stdout)
    assert found, ran.stdout
    return found.group(1)


def _invite(coordinator: Path, commune: str) -> str:
    ran = k(coordinator, "federation", "invite", commune, "--expires", "10m")
    assert ran.code == 0, ran.output
    assert ran.stdout.startswith("kfi1.") and ran.stdout.count("\n") == 1
    return ran.stdout.strip()


def _peer_line(fleet: Path, cabinet: str) -> str:
    """`cabinets/X.yaml:LINE:COL` of the first declared peer of `cabinet`."""
    path = fleet / "cabinets" / f"{cabinet}.yaml"
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        if text.strip().startswith("peers: ["):
            return f"cabinets/{cabinet}.yaml:{number}:{text.index('[') + 2}"
    raise AssertionError("no peers line")


def test_three_communes_federate(
    fleets: dict[str, Path], coordinator: tuple[Path, subprocess.Popen[str]]
) -> None:
    brieux, server = coordinator
    mortree, saint_aubin = fleets["mortree"], fleets["saint-aubin"]

    # Only the coordinator is a member: brieux's declared peer saint-aubin is refused.
    ran = k(brieux, "validate")
    assert ran.code == 2
    assert (
        f"{_peer_line(brieux, 'brieux')} replication.peers[0]: cabinet 'saint-aubin' is not a"
        " member of federation 'bocage' (registry version 1; members: none)"
    ) in ran.flat()

    invite = _invite(brieux, "mortree")
    fingerprint = _join(mortree, invite, "mortree")

    # Not confirmed yet: not a member, nothing to fetch.
    ran = k(mortree, "federation", "sync")
    assert ran.code == 1 and "'mortree' is not admitted yet" in ran.flat()
    ran = k(brieux, "federation", "pending", "--json")
    assert [(p["commune"], p["fingerprint"]) for p in json.loads(ran.stdout)] == [
        ("mortree", fingerprint)
    ]
    before = tree(brieux / ".state")
    ran = k(brieux, "federation", "admit", "mortree", "ZZZZ-ZZZZ")
    assert ran.code == 1 and "fingerprint ZZZZ-ZZZZ does not match" in ran.flat()
    assert tree(brieux / ".state") == before

    ran = k(brieux, "federation", "admit", "mortree", fingerprint)
    assert ran.code == 0, ran.output
    assert "mesh address 10.250.0.2: registry version 2" in ran.stdout
    ran = k(mortree, "federation", "sync")
    assert ran.code == 0 and "registry version 2 verified and held" in ran.stdout, ran.output

    # A reused invite: refused, and nothing lands on the would-be newcomer's side.
    ran = k(saint_aubin, "federation", "join", invite, "--cabinet", "saint-aubin")
    assert ran.code == 1
    assert "already used (invites are single-use)" in ran.flat()
    assert not (saint_aubin / ".state").exists()

    fingerprint = _join(saint_aubin, _invite(brieux, "saint-aubin"), "saint-aubin")
    assert k(brieux, "federation", "admit", "saint-aubin", fingerprint).code == 0
    assert k(saint_aubin, "federation", "sync").code == 0
    old_registry = (mortree / ".state/federation/registry.json").read_bytes()
    ran = k(mortree, "federation", "sync")
    assert "registry version 3 verified and held (was 2)" in ran.stdout, ran.output

    ran = k(brieux, "validate")
    assert ran.code == 0, ran.output

    status = json.loads(k(mortree, "federation", "status", "--json").stdout)
    assert status["registry_version"] == 3 and status["mesh"].startswith("not read here")
    assert [(m["commune"], m["mesh_address"], m["state"]) for m in status["members"]] == [
        ("brieux", "10.250.0.1", "active"),
        ("mortree", "10.250.0.2", "active"),
        ("saint-aubin", "10.250.0.3", "active"),
    ]
    assert all(m["capacity"]["power_headroom_declared"] > 0 for m in status["members"])
    text = k(mortree, "federation", "status").flat()
    assert "registry version 3 held here (mortree, member); mesh: not read here" in text

    # Revocation: signed by the coordinator, reaches mortree at its next sync; the
    # revoked cabinet is no longer an acceptable peer.
    ran = k(brieux, "federation", "revoke", "saint-aubin", "--reason", "a quitté la fédération")
    assert ran.code == 0 and "registry version 4" in ran.stdout
    ran = k(brieux, "validate", str(brieux / "cabinets/brieux.yaml"))
    assert ran.code == 2
    assert (
        f"{_peer_line(brieux, 'brieux')} replication.peers[0]: cabinet 'saint-aubin' was revoked"
    ) in ran.flat()
    assert k(mortree, "federation", "sync").code == 0
    status = json.loads(k(mortree, "federation", "status", "--json").stdout)
    assert status["members"][2]["state"] == "revoked"
    # The coordinator learnt from mortree's signed sync report that it holds version 4:
    # the revocation reached every remaining member (no mesh here: holding is applying).
    status = json.loads(k(brieux, "federation", "status", "--json").stdout)
    held = {m["commune"]: m["registry_version"] for m in status["members"]}
    assert held == {"brieux": 4, "mortree": 4, "saint-aubin": 3}, held
    revocation = status["revocation"]
    assert revocation["revoked"] == "saint-aubin" and revocation["waiting_for"] == []
    assert 0 <= revocation["seconds"] < 30, revocation
    assert "applied by every member" in k(brieux, "federation", "status").flat()

    # Rolled back on disk (an older backup restored): refused and said.
    held = mortree / ".state/federation/registry.json"
    current = held.read_bytes()
    held.write_bytes(old_registry)
    ran = k(mortree, "federation", "status")
    assert ran.code == 1
    assert "is at version 2, older than version 4 already accepted here" in ran.flat()
    # Tampered on disk: the entry is named.
    document = json.loads(current)
    document["entries"][1]["body"]["member"]["endpoints"] = ["192.0.2.66:51820"]
    held.write_text(json.dumps(document))
    ran = k(mortree, "federation", "status")
    assert ran.code == 1
    assert "entry version 2 (admit by 'brieux'): the signature does not verify" in ran.flat()

    server.send_signal(signal.SIGTERM)
    _, log = server.communicate(timeout=30)
    assert server.returncode == 0, log
    assert "join request from commune 'mortree' (cabinet 'mortree')" in log
    assert "join refused: invite" in log and "already used" in log


def test_an_exhausted_mesh_pool_is_a_clear_error(fleets: dict[str, Path]) -> None:
    brieux = fleets["brieux"]
    cabinet = brieux / "cabinets/brieux.yaml"
    # A /30: two addresses, the coordinator's and one more.
    cabinet.write_text(cabinet.read_text().replace("10.250.0.1/24", "10.250.0.1/30"))
    assert k(brieux, "federation", "init", "bocage", "--endpoint", "127.0.0.1:9").code == 0
    assert k(brieux, "federation", "invite", "mortree").code == 0
    # Admit one newcomer in the coordinator's own state (no network needed for this).
    from kloudctl.federation import service
    from kloudctl.federation.keys import MemberKeys

    state = service.FederationState(brieux / ".state/federation")
    registry = state.store.load()
    doc = {
        "commune": "mortree", "cabinet": "mortree", "endpoints": [],
        "wireguard_key": MemberKeys.generate().wireguard_public,
        "signing_key": MemberKeys.generate().signing_public,
        "mesh_address": registry.next_address(), "capacity": {},
    }  # fmt: skip
    _, keys, _ = state.coordinator()
    state.store.accept(registry.append("admit", "brieux", {"member": doc}, keys), "test")
    ran = k(brieux, "federation", "invite", "saint-aubin")
    assert ran.code == 1
    assert (
        "the mesh address pool 10.250.0.0/30 of federation 'bocage' is exhausted: its 2"
        " addresses were all given, and addresses are never reused"
    ) in ran.flat()


def test_a_member_serving_an_older_registry_is_passed_over(
    fleets: dict[str, Path], coordinator: tuple[Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    """Members' read-only endpoints (real HTTPS servers on 127.0.0.1): when the coordinator
    does not answer, a member's older registry is refused as a rollback and the next member
    asked; a member's endpoint takes no join and no sync report."""
    from kloudctl.federation import endpoint, service

    brieux, mortree, saint_aubin = fleets["brieux"], fleets["mortree"], fleets["saint-aubin"]
    assert k(brieux, "federation", "admit", "mortree", _join(mortree, _invite(brieux, "mortree"),
                                                             "mortree")).code == 0  # fmt: skip
    invite = _invite(brieux, "saint-aubin")
    assert k(brieux, "federation", "admit", "saint-aubin", _join(saint_aubin, invite,
                                                                 "saint-aubin")).code == 0  # fmt: skip
    for fleet in (mortree, saint_aubin):
        assert k(fleet, "federation", "sync").code == 0
    stale = tmp_path / "stale"  # a member that will miss the next change (version 3)
    shutil.copytree(mortree / ".state/federation", stale)
    # Version 4: a fourth commune (its join request made with saint-aubin's cabinet file,
    # from a state folder of its own).
    ran = k(saint_aubin, "federation", "join", _invite(brieux, "lanvallay"), "--cabinet",
            "saint-aubin", "--state-dir", str(tmp_path / "lanvallay"))  # fmt: skip
    found = re.search(r"fingerprint: ([A-Z2-7]{4}-[A-Z2-7]{4})", ran.stdout)
    assert ran.code == 0 and found, ran.output
    assert k(brieux, "federation", "admit", "lanvallay", found.group(1)).code == 0
    for fleet in (mortree, saint_aubin):
        assert k(fleet, "federation", "sync").code == 0
    servers = []
    sources = []
    pin = service.FederationState(saint_aubin / ".state/federation").store.load()
    mortree_pin = pin.members["mortree"].tls_fingerprint
    for name, folder in (("stale", stale), ("mortree", mortree / ".state/federation")):
        port = free_port()
        host, port, read_only = service.serving(
            service.FederationState(folder), f"127.0.0.1:{port}"
        )
        assert read_only
        server = endpoint.JoinServer(
            folder, folder / service.TLS_CERT, folder / service.TLS_KEY, host, port,
            read_only=True,
        ).start()  # fmt: skip
        servers.append(server)
        # The stale copy holds mortree's certificate: both are pinned by its registry entry.
        sources.append(service.Source(f"{host}:{port}", mortree_pin, f"member '{name}'"))
    try:
        state = service.FederationState(saint_aubin / ".state/federation")
        identity = state.identity()
        away = service.Source(f"127.0.0.1:{free_port()}", "00:11", "the coordinator", True)
        registry, source = service.fetch_registry(state, identity, [away, *sources])
        assert registry.version == 4 and source == f"from {sources[1].who} at {sources[1].where}"
        with pytest.raises(service.ExternalError) as refused:
            service.fetch_registry(state, identity, [away, sources[0]])
        assert "is at version 3, older than version 4 already accepted here" in str(refused.value)
        status, answer = endpoint.call(sources[1].where, mortree_pin, "POST", "/v1/held", {})
        assert status == 404 and "this member serves its registry only" in answer
    finally:
        for server in servers:
            server.stop()


def _serve_read_only(folder: Path) -> tuple[str, object]:
    """A member's read-only registry endpoint on 127.0.0.1 (real HTTPS, its own certificate
    files), as `federation serve` runs it over the mesh; (HOST:PORT, the server)."""
    from kloudctl.federation import endpoint, service

    host, port, read_only = service.serving(
        service.FederationState(folder), f"127.0.0.1:{free_port()}"
    )
    assert read_only
    server = endpoint.JoinServer(
        folder, folder / service.TLS_CERT, folder / service.TLS_KEY, host, port, read_only=True
    ).start()
    return f"{host}:{port}", server


def test_members_pin_each_others_certificates(
    fleets: dict[str, Path], coordinator: tuple[Path, subprocess.Popen[str]], tmp_path: Path
) -> None:
    """Each member's join request carries its endpoint certificate's fingerprint; the
    admission signs it into the registry; a member fetching from another pins it: the
    right certificate is accepted, a swapped one refused naming the member, its address
    and both fingerprints, and an altered fingerprint breaks the admission's signature."""
    from kloudctl import tls
    from kloudctl.federation import service

    brieux, mortree, saint_aubin = fleets["brieux"], fleets["mortree"], fleets["saint-aubin"]
    for fleet, name in ((mortree, "mortree"), (saint_aubin, "saint-aubin")):
        fingerprint = _join(fleet, _invite(brieux, name), name)
        assert k(brieux, "federation", "admit", name, fingerprint).code == 0
    for fleet in (mortree, saint_aubin):
        assert k(fleet, "federation", "sync").code == 0
    folder = mortree / ".state/federation"
    mortree_cert = tls.fingerprint_of((folder / service.TLS_CERT).read_bytes())
    state = service.FederationState(saint_aubin / ".state/federation")
    registry = state.store.load()
    # Signed into the registry: the coordinator's own (made at init) and each newcomer's.
    assert registry.members["mortree"].tls_fingerprint == mortree_cert
    brieux_cert = (brieux / ".state/federation" / service.TLS_CERT).read_bytes()
    assert registry.members["brieux"].tls_fingerprint == tls.fingerprint_of(brieux_cert)
    assert len({m.tls_fingerprint for m in registry.members.values()}) == 3
    # The sync plan over a mesh pins every other member by its registry entry (the interface
    # name only says a mesh exists here; nothing touches it).
    planned = service._sources(state, state.identity(), "kfed0")
    assert [(s.who, s.tls_fingerprint, s.coordinator) for s in planned[2:]] == [
        ("member 'mortree'", mortree_cert, False)
    ]
    identity = state.identity()
    away = service.Source(f"127.0.0.1:{free_port()}", "00:11", "the coordinator", True)

    assert service.pin_problem(service.FederationState(folder)) is None
    where, server = _serve_read_only(folder)
    try:
        pinned = service.Source(where, mortree_cert, "member 'mortree'")
        fetched, source = service.fetch_registry(state, identity, [away, pinned])
        assert fetched.version == 3 and source == f"from member 'mortree' at {where}"
    finally:
        server.stop()  # type: ignore[attr-defined]

    # Another machine answering at mortree's address: a certificate of its own.
    impostor = tmp_path / "impostor"
    shutil.copytree(folder, impostor)
    (impostor / service.TLS_KEY).unlink()
    (impostor / service.TLS_CERT).unlink()
    where, server = _serve_read_only(impostor)
    try:
        swapped = tls.fingerprint_of((impostor / service.TLS_CERT).read_bytes())
        assert swapped != mortree_cert
        # What `federation serve` warns about there.
        assert service.pin_problem(service.FederationState(impostor)) == (
            f"this certificate is not the {mortree_cert} the registry records for this member:"
            " other members will refuse it (restore the certificate and key of the join)"
        )
        with pytest.raises(service.ExternalError) as refused:
            service.fetch_registry(
                state, identity, [away, service.Source(where, mortree_cert, "member 'mortree'")]
            )
    finally:
        server.stop()  # type: ignore[attr-defined]
    assert (
        f"member 'mortree''s registry endpoint at {where} shows certificate {swapped}, not the"
        f" pinned {mortree_cert}: refused"
    ) in str(refused.value)

    # A member whose entry records no certificate is not asked, and the reason is said.
    with pytest.raises(service.ExternalError) as refused:
        service.fetch_registry(state, identity, [service.Source(where, None, "member 'old'")])
    assert (
        f"member 'old' at {where}: not asked, the registry records no certificate fingerprint"
    ) in str(refused.value)

    # The fingerprint altered in the registry held: the admission no longer verifies.
    held = saint_aubin / ".state/federation/registry.json"
    document = json.loads(held.read_bytes())
    assert document["entries"][1]["body"]["member"]["tls_fingerprint"] == mortree_cert
    document["entries"][1]["body"]["member"]["tls_fingerprint"] = swapped
    held.write_text(json.dumps(document))
    ran = k(saint_aubin, "federation", "status")
    assert ran.code == 1
    assert "entry version 2 (admit by 'brieux'): the signature does not verify" in ran.flat()
