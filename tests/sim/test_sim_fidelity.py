"""The simulator stores what Proxmox VE stores, not what the client sent (issue 15).

Drive and NIC lines are written back as PVE's print_drive / print_net write them (the
volume or `model=MAC` first, then the other options sorted, aliases resolved, booleans as
1/0), and `size=` comes from the volume for an existing one. Every storage type of the
schema can be configured with its own required options, defaults and content rules.
The exact lines below are those PVE 9.1 writes to /etc/pve/qemu-server/<vmid>.conf and
/etc/pve/storage.cfg for the same requests (PVE/API2/Qemu.pm create_disks,
PVE/QemuServer/Drive.pm print_drive, PVE/Storage/*Plugin.pm).
"""

from __future__ import annotations

import re

import pytest
from simhelpers import error_of, ok, root_api

MAC = r"BC:24:11(:[0-9A-F]{2}){3}"


@pytest.fixture(scope="module")
def root(pve_sim):
    return root_api(pve_sim["brieux"])


# --- drives ------------------------------------------------------------------------------


def test_disk_options_update_keeps_the_size_and_resize_works(root):
    node = root.nodes("pve1")
    ok(root, node.qemu.post(vmid=100, name="disks", scsi0="local-lvm:8", virtio3="local-lvm:4"))
    assert node.qemu(100).config.get()["virtio3"] == "local-lvm:vm-100-disk-1,size=4G"
    # the request: options of an existing disk, no size=
    node.qemu(100).config.put(virtio3="local-lvm:vm-100-disk-1,backup=0,ro=1,aio=native")
    line = node.qemu(100).config.get()["virtio3"]
    assert line == "local-lvm:vm-100-disk-1,aio=native,backup=0,ro=1,size=4G"
    ok(root, node.qemu(100).resize.put(disk="virtio3", size="+1G"))
    assert node.qemu(100).config.get()["virtio3"] == (
        "local-lvm:vm-100-disk-1,aio=native,backup=0,ro=1,size=5G"
    )
    volume = node.storage("local-lvm").content("local-lvm:vm-100-disk-1").get()
    assert volume["size"] == 5 * 1024**3


def test_drive_lines_are_canonical(root):
    node = root.nodes("pve1")
    ok(
        root,
        node.qemu.post(
            vmid=101,
            name="canon",
            scsi0="volume=local-lvm:8,ssd=true,iothread=on,discard=on,cache=none",
            ide2="local:iso/debian-12.8.0-amd64-netinst.iso,media=cdrom",
            ide0="none,media=cdrom,size=1G",
            scsi1="local-lvm:cloudinit,format=raw",
        ),
    )
    config = node.qemu(101).config.get()
    # `volume` is an alias of the drive's file; booleans are stored as 1/0; options sorted
    assert (
        config["scsi0"] == "local-lvm:vm-101-disk-0,cache=none,discard=on,iothread=1,size=8G,ssd=1"
    )
    # an existing volume (an ISO image) gets its size from the volume
    assert config["ide2"] == "local:iso/debian-12.8.0-amd64-netinst.iso,media=cdrom,size=660M"
    assert config["ide0"] == "none,media=cdrom"  # an empty drive has no size
    assert config["scsi1"] == "local-lvm:vm-101-cloudinit,media=cdrom"  # format dropped


def test_attaching_an_existing_volume_takes_its_size_from_the_volume(root):
    node = root.nodes("pve1")
    ok(root, node.qemu.post(vmid=102, name="attach"))
    node.storage("local-lvm").content.post(vmid=102, filename="vm-102-disk-7", size="2G")
    # a volume new to the key: PVE reads its size, whatever the client claims
    node.qemu(102).config.put(scsi1="local-lvm:vm-102-disk-7,size=99G,backup=0")
    assert node.qemu(102).config.get()["scsi1"] == "local-lvm:vm-102-disk-7,backup=0,size=2G"
    exc = error_of(node.qemu(102).config.put, scsi2="local-lvm:vm-102-disk-8")
    assert exc.status_code == 400 and "volume 'local-lvm:vm-102-disk-8' does not exist" in str(
        exc.errors
    )


