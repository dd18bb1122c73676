"""The signed, hash-chained registry: every alteration is found and named by version;
an older registry is refused; mesh addresses are never reused. Real ed25519 (cryptography)."""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from kloudctl.errors import KloudError
from kloudctl.federation import canonical
from kloudctl.federation.keys import SIGNING_KEY, WIREGUARD_KEY, ensure_keys
from kloudctl.federation.registry import (
    ENTRY_KEYS,
    Registry,
    RegistryError,
    RegistryStore,
    RollbackRefused,
    create,
    parse,
)

from .conftest import T0, Federation, member_doc


def _verify(entries: list[dict[str, Any]]) -> Registry:
    return Registry.verified(entries, "test.json")


def test_the_chain_verifies_and_builds_the_members(federation: Federation) -> None:
    registry = federation.chain()
    again = parse(json.dumps(registry.to_json()).encode(), "copy")
    assert again.version == 5 and again.head == registry.head
    assert again.coordinator == "brieux"
    assert {c: m.state for c, m in again.members.items()} == {
        "brieux": "active", "mortree": "active", "saint-aubin": "revoked",
    }  # fmt: skip
    assert again.members["mortree"].endpoints == ["198.51.100.7:51820"]
    assert again.members["mortree"].mesh_address == "10.250.0.2"


#: For each field of an entry, a different value of the right type.
ALTERED = {
    "version": 7,
    "prev": "1" * 64,
    "kind": "update",
    "author": "mortree",
    "time": "2026-11-30T05:00:00+00:00",
    "body": {"member": {"commune": "saint-aubin"}},
    "signature": canonical.b64(b"\0" * 64),
}


def test_every_field_is_covered() -> None:
    assert set(ALTERED) == ENTRY_KEYS


@pytest.mark.parametrize("field", sorted(ALTERED))
def test_an_altered_field_names_the_entry(federation: Federation, field: str) -> None:
    entries = copy.deepcopy(federation.chain().entries)
    entries[2][field] = ALTERED[field]
    with pytest.raises(RegistryError) as caught:
        _verify(entries)
    message = str(caught.value)
    assert "registry test.json: entry version" in message
    # the entry at position 3 is named: by its version, or (version altered) by its place
    assert ("entry version 3" in message) or ("at position 3" in message), message


def test_an_altered_value_deep_in_the_body_is_found(federation: Federation) -> None:
    entries = copy.deepcopy(federation.chain().entries)
    entries[1]["body"]["member"]["mesh_address"] = "10.250.0.9"
    with pytest.raises(
        RegistryError, match=r"entry version 2 \(admit by 'brieux'\): the signature"
    ):
        _verify(entries)


def test_an_altered_earlier_entry_is_named_even_if_later_ones_are_fine(
    federation: Federation,
) -> None:
    entries = copy.deepcopy(federation.chain().entries)
    entries[0]["body"]["pool"] = "10.0.0.0/8"
    with pytest.raises(RegistryError, match="entry version 1 "):
        _verify(entries)


def test_reordered_entries_are_named(federation: Federation) -> None:
    entries = copy.deepcopy(federation.chain().entries)
    entries[2], entries[3] = entries[3], entries[2]
    with pytest.raises(RegistryError, match="entry version 4 is out of place: expected version 3"):
        _verify(entries)


def test_a_removed_entry_is_named(federation: Federation) -> None:
    entries = copy.deepcopy(federation.chain().entries)
    del entries[2]
    with pytest.raises(RegistryError, match="entry version 4 is out of place: expected version 3"):
        _verify(entries)


def test_a_renumbered_chain_breaks_the_hash_links(federation: Federation) -> None:
    """Removing an entry and renumbering the rest cannot pass: the links and signatures."""
    entries = copy.deepcopy(federation.chain().entries)
    del entries[2]
    for i, entry in enumerate(entries, start=1):
        entry["version"] = i
    with pytest.raises(RegistryError, match="entry version 3: its link to entry version 2"):
        _verify(entries)


def test_only_the_coordinator_admits(federation: Federation) -> None:
    registry = federation.chain(2)
    newcomer = member_doc("intrus", federation.keys["mortree"], "10.250.0.3")
    with pytest.raises(RegistryError, match="entry version 3: an admission must be signed by the"):
        registry.append("admit", "mortree", {"member": newcomer}, federation.keys["mortree"])


def test_a_signature_by_another_key_is_refused(federation: Federation) -> None:
    registry = federation.chain(2)
    newcomer = member_doc("intrus", federation.keys["mortree"], "10.250.0.3")
    with pytest.raises(RegistryError, match=r"entry version 3 .*'brieux' did not sign it"):
        registry.append("admit", "brieux", {"member": newcomer}, federation.keys["mortree"])


def test_a_member_updates_only_itself(federation: Federation) -> None:
    registry = federation.chain(3)
    body = {"commune": "saint-aubin", "changes": {"endpoints": ["192.0.2.1:1"]}}
    with pytest.raises(RegistryError, match="entry version 4: an update is signed by the active"):
        registry.append("update", "mortree", body, federation.keys["mortree"])
    body = {"commune": "mortree", "changes": {"mesh_address": "10.250.0.99"}}
    with pytest.raises(RegistryError, match="a member may change only capacity, endpoints"):
        registry.append("update", "mortree", body, federation.keys["mortree"])


