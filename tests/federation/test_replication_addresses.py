"""Where a source reaches its peer's rest-server, from the registry the controller holds:
at the peer's mesh address when both are active members, at its management address
otherwise; the peer's certificate names its mesh address. The inventory is built by the
real code from the example fleet and a registry signed by the real keys (no hosts: the
podman test, test_cabinets_mesh.py, runs the copies over the mesh)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kloudctl import ansible_inventory
from kloudctl.errors import KloudError
from kloudctl.federation.registry import Registry, RegistryStore
from kloudctl.hosts.inventory import Template
from kloudctl.model import load_fleet
from kloudctl.testbed.fleets import make_fleet_root
from tests.federation.conftest import Federation

#: The example files: brieux → saint-aubin → mortree → brieux (a ring).
PEER_OF = {"brieux": "saint-aubin", "mortree": "brieux", "saint-aubin": "mortree"}
#: The addresses the chain's admissions give (join order; not the files' declared ones).
MESH = {"brieux": "10.250.0.1", "mortree": "10.250.0.2", "saint-aubin": "10.250.0.3"}


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("KLOUDCTL_FEDERATION_STATE", raising=False)
    return make_fleet_root(tmp_path / "fleet")


def _hold(root: Path, registry: Registry) -> RegistryStore:
    store = RegistryStore(root / ".state" / "federation")
    store.folder.mkdir(parents=True, exist_ok=True)
    store.accept(registry, "test")
    return store


def _peer(hostvars: dict, cabinet: str) -> dict:  # type: ignore[type-arg]
    [peer] = hostvars[cabinet]["replication_source__peers"]
    assert peer["name"] == PEER_OF[cabinet]
    return peer  # type: ignore[no-any-return]


def test_active_members_replicate_over_the_mesh(root: Path, federation: Federation) -> None:
    _hold(root, federation.chain(3))  # all three admitted
    hostvars = ansible_inventory.build(load_fleet(root))["hostvars"]
    for cabinet, peer in PEER_OF.items():
        url = _peer(hostvars, cabinet)["url"]
        assert url == f"https://{MESH[peer]}:8000"
        # From the verified registry: plain data, never templated by Ansible.
        assert not isinstance(url, Template)
        addresses = hostvars[cabinet]["replication_target__tls_addresses"]
        assert addresses == ["{{ ansible_host }}", MESH[cabinet]]


def test_a_revoked_member_is_no_longer_reached_over_the_mesh(
    root: Path, federation: Federation
) -> None:
    _hold(root, federation.chain(5))  # saint-aubin revoked
    hostvars = ansible_inventory.build(load_fleet(root))["hostvars"]
    assert _peer(hostvars, "mortree")["url"] == f"https://{MESH['brieux']}:8000"
    for cabinet in ("brieux", "saint-aubin"):  # to the revoked member, or from it
        url = _peer(hostvars, cabinet)["url"]
        assert isinstance(url, Template), url
        assert url == f"https://{{{{ hostvars['{PEER_OF[cabinet]}'].ansible_host }}}}:8000"
    assert hostvars["saint-aubin"]["replication_target__tls_addresses"] == ["{{ ansible_host }}"]


def test_a_cabinet_of_another_federation_is_not_reached_over_the_mesh(
    root: Path, federation: Federation
) -> None:
    _hold(root, federation.chain(3))
    path = root / "cabinets" / "mortree.yaml"
    path.write_text(path.read_text().replace("name: bocage", "name: autre"))
    hostvars = ansible_inventory.build(load_fleet(root))["hostvars"]
    assert isinstance(_peer(hostvars, "saint-aubin")["url"], Template)  # to mortree
    assert isinstance(_peer(hostvars, "mortree")["url"], Template)  # from mortree
    assert _peer(hostvars, "brieux")["url"] == f"https://{MESH['saint-aubin']}:8000"


def test_a_tampered_registry_stops_the_inventory_naming_the_entry(
    root: Path, federation: Federation
) -> None:
    store = _hold(root, federation.chain(3))
    document = json.loads(store.path.read_bytes())
    document["entries"][2]["body"]["member"]["mesh_address"] = "10.250.0.9"
    store.path.write_text(json.dumps(document))
    with pytest.raises(KloudError, match=r"registry.json: entry version 3"):
        ansible_inventory.load(root)


def test_without_a_registry_peers_are_at_their_management_address(root: Path) -> None:
    hostvars = ansible_inventory.build(load_fleet(root))["hostvars"]
    assert isinstance(_peer(hostvars, "brieux")["url"], Template)
    assert hostvars["brieux"]["replication_target__tls_addresses"] == ["{{ ansible_host }}"]
