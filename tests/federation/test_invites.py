"""Invites and joining against the coordinator's real join endpoint (HTTPS on 127.0.0.1,
its certificate pinned by the invite): reused, expired, forged and unconfirmed invites are
refused with their reason and change nothing; one invite is redeemed once under a race."""

from __future__ import annotations

import datetime
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from kloudctl.errors import InputError, KloudError
from kloudctl.federation import canonical, service
from kloudctl.federation.endpoint import JoinServer, call
from kloudctl.federation.invites import Invite, InviteRefused, join_request
from kloudctl.federation.keys import MemberKeys
from kloudctl.model import Fleet, load_fleet
from tests.unit.inprocess import tree


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Coordinator:
    fleet: Fleet
    state: service.FederationState
    server: JoinServer
    tmp: Path

    def invite(self, commune: str = "mortree", **kwargs: object) -> tuple[Invite, str]:
        return service.invite(self.state, commune, 3600, **kwargs)  # type: ignore[arg-type]

    def newcomer(self, name: str) -> service.FederationState:
        return service.FederationState(self.tmp / f"member-{name}")


@pytest.fixture
def coordinator(example_fleet: Path, tmp_path: Path) -> Iterator[Coordinator]:
    fleet = load_fleet(example_fleet)
    state = service.FederationState(tmp_path / "coordinator")
    port = free_port()
    service.init(state, fleet, "bocage", None, f"127.0.0.1:{port}")
    server = JoinServer(
        state.folder,
        state.folder / service.TLS_CERT,
        state.folder / service.TLS_KEY,
        "127.0.0.1",
        port,
    ).start()
    try:
        yield Coordinator(fleet, state, server, tmp_path)
    finally:
        server.stop()


def test_a_malformed_invite_is_bad_input() -> None:
    for text in ("hello", "kfi1.x", "kfi2.a.b", "kfi1.!!!.sig", "kfi1.e30.sig"):
        with pytest.raises(InputError, match="INVITE: "):
            Invite.decode(text)


def test_an_altered_invite_string_is_refused_before_anything_is_sent(
    coordinator: Coordinator,
) -> None:
    invite, text = coordinator.invite()
    prefix, payload, signature = text.split(".")
    data = json.loads(canonical.unb64(payload))
    data["expires"] += 86400  # a longer life, by hand
    altered = f"{prefix}.{canonical.b64(canonical.encode(data))}.{signature}"
    newcomer = coordinator.newcomer("mortree")
    before = tree(coordinator.state.folder)
    with pytest.raises(InviteRefused, match=f"invite {invite.id}: forged or altered"):
        service.join(newcomer, coordinator.fleet, altered, "mortree", [])
    assert not newcomer.folder.exists()
    assert tree(coordinator.state.folder) == before


def test_a_wrong_proof_is_refused_as_forged(coordinator: Coordinator) -> None:
    invite, _ = coordinator.invite()
    guessed = replace(invite, secret=canonical.b64(b"a guessed secret of 32 bytes...."))
    request, proof = join_request(guessed, MemberKeys.generate(), "mortree", [], {})
    before = tree(coordinator.state.folder)
    status, answer = call(
        invite.endpoint, invite.tls_fingerprint, "POST", "/v1/join",
        {"request": request, "proof": proof},
    )  # fmt: skip
    assert status == 403
    assert answer == f"invite {invite.id}: forged: the proof does not match the invite's secret"
    assert tree(coordinator.state.folder) == before
    # the real secret still works afterwards: a forgery does not burn the invite
    _, text = invite, invite.encode(service.load_keys(coordinator.state.folder))
    service.join(coordinator.newcomer("mortree"), coordinator.fleet, text, "mortree", [])


def test_an_expired_invite_is_refused_on_both_sides(coordinator: Coordinator) -> None:
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2)
    invite, text = coordinator.invite(now=past)  # valid one hour, from two hours ago
    newcomer = coordinator.newcomer("mortree")
    with pytest.raises(InviteRefused, match=f"invite {invite.id}: expired at "):
        service.join(newcomer, coordinator.fleet, text, "mortree", [])
    assert not newcomer.folder.exists()
    # a newcomer with a wrong clock still meets the coordinator's own check
    request, proof = join_request(invite, MemberKeys.generate(), "mortree", [], {})
    before = tree(coordinator.state.folder)
    status, answer = call(
        invite.endpoint, invite.tls_fingerprint, "POST", "/v1/join",
        {"request": request, "proof": proof},
    )  # fmt: skip
    assert (status, answer.split(" at ")[0]) == (403, f"invite {invite.id}: expired")
    assert tree(coordinator.state.folder) == before


