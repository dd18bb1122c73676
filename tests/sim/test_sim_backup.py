"""Backups and restores on the simulator: `vzdump` writes a real archive into the `dump/`
folder of a directory storage, a restore (`archive=` for QEMU, `restore=1` for LXC) brings
the guest back from it, on the same cabinet or on another one the file was copied to;
backup jobs and the guests no job covers."""

from __future__ import annotations

import re
import shutil
import time

import pytest
from simhelpers import error_of, ok, root_api, wait

from kloudctl.sim.testing import running_sim

ARCHIVE = re.compile(r"^vzdump-qemu-700-\d{4}_\d\d_\d\d-\d\d_\d\d_\d\d\.vma\.zst$")


@pytest.fixture(scope="module")
def two(tmp_path_factory, sim_fleet):
    state = tmp_path_factory.mktemp("sims")
    with running_sim(
        ["brieux", "mortree"], fleet=sim_fleet, state_dir=state, task_seconds=0.05
    ) as sim:
        yield sim, state


def _backups(api, vmid=None):
    params = {"content": "backup", **({"vmid": vmid} if vmid else {})}
    return api.nodes("pve1").storage("local").content.get(**params)


def test_vzdump_writes_an_archive_and_restore_reproduces_the_config(two):
    sim, state = two
    root = root_api(sim["brieux"])
    node = root.nodes("pve1")
    ok(root, node.qemu(9000).clone.post(newid=700, name="council-web"))
    node.qemu(700).config.put(
        memory="3072", cores=2, description="mairie\nsite web", tags="council"
    )
    original = node.qemu(700).config.get()
    status = ok(
        root,
        node.vzdump.post(
            vmid=700,
            storage="local",
            compress="zstd",
            mode="snapshot",
            **{"notes-template": "{{guestname}} on {{node}}"},
        ),
    )
    assert status["type"] == "vzdump" and status["id"] == "700"
    log = [line["t"] for line in node.tasks(status["upid"]).log.get(limit=100)]
    assert any("INFO: Starting Backup of VM 700 (qemu)" in t for t in log)
    assert log[-1] == "TASK OK"
    dump = state / "brieux" / "storage" / "pve1" / "local" / "dump"
    archives = [p for p in dump.iterdir() if ARCHIVE.match(p.name)]
    assert len(archives) == 1 and archives[0].stat().st_size > 4096
    archive = archives[0]
    assert archive.with_name(archive.name.replace(".vma.zst", ".log")).exists()
    assert archive.with_name(archive.name + ".notes").read_text() == "council-web on pve1"
    [entry] = _backups(root, 700)
    assert entry["volid"] == f"local:backup/{archive.name}"
    assert entry["format"] == "vma.zst" and entry["subtype"] == "qemu"
    assert entry["notes"] == "council-web on pve1" and entry["size"] == archive.stat().st_size
    conf = node.vzdump.extractconfig.get(volume=entry["volid"])
    assert "memory: 3072" in conf and "#mairie" in conf and "name: council-web" in conf

    status = ok(root, node.qemu.post(vmid=701, archive=entry["volid"]))
    assert status["type"] == "qmrestore"
    restored = node.qemu(701).config.get()
    for key in ("memory", "cores", "name", "description", "tags", "net0", "boot", "ostype"):
        assert restored[key] == original[key], key
    # 700 is a linked clone of the template; a restore writes a full volume of its own
    assert original["scsi0"] == "local-lvm:base-9000-disk-0/vm-700-disk-0,size=3G"
    assert restored["scsi0"] == "local-lvm:vm-701-disk-0,size=3G"
    disks = {v["volid"]: v for v in node.storage("local-lvm").content.get(vmid=701)}
    assert disks["local-lvm:vm-701-disk-0"]["size"] == 3 * 1024**3