def test_nic_lines_are_canonical_and_get_a_mac(root):
    node = root.nodes("pve1")
    ok(
        root,
        node.qemu.post(
            vmid=103,
            name="nics",
            net0="bridge=vmbr0,model=virtio,firewall=true,tag=10",
            net1="e1000=AA:BB:CC:DD:EE:01,bridge=vmbr0",
            net2="model=virtio,macaddr=BC:24:11:00:00:02,link_down=yes,bridge=vmbr0",
        ),
    )
    config = node.qemu(103).config.get()
    assert re.fullmatch(rf"virtio={MAC},bridge=vmbr0,firewall=1,tag=10", config["net0"])
    assert config["net1"] == "e1000=AA:BB:CC:DD:EE:01,bridge=vmbr0"
    assert config["net2"] == "virtio=BC:24:11:00:00:02,bridge=vmbr0,link_down=1"
    # a NIC updated without its MAC gets a new one, as on PVE (parse_net makes one up)
    node.qemu(103).config.put(net1="e1000,bridge=vmbr0,rate=12.5")
    assert re.fullmatch(rf"e1000={MAC},bridge=vmbr0,rate=12.5", node.qemu(103).config.get()["net1"])


def test_clone_and_template_keep_canonical_lines(root):
    node = root.nodes("pve1")
    ok(root, node.qemu(101).clone.post(newid=104, name="canon-copy"))
    config = node.qemu(104).config.get()
    assert (
        config["scsi0"] == "local-lvm:vm-104-disk-0,cache=none,discard=on,iothread=1,size=8G,ssd=1"
    )
    ok(root, node.qemu(104).template.post())
    assert node.qemu(104).config.get()["scsi0"] == (
        "local-lvm:base-104-disk-0,cache=none,discard=on,iothread=1,size=8G,ssd=1"
    )


# --- storage types -----------------------------------------------------------------------

# (type, the parameters a client sends, what GET /storage/{id} answers, storage.cfg's content)
STORAGES = [
    ("dir", {"path": "/srv/images"}, {"path": "/srv/images", "content": "images,rootdir"}),
    ("btrfs", {"path": "/mnt/btrfs"}, {"path": "/mnt/btrfs", "content": "images,rootdir"}),
    (
        "nfs",
        {"server": "10.0.0.50", "export": "/export/pve"},
        {
            "server": "10.0.0.50",
            "export": "/export/pve",
            "path": "/mnt/pve/st-nfs",
            "content": "images",
            "shared": 1,
        },
    ),
    (
        "cifs",
        {"server": "10.0.0.51", "share": "pve", "username": "svc", "password": "s3cret-pw"},
        {
            "server": "10.0.0.51",
            "share": "pve",
            "username": "svc",
            "path": "/mnt/pve/st-cifs",
            "content": "images",
            "shared": 1,
        },
    ),
    (
        "cephfs",
        {"monhost": "10.0.0.60", "keyring": "AQD-secret-key=="},
        {"monhost": "10.0.0.60", "path": "/mnt/pve/st-cephfs", "content": "backup", "shared": 1},
    ),
    ("lvm", {"vgname": "vg0"}, {"vgname": "vg0", "content": "images,rootdir"}),
    (
        "lvmthin",
        {"vgname": "pve", "thinpool": "data2"},
        {"vgname": "pve", "thinpool": "data2", "content": "images,rootdir"},
    ),
    ("zfspool", {"pool": "rpool/data"}, {"pool": "rpool/data", "content": "images,rootdir"}),
    (
        "zfs",
        {
            "portal": "10.0.0.70",
            "target": "iqn.2003-01.org.example:zfs",
            "pool": "tank",
            "blocksize": "4k",
            "iscsiprovider": "LIO",
            "lio_tpg": "tpg1",
        },
        {
            "portal": "10.0.0.70",
            "target": "iqn.2003-01.org.example:zfs",
            "pool": "tank",
            "blocksize": "4k",
            "iscsiprovider": "LIO",
            "lio_tpg": "tpg1",
            "content": "images",
            "shared": 1,
        },
    ),
    (
        "iscsi",
        {"portal": "10.0.0.71", "target": "iqn.2003-01.org.example:lun"},
        {
            "portal": "10.0.0.71",
            "target": "iqn.2003-01.org.example:lun",
            "content": "images",
            "shared": 1,
        },
    ),
    (
        "iscsidirect",
        {"portal": "10.0.0.72", "target": "iqn.2003-01.org.example:direct"},
        {
            "portal": "10.0.0.72",
            "target": "iqn.2003-01.org.example:direct",
            "content": "images",
            "shared": 1,
        },
    ),
    (
        "rbd",
        {"pool": "vms", "monhost": "10.0.0.80", "username": "admin", "krbd": 1},
        {
            "pool": "vms",
            "monhost": "10.0.0.80",
            "username": "admin",
            "krbd": 1,
            "content": "images",
            "shared": 1,
        },
    ),
    (
        "pbs",
        {
            "server": "10.0.0.90",
            "datastore": "store1",
            "username": "backup@pbs",
            "password": "pbs-secret",
            "fingerprint": ":".join(["AB"] * 32),
        },
        {
            "server": "10.0.0.90",
            "datastore": "store1",
            "username": "backup@pbs",
            "fingerprint": ":".join(["AB"] * 32),
            "content": "backup",
            "shared": 1,
        },
    ),
    (
        "esxi",
        {"server": "10.0.0.95", "username": "root", "password": "esxi-pw", "port": 8443},
        {"server": "10.0.0.95", "username": "root", "port": 8443, "content": "import"},
    ),
]


