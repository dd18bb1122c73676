"""The full guest life cycle with tasks and locks: create, clone (linked and full), config
with digests and pending changes, resize (grow only), template, power, cloud-init,
delete with purge; UPIDs, task status and paged logs; node resource accounting."""

from __future__ import annotations

import re

from simhelpers import error_of, ok, root_api, wait

UPID = re.compile(r"^UPID:pve1:[0-9A-F]{8}:[0-9A-F]{8,9}:[0-9A-F]{8}:qmclone:9000:root@pam:$")


def test_clone_start_stop_delete_cycle(pve_sim):
    root = root_api(pve_sim["brieux"])
    node = root.nodes("pve1")
    upid = node.qemu(9000).clone.post(newid=201, name="web", pool=None)
    assert UPID.match(upid), upid
    status = wait(root, upid)
    assert status["exitstatus"] == "OK" and status["type"] == "qmclone" and status["id"] == "9000"
    config = node.qemu(201).config.get()
    assert config["scsi0"].startswith("local-lvm:base-9000-disk-0/vm-201-disk-0")  # linked clone
    assert "template" not in config
    # full clone of the template
    ok(root, node.qemu(9000).clone.post(newid=202, name="full", full=1))
    assert node.qemu(202).config.get()["scsi0"].startswith("local-lvm:vm-202-disk-0,")
    content = {v["volid"] for v in node.storage("local-lvm").content.get(vmid=202)}
    assert "local-lvm:vm-202-disk-0" in content
    # power
    before = node.status.get()["memory"]["used"]
    ok(root, node.qemu(201).status.start.post())
    current = node.qemu(201).status.current.get()
    assert current["status"] == "running" and current["qmpstatus"] == "running"
    assert node.status.get()["memory"]["used"] == before + 2048 * 1024**2
    assert error_of(node.qemu(201).status.start.post).status_code == 500  # already running
    assert error_of(node.qemu(201).delete).status_code == 500  # running: destroy refused
    ok(root, node.qemu(201).status.reboot.post())
    ok(root, node.qemu(201).status.shutdown.post())
    assert node.qemu(201).status.current.get()["status"] == "stopped"
    assert error_of(node.qemu(9000).status.start.post).status_code == 500  # template
    # the tasks list holds the exit status
    rows = node.tasks.get(vmid=201)
    assert {r["type"] for r in rows} >= {"qmstart", "qmreboot", "qmshutdown"}
    assert all(r["status"] == "OK" for r in rows)
    # delete with purge takes the guest out of pools and ACLs
    root.pools.post(poolid="cycle")
    root.pools("cycle").put(vms="202")
    root.access.acl.put(path="/vms/202", roles="PVEAuditor", users="root@pam")
    ok(root, node.qemu(202).delete(purge=1))
    assert 202 not in [v["vmid"] for v in root.cluster.resources.get(type="vm")]
    assert root.pools("cycle").get()["members"] == []
    assert not [a for a in root.access.acl.get() if a["path"] == "/vms/202"]
    assert not node.storage("local-lvm").content.get(vmid=202)
    ok(root, node.qemu(201).delete())


def test_config_digest_pending_resize_cloudinit(pve_sim):
    root = root_api(pve_sim["brieux"])
    node = root.nodes("pve1")
    ok(root, node.qemu(9000).clone.post(newid=210, name="cfg"))
    vm = node.qemu(210)
    digest = vm.config.get()["digest"]
    vm.config.put(
        memory="4096",
        cores=2,
        digest=digest,
        ciuser="admin",
        ipconfig0="ip=10.161.0.10/24,gw=10.161.0.1",
        nameserver="10.161.0.1",
        sshkeys="ssh-ed25519%20AAAAC3Nza%20me%40host",
    )
    config = vm.config.get()
    assert config["memory"] == "4096" and config["cores"] == 2 and config["digest"] != digest
    exc = error_of(vm.config.put, memory="1024", digest=digest)
    assert exc.status_code == 500
    assert "detected modified configuration - file changed by other user? Try again." in str(exc)
    # POST /config is the asynchronous variant: a task
    ok(root, vm.config.post(description="async", delete="nameserver"))
    assert "nameserver" not in vm.config.get()
    # running guest: hardware changes go pending until restart
    ok(root, vm.status.start.post())
    vm.config.put(cores=4)
    assert vm.config.get(current=1)["cores"] == 2
    assert {p["key"]: p.get("pending") for p in vm.pending.get()}["cores"] == "4"
    ok(root, vm.status.stop.post())
    assert vm.config.get(current=1)["cores"] == 4
    # resize: grow only
    ok(root, vm.resize.put(disk="scsi0", size="+5G"))
    assert "size=8G" in vm.config.get()["scsi0"]
    exc = error_of(vm.resize.put, disk="scsi0", size="2G")
    assert "shrinking disks is not supported" in str(exc)
    # cloud-init
    ci = {e["key"]: e.get("value") for e in vm.cloudinit.get()}
    assert ci["ciuser"] == "admin" and ci["ipconfig0"].startswith("ip=10.161.0.10/24")
    user_data = vm.cloudinit.dump.get(type="user")
    assert "ssh-ed25519 AAAAC3Nza me@host" in user_data
    assert "10.161.0.10/24" in vm.cloudinit.dump.get(type="network")
    # template conversion, then the new template clones
    ok(root, vm.template.post())
    assert vm.config.get()["template"] == 1
    assert "base-210-disk-0" in vm.config.get()["scsi0"]
    ok(root, node.qemu(210).clone.post(newid=211, name="from-new-template"))
    exc = error_of(node.qemu(210).delete)
    assert "still in use by linked clone 211" in str(exc)


def test_locks_and_task_log(pve_sim):
    root = root_api(pve_sim["brieux"])
    node = root.nodes("pve1")
    ok(root, node.qemu(9000).clone.post(newid=220, name="locked"))
    cab = pve_sim.simulator.cabinets["brieux"]
    pve_sim.call(lambda s: setattr(cab, "task_seconds", 1.0))
    try:
        upid = node.qemu(220).status.start.post()
        exc = error_of(node.qemu(220).config.put, memory="1024")
        assert exc.status_code == 500
        assert "can't lock file '/var/lock/qemu-server/lock-220.conf' - got timeout" in str(exc)
        assert node.tasks(upid).status.get()["status"] == "running"
        assert "exitstatus" not in node.tasks(upid).status.get()
    finally:
        pve_sim.call(lambda s: setattr(cab, "task_seconds", 0.05))
    ok(root, upid)
    node.qemu(220).config.put(memory="1024")  # the lock is free again
    log = node.tasks(upid).log.get()
    assert log[-1] == {"n": len(log), "t": "TASK OK"}
    assert node.tasks(upid).log.get(start=1, limit=1) == [log[1]]
    # nextid reserves nothing
    first = root.cluster.nextid.get()
    assert root.cluster.nextid.get() == first
    assert error_of(root.cluster.nextid.get, vmid=220).status_code == 400