def test_restore_refuses_an_existing_vmid_unless_forced(two):
    sim, _ = two
    root = root_api(sim["brieux"])
    node = root.nodes("pve1")
    volid = _backups(root, 700)[0]["volid"]
    exc = error_of(node.qemu.post, vmid=700, archive=volid)
    assert "unable to restore VM 700 - VM 700 already exists on node 'pve1'" in str(exc)
    # a drive beside the archive is refused, as by qemu-server (the archive brings its own)
    exc = error_of(node.qemu.post, vmid=702, archive=volid, memory=1024, scsi1="local-lvm:1")
    assert exc.status_code == 400
    assert exc.errors == {"scsi1": "option conflicts with option 'archive'"}
    exc = error_of(
        node.qemu.post, vmid=702, archive="local:backup/vzdump-qemu-1-2020_01_01-00_00_00.vma"
    )
    assert "volume 'local:backup/vzdump-qemu-1-2020_01_01-00_00_00.vma' does not exist" in str(exc)
    ok(root, node.qemu(700).status.start.post())
    exc = error_of(node.qemu.post, vmid=700, archive=volid, force=1)
    assert "unable to restore VM 700 - vm is running" in str(exc)
    ok(root, node.qemu(700).status.stop.post())
    node.qemu(700).config.put(memory="1024")
    ok(root, node.qemu.post(vmid=700, archive=volid, force=1))
    assert node.qemu(700).config.get()["memory"] == "3072"  # the backup's, not the changed one


def test_restore_overrides_the_archives_config_but_never_its_drives(two):
    """qemu-server >= 7.2: options given with `archive=` are written over the restored
    config (restore_merge_config), after `unique` renewed the identity; a NIC given without
    a MAC address gets a new one (add_random_macs); drives are refused, each by name, and
    nothing is made; a NIC on a bridge the node lacks is refused too."""
    sim, _ = two
    root = root_api(sim["brieux"])
    node = root.nodes("pve1")
    ok(root, node.qemu(9000).clone.post(newid=706, name="override-source"))
    node.qemu(706).config.put(net0="virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1,tag=100")
    ok(root, node.vzdump.post(vmid=706, storage="local"))
    (backup,) = _backups(root, 706)
    volid = backup["volid"]
    guests = {r["vmid"] for r in root.cluster.resources.get(type="vm")}
    for drive in ("ide0", "sata1", "virtio2", "efidisk0", "tpmstate0"):
        exc = error_of(node.qemu.post, vmid=707, archive=volid, **{drive: "local-lvm:1"})
        assert exc.status_code == 400, drive
        assert exc.errors == {drive: "option conflicts with option 'archive'"}
    exc = error_of(node.qemu.post, vmid=707, archive=volid, net0="virtio,bridge=vmbr9")
    assert exc.status_code == 400 and "bridge 'vmbr9' does not exist" in str(exc.errors)
    assert {r["vmid"] for r in root.cluster.resources.get(type="vm")} == guests

    nic = "virtio=BC:24:11:AA:BB:CC,bridge=vmbr0,firewall=1,tag=3999"
    ok(
        root,
        node.qemu.post(
            vmid=707, archive=volid, unique=1, net0=nic, net1="e1000,bridge=vmbr0", memory=1024
        ),
    )
    restored = node.qemu(707).config.get()
    assert restored["net0"] == nic  # the given MAC address wins over unique's new one
    assert re.fullmatch(r"e1000=BC:24:11:[0-9A-F:]{8},bridge=vmbr0", restored["net1"])
    assert restored["memory"] == "1024" and restored["name"] == "override-source"
    original = node.qemu(706).config.get()
    assert restored["vmgenid"] != original["vmgenid"]  # unique still renewed the identity
    for vmid in (707, 706):
        ok(root, node.qemu(vmid).delete())
    ok(root, node.storage("local").content(volid).delete())