@pytest.mark.parametrize(("kind", "params", "stored"), STORAGES, ids=[s[0] for s in STORAGES])
def test_every_storage_type_is_created_read_updated_and_deleted(root, kind, params, stored):
    sid = f"st-{kind}"
    answer = root.storage.post(storage=sid, type=kind, **params)
    assert answer == {"storage": sid, "type": kind}
    got = root.storage(sid).get()
    digest = got.pop("digest")
    assert got == {"storage": sid, "type": kind, **stored}  # no password nor key stored
    assert sid in [s["storage"] for s in root.storage.get(type=kind)]
    root.storage(sid).put(disable=1, digest=digest)
    assert root.storage(sid).get()["disable"] == 1
    root.storage(sid).put(delete="disable")
    assert "disable" not in root.storage(sid).get()
    root.storage(sid).delete()
    assert error_of(root.storage(sid).get).status_code == 500


@pytest.mark.parametrize(
    ("kind", "params", "message"),
    [
        ("nfs", {"server": "10.0.0.50"}, "missing value for required option 'export'"),
        ("cifs", {"share": "pve"}, "missing value for required option 'server'"),
        ("pbs", {"server": "10.0.0.90"}, "missing value for required option 'datastore'"),
        ("lvm", {}, "missing value for required option 'vgname'"),
        ("lvmthin", {"vgname": "pve"}, "missing value for required option 'thinpool'"),
        ("zfspool", {}, "missing value for required option 'pool'"),
        ("iscsi", {"portal": "10.0.0.71"}, "missing value for required option 'target'"),
        ("dir", {}, "missing value for required option 'path'"),
        ("btrfs", {}, "missing value for required option 'path'"),
        ("esxi", {"server": "10.0.0.95"}, "missing value for required option 'username'"),
        ("esxi", {"server": "10.0.0.95", "username": "root"}, "missing password"),
        ("nfs", {"server": "h", "export": "/e", "vgname": "vg"}, "unexpected property 'vgname'"),
        ("lvmthin", {"vgname": "pve", "thinpool": "d", "content": "iso"}, "content type 'none'"),
        ("pbs", {"server": "h", "datastore": "d", "content": "backup,none"}, "combine 'none'"),
        ("dir", {"path": "/srv/x", "format": "raw", "content": "images"}, None),
    ],
)
def test_storage_create_refusals_name_the_option(root, kind, params, message):
    sid = f"bad-{kind}"
    if message is None:  # the control case: the same call, valid, is accepted
        root.storage.post(storage=sid, type=kind, **params)
        root.storage(sid).delete()
        return
    exc = error_of(root.storage.post, storage=sid, type=kind, **params)
    assert exc.status_code == 500 and message in str(exc)
    assert sid not in [s["storage"] for s in root.storage.get()]


