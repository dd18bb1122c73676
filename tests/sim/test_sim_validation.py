"""Validation driven by the schema: Proxmox's 400 shape, property strings, named formats,
and 501 for methods the schema has but the simulator does not simulate."""

from __future__ import annotations

import pytest
import requests
import urllib3
from simhelpers import error_of, root_api

from kloudctl.sim.validate import NOT_IN_SCHEMA

urllib3.disable_warnings()


def _post(pve_sim, path, data):
    ep = pve_sim["brieux"]
    root = root_api(ep)
    # reuse proxmoxer's ticket for a raw request, to see the exact body
    auth = root._store["session"].auth  # proxmoxer's ProxmoxHTTPAuth
    cookies = {"PVEAuthCookie": auth.pve_auth_ticket}
    headers = {"CSRFPreventionToken": auth.csrf_prevention_token}
    return requests.post(
        f"{ep.url}/api2/json{path}", data=data, cookies=cookies, headers=headers, verify=False
    )


def test_error_shape_for_unknown_parameter(pve_sim):
    r = _post(pve_sim, "/nodes/pve1/qemu", {"vmid": "300", "bogus": "1"})
    assert r.status_code == 400
    assert r.reason == "Parameter verification failed."
    body = r.json()
    assert body["data"] is None
    assert body["message"] == "Parameter verification failed.\n"
    assert body["errors"] == {"bogus": NOT_IN_SCHEMA}


@pytest.mark.parametrize(
    "params, field, message",
    [
        ({"vmid": "99"}, "vmid", "value must have a minimum value of 100"),
        ({"vmid": "abc"}, "vmid", "type check ('integer') failed - got 'abc'"),
        (
            {"vmid": "301", "ostype": "beos"},
            "ostype",
            "value 'beos' does not have a value in the enumeration",
        ),
        (
            {"vmid": "301", "onboot": "maybe"},
            "onboot",
            "type check ('boolean') failed - got 'maybe'",
        ),
        ({"vmid": "301", "name": "bad_name!"}, "name", "value does not look like a valid DNS name"),
        (
            {"vmid": "301", "net0": "virtio,bridge=vmbr0,tag=0"},
            "net0",
            "net0.tag: value must have a minimum value of 1",
        ),
        ({"vmid": "301", "net0": "virtio,bridge=vmbr0,speed=9"}, "net0", "unknown key 'speed'"),
        ({"vmid": "301", "net0": "virtio=ZZ:24:11:00:00:01"}, "net0", "net0.macaddr"),
        (
            {"vmid": "301", "scsi0": "local-lvm:32,cache=fast"},
            "scsi0",
            "scsi0.cache: value 'fast' does not have a value",
        ),
        ({"vmid": "301", "ipconfig0": "ip=10.0.0.5,gw=10.0.0.1"}, "ipconfig0", "ipconfig0.ip"),
        ({"vmid": "301", "ipconfig0": "ip=dhcp,mtu=1500"}, "ipconfig0", "unknown key 'mtu'"),
        (
            {"vmid": "301", "memory": "8"},
            "memory",
            "memory.current: value must have a minimum value of 16",
        ),
        ({"vmid": "301", "tags": "a b;c!"}, "tags", "invalid tag"),
        ({"vmid": "301", "storage": "-bad-"}, "storage", "storage ID"),
        ({"vmid": "301", "cores": "0"}, "cores", "value must have a minimum value of 1"),
        ({}, "vmid", "property is missing and it is not optional"),
    ],
)
def test_parameter_errors(pve_sim, params, field, message):
    r = _post(pve_sim, "/nodes/pve1/qemu", params)
    assert r.status_code == 400, r.text
    assert message in r.json()["errors"][field]


def test_valid_property_strings_are_accepted(pve_sim):
    root = root_api(pve_sim["brieux"])
    upid = root.nodes("pve1").qemu.post(
        vmid=302,
        name="ok-vm",
        memory="2048",
        cores=2,
        scsi0="local-lvm:8,discard=on,ssd=1",
        net0="virtio,bridge=vmbr0,tag=20,firewall=1",
        ipconfig0="ip=10.161.2.50/24,gw=10.161.2.1",
        ide2="local-lvm:cloudinit",
        sshkeys="ssh-ed25519%20AAAAC3Nza%20me%40host",
        ciuser="admin",
    )
    assert upid.startswith("UPID:pve1:")


@pytest.mark.expects_501
def test_not_simulated_method_answers_501_naming_it(pve_sim):
    root = root_api(pve_sim["brieux"])
    exc = error_of(root.nodes("pve1").ceph.osd.get)
    assert exc.status_code == 501
    assert "GET /nodes/{node}/ceph/osd" in str(exc) and "not simulated" in str(exc)
    # a path outside the schema is not implemented either, as on PVE
    exc = error_of(root.nodes("pve1").nosuchthing.get)
    assert exc.status_code == 501
    # a method the path does not have
    exc = error_of(root.version.post)
    assert exc.status_code == 501


def test_snippets_cannot_be_uploaded(pve_sim, tmp_path):
    """As on PVE, upload accepts iso, vztmpl and import only (the schema's enum says so)."""
    root = root_api(pve_sim["brieux"])
    (tmp_path / "user.yaml").write_text("#cloud-config\n")
    with open(tmp_path / "user.yaml", "rb") as f:
        exc = error_of(
            root.nodes("pve1").storage("local").upload.post, content="snippets", filename=f
        )
    assert exc.status_code == 400 and "content" in str(exc)