def test_restore_from_an_archive_copied_to_another_cabinet(two):
    sim, state = two
    source = root_api(sim["brieux"])
    entry = _backups(source, 700)[0]
    name = entry["volid"].split("/", 1)[1]
    src = state / "brieux" / "storage" / "pve1" / "local" / "dump" / name
    target_dump = state / "mortree" / "storage" / "pve1" / "local" / "dump"
    target_dump.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, target_dump / name)  # what replication does between cabinets
    target = root_api(sim["mortree"])
    assert [b["volid"] for b in _backups(target)] == [entry["volid"]]
    ok(target, target.nodes("pve1").qemu.post(vmid=700, archive=entry["volid"]))
    config = target.nodes("pve1").qemu(700).config.get()
    assert config["name"] == "council-web" and config["memory"] == "3072"
    assert config["scsi0"].startswith(target.nodes("pve1").qemu(9000).config.get()["scsi0"][:9])


def test_unique_restore_renews_only_the_identity(two):
    """unique=1 (regression): a new SMBIOS UUID (its other fields kept), VM generation id
    and MAC; `meta` (the creation time) and everything else as backed up. A guest of its
    own, so that the test holds alone."""
    sim, _ = two
    root = root_api(sim["brieux"])
    node = root.nodes("pve1")
    ok(root, node.qemu(9000).clone.post(newid=704, name="unique-source"))
    node.qemu(704).config.put(
        smbios1="uuid=11111111-2222-4333-8444-555555555555,serial=Q0xFUg==,base64=1",
    )
    ok(root, node.vzdump.post(vmid=704, storage="local"))
    (backup,) = _backups(root, 704)
    original = node.qemu(704).config.get()
    time.sleep(1.1)  # a `meta` made anew would carry a later ctime (seconds)
    ok(root, node.qemu.post(vmid=705, archive=backup["volid"], unique=1))
    restored = node.qemu(705).config.get()
    assert restored["meta"] == original["meta"]
    assert restored["smbios1"].startswith("uuid=") and restored["smbios1"].endswith(
        ",serial=Q0xFUg==,base64=1"
    )
    assert restored["smbios1"] != original["smbios1"]
    assert restored["vmgenid"] != original["vmgenid"]
    assert restored["net0"] != original["net0"]
    same = set(original) - {"smbios1", "vmgenid", "net0", "digest", "scsi0", "ide2"}
    assert {k: restored[k] for k in same} == {k: original[k] for k in same}
    for vmid in (705, 704):
        ok(root, node.qemu(vmid).delete())
    ok(root, node.storage("local").content(backup["volid"]).delete())


def test_container_backup_and_restore(two):
    sim, _ = two
    root = root_api(sim["brieux"])
    node = root.nodes("pve1")
    ok(
        root,
        node.lxc.post(
            vmid=710,
            ostemplate="local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            rootfs="local-lvm:2",
            hostname="tenant-a",
            memory=384,
        ),
    )
    ok(root, node.vzdump.post(vmid=710, compress="gzip", protected=1, storage="local"))
    [entry] = _backups(root, 710)
    assert entry["volid"].endswith(".tar.gz") and entry["subtype"] == "lxc"
    assert entry["protected"] == 1
    exc = error_of(node.lxc.post, vmid=710, ostemplate=entry["volid"], restore=1)
    assert "unable to restore CT 710 - CT 710 already exists on node 'pve1'" in str(exc)
    ok(root, node.lxc.post(vmid=711, ostemplate=entry["volid"], restore=1))
    config = node.lxc(711).config.get()
    assert config["hostname"] == "tenant-a" and config["memory"] == 384
    assert config["rootfs"].startswith("local-lvm:vm-711-disk-0,")
    # a protected backup cannot be removed until unprotected
    volume = node.storage("local").content(entry["volid"].replace("/", "%2F"))
    exc = error_of(volume.delete)
    assert f"volume '{entry['volid']}' is protected" in str(exc)
    volume.put(protected=0, notes="kept for the audit")
    assert volume.get()["notes"] == "kept for the audit"
    ok(root, volume.delete())
    assert not _backups(root, 710)


def test_vzdump_errors(two):
    sim, _ = two
    root = root_api(sim["brieux"])
    node = root.nodes("pve1")
    exc = error_of(node.vzdump.post, vmid=700, storage="local-lvm")
    assert "storage 'local-lvm' does not support backups" in str(exc)
    status = wait(root, node.vzdump.post(vmid=799))
    assert status["exitstatus"] == "job errors"
    log = [line["t"] for line in node.tasks(status["upid"]).log.get(limit=100)]
    assert any(
        "ERROR: Backup of VM 799 failed - unable to find configuration file for VM 799" in t
        for t in log
    )