def test_storage_content_rules_and_fixed_options(root):
    # content types the type does not support are dropped (PVE warns), the rest sorted
    root.storage.post(
        storage="thin2", type="lvmthin", vgname="pve", thinpool="t2", content="rootdir,iso,images"
    )
    assert root.storage("thin2").get()["content"] == "images,rootdir"
    root.storage.post(storage="nfs2", type="nfs", server="10.0.0.50", export="/e2")
    exc = error_of(root.storage("nfs2").put, server="10.0.0.99")
    assert "update storage failed: can't change value of fixed parameter 'server'" in str(exc)
    exc = error_of(root.storage("nfs2").put, content="images", delete="content")
    assert "cannot set and delete property 'content' at the same time!" in str(exc)
    root.storage("nfs2").put(content="iso,backup", options="vers=4.2")
    got = root.storage("nfs2").get()
    assert got["content"] == "backup,iso" and got["options"] == "vers=4.2"
    assert got["server"] == "10.0.0.50"  # unchanged
    # a storage limited to other nodes is not listed on this one
    root.storage("nfs2").put(nodes="pve2")
    assert "nfs2" not in [s["storage"] for s in root.nodes("pve1").storage.get()]
    assert "nfs2" in [s["storage"] for s in root.nodes("pve2").storage.get()]
    root.storage("nfs2").delete()
    root.storage("thin2").delete()


def test_guest_disk_on_a_new_storage(root):
    node = root.nodes("pve1")
    root.storage.post(storage="tank", type="zfspool", pool="tank/vm", content="images")
    ok(root, node.qemu.post(vmid=105, name="on-zfs", scsi0="tank:2,discard=on"))
    assert node.qemu(105).config.get()["scsi0"] == "tank:vm-105-disk-0,discard=on,size=2G"
    root.storage.post(storage="backups", type="pbs", server="10.0.0.90", datastore="b")
    exc = error_of(node.qemu(105).config.put, scsi1="backups:1")
    assert "does not support vm images" in str(exc)


# --- found by the community.proxmox conformance playbook ----------------------------------


def test_sdn_changes_under_the_global_lock_need_its_token(root):
    token = root.cluster.sdn.lock.post()
    assert error_of(root.cluster.sdn.lock.post).status_code == 500  # held already
    exc = error_of(root.cluster.sdn.zones.post, zone="lockz", type="simple")
    assert "invalid lock token provided!" in str(exc)
    root.cluster.sdn.zones.post(zone="lockz", type="simple", **{"lock-token": token})
    ok(root, root.cluster.sdn.put(**{"lock-token": token, "release-lock": 1}))
    assert root.cluster.sdn.zones("lockz").get()["type"] == "simple"
    root.cluster.sdn.zones.post(zone="lockz2", type="simple")  # no lock held: no token needed
    exc = error_of(root.cluster.sdn.lock.post)
    assert "cannot acquire lock, there are pending changes" in str(exc)
    token = root.cluster.sdn.lock.post(**{"allow-pending": 1})
    root.cluster.sdn.rollback.post(**{"lock-token": token, "release-lock": 1})
    assert "lockz2" not in [z["zone"] for z in root.cluster.sdn.zones.get()]


def test_repeated_list_parameters_and_volume_ids_with_slashes(root):
    # proxmoxer sends a Python list as a repeated parameter, as community.proxmox does
    root.storage.post(storage="rep", type="nfs", server="10.0.0.5", export="/r",
                      content=["iso", "images"], nodes=["pve1", "pve2"])  # fmt: skip
    assert root.storage("rep").get()["content"] == "images,iso"
    exc = error_of(root.access.users.post, userid=["a@pve", "b@pve"])
    assert exc.status_code == 400  # not a list format: refused
    root.storage("rep").delete()
    # a volume ID sent unencoded in the path (local:iso/x.iso), as proxmoxer sends it
    content = root.nodes("pve1").storage("local").content
    ok(root, content.delete("local:iso/debian-12.8.0-amd64-netinst.iso"))
    assert "local:iso/debian-12.8.0-amd64-netinst.iso" not in [v["volid"] for v in content.get()]


def test_node_dns_and_cluster_join_information(root, pve_sim):
    root.nodes("pve1").dns.put(search="brieux.example.org", dns1="10.0.0.254")
    assert root.nodes("pve1").dns.get() == {"search": "brieux.example.org", "dns1": "10.0.0.254"}
    join = root.cluster.config.join.get()
    assert [n["name"] for n in join["nodelist"]] == ["pve1", "pve2"]
    assert {n["pve_fp"] for n in join["nodelist"]} == {pve_sim["brieux"].fingerprint}
    assert join["preferred_node"] == "pve1" and join["totem"]["cluster_name"] == "brieux"
