"""Sync reports: what a member tells the coordinator it holds, signed with its own key, and
the revocation's propagation the coordinator computes from them (real keys and chain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kloudctl.answers import UnexpectedAnswer
from kloudctl.errors import InputError
from kloudctl.federation import mesh
from kloudctl.federation.reports import ReportBook, checked_report, make_report, propagation
from tests.federation.conftest import T0, Federation


def test_a_report_signed_by_another_member_or_naming_another_history_is_refused(
    federation: Federation,
) -> None:
    registry = federation.chain(5)
    keys = federation.keys
    good = make_report("mortree", registry, T0.timestamp() + 3, keys["mortree"])
    assert checked_report(good, registry)["version"] == 5
    forged = make_report("mortree", registry, T0.timestamp() + 3, keys["saint-aubin"])
    with pytest.raises(InputError, match="not signed by 'mortree'"):
        checked_report(forged, registry)
    other = federation.chain(4)  # a report on entry 4 of another chain (another federation)
    elsewhere = Federation().chain(4)
    foreign = make_report("mortree", elsewhere, T0.timestamp(), keys["mortree"])
    with pytest.raises(InputError, match="entry version 4 differs"):
        checked_report(foreign, other)
    future = make_report("mortree", registry, T0.timestamp(), keys["mortree"])
    with pytest.raises(InputError, match="version 5 is not in this registry"):
        checked_report(future, federation.chain(3))


def test_the_propagation_is_the_last_remaining_member_applying_the_revocation(
    federation: Federation, tmp_path: Path
) -> None:
    registry = federation.chain(5)  # entry 5 revokes saint-aubin at T0
    book = ReportBook(tmp_path)
    at = T0.timestamp()
    book.record(
        checked_report(
            make_report("brieux", registry, at + 2.5, federation.keys["brieux"]), registry
        )
    )
    waiting = propagation(registry, book.read())
    assert (
        waiting is not None and waiting["waiting_for"] == ["mortree"] and waiting["seconds"] is None
    )
    # mortree held version 4 first (before the revocation), then applied 5 at T0 + 7.25 s
    book.record(
        checked_report(
            make_report("mortree", federation.chain(4), at - 60, federation.keys["mortree"]),
            federation.chain(4),
        )
    )
    book.record(
        checked_report(
            make_report("mortree", registry, at + 7.25, federation.keys["mortree"]), registry
        )
    )
    book.record(
        checked_report(
            make_report("mortree", registry, at + 40, federation.keys["mortree"]), registry
        )
    )
    done = propagation(registry, book.read())
    assert done == {
        "revoked": "saint-aubin", "version": 5, "revoked_at": T0.isoformat(),
        "waiting_for": [], "seconds": 7.2,
    }  # fmt: skip


def test_the_mesh_configuration_has_one_slash_32_per_active_peer(federation: Federation) -> None:
    registry = federation.chain(5)
    text = mesh.render(registry, "brieux", "cHJpdmF0ZQ==")
    assert text.count("[Peer]") == 1  # saint-aubin is revoked, brieux is this member
    assert f"PublicKey = {federation.keys['mortree'].wireguard_public}" in text
    assert "AllowedIPs = 10.250.0.2/32\nEndpoint = 198.51.100.7:51820" in text
    assert federation.keys["saint-aubin"].wireguard_public not in text
    rules = mesh.firewall("kfed0")
    assert 'iifname "kfed0" tcp dport { 8000, 8006, 8449 } accept' in rules
    assert 'iifname "kfed0" meta l4proto tcp reject with tcp reset' in rules


def test_handshakes_are_read_per_peer_and_an_odd_answer_names_the_tool() -> None:
    # The shape `wg show IF latest-handshakes` prints (the real one is read in test_mesh.py).
    answer = "aZplqIiDGE85wRXvLRsRvQl34z5mm9I8CcZI56vZAms=\t1764480000\nD8T=\t0\n"
    assert mesh.parse_handshakes(answer, "kfed0") == {
        "aZplqIiDGE85wRXvLRsRvQl34z5mm9I8CcZI56vZAms=": 1764480000,
        "D8T=": None,
    }
    with pytest.raises(UnexpectedAnswer, match="'wg show kfed0 latest-handshakes' answered"):
        mesh.parse_handshakes("peer\tsoon\n", "kfed0")


def test_an_interface_name_linux_cannot_hold_is_bad_input() -> None:
    assert mesh.checked_interface("kfed0") == "kfed0"
    for bad in ("", "kfed0 up", "a/b", "sixteen-chars-xx"):
        with pytest.raises(InputError, match="is not an interface name"):
            mesh.checked_interface(bad)