def test_backup_jobs_and_not_backed_up(two):
    sim, _ = two
    root = root_api(sim["brieux"])
    before = {g["vmid"] for g in root.cluster("backup-info")("not-backed-up").get()}
    assert 700 in before and 9000 not in before  # templates are not counted
    root.cluster.backup.post(id="nightly", schedule="02:30", vmid="700", storage="local")
    exc = error_of(root.cluster.backup.post, id="nightly", schedule="03:00", all=1)
    assert "job 'nightly' already exists" in str(exc)
    job = root.cluster.backup("nightly").get()
    assert job["schedule"] == "02:30" and job["type"] == "vzdump" and job["enabled"] == 1
    after = {g["vmid"] for g in root.cluster("backup-info")("not-backed-up").get()}
    assert after == before - {700}
    tree = root.cluster.backup("nightly").included_volumes.get()
    [guest] = tree["children"]
    assert guest["id"] == 700 and guest["children"][0]["id"] == "scsi0"
    root.cluster.backup("nightly").put(vmid="700,701", comment="council")
    root.cluster.backup("nightly").put(delete="comment")
    job = root.cluster.backup("nightly").get()
    assert job["vmid"] == "700,701" and "comment" not in job
    assert not {700, 701} & {g["vmid"] for g in root.cluster("backup-info")("not-backed-up").get()}
    root.cluster.backup("nightly").delete()
    assert not root.cluster.backup.get()


def test_a_failed_backup_or_restore_leaves_nothing_behind(two):
    sim, _ = two
    root = root_api(sim["brieux"])
    node = root.nodes("pve1")
    before = {b["volid"] for b in _backups(root)}
    sim.fault("brieux", "task_failure", count=1, message="simulated storage failure")
    status = wait(root, node.vzdump.post(vmid=700, storage="local"))
    assert status["exitstatus"] == "simulated storage failure"
    assert "lock" not in node.qemu(700).config.get()  # the backup lock went with the task
    assert {b["volid"] for b in _backups(root)} == before
    volid = sorted(before)[0]
    sim.fault("brieux", "task_failure", count=1, message="simulated restore failure")
    status = wait(root, node.qemu.post(vmid=720, archive=volid))
    assert status["exitstatus"] == "simulated restore failure"
    assert 720 not in {r["vmid"] for r in root.cluster.resources.get(type="vm")}
    assert not node.storage("local-lvm").content.get(vmid=720)
    sim.fault("brieux", "task_failure", count=1, message="simulated restore failure")
    status = wait(root, node.qemu.post(vmid=700, archive=volid, force=1))
    config = node.qemu(700).config.get()  # a failed forced restore keeps the old guest
    assert "lock" not in config and config["name"] == "council-web"
    assert node.storage("local-lvm").content.get(vmid=700)


def test_a_worker_that_dies_ends_its_task_with_the_error(two):
    """A task whose work fails unexpectedly (here the backup storage's `dump/` folder is a
    file, as when a storage is mounted wrongly) ends with an error status, as a PVE worker's
    `die` does: a client polling it never waits for a task nobody runs any more."""
    sim, _ = two
    root = root_api(sim["brieux"])
    node = root.nodes("pve1")
    dump = sim.storage_folder("brieux", "pve1", "local") / "dump"
    moved = dump.with_name("dump.moved")
    dump.rename(moved)
    try:
        dump.write_text("not a folder")
        status = wait(root, node.vzdump.post(vmid=700, storage="local"))
        assert status["status"] == "stopped" and status["exitstatus"] != "OK"
        assert "lock" not in node.qemu(700).config.get()  # the lock went with the task
    finally:
        dump.unlink()
        moved.rename(dump)
    assert wait(root, node.vzdump.post(vmid=700, storage="local"))["exitstatus"] == "OK"
