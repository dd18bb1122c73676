"""LXC containers on the simulator, through proxmoxer over HTTPS: create from a vztmpl
template, config with digests and pending changes, power, snapshots, clone, resize,
template, delete, and PVE's error texts."""

from __future__ import annotations

import re

import pytest
from simhelpers import error_of, ok, root_api, wait

TEMPLATE = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst"


@pytest.fixture(scope="module")
def root(pve_sim):
    return root_api(pve_sim["brieux"])


def _create(root, vmid, **kw):
    params = {
        "vmid": vmid,
        "ostemplate": TEMPLATE,
        "rootfs": "local-lvm:8",
        "hostname": f"ct{vmid}",
        "memory": 256,
        "net0": "name=eth0,bridge=vmbr0,ip=10.0.0.50/24,gw=10.0.0.254",
        **kw,
    }
    return ok(root, root.nodes("pve1").lxc.post(**params))


def test_create_from_template_and_read_back(root):
    status = _create(root, 600, cores=2)
    assert status["type"] == "vzcreate" and status["id"] == "600"
    config = root.nodes("pve1").lxc(600).config.get()
    assert config["rootfs"] == "local-lvm:vm-600-disk-0,size=8G"
    assert config["hostname"] == "ct600" and config["ostype"] == "debian"
    assert config["arch"] == "amd64" and config["cores"] == 2 and len(config["digest"]) == 40
    # as PVE writes it: `name` first, then the other keys sorted (regression)
    assert re.fullmatch(
        r"name=eth0,bridge=vmbr0,gw=10\.0\.0\.254,hwaddr=BC:24:11(:[0-9A-F]{2}){3},"
        r"ip=10\.0\.0\.50/24,type=veth",
        config["net0"],
    ), config["net0"]
    listed = {c["vmid"]: c for c in root.nodes("pve1").lxc.get()}
    assert listed[600]["status"] == "stopped" and listed[600]["type"] == "lxc"
    assert listed[600]["name"] == "ct600"
    assert 600 not in {v["vmid"] for v in root.nodes("pve1").qemu.get()}
    resources = {r["id"]: r for r in root.cluster.resources.get(type="vm")}
    assert resources["lxc/600"]["type"] == "lxc"
    vols = {v["volid"] for v in root.nodes("pve1").storage("local-lvm").content.get(vmid=600)}
    assert vols == {"local-lvm:vm-600-disk-0"}


def test_create_errors_as_pve(root):
    exc = error_of(root.nodes("pve1").lxc.post, vmid=9000, ostemplate=TEMPLATE)
    assert "VM 9000 already exists on node 'pve1'" in str(exc)
    exc = error_of(root.nodes("pve1").lxc.post, vmid=601, ostemplate="local:vztmpl/missing.tar.zst")
    assert "volume 'local:vztmpl/missing.tar.zst' does not exist" in str(exc)
    exc = error_of(root.nodes("pve1").lxc.post, vmid=601, ostemplate=TEMPLATE, rootfs="local:4")
    assert "storage 'local' does not support container directories" in str(exc)
    # a container is not a VM: /qemu/ does not find it, and the other way round
    exc = error_of(root.nodes("pve1").qemu(600).config.get)
    assert "Configuration file 'nodes/pve1/qemu-server/600.conf' does not exist" in str(exc)
    exc = error_of(root.nodes("pve1").lxc(9000).config.get)
    assert "Configuration file 'nodes/pve1/lxc/9000.conf' does not exist" in str(exc)


