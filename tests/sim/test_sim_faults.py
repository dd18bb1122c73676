"""Each fault the control endpoint can inject, seen through a real client."""

from __future__ import annotations

import time

import pytest
from simhelpers import error_of, ok, root_api, wait


@pytest.fixture()
def sim(pve_sim):
    yield pve_sim
    pve_sim.fault("brieux", "clear")


def test_latency(sim):
    # The injected delay is a lower bound the simulator guarantees; no upper bound or
    # comparison with an undelayed request, which a loaded machine may slow down too.
    root = root_api(sim["brieux"])
    sim.fault("brieux", "latency", ms=1500)
    start = time.monotonic()
    root.version.get()
    assert time.monotonic() - start >= 1.5
    sim.fault("brieux", "latency", ms=0)


def test_error_rate(sim):
    root = root_api(sim["brieux"])
    sim.fault("brieux", "error_rate", rate=1.0)
    assert error_of(root.version.get).status_code == 503
    sim.fault("brieux", "error_rate", rate=0)
    assert root.version.get()


def test_lock_timeout(sim):
    root = root_api(sim["brieux"])
    sim.fault("brieux", "lock_timeout", vmid=9000)
    exc = error_of(root.nodes("pve1").qemu(9000).config.put, description="x")
    assert "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout" in str(exc)


def test_task_failure_and_warnings(sim):
    root = root_api(sim["brieux"])
    sim.fault("brieux", "task_failure", count=1, message="clone failed: out of space")
    status = wait(root, root.nodes("pve1").qemu(9000).clone.post(newid=301))
    assert status["exitstatus"] == "clone failed: out of space"
    assert (
        root.nodes("pve1").tasks(status["upid"]).log.get()[-1]["t"]
        == "TASK ERROR: clone failed: out of space"
    )
    assert 301 not in [v["vmid"] for v in root.cluster.resources.get(type="vm")]  # rolled back
    sim.fault("brieux", "task_warnings", count=1, warnings=2)
    status = wait(root, root.nodes("pve1").qemu(9000).clone.post(newid=301))
    assert status["exitstatus"] == "WARNINGS: 2"
    ok(root, root.nodes("pve1").qemu(301).delete())


def test_no_worker_upid(sim):
    root = root_api(sim["brieux"])
    sim.fault("brieux", "no_worker_upid", count=1)
    exc = error_of(root.nodes("pve1").qemu(9000).clone.post, newid=302)
    assert exc.status_code == 500 and "got no worker upid" in str(exc)


def test_status_400_right_after_creation(sim):
    root = root_api(sim["brieux"])
    sim.fault("brieux", "status_400", count=1)
    upid = root.nodes("pve1").qemu(9000).clone.post(newid=303)
    assert error_of(root.nodes("pve1").tasks(upid).status.get).status_code == 400
    assert wait(root, upid)["exitstatus"] == "OK"  # the client's retry succeeds
    ok(root, root.nodes("pve1").qemu(303).delete())


def test_node_offline(sim):
    root = root_api(sim["brieux"])
    sim.fault("brieux", "node_offline", node="pve2")
    assert error_of(root.nodes("pve2").status.get).status_code == 595
    nodes = {n["node"]: n["status"] for n in root.nodes.get()}
    assert nodes == {"pve1": "online", "pve2": "offline"}
    assert {n["name"]: n["online"] for n in root.cluster.status.get() if n["type"] == "node"} == {
        "pve1": 1,
        "pve2": 0,
    }
    sim.fault("brieux", "node_online", node="pve2")
    assert root.nodes("pve2").status.get()["cpuinfo"]["cores"] == 16


def test_guest_moved_like_ha(sim):
    root = root_api(sim["brieux"])
    ok(root, root.nodes("pve1").qemu(9000).clone.post(newid=304, full=1))
    sim.fault("brieux", "move_guest", vmid=304, node="pve2")
    where = {v["vmid"]: v["node"] for v in root.cluster.resources.get(type="vm")}
    assert where[304] == "pve2"
    assert (
        error_of(root.nodes("pve1").qemu(304).config.get).status_code == 500
    )  # pinned node drifts
    assert root.nodes("pve2").qemu(304).config.get()["name"]


def test_bad_fault_is_refused(sim):
    with pytest.raises(Exception, match="400"):
        sim.fault("brieux", "meteor")