def test_mesh_addresses_are_never_reused(federation: Federation) -> None:
    registry = federation.chain(5)  # saint-aubin (10.250.0.3) revoked
    assert registry.next_address() == "10.250.0.4"
    reused = member_doc("mortagne", federation.keys["saint-aubin"], "10.250.0.3")
    with pytest.raises(RegistryError, match=r"mesh address 10\.250\.0\.3 was already given"):
        registry.append("admit", "brieux", {"member": reused}, federation.keys["brieux"])


def test_an_exhausted_pool_is_a_clear_error() -> None:
    small = Federation(pool="10.250.0.0/30")  # two addresses: the coordinator's and one
    registry = small.chain(2)
    with pytest.raises(KloudError, match=r"pool 10.250.0.0/30 .* is exhausted: its 2 addresses"):
        registry.next_address()
    # revoking frees nothing
    revoked = registry.append(
        "revoke", "brieux", {"commune": "mortree", "reason": "left"}, small.keys["brieux"], T0
    )
    with pytest.raises(KloudError, match="exhausted"):
        revoked.next_address()


def test_canonical_json_refuses_floats() -> None:
    with pytest.raises(KloudError, match=r"value.capacity: float has no canonical form"):
        canonical.encode({"capacity": 1.5})


def _store_with(tmp_path: Path, registry: Registry) -> RegistryStore:
    store = RegistryStore(tmp_path)
    store.accept(registry, "test")
    return store


def test_a_rolled_back_registry_is_refused(tmp_path: Path, federation: Federation) -> None:
    old, new = federation.chain(3), federation.chain(5)
    store = _store_with(tmp_path, old)
    assert store.accept(new, "newer") is True
    before = store.path.read_bytes()
    with pytest.raises(RollbackRefused, match="at version 3, older than version 5 already"):
        store.accept(old, "an older copy")
    assert store.path.read_bytes() == before
    assert store.load().version == 5


def test_a_rolled_back_file_on_disk_is_detected(tmp_path: Path, federation: Federation) -> None:
    store = _store_with(tmp_path, federation.chain(3))
    old_file = store.path.read_bytes()
    store.accept(federation.chain(5), "newer")
    store.path.write_bytes(old_file)  # someone puts the older registry back
    with pytest.raises(RollbackRefused, match=r"registry .*registry.json is at version 3, older"):
        store.load()


def test_a_different_history_at_the_held_version_is_refused(
    tmp_path: Path, federation: Federation
) -> None:
    store = _store_with(tmp_path, federation.chain(3))
    other = Federation()  # another chain, same versions, other keys
    other.keys["brieux"] = federation.keys["brieux"]
    with pytest.raises(RollbackRefused, match="entry version 3 differs from the one accepted"):
        store.accept(other.chain(4), "fork")


def test_a_tampered_file_on_disk_is_named(tmp_path: Path, federation: Federation) -> None:
    store = _store_with(tmp_path, federation.chain(5))
    document = json.loads(store.path.read_bytes())
    document["entries"][3]["body"]["changes"]["endpoints"] = ["6.6.6.6:51820"]
    store.path.write_text(json.dumps(document))
    with pytest.raises(RegistryError, match=r"registry .*registry.json: entry version 4 \(update"):
        store.load()


def test_private_keys_are_0600_and_never_in_the_registry(tmp_path: Path) -> None:
    keys = ensure_keys(tmp_path)
    for name in (SIGNING_KEY, WIREGUARD_KEY):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600
    assert ensure_keys(tmp_path).signing_public == keys.signing_public  # made once
    doc = member_doc("brieux", keys, "10.250.0.1")
    registry = create("bocage", ipaddress.IPv4Network("10.250.0.0/24"), doc, keys)
    text = json.dumps(registry.to_json())

    for key in (keys.signing, keys.wireguard):
        raw = key.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
        assert canonical.b64(raw) not in text
        assert raw.hex() not in text


def test_a_members_certificate_fingerprint_is_signed_in_and_renewed_by_itself(
    federation: Federation,
) -> None:
    """Registries made before members' certificates were recorded (the fixture's chain has
    none) still verify; a member records or renews its own with an update it signs."""
    registry = federation.chain()
    assert all(m.tls_fingerprint is None for m in registry.members.values())
    pin = ":".join(["AB"] * 32)
    body = {"commune": "mortree", "changes": {"tls_fingerprint": pin}}
    renewed = registry.append("update", "mortree", body, federation.keys["mortree"], T0)
    assert renewed.members["mortree"].tls_fingerprint == pin
    assert (
        parse(json.dumps(renewed.to_json()).encode(), "copy")
        .members["mortree"]
        .to_dict()["tls_fingerprint"]
        == pin
    )
    body["changes"] = {"tls_fingerprint": "ab:cd"}
    with pytest.raises(RegistryError) as bad:
        registry.append("update", "mortree", body, federation.keys["mortree"], T0)
    assert (
        "entry version 6 (update): body.changes.tls_fingerprint: expected a SHA-256 fingerprint"
        " (32 hex pairs AB:CD:...), got 'ab:cd'"
    ) in str(bad.value)