def test_a_reused_invite_is_refused(coordinator: Coordinator) -> None:
    invite, text = coordinator.invite()
    service.join(coordinator.newcomer("first"), coordinator.fleet, text, "mortree", [])
    second = coordinator.newcomer("second")
    before = tree(coordinator.state.folder)
    with pytest.raises(InviteRefused, match=f"refused the join: invite {invite.id}: already used"):
        service.join(second, coordinator.fleet, text, "mortree", [])
    assert not second.folder.exists()
    assert tree(coordinator.state.folder) == before


def test_an_unconfirmed_join_is_not_a_member(coordinator: Coordinator) -> None:
    _, text = coordinator.invite()
    newcomer = coordinator.newcomer("mortree")
    _, fingerprint = service.join(newcomer, coordinator.fleet, text, "mortree", [])
    with pytest.raises(InviteRefused, match=r"'mortree' is not admitted yet .*version 1"):
        service.sync(newcomer)
    assert not newcomer.store.exists()
    before = tree(coordinator.state.folder)
    wrong = "AAAA-AAAA" if fingerprint != "AAAA-AAAA" else "BBBB-BBBB"
    with pytest.raises(InviteRefused, match=f"fingerprint {wrong} does not match"):
        service.admit(coordinator.state, "mortree", wrong)
    with pytest.raises(InviteRefused, match="no join request from commune 'saint-aubin'"):
        service.admit(coordinator.state, "saint-aubin", fingerprint)
    assert tree(coordinator.state.folder) == before
    # confirmed: admitted, and the newcomer verifies and holds the registry
    member = service.admit(coordinator.state, "mortree", fingerprint.lower().replace("-", ""))
    assert member.mesh_address == "10.250.0.2"
    first = service.sync(newcomer)
    assert (first.held, first.fetched, first.applied) == (0, 2, None)
    assert first.reported is not None and first.reported.startswith("recorded by the coordinator")
    again = service.sync(newcomer)
    assert (again.held, again.fetched) == (2, 2)
    # the invite, now admitted, cannot admit twice
    with pytest.raises(InviteRefused, match="no join request from commune 'mortree'"):
        service.admit(coordinator.state, "mortree", fingerprint)


def test_concurrent_redemptions_of_one_invite_give_one_winner(coordinator: Coordinator) -> None:
    invite, _ = coordinator.invite()
    racers = 8
    answers: list[tuple[int, object]] = []
    start = threading.Barrier(racers)

    def redeem() -> None:
        request, proof = join_request(invite, MemberKeys.generate(), "mortree", [], {})
        start.wait()
        answers.append(
            call(invite.endpoint, invite.tls_fingerprint, "POST", "/v1/join",
                 {"request": request, "proof": proof})
        )  # fmt: skip

    threads = [threading.Thread(target=redeem) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] + [403] * (racers - 1)
    assert {a for s, a in answers if s == 403} == {
        f"invite {invite.id}: already used (invites are single-use)"
    }
    assert len(coordinator.state.book.pending()) == 1


def test_the_pinned_certificate_is_checked(coordinator: Coordinator) -> None:
    invite, _ = coordinator.invite()
    with pytest.raises(KloudError, match="not the pinned 00:11"):
        call(invite.endpoint, "00:11" + invite.tls_fingerprint[5:], "GET", "/v1/registry")


def test_invites_file_holding_secrets_is_private(coordinator: Coordinator) -> None:
    coordinator.invite()
    assert (coordinator.state.book.path.stat().st_mode & 0o777) == 0o600


def test_revocation_refusals_change_nothing(coordinator: Coordinator) -> None:
    _, text = coordinator.invite()
    newcomer = coordinator.newcomer("mortree")
    _, fingerprint = service.join(newcomer, coordinator.fleet, text, "mortree", [])
    service.admit(coordinator.state, "mortree", fingerprint)
    before = tree(coordinator.state.folder)
    with pytest.raises(InputError, match="commune 'atlantis' is not a member of 'bocage'"):
        service.revoke(coordinator.state, "atlantis", "x")
    with pytest.raises(InputError, match="the coordinator cannot revoke itself"):
        service.revoke(coordinator.state, "brieux", "x")
    assert tree(coordinator.state.folder) == before
    assert service.revoke(coordinator.state, "mortree", "left").version == 3
    with pytest.raises(InputError, match="'mortree' is already revoked: nothing changed"):
        service.revoke(coordinator.state, "mortree", "again")
    # a member is not the coordinator: it cannot revoke, invite or admit
    service.sync(newcomer)
    with pytest.raises(InputError, match=r"this member \(mortree\) is not the coordinator"):
        service.revoke(newcomer, "brieux", "x")