def test_config_digest_and_pending_while_running(root):
    api = root.nodes("pve1").lxc(600)
    digest = api.config.get()["digest"]
    api.config.put(description="tenant web", digest=digest)
    exc = error_of(api.config.put, memory=512, digest=digest)
    assert "detected modified configuration - file changed by other user?" in str(exc)
    ok(root, api.status.start.post())
    exc = error_of(api.status.start.post)
    assert "CT 600 already running" in str(exc)
    assert api.status.current.get()["status"] == "running"
    api.config.put(memory=512, unprivileged=1)  # memory hot-plugs, unprivileged waits
    assert api.config.get(current=1)["memory"] == 512
    assert "unprivileged" not in api.config.get(current=1)
    pending = {p["key"]: p for p in api.pending.get()}
    assert pending["unprivileged"]["pending"] == "1"
    ifaces = {i["name"]: i for i in api.interfaces.get()}
    assert ifaces["eth0"]["inet"] == "10.0.0.50/24"
    exc = error_of(root.nodes("pve1").lxc(600).delete)
    assert "CT 600 is running - destroy failed" in str(exc)
    ok(root, api.status.shutdown.post())
    assert api.config.get()["unprivileged"] == 1  # applied at the stop
    exc = error_of(api.status.shutdown.post)
    assert "CT 600 not running" in str(exc)
    assert error_of(api.interfaces.get).status_code == 500


def test_snapshots_resize_clone_template_delete(root):
    api = root.nodes("pve1").lxc(600)
    status = ok(root, api.snapshot.post(snapname="before", description="first"))
    assert status["type"] == "vzsnapshot"
    api.config.put(hostname="changed")
    ok(root, api.snapshot("before").rollback.post())
    assert api.config.get()["hostname"] == "ct600"
    assert [s["name"] for s in api.snapshot.get()] == ["before", "current"]
    ok(root, api.snapshot("before").delete())
    ok(root, api.resize.put(disk="rootfs", size="+2G"))
    assert api.config.get()["rootfs"].endswith("size=10G")
    exc = error_of(api.resize.put, disk="rootfs", size="1G")
    assert "unable to shrink disk size" in str(exc)
    assert api.feature.get(feature="snapshot")["hasFeature"] == 1
    ok(root, api.clone.post(newid=602, hostname="copy"))
    assert root.nodes("pve1").lxc(602).config.get()["rootfs"].startswith("local-lvm:vm-602-disk-0,")
    api.template.post()
    assert api.config.get()["rootfs"].startswith("local-lvm:base-600-disk-0")
    exc = error_of(api.status.start.post)
    assert "you can't start a CT if it's a template" in str(exc)
    ok(root, api.clone.post(newid=603, full=0))
    linked = root.nodes("pve1").lxc(603).config.get()["rootfs"]
    assert linked.startswith("local-lvm:base-600-disk-0/vm-603-disk-0")
    exc = error_of(api.delete)
    assert "base volume of CT 600 is still in use by linked clone 603" in str(exc)
    for vmid in (603, 602, 600):
        status = wait(root, root.nodes("pve1").lxc(vmid).delete(purge=1))
        assert status["exitstatus"] == "OK" and status["type"] == "vzdestroy"
    assert not [c for c in root.nodes("pve1").lxc.get() if c["vmid"] in (600, 602, 603)]
    vols = root.nodes("pve1").storage("local-lvm").content.get()
    assert not [v for v in vols if v.get("vmid") in (600, 602, 603)]


def test_container_firewall_scope(root):
    _create(root, 604)
    fw = root.nodes("pve1").lxc(604).firewall
    fw.rules.post(action="ACCEPT", type="in", proto="tcp", dport="80")
    assert [r["dport"] for r in fw.rules.get()] == ["80"]
    fw.options.put(enable=1)
    assert fw.options.get()["enable"] == 1
    ok(root, root.nodes("pve1").lxc(604).delete(purge=1))


def test_ha_resource_named_by_bare_vmid_gets_the_guest_type(root):
    """Regression (community.proxmox.proxmox_cluster_ha_resources posts `sid=700` then
    looks for `vm:700`): PVE completes a bare VMID with the guest's type."""
    _create(root, 640)
    ha = root.cluster.ha.resources
    ha.post(sid="640", state="started")
    ha.post(sid="9000", state="stopped")
    assert {r["sid"]: r["type"] for r in ha.get()} == {"ct:640": "ct", "vm:9000": "vm"}
    assert ha("640").get()["sid"] == "ct:640"
    exc = error_of(ha.post, sid="ct:640")
    assert "resource 'ct:640' already exists" in str(exc)
    exc = error_of(ha.post, sid="649")
    assert "unable to detect SID type for vmid 649" in str(exc)
    ha("640").delete()
    ha("vm:9000").delete()
    assert ha.get() == []
