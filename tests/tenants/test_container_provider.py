"""The container provider against the simulator: placement, VMIDs, take-over, deletion.

Its methods are called directly (as Pulumi's dynamic-provider host calls them), over real
HTTPS with a real API token, on the simulated two-node Brieux where only the second node's
`local` storage holds the template: nothing is mocked. The checks and diffs that need no
Proxmox are at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kloudctl.model import load_fleet
from kloudctl.proxmox.automation import ensure_automation_token
from kloudctl.proxmox.client import ApiTarget, Client, ProxmoxError
from kloudctl.sim.testing import running_sim
from kloudctl.tenants.providers import ContainerProvider

pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
GIB, MIB = 1024**3, 1024**2
TEMPLATE = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[dict[str, Any], Client]]:
    """Brieux simulated (two nodes); the template deleted from pve1's `local` storage through
    the API, so it is found on pve2 only."""
    from tests.conftest import REPO

    with running_sim(cabinets=["brieux"], fleet=load_fleet(REPO), task_seconds=0.02) as sim:
        ep = sim.endpoints["brieux"]
        made = ensure_automation_token(
            ep.url,
            ep.fingerprint,
            root_user="root@pam",
            root_password=ep.root_password,
            user="kloudctl@pve",
            token_id="automation",
        )
        api = {
            "endpoint": ep.url,
            "fingerprint": ep.fingerprint,
            "token_id": made.token_id,
            "secret": made.secret,
        }
        client = Client(ApiTarget.from_inputs(api))
        client.delete(f"nodes/pve1/storage/local/content/{TEMPLATE}")
        client.post("pools", poolid="school")
        yield api, client
        client.session.close()


def props(api: dict[str, Any], **over: Any) -> dict[str, Any]:
    base = {
        "api": api,
        "name": "agenda",
        "template": TEMPLATE,
        "cores": 1,
        "memory": 512 * MIB,
        "disk": 8 * GIB,
        "storage": "local-lvm",
        "pool": "school",
        "vmid_first": 1200,
        "vmid_last": 1299,
        "vmid_hint": 1299,
        "bridge": "vmbr0",
        "vlan": 102,
        "address": "10.165.2.11/24",
        "gateway": "10.165.2.1",
        "unprivileged": True,
        "firewall_group": None,
        "tags": ["agenda"],
        "description": "",
        "onboot": True,
    }
    return {**base, **over}


def _containers(client: Client) -> dict[int, dict[str, Any]]:
    return {int(g["vmid"]): g for g in client.guests() if g.get("type") == "lxc"}


def _cleanup(client: Client) -> None:
    for vmid, guest in _containers(client).items():
        base = f"nodes/{guest['node']}/lxc/{vmid}"
        if guest["status"] == "running":
            client.post(f"{base}/status/stop")
        client.delete(base, purge=1)


def test_a_container_is_made_where_its_template_is_with_the_planned_vmid(lab):
    api, client = lab
    try:
        created = ContainerProvider().create(props(api))
        assert created.id == "1299" and created.outs["vmid"] == 1299
        guest = _containers(client)[1299]
        assert (guest["node"], guest["pool"], guest["name"]) == ("pve2", "school", "agenda")
        config = client.get("nodes/pve2/lxc/1299/config")
        assert (
            config["rootfs"].startswith("local-lvm:vm-1299-disk-0,")
            and "size=8G" in (config["rootfs"])
        )
        assert (config["memory"], config["unprivileged"], config["tags"]) == (512, 1, "agenda")
        read = ContainerProvider().read("1299", created.outs)
        # what Proxmox holds reads back as what was declared: no diff on the next plan
        assert not ContainerProvider().diff("1299", read.outs, props(api)).changes
    finally:
        _cleanup(client)


def test_a_taken_vmid_moves_the_container_down_to_the_next_free_one(lab):
    api, client = lab
    try:
        client.post(
            "nodes/pve2/lxc",
            vmid=1299,
            ostemplate=TEMPLATE,
            hostname="someone-else",
            rootfs="local-lvm:4",
        )
        created = ContainerProvider().create(props(api))
        assert created.id == "1298"
        assert {g["name"] for g in _containers(client).values()} == {"someone-else", "agenda"}
    finally:
        _cleanup(client)


def test_a_container_left_by_a_killed_run_is_taken_over_not_duplicated(lab):
    api, client = lab
    try:
        client.post(
            "nodes/pve2/lxc",
            vmid=1250,
            ostemplate=TEMPLATE,
            hostname="agenda",
            rootfs="local-lvm:8",
        )
        created = ContainerProvider().create(props(api, memory=1024 * MIB))
        assert created.id == "1250"
        assert list(_containers(client)) == [1250]
        assert client.get("nodes/pve2/lxc/1250/config")["memory"] == 1024  # configured
    finally:
        _cleanup(client)


def test_a_template_on_no_node_fails_naming_it(lab):
    api, client = lab
    missing = "local:vztmpl/debian-13-standard_13.1-1_amd64.tar.zst"
    with pytest.raises(ProxmoxError, match=f"container template '{missing}' not found"):
        ContainerProvider().create(props(api, template=missing))
    assert _containers(client) == {}


def test_delete_stops_a_running_container_and_removes_its_volumes(lab):
    api, client = lab
    created = ContainerProvider().create(props(api))
    client.post("nodes/pve2/lxc/1299/status/start")
    ContainerProvider().delete(created.id, created.outs)
    assert _containers(client) == {}
    volumes = client.get("nodes/pve2/storage/local-lvm/content")
    assert not [v for v in volumes if int(v.get("vmid") or 0) == 1299]
    ContainerProvider().delete(created.id, created.outs)  # gone already: nothing to do


def test_a_changed_address_updates_the_nic_and_keeps_its_mac(lab):
    api, client = lab
    try:
        created = ContainerProvider().create(props(api))
        before = client.get("nodes/pve2/lxc/1299/config")["net0"]
        news = props(api, address="10.165.2.30/24")
        ContainerProvider().update("1299", created.outs, news)
        after = client.get("nodes/pve2/lxc/1299/config")["net0"]
        mac = dict(p.split("=", 1) for p in before.split(","))["hwaddr"]
        assert "ip=10.165.2.30/24" in after and f"hwaddr={mac}" in after and "tag=102" in after
    finally:
        _cleanup(client)


# --- checks and diffs (no Proxmox) -----------------------------------------------------------

API = {
    "endpoint": "https://127.0.0.1:8006",
    "fingerprint": "AA",
    "token_id": "a@pve!t",
    "secret": "s",
}


def test_root_disk_shrink_is_refused_with_both_sizes():
    result = ContainerProvider().check(props(API), props(API, disk=4 * GIB))
    assert [(f.property, f.reason) for f in result.failures] == [
        (
            "disk",
            "container agenda: root disk cannot shrink from 8GiB to 4GiB (Proxmox only grows "
            "disks; to shrink, replace the container and restore its data)",
        )
    ]


def test_unprivileged_template_and_storage_changes_replace_memory_does_not():
    olds = {**props(API), "vmid": 1299}
    for key, value in (("unprivileged", False), ("template", "local:vztmpl/x.tar.zst")):
        assert ContainerProvider().diff("1299", olds, props(API, **{key: value})).replaces == [key]
    diff = ContainerProvider().diff("1299", olds, props(API, memory=1024 * MIB))
    assert diff.changes and not diff.replaces
